//! Reaching the cluster the way kubectl does (`--kubeconfig`, `--context`, `-n`), and errors
//! that say what to do when it cannot be reached or refuses.

use kube::config::{KubeConfigOptions, Kubeconfig, KubeconfigError};
use kube::{Client, Config};

use crate::cli::ClusterArgs;

/// What went wrong talking to the cluster, each saying what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// No usable kubeconfig.
    #[error(
        "no cluster configured: {0}; point --kubeconfig or KUBECONFIG at a kubeconfig, or \
         pick one of its contexts with --context"
    )]
    NoConfig(#[source] KubeconfigError),
    /// The client could not be built from the kubeconfig.
    #[error("cannot build a client for the cluster: {0}")]
    Client(#[source] kube::Error),
    /// The API server did not answer.
    #[error(
        "no cluster reachable at {server} while {operation}: {source}; check that the \
         cluster runs and that --context names it"
    )]
    Unreachable {
        /// The API server's address.
        server: String,
        /// What was being done.
        operation: String,
        /// The transport error.
        source: kube::Error,
    },
    /// The Vault CRD is not installed.
    #[error(
        "the Vault custom resource is not installed in this cluster (no \
         vaults.vault.banzaicloud.com); install the operator with `kubectl vault install`"
    )]
    CrdMissing,
    /// The named object does not exist.
    #[error("{what} not found in {place}; list them with `kubectl get {kind} -A`")]
    NotFound {
        /// The object, such as `vault/vault`.
        what: String,
        /// Where it was looked for: `namespace NAME`, or `any namespace`.
        place: String,
        /// Its kind's plural, for the hint.
        kind: String,
    },
    /// RBAC refused the request.
    #[error(
        "the cluster refused {operation}: {message}; ask an administrator for a Role that \
         allows it, or use a --context with more rights"
    )]
    Forbidden {
        /// What was being done.
        operation: String,
        /// The API server's message, which names the user and the verb.
        message: String,
    },
    /// The API server refused for another reason; its message says which, without the
    /// Status object's debug form.
    #[error("{operation}: {message} ({code})")]
    Rejected {
        /// What was being done.
        operation: String,
        /// The API server's message, such as `namespaces "ops" not found`.
        message: String,
        /// The HTTP status code.
        code: u16,
    },
    /// Any other failure.
    #[error("{operation}: {source}")]
    Api {
        /// What was being done.
        operation: String,
        /// The error.
        source: kube::Error,
    },
}

/// A connected client and the namespace commands act in.
#[derive(Clone)]
pub struct Cluster {
    /// The client.
    pub client: Client,
    /// `-n`, else the context's namespace, else `default`.
    pub namespace: String,
    /// The API server's address, for messages.
    pub server: String,
}

impl Cluster {
    /// Loads the kubeconfig as kubectl would and builds a client. Reaches nothing yet.
    pub async fn connect(args: &ClusterArgs) -> Result<Self, ClusterError> {
        let options = KubeConfigOptions {
            context: args.context.clone(),
            ..KubeConfigOptions::default()
        };
        let config = match &args.kubeconfig {
            Some(path) => {
                let kubeconfig = Kubeconfig::read_from(path).map_err(ClusterError::NoConfig)?;
                Config::from_custom_kubeconfig(kubeconfig, &options).await
            }
            None => Config::from_kubeconfig(&options).await,
        };
        let mut config = config.map_err(ClusterError::NoConfig)?;
        // A cluster that does not answer should fail the command quickly, not hang it.
        config.connect_timeout = Some(std::time::Duration::from_secs(5));

        let server = config.cluster_url.to_string();
        let namespace = args
            .namespace
            .clone()
            .unwrap_or_else(|| config.default_namespace.clone());
        let client = Client::try_from(config).map_err(ClusterError::Client)?;
        Ok(Self {
            client,
            namespace,
            server,
        })
    }

    /// Turns a client error into one that says what to do. `operation` says what was being
    /// done, such as "listing vaults in namespace default".
    pub fn explain(&self, operation: &str, error: kube::Error) -> ClusterError {
        explain(&self.server, operation, error)
    }
}

/// See [`Cluster::explain`]; 404s are left to the caller, which knows what was missing.
pub fn explain(server: &str, operation: &str, error: kube::Error) -> ClusterError {
    match error {
        kube::Error::Api(status) if status.is_forbidden() => ClusterError::Forbidden {
            operation: operation.to_string(),
            message: status.message,
        },
        kube::Error::HyperError(_) | kube::Error::Service(_) => ClusterError::Unreachable {
            server: server.to_string(),
            operation: operation.to_string(),
            source: error,
        },
        kube::Error::Api(status) if !status.message.is_empty() => ClusterError::Rejected {
            operation: operation.to_string(),
            message: status.message,
            code: status.code,
        },
        other => ClusterError::Api {
            operation: operation.to_string(),
            source: other,
        },
    }
}

/// True when the API server answered 404 Not Found. For a path it serves nothing at (a
/// CRD that is not installed) it answers in plain text, not with a Status, so the code
/// counts, not the reason.
pub fn is_not_found(error: &kube::Error) -> bool {
    matches!(error, kube::Error::Api(status) if status.is_not_found() || status.code == 404)
}
