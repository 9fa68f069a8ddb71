//! `vault-webhook`: the admission webhook of `Vault` resources. It writes the defaults of
//! [`vault_api::default`] into every `Vault` created or updated, and refuses those
//! [`vault_api::validate`] finds invalid, with every problem and its fix in one message.
//!
//! The decisions are pure functions ([`handlers`], [`review`], [`certs`]); the servers
//! ([`server`]), TLS ([`tls`]) and the Kubernetes calls ([`certs::cluster`]) wrap them.

#![warn(missing_docs)]

pub mod certs;
pub mod error;
pub mod fixtures;
pub mod handlers;
pub mod metrics;
pub mod review;
pub mod server;
pub mod tls;

pub use error::Error;
