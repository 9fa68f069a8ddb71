//! The pure build step: the Kubernetes objects a `Vault` should own, computed from the
//! defaulted and validated resource alone. Nothing here talks to the API server, so every
//! object is unit-tested from YAML fixtures.

mod config;
mod merge;
mod services;
mod statefulset;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{Secret, Service};
use k8s_openapi::api::networking::v1::Ingress;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::ClusterRoleBinding;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::Resource;
use vault_api::Vault;
use vault_api::defaults;

pub use config::{RAW_CONFIG_KEY, render_config};
pub use merge::merge_by_name;
pub use services::{ACTIVE_LABEL, SCRAPE_LABEL, auth_delegator_name, per_pod_service_index};
pub use statefulset::VAULT_CONTAINER;

/// Image of this controller, whose `template` subcommand renders the configuration per pod.
pub const CONTROLLER_IMAGE: &str = "vault-operator/vault-controller:dev";
/// The one field manager of every object the controller applies.
pub const FIELD_MANAGER: &str = "vault-controller";
/// Label on the cluster-scoped objects of a `Vault`, naming its namespace, since they
/// cannot carry an owner reference to it.
pub const NAMESPACE_LABEL: &str = "vault.banzaicloud.com/namespace";

/// What the build step needs besides the resource.
#[derive(Clone, Debug)]
pub struct BuildOptions {
    /// Image of the init container that renders the configuration.
    pub controller_image: String,
}

impl Default for BuildOptions {
    fn default() -> Self {
        BuildOptions {
            controller_image: CONTROLLER_IMAGE.to_string(),
        }
    }
}

/// Every object a `Vault` should own, as the controller applies them.
#[derive(Clone, Debug)]
pub struct Desired {
    /// The Vault StatefulSet, `<name>`.
    pub stateful_set: StatefulSet,
    /// The main Service `<name>`, the headless one and one `<name>-<i>` per pod.
    pub services: Vec<Service>,
    /// `<name>-raw-config`: the configuration before each pod expands its variables.
    pub raw_config: Secret,
    /// Keeps Raft quorum through voluntary disruptions; none for a single pod.
    pub disruption_budget: Option<PodDisruptionBudget>,
    /// The Ingress, when `spec.ingress` asks for one.
    pub ingress: Option<Ingress>,
    /// Lets the Vault ServiceAccount review tokens, when kubernetes auth is configured.
    pub auth_delegator: Option<ClusterRoleBinding>,
    /// The Prometheus Operator's ServiceMonitor, when `serviceMonitorEnabled`; applied only
    /// where its CRD is installed.
    pub service_monitor: Option<serde_json::Value>,
}

/// Why the desired objects could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The resource has no name, namespace or uid (it was not read from the API server).
    #[error("building the objects of Vault {name}: metadata.{field} is not set")]
    MissingMetadata {
        /// The resource's name, as far as known.
        name: String,
        /// The missing field.
        field: &'static str,
    },
    /// The configuration could not be serialised.
    #[error("building {object} of Vault {name}: {source}")]
    Serialize {
        /// The resource's name.
        name: String,
        /// The object being built.
        object: String,
        /// The cause.
        source: serde_json::Error,
    },
}

/// The facts about a `Vault` that every builder needs, worked out once.
struct Facts<'a> {
    vault: &'a Vault,
    name: &'a str,
    namespace: &'a str,
    owner: OwnerReference,
    size: i32,
    tls: bool,
    api_port: i32,
    service_ports: BTreeMap<String, i32>,
}

impl Facts<'_> {
    fn scheme(&self) -> &'static str {
        if self.tls { "https" } else { "http" }
    }

    /// Metadata of an owned object: the Vault labels, the common annotations, the owner.
    fn metadata(&self, name: String) -> ObjectMeta {
        ObjectMeta {
            name: Some(name),
            namespace: Some(self.namespace.to_string()),
            labels: Some(self.labels()),
            annotations: non_empty(self.vault.spec.annotations.clone()),
            owner_references: Some(vec![self.owner.clone()]),
            ..ObjectMeta::default()
        }
    }

    /// Metadata of the objects Bank-Vaults gives `vaultLabels`/`vaultAnnotations` too.
    fn vault_metadata(&self, name: String) -> ObjectMeta {
        let mut metadata = self.metadata(name);
        let mut labels = self.labels();
        labels.extend(self.vault.spec.vault_labels.clone());
        let mut annotations = self.vault.spec.annotations.clone();
        annotations.extend(self.vault.spec.vault_annotations.clone());
        metadata.labels = Some(labels);
        metadata.annotations = non_empty(annotations);
        metadata
    }

    fn labels(&self) -> BTreeMap<String, String> {
        defaults::selector_labels(self.name)
    }

    fn is_raft(&self) -> bool {
        self.vault.spec.config.is_raft()
    }

    fn serialize_error(&self, object: &str) -> impl FnOnce(serde_json::Error) -> BuildError {
        let name = self.name.to_string();
        let object = object.to_string();
        move |source| BuildError::Serialize {
            name,
            object,
            source,
        }
    }
}

fn non_empty(map: BTreeMap<String, String>) -> Option<BTreeMap<String, String>> {
    (!map.is_empty()).then_some(map)
}

/// Builds every object of a `Vault` that has been through `vault_api::default` and
/// `vault_api::validate`.
// TODO(Velero fsfreeze sidecar and hooks for
// `veleroEnabled`; Istio port names for `istioEnabled`; restarts on `watchedSecrets*`):
// accepted by the api crate, not built yet.
pub fn build(vault: &Vault, options: &BuildOptions) -> Result<Desired, BuildError> {
    let facts = facts(vault)?;

    let raw_config = config::raw_config_secret(&facts)?;
    let config_hash = config::config_hash(&raw_config);
    let stateful_set = statefulset::stateful_set(&facts, options, &config_hash)?;

    Ok(Desired {
        stateful_set,
        services: services::services(&facts),
        raw_config,
        disruption_budget: services::disruption_budget(&facts),
        ingress: services::ingress(&facts),
        auth_delegator: services::auth_delegator(&facts),
        service_monitor: services::service_monitor(&facts),
    })
}

fn facts(vault: &Vault) -> Result<Facts<'_>, BuildError> {
    let name = vault.metadata.name.as_deref().unwrap_or_default();
    let missing = |field| BuildError::MissingMetadata {
        name: name.to_string(),
        field,
    };
    if name.is_empty() {
        return Err(missing("name"));
    }
    let namespace = vault
        .metadata
        .namespace
        .as_deref()
        .ok_or(missing("namespace"))?;
    let owner = vault.controller_owner_ref(&()).ok_or(missing("uid"))?;

    let mut service_ports = vault.spec.service_ports.clone();
    if service_ports.is_empty() {
        service_ports.insert("api-port".to_string(), defaults::API_PORT);
        service_ports.insert("cluster-port".to_string(), defaults::CLUSTER_PORT);
    }
    let api_port = vault
        .spec
        .config
        .listener_address()
        .and_then(|address| address.rsplit(':').next()?.parse().ok())
        .or_else(|| service_ports.get("api-port").copied())
        .unwrap_or(defaults::API_PORT);

    Ok(Facts {
        vault,
        name,
        namespace,
        owner,
        size: vault.spec.size.unwrap_or(defaults::SIZE),
        tls: vault.spec.config.tls_enabled(),
        api_port,
        service_ports,
    })
}
