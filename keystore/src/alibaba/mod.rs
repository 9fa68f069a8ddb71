//! Alibaba Cloud as key store: each value encrypted with a KMS key and kept as an OSS object.
//!
//! The layout follows Bank-Vaults' `pkg/kv/alibabaoss/oss.go` and `pkg/kv/alibabakms/kms.go`,
//! so that either reads the other's keys: the object `<ossPrefix><key>` (the prefix and the
//! name run together, no `/` added) holds KMS's `CiphertextBlob` as it comes, base64 text;
//! the value is sent to KMS `Encrypt` as it is, and `Decrypt`'s `Plaintext` is the value.
//!
//! Credentials come from the environment, as Alibaba's tools take them:
//! `ALIBABA_CLOUD_ACCESS_KEY_ID`, `ALIBABA_CLOUD_ACCESS_KEY_SECRET` and, for STS credentials,
//! `ALIBABA_CLOUD_SECURITY_TOKEN`; Bank-Vaults' `ALIBABA_ACCESS_KEY_ID` and
//! `ALIBABA_ACCESS_KEY_SECRET` are read when those are not set. KMS is called at
//! `https://kms.<kmsRegion>.aliyuncs.com` unless `VAULT_OPERATOR_ALIBABA_KMS_ENDPOINT` names
//! another endpoint (a full URL, for a VPC endpoint or a test server).

mod kms;
mod oss;
mod sign;

use std::fmt;

use async_trait::async_trait;
use reqwest::Url;
use vault_api::unseal::AlibabaKeyStore;

use crate::rest::{SetupError, backend, http_client, required};
use crate::{KeyStore, KeyStoreError, Secret};

/// The variable that overrides the KMS endpoint.
pub const KMS_ENDPOINT_VARIABLE: &str = "VAULT_OPERATOR_ALIBABA_KMS_ENDPOINT";

/// The error both KMS (as JSON) and OSS (as XML) answer with.
#[derive(serde::Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct ErrorBody {
    code: Option<String>,
    message: Option<String>,
    request_id: Option<String>,
}

/// An Alibaba Cloud AccessKey pair, with the STS token of temporary credentials.
#[derive(Clone)]
pub struct AlibabaCredentials {
    /// The AccessKey ID, which is not secret.
    pub access_key_id: String,
    /// The AccessKey secret.
    pub access_key_secret: Secret,
    /// The security token of STS credentials.
    pub security_token: Option<Secret>,
}

impl fmt::Debug for AlibabaCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AlibabaCredentials")
            .field("access_key_id", &self.access_key_id)
            .finish_non_exhaustive()
    }
}

impl AlibabaCredentials {
    /// The credentials in the process's environment.
    pub fn from_env() -> Option<Self> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// The credentials in the variables `lookup` finds; `None` without an id and a secret.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Option<Self> {
        let first = |names: &[&str]| {
            names
                .iter()
                .filter_map(|name| lookup(name))
                .find(|value| !value.is_empty())
        };
        let access_key_id = first(&["ALIBABA_CLOUD_ACCESS_KEY_ID", "ALIBABA_ACCESS_KEY_ID"])?;
        let access_key_secret = first(&[
            "ALIBABA_CLOUD_ACCESS_KEY_SECRET",
            "ALIBABA_ACCESS_KEY_SECRET",
        ])?;
        Some(Self {
            access_key_id,
            access_key_secret: Secret::new(access_key_secret),
            security_token: first(&["ALIBABA_CLOUD_SECURITY_TOKEN"]).map(Secret::new),
        })
    }
}

/// Values encrypted with Alibaba Cloud KMS and kept in an OSS bucket, laid out as
/// Bank-Vaults lays them out (see the module's doc).
pub struct OssKeyStore {
    bucket: oss::Bucket,
    prefix: String,
    kms: kms::Kms,
    credentials: AlibabaCredentials,
    http: reqwest::Client,
}

