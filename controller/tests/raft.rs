//! Initialise, unseal and join three real OpenBao servers (Raft storage, TLS), then lose
//! one and all of them and see the cluster come back.

mod common;

use std::time::Duration;

use common::{BoxError, Capture, TestCluster, assert_no_secret};
use vault_controller::keystore::{self, INIT_MARKER, KeyStore, MemoryKeyStore, ROOT_TOKEN};
use vault_controller::unseal::{
    self, InitMarker, InitOutcome, MarkerState, UnsealError, UnsealOptions,
};
use vault_controller::vault::Flavor;

const CONVERGE: Duration = Duration::from_secs(90);

/// Every value in the store, exposed, for the secret scan.
pub async fn stored_secrets(store: &dyn KeyStore) -> Result<Vec<String>, BoxError> {
    let mut secrets = Vec::new();
    for name in store.list().await? {
        if keystore::is_vault_key(&name)
            && let Some(value) = store.get(&name).await?
        {
            secrets.push(value.expose().to_string());
        }
    }
    Ok(secrets)
}

#[tokio::test]
async fn three_nodes_initialise_unseal_join_and_recover() -> Result<(), BoxError> {
    let capture = Capture::default();
    let _guard = capture.install();
    let mut servers = TestCluster::start("raft3", 3, 28200)?;
    let cluster = servers.cluster()?;
    let store = MemoryKeyStore::default();
    let options = UnsealOptions::default();
    let mut errors = Vec::new();

    assert_eq!(cluster.pods[0].flavor().await?, Some(Flavor::OpenBao));

    let report = unseal::converge(&cluster, &store, &options, CONVERGE).await?;
    println!("first pass actions: {:?}", report.actions);
    assert!(report.converged(true), "{}", report.summary());
    let raft = report.raft.clone().unwrap_or_default();
    assert_eq!(raft.servers.len(), 3, "{raft:?}");
    assert_eq!(raft.leader(), report.leader.as_deref());

    let names = store.list().await?;
    for key in (0..5)
        .map(keystore::unseal_key)
        .chain([ROOT_TOKEN.to_string()])
    {
        assert!(names.contains(&key), "{key} not stored: {names:?}");
    }
    let marker = store
        .get(INIT_MARKER)
        .await?
        .and_then(|m| InitMarker::parse(&m));
    assert_eq!(marker.map(|m| m.state), Some(MarkerState::Complete));

    // Vault says it is initialised, so nothing initialises it again.
    let again = unseal::ensure_initialized(&cluster, &store, &options).await?;
    assert!(
        matches!(again, InitOutcome::AlreadyInitialized),
        "{again:?}"
    );

    // Autopilot promotes the joined nodes to voters once they are stable.
    let token = store.get(ROOT_TOKEN).await?.unwrap_or_default();
    let start = std::time::Instant::now();
    loop {
        let raft = cluster.pods[0].raft_configuration(&token).await?;
        if raft.servers.iter().all(|server| server.voter) {
            break;
        }
        if start.elapsed() > CONVERGE {
            return Err(format!("not all voters: {raft:?}").into());
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let autopilot = cluster.pods[0].autopilot_state(&token).await?;
    assert_eq!(autopilot.servers.len(), 3, "{autopilot:?}");

    // One node restarts: it comes back sealed and is unsealed again.
    servers.restart_node(2)?;
    assert!(cluster.pods[2].seal_status().await?.sealed);
    let report = unseal::converge(&cluster, &store, &options, CONVERGE).await?;
    assert!(
        report.actions.contains(&"unsealed vault-2".to_string()),
        "{:?}",
        report.actions
    );
    assert!(report.converged(true), "{}", report.summary());

    // Every node restarts at once: the cluster re-forms without a human.
    for i in 0..3 {
        servers.stop_node(i);
    }
    for i in 0..3 {
        servers.start_node(i)?;
    }
    let report = unseal::converge(&cluster, &store, &options, CONVERGE).await?;
    assert!(report.converged(true), "{}", report.summary());
    assert_eq!(report.raft.map(|r| r.servers.len()), Some(3));

    // A store that holds only two shares cannot unseal, and says so.
    servers.restart_node(1)?;
    let short = MemoryKeyStore::default();
    for i in 0..2 {
        let key = keystore::unseal_key(i);
        if let Some(value) = store.get(&key).await? {
            short.set(&key, &value).await?;
        }
    }
    let failed = unseal::unseal_pod(&cluster.pods[1], &short, &options).await;
    match failed {
        Err(error @ UnsealError::NotEnoughKeys { .. }) => {
            assert_eq!(
                error.to_string(),
                "unsealing pod vault-1: key store returned 2 of 3 keys"
            );
            errors.push(error.to_string());
        }
        other => return Err(format!("expected too few keys, got {other:?}").into()),
    }

    let secrets = stored_secrets(&store).await?;
    assert_no_secret(&capture.text(), &secrets, "the controller's log")?;
    assert_no_secret(&servers.logs(), &secrets, "the servers' logs")?;
    assert_no_secret(&errors.join("\n"), &secrets, "the errors")?;
    Ok(())
}
