//! `unsealConfig.google`: values encrypted with a Cloud KMS key and kept in a Cloud Storage
//! bucket, one object per key.
//!
//! The layout is Bank-Vaults' (`pkg/kv/gckms/cloudkms.go` over `pkg/kv/gcs/gcs.go`), so that
//! either operator reads the keys the other wrote: the object is named as the key
//! (`vault-unseal-0`, `vault-root`, ...) with no prefix, since the Bank-Vaults operator passes
//! none, and holds the raw ciphertext KMS returned, base64-decoded.
//!
//! Endpoints and credentials come from the environment, as Google's SDKs take them:
//! - `GOOGLE_APPLICATION_CREDENTIALS`: a service account's JSON key file. Without it, tokens
//!   come from the node's metadata server (`GCE_METADATA_HOST`, by default
//!   `metadata.google.internal`), as with GKE workload identity.
//! - `STORAGE_EMULATOR_HOST`: Cloud Storage at this host (`host:port` or a URL), such as an
//!   emulator.
//! - `GOOGLE_KMS_ENDPOINT`: Cloud KMS at this URL instead of `https://cloudkms.googleapis.com`.

mod rest;

use async_trait::async_trait;
use reqwest::Url;
use vault_api::unseal::GoogleKeyStore;

pub use rest::{GoogleCredentials, ServiceAccountKey};

use crate::cloud::{SetupError, backend_error, http_client};
use crate::{KeyStore, KeyStoreError, Secret};
use rest::{Failure, GoogleClient};

/// Cloud Storage's endpoint.
const STORAGE_ENDPOINT: &str = "https://storage.googleapis.com";
/// Cloud KMS's endpoint.
const KMS_ENDPOINT: &str = "https://cloudkms.googleapis.com";
/// The metadata server's host on Google's machines.
const METADATA_HOST: &str = "metadata.google.internal";

/// Where the store finds Google's APIs and how it authenticates.
#[derive(Clone, Debug)]
pub struct GoogleConfig {
    /// Cloud Storage's JSON API, such as `https://storage.googleapis.com`.
    pub storage_endpoint: Url,
    /// Cloud KMS's REST API, such as `https://cloudkms.googleapis.com`.
    pub kms_endpoint: Url,
    /// How to get access tokens.
    pub credentials: GoogleCredentials,
}

impl GoogleConfig {
    /// The configuration the environment gives (see the module's documentation).
    pub async fn from_env() -> Result<Self, SetupError> {
        Self::from_lookup(|name| std::env::var(name).ok()).await
    }

    /// The configuration from the variables `lookup` returns.
    pub async fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, SetupError> {
        let storage_endpoint = match lookup("STORAGE_EMULATOR_HOST") {
            // The SDKs take a bare `host:port` here as well as a URL.
            Some(host) if !host.contains("://") => {
                endpoint("STORAGE_EMULATOR_HOST", &format!("http://{host}"))?
            }
            Some(url) => endpoint("STORAGE_EMULATOR_HOST", &url)?,
            None => endpoint("Cloud Storage", STORAGE_ENDPOINT)?,
        };
        let kms_endpoint = match lookup("GOOGLE_KMS_ENDPOINT") {
            Some(url) => endpoint("GOOGLE_KMS_ENDPOINT", &url)?,
            None => endpoint("Cloud KMS", KMS_ENDPOINT)?,
        };

        let credentials = match lookup("GOOGLE_APPLICATION_CREDENTIALS") {
            Some(path) => GoogleCredentials::ServiceAccount(read_service_account(&path).await?),
            None => GoogleCredentials::MetadataServer(
                lookup("GCE_METADATA_HOST").unwrap_or_else(|| METADATA_HOST.to_string()),
            ),
        };
        Ok(Self {
            storage_endpoint,
            kms_endpoint,
            credentials,
        })
    }
}

fn endpoint(name: &str, url: &str) -> Result<Url, SetupError> {
    Url::parse(url).map_err(|error| SetupError::Invalid {
        name: name.to_string(),
        reason: format!("{url} is not a URL: {error}"),
    })
}

