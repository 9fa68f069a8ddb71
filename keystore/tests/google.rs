//! The Google key store against the Cloud Storage emulator (PyPI `gcp-storage-emulator`,
//! installed by `scripts/tools.sh gcs-emulator`) and a Cloud KMS and OAuth2 token endpoint
//! served in this process, written to the published REST reference:
//! - `POST /v1/{name}:encrypt` takes `{"plaintext": base64}` and answers
//!   `{"name", "ciphertext": base64, ...}`; `:decrypt` the reverse;
//! - errors are `{"error": {"code", "message", "status"}}`;
//! - the token endpoint takes a service account's RS256-signed JWT (RFC 7523) and answers
//!   `{"access_token", "expires_in", "token_type"}`.
//!
//! Nothing leaves loopback: endpoints are explicit, and the metadata server is never asked.
//! Ports 19210-19229.

mod common;

use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::extract::{Form, Path as UrlPath, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use reqwest::Url;
use serde_json::{Value, json};
use vault_api::unseal::GoogleKeyStore;
use vault_keystore::{
    GcsKeyStore, GoogleConfig, GoogleCredentials, KeyStore, Secret, ServiceAccountKey,
};

use common::error_message;

type TestResult = Result<(), Box<dyn std::error::Error>>;

const KEY_NAME: &str = "projects/vault-test/locations/global/keyRings/vault/cryptoKeys/unseal";
const ACCESS_TOKEN: &str = "ya29.test-access-token";
const ACCOUNT: &str = "vault-operator@vault-test.iam.gserviceaccount.com";
const BUCKET: &str = "vault-unseal-keys";
/// What the fake KMS puts before its ciphertext, so that a test can tell ciphertext apart.
const CIPHERTEXT_MARK: &[u8] = b"\x0afake-kms\x12";

/// The fake KMS's encryption: reversible, and never the plaintext itself.
fn fake_encrypt(plaintext: &[u8]) -> Vec<u8> {
    let mut ciphertext = CIPHERTEXT_MARK.to_vec();
    ciphertext.extend(plaintext.iter().map(|byte| byte ^ 0x5a));
    ciphertext
}

fn fake_decrypt(ciphertext: &[u8]) -> Option<Vec<u8>> {
    let body = ciphertext.strip_prefix(CIPHERTEXT_MARK)?;
    Some(body.iter().map(|byte| byte ^ 0x5a).collect())
}

/// The Cloud Storage emulator, stopped on drop.
struct Emulator {
    child: Child,
    url: String,
}

impl Emulator {
    fn start(port: u16) -> Result<Self, Box<dyn std::error::Error>> {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/tools.sh");
        let output = Command::new("bash")
            .arg(script)
            .arg("gcs-emulator")
            .output()?;
        if !output.status.success() {
            let stderr = String::from_utf8_lossy(&output.stderr);
            return Err(format!("scripts/tools.sh gcs-emulator failed: {stderr}").into());
        }
        let program = String::from_utf8(output.stdout)?.trim().to_string();
        let child = Command::new(program)
            .args(["start", "--host", "127.0.0.1", "--port", &port.to_string()])
            .args(["--in-memory", "--default-bucket", BUCKET, "--quiet"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        let emulator = Self {
            child,
            url: format!("http://127.0.0.1:{port}"),
        };

        let address = SocketAddr::from(([127, 0, 0, 1], port));
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect_timeout(&address, Duration::from_millis(200)).is_err() {
            if Instant::now() > deadline {
                return Err("the Cloud Storage emulator did not start in 30 s".into());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(emulator)
    }

    /// The raw bytes of object `name`, read past the store.
    async fn object(&self, name: &str) -> Result<Option<Vec<u8>>, reqwest::Error> {
        let url = format!("{}/storage/v1/b/{BUCKET}/o/{name}?alt=media", self.url);
        let response = plain_client()?.get(url).send().await?;
        if response.status() == reqwest::StatusCode::NOT_FOUND {
            return Ok(None);
        }
        Ok(Some(response.error_for_status()?.bytes().await?.to_vec()))
    }

    /// Writes object `name` past the store, as another operator would.
    async fn put_object(&self, name: &str, bytes: Vec<u8>) -> Result<(), reqwest::Error> {
        let url = format!(
            "{}/upload/storage/v1/b/{BUCKET}/o?uploadType=media&name={name}",
            self.url
        );
        plain_client()?
            .post(url)
            .body(bytes)
            .send()
            .await?
            .error_for_status()
            .map(drop)
    }
}

/// A client for the emulator, past the store: plain HTTP, but reqwest wants a provider.
fn plain_client() -> Result<reqwest::Client, reqwest::Error> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder().build()
}

impl Drop for Emulator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What the fake Google endpoints saw.
#[derive(Default)]
struct Seen {
    token_requests: AtomicUsize,
    metadata_requests: AtomicUsize,
    kms_requests: AtomicUsize,
}

struct Fake {
    seen: Seen,
    public_key: Vec<u8>,
    token_uri: String,
}

fn google_error(status: StatusCode, code: &str, message: &str) -> (StatusCode, Json<Value>) {
    let body = json!({ "error": { "code": status.as_u16(), "message": message, "status": code } });
    (status, Json(body))
}

/// The OAuth2 token endpoint: checks the grant type and the JWT's claims and signature.
async fn token(
    State(fake): State<Arc<Fake>>,
    Form(form): Form<Vec<(String, String)>>,
) -> (StatusCode, Json<Value>) {
    fake.seen.token_requests.fetch_add(1, Ordering::SeqCst);
    let field = |name: &str| {
        form.iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.clone())
            .unwrap_or_default()
    };
    let invalid = |description: &str| {
        let body = json!({ "error": "invalid_grant", "error_description": description });
        (StatusCode::BAD_REQUEST, Json(body))
    };
    if field("grant_type") != "urn:ietf:params:oauth:grant-type:jwt-bearer" {
        return invalid("unsupported grant type");
    }

    let assertion = field("assertion");
    let parts: Vec<&str> = assertion.split('.').collect();
    let [header, claims, signature] = parts[..] else {
        return invalid("not a JWT");
    };
    let decode = |part: &str| {
        URL_SAFE_NO_PAD
            .decode(part)
            .ok()
            .and_then(|bytes| serde_json::from_slice::<Value>(&bytes).ok())
    };
    let (Some(header), Some(claims)) = (decode(header), decode(claims)) else {
        return invalid("not a JWT");
    };
    let signature = URL_SAFE_NO_PAD.decode(signature).unwrap_or_default();
    let key = ring::signature::UnparsedPublicKey::new(
        &ring::signature::RSA_PKCS1_2048_8192_SHA256,
        &fake.public_key,
    );
    let signed = assertion
        .rsplit_once('.')
        .map(|(signed, _)| signed)
        .unwrap_or_default();
    if header["alg"] != "RS256" || key.verify(signed.as_bytes(), &signature).is_err() {
        return invalid("Invalid JWT Signature.");
    }
    let scope = claims["scope"].as_str().unwrap_or_default();
    if claims["iss"] != ACCOUNT
        || claims["aud"] != fake.token_uri.as_str()
        || !scope.contains("https://www.googleapis.com/auth/cloud-platform")
    {
        return invalid("Invalid JWT claims.");
    }

    let body = json!({ "access_token": ACCESS_TOKEN, "expires_in": 3599, "token_type": "Bearer" });
    (StatusCode::OK, Json(body))
}

/// The metadata server's token for the node's service account, which needs the
/// `Metadata-Flavor: Google` header.
async fn metadata_token(
    State(fake): State<Arc<Fake>>,
    headers: HeaderMap,
) -> (StatusCode, Json<Value>) {
    fake.seen.metadata_requests.fetch_add(1, Ordering::SeqCst);
    if headers.get("metadata-flavor").and_then(|v| v.to_str().ok()) != Some("Google") {
        return (
            StatusCode::FORBIDDEN,
            Json(json!("Missing Metadata-Flavor header")),
        );
    }
    let body = json!({ "access_token": ACCESS_TOKEN, "expires_in": 3599, "token_type": "Bearer" });
    (StatusCode::OK, Json(body))
}

/// Cloud KMS's `cryptoKeys.encrypt` and `cryptoKeys.decrypt`, for [`KEY_NAME`] only.
async fn kms(
    State(fake): State<Arc<Fake>>,
    UrlPath(resource): UrlPath<String>,
    headers: HeaderMap,
    Json(request): Json<Value>,
) -> (StatusCode, Json<Value>) {
    fake.seen.kms_requests.fetch_add(1, Ordering::SeqCst);
    let bearer = headers
        .get("authorization")
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default();
    if bearer != format!("Bearer {ACCESS_TOKEN}") {
        let message = "Request had invalid authentication credentials.";
        return google_error(StatusCode::UNAUTHORIZED, "UNAUTHENTICATED", message);
    }
    let Some((name, method)) = resource.rsplit_once(':') else {
        return google_error(StatusCode::NOT_FOUND, "NOT_FOUND", "no such method");
    };
    if name != KEY_NAME {
        let message = format!("CryptoKey {name} not found.");
        return google_error(StatusCode::NOT_FOUND, "NOT_FOUND", &message);
    }

    let input = |field: &str| {
        request[field]
            .as_str()
            .and_then(|b| STANDARD.decode(b).ok())
    };
    match method {
        "encrypt" => match input("plaintext") {
            Some(plaintext) => {
                let body = json!({
                    "name": format!("{KEY_NAME}/cryptoKeyVersions/1"),
                    "ciphertext": STANDARD.encode(fake_encrypt(&plaintext)),
                    "protectionLevel": "SOFTWARE",
                });
                (StatusCode::OK, Json(body))
            }
            None => {
                let message = "Invalid value at 'plaintext' (TYPE_BYTES)";
                google_error(StatusCode::BAD_REQUEST, "INVALID_ARGUMENT", message)
            }
        },
        "decrypt" => match input("ciphertext").as_deref().and_then(fake_decrypt) {
            Some(plaintext) => {
                let body = json!({ "plaintext": STANDARD.encode(plaintext), "usedPrimary": true });
                (StatusCode::OK, Json(body))
            }
            None => {
                let message = "Decryption failed: the ciphertext is invalid.";
                google_error(StatusCode::BAD_REQUEST, "INVALID_ARGUMENT", message)
            }
        },
        _ => google_error(StatusCode::NOT_FOUND, "NOT_FOUND", "no such method"),
    }
}

/// The fake KMS and token endpoint on `port`, and a service account key it trusts.
async fn start_fake(
    port: u16,
) -> Result<(Arc<Fake>, ServiceAccountKey), Box<dyn std::error::Error>> {
    let base = format!("http://127.0.0.1:{port}");
    let key = service_account(&format!("{base}/token"))?;
    let der: String = key
        .private_key
        .expose()
        .lines()
        .filter(|line| !line.starts_with("-----"))
        .collect();
    let key_pair = ring::signature::RsaKeyPair::from_pkcs8(&STANDARD.decode(der)?)
        .map_err(|error| format!("fixture key: {error}"))?;
    let public_key = ring::signature::KeyPair::public_key(&key_pair)
        .as_ref()
        .to_vec();
    let fake = Arc::new(Fake {
        seen: Seen::default(),
        public_key,
        token_uri: key.token_uri.clone(),
    });

    let app = Router::new()
        .route("/token", post(token))
        .route("/v1/{*resource}", post(kms))
        .route(
            "/computeMetadata/v1/instance/service-accounts/default/token",
            get(metadata_token),
        )
        .with_state(fake.clone());
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok((fake, key))
}

fn spec(bucket: &str, crypto_key: &str) -> GoogleKeyStore {
    GoogleKeyStore {
        kms_key_ring: Some("vault".into()),
        kms_crypto_key: Some(crypto_key.into()),
        kms_location: Some("global".into()),
        kms_project: Some("vault-test".into()),
        storage_bucket: Some(bucket.into()),
    }
}

/// The emulator on `port`, the fake KMS on `port + 1`, and a store on both for `bucket`
/// and KMS key `crypto_key`, with the fixture's service account.
async fn setup(
    port: u16,
    bucket: &str,
    crypto_key: &str,
) -> Result<(Emulator, Arc<Fake>, GcsKeyStore), Box<dyn std::error::Error>> {
    let emulator = Emulator::start(port)?;
    let (fake, key) = start_fake(port + 1).await?;
    let config = GoogleConfig {
        storage_endpoint: Url::parse(&emulator.url)?,
        kms_endpoint: Url::parse(&format!("http://127.0.0.1:{}", port + 1))?,
        credentials: GoogleCredentials::ServiceAccount(key),
    };
    let store = GcsKeyStore::new(&spec(bucket, crypto_key), config)?;
    Ok((emulator, fake, store))
}

#[tokio::test]
async fn keys_are_encrypted_with_kms_and_kept_one_object_each() -> TestResult {
    let (emulator, fake, store) = setup(19210, BUCKET, "unseal").await?;

    let share = Secret::from("c2e5a1f0d3b4-unseal-share-0");
    let root = Secret::from("hvs.root-token-value");
    store.set("vault-unseal-0", &share).await?;
    store.set("vault-root", &root).await?;
    assert_eq!(store.get("vault-unseal-0").await?, Some(share.clone()));
    assert_eq!(store.get("vault-root").await?, Some(root));
    assert_eq!(store.get("vault-unseal-1").await?, None);
    let mut names = store.list().await?;
    names.sort();
    assert_eq!(names, ["vault-root", "vault-unseal-0"]);

    // The object is the raw ciphertext KMS returned: not the value, not base64.
    let object = emulator
        .object("vault-unseal-0")
        .await?
        .ok_or("no object")?;
    assert_eq!(object, fake_encrypt(share.expose().as_bytes()));

    // One token for all the calls, and every value went through KMS.
    assert_eq!(fake.seen.token_requests.load(Ordering::SeqCst), 1);
    assert_eq!(fake.seen.kms_requests.load(Ordering::SeqCst), 4);
    Ok(())
}

#[tokio::test]
async fn keys_written_by_bank_vaults_are_read() -> TestResult {
    let (emulator, _fake, store) = setup(19212, BUCKET, "unseal").await?;

    // Bank-Vaults' gckms over gcs: object named as the key, holding KMS's raw ciphertext.
    let ciphertext = fake_encrypt(b"bank-vaults-share-3");
    emulator.put_object("vault-unseal-3", ciphertext).await?;
    let read = store.get("vault-unseal-3").await?;
    assert_eq!(read, Some(Secret::from("bank-vaults-share-3")));
    Ok(())
}

#[tokio::test]
async fn a_missing_bucket_is_named() -> TestResult {
    let (_emulator, _fake, store) = setup(19214, "no-such-bucket", "unseal").await?;

    assert_eq!(
        error_message(store.get("vault-unseal-0").await),
        "reading vault-unseal-0 in gs://no-such-bucket (KMS key projects/vault-test/locations/\
         global/keyRings/vault/cryptoKeys/unseal): bucket no-such-bucket does not exist"
    );
    let write = error_message(store.set("vault-test", &Secret::from("t")).await);
    assert!(
        write.ends_with("bucket no-such-bucket does not exist"),
        "{write}"
    );
    let list = error_message(store.list().await);
    assert!(
        list.ends_with("bucket no-such-bucket does not exist"),
        "{list}"
    );
    Ok(())
}

#[tokio::test]
async fn kms_errors_name_the_key_and_never_the_value() -> TestResult {
    let (emulator, _fake, store) = setup(19216, BUCKET, "other-key").await?;

    let value = Secret::from("share-that-must-not-leak");
    let error = error_message(store.set("vault-unseal-0", &value).await);
    assert!(
        error.starts_with("encrypting vault-unseal-0 in gs://vault-unseal-keys"),
        "{error}"
    );
    assert!(
        error.ends_with(
            "404 Not Found NOT_FOUND: CryptoKey projects/vault-test/locations/global/keyRings/\
             vault/cryptoKeys/other-key not found."
        ),
        "{error}"
    );
    assert!(!error.contains(value.expose()));
    assert_eq!(
        emulator.object("vault-unseal-0").await?,
        None,
        "nothing was written"
    );
    Ok(())
}

#[tokio::test]
async fn a_ciphertext_kms_refuses_is_an_error_not_a_missing_key() -> TestResult {
    let (emulator, _fake, store) = setup(19218, BUCKET, "unseal").await?;

    emulator
        .put_object("vault-unseal-1", b"garbage".to_vec())
        .await?;
    let error = error_message(store.get("vault-unseal-1").await);
    assert!(
        error.ends_with(
            "400 Bad Request INVALID_ARGUMENT: Decryption failed: the ciphertext is invalid."
        ),
        "{error}"
    );
    Ok(())
}

#[tokio::test]
async fn tokens_come_from_the_metadata_server_without_a_key_file() -> TestResult {
    let emulator = Emulator::start(19220)?;
    let (fake, _key) = start_fake(19221).await?;
    let config = GoogleConfig {
        storage_endpoint: Url::parse(&emulator.url)?,
        kms_endpoint: Url::parse("http://127.0.0.1:19221")?,
        credentials: GoogleCredentials::MetadataServer("127.0.0.1:19221".to_string()),
    };
    let store = GcsKeyStore::new(&spec(BUCKET, "unseal"), config)?;

    store.set("vault-init", &Secret::from("started")).await?;
    assert_eq!(
        store.get("vault-init").await?,
        Some(Secret::from("started"))
    );
    assert_eq!(fake.seen.metadata_requests.load(Ordering::SeqCst), 1);
    assert_eq!(fake.seen.token_requests.load(Ordering::SeqCst), 0);
    Ok(())
}

/// The service account key of the fixture, whose tokens come from `token_uri`.
fn service_account(token_uri: &str) -> Result<ServiceAccountKey, Box<dyn std::error::Error>> {
    let pem = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/test-service-account.pem"),
    )?;
    Ok(ServiceAccountKey {
        kind: "service_account".to_string(),
        client_email: ACCOUNT.to_string(),
        private_key: Secret::new(pem),
        token_uri: token_uri.to_string(),
    })
}
