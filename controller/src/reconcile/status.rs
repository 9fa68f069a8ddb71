//! The status step: what the controller observed, written through the status
//! subresource so it never races the spec.

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Patch, PatchParams};
use kube::{Api, Client, ResourceExt};
use vault_api::Vault;
use vault_api::status::{ConditionUpdate, READY, TLS, VaultStatus};

use super::Context;
use super::{ConfigObservation, Trust, VaultObservation};
use crate::build::Desired;

/// Why the status could not be written.
#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    /// Reading the StatefulSet the status describes failed.
    #[error("reading StatefulSet {name} for the status: {source}")]
    ReadStatefulSet {
        /// Its name.
        name: String,
        /// The cause.
        source: kube::Error,
    },
    /// Reading the current status failed.
    #[error("reading the status of Vault {name}: {source}")]
    Read {
        /// The `Vault`.
        name: String,
        /// The cause.
        source: kube::Error,
    },
    /// The API server refused the status.
    #[error("writing the status of Vault {name}: {source}")]
    Write {
        /// The `Vault`.
        name: String,
        /// The cause.
        source: kube::Error,
    },
}

/// Changes the status of `vault` with `change` and writes it when it differs. Every
/// step that reports (validation, workloads, the Vault step) goes through here, so
/// conditions the others set are kept.
pub async fn write_status(
    client: &Client,
    vault: &Vault,
    change: impl FnOnce(&mut VaultStatus),
) -> Result<(), StatusError> {
    // The status as the API server has it now, not as the watch cache had it when the
    // reconcile began: the patch replaces whole lists (conditions), and a cache behind our
    // own last write would put back what that write changed.
    let api: Api<Vault> = Api::namespaced(client.clone(), &vault.namespace().unwrap_or_default());
    let fresh = api
        .get_status(&vault.name_any())
        .await
        .map_err(|source| StatusError::Read {
            name: vault.name_any(),
            source,
        })?;
    let current = fresh.status.unwrap_or_default();
    let mut status = current.clone();
    change(&mut status);
    if status == current {
        return Ok(());
    }
    let patch = serde_json::json!({"status": status});
    api.patch_status(
        &vault.name_any(),
        &PatchParams::default(),
        &Patch::Merge(&patch),
    )
    .await
    .map(drop)
    .map_err(|source| StatusError::Write {
        name: vault.name_any(),
        source,
    })
}

/// What the steps after apply saw, for the status.
pub(super) struct Steps<'a> {
    /// The Vault step.
    pub vault: &'a VaultObservation,
    /// The configuration step.
    pub config: &'a ConfigObservation,
    /// How the pods' certificates are checked.
    pub trust: &'a Trust,
}

/// Writes what the workload and the steps show: pod names, Ready pods, the Ready
/// condition, what the pods said about their seal and Raft role, and the configuration.
pub(super) async fn write_workload_status(
    ctx: &Context,
    vault: &Vault,
    desired: &Desired,
    steps: Steps<'_>,
) -> Result<(), StatusError> {
    let namespace = vault.namespace().unwrap_or_default();
    let name = vault.name_any();
    let api: Api<StatefulSet> = Api::namespaced(ctx.client.clone(), &namespace);
    let observed = api
        .get_opt(&name)
        .await
        .map_err(|source| StatusError::ReadStatefulSet {
            name: name.clone(),
            source,
        })?;
    let size = desired.stateful_set.spec.replicas.unwrap_or(1);
    let ready = observed
        .and_then(|set| set.status)
        .and_then(|status| status.ready_replicas)
        .unwrap_or(0);

    let message = format!("{ready} of {size} pods ready (unsealed)");
    let update = ConditionUpdate {
        type_: READY,
        status: ready >= size,
        reason: if ready >= size {
            "PodsReady"
        } else {
            "PodsNotReady"
        },
        message: &message,
        generation: vault.metadata.generation,
    };
    write_status(&ctx.client, vault, |status| {
        status.nodes = (0..size).map(|i| format!("{name}-{i}")).collect();
        status.ready_pods = Some(ready);
        status.observed_generation = vault.metadata.generation;
        status.set_condition(update, Time(k8s_openapi::jiff::Timestamp::now()));
        steps.vault.apply_to(status, vault);
        steps.config.apply_to(status, vault);
        let (ok, reason, message) = trust_condition(vault, steps.trust);
        let tls = ConditionUpdate {
            type_: TLS,
            status: ok,
            reason,
            message: &message,
            generation: vault.metadata.generation,
        };
        status.set_condition(tls, Time(k8s_openapi::jiff::Timestamp::now()));
    })
    .await
}

/// The TLS condition: against what the controller checks the pods' certificates.
fn trust_condition(vault: &Vault, trust: &Trust) -> (bool, &'static str, String) {
    let generated = vault_api::defaults::tls_secret_name(&vault.name_any());
    match (trust, vault.spec.existing_tls_secret_name.as_deref()) {
        (Trust::Plain, _) => (
            false,
            "Disabled",
            "the listener has TLS switched off: the controller speaks plain HTTP to the pods"
                .to_string(),
        ),
        (Trust::Ca(_), None) => (
            true,
            "GeneratedCA",
            format!("pods are verified against the generated CA in Secret {generated}"),
        ),
        (Trust::Ca(_), Some(secret)) => (
            true,
            "SecretCA",
            format!("pods are verified against ca.crt of Secret {secret}"),
        ),
        (Trust::SystemRoots, secret) => (
            true,
            "SystemRoots",
            format!(
                "Secret {} has no ca.crt: pods are verified against the system's root \
                 certificates",
                secret.unwrap_or(&generated)
            ),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tls_condition_names_what_the_pods_are_verified_against() {
        let mut vault = Vault::new("vault", Default::default());
        let ca = Trust::Ca("pem".to_string());
        assert_eq!(trust_condition(&vault, &ca).1, "GeneratedCA");
        assert!(trust_condition(&vault, &ca).2.contains("vault-tls"));
        assert!(!trust_condition(&vault, &Trust::Plain).0);

        vault.spec.existing_tls_secret_name = Some("mine".to_string());
        assert_eq!(trust_condition(&vault, &ca).1, "SecretCA");
        let roots = trust_condition(&vault, &Trust::SystemRoots);
        assert_eq!((roots.0, roots.1), (true, "SystemRoots"));
        assert!(roots.2.contains("Secret mine has no ca.crt"), "{}", roots.2);
    }
}
