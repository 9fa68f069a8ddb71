//! What initialisation refuses to do, and what it does right after: one real OpenBao
//! server each (Raft storage, TLS).

mod common;

use std::time::Duration;

use common::{BoxError, Capture, TestCluster, assert_no_secret};
use serde_json::json;
use vault_controller::Secret;
use vault_controller::keystore::{self, KeyStore, MemoryKeyStore, ROOT_TOKEN, Retry, TEST_KEY};
use vault_controller::unseal::{
    self, ControllerIdentity, InitOutcome, UnsealError, UnsealOptions, UnsealOutcome,
};

fn quick_retry() -> Retry {
    Retry {
        attempts: 2,
        backoff: Duration::from_millis(10),
    }
}

#[tokio::test]
async fn refuses_a_failing_store_stored_keys_and_someone_elses_vault() -> Result<(), BoxError> {
    let servers = TestCluster::start("refusals", 1, 28700)?;
    let cluster = servers.cluster()?;
    let options = UnsealOptions {
        retry: quick_retry(),
        ..UnsealOptions::default()
    };

    // A store that cannot be written fails the pre-flight check; Vault stays uninitialised.
    let failing = MemoryKeyStore::default();
    failing.fail_next_writes(100);
    let error = unseal::ensure_initialized(&cluster, &failing, &options).await;
    assert!(
        matches!(error, Err(UnsealError::PreFlight { .. })),
        "{error:?}"
    );
    assert!(!cluster.pods[0].seal_status().await?.initialized);

    // Keys of this Vault already in the store: never initialise over them.
    let holding = MemoryKeyStore::default();
    holding
        .set(&keystore::unseal_key(0), &Secret::from("old"))
        .await?;
    let error = unseal::ensure_initialized(&cluster, &holding, &options).await;
    match error {
        Err(error @ UnsealError::KeysExist { .. }) => assert_eq!(
            error.to_string(),
            "initialising Vault refusals: Vault is not initialised but memory already holds \
             keys for it; refusing to initialise over them (move them away to start afresh)"
        ),
        other => return Err(format!("expected KeysExist, got {other:?}").into()),
    }
    assert!(!cluster.pods[0].seal_status().await?.initialized);

    // Without pre-flight checks no test value is written.
    let ours = MemoryKeyStore::default();
    let no_checks = UnsealOptions {
        pre_flight_checks: false,
        shares: 1,
        threshold: 1,
        ..options
    };
    let outcome = unseal::ensure_initialized(&cluster, &ours, &no_checks).await?;
    assert!(
        matches!(outcome, InitOutcome::Initialized { .. }),
        "{outcome:?}"
    );
    assert!(ours.get(TEST_KEY).await?.is_none());
    assert_eq!(
        unseal::unseal_pod(&cluster.pods[0], &ours, &no_checks).await?,
        UnsealOutcome::Unsealed
    );

    // Vault initialised, and a store with neither keys nor marker: someone else's Vault.
    let empty = MemoryKeyStore::default();
    let error = unseal::ensure_initialized(&cluster, &empty, &options).await;
    assert!(
        matches!(error, Err(UnsealError::InitializedElsewhere { .. })),
        "{error:?}"
    );
    assert!(
        empty.list().await?.is_empty(),
        "nothing is written to a foreign store"
    );
    Ok(())
}

