//! The Kubernetes calls of the certificate keeper against a stand-in API server: which
//! requests it sends, and what it writes into the Secret and the webhook configurations.

use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use axum::http::{Method, Request, Response, StatusCode};
use base64::Engine as _;
use serde_json::{Value, json};
use vault_webhook::certs::cluster::ClusterCerts;
use vault_webhook::certs::{Lifetimes, bundle_trusts};
use vault_webhook::tls::ServingCert;

const NAMESPACE: &str = "vault-operator";
const SECRET_PATH: &str = "/api/v1/namespaces/vault-operator/secrets/vault-webhook-tls";
const SECRETS_PATH: &str = "/api/v1/namespaces/vault-operator/secrets";
const MUTATING_PATH: &str =
    "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/vault-webhook";
const VALIDATING_PATH: &str =
    "/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations/vault-webhook";

/// What the stand-in API server holds, and the requests it was sent.
#[derive(Default)]
struct Cluster {
    secret: Option<Value>,
    mutating: Value,
    validating: Value,
    requests: Vec<String>,
    /// Another replica writes the Secret between this one's read and write.
    conflict_on_write: bool,
}

fn configuration(kind: &str, webhook: &str) -> Value {
    json!({
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": kind,
        "metadata": {"name": "vault-webhook", "resourceVersion": "1"},
        "webhooks": [{
            "name": webhook,
            "admissionReviewVersions": ["v1"],
            "sideEffects": "None",
            "clientConfig": {"service": {"name": "vault-webhook", "namespace": NAMESPACE}},
        }],
    })
}

fn empty_secret() -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "vault-webhook-tls", "namespace": NAMESPACE,
            "resourceVersion": "1"},
        "type": "Opaque",
    })
}

fn cluster(secret: Option<Value>) -> Arc<Mutex<Cluster>> {
    Arc::new(Mutex::new(Cluster {
        secret,
        mutating: configuration("MutatingWebhookConfiguration", "mutate.vaults"),
        validating: configuration("ValidatingWebhookConfiguration", "validate.vaults"),
        requests: Vec::new(),
        conflict_on_write: false,
    }))
}

fn status(code: StatusCode, reason: &str) -> Response<String> {
    let body = json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
        "code": code.as_u16(), "reason": reason, "message": reason});
    respond(code, &body)
}

fn respond(code: StatusCode, body: &Value) -> Response<String> {
    let mut response = Response::new(body.to_string());
    *response.status_mut() = code;
    response
}

fn bump(object: &mut Value) {
    let version = object["metadata"]["resourceVersion"]
        .as_str()
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or_default();
    object["metadata"]["resourceVersion"] = json!((version + 1).to_string());
}

/// Answers one request the way the API server would, for the few calls the keeper makes.
fn answer(cluster: &mut Cluster, method: &Method, path: &str, body: &[u8]) -> Response<String> {
    let sent: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    match (method.as_str(), path) {
        ("GET", SECRET_PATH) => match &cluster.secret {
            Some(secret) => respond(StatusCode::OK, secret),
            None => status(StatusCode::NOT_FOUND, "NotFound"),
        },
        ("PUT", SECRET_PATH) => {
            let current = cluster
                .secret
                .as_ref()
                .map(|s| s["metadata"]["resourceVersion"].clone());
            let stale = current != Some(sent["metadata"]["resourceVersion"].clone());
            if stale || cluster.conflict_on_write {
                return status(StatusCode::CONFLICT, "Conflict");
            }
            let mut stored = sent;
            bump(&mut stored);
            cluster.secret = Some(stored.clone());
            respond(StatusCode::OK, &stored)
        }
        ("POST", SECRETS_PATH) => {
            let mut stored = sent;
            stored["metadata"]["resourceVersion"] = json!("1");
            cluster.secret = Some(stored.clone());
            respond(StatusCode::CREATED, &stored)
        }
        ("GET", MUTATING_PATH) => respond(StatusCode::OK, &cluster.mutating),
        ("GET", VALIDATING_PATH) => respond(StatusCode::OK, &cluster.validating),
        ("PATCH", MUTATING_PATH | VALIDATING_PATH) => {
            let target = if path == MUTATING_PATH {
                &mut cluster.mutating
            } else {
                &mut cluster.validating
            };
            let patch: Result<json_patch::Patch, _> = serde_json::from_value(sent);
            match patch.map(|p| json_patch::patch(target, &p)) {
                Ok(Ok(())) => {
                    bump(target);
                    respond(StatusCode::OK, target)
                }
                _ => status(StatusCode::UNPROCESSABLE_ENTITY, "Invalid"),
            }
        }
        _ => status(StatusCode::NOT_FOUND, "NotFound"),
    }
}

