//! `status` against a mocked API server: the requests it makes (pod proxy paths with the
//! https scheme), how it merges live answers with the controller's status, that a pod that
//! does not answer is bounded by the timeout and shown as unreachable, and the errors that
//! say what to do. The same code runs against a real cluster; this checks it without one.

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http::{Request, Response, StatusCode};
use kube::Client;
use kube::client::Body;
use kubectl_vault::cluster::Cluster;
use kubectl_vault::status::fetch::{Query, fetch};
use serde_json::{Value, json};
use vault_api::status::RaftRole;

const VAULTS: &str = "/apis/vault.banzaicloud.com/v1alpha1/namespaces";

/// A certificate that expires on 2030-01-01, as the TLS Secret holds it.
fn certificate() -> String {
    let Ok(mut params) = rcgen::CertificateParams::new(vec!["vault".to_string()]) else {
        return String::new();
    };
    params.not_after = rcgen::date_time_ymd(2030, 1, 1);
    let Ok(key) = rcgen::KeyPair::generate() else {
        return String::new();
    };
    params
        .self_signed(&key)
        .map(|c| c.pem())
        .unwrap_or_default()
}

fn vault(name: &str) -> Value {
    json!({
        "apiVersion": "vault.banzaicloud.com/v1alpha1", "kind": "Vault",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"size": 3, "config": {
            "storage": {"raft": {"path": "/vault/file"}},
            "listener": {"tcp": {"address": "0.0.0.0:8200"}},
        }},
        "status": {
            "leader": "vault-0",
            "conditions": [{"type": "Ready", "status": "False", "reason": "PodsNotReady"}],
            "pods": [
                {"name": "vault-0", "voter": true},
                {"name": "vault-1", "voter": true},
                {"name": "vault-2", "voter": false, "sealed": false},
            ],
        },
    })
}

fn pod(name: &str, node: &str) -> Value {
    json!({
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"nodeName": node, "containers": []},
        "status": {
            "phase": "Running",
            "conditions": [{"type": "Ready", "status": "True"}],
            "containerStatuses": [{
                "name": "vault", "image": "hashicorp/vault:2.0.1", "imageID": "",
                "ready": true, "restartCount": if name == "vault-2" { 2 } else { 0 },
            }],
        },
    })
}

fn status(code: u16, reason: &str) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": code,
           "reason": reason, "message": format!("mocked {reason}")})
}

/// The mocked API server's answer to a GET of `path`.
async fn route(path: &str) -> (u16, Value) {
    let proxy = "/api/v1/namespaces/default/pods/https:";
    match path {
        p if p == format!("{VAULTS}/default/vaults/vault") => (200, vault("vault")),
        p if p == format!("{VAULTS}/default/vaults") => (
            200,
            json!({"apiVersion": "v1", "kind": "VaultList", "metadata": {},
                         "items": [vault("vault")]}),
        ),
        // A path of no served resource: the API server answers in plain text, no Status.
        p if p.starts_with(&format!("{VAULTS}/nocrd/")) => (404, json!("404 page not found")),
        p if p.starts_with(&format!("{VAULTS}/locked/")) => (403, status(403, "Forbidden")),
        p if p.starts_with(&format!("{VAULTS}/default/vaults/")) => (404, status(404, "NotFound")),
        "/api/v1/namespaces/default/pods" => (
            200,
            json!({
                "apiVersion": "v1", "kind": "PodList", "metadata": {},
                "items": [
                    pod("vault-1", "node-b"),
                    pod("vault-0", "node-a"),
                    pod("vault-2", "node-a"),
                ],
            }),
        ),
        "/api/v1/namespaces/default/secrets/vault-tls" => {
            use base64::Engine;
            let pem = base64::engine::general_purpose::STANDARD.encode(certificate());
            (
                200,
                json!({"apiVersion": "v1", "kind": "Secret",
                         "metadata": {"name": "vault-tls"}, "data": {"tls.crt": pem}}),
            )
        }
        "/api/v1/nodes/node-a" => (
            200,
            json!({"apiVersion": "v1", "kind": "Node",
            "metadata": {"name": "node-a", "labels": {"topology.kubernetes.io/zone": "zone-a"}}}),
        ),
        "/api/v1/nodes/node-b" => (403, status(403, "Forbidden")),
        p if p.starts_with(proxy) => {
            let rest = &p[proxy.len()..];
            let seal = |sealed: bool| {
                json!({"type": "shamir", "initialized": true,
                "sealed": sealed, "t": 3, "n": 5, "version": "2.0.1", "storage_type": "raft"})
            };
            match rest {
                "vault-0:8200/proxy/v1/sys/seal-status" => (200, seal(false)),
                "vault-0:8200/proxy/v1/sys/leader" => {
                    (200, json!({"ha_enabled": true, "is_self": true}))
                }
                "vault-1:8200/proxy/v1/sys/seal-status" => (200, seal(false)),
                "vault-1:8200/proxy/v1/sys/leader" => {
                    (200, json!({"ha_enabled": true, "is_self": false}))
                }
                // vault-2's process is stopped: the proxy waits for it.
                _ => {
                    tokio::time::sleep(Duration::from_secs(30)).await;
                    (503, status(503, "ServiceUnavailable"))
                }
            }
        }
        _ => (404, status(404, "NotFound")),
    }
}

