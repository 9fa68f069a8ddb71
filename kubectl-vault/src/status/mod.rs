//! `kubectl vault status`: what each Vault cluster and each of its pods is doing.
//!
//! One struct, [`StatusReport`], holds what was found; [`render`] turns it into a table,
//! JSON or YAML as a pure function, and [`fetch`] fills it from the cluster.

pub mod fetch;
pub mod render;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use serde::Serialize;
use vault_api::VaultPodStatus;
use vault_api::status::{Condition, RaftRole};

/// Every Vault asked about.
#[derive(Serialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct StatusReport {
    /// The Vault clusters, by namespace and name.
    pub vaults: Vec<VaultReport>,
    /// Where they were looked for, for the message when there are none: a namespace, or
    /// none for every namespace.
    #[serde(skip)]
    pub namespace: Option<String>,
}

/// One Vault cluster: a summary and its pods.
#[derive(Serialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct VaultReport {
    /// Name of the resource.
    pub name: String,
    /// Its namespace.
    pub namespace: String,
    /// Pods asked for (`spec.size`, defaulted).
    pub size: i32,
    /// Pods that are Ready.
    pub ready_pods: i32,
    /// Pods that said they are sealed.
    pub sealed_pods: i32,
    /// The pod that is the active node, if one said so (else the controller's word).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub leader: Option<String>,
    /// The version the pods run; several, comma-separated, during an upgrade.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Where the unseal keys are kept.
    pub key_store: String,
    /// The conditions the controller wrote.
    pub conditions: Vec<Condition>,
    /// One entry per pod.
    pub pods: Vec<PodReport>,
    /// What could not be found out, such as a Secret the user may not read.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub problems: Vec<String>,
}

/// One Vault pod: the shared per-pod status, and what Kubernetes says about the pod.
#[derive(Serialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PodReport {
    /// What Vault on the pod reports (live when it answered, else the controller's).
    #[serde(flatten)]
    pub vault: VaultPodStatus,
    /// The node it runs on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// The node's zone.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub zone: Option<String>,
    /// Whether the pod is Ready.
    pub ready: bool,
    /// Restarts of its containers.
    pub restarts: i32,
    /// When the certificate Vault serves expires.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub certificate_expiry: Option<Time>,
    /// Why Vault on the pod did not answer, when it did not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unreachable: Option<String>,
}

impl VaultReport {
    /// Fills the counts, leader and version from the pods; `controller_leader` is the
    /// leader the controller last wrote, used when no pod said it leads.
    pub fn summarise(mut self, controller_leader: &str) -> Self {
        let count = |f: fn(&PodReport) -> bool| self.pods.iter().filter(|p| f(p)).count();
        self.ready_pods = count(|p| p.ready) as i32;
        self.sealed_pods = count(|p| p.vault.sealed == Some(true)) as i32;

        let live_leader = self
            .pods
            .iter()
            .find(|p| p.vault.raft_role == Some(RaftRole::Leader))
            .map(|p| p.vault.name.clone());
        self.leader = live_leader
            .or_else(|| Some(controller_leader.to_string()).filter(|leader| !leader.is_empty()));

        let mut versions: Vec<String> = self
            .pods
            .iter()
            .filter_map(|p| p.vault.version.clone())
            .collect();
        versions.sort();
        versions.dedup();
        self.version = Some(versions.join(", ")).filter(|v| !v.is_empty());
        self
    }
}
