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

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;

pub use defaults::default;
pub use spec::{Vault, VaultSpec};
pub use status::{VaultPodStatus, VaultStatus};
pub use validation::{FieldError, Warning, validate};

/// The CustomResourceDefinition of `Vault`, as the API server should serve it.
///
/// Kubernetes' own object references (a Secret's or ConfigMap's `name` in env sources and
/// volumes) come out of k8s-openapi as required, though Kubernetes lets them be empty and
/// Bank-Vaults' CRD leaves them optional; they are made optional here, so that every
/// resource Bank-Vaults accepts is accepted unchanged.
pub fn crd() -> CustomResourceDefinition {
    let generated = Vault::crd();
    let Ok(mut schema) = serde_json::to_value(&generated) else {
        return generated;
    };
    relax_reference_names(&mut schema);
    serde_json::from_value(schema).unwrap_or(generated)
}

/// Drops `name` from `required` wherever Kubernetes documents it as allowed to be empty.
fn relax_reference_names(schema: &mut serde_json::Value) {
    match schema {
        serde_json::Value::Object(object) => {
            let may_be_empty = object
                .get("properties")
                .and_then(|p| p.pointer("/name/description"))
                .and_then(|d| d.as_str())
                .is_some_and(|d| d.contains("allowed to be empty"));
            if may_be_empty
                && let Some(serde_json::Value::Array(required)) = object.get_mut("required")
            {
                required.retain(|field| field != "name");
                if required.is_empty() {
                    object.remove("required");
                }
            }
            object.values_mut().for_each(relax_reference_names);
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(relax_reference_names),
        _ => {}
    }
}

/// The CustomResourceDefinition of `Vault`, as YAML, the way `manifests/crd.yaml` holds it.
pub fn crd_yaml() -> Result<String, serde_saphyr::SerializeError> {
    serde_saphyr::to_string(&crd())
}