#[tokio::test]
async fn identity_set_up_and_root_token_revoked_when_not_stored() -> Result<(), BoxError> {
    let capture = Capture::default();
    let _guard = capture.install();
    let servers = TestCluster::start("identity", 1, 28720)?;
    let cluster = servers.cluster()?;
    let store = MemoryKeyStore::default();
    let options = UnsealOptions {
        store_root_token: false,
        shares: 3,
        threshold: 2,
        ..UnsealOptions::default()
    };

    let outcome = unseal::ensure_initialized(&cluster, &store, &options).await?;
    let InitOutcome::Initialized { root_token, .. } = outcome else {
        return Err(format!("expected a fresh initialisation, got {outcome:?}").into());
    };
    assert!(
        store.get(ROOT_TOKEN).await?.is_none(),
        "the root token must not be stored"
    );
    let pod = &cluster.pods[0];
    assert_eq!(
        unseal::unseal_pod(pod, &store, &options).await?,
        UnsealOutcome::Unsealed
    );
    // Raft elects the single node; the token works once it is active.
    let start = std::time::Instant::now();
    while !pod.leader().await?.is_self {
        if start.elapsed() > Duration::from_secs(30) {
            return Err("no leader".into());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let identity = ControllerIdentity::new("vault-controller", "vault-system");
    // Outside a pod, bao has no cluster CA of its own: any CA will do, nothing dials it.
    let config =
        |host: &str| json!({"kubernetes_host": host, "kubernetes_ca_cert": servers.ca_pem});
    let first = config("https://192.0.2.10:6443");
    unseal::setup_controller_identity(pod, &root_token, &identity, Some(&first)).await?;
    // Twice is the same as once, and a configuration already there is kept.
    let other = config("https://198.51.100.7:443");
    unseal::setup_controller_identity(pod, &root_token, &identity, Some(&other)).await?;
    let authed = pod.authed(&root_token)?;
    let config = authed
        .request(
            "reading",
            reqwest::Method::GET,
            "auth/kubernetes/config",
            None,
        )
        .await?;
    assert_eq!(config["data"]["kubernetes_host"], "https://192.0.2.10:6443");
    let role = vaultrs::auth::kubernetes::role::read(authed.client(), "kubernetes", &identity.role)
        .await
        .map_err(|e| authed.error("reading the role", e))?;
    assert_eq!(role.bound_service_account_names, ["vault-controller"]);
    assert_eq!(role.bound_service_account_namespaces, ["vault-system"]);
    assert!(role.token_policies.contains(&identity.role));
    drop(authed);

    unseal::revoke_root_token(pod, &root_token).await?;
    let revoked = pod.raft_configuration(&root_token).await;
    assert_eq!(
        revoked.as_ref().err().and_then(|e| e.status()),
        Some(403),
        "{revoked:?}"
    );

    let mut secrets = vec![root_token.expose().to_string()];
    for i in 0..3 {
        if let Some(key) = store.get(&keystore::unseal_key(i)).await? {
            secrets.push(key.expose().to_string());
        }
    }
    assert_no_secret(&capture.text(), &secrets, "the controller's log")?;
    let error_text = revoked.err().map(|e| e.to_string()).unwrap_or_default();
    assert_no_secret(&error_text, &secrets, "the error")?;
    assert_no_secret(&servers.logs(), &secrets, "the server's log")?;
    Ok(())
}

/// A store whose writes of unseal keys fail a number of times, as one behind an API server
/// that restarts right after Vault answered `sys/init`.
struct StumblingStore {
    inner: MemoryKeyStore,
    failures_left: std::sync::atomic::AtomicU32,
}

#[async_trait::async_trait]
impl KeyStore for StumblingStore {
    fn describe(&self) -> String {
        "a store that stumbles".to_string()
    }

    async fn get(&self, key: &str) -> Result<Option<Secret>, keystore::KeyStoreError> {
        self.inner.get(key).await
    }

    async fn set(&self, key: &str, value: &Secret) -> Result<(), keystore::KeyStoreError> {
        use std::sync::atomic::Ordering;
        let stumbles = key.starts_with("vault-unseal-")
            && self
                .failures_left
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok();
        if stumbles {
            return Err(keystore::KeyStoreError::Backend {
                store: self.describe(),
                operation: "writing",
                key: key.to_string(),
                reason: "the API server is restarting".to_string(),
            });
        }
        self.inner.set(key, value).await
    }

    async fn list(&self) -> Result<Vec<String>, keystore::KeyStoreError> {
        self.inner.list().await
    }
}

#[tokio::test]
async fn the_init_answer_outlasts_a_store_failing_longer_than_ordinary_retries()
-> Result<(), BoxError> {
    let servers = TestCluster::start("stumbling", 1, 28740)?;
    let cluster = servers.cluster()?;
    let store = StumblingStore {
        inner: MemoryKeyStore::default(),
        failures_left: 6.into(),
    };
    // Ordinary writes give up after two attempts; the init answer's after eight.
    let options = UnsealOptions {
        retry: quick_retry(),
        retry_after_init: Retry {
            attempts: 8,
            backoff: Duration::from_millis(10),
        },
        ..UnsealOptions::default()
    };

    let outcome = unseal::ensure_initialized(&cluster, &store, &options).await?;
    assert!(
        matches!(outcome, InitOutcome::Initialized { .. }),
        "{outcome:?}"
    );
    for index in 0..options.shares {
        let name = keystore::unseal_key(index);
        assert!(store.get(&name).await?.is_some(), "{name} not stored");
    }
    assert_eq!(
        store
            .failures_left
            .load(std::sync::atomic::Ordering::SeqCst),
        0,
        "the store never failed: the test proves nothing"
    );
    Ok(())
}
