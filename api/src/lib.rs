//! The `Vault` custom resource (`vault.banzaicloud.com/v1alpha1`) and the rules that give it
//! meaning: its types, its defaults and its validation, as pure functions.
//!
//! This crate is the one source of truth for the controller, the admission webhook and the
//! `kubectl vault` plugin. Each of them calls [`default`] and [`validate`], so a resource
//! means the same thing whichever of them reads it, with or without the webhook installed.

pub mod config;
pub mod defaults;
pub mod documents;
pub mod schema;
pub mod spec;
pub mod status;
pub mod unseal;
pub mod validation;

use kube::CustomResourceExt;

pub use defaults::default;
pub use spec::{Vault, VaultSpec};
pub use status::{VaultPodStatus, VaultStatus};
pub use validation::{FieldError, Warning, validate};

/// The CustomResourceDefinition of `Vault`, as YAML, the way `manifests/crd.yaml` holds it.
pub fn crd_yaml() -> Result<String, serde_saphyr::SerializeError> {
    serde_saphyr::to_string(&Vault::crd())
}
