//! The end-to-end suite's helpers: what a scenario needs besides the local cluster.
//!
//! The shared Bank-Vaults samples pin their namespace in several fields (the keys Secret's
//! namespace, `api_addr`, the Kubernetes auth role's bound namespaces). Only one scenario
//! runs a sample unchanged, in `default`; the others each take a namespace of their own,
//! with those fields rewritten for it by [`sample_in`].

use std::path::{Path, PathBuf};

use serde_json::Value;
use vault_api::Vault;

/// What went wrong loading a sample.
#[derive(Debug, thiserror::Error)]
pub enum SampleError {
    /// The file could not be read.
    #[error("reading sample {0}: {1}")]
    Read(PathBuf, std::io::Error),
    /// The file holds no `Vault`, or one that does not parse.
    #[error("sample {0}: {1}")]
    Parse(PathBuf, String),
}

/// The folder of the shared samples: `VAULT_SAMPLES_DIR`, or `shared/samples/bank-vaults`
/// beside the checkout.
pub fn samples_dir() -> PathBuf {
    match std::env::var_os("VAULT_SAMPLES_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/samples/bank-vaults"),
    }
}

/// What each shared sample must give, as the API crate's rules have it: stored (`None`),
/// or refused at the field path (three pods on `file` storage, which cannot be HA).
pub const SAMPLE_OUTCOMES: &[(&str, Option<&str>)] = &[
    ("cr.yaml", None),
    ("cr-aws.yaml", None),
    ("cr-azure.yaml", None),
    ("cr-gcpkms.yaml", None),
    ("cr-kvv2.yaml", None),
    ("cr-podAntiAffinity.yaml", Some("spec.size")),
    ("cr-raft.yaml", None),
    ("cr-vault-kv-unseal.yaml", None),
];

/// The `Vault` of a shared sample, unchanged.
pub fn sample(file: &str) -> Result<Vault, SampleError> {
    let path = samples_dir().join(file);
    let text = std::fs::read_to_string(&path).map_err(|e| SampleError::Read(path.clone(), e))?;
    let documents = vault_api::documents::read_vaults(&text)
        .map_err(|e| SampleError::Parse(path.clone(), e.to_string()))?;
    let first = documents
        .into_iter()
        .next()
        .ok_or_else(|| SampleError::Parse(path.clone(), "it holds no Vault resource".into()))?;
    first.vault.map_err(|e| SampleError::Parse(path, e))
}

/// The `Vault` of a shared sample, moved to `namespace`: every field that names the sample's
/// own namespace (`default`) names `namespace` instead.
pub fn sample_in(file: &str, namespace: &str) -> Result<Vault, SampleError> {
    let vault = sample(file)?;
    let mut object = serde_json::to_value(&vault)
        .map_err(|e| SampleError::Parse(samples_dir().join(file), e.to_string()))?;
    move_to_namespace(&mut object, namespace);
    serde_json::from_value(object)
        .map_err(|e| SampleError::Parse(samples_dir().join(file), e.to_string()))
}

/// Rewrites the namespace-pinned fields of a `Vault` object from `default` to `namespace`.
pub fn move_to_namespace(object: &mut Value, namespace: &str) {
    object["metadata"]["namespace"] = namespace.into();
    let spec = &mut object["spec"];

    if let Some(secret) = spec.pointer_mut("/unsealConfig/kubernetes/secretNamespace")
        && secret == "default"
    {
        *secret = namespace.into();
    }

    // `api_addr: https://vault.default:8200` names the Service by `<service>.<namespace>`.
    if let Some(Value::String(address)) = spec.pointer_mut("/config/api_addr") {
        *address = address.replace(".default:", &format!(".{namespace}:"));
    }

    let auth = spec
        .pointer_mut("/externalConfig/auth")
        .and_then(Value::as_array_mut);
    for method in auth.into_iter().flatten() {
        let roles = method.get_mut("roles").and_then(Value::as_array_mut);
        for role in roles.into_iter().flatten() {
            let bound = role.get_mut("bound_service_account_namespaces");
            for bound in bound.and_then(Value::as_array_mut).into_iter().flatten() {
                if bound == "default" {
                    *bound = namespace.into();
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_raft_sample_moves_to_a_namespace_of_its_own() {
        let vault = sample_in("cr-raft.yaml", "e2e-a").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(vault.metadata.namespace.as_deref(), Some("e2e-a"));
        let unseal = vault.spec.unseal_config.clone().unwrap_or_default();
        let secret = unseal.kubernetes.unwrap_or_default();
        assert_eq!(secret.secret_namespace.as_deref(), Some("e2e-a"));
        assert_eq!(vault.spec.config.0["api_addr"], "https://vault.e2e-a:8200");
        let roles = &vault.spec.external_config.0["auth"][0]["roles"][0];
        assert_eq!(
            roles["bound_service_account_namespaces"],
            serde_json::json!(["e2e-a", "vswh"])
        );
        assert_eq!(roles["name"], "default", "only namespaces change");
    }

    #[test]
    fn the_sample_itself_is_unchanged() {
        let vault = sample("cr-raft.yaml").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            vault.spec.config.0["api_addr"],
            "https://vault.default:8200"
        );
        assert!(vault.metadata.namespace.is_none());
    }
}
