//! What the cloud key stores share: an HTTP client with ring for TLS, a cache for OAuth2
//! access tokens, and the error a store's constructor returns.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Deserialize;

use crate::{KeyStore, KeyStoreError, Secret};

/// A key store that could not be set up from its `unsealConfig` and the environment.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// A field the store needs is not set.
    #[error("unsealConfig.{store}.{field} is required")]
    MissingField {
        /// The store, such as `google`.
        store: &'static str,
        /// The field, such as `storageBucket`.
        field: &'static str,
    },
    /// A field or an environment variable has a value the store cannot use.
    #[error("{name} is not valid: {reason}")]
    Invalid {
        /// The field or variable, such as `unsealConfig.azure.keyPrefix`.
        name: String,
        /// Why, never quoting a secret.
        reason: String,
    },
    /// The credentials could not be read.
    #[error("reading {source_name}: {reason}")]
    Credentials {
        /// Where they were read from, such as the path of a service-account file.
        source_name: String,
        /// Why, never quoting the credentials.
        reason: String,
    },
    /// The HTTP client could not be built.
    #[error("building the HTTP client: {0}")]
    Client(String),
    /// A store named by where it keeps keys, such as `OSS bucket vault-keys`, cannot be set
    /// up.
    #[error("setting up {store}: {reason}")]
    Store {
        /// The store.
        store: String,
        /// What is wrong.
        reason: String,
    },
}

impl SetupError {
    /// [`SetupError::Store`].
    pub(crate) fn new(store: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::Store {
            store: store.into(),
            reason: reason.into(),
        }
    }
}

/// The error of `operation` on `key` in `store`, for `reason`.
pub(crate) fn backend_error(
    store: &dyn KeyStore,
    operation: &'static str,
    key: &str,
    reason: String,
) -> KeyStoreError {
    KeyStoreError::Backend {
        store: store.describe(),
        operation,
        key: key.to_string(),
        reason,
    }
}

/// The error body Google's and Azure's APIs share, `{"error": {"code", "message"}}`, with
/// Google's `status` and Azure's `innererror`.
#[derive(Deserialize)]
pub(crate) struct ApiErrorBody {
    error: ApiError,
}

#[derive(Deserialize)]
struct ApiError {
    /// A number at Google, a name such as `Forbidden` at Azure.
    #[serde(default)]
    code: serde_json::Value,
    #[serde(default)]
    message: String,
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    innererror: Option<InnerError>,
}

#[derive(Deserialize)]
struct InnerError {
    #[serde(default)]
    code: String,
}

impl ApiErrorBody {
    /// The error as a line after `http_status`: `403 Forbidden PERMISSION_DENIED: ...` from
    /// Google, `403 Forbidden Forbidden (ForbiddenByRbac): ...` from Azure.
    pub(crate) fn describe(&self, http_status: &str) -> String {
        let error = &self.error;
        let name = match (&error.status, &error.code) {
            (Some(status), _) => status.as_str(),
            (None, serde_json::Value::String(code)) => code.as_str(),
            (None, _) => "",
        };
        let inner = match &error.innererror {
            Some(inner) if !inner.code.is_empty() => format!(" ({})", inner.code),
            _ => String::new(),
        };
        let message = shorten(&error.message);
        if name.is_empty() {
            format!("{http_status}: {message}")
        } else {
            format!("{http_status} {name}{inner}: {message}")
        }
    }
}

/// Timeout of one request to a cloud API: long enough for a slow KMS, short enough that a
/// reconcile is not stuck on a dead endpoint.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// An HTTP client that verifies servers against the system's roots with ring's crypto: the
/// workspace builds reqwest without a TLS provider, so that aws-lc is never compiled.
pub(crate) fn http_client() -> Result<reqwest::Client, SetupError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    // Unreadable system certificates are skipped: an endpoint they were needed for fails
    // with a certificate error that names it, which says more than failing here.
    let (_added, _ignored) =
        roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|error| SetupError::Client(error.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();

    reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .timeout(REQUEST_TIMEOUT)
        .connect_timeout(Duration::from_secs(10))
        .build()
        .map_err(|error| SetupError::Client(error.to_string()))
}

/// Renew a token this long before it expires, so that it does not expire in flight.
const RENEW_BEFORE: Duration = Duration::from_secs(120);

/// The last OAuth2 access token and when to fetch the next. Concurrent callers may both
/// fetch a token when it is due; the last one fetched is kept, and both are valid.
#[derive(Default)]
pub(crate) struct TokenCache {
    token: Mutex<Option<(Secret, Instant)>>,
}

impl TokenCache {
    /// The cached token, if it is not due for renewal.
    pub(crate) fn current(&self) -> Option<Secret> {
        let token = self.token.lock().ok()?;
        match token.as_ref() {
            Some((token, renew_at)) if Instant::now() < *renew_at => Some(token.clone()),
            _ => None,
        }
    }

    /// Keeps `token`, which expires in `expires_in`.
    pub(crate) fn keep(&self, token: Secret, expires_in: Duration) {
        let renew_at = Instant::now() + expires_in.saturating_sub(RENEW_BEFORE);
        if let Ok(mut cached) = self.token.lock() {
            *cached = Some((token, renew_at));
        }
    }
}

/// Longest piece of an API's error message kept in our errors: they end up in Events and
/// conditions, where a page of HTML from a proxy helps nobody.
const MESSAGE_LIMIT: usize = 300;

/// `message` cut to a length that fits an error line.
pub(crate) fn shorten(message: &str) -> String {
    let message = message.trim();
    match message.char_indices().nth(MESSAGE_LIMIT) {
        Some((end, _)) => format!("{}...", &message[..end]),
        None => message.to_string(),
    }
}

/// The text of a failed request, for an error: the status and what the server said. The
/// bodies of the cloud APIs' errors never hold a value we sent.
pub(crate) async fn failure_text(response: reqwest::Response) -> String {
    let status = response.status();
    let body = response.text().await.unwrap_or_default();
    if body.trim().is_empty() {
        status.to_string()
    } else {
        format!("{status}: {}", shorten(&body))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_renewed_before_they_expire() {
        let cache = TokenCache::default();
        assert!(cache.current().is_none());

        cache.keep(Secret::from("t1"), Duration::from_secs(3600));
        assert_eq!(cache.current(), Some(Secret::from("t1")));

        // A token that expires within the renewal margin is already due.
        cache.keep(Secret::from("t2"), Duration::from_secs(60));
        assert!(cache.current().is_none());
    }

    #[test]
    fn long_messages_are_cut() {
        assert_eq!(shorten(" short "), "short");
        let long = "é".repeat(MESSAGE_LIMIT + 10);
        assert_eq!(shorten(&long).chars().count(), MESSAGE_LIMIT + 3);
    }
}
