//! The Vault KV key store against OpenBao dev servers on 127.0.0.1, logged in with a
//! token, a token file, and Kubernetes auth (checked by a TokenReview endpoint served here).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::Json;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use common::{BoxError, Server, error_message, tool};
use serde_json::{Value, json};
use vault_api::unseal::VaultKeyStore;
use vault_keystore::{KeyStore, Secret, VaultKvKeyStore};

const ROOT_TOKEN: &str = "dev-root";
const REVIEWER_JWT: &str = "token-reviewer-jwt";

/// The key store's policy: its folder and nothing else.
const POLICY: &str = r#"
path "secret/data/unseal/*" { capabilities = ["create", "read", "update"] }
path "secret/metadata/unseal/*" { capabilities = ["list", "read"] }
path "secret/metadata/unseal" { capabilities = ["list"] }
"#;

/// An OpenBao dev server, with the key store's policy.
struct Bao {
    _server: Server,
    bao: PathBuf,
    address: String,
}

impl Bao {
    fn start(port: u16) -> Result<Self, BoxError> {
        let bao = tool("bao")?;
        let listen = format!("127.0.0.1:{port}");
        let mut command = Command::new(&bao);
        command
            .args(["server", "-dev", "-dev-listen-address", &listen])
            .args(["-dev-root-token-id", ROOT_TOKEN])
            .env_remove("BAO_ADDR")
            .env_remove("VAULT_ADDR");
        let server = Server::start(command, port)?;
        let bao = Self {
            _server: server,
            bao,
            address: format!("http://{listen}"),
        };
        // The port opens before the dev server has unsealed itself.
        let start = Instant::now();
        while let Err(error) = bao.run(&["status"], None) {
            if start.elapsed() > Duration::from_secs(30) {
                return Err(error);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        bao.run(&["policy", "write", "unseal-keys", "-"], Some(POLICY))?;
        Ok(bao)
    }

    /// Runs the CLI as root; returns what it prints.
    fn run(&self, args: &[&str], input: Option<&str>) -> Result<String, BoxError> {
        let mut command = Command::new(&self.bao);
        command
            .args(args)
            .env("BAO_ADDR", &self.address)
            .env("BAO_TOKEN", ROOT_TOKEN)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        let mut child = command.spawn()?;
        if let (Some(text), Some(mut stdin)) = (input, child.stdin.take()) {
            std::io::Write::write_all(&mut stdin, text.as_bytes())?;
        }
        let output = child.wait_with_output()?;
        if !output.status.success() {
            let error = String::from_utf8_lossy(&output.stderr);
            return Err(format!("bao {args:?}: {error}").into());
        }
        Ok(String::from_utf8(output.stdout)?.trim().to_string())
    }

    fn spec(&self) -> VaultKeyStore {
        VaultKeyStore {
            address: Some(self.address.clone()),
            unseal_keys_path: Some("secret/data/unseal".to_string()),
            ..VaultKeyStore::default()
        }
    }

    /// The fields of the KV secret at `path` under `secret/`, read as root.
    fn kv_fields(&self, path: &str) -> Result<Value, BoxError> {
        let text = self.run(&["kv", "get", "-format=json", "-mount=secret", path], None)?;
        let read: Value = serde_json::from_str(&text)?;
        Ok(read["data"]["data"].clone())
    }
}

/// Stores values, reads them back and lists them; the same for every way of logging in.
async fn round_trip(store: &VaultKvKeyStore) -> Result<(), BoxError> {
    assert_eq!(store.get("vault-unseal-0").await?, None);
    assert_eq!(store.list().await?, Vec::<String>::new());
    store
        .set("vault-unseal-0", &Secret::from("share-zero"))
        .await?;
    store
        .set("vault-unseal-0", &Secret::from("share-zero-again"))
        .await?;
    store.set("vault-root", &Secret::from("root-token")).await?;
    assert_eq!(
        store.get("vault-unseal-0").await?,
        Some(Secret::from("share-zero-again"))
    );
    assert_eq!(store.list().await?, ["vault-root", "vault-unseal-0"]);
    Ok(())
}

#[tokio::test]
async fn with_a_token_in_bank_vaults_layout() -> Result<(), BoxError> {
    let bao = Bao::start(19120)?;
    let spec = VaultKeyStore {
        token: Some(ROOT_TOKEN.to_string()),
        ..bao.spec()
    };
    let store = VaultKvKeyStore::from_spec(&spec)?;
    round_trip(&store).await?;

    // One secret per key, its field named after the key, the value's bytes in base64.
    let fields = bao.kv_fields("unseal/vault-root")?;
    assert_eq!(
        fields,
        json!({ "vault-root": STANDARD.encode("root-token") })
    );

    // Written as Bank-Vaults writes it.
    let field = format!("vault-unseal-4={}", STANDARD.encode("bank-vaults-share"));
    bao.run(
        &[
            "kv",
            "put",
            "-mount=secret",
            "unseal/vault-unseal-4",
            &field,
        ],
        None,
    )?;
    assert_eq!(
        store.get("vault-unseal-4").await?,
        Some(Secret::from("bank-vaults-share"))
    );
    Ok(())
}

#[tokio::test]
async fn with_a_token_file_and_its_policy() -> Result<(), BoxError> {
    let bao = Bao::start(19121)?;
    let token = bao.run(
        &["token", "create", "-policy=unseal-keys", "-field=token"],
        None,
    )?;
    let folder = tempfile::tempdir()?;
    let token_path = folder.path().join("token");
    std::fs::write(&token_path, format!("{token}\n"))?;

    let spec = VaultKeyStore {
        token_path: Some(token_path.display().to_string()),
        ..bao.spec()
    };
    round_trip(&VaultKvKeyStore::from_spec(&spec)?).await?;

    // Outside its policy, the error says what Vault refused, and shows no token.
    let elsewhere = VaultKeyStore {
        unseal_keys_path: Some("secret/data/other".to_string()),
        ..spec
    };
    let store = VaultKvKeyStore::from_spec(&elsewhere)?;
    let written = store.set("vault-root", &Secret::from("root-token")).await;
    let message = error_message(written);
    assert!(
        message.starts_with("writing vault-root in Vault"),
        "{message}"
    );
    assert!(message.contains("403"), "{message}");
    assert!(
        !message.contains(&token) && !message.contains("root-token"),
        "{message}"
    );
    Ok(())
}

/// A service-account JWT as Kubernetes issues them; Vault reads its claims unverified and
/// asks the TokenReview API whether it is valid.
fn service_account_jwt() -> String {
    let header = json!({ "alg": "RS256", "typ": "JWT", "kid": "test" });
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|now| now.as_secs())
        .unwrap_or_default();
    let claims = json!({
        "iss": "kubernetes/serviceaccount",
        "sub": "system:serviceaccount:vault:vault-operator",
        "iat": now - 60,
        "nbf": now - 60,
        "exp": now + 3600,
        "kubernetes.io/serviceaccount/namespace": "vault",
        "kubernetes.io/serviceaccount/service-account.name": "vault-operator",
        "kubernetes.io/serviceaccount/service-account.uid": "uid-1",
        "kubernetes.io": {
            "namespace": "vault",
            "serviceaccount": { "name": "vault-operator", "uid": "uid-1" }
        }
    });
    format!(
        "{}.{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string()),
        URL_SAFE_NO_PAD.encode([7u8; 256])
    )
}

/// Answers TokenReviews as the Kubernetes API would: the JWT `valid` is the service
/// account `vault/vault-operator`; nothing else is authenticated. Reviews must come with
/// the reviewer's JWT.
async fn serve_token_reviews(port: u16, valid: String) -> Result<(), BoxError> {
    let review = move |headers: HeaderMap, Json(body): Json<Value>| {
        let valid = valid.clone();
        async move {
            let reviewer = headers
                .get("authorization")
                .and_then(|value| value.to_str().ok());
            if reviewer != Some(&format!("Bearer {REVIEWER_JWT}")) {
                return (StatusCode::UNAUTHORIZED, Json(json!({})));
            }
            let status = if body["spec"]["token"].as_str() == Some(valid.as_str()) {
                json!({
                    "authenticated": true,
                    "user": {
                        "username": "system:serviceaccount:vault:vault-operator",
                        "uid": "uid-1",
                        "groups": ["system:serviceaccounts", "system:serviceaccounts:vault"]
                    }
                })
            } else {
                json!({ "authenticated": false, "error": "invalid token" })
            };
            let answer = json!({
                "apiVersion": "authentication.k8s.io/v1",
                "kind": "TokenReview",
                "status": status
            });
            (StatusCode::CREATED, Json(answer))
        }
    };
    let app =
        axum::Router::new().route("/apis/authentication.k8s.io/v1/tokenreviews", post(review));
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(())
}

fn write_file(folder: &Path, name: &str, text: &str) -> Result<PathBuf, BoxError> {
    let path = folder.join(name);
    std::fs::write(&path, text)?;
    Ok(path)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_kubernetes_auth() -> Result<(), BoxError> {
    let review_port = 19140;
    let jwt = service_account_jwt();
    serve_token_reviews(review_port, jwt.clone()).await?;
    let bao = Bao::start(19122)?;
    // Bao wants a CA even for a plain-HTTP API server; this one is never used.
    let ca = rcgen::generate_simple_self_signed(vec!["kubernetes.test".to_string()])?;
    bao.run(&["auth", "enable", "-path=k8s", "kubernetes"], None)?;
    bao.run(
        &[
            "write",
            "auth/k8s/config",
            &format!("kubernetes_host=http://127.0.0.1:{review_port}"),
            &format!("kubernetes_ca_cert={}", ca.cert.pem()),
            &format!("token_reviewer_jwt={REVIEWER_JWT}"),
            "disable_local_ca_jwt=true",
        ],
        None,
    )?;
    bao.run(
        &[
            "write",
            "auth/k8s/role/vault-operator",
            "bound_service_account_names=vault-operator",
            "bound_service_account_namespaces=vault",
            "token_policies=unseal-keys",
        ],
        None,
    )?;
    let folder = tempfile::tempdir()?;
    let jwt_path = write_file(folder.path(), "token", &jwt)?;

    let spec = VaultKeyStore {
        role: Some("vault-operator".to_string()),
        auth_path: Some("k8s".to_string()),
        ..bao.spec()
    };
    let store = VaultKvKeyStore::from_spec(&spec)?.with_service_account_token(&jwt_path);
    round_trip(&store).await?;

    // A token that Vault no longer takes is replaced by logging in again.
    bao.run(&["token", "revoke", "-mode=path", "auth/k8s"], None)?;
    assert_eq!(
        store.get("vault-root").await?,
        Some(Secret::from("root-token"))
    );

    // A JWT the API server does not vouch for gets no token.
    let forged = write_file(folder.path(), "forged", "eyJhbGciOiJSUzI1NiJ9.e30.c2ln")?;
    let store = VaultKvKeyStore::from_spec(&spec)?.with_service_account_token(&forged);
    let read = store.get("vault-root").await;
    let message = error_message(read);
    assert!(
        message.contains("logging in with Kubernetes auth at auth/k8s"),
        "{message}"
    );
    Ok(())
}
