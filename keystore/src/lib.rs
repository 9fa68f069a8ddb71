//! Where Vault's unseal keys and root token are kept.
//!
//! A [`KeyStore`] holds named values: the key shares (`vault-unseal-<i>` or
//! `vault-recovery-<i>`), the root token (`vault-root`), a test value for pre-flight
//! checks (`vault-test`) and the init-intent marker (`vault-init`). Stores in the cloud keep
//! one object per name, so a set of keys is never written atomically: writes are ordered,
//! idempotent and retried ([`write_verified`]), and the init-intent marker tells an
//! interrupted initialisation from a finished one.

mod alibaba;
mod aws;
mod azure;
mod cloud;
mod file;
mod google;
mod hsm;
mod memory;
mod oci;
mod rest;
mod secret;
mod vault_store;

use std::time::Duration;

use async_trait::async_trait;
use tracing::warn;

pub use alibaba::{AlibabaCredentials, OssKeyStore};
pub use aws::S3KeyStore;
pub use azure::{AzureConfig, AzureCredentials, AzureKeyVaultStore};
pub use cloud::SetupError;
pub use file::FileKeyStore;
pub use google::{GcsKeyStore, GoogleConfig, GoogleCredentials, ServiceAccountKey};
pub use hsm::Pkcs11KeyStore;
pub use memory::MemoryKeyStore;
pub use oci::{OciBucketKeyStore, OciConfig};
pub use secret::Secret;
pub use vault_store::{VaultKvKeyStore, vaultrs_client};

/// What is wrong with a JSON document, in words that never quote a value from it: serde_json
/// quotes the string it found where another type was expected, and that string may be a
/// private key or a decrypted value. Messages about fields, which quote only field names,
/// are kept.
pub fn json_error(error: &serde_json::Error) -> String {
    use serde_json::error::Category;

    let message = error.to_string();
    let about_a_field = ["missing field", "unknown field", "duplicate field"]
        .iter()
        .any(|start| message.starts_with(start));
    let what = match error.classify() {
        Category::Data if about_a_field => return message,
        Category::Io => "could not be read",
        Category::Syntax => "is not valid JSON",
        Category::Data => "holds a value of the wrong type or form",
        Category::Eof => "ends too early",
    };
    format!("{what} (line {}, column {})", error.line(), error.column())
}

/// Name of the root token.
pub const ROOT_TOKEN: &str = "vault-root";
/// Name of the value written and read back by the pre-flight check.
pub const TEST_KEY: &str = "vault-test";
/// Name of the init-intent marker, written before `sys/init` is called.
pub const INIT_MARKER: &str = "vault-init";

/// Name of unseal key share `index` (from 0).
pub fn unseal_key(index: u32) -> String {
    format!("vault-unseal-{index}")
}

/// Name of recovery key share `index` (from 0), kept with an auto-unseal `seal`.
pub fn recovery_key(index: u32) -> String {
    format!("vault-recovery-{index}")
}

/// True for the name of a key share or the root token: a key of an initialised Vault.
pub fn is_vault_key(name: &str) -> bool {
    name == ROOT_TOKEN
        || name.strip_prefix("vault-unseal-").is_some_and(is_index)
        || name.strip_prefix("vault-recovery-").is_some_and(is_index)
}

fn is_index(text: &str) -> bool {
    !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit())
}

/// A failed key-store operation. Messages name the store and the key, never the value.
#[derive(Debug, thiserror::Error)]
pub enum KeyStoreError {
    /// The backing store could not be reached or refused the operation.
    #[error("{operation} {key} in {store}: {reason}")]
    Backend {
        /// The store, such as `Secret vault/vault-unseal-keys`.
        store: String,
        /// What was done, such as `writing`.
        operation: &'static str,
        /// The key name.
        key: String,
        /// What went wrong.
        reason: String,
    },
    /// A value read back differs from the one written.
    #[error("checking {key} in {store}: the value read back differs from the one written")]
    Mismatch {
        /// The store.
        store: String,
        /// The key name.
        key: String,
    },
    /// A value written is missing when read back.
    #[error("checking {key} in {store}: the value written is missing")]
    Missing {
        /// The store.
        store: String,
        /// The key name.
        key: String,
    },
}

/// A key store: named secret values, read and written one at a time.
///
/// Implementations must make `set` idempotent (writing the same value twice is a no-op) and
/// must not log values. Every method may be retried.
#[async_trait]
pub trait KeyStore: Send + Sync {
    /// Where the values are kept, for logs and errors, such as `Secret vault/vault-keys`.
    fn describe(&self) -> String;

    /// The value of `key`, or `None` when it is not there.
    async fn get(&self, key: &str) -> Result<Option<Secret>, KeyStoreError>;

    /// Writes `value` under `key`, replacing any value there.
    async fn set(&self, key: &str, value: &Secret) -> Result<(), KeyStoreError>;

    /// The names of every value in the store.
    async fn list(&self) -> Result<Vec<String>, KeyStoreError>;

    /// The bytes of `key`, for a store that encrypts into this one (`hsm` with
    /// `kubernetes`). By default the value is their standard base64, as a store of text
    /// keeps them; a store that holds bytes, such as a Kubernetes Secret, keeps them raw,
    /// as Bank-Vaults does.
    async fn get_bytes(&self, key: &str) -> Result<Option<Vec<u8>>, KeyStoreError> {
        use base64::Engine;

        let Some(text) = self.get(key).await? else {
            return Ok(None);
        };
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(text.expose().trim())
            .map_err(|_| KeyStoreError::Backend {
                store: self.describe(),
                operation: "reading",
                key: key.to_string(),
                reason: "the stored value is not base64".to_string(),
            })?;
        Ok(Some(bytes))
    }

