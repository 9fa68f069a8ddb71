//! Oracle Cloud as key store: each value encrypted with an OCI Vault key and kept as an
//! Object Storage object.
//!
//! The layout follows Bank-Vaults' `pkg/kv/oci/oci.go` and `pkg/kv/ocikms/ocikms.go`, so
//! that either reads the other's keys: the object `<bucketPrefix>/<key>` (Bank-Vaults puts a
//! `/` between them even when the prefix is empty, giving `/<key>`) holds the `ciphertext`
//! that KMS `encrypt` returned, as it comes; the value goes to `encrypt` base64-encoded, and
//! `decrypt`'s `plaintext` is base64 of the value.
//!
//! Credentials come from the OCI configuration file, as the CLI and SDKs read it: profile
//! `DEFAULT` of `OCI_CONFIG_FILE`, `OCI_CLI_CONFIG_FILE` or `~/.oci/config` (see
//! [`OciConfig`]). Object Storage is called at `https://objectstorage.<region>.oraclecloud.com`
//! unless `VAULT_OPERATOR_OCI_OBJECT_STORAGE_ENDPOINT` names another endpoint (a full URL).

mod config;
mod sign;

use std::fmt;
use std::time::SystemTime;

use async_trait::async_trait;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use reqwest::{Method, Url};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use vault_api::unseal::OciKeyStore as OciSpec;
use zeroize::Zeroizing;

pub use config::OciConfig;
use sign::{Body, RequestSigner};

use crate::rest::{Answer, SetupError, backend, http_client, required};
use crate::{KeyStore, KeyStoreError, Secret};

/// The variable that overrides the Object Storage endpoint.
pub const OBJECT_STORAGE_ENDPOINT_VARIABLE: &str = "VAULT_OPERATOR_OCI_OBJECT_STORAGE_ENDPOINT";

/// In a path segment, everything but `A-Z a-z 0-9 - _ . ~` is encoded, `/` too.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// Values encrypted with an OCI Vault key and kept in an Object Storage bucket, laid out as
/// Bank-Vaults lays them out (see the module's doc).
pub struct OciBucketKeyStore {
    namespace: String,
    bucket: String,
    prefix: String,
    key_ocid: String,
    crypto_endpoint: Url,
    object_storage: Url,
    signer: RequestSigner,
    http: reqwest::Client,
}

impl fmt::Debug for OciBucketKeyStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OciBucketKeyStore")
            .field("namespace", &self.namespace)
            .field("bucket", &self.bucket)
            .field("prefix", &self.prefix)
            .field("key_ocid", &self.key_ocid)
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct ErrorBody {
    code: Option<String>,
    message: Option<String>,
}

#[derive(Deserialize)]
struct Encrypted {
    ciphertext: String,
}

