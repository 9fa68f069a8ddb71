//! Reads and writes of free-form Vault paths for [`super::apply`], counting the writes.

use std::sync::atomic::{AtomicUsize, Ordering};

use reqwest::Method;
use serde_json::Value;

use super::config::{Fields, Problem};
use crate::vault::{AuthedClient, VaultError};

/// Why one item was not applied. Messages name Vault paths and keys, not values; Vault's
/// own messages are masked with the configuration's secret values before they are shown.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ItemError {
    /// The item is not written right.
    #[error(transparent)]
    Config(#[from] Problem),
    /// Vault refused the request.
    #[error("{operation} {path}: Vault answered {status}: {message}")]
    Vault {
        /// `reading` or `writing`.
        operation: &'static str,
        /// The API path.
        path: String,
        /// The HTTP status.
        status: u16,
        /// Vault's messages.
        message: String,
    },
    /// The request got no usable answer.
    #[error("{operation} {path}: {message}")]
    Request {
        /// `reading` or `writing`.
        operation: &'static str,
        /// The API path.
        path: String,
        /// The connection or decoding error.
        message: String,
    },
    /// A required key is missing.
    #[error("missing `{key}`")]
    Missing {
        /// The key.
        key: &'static str,
    },
    /// The item has the wrong shape.
    #[error("expected {expected}")]
    Shape {
        /// What was expected.
        expected: &'static str,
    },
    /// A mount of another type is at the path.
    #[error("{path} is mounted as `{actual}`, not `{desired}`; unmount it to change its type")]
    TypeMismatch {
        /// The mount path.
        path: String,
        /// The type Vault holds.
        actual: String,
        /// The type configured.
        desired: String,
    },
    /// A mount setting that Vault fixes when mounting differs.
    #[error("`{setting}` of the mount {path} cannot change once mounted (Vault holds {held})")]
    Immutable {
        /// The mount path.
        path: String,
        /// `local` or `seal_wrap`.
        setting: &'static str,
        /// The value Vault holds.
        held: bool,
    },
    /// The item depends on one that failed.
    #[error("not applied: {dependency} failed")]
    Dependency {
        /// The item that failed.
        dependency: String,
    },
    /// A listing this item needs could not be read.
    #[error("not applied: {0}")]
    Prerequisite(String),
    /// `__accessor__<path>` names no auth mount.
    #[error("`{placeholder}` names no enabled auth method")]
    UnknownAccessor {
        /// The placeholder, as written.
        placeholder: String,
    },
    /// Kubernetes auth needs the API server's address.
    #[error(
        "config.kubernetes_host is not set and KUBERNETES_SERVICE_HOST or \
         KUBERNETES_SERVICE_PORT is not in the environment"
    )]
    NoKubernetesHost,
    /// A group alias names a group that is not there.
    #[error("no identity group is named `{group}`")]
    NoGroup {
        /// The group's name.
        group: String,
    },
    /// A group alias names an auth path where nothing is enabled.
    #[error("no auth method is enabled at auth/{path}")]
    NoAuthMount {
        /// The auth path.
        path: String,
    },
    /// A `secretKeyRef` could not be resolved.
    #[error("secretKeyRef[{index}]: {reason}")]
    SecretRef {
        /// Its place in the list.
        index: usize,
        /// What is wrong: names of Secrets and keys, never values.
        reason: String,
    },
    /// A pki startup secret's path is under no pki mount.
    #[error("no pki secrets engine is mounted above {path}")]
    NoPkiMount {
        /// The secret's path.
        path: String,
    },
    /// A pki startup secret holds no certificate.
    #[error("the pki bundle holds no certificate")]
    NoCertificate,
    /// A startup secret's path is under no kv mount.
    #[error("no kv secrets engine is mounted above {path}")]
    NoKvMount {
        /// The secret's path.
        path: String,
    },
}

impl ItemError {
    fn from_vault(operation: &'static str, path: &str, error: VaultError) -> Self {
        match error {
            VaultError::Status { status, errors, .. } => Self::Vault {
                operation,
                path: path.to_string(),
                status,
                message: errors,
            },
            other => Self::Request {
                operation,
                path: path.to_string(),
                message: other.to_string(),
            },
        }
    }