impl fmt::Debug for OssKeyStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OssKeyStore")
            .field("bucket", &self.bucket.name)
            .field("prefix", &self.prefix)
            .field("kms_key_id", &self.kms.key_id)
            .finish_non_exhaustive()
    }
}

impl OssKeyStore {
    /// The store `spec` names, with credentials and the KMS endpoint from the environment
    /// (see the module's doc).
    pub fn from_spec(spec: &AlibabaKeyStore) -> Result<Self, SetupError> {
        let store = describe(spec.oss_bucket.as_deref().unwrap_or_default());
        let credentials = AlibabaCredentials::from_env().ok_or_else(|| {
            SetupError::new(
                &store,
                "no credentials: set ALIBABA_CLOUD_ACCESS_KEY_ID and \
                 ALIBABA_CLOUD_ACCESS_KEY_SECRET",
            )
        })?;
        let kms_endpoint = std::env::var(KMS_ENDPOINT_VARIABLE)
            .ok()
            .filter(|value| !value.is_empty());
        Self::new(spec, credentials, kms_endpoint.as_deref())
    }

    /// The store `spec` names, with `credentials`, calling KMS at `kms_endpoint` (a URL)
    /// or, when `None`, at the public endpoint of `kmsRegion`.
    pub fn new(
        spec: &AlibabaKeyStore,
        credentials: AlibabaCredentials,
        kms_endpoint: Option<&str>,
    ) -> Result<Self, SetupError> {
        let store = describe(spec.oss_bucket.as_deref().unwrap_or_default());
        let bucket = required(&spec.oss_bucket, &store, "ossBucket")?;
        let key_id = required(&spec.kms_key_id, &store, "kmsKeyId")?;
        let oss_endpoint = required(&spec.oss_endpoint, &store, "ossEndpoint")?;
        let kms_endpoint = match kms_endpoint {
            Some(endpoint) => endpoint.to_string(),
            None => format!(
                "https://kms.{}.aliyuncs.com/",
                required(&spec.kms_region, &store, "kmsRegion")?
            ),
        };
        let kms_endpoint = parse_endpoint(&kms_endpoint)
            .map_err(|reason| SetupError::new(&store, format!("KMS endpoint: {reason}")))?;
        let oss_endpoint = parse_endpoint(&oss_endpoint)
            .map_err(|reason| SetupError::new(&store, format!("ossEndpoint: {reason}")))?;
        let http = http_client().map_err(|reason| SetupError::new(&store, reason))?;

        Ok(Self {
            bucket: oss::Bucket {
                endpoint: oss_endpoint,
                name: bucket,
            },
            prefix: spec.oss_prefix.clone().unwrap_or_default(),
            kms: kms::Kms {
                endpoint: kms_endpoint,
                key_id,
            },
            credentials,
            http,
        })
    }

    /// The object that holds `key`: Bank-Vaults' `objectNameWithPrefix`.
    fn object(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }

    fn error(&self, operation: &'static str, key: &str, reason: String) -> KeyStoreError {
        backend(self.describe(), operation, key, reason)
    }
}

fn describe(bucket: &str) -> String {
    format!("OSS bucket {bucket}")
}

/// An endpoint as a URL; a bare host name means HTTPS.
fn parse_endpoint(endpoint: &str) -> Result<Url, String> {
    let endpoint = if endpoint.contains("://") {
        endpoint.to_string()
    } else {
        format!("https://{endpoint}")
    };
    let url = Url::parse(&endpoint).map_err(|error| format!("{endpoint:?}: {error}"))?;
    match url.scheme() {
        "https" | "http" if url.host_str().is_some() => Ok(url),
        _ => Err(format!("{endpoint:?} is not an http(s) URL with a host")),
    }
}

#[async_trait]
impl KeyStore for OssKeyStore {
    fn describe(&self) -> String {
        describe(&self.bucket.name)
    }