/// The service account key in the JSON file at `path`.
async fn read_service_account(path: &str) -> Result<ServiceAccountKey, SetupError> {
    let failed = |reason: String| SetupError::Credentials {
        source_name: format!("GOOGLE_APPLICATION_CREDENTIALS file {path}"),
        reason,
    };
    let text = zeroize::Zeroizing::new(
        tokio::fs::read_to_string(path)
            .await
            .map_err(|error| failed(error.to_string()))?,
    );
    let key: ServiceAccountKey =
        serde_json::from_str(&text).map_err(|error| failed(crate::json_error(&error)))?;
    if key.kind != "service_account" {
        return Err(failed(format!(
            "credentials of type {:?} are not supported, only service_account",
            key.kind
        )));
    }
    Ok(key)
}

/// A key store in a Cloud Storage bucket, each value encrypted with a Cloud KMS key.
pub struct GcsKeyStore {
    client: GoogleClient,
    bucket: String,
    key_name: String,
}

impl GcsKeyStore {
    /// The store `spec` describes, with endpoints and credentials from the environment.
    pub async fn from_spec(spec: &GoogleKeyStore) -> Result<Self, SetupError> {
        Self::new(spec, GoogleConfig::from_env().await?)
    }

    /// The store `spec` describes, reached as `config` says.
    pub fn new(spec: &GoogleKeyStore, config: GoogleConfig) -> Result<Self, SetupError> {
        let field = |value: &Option<String>, field: &'static str| match value.as_deref() {
            Some(value) if !value.is_empty() => Ok(value.to_string()),
            _ => Err(SetupError::MissingField {
                store: "google",
                field,
            }),
        };
        let project = field(&spec.kms_project, "kmsProject")?;
        let location = field(&spec.kms_location, "kmsLocation")?;
        let key_ring = field(&spec.kms_key_ring, "kmsKeyRing")?;
        let crypto_key = field(&spec.kms_crypto_key, "kmsCryptoKey")?;
        let bucket = field(&spec.storage_bucket, "storageBucket")?;
        for (name, value) in [
            ("kmsProject", &project),
            ("kmsLocation", &location),
            ("kmsKeyRing", &key_ring),
            ("kmsCryptoKey", &crypto_key),
            ("storageBucket", &bucket),
        ] {
            if value.contains('/') {
                return Err(SetupError::Invalid {
                    name: format!("unsealConfig.google.{name}"),
                    reason: "a name, not a path, is expected".to_string(),
                });
            }
        }

        let client = GoogleClient::new(
            http_client()?,
            config.storage_endpoint,
            config.kms_endpoint,
            config.credentials,
        );
        Ok(Self {
            client,
            bucket,
            key_name: format!(
                "projects/{project}/locations/{location}/keyRings/{key_ring}/cryptoKeys/\
                 {crypto_key}"
            ),
        })
    }

    /// The error for a 404 from a bucket that may not exist: the bucket's absence, named,
    /// when it is absent, else `failure`'s own text.
    async fn missing_bucket_or(&self, failure: Failure) -> String {
        if failure.status == Some(reqwest::StatusCode::NOT_FOUND)
            && let Ok(false) = self.client.bucket_exists(&self.bucket).await
        {
            return self.no_bucket();
        }
        failure.reason
    }

    fn no_bucket(&self) -> String {
        format!("bucket {} does not exist", self.bucket)
    }
}

#[async_trait]
impl KeyStore for GcsKeyStore {
    fn describe(&self) -> String {
        format!("gs://{} (KMS key {})", self.bucket, self.key_name)
    }