/// A cluster whose API server is the mock; `requests` records every path asked for.
fn cluster(namespace: &str, requests: Arc<Mutex<Vec<String>>>) -> Cluster {
    let service = tower::service_fn(move |request: Request<Body>| {
        let requests = requests.clone();
        async move {
            let path = request.uri().path().to_string();
            if let Ok(mut requests) = requests.lock() {
                requests.push(path.clone());
            }
            let (code, body) = route(&path).await;
            let (kind, body) = match body {
                Value::String(text) => ("text/plain; charset=utf-8", text),
                json => ("application/json", json.to_string()),
            };
            let response = Response::builder()
                .status(StatusCode::from_u16(code).unwrap_or(StatusCode::OK))
                .header("content-type", kind)
                .body(Body::from(body.into_bytes()));
            Ok::<_, Infallible>(response.unwrap_or_else(|_| Response::new(Body::empty())))
        }
    });
    Cluster {
        client: Client::new(service, namespace),
        namespace: namespace.to_string(),
        server: "https://mock:6443".to_string(),
    }
}

fn query(name: Option<&str>) -> Query {
    Query {
        name: name.map(str::to_string),
        all_namespaces: false,
        pod_timeout: Duration::from_millis(300),
    }
}

#[tokio::test]
async fn live_state_through_the_pod_proxy_and_an_unreachable_pod() {
    let requests = Arc::new(Mutex::new(Vec::new()));
    let cluster = cluster("default", requests.clone());

    let start = Instant::now();
    let report = fetch(&cluster, &query(Some("vault"))).await;
    let elapsed = start.elapsed();
    let Ok(report) = report else {
        panic!("fetch failed: {:?}", report.err());
    };
    // The stopped pod costs one timeout, not one per request or per pod.
    assert!(elapsed < Duration::from_secs(2), "took {elapsed:?}");

    let vault = &report.vaults[0];
    assert_eq!((vault.size, vault.ready_pods, vault.sealed_pods), (3, 3, 0));
    assert_eq!(vault.leader.as_deref(), Some("vault-0"));
    assert_eq!(vault.version.as_deref(), Some("2.0.1"));
    let names: Vec<&str> = vault.pods.iter().map(|p| p.vault.name.as_str()).collect();
    assert_eq!(names, ["vault-0", "vault-1", "vault-2"]);

    let [leader, follower, stopped] = &vault.pods[..] else {
        panic!("three pods expected");
    };
    assert_eq!(leader.vault.raft_role, Some(RaftRole::Leader));
    assert_eq!(leader.vault.sealed, Some(false));
    assert_eq!(leader.vault.voter, Some(true));
    assert_eq!(leader.zone.as_deref(), Some("zone-a"));
    assert_eq!(follower.vault.raft_role, Some(RaftRole::Follower));
    assert_eq!(follower.zone, None, "the node may not be read");
    assert_eq!(
        stopped.unreachable.as_deref(),
        Some("no answer within 0.3s")
    );
    assert_eq!(
        stopped.vault.sealed, None,
        "no stale seal state for a silent pod"
    );
    assert_eq!(
        stopped.vault.voter,
        Some(false),
        "the controller's word is kept"
    );
    assert_eq!(stopped.restarts, 2);
    let expiry = leader.certificate_expiry.as_ref().map(|t| t.0.to_string());
    assert_eq!(expiry.as_deref(), Some("2030-01-01T00:00:00Z"));

    let requests = requests.lock().map(|r| r.clone()).unwrap_or_default();
    let proxied = "/api/v1/namespaces/default/pods/https:vault-0:8200/proxy/v1/sys/seal-status";
    assert!(requests.iter().any(|r| r == proxied), "{requests:#?}");
}

/// The message of the error `fetch` ends with.
async fn message(namespace: &str, name: Option<&str>) -> String {
    let cluster = cluster(namespace, Arc::new(Mutex::new(Vec::new())));
    let error = fetch(&cluster, &query(name)).await.err();
    error.map(|e| e.to_string()).unwrap_or_default()
}

#[tokio::test]
async fn errors_say_what_to_do() {
    let missing = message("default", Some("gone")).await;
    assert_eq!(
        missing,
        "vault/gone not found in namespace default; list them with `kubectl get vaults -A`"
    );
    let no_crd = message("nocrd", None).await;
    assert!(no_crd.contains("`kubectl vault install`"), "{no_crd}");
    let no_crd_by_name = message("nocrd", Some("vault")).await;
    assert_eq!(no_crd_by_name, no_crd);
    let refused = message("locked", None).await;
    assert!(
        refused.starts_with("the cluster refused listing vaults in namespace locked: mocked"),
        "{refused}"
    );
    assert!(refused.contains("ask an administrator"), "{refused}");
}

#[tokio::test]
async fn an_api_server_that_does_not_answer() {
    let service = tower::service_fn(|_: Request<Body>| async {
        Err::<Response<Body>, _>(std::io::Error::other("connection refused"))
    });
    let cluster = Cluster {
        client: Client::new(service, "default"),
        namespace: "default".to_string(),
        server: "https://127.0.0.1:6443".to_string(),
    };
    let error = fetch(&cluster, &query(None)).await.err();
    let error = error.map(|e| e.to_string()).unwrap_or_default();
    assert!(
        error.starts_with("no cluster reachable at https://127.0.0.1:6443 while listing vaults"),
        "{error}"
    );
}