#[derive(Deserialize)]
struct Decrypted {
    plaintext: Secret,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct ObjectList {
    objects: Vec<ListedObject>,
    next_start_with: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct ListedObject {
    name: String,
}

impl OciBucketKeyStore {
    /// The store `spec` names, with the credentials of profile `DEFAULT` of the OCI
    /// configuration file and the Object Storage endpoint of its region (see the module's
    /// doc).
    pub fn from_spec(spec: &OciSpec) -> Result<Self, SetupError> {
        let store = describe(spec);
        let path = OciConfig::default_path();
        let config =
            OciConfig::load(&path, "DEFAULT").map_err(|reason| SetupError::new(&store, reason))?;
        let endpoint = std::env::var(OBJECT_STORAGE_ENDPOINT_VARIABLE)
            .ok()
            .filter(|value| !value.is_empty());
        Self::new(spec, config, endpoint.as_deref())
    }

    /// The store `spec` names, signing with `config`'s key, calling Object Storage at
    /// `object_storage_endpoint` (a URL) or, when `None`, at that of `config`'s region.
    pub fn new(
        spec: &OciSpec,
        config: OciConfig,
        object_storage_endpoint: Option<&str>,
    ) -> Result<Self, SetupError> {
        let store = describe(spec);
        let namespace = required(&spec.bucket_namespace, &store, "bucketNamespace")?;
        let bucket = required(&spec.bucket_name, &store, "bucketName")?;
        let key_ocid = required(&spec.key_ocid, &store, "keyOCID")?;
        let crypto_endpoint = required(
            &spec.cryptographic_endpoint,
            &store,
            "cryptographicEndpoint",
        )?;
        let object_storage = match object_storage_endpoint {
            Some(endpoint) => endpoint.to_string(),
            None => format!("https://objectstorage.{}.oraclecloud.com", config.region),
        };
        let parse = |endpoint: &str, what: &str| {
            Url::parse(endpoint)
                .ok()
                .filter(|url| matches!(url.scheme(), "https" | "http") && url.has_host())
                .ok_or_else(|| SetupError::new(&store, format!("{what} {endpoint:?} is not a URL")))
        };
        let crypto_endpoint = parse(&crypto_endpoint, "cryptographicEndpoint")?;
        let object_storage = parse(&object_storage, "the Object Storage endpoint")?;
        let http = http_client().map_err(|reason| SetupError::new(&store, reason))?;

        let signer = RequestSigner::new(
            &config.tenancy,
            &config.user,
            &config.fingerprint,
            config.key,
        );
        Ok(Self {
            namespace,
            bucket,
            prefix: spec.bucket_prefix.clone().unwrap_or_default(),
            key_ocid,
            crypto_endpoint,
            object_storage,
            signer,
            http,
        })
    }

    /// The object that holds `key`: Bank-Vaults' `objectNameWithPrefix`.
    fn object(&self, key: &str) -> String {
        format!("{}/{key}", self.prefix)
    }

    /// `/n/<namespace>/b/<bucket>/o/<object>` on the Object Storage endpoint.
    fn object_url(&self, object: &str, query: &str) -> Result<Url, String> {
        let mut path = format!(
            "n/{}/b/{}/o",
            utf8_percent_encode(&self.namespace, SEGMENT),
            utf8_percent_encode(&self.bucket, SEGMENT)
        );
        if !object.is_empty() {
            path.push('/');
            path.extend(utf8_percent_encode(object, SEGMENT));
        }
        if !query.is_empty() {
            path.push('?');
            path.push_str(query);
        }
        join(&self.object_storage, &path)
    }

    /// Sends a signed request and returns the answer, whatever its status.
    async fn send(
        &self,
        call: &str,
        method: Method,
        url: Url,
        body: Option<Body<'_>>,
    ) -> Result<Answer, String> {
        let date = httpdate::fmt_http_date(SystemTime::now());
        let headers = self.signer.headers(&method, &url, &date, body.as_ref());
        let mut request = self
            .http
            .request(method, url)
            .header("accept", "application/json");
        for (name, value) in headers {
            request = request.header(name, value);
        }
        if let Some(body) = body {
            request = request.body(body.content.to_vec());
        }
        Answer::exchange(call, request, "opc-request-id").await
    }

    /// POSTs `payload` to the crypto endpoint's `operation` and parses the answer.
    async fn kms<T: DeserializeOwned>(&self, operation: &str, payload: &[u8]) -> Result<T, String> {
        let call = format!("OCI KMS {operation}");
        let url = join(&self.crypto_endpoint, &format!("20180608/{operation}"))?;
        let body = Body {
            content_type: "application/json",
            content: payload,
        };
        let answer = self.send(&call, Method::POST, url, Some(body)).await?;
        if !answer.is_success() {
            return Err(failure(&answer, &call));
        }
        serde_json::from_slice(&answer.body)
            .map_err(|error| format!("{call}: unexpected answer: {}", crate::json_error(&error)))
    }

    fn error(&self, operation: &'static str, key: &str, reason: String) -> KeyStoreError {
        backend(self.describe(), operation, key, reason)
    }
}

fn describe(spec: &OciSpec) -> String {
    format!(
        "Object Storage bucket {}/{}",
        spec.bucket_namespace.as_deref().unwrap_or_default(),
        spec.bucket_name.as_deref().unwrap_or_default()
    )
}

/// `path` under `base`, keeping any path `base` has.
fn join(base: &Url, path: &str) -> Result<Url, String> {
    let url = format!("{}/{path}", base.as_str().trim_end_matches('/'));
    Url::parse(&url).map_err(|error| format!("URL {url:?}: {error}"))
}

fn failure(answer: &Answer, call: &str) -> String {
    let error: ErrorBody = serde_json::from_slice(&answer.body).unwrap_or_default();
    answer
        .failure(error.code, error.message, None)
        .describe(call)
}

#[async_trait]
impl KeyStore for OciBucketKeyStore {
    fn describe(&self) -> String {
        format!("Object Storage bucket {}/{}", self.namespace, self.bucket)
    }

    async fn get(&self, key: &str) -> Result<Option<Secret>, KeyStoreError> {
        let call = "OCI Object Storage GetObject";
        let read = async {
            let url = self.object_url(&self.object(key), "")?;
            let answer = self.send(call, Method::GET, url, None).await?;
            if answer.is_success() {
                return Ok(Some(answer.body.to_vec()));
            }
            let error: ErrorBody = serde_json::from_slice(&answer.body).unwrap_or_default();
            if answer.status == 404 && error.code.as_deref() == Some("ObjectNotFound") {
                return Ok(None);
            }
            Err(failure(&answer, call))
        };
        let Some(ciphertext) = read
            .await
            .map_err(|reason| self.error("reading", key, reason))?
        else {
            return Ok(None);
        };

        let decrypt = async {
            let ciphertext =
                String::from_utf8(ciphertext).map_err(|_| "the object is not text".to_string())?;
            let payload = serde_json::json!({"keyId": self.key_ocid, "ciphertext": ciphertext});
            let answer: Decrypted = self.kms("decrypt", payload.to_string().as_bytes()).await?;
            let plaintext = STANDARD
                .decode(answer.plaintext.expose())
                .map(Zeroizing::new)
                .map_err(|_| "OCI KMS decrypt: the plaintext is not base64".to_string())?;
            Secret::from_bytes(plaintext.to_vec())
                .ok_or_else(|| "the decrypted value is not UTF-8".to_string())
        };
        decrypt
            .await
            .map(Some)
            .map_err(|reason| self.error("decrypting", key, reason))
    }

    async fn set(&self, key: &str, value: &Secret) -> Result<(), KeyStoreError> {
        let plaintext = Zeroizing::new(STANDARD.encode(value.expose()));
        let payload = Zeroizing::new(
            serde_json::json!({"keyId": self.key_ocid, "plaintext": plaintext.as_str()})
                .to_string(),
        );
        let encrypted: Encrypted = self
            .kms("encrypt", payload.as_bytes())
            .await
            .map_err(|reason| self.error("encrypting", key, reason))?;

        let call = "OCI Object Storage PutObject";
        let write = async {
            let url = self.object_url(&self.object(key), "")?;
            let body = Body {
                content_type: "application/octet-stream",
                content: encrypted.ciphertext.as_bytes(),
            };
            let answer = self.send(call, Method::PUT, url, Some(body)).await?;
            match answer.is_success() {
                true => Ok(()),
                false => Err(failure(&answer, call)),
            }
        };
        write
            .await
            .map_err(|reason| self.error("writing", key, reason))
    }

    async fn list(&self) -> Result<Vec<String>, KeyStoreError> {
        let call = "OCI Object Storage ListObjects";
        let prefix = format!("{}/", self.prefix);
        let mut names = Vec::new();
        let mut start: Option<String> = None;
        loop {
            let mut query = format!("prefix={}", utf8_percent_encode(&prefix, SEGMENT));
            if let Some(start) = &start {
                query.push_str(&format!("&start={}", utf8_percent_encode(start, SEGMENT)));
            }
            let page = async {
                let url = self.object_url("", &query)?;
                let answer = self.send(call, Method::GET, url, None).await?;
                if !answer.is_success() {
                    return Err(failure(&answer, call));
                }
                serde_json::from_slice::<ObjectList>(&answer.body).map_err(|error| {
                    format!("{call}: unexpected answer: {}", crate::json_error(&error))
                })
            };
            let page = page
                .await
                .map_err(|reason| self.error("listing", "*", reason))?;
            names.extend(
                page.objects
                    .iter()
                    .filter_map(|object| object.name.strip_prefix(&prefix))
                    .filter(|name| !name.is_empty() && !name.contains('/'))
                    .map(str::to_string),
            );
            match page.next_start_with {
                Some(next) if !next.is_empty() && Some(&next) != start.as_ref() => {
                    start = Some(next)
                }
                _ => break,
            }
        }
        names.sort();
        Ok(names)
    }
}
