//! `OciBucketKeyStore` against a local stand-in for Oracle Cloud: one loopback server that
//! answers the KMS crypto endpoint's `encrypt`/`decrypt` and Object Storage's PutObject,
//! GetObject and ListObjects, as their API references describe them, and refuses any request
//! whose HTTP signature does not verify with the public half of the API key the test made.
//! The check here rebuilds the signing string from the request itself, not with the store's
//! own signing code. Credentials reach the store as they do in a cluster: an OCI config file
//! and a PEM key, written to a temporary folder.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use common::{Failure, header, percent_decode, read, round_trip, start};
use reqwest::Url;
use rsa::pkcs1v15::{Signature, VerifyingKey};
use rsa::pkcs8::{EncodePrivateKey, LineEnding};
use rsa::signature::Verifier;
use rsa::{PrivateKey, PublicKey};
use sha2::{Digest, Sha256};
use vault_api::unseal::OciKeyStore;
use vault_keystore::{KeyStore, OciBucketKeyStore, OciConfig, Secret};

const TENANCY: &str = "ocid1.tenancy.oc1..aaaatenancy";
const USER: &str = "ocid1.user.oc1..aaaauser";
const FINGERPRINT: &str = "12:34:56:78:9a:bc:de:f0:12:34:56:78:9a:bc:de:f0";
const KEY_OCID: &str = "ocid1.key.oc1.iad.aaaakey";
const NAMESPACE: &str = "axaxnpcrorw5";
const BUCKET: &str = "vault-keys";

/// The user's API key, and another that OCI does not know; made once, as it takes a while.
fn keys() -> &'static (PrivateKey, PrivateKey) {
    static KEYS: OnceLock<(PrivateKey, PrivateKey)> = OnceLock::new();
    KEYS.get_or_init(|| {
        let mut rng = rand::rng();
        let make = |rng: &mut rand::rngs::ThreadRng| {
            PrivateKey::new(rng, 2048).unwrap_or_else(|error| panic!("RSA key: {error}"))
        };
        (make(&mut rng), make(&mut rng))
    })
}

/// What the stand-in knows and keeps.
struct Cloud {
    public_key: PublicKey,
    /// Objects by name in the one bucket.
    objects: Mutex<BTreeMap<String, Vec<u8>>>,
}

impl Cloud {
    fn new() -> Self {
        Self {
            public_key: keys().0.to_public_key(),
            objects: Mutex::default(),
        }
    }