    async fn get(&self, key: &str) -> Result<Option<Secret>, KeyStoreError> {
        let ciphertext = match self.client.download(&self.bucket, key).await {
            Ok(Some(ciphertext)) => ciphertext,
            Ok(None) => {
                // Object and bucket both answer 404: a missing bucket is a misconfiguration
                // to report, not a store with no keys yet.
                return match self.client.bucket_exists(&self.bucket).await {
                    Ok(true) => Ok(None),
                    Ok(false) => Err(backend_error(self, "reading", key, self.no_bucket())),
                    Err(failure) => Err(backend_error(self, "reading", key, failure.reason)),
                };
            }
            Err(failure) => return Err(backend_error(self, "reading", key, failure.reason)),
        };

        let mut plaintext = self
            .client
            .decrypt(&self.key_name, &ciphertext)
            .await
            .map_err(|failure| backend_error(self, "decrypting", key, failure.reason))?;
        // Moved, not copied, so that no unwiped copy of the value is left behind.
        Secret::from_bytes(std::mem::take(&mut *plaintext))
            .map(Some)
            .ok_or_else(|| {
                backend_error(
                    self,
                    "decrypting",
                    key,
                    "the value is not UTF-8".to_string(),
                )
            })
    }

    async fn set(&self, key: &str, value: &Secret) -> Result<(), KeyStoreError> {
        let ciphertext = self
            .client
            .encrypt(&self.key_name, value.expose().as_bytes())
            .await
            .map_err(|failure| backend_error(self, "encrypting", key, failure.reason))?;

        match self.client.upload(&self.bucket, key, ciphertext).await {
            Ok(()) => Ok(()),
            Err(failure) => Err(backend_error(
                self,
                "writing",
                key,
                self.missing_bucket_or(failure).await,
            )),
        }
    }

    async fn list(&self) -> Result<Vec<String>, KeyStoreError> {
        match self.client.list(&self.bucket).await {
            Ok(names) => Ok(names),
            Err(failure) => Err(backend_error(
                self,
                "listing",
                "keys",
                self.missing_bucket_or(failure).await,
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_environment_names_endpoints_and_metadata_host() -> Result<(), SetupError> {
        let config = GoogleConfig::from_lookup(|name| match name {
            "STORAGE_EMULATOR_HOST" => Some("127.0.0.1:9023".to_string()),
            "GCE_METADATA_HOST" => Some("127.0.0.1:1".to_string()),
            _ => None,
        })
        .await?;
        assert_eq!(config.storage_endpoint.as_str(), "http://127.0.0.1:9023/");
        assert_eq!(
            config.kms_endpoint.as_str(),
            "https://cloudkms.googleapis.com/"
        );
        let metadata_host = match &config.credentials {
            GoogleCredentials::MetadataServer(host) => host.as_str(),
            GoogleCredentials::ServiceAccount(_) => "",
        };
        assert_eq!(metadata_host, "127.0.0.1:1");
        Ok(())
    }

    #[tokio::test]
    async fn a_missing_field_is_named() -> Result<(), SetupError> {
        let config = GoogleConfig::from_lookup(|_| None).await?;
        let spec = GoogleKeyStore {
            kms_key_ring: Some("r".into()),
            kms_crypto_key: Some("k".into()),
            kms_location: Some("global".into()),
            kms_project: Some("p".into()),
            storage_bucket: None,
        };
        let error = GcsKeyStore::new(&spec, config).err().map(|e| e.to_string());
        assert_eq!(
            error.as_deref(),
            Some("unsealConfig.google.storageBucket is required")
        );
        Ok(())
    }

    #[tokio::test]
    async fn a_credentials_file_of_another_kind_is_refused() -> std::io::Result<()> {
        let folder = tempfile::tempdir()?;
        let path = folder.path().join("user.json");
        std::fs::write(
            &path,
            r#"{"type":"authorized_user","client_email":"x","private_key":"hidden-value"}"#,
        )?;
        let lookup = |name: &str| {
            (name == "GOOGLE_APPLICATION_CREDENTIALS").then(|| path.display().to_string())
        };
        let result = GoogleConfig::from_lookup(lookup).await;
        let error = result.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(
            error.contains("\"authorized_user\" are not supported"),
            "{error}"
        );
        assert!(!error.contains("hidden-value"), "{error}");
        Ok(())
    }
}
