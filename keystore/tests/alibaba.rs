//! `OssKeyStore` against a local stand-in for Alibaba Cloud: one loopback server that answers
//! KMS `Encrypt`/`Decrypt` (RPC style) and OSS `PutObject`/`GetObject`/`ListObjects`, as
//! their API references describe them, and refuses any request whose signature it does not
//! compute the same way itself. The signature checks here are written from the published
//! algorithms, not with the store's own signing code.

mod common;

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use common::{Failure, percent_decode, read, round_trip, start};
use hmac::{Hmac, KeyInit, Mac};
use md5::{Digest, Md5};
use reqwest::Url;
use sha1::Sha1;
use vault_api::unseal::AlibabaKeyStore;
use vault_keystore::{AlibabaCredentials, KeyStore, OssKeyStore, Secret};

const ACCESS_KEY_ID: &str = "LTAI5tTestKeyId";
const ACCESS_KEY_SECRET: &str = "test-access-key-secret";
const SECURITY_TOKEN: &str = "sts-token-for-tests";
const KMS_KEY_ID: &str = "key-0a1b2c3d";
const BUCKET: &str = "vault-keys";

/// What the stand-in knows and keeps.
#[derive(Default)]
struct Cloud {
    /// OSS objects by `<bucket>/<object>`.
    objects: Mutex<BTreeMap<String, Vec<u8>>>,
    /// Every RPC `SignatureNonce` seen: Alibaba refuses one used twice.
    nonces: Mutex<HashSet<String>>,
}