    fn objects(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Vec<u8>>> {
        self.objects.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The stand-in's "KMS encryption" of decoded plaintext bytes: reversible, never the value.
fn fake_encrypt(plaintext: &[u8]) -> String {
    let scrambled: Vec<u8> = plaintext.iter().map(|b| b ^ 0x3c).collect();
    STANDARD.encode([b"ocikms:".as_slice(), &scrambled].concat())
}

fn fake_decrypt(ciphertext: &str) -> Option<Vec<u8>> {
    let raw = STANDARD.decode(ciphertext).ok()?;
    let scrambled = raw.strip_prefix(b"ocikms:")?;
    Some(scrambled.iter().map(|b| b ^ 0x3c).collect())
}

fn error(status: StatusCode, code: &str, message: &str) -> Response {
    let body = serde_json::json!({"code": code, "message": message});
    (
        status,
        [("opc-request-id", "oci-request-1")],
        axum::Json(body),
    )
        .into_response()
}

/// Checks the `Authorization: Signature ...` header as OCI documents it: key id, algorithm,
/// the headers a request of this kind must sign, the body's hash and the RSA signature.
fn verify(cloud: &Cloud, method: &Method, target: &str, headers: &HeaderMap, body: &[u8]) -> bool {
    let Some(authorization) = header(headers, "authorization") else {
        return false;
    };
    let Some(params) = authorization.strip_prefix("Signature ") else {
        return false;
    };
    let params: BTreeMap<&str, &str> = params
        .split(',')
        .filter_map(|part| part.split_once('='))
        .map(|(name, value)| (name, value.trim_matches('"')))
        .collect();
    let signed: Vec<&str> = params
        .get("headers")
        .map(|list| list.split(' ').collect())
        .unwrap_or_default();
    let mut required = vec!["date", "(request-target)", "host"];
    if !body.is_empty() || *method == Method::PUT || *method == Method::POST {
        required.extend(["content-length", "content-type", "x-content-sha256"]);
    }
    let hash = STANDARD.encode(Sha256::digest(body));
    let framing = params.get("version") == Some(&"1")
        && params.get("algorithm") == Some(&"rsa-sha256")
        && params.get("keyId").copied() == Some(&format!("{TENANCY}/{USER}/{FINGERPRINT}"))
        && required.iter().all(|name| signed.contains(name))
        && (!signed.contains(&"x-content-sha256")
            || header(headers, "x-content-sha256") == Some(&hash))
        && (!signed.contains(&"content-length")
            || header(headers, "content-length") == Some(&body.len().to_string()));
    if !framing {
        return false;
    }

    let lines: Vec<String> = signed
        .iter()
        .map(|name| match *name {
            "(request-target)" => format!(
                "(request-target): {} {target}",
                method.as_str().to_lowercase()
            ),
            name => format!("{name}: {}", header(headers, name).unwrap_or_default()),
        })
        .collect();
    let Some(signature) = params
        .get("signature")
        .and_then(|s| STANDARD.decode(s).ok())
    else {
        return false;
    };
    let Ok(signature) = Signature::try_from(signature.as_slice()) else {
        return false;
    };
    VerifyingKey::<Sha256>::new(cloud.public_key.clone())
        .verify(lines.join("\n").as_bytes(), &signature)
        .is_ok()
}

fn kms(operation: &str, body: &[u8]) -> Response {
    let Ok(request) = serde_json::from_slice::<serde_json::Value>(body) else {
        return error(StatusCode::BAD_REQUEST, "InvalidParameter", "not JSON");
    };
    if request["keyId"] != KEY_OCID {
        return error(
            StatusCode::NOT_FOUND,
            "NotAuthorizedOrNotFound",
            "no such key",
        );
    }
    let field = |name: &str| request[name].as_str().unwrap_or_default().to_string();
    match operation {
        "encrypt" => match STANDARD.decode(field("plaintext")) {
            Ok(plaintext) => {
                let ciphertext = fake_encrypt(&plaintext);
                axum::Json(serde_json::json!({"ciphertext": ciphertext, "keyId": KEY_OCID}))
                    .into_response()
            }
            Err(_) => error(
                StatusCode::BAD_REQUEST,
                "InvalidParameter",
                "plaintext is not base64",
            ),
        },
        "decrypt" => match fake_decrypt(&field("ciphertext")) {
            Some(plaintext) => {
                let plaintext = STANDARD.encode(plaintext);
                axum::Json(serde_json::json!({"plaintext": plaintext, "keyId": KEY_OCID}))
                    .into_response()
            }
            None => error(
                StatusCode::BAD_REQUEST,
                "InvalidParameter",
                "bad ciphertext",
            ),
        },
        _ => error(StatusCode::NOT_FOUND, "NotFound", "no such operation"),
    }
}

fn object_storage(cloud: &Cloud, method: &Method, url: &Url, body: &[u8]) -> Response {
    let segments: Vec<&str> = url.path().trim_start_matches('/').split('/').collect();
    let (namespace, bucket, object) = match segments.as_slice() {
        ["n", namespace, "b", bucket, "o"] => (*namespace, *bucket, None),
        ["n", namespace, "b", bucket, "o", object] => {
            (*namespace, *bucket, Some(percent_decode(object)))
        }
        _ => return error(StatusCode::NOT_FOUND, "NotFound", "no such path"),
    };
    if namespace != NAMESPACE || bucket != BUCKET {
        return error(StatusCode::NOT_FOUND, "BucketNotFound", "no such bucket");
    }

    match (method.as_str(), object) {
        ("PUT", Some(object)) => {
            cloud.objects().insert(object, body.to_vec());
            StatusCode::OK.into_response()
        }
        ("GET", Some(object)) => match cloud.objects().get(&object) {
            Some(content) => content.clone().into_response(),
            None => error(
                StatusCode::NOT_FOUND,
                "ObjectNotFound",
                "The object was not found",
            ),
        },
        ("GET", None) => {
            // Pages of two names, fewer than OCI's default, to exercise paging.
            let query: BTreeMap<String, String> = url.query_pairs().into_owned().collect();
            let prefix = query.get("prefix").cloned().unwrap_or_default();
            let start = query.get("start").cloned().unwrap_or_default();
            let names: Vec<String> = cloud
                .objects()
                .keys()
                .filter(|name| name.starts_with(&prefix) && **name >= start)
                .cloned()
                .collect();
            let objects: Vec<_> = names
                .iter()
                .take(2)
                .map(|n| serde_json::json!({"name": n}))
                .collect();
            let mut answer = serde_json::json!({"objects": objects});
            if let Some(next) = names.get(2) {
                answer["nextStartWith"] = serde_json::json!(next);
            }
            axum::Json(answer).into_response()
        }
        _ => error(StatusCode::METHOD_NOT_ALLOWED, "NotAllowed", "method"),
    }
}

async fn handle(State(cloud): State<Arc<Cloud>>, request: Request<Body>) -> Response {
    let Some((parts, body, url)) = read(request).await else {
        return StatusCode::BAD_REQUEST.into_response();
    };
    let target = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/");
    if !verify(&cloud, &parts.method, target, &parts.headers, &body) {
        return error(
            StatusCode::UNAUTHORIZED,
            "NotAuthenticated",
            "The required information to complete authentication was not provided or was \
             incorrect.",
        );
    }
    match url.path().strip_prefix("/20180608/") {
        Some(operation) if parts.method == Method::POST => kms(operation, &body),
        _ => object_storage(&cloud, &parts.method, &url, &body),
    }
}

/// Starts the stand-in on a free loopback port and returns its URL.
async fn serve(cloud: Arc<Cloud>) -> Result<String, Failure> {
    start(axum::Router::new().fallback(handle).with_state(cloud)).await
}

/// An OCI config file and PEM key in `folder`, as `oci setup config` writes them.
fn write_config(folder: &Path, key: &PrivateKey) -> Result<OciConfig, Failure> {
    let key_file = folder.join("oci_api_key.pem");
    std::fs::write(&key_file, key.to_pkcs8_pem(LineEnding::LF)?.as_bytes())?;
    let config = folder.join("config");
    std::fs::write(
        &config,
        format!(
            "[DEFAULT]\nuser={USER}\nfingerprint={FINGERPRINT}\ntenancy={TENANCY}\n\
             region=us-ashburn-1\nkey_file={}\n",
            key_file.display()
        ),
    )?;
    Ok(OciConfig::load(&config, "DEFAULT")?)
}

fn store(endpoint: &str, prefix: &str, key: &PrivateKey) -> Result<OciBucketKeyStore, Failure> {
    let folder = tempfile::tempdir()?;
    let config = write_config(folder.path(), key)?;
    let spec = OciKeyStore {
        key_ocid: Some(KEY_OCID.to_string()),
        cryptographic_endpoint: Some(endpoint.to_string()),
        bucket_name: Some(BUCKET.to_string()),
        bucket_namespace: Some(NAMESPACE.to_string()),
        bucket_prefix: Some(prefix.to_string()),
    };
    Ok(OciBucketKeyStore::new(&spec, config, Some(endpoint))?)
}

#[tokio::test]
async fn keys_round_trip_as_ciphertext_and_are_listed() -> Result<(), Failure> {
    let cloud = Arc::new(Cloud::new());
    let endpoint = serve(cloud.clone()).await?;
    let store = store(&endpoint, "vault", &keys().0)?;
    assert!(store.list().await?.is_empty());

    cloud
        .objects()
        .insert("other/vault-root".to_string(), Vec::new());
    let keys = [
        "vault-recovery-0",
        "vault-recovery-1",
        "vault-root",
        "vault-test",
        "vault-init",
    ];
    round_trip(&store, &keys, "value-77aa").await?;

    let stored = cloud.objects().get("vault/vault-root").cloned();
    let stored = String::from_utf8(stored.unwrap_or_default())?;
    assert_eq!(
        fake_decrypt(&stored),
        Some(b"vault-root-value-77aa".to_vec())
    );
    assert!(
        !stored.contains("value-77aa"),
        "the object holds the plaintext"
    );
    Ok(())
}

#[tokio::test]
async fn a_missing_key_is_none() -> Result<(), Failure> {
    let endpoint = serve(Arc::new(Cloud::new())).await?;
    let store = store(&endpoint, "vault", &keys().0)?;
    assert_eq!(store.get("vault-unseal-3").await?, None);
    Ok(())
}

#[tokio::test]
async fn an_unknown_api_key_fails_with_the_clouds_error_and_no_key_material() -> Result<(), Failure>
{
    let cloud = Arc::new(Cloud::new());
    let endpoint = serve(cloud.clone()).await?;
    let store = store(&endpoint, "vault", &keys().1)?;

    let written = store
        .set("vault-root", &Secret::from("s.rootTokenValue"))
        .await;
    let message = written.err().map(|e| e.to_string()).unwrap_or_default();
    let expected = format!(
        "encrypting vault-root in Object Storage bucket {NAMESPACE}/{BUCKET}: OCI KMS encrypt: \
         HTTP 401 NotAuthenticated: The required information"
    );
    assert!(message.starts_with(&expected), "{message}");
    assert!(message.contains("(request id oci-request-1)"), "{message}");
    let plaintext_base64 = STANDARD.encode("s.rootTokenValue");
    assert!(!message.contains("s.rootTokenValue") && !message.contains(&plaintext_base64));

    cloud.objects().insert(
        "vault/vault-root".to_string(),
        fake_encrypt(b"x").into_bytes(),
    );
    let read = store.get("vault-root").await;
    let message = read.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(
        message.contains("OCI Object Storage GetObject: HTTP 401 NotAuthenticated"),
        "{message}"
    );
    Ok(())
}

/// Objects as Bank-Vaults writes them: `<prefix>/<key>` (`/<key>` without a prefix), holding
/// the KMS ciphertext of the value.
#[tokio::test]
async fn keys_written_by_bank_vaults_are_read() -> Result<(), Failure> {
    let cloud = Arc::new(Cloud::new());
    let endpoint = serve(cloud.clone()).await?;
    let ciphertext = fake_encrypt(b"bank-vaults-unseal-key");
    cloud.objects().insert(
        "bv/vault-unseal-0".to_string(),
        ciphertext.clone().into_bytes(),
    );
    cloud
        .objects()
        .insert("/vault-unseal-1".to_string(), ciphertext.into_bytes());

    let prefixed = store(&endpoint, "bv", &keys().0)?;
    let read = prefixed.get("vault-unseal-0").await?;
    assert_eq!(
        read.as_ref().map(Secret::expose),
        Some("bank-vaults-unseal-key")
    );

    let bare = store(&endpoint, "", &keys().0)?;
    let read = bare.get("vault-unseal-1").await?;
    assert_eq!(
        read.as_ref().map(Secret::expose),
        Some("bank-vaults-unseal-key")
    );
    assert_eq!(bare.list().await?, ["vault-unseal-1"]);
    Ok(())
}
