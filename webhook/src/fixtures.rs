//! Test support: AdmissionReview bodies as the API server sends them, generated
//! certificates, and the servers run on loopback, for the tests, the fuzz target and the
//! benchmark.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use serde_json::{Value, json};
use tokio::net::TcpListener;

use crate::certs::{self, KeyedCert};
use crate::error::Error;
use crate::metrics::Metrics;
use crate::server::{self, AdmissionState, ProbeState};
use crate::tls::{self, ServingCert};

/// A review of a `Vault`: `operation` is `CREATE`, `UPDATE` or `DELETE`.
pub fn review(operation: &str, object: Option<Value>, old_object: Option<Value>) -> Value {
    let gvk = json!({"group": "vault.banzaicloud.com", "version": "v1alpha1", "kind": "Vault"});
    let gvr =
        json!({"group": "vault.banzaicloud.com", "version": "v1alpha1", "resource": "vaults"});
    json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "705ab4f5-6393-11e8-b7cc-42010a800002",
            "kind": gvk,
            "resource": gvr,
            "requestKind": gvk,
            "requestResource": gvr,
            "name": "vault",
            "namespace": "default",
            "operation": operation,
            "userInfo": {"username": "admin", "groups": ["system:authenticated"]},
            "object": object,
            "oldObject": old_object,
            "dryRun": false,
        },
    })
}

/// A `Vault` named `vault` in namespace `default` with the given spec.
pub fn vault(spec: Value) -> Value {
    json!({
        "apiVersion": "vault.banzaicloud.com/v1alpha1",
        "kind": "Vault",
        "metadata": {"name": "vault", "namespace": "default", "uid": "8d6e0b1c"},
        "spec": spec,
    })
}

/// A valid three-pod Raft `Vault`, before defaults.
pub fn raft_vault() -> Value {
    vault(json!({
        "size": 3,
        "config": {
            "storage": {"raft": {"path": "/vault/file"}},
            "listener": {"tcp": {"address": "0.0.0.0:8200"}},
            "ui": true,
        },
        "volumeMounts": [{"name": "vault-raft", "mountPath": "/vault/file"}],
    }))
}

/// The review body of a CREATE of `object`.
pub fn create_body(object: Value) -> Vec<u8> {
    review("CREATE", Some(object), None)
        .to_string()
        .into_bytes()
}

/// The name the test certificates are issued for; clients resolve it to 127.0.0.1.
pub const TEST_DNS_NAME: &str = "vault-webhook.test.svc";

/// A fresh CA and a serving certificate for [`TEST_DNS_NAME`] signed by it.
pub fn test_certificates() -> Result<(KeyedCert, KeyedCert), Error> {
    let now = time::OffsetDateTime::now_utc();
    let lifetimes = certs::Lifetimes::default();
    let ca = certs::generate_ca(now, lifetimes.ca)?;
    let serving = certs::issue_serving_cert(&ca, TEST_DNS_NAME, now, lifetimes.serving)?;
    Ok((ca, serving))
}

/// A TLS client configuration that trusts only `ca_pem`, offering HTTP/1.1 (and HTTP/2
/// when `http2`).
pub fn client_tls(ca_pem: &str, http2: bool) -> Result<rustls::ClientConfig, Error> {
    let invalid = |reason: String| Error::Certificate {
        what: "the test CA".into(),
        reason,
    };
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        let cert = cert.map_err(|e| invalid(e.to_string()))?;
        roots.add(cert).map_err(|e| invalid(e.to_string()))?;
    }
    let mut config = rustls::ClientConfig::builder_with_provider(tls::provider())
        .with_safe_default_protocol_versions()
        .map_err(Error::Tls)?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = if http2 {
        vec![b"h2".to_vec(), b"http/1.1".to_vec()]
    } else {
        vec![b"http/1.1".to_vec()]
    };
    Ok(config)
}

/// The admission and probe servers running on loopback ports, stopped when dropped.
pub struct LocalServer {
    /// Address of the admission server (TLS).
    pub admission: SocketAddr,
    /// Address of the probe server (plain HTTP).
    pub probes: SocketAddr,
    /// The certificate served; install another to rotate it.
    pub serving: Arc<ServingCert>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl LocalServer {
    /// Starts both servers on 127.0.0.1 with `serving` (which may be empty), reading bodies
    /// up to `max_body_bytes` and answering within `request_timeout`.
    pub async fn start(
        serving: Arc<ServingCert>,
        max_body_bytes: usize,
        request_timeout: Duration,
    ) -> Result<Self, Error> {
        let listen = |address: &'static str| async move {
            TcpListener::bind(address)
                .await
                .map_err(|source| Error::Listen {
                    address: address.to_string(),
                    source,
                })
        };
        let admission_listener = listen("127.0.0.1:0").await?;
        let probe_listener = listen("127.0.0.1:0").await?;
        let local = |listener: &TcpListener| {
            listener.local_addr().map_err(|source| Error::Listen {
                address: "127.0.0.1:0".into(),
                source,
            })
        };
        let (admission, probes) = (local(&admission_listener)?, local(&probe_listener)?);

        let metrics = Arc::new(Metrics::new());
        let state = Arc::new(AdmissionState {
            metrics: metrics.clone(),
            max_body_bytes,
        });
        let router = server::admission_router(state, request_timeout);
        let tls = tls::server_config(serving.clone())?;
        let probe_router = server::probe_router(ProbeState {
            metrics,
            serving: serving.clone(),
        });

        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let stopped = async move {
            let _ = stopped.await;
        };
        let tasks = vec![
            tokio::spawn(server::serve_tls(admission_listener, tls, router, stopped)),
            tokio::spawn(async move {
                let forever = std::future::pending();
                let _ = server::serve_plain(probe_listener, probe_router, forever).await;
            }),
        ];
        Ok(LocalServer {
            admission,
            probes,
            serving,
            stop: Some(stop),
            tasks,
        })
    }
}

impl Drop for LocalServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        for task in &self.tasks {
            task.abort();
        }
    }
}