impl Cloud {
    fn objects(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Vec<u8>>> {
        self.objects.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The stand-in's "KMS encryption": reversible, keyed by the key id, and never the value.
fn fake_encrypt(key_id: &str, plaintext: &str) -> String {
    let scrambled: Vec<u8> = plaintext.bytes().map(|b| b ^ 0x5a).collect();
    STANDARD.encode([key_id.as_bytes(), b":", &scrambled].concat())
}

fn fake_decrypt(blob: &str) -> Option<(String, String)> {
    let raw = STANDARD.decode(blob).ok()?;
    let split = raw.iter().position(|b| *b == b':')?;
    let key_id = String::from_utf8(raw[..split].to_vec()).ok()?;
    let plain: Vec<u8> = raw[split + 1..].iter().map(|b| b ^ 0x5a).collect();
    Some((key_id, String::from_utf8(plain).ok()?))
}

fn hmac_sha1(key: &str, text: &str) -> String {
    let mut mac = Hmac::<Sha1>::new_from_slice(key.as_bytes()).unwrap_or_else(|_| panic!());
    mac.update(text.as_bytes());
    STANDARD.encode(mac.finalize().into_bytes())
}

/// RFC 3986 encoding as Alibaba's RPC signature document spells it.
fn rpc_encode(text: &str) -> String {
    let mut out = String::new();
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-_.~".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> &'a str {
    common::header(headers, name).unwrap_or_default()
}

fn kms_error(status: StatusCode, code: &str, message: &str) -> Response {
    let body = serde_json::json!({
        "Code": code, "Message": message, "RequestId": "kms-request-1",
    });
    (status, axum::Json(body)).into_response()
}

fn oss_error(status: StatusCode, code: &str, message: &str) -> Response {
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code>\
         <Message>{message}</Message><RequestId>oss-request-1</RequestId></Error>"
    );
    (status, [("content-type", "application/xml")], body).into_response()
}

/// KMS, RPC style: the parameters arrive as a form; the signature covers all but itself.
fn kms(cloud: &Cloud, body: &[u8]) -> Response {
    let Ok(form) = std::str::from_utf8(body) else {
        return kms_error(StatusCode::BAD_REQUEST, "InvalidParameter", "not text");
    };
    let Ok(url) = Url::parse(&format!("http://form/?{form}")) else {
        return kms_error(StatusCode::BAD_REQUEST, "InvalidParameter", "not a form");
    };
    let params: BTreeMap<String, String> = url.query_pairs().into_owned().collect();
    let param = |name: &str| params.get(name).map(String::as_str).unwrap_or_default();

    let canonical = params
        .iter()
        .filter(|(name, _)| name.as_str() != "Signature")
        .map(|(name, value)| format!("{}={}", rpc_encode(name), rpc_encode(value)))
        .collect::<Vec<_>>()
        .join("&");
    let expected = hmac_sha1(
        &format!("{ACCESS_KEY_SECRET}&"),
        &format!("POST&%2F&{}", rpc_encode(&canonical)),
    );
    let fresh = cloud
        .nonces
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .insert(param("SignatureNonce").to_string());
    let well_formed = param("AccessKeyId") == ACCESS_KEY_ID
        && param("SignatureMethod") == "HMAC-SHA1"
        && param("SignatureVersion") == "1.0"
        && param("Version") == "2016-01-20"
        && param("Format") == "JSON"
        && param("SecurityToken") == SECURITY_TOKEN
        && param("Timestamp").len() == 20
        && param("Timestamp").ends_with('Z')
        && fresh;
    if !well_formed {
        return kms_error(
            StatusCode::BAD_REQUEST,
            "MissingParameter",
            "common parameters",
        );
    }
    if param("Signature") != expected {
        return kms_error(
            StatusCode::BAD_REQUEST,
            "SignatureDoesNotMatch",
            "Specified signature is not matched with our calculation.",
        );
    }

    match param("Action") {
        "Encrypt" if param("KeyId") == KMS_KEY_ID => axum::Json(serde_json::json!({
            "CiphertextBlob": fake_encrypt(KMS_KEY_ID, param("Plaintext")),
            "KeyId": KMS_KEY_ID,
            "RequestId": "kms-request-2",
        }))
        .into_response(),
        "Decrypt" => match fake_decrypt(param("CiphertextBlob")) {
            Some((key_id, plaintext)) => axum::Json(serde_json::json!({
                "Plaintext": plaintext, "KeyId": key_id, "RequestId": "kms-request-3",
            }))
            .into_response(),
            None => kms_error(StatusCode::BAD_REQUEST, "InvalidCiphertext", "bad blob"),
        },
        _ => kms_error(
            StatusCode::NOT_FOUND,
            "Forbidden.KeyNotFound",
            "no such key",
        ),
    }
}

/// OSS with path-style addressing (the endpoint is an IP address): `/<bucket>/<object>`.
fn oss(cloud: &Cloud, method: &Method, url: &Url, headers: &HeaderMap, body: &[u8]) -> Response {
    let Some((bucket, object)) = url.path()[1..].split_once('/') else {
        return oss_error(StatusCode::BAD_REQUEST, "InvalidURI", "no bucket");
    };
    let object = percent_decode(object);
    let mut oss_headers: Vec<(String, &str)> = headers
        .iter()
        .map(|(name, value)| {
            (
                name.as_str().to_string(),
                value.to_str().unwrap_or_default(),
            )
        })
        .filter(|(name, _)| name.starts_with("x-oss-"))
        .collect();
    oss_headers.sort();
    let mut string_to_sign = format!(
        "{method}\n{}\n{}\n{}\n",
        header(headers, "content-md5"),
        header(headers, "content-type"),
        header(headers, "date"),
    );
    for (name, value) in &oss_headers {
        string_to_sign.push_str(&format!("{name}:{value}\n"));
    }
    string_to_sign.push_str(&format!("/{bucket}/{object}"));
    let expected = format!(
        "OSS {ACCESS_KEY_ID}:{}",
        hmac_sha1(ACCESS_KEY_SECRET, &string_to_sign)
    );
    if header(headers, "authorization") != expected {
        return oss_error(
            StatusCode::FORBIDDEN,
            "SignatureDoesNotMatch",
            "The request signature we calculated does not match the signature you provided.",
        );
    }
    let date_ok = httpdate::parse_http_date(header(headers, "date")).is_ok();
    if !date_ok || header(headers, "x-oss-security-token") != SECURITY_TOKEN {
        return oss_error(StatusCode::FORBIDDEN, "AccessDenied", "date or token");
    }
    if bucket != BUCKET {
        return oss_error(StatusCode::NOT_FOUND, "NoSuchBucket", "no such bucket");
    }

    let name = format!("{bucket}/{object}");
    match (method.as_str(), object.is_empty()) {
        ("PUT", false) => {
            let md5 = STANDARD.encode(Md5::digest(body));
            if header(headers, "content-md5") != md5 {
                return oss_error(StatusCode::BAD_REQUEST, "InvalidDigest", "Content-MD5");
            }
            cloud.objects().insert(name, body.to_vec());
            StatusCode::OK.into_response()
        }
        ("GET", false) => match cloud.objects().get(&name) {
            Some(content) => content.clone().into_response(),
            None => oss_error(
                StatusCode::NOT_FOUND,
                "NoSuchKey",
                "The key does not exist.",
            ),
        },
        ("GET", true) => list_objects(cloud, url),
        _ => oss_error(StatusCode::METHOD_NOT_ALLOWED, "MethodNotAllowed", "method"),
    }
}

/// ListObjects (V1). Pages hold at most two keys, fewer than asked, to exercise paging.
fn list_objects(cloud: &Cloud, url: &Url) -> Response {
    let query: BTreeMap<String, String> = url.query_pairs().into_owned().collect();
    let prefix = query.get("prefix").cloned().unwrap_or_default();
    let marker = query.get("marker").cloned().unwrap_or_default();
    let bucket_prefix = format!("{BUCKET}/");
    let keys: Vec<String> = cloud
        .objects()
        .keys()
        .filter_map(|name| name.strip_prefix(&bucket_prefix))
        .filter(|key| key.starts_with(&prefix) && key > &marker.as_str())
        .map(str::to_string)
        .collect();
    let page = &keys[..keys.len().min(2)];
    let truncated = keys.len() > page.len();
    let contents: String = page
        .iter()
        .map(|key| format!("<Contents><Key>{key}</Key><Size>1</Size></Contents>"))
        .collect();
    let next = match (truncated, page.last()) {
        (true, Some(last)) => format!("<NextMarker>{last}</NextMarker>"),
        _ => String::new(),
    };
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<ListBucketResult><Name>{BUCKET}</Name>\
         <Prefix>{prefix}</Prefix><Marker>{marker}</Marker><MaxKeys>1000</MaxKeys>\
         <IsTruncated>{truncated}</IsTruncated>{next}{contents}</ListBucketResult>"
    );
    (StatusCode::OK, [("content-type", "application/xml")], body).into_response()
}

async fn handle(State(cloud): State<Arc<Cloud>>, request: Request<Body>) -> Response {
    let Some((parts, body, url)) = read(request).await else {
        return StatusCode::BAD_REQUEST.into_response();
    };
    if parts.method == Method::POST && url.path() == "/" {
        kms(&cloud, &body)
    } else {
        oss(&cloud, &parts.method, &url, &parts.headers, &body)
    }
}

/// Starts the stand-in on a free loopback port and returns its URL.
async fn serve(cloud: Arc<Cloud>) -> Result<String, Failure> {
    start(axum::Router::new().fallback(handle).with_state(cloud)).await
}

fn store(endpoint: &str, prefix: &str, secret: &str) -> Result<OssKeyStore, Failure> {
    let spec = AlibabaKeyStore {
        kms_region: Some("cn-hangzhou".to_string()),
        kms_key_id: Some(KMS_KEY_ID.to_string()),
        oss_endpoint: Some(endpoint.to_string()),
        oss_bucket: Some(BUCKET.to_string()),
        oss_prefix: Some(prefix.to_string()),
    };
    let credentials = AlibabaCredentials {
        access_key_id: ACCESS_KEY_ID.to_string(),
        access_key_secret: Secret::from(secret),
        security_token: Some(Secret::from(SECURITY_TOKEN)),
    };
    Ok(OssKeyStore::new(&spec, credentials, Some(endpoint))?)
}

#[tokio::test]
async fn keys_round_trip_as_ciphertext_and_are_listed() -> Result<(), Failure> {
    let cloud = Arc::new(Cloud::default());
    let endpoint = serve(cloud.clone()).await?;
    let store = store(&endpoint, "vault/", ACCESS_KEY_SECRET)?;
    assert!(store.list().await?.is_empty());

    cloud
        .objects()
        .insert("vault-keys/other/vault-test".to_string(), Vec::new());
    let keys = [
        "vault-unseal-0",
        "vault-unseal-1",
        "vault-unseal-2",
        "vault-root",
    ];
    round_trip(&store, &keys, "value-5e1f").await?;

    let stored = cloud.objects().get("vault-keys/vault/vault-root").cloned();
    let stored = String::from_utf8(stored.unwrap_or_default())?;
    let decrypted = fake_decrypt(&stored).map(|(_, value)| value);
    assert_eq!(decrypted.as_deref(), Some("vault-root-value-5e1f"));
    assert!(
        !stored.contains("value-5e1f"),
        "the object holds the plaintext"
    );
    Ok(())
}

#[tokio::test]
async fn a_missing_key_is_none() -> Result<(), Failure> {
    let endpoint = serve(Arc::new(Cloud::default())).await?;
    let store = store(&endpoint, "vault/", ACCESS_KEY_SECRET)?;
    assert_eq!(store.get("vault-unseal-7").await?, None);
    Ok(())
}

#[tokio::test]
async fn a_wrong_secret_fails_with_the_clouds_error_and_no_key_material() -> Result<(), Failure> {
    let cloud = Arc::new(Cloud::default());
    let endpoint = serve(cloud.clone()).await?;
    let wrong = "wrong-access-key-secret";
    let store = store(&endpoint, "", wrong)?;

    let written = store
        .set("vault-root", &Secret::from("s.rootTokenValue"))
        .await;
    let message = written.err().map(|e| e.to_string()).unwrap_or_default();
    let expected = "encrypting vault-root in OSS bucket vault-keys: \
                    KMS Encrypt: HTTP 400 SignatureDoesNotMatch: Specified signature";
    assert!(message.starts_with(expected), "{message}");
    for secret in ["s.rootTokenValue", wrong, SECURITY_TOKEN] {
        assert!(!message.contains(secret), "{message}");
    }

    let blob = fake_encrypt(KMS_KEY_ID, "s.rootTokenValue");
    cloud
        .objects()
        .insert("vault-keys/vault-root".to_string(), blob.into_bytes());
    let read = store.get("vault-root").await;
    let message = read.err().map(|e| e.to_string()).unwrap_or_default();
    let expected = "reading vault-root in OSS bucket vault-keys: \
                    OSS GetObject: HTTP 403 SignatureDoesNotMatch: The request signature";
    assert!(message.starts_with(expected), "{message}");
    assert!(
        !message.contains("s.rootTokenValue") && !message.contains(wrong),
        "{message}"
    );
    Ok(())
}

/// Objects as Bank-Vaults writes them: `<prefix><key>`, holding KMS's ciphertext blob.
#[tokio::test]
async fn keys_written_by_bank_vaults_are_read() -> Result<(), Failure> {
    let cloud = Arc::new(Cloud::default());
    let endpoint = serve(cloud.clone()).await?;
    let blob = fake_encrypt(KMS_KEY_ID, "bank-vaults-unseal-key");
    cloud.objects().insert(
        "vault-keys/bv-vault-unseal-0".to_string(),
        blob.clone().into_bytes(),
    );
    cloud
        .objects()
        .insert("vault-keys/vault-unseal-1".to_string(), blob.into_bytes());

    let prefixed = store(&endpoint, "bv-", ACCESS_KEY_SECRET)?;
    let read = prefixed.get("vault-unseal-0").await?;
    assert_eq!(
        read.as_ref().map(Secret::expose),
        Some("bank-vaults-unseal-key")
    );

    let bare = store(&endpoint, "", ACCESS_KEY_SECRET)?;
    let read = bare.get("vault-unseal-1").await?;
    assert_eq!(
        read.as_ref().map(Secret::expose),
        Some("bank-vaults-unseal-key")
    );
    Ok(())
}
