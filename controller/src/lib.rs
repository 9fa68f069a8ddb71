//! The controller's library: the parts of reconciling a `Vault` that talk to Vault and to
//! the key store, kept apart from the binary so the reconciler and the tests share them.
//!
//! - [`vault`]: one client for every per-pod call to Vault or OpenBao.
//! - [`keystore`]: where unseal keys and the root token are kept.
//! - [`unseal`]: initialise once, keep keys, unseal every pod, join Raft peers.
//! - [`crash`]: crash points for fault-injection tests.
//! - [`external`]: `externalConfig` applied to a running Vault, and kept applied.
//! - [`build`], [`reconcile`]: the Kubernetes objects of a `Vault`, built and applied.
//! - [`template`]: the per-pod rendering of the configuration (`template` subcommand).
//! - [`metrics`], [`operations`], [`leader`]: running the controller.

pub mod build;
pub mod crash;
pub mod external;
pub mod keystore;
pub mod leader;
pub mod metrics;
pub mod operations;
pub mod reconcile;
pub mod runner;
pub mod template;
pub mod tls;
pub mod unseal;
pub mod vault;

pub use vault_keystore::Secret;