    /// The same error, naming `path` (a listing is asked for as `path?list=true`).
    fn at(self, path: &str) -> Self {
        match self {
            Self::Vault {
                operation,
                status,
                message,
                ..
            } => Self::Vault {
                operation,
                path: path.to_string(),
                status,
                message,
            },
            Self::Request {
                operation, message, ..
            } => Self::Request {
                operation,
                path: path.to_string(),
                message,
            },
            other => other,
        }
    }

    /// Vault's HTTP status, when it answered with an error.
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Vault { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// What Vault holds at a path.
#[derive(Debug)]
pub(crate) enum Current {
    /// The `data` of the answer.
    Found(Fields),
    /// Nothing there.
    Missing,
    /// The path can be written but not read, so it cannot be compared.
    Unreadable,
}

/// One Vault, with the writes sent to it counted.
pub(crate) struct VaultIo<'a> {
    vault: &'a AuthedClient,
    writes: AtomicUsize,
}

impl<'a> VaultIo<'a> {
    pub fn new(vault: &'a AuthedClient) -> Self {
        Self {
            vault,
            writes: AtomicUsize::new(0),
        }
    }

    /// The pod written to, for logs.
    pub fn pod(&self) -> &str {
        self.vault.pod()
    }

    /// Requests sent so far that change Vault.
    pub fn writes(&self) -> usize {
        self.writes.load(Ordering::Relaxed)
    }

    /// `GET path`: the whole answer, or `None` when nothing is there (404, or no body).
    pub async fn get(&self, path: &str) -> Result<Option<Value>, ItemError> {
        match self.vault.request("reading", Method::GET, path, None).await {
            Ok(Value::Null) => Ok(None),
            Ok(answer) => Ok(Some(answer)),
            Err(error) if error.status() == Some(404) => Ok(None),
            Err(error) => Err(ItemError::from_vault("reading", path, error)),
        }
    }

    /// `GET path`, its `data`.
    pub async fn read(&self, path: &str) -> Result<Current, ItemError> {
        match self.get(path).await {
            Ok(Some(Value::Object(mut answer))) => match answer.remove("data") {
                Some(Value::Object(data)) => Ok(Current::Found(data)),
                _ => Ok(Current::Missing),
            },
            Ok(_) => Ok(Current::Missing),
            // 405: the path takes writes only (`pki/root/generate/...`); some endpoints
            // answer 400 to a read they do not support.
            Err(error) if matches!(error.status(), Some(405 | 400)) => Ok(Current::Unreadable),
            Err(error) => Err(error),
        }
    }

    /// `LIST path`: the `data` of the answer (`keys`, and `key_info` where Vault sends
    /// it), or an empty map when nothing is there.
    pub async fn list(&self, path: &str) -> Result<Fields, ItemError> {
        let listing = format!("{path}?list=true");
        match self.get(&listing).await {
            Ok(Some(Value::Object(mut answer))) => match answer.remove("data") {
                Some(Value::Object(data)) => Ok(data),
                _ => Ok(Fields::new()),
            },
            Ok(_) => Ok(Fields::new()),
            Err(error) => Err(error.at(path)),
        }
    }

    /// The `keys` of `LIST path`.
    pub async fn list_keys(&self, path: &str) -> Result<Vec<String>, ItemError> {
        let data = self.list(path).await?;
        Ok(match data.get("keys") {
            Some(Value::Array(keys)) => keys
                .iter()
                .filter_map(|key| key.as_str().map(str::to_string))
                .collect(),
            _ => Vec::new(),
        })
    }

    /// `DELETE path`.
    pub async fn delete(&self, path: &str) -> Result<(), ItemError> {
        self.writes.fetch_add(1, Ordering::Relaxed);
        self.vault
            .request("deleting", Method::DELETE, path, None)
            .await
            .map(drop)
            .map_err(|error| ItemError::from_vault("deleting", path, error))
    }

    /// `POST path` with `body`; the answer (`null` when Vault sends none).
    pub async fn write(&self, path: &str, body: &Value) -> Result<Value, ItemError> {
        self.writes.fetch_add(1, Ordering::Relaxed);
        self.vault
            .request("writing", Method::POST, path, Some(body))
            .await
            .map_err(|error| ItemError::from_vault("writing", path, error))
    }
}
