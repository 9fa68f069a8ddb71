//! `kubectl vault`: the kubectl plugin of the vault operator.
//!
//! Each command is a module: [`init`] writes a `Vault` resource, [`validate`] checks files
//! offline, [`status`] reports on running clusters, [`install`] carries the operator's
//! manifests. Defaults and rules come from the `api` crate, never from here. What talks to
//! the cluster is kept apart from what can be tested without one: building a resource,
//! checking files and rendering a status are pure functions.

pub mod cli;
pub mod cluster;
pub mod complete;
pub mod init;
pub mod install;
pub mod status;
pub mod validate;

/// The plugin's version, as `kubectl vault version` prints it.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
