//! Fault injection: the flow runs in a child process that is killed at each crash point,
//! then run again; every run must end with Vault initialised and unsealed and every key in
//! the store.

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use common::{BoxError, TestCluster, assert_no_secret};
use serde::{Deserialize, Serialize};
use vault_controller::crash::{self, CrashPoint};
use vault_controller::keystore::{self, FileKeyStore, INIT_MARKER, KeyStore};
use vault_controller::unseal::{self, Cluster, InitMarker, MarkerState, UnsealOptions};
use vault_controller::vault::{PodEndpoint, VaultPodClient};

/// Set in the child: the JSON of [`ChildConfig`].
const CHILD_ENV: &str = "VAULT_CONTROLLER_TEST_CHILD";
/// The child's exit code when the cluster's storage must be reset.
const RESET_REQUIRED: i32 = 3;

#[derive(Serialize, Deserialize)]
struct ChildConfig {
    name: String,
    ca_pem: String,
    pods: Vec<(String, SocketAddr, String)>,
    store: PathBuf,
}

/// The child's side: a no-op unless started by the test below.
#[tokio::test]
async fn flow_child() -> Result<(), BoxError> {
    let Ok(config) = std::env::var(CHILD_ENV) else {
        return Ok(());
    };
    let config: ChildConfig = serde_json::from_str(&config)?;
    let _ = tracing_subscriber::fmt()
        .with_env_filter("vault_controller=debug,info")
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .try_init();

    let pods = config
        .pods
        .into_iter()
        .map(|(pod, address, server_name)| {
            let endpoint = PodEndpoint {
                pod,
                address,
                server_name,
            };
            VaultPodClient::new(endpoint, config.ca_pem.as_bytes(), Duration::from_secs(10))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let cluster = Cluster {
        name: config.name,
        pods,
        raft: true,
        ca_pem: config.ca_pem,
        token: None,
    };
    let store = FileKeyStore::new(config.store);
    let options = UnsealOptions::default();
    match unseal::converge(&cluster, &store, &options, Duration::from_secs(60)).await {
        Ok(report) if !report.reset_required.is_empty() => {
            eprintln!("reset required: {:?}", report.reset_required);
            std::process::exit(RESET_REQUIRED);
        }
        Ok(report) => {
            eprintln!("converged: {}", report.summary());
            Ok(())
        }
        Err(error) => {
            eprintln!("failed: {error}");
            Err(error.into())
        }
    }
}

/// Runs the flow in a child process, armed with `crash_at`, each point at most once per
/// `record` file: as a controller pod restarted with the same environment would run.
fn run_child(
    servers: &TestCluster,
    store: &Path,
    crash_at: &str,
    record: &Path,
) -> Result<Output, BoxError> {
    let config = ChildConfig {
        name: servers.name.clone(),
        ca_pem: servers.ca_pem.clone(),
        pods: servers
            .endpoints()
            .into_iter()
            .map(|e| (e.pod, e.address, e.server_name))
            .collect(),
        store: store.to_path_buf(),
    };
    let mut command = Command::new(std::env::current_exe()?);
    command
        .args(["flow_child", "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, serde_json::to_string(&config)?)
        .env(crash::ENV, crash_at)
        .env(crash::RECORD_ENV, record);
    Ok(command.output()?)
}

fn text(output: &Output) -> String {
    format!(
        "{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

#[tokio::test]
async fn killed_at_each_crash_point_ends_initialised_and_unsealed() -> Result<(), BoxError> {
    if std::env::var(CHILD_ENV).is_ok() {
        return Ok(());
    }
    for (k, point) in (0u16..).zip(CrashPoint::ALL) {
        let mut servers =
            TestCluster::start(&format!("crash-{}", point.name()), 3, 28500 + 20 * k)?;
        let store_dir = servers.folder().join("keys");
        let record = servers.folder().join("crash-record");
        let mut outputs = Vec::new();

        let killed = run_child(&servers, &store_dir, point.name(), &record)?;
        let said = text(&killed);
        assert!(
            !killed.status.success(),
            "{}: the child was not killed:\n{said}",
            point.name()
        );
        assert!(
            said.contains(&format!("crash point {} reached", point.name())),
            "{said}"
        );
        outputs.push(said);

        let mut resets = 0;
        loop {
            // The same environment: the point, reached once, is passed from now on.
            let again = run_child(&servers, &store_dir, point.name(), &record)?;
            let said = text(&again);
            outputs.push(said.clone());
            match again.status.code() {
                Some(0) => break,
                Some(RESET_REQUIRED) if resets == 0 => {
                    resets += 1;
                    servers.reset_all()?;
                }
                _ => return Err(format!("{}: rerun failed:\n{said}", point.name()).into()),
            }
        }
        let expected_resets = match point {
            CrashPoint::AfterInitResponse | CrashPoint::BetweenKeyWrites => 1,
            CrashPoint::BeforeInit | CrashPoint::AfterRootToken => 0,
            CrashPoint::BetweenUnsealKeys => 0,
        };
        assert_eq!(resets, expected_resets, "resets after {}", point.name());

        // Every key is in the store, the marker is complete, and every pod is unsealed.
        let store = FileKeyStore::new(&store_dir);
        let marker = store
            .get(INIT_MARKER)
            .await?
            .and_then(|m| InitMarker::parse(&m));
        let marker = marker.ok_or("no init-intent marker")?;
        assert_eq!(marker.state, MarkerState::Complete);
        let names = store.list().await?;
        assert!(
            marker.missing(&names).is_empty(),
            "{}: {names:?}",
            point.name()
        );
        let cluster = servers.cluster()?;
        let options = UnsealOptions::default();
        let report = unseal::converge(&cluster, &store, &options, Duration::from_secs(30)).await?;
        assert!(report.converged(true), "{}", report.summary());
        assert!(
            report.actions.is_empty(),
            "the child left work: {:?}",
            report.actions
        );

        let mut secrets = Vec::new();
        for name in names.iter().filter(|name| keystore::is_vault_key(name)) {
            if let Some(value) = store.get(name).await? {
                secrets.push(value.expose().to_string());
            }
        }
        assert_no_secret(&outputs.join("\n"), &secrets, "the child's output")?;
        assert_no_secret(&servers.logs(), &secrets, "the servers' logs")?;
        println!("{}: recovered with {resets} reset(s)", point.name());
    }
    Ok(())
}