fn client(cluster: Arc<Mutex<Cluster>>) -> kube::Client {
    let service = tower::service_fn(move |request: Request<kube::client::Body>| {
        let cluster = cluster.clone();
        async move {
            let (parts, body) = request.into_parts();
            let body = axum::body::to_bytes(axum::body::Body::new(body), 1 << 20)
                .await
                .unwrap_or_default();
            let content_type = parts
                .headers
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_string();
            let mut cluster = cluster.lock().unwrap_or_else(|e| e.into_inner());
            let path = parts.uri.path().to_string();
            let mut line = format!("{} {path}", parts.method);
            if parts.method == Method::PATCH {
                line.push_str(&format!(" ({content_type})"));
            }
            cluster.requests.push(line);
            Ok::<_, Infallible>(answer(&mut cluster, &parts.method, &path, &body))
        }
    });
    kube::Client::new(service, NAMESPACE)
}

fn keeper(cluster: &Arc<Mutex<Cluster>>) -> ClusterCerts {
    ClusterCerts::new(
        client(cluster.clone()),
        NAMESPACE,
        "vault-webhook-tls",
        "vault-webhook",
        "vault-webhook.vault-operator.svc",
        Lifetimes::default(),
    )
}

fn requests(cluster: &Arc<Mutex<Cluster>>) -> Vec<String> {
    let mut cluster = cluster.lock().unwrap_or_else(|e| e.into_inner());
    std::mem::take(&mut cluster.requests)
}

fn secret_entry(cluster: &Arc<Mutex<Cluster>>, key: &str) -> String {
    let cluster = cluster.lock().unwrap_or_else(|e| e.into_inner());
    let encoded = cluster
        .secret
        .as_ref()
        .and_then(|s| s["data"][key].as_str().map(String::from))
        .unwrap_or_default();
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .unwrap_or_default();
    String::from_utf8(decoded).unwrap_or_default()
}

fn ca_bundle(cluster: &Arc<Mutex<Cluster>>, mutating: bool) -> Vec<u8> {
    let cluster = cluster.lock().unwrap_or_else(|e| e.into_inner());
    let configuration = if mutating {
        &cluster.mutating
    } else {
        &cluster.validating
    };
    let encoded = configuration["webhooks"][0]["clientConfig"]["caBundle"]
        .as_str()
        .unwrap_or_default();
    base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .unwrap_or_default()
}

#[tokio::test]
async fn a_first_round_fills_the_secret_and_both_ca_bundles() {
    let cluster = cluster(Some(empty_secret()));
    let serving = ServingCert::new();
    let result = keeper(&cluster).round(&serving).await;
    assert!(result.is_ok(), "{result:?}");

    let json_patch = "(application/json-patch+json)";
    assert_eq!(
        requests(&cluster),
        [
            format!("GET {SECRET_PATH}"),
            format!("GET {MUTATING_PATH}"),
            format!("GET {VALIDATING_PATH}"),
            format!("PUT {SECRET_PATH}"),
            format!("PATCH {MUTATING_PATH} {json_patch}"),
            format!("PATCH {VALIDATING_PATH} {json_patch}"),
        ]
    );
    assert!(serving.is_loaded());

    let (ca, leaf) = (
        secret_entry(&cluster, "ca.crt"),
        secret_entry(&cluster, "tls.crt"),
    );
    assert!(ca.starts_with("-----BEGIN CERTIFICATE-----"), "{ca}");
    assert!(!secret_entry(&cluster, "tls.key").is_empty());
    for mutating in [true, false] {
        let bundle = ca_bundle(&cluster, mutating);
        assert!(bundle_trusts(&bundle, &ca), "the CA is trusted");
        assert!(
            !bundle_trusts(&bundle, &leaf),
            "the serving certificate is not"
        );
    }

    // Nothing to do the second time: reads only.
    let result = keeper(&cluster).round(&serving).await;
    assert!(result.is_ok(), "{result:?}");
    assert_eq!(
        requests(&cluster),
        [
            format!("GET {SECRET_PATH}"),
            format!("GET {MUTATING_PATH}"),
            format!("GET {VALIDATING_PATH}"),
        ]
    );
}

#[tokio::test]
async fn a_missing_secret_is_created() {
    let cluster = cluster(None);
    let serving = ServingCert::new();
    let result = keeper(&cluster).round(&serving).await;
    assert!(result.is_ok(), "{result:?}");
    assert!(requests(&cluster).contains(&format!("POST {SECRETS_PATH}")));
    assert!(!secret_entry(&cluster, "ca.key").is_empty());
    assert!(serving.is_loaded());
}

#[tokio::test]
async fn a_conflicting_write_fails_the_round_and_serves_nothing() {
    let cluster = cluster(Some(empty_secret()));
    cluster
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .conflict_on_write = true;
    let serving = ServingCert::new();
    let result = keeper(&cluster).round(&serving).await;
    let message = result.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(
        message.starts_with("replacing Secret vault-operator/vault-webhook-tls: "),
        "{message}"
    );
    assert!(!serving.is_loaded(), "nothing unsaved is served");
    assert!(
        ca_bundle(&cluster, true).is_empty(),
        "nothing unsaved is trusted"
    );
}
