//! The one error type of the webhook: each variant names the object and the operation.

use std::path::PathBuf;

/// What went wrong, and on what.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file the webhook reads could not be read.
    #[error("reading {path}: {source}")]
    ReadFile {
        /// The file.
        path: PathBuf,
        /// Why it could not be read.
        source: std::io::Error,
    },

    /// A PEM certificate or key could not be used.
    #[error("loading {what}: {reason}")]
    Certificate {
        /// Which certificate or key, such as `the serving certificate from Secret ns/name`.
        what: String,
        /// Why it could not be used.
        reason: String,
    },

    /// A certificate or key could not be generated.
    #[error("generating {what}: {source}")]
    Generate {
        /// Which certificate or key.
        what: &'static str,
        /// The generator's error.
        source: rcgen::Error,
    },

    /// Building the TLS server configuration failed.
    #[error("building the TLS configuration: {0}")]
    Tls(#[source] rustls::Error),

    /// A listening socket could not be opened.
    #[error("listening on {address}: {source}")]
    Listen {
        /// The address.
        address: String,
        /// Why it could not be opened.
        source: std::io::Error,
    },

    /// A call to the Kubernetes API about the webhook's Secret failed.
    #[error("{operation} Secret {namespace}/{name}: {source}")]
    Secret {
        /// What was being done, such as `reading` or `replacing`.
        operation: &'static str,
        /// The Secret's namespace.
        namespace: String,
        /// The Secret's name.
        name: String,
        /// The API error.
        source: Box<kube::Error>,
    },

    /// A call to the Kubernetes API about a webhook configuration failed.
    #[error("{operation} {kind} {name}: {source}")]
    WebhookConfiguration {
        /// What was being done, such as `patching the caBundle of`.
        operation: &'static str,
        /// `MutatingWebhookConfiguration` or `ValidatingWebhookConfiguration`.
        kind: &'static str,
        /// The configuration's name.
        name: String,
        /// The API error.
        source: Box<kube::Error>,
    },

    /// A JSON document the webhook builds could not be serialised.
    #[error("serialising {what}: {source}")]
    Serialize {
        /// What was being serialised.
        what: String,
        /// The serialiser's error.
        source: serde_json::Error,
    },
}

impl Error {
    /// A short label for logs and metrics.
    pub fn label(&self) -> &'static str {
        match self {
            Error::ReadFile { .. } => "read_file",
            Error::Certificate { .. } => "certificate",
            Error::Generate { .. } => "generate",
            Error::Tls(_) => "tls",
            Error::Listen { .. } => "listen",
            Error::Secret { .. } => "secret",
            Error::WebhookConfiguration { .. } => "webhook_configuration",
            Error::Serialize { .. } => "serialize",
        }
    }
}