    /// Writes `bytes` under `key` (see [`KeyStore::get_bytes`]).
    async fn set_bytes(&self, key: &str, bytes: &[u8]) -> Result<(), KeyStoreError> {
        use base64::Engine;

        let text = base64::engine::general_purpose::STANDARD.encode(bytes);
        self.set(key, &Secret::new(text)).await
    }
}

/// `bytes` read from `store` under `key`, as a value: an error when they are not text.
pub fn text_value(
    store: &dyn KeyStore,
    key: &str,
    bytes: Vec<u8>,
) -> Result<Secret, KeyStoreError> {
    Secret::from_bytes(bytes).ok_or_else(|| KeyStoreError::Backend {
        store: store.describe(),
        operation: "reading",
        key: key.to_string(),
        reason: "the value is not UTF-8".to_string(),
    })
}

/// How often and how long to retry a key-store write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Retry {
    /// Attempts in all, at least one.
    pub attempts: u32,
    /// Wait after the first failure; doubled after each further one.
    pub backoff: Duration,
}

impl Default for Retry {
    fn default() -> Self {
        Self {
            attempts: 5,
            backoff: Duration::from_millis(200),
        }
    }
}

/// Writes `value` under `key` and reads it back, retrying both with `retry`'s backoff. A
/// value read back that differs is written again; the last error is returned.
pub async fn write_verified(
    store: &dyn KeyStore,
    key: &str,
    value: &Secret,
    retry: Retry,
) -> Result<(), KeyStoreError> {
    let mut wait = retry.backoff;
    let mut attempt = 1;
    loop {
        let result = match store.set(key, value).await {
            Ok(()) => read_back(store, key, value).await,
            Err(error) => Err(error),
        };
        match result {
            Ok(()) => return Ok(()),
            Err(error) if attempt >= retry.attempts.max(1) => return Err(error),
            Err(error) => {
                let store = store.describe();
                warn!(%store, key, attempt, %error, "key store write failed, retrying");
                tokio::time::sleep(wait).await;
                wait = wait.saturating_mul(2);
                attempt += 1;
            }
        }
    }
}

/// Checks that `key` holds `value`.
pub async fn read_back(
    store: &dyn KeyStore,
    key: &str,
    value: &Secret,
) -> Result<(), KeyStoreError> {
    match store.get(key).await? {
        Some(read) if read == *value => Ok(()),
        Some(_) => Err(KeyStoreError::Mismatch {
            store: store.describe(),
            key: key.to_string(),
        }),
        None => Err(KeyStoreError::Missing {
            store: store.describe(),
            key: key.to_string(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_errors_quote_field_names_but_no_values() {
        #[derive(Debug, serde::Deserialize)]
        #[allow(dead_code)]
        struct Key {
            private_key: u32,
            client_email: String,
        }
        let wrong_type = serde_json::from_str::<Key>(r#"{"private_key": "hidden-pem"}"#);
        let message = wrong_type
            .map_err(|e| json_error(&e))
            .err()
            .unwrap_or_default();
        assert!(!message.contains("hidden-pem"), "{message}");
        assert!(message.contains("line 1, column"), "{message}");

        let missing = serde_json::from_str::<Key>(r#"{"private_key": 1}"#);
        let message = missing
            .map_err(|e| json_error(&e))
            .err()
            .unwrap_or_default();
        assert!(
            message.starts_with("missing field `client_email`"),
            "{message}"
        );

        let broken = serde_json::from_str::<Key>(r#"{"private_key": hidden"#);
        let message = broken.map_err(|e| json_error(&e)).err().unwrap_or_default();
        assert!(message.starts_with("is not valid JSON"), "{message}");
    }

    #[test]
    fn key_names() {
        assert_eq!(unseal_key(0), "vault-unseal-0");
        assert_eq!(recovery_key(4), "vault-recovery-4");
        assert!(is_vault_key("vault-unseal-12"));
        assert!(is_vault_key("vault-recovery-0"));
        assert!(is_vault_key(ROOT_TOKEN));
        assert!(!is_vault_key(TEST_KEY));
        assert!(!is_vault_key(INIT_MARKER));
        assert!(!is_vault_key("vault-unseal-"));
        assert!(!is_vault_key("vault-unseal-x"));
    }

    #[tokio::test]
    async fn write_verified_reads_back() -> Result<(), KeyStoreError> {
        let store = MemoryKeyStore::default();
        let value = Secret::from("k1");
        write_verified(&store, "vault-unseal-0", &value, Retry::default()).await?;
        assert_eq!(store.get("vault-unseal-0").await?, Some(value.clone()));
        write_verified(&store, "vault-unseal-0", &value, Retry::default()).await?;
        assert_eq!(store.list().await?, ["vault-unseal-0"]);
        Ok(())
    }

    #[tokio::test]
    async fn write_verified_retries_a_failing_store() -> Result<(), KeyStoreError> {
        let store = MemoryKeyStore::default();
        store.fail_next_writes(2);
        let retry = Retry {
            attempts: 3,
            backoff: Duration::from_millis(1),
        };
        write_verified(&store, ROOT_TOKEN, &Secret::from("t"), retry).await?;

        store.fail_next_writes(3);
        let failed = write_verified(&store, TEST_KEY, &Secret::from("x"), retry).await;
        let message = failed.err().map(|e| e.to_string()).unwrap_or_default();
        assert_eq!(message, "writing vault-test in memory: injected failure");
        Ok(())
    }
}
