use std::path::{Path, PathBuf};

/// What went wrong while running the local cluster, with what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file or folder could not be read or written.
    #[error("{action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },

    /// A command the cluster needs could not be run or failed.
    #[error("running {command}: {reason}")]
    Command { command: String, reason: String },

    /// A certificate or key could not be made.
    #[error("{0}: {1}")]
    Pki(&'static str, rcgen::Error),

    /// The cluster needs to run as root to make network namespaces.
    #[error("the local cluster makes network namespaces and needs root; run it as root")]
    NotRoot,

    /// The cluster name cannot name a network namespace, or names one that another
    /// cluster's pods would use.
    #[error(
        "cluster name {0:?}: use 1 to 20 lowercase letters, digits and '-', not ending in \
         -p-<number>-<number> (another cluster's pod namespaces are named so)"
    )]
    BadName(String),

    /// Building the Kubernetes components failed.
    #[error("building Kubernetes: {0}")]
    Build(String),

    /// A component exited or never became ready.
    #[error("{component} {problem}; the end of its log ({log}):\n{tail}")]
    Component {
        component: String,
        problem: String,
        log: PathBuf,
        tail: String,
    },

    /// The cluster named by the environment is not running.
    #[error("no cluster {0:?} is running; start it with `localcluster up --name {0}`")]
    NotRunning(String),

    /// A call to the API server failed.
    #[error("{0}: {1}")]
    Kube(String, kube::Error),

    /// A kubeconfig could not be loaded.
    #[error("loading the kubeconfig {0}: {1}")]
    Kubeconfig(PathBuf, String),
}

impl Error {
    pub(crate) fn io(action: &'static str, path: &Path, source: std::io::Error) -> Self {
        Self::Io {
            action,
            path: path.to_path_buf(),
            source,
        }
    }
}