    async fn get(&self, key: &str) -> Result<Option<Secret>, KeyStoreError> {
        let object = self.object(key);
        let content = self
            .bucket
            .get(&self.http, &self.credentials, &object)
            .await
            .map_err(|reason| self.error("reading", key, reason))?;
        let Some(content) = content else {
            return Ok(None);
        };

        let ciphertext = String::from_utf8(content)
            .map_err(|_| self.error("reading", key, format!("object {object} is not text")))?;
        self.kms
            .decrypt(&self.http, &self.credentials, &ciphertext)
            .await
            .map(Some)
            .map_err(|reason| self.error("decrypting", key, reason))
    }

    async fn set(&self, key: &str, value: &Secret) -> Result<(), KeyStoreError> {
        let ciphertext = self
            .kms
            .encrypt(&self.http, &self.credentials, value)
            .await
            .map_err(|reason| self.error("encrypting", key, reason))?;

        self.bucket
            .put(
                &self.http,
                &self.credentials,
                &self.object(key),
                ciphertext.into_bytes(),
            )
            .await
            .map_err(|reason| self.error("writing", key, reason))
    }

    async fn list(&self) -> Result<Vec<String>, KeyStoreError> {
        let objects = self
            .bucket
            .list(&self.http, &self.credentials, &self.prefix)
            .await
            .map_err(|reason| self.error("listing", "*", reason))?;
        let mut names: Vec<String> = objects
            .iter()
            .filter_map(|object| object.strip_prefix(&self.prefix))
            .filter(|name| !name.is_empty() && !name.contains('/'))
            .map(str::to_string)
            .collect();
        names.sort();
        Ok(names)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_come_from_alibabas_variables_or_bank_vaults() {
        let lookup = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                pairs
                    .iter()
                    .find(|(key, _)| *key == name)
                    .map(|(_, value)| value.to_string())
            }
        };
        let official = AlibabaCredentials::from_lookup(lookup(&[
            ("ALIBABA_CLOUD_ACCESS_KEY_ID", "LTAI-official"),
            ("ALIBABA_CLOUD_ACCESS_KEY_SECRET", "s1"),
            ("ALIBABA_ACCESS_KEY_ID", "LTAI-bank-vaults"),
            ("ALIBABA_CLOUD_SECURITY_TOKEN", "sts"),
        ]));
        let official = official.map(|c| (c.access_key_id, c.security_token.is_some()));
        assert_eq!(official, Some(("LTAI-official".to_string(), true)));

        let bank_vaults = AlibabaCredentials::from_lookup(lookup(&[
            ("ALIBABA_ACCESS_KEY_ID", "LTAI-bank-vaults"),
            ("ALIBABA_ACCESS_KEY_SECRET", "s2"),
        ]));
        let secret = bank_vaults.as_ref().map(|c| c.access_key_secret.expose());
        assert_eq!(secret, Some("s2"));
        assert!(format!("{bank_vaults:?}").contains("LTAI-bank-vaults"));
        assert!(!format!("{bank_vaults:?}").contains("s2"));

        let half = AlibabaCredentials::from_lookup(lookup(&[("ALIBABA_ACCESS_KEY_ID", "x")]));
        assert!(half.is_none());
    }

    #[test]
    fn a_spec_without_a_bucket_or_key_is_refused() {
        let credentials = AlibabaCredentials {
            access_key_id: "id".to_string(),
            access_key_secret: Secret::from("secret"),
            security_token: None,
        };
        let spec = AlibabaKeyStore {
            kms_region: Some("cn-hangzhou".to_string()),
            oss_endpoint: Some("oss-cn-hangzhou.aliyuncs.com".to_string()),
            oss_bucket: Some("keys".to_string()),
            ..Default::default()
        };
        let refused = OssKeyStore::new(&spec, credentials, None).err();
        assert_eq!(
            refused.map(|e| e.to_string()),
            Some("setting up OSS bucket keys: kmsKeyId is not set".to_string())
        );
    }
}
