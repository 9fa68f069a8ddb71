//! Where Vault's unseal keys and root token are kept: the stores of the `vault-keystore`
//! crate, and the Kubernetes Secret store, which needs this crate's Kubernetes client.

mod kubernetes;

pub use kubernetes::{SecretKeyStore, SecretLocation};
pub use vault_keystore::*;
