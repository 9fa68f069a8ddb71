//! What runs the controller, beside the reconcile: leader election on a real Lease, the
//! health and metrics endpoints, and a stop when the shutdown signal comes.
//!
//! Run: `LOCALCLUSTER_NAME=ops cargo test -p vault-controller --test operations`.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use vault_controller::leader::LeaseLock;
use vault_controller::metrics::Metrics;
use vault_controller::operations::{Health, serve};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[tokio::test]
async fn two_replicas_never_hold_the_lease_at_once() -> Result<(), BoxError> {
    localcluster::install_crypto_provider();
    let cluster = localcluster::LocalCluster::start().await?;
    let client = cluster.client();
    let ns = localcluster::test_namespace(&client, "lease").await?;
    let first = LeaseLock::new(client.clone(), &ns, "vault-controller", "replica-a");
    let second = LeaseLock::new(client.clone(), &ns, "vault-controller", "replica-b");

    assert!(first.try_acquire().await?, "a free Lease is taken");
    assert!(!second.try_acquire().await?, "a held Lease is not taken");
    assert!(first.try_acquire().await?, "the holder renews it");
    assert!(!second.try_acquire().await?, "still held");

    // A stopping replica gives the Lease up, so the standby takes over at once.
    first.release().await?;
    assert!(second.try_acquire().await?, "a released Lease is taken");
    assert!(
        !first.try_acquire().await?,
        "and the other replica now waits"
    );
    Ok(())
}

/// A free loopback port: bound and let go, for a server that takes an address.
fn free_port() -> Result<SocketAddr, BoxError> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?)
}

/// `GET path` on loopback: the status code and body.
fn get(address: SocketAddr, path: &str) -> Result<(u16, String), BoxError> {
    let mut stream = TcpStream::connect_timeout(&address, Duration::from_secs(2))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer)?;
    let code = answer
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or("no status line")?;
    let body = answer.split("\r\n\r\n").nth(1).unwrap_or_default();
    Ok((code, body.to_string()))
}

#[tokio::test]
async fn health_and_metrics_are_served_until_the_shutdown_signal() -> Result<(), BoxError> {
    let address = free_port()?;
    let ready = Arc::new(AtomicBool::new(false));
    let health = Health {
        metrics: Arc::new(Metrics::default()),
        ready: ready.clone(),
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(serve(address, health, async {
        let _ = stopped.await;
    }));

    let mut answered = None;
    for _ in 0..50 {
        if let Ok(answer) = tokio::task::spawn_blocking(move || get(address, "/healthz")).await? {
            answered = Some(answer);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(answered.map(|(code, _)| code), Some(200), "/healthz");

    let readyz = tokio::task::spawn_blocking(move || get(address, "/readyz")).await??;
    assert_eq!(readyz.0, 503, "not ready before the API server answered");
    ready.store(true, Ordering::Relaxed);
    let readyz = tokio::task::spawn_blocking(move || get(address, "/readyz")).await??;
    assert_eq!(readyz.0, 200, "ready once it has");

    let metrics = tokio::task::spawn_blocking(move || get(address, "/metrics")).await??;
    assert_eq!(metrics.0, 200);
    assert!(
        metrics.1.contains("# EOF"),
        "OpenMetrics text: {}",
        metrics.1
    );

    let _ = stop.send(());
    tokio::time::timeout(Duration::from_secs(5), server).await???;
    assert!(
        tokio::task::spawn_blocking(move || get(address, "/healthz"))
            .await?
            .is_err(),
        "nothing listens after the shutdown"
    );
    Ok(())
}
