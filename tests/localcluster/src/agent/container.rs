//! The contract between the node agent and the container shim.
//!
//! The agent writes a [`ContainerSpec`] as JSON and starts
//! `ip netns exec <pod netns> localcluster run-container --spec <file>`. The shim
//! ([`super::shim::exec`]) gives the process a mount and UTS namespace of its own, a root of
//! its own over the host's files (the host is left unchanged), the spec's mounts, hostname,
//! environment, working folder and user, then `exec`s the program: the container's process
//! keeps the pid the agent started, so the agent supervises it directly.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// One container process to start.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ContainerSpec {
    /// The hostname the process sees (the pod's hostname).
    pub hostname: String,

    /// A folder only this container uses, for the scratch layers of its private root. The
    /// agent makes it before starting the shim and removes it after the container ends; the
    /// shim may mount over it.
    pub scratch_dir: PathBuf,

    /// What to mount in the container's root, in order (a later mount may sit inside an
    /// earlier one, as a `subPath` file inside a volume does).
    pub mounts: Vec<Mount>,

    /// The whole environment of the process: nothing of the agent's leaks in.
    pub env: Vec<(String, String)>,

    /// Folder to start in, inside the container's root; `/` when not set.
    pub working_dir: Option<String>,

    /// User to run as; the agent's (root) when not set.
    pub user: Option<u32>,

    /// Group to run as; the user's primary group, or root, when not set.
    pub group: Option<u32>,

    /// The program and its arguments. The program is an absolute path of a host file, which
    /// the private root shows at the same path.
    pub argv: Vec<String>,
}

/// One mount in the container's root.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Mount {
    /// What is mounted.
    pub kind: MountKind,
    /// Absolute path inside the container; missing folders (or the file, for a file bind)
    /// are made in the private root, never on the host.
    pub target: String,
    /// Mounted read-only.
    pub read_only: bool,
}

/// What a [`Mount`] mounts.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum MountKind {
    /// A host file or folder, bound at the target (a volume, `/etc/hosts`, a token).
    Bind(PathBuf),
    /// An empty in-memory folder.
    Tmpfs,
}
