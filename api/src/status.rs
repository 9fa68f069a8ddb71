//! The observed state of a `Vault`, written by the controller and read by the plugin.
//!
//! A status may have been written by the Bank-Vaults operator (conditions without `reason`,
//! an `error` field, `leader` and `nodes` only), so every field is read leniently: a field
//! that does not parse is dropped, never the whole object.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use schemars::JsonSchema;
use serde::de::{DeserializeOwned, Deserializer};
use serde::{Deserialize, Serialize};

/// Condition type: every pod is Ready, unsealed, and the configuration is applied.
pub const READY: &str = "Ready";
/// Condition type: Vault has been initialised and its keys are in the key store.
pub const INITIALIZED: &str = "Initialized";
/// Condition type: every Vault pod is unsealed.
pub const UNSEALED: &str = "Unsealed";
/// Condition type: `externalConfig` is applied and Vault holds it.
pub const CONFIGURED: &str = "Configured";
/// Condition type: how the controller checks the certificate each Vault pod presents (its
/// reason says against what), or `False` when the listener speaks plain HTTP.
pub const TLS: &str = "TLS";

/// The observed state of a Vault cluster.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VaultStatus {
    /// Names of the Vault pods.
    #[serde(default, deserialize_with = "lenient")]
    pub nodes: Vec<String>,

    /// Name of the pod that is the active node (the Raft leader).
    #[serde(default, deserialize_with = "lenient")]
    pub leader: String,

    /// Ready, Initialized, Unsealed and Configured, each with a reason and message.
    #[serde(default, deserialize_with = "lenient_items")]
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,

    /// The resource generation this status describes.
    #[serde(default, deserialize_with = "lenient")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    /// Number of Vault pods that are Ready.
    #[serde(default, deserialize_with = "lenient")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ready_pods: Option<i32>,

    /// Number of Vault pods that are sealed.
    #[serde(default, deserialize_with = "lenient")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sealed_pods: Option<i32>,

    /// What each Vault pod last reported.
    #[serde(default, deserialize_with = "lenient_items")]
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub pods: Vec<VaultPodStatus>,

    /// Which server the pods of `flavorImage` run, as they said themselves. OpenBao takes
    /// audit devices from its server configuration only, so the operator renders them there
    /// when this says `OpenBao` for the image in the spec (or, before any pod of that image
    /// has answered, when the image is named `openbao`).
    #[serde(default, deserialize_with = "lenient")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub flavor: Option<Flavor>,

    /// The image whose pods said `flavor`.
    #[serde(default, deserialize_with = "lenient")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub flavor_image: Option<String>,
}

/// Which server answers: HashiCorp Vault or OpenBao.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum Flavor {
    /// HashiCorp Vault.
    Vault,
    /// OpenBao.
    OpenBao,
}

/// A condition in the shape of `metav1.Condition`; `reason`, `message` and the time are
/// optional so that conditions written by Bank-Vaults still read.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// Ready, Initialized, Unsealed or Configured.
    #[serde(rename = "type")]
    pub type_: String,

    /// `True`, `False` or `Unknown`.
    pub status: String,

    /// A CamelCase word saying why the condition has this status.
    #[serde(default, deserialize_with = "lenient")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,

    /// What a person should know, such as what to fix.
    #[serde(default, deserialize_with = "lenient")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,

    /// When the status last changed.
    #[serde(default, deserialize_with = "lenient")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_transition_time: Option<Time>,

    /// The resource generation the condition was set for.
    #[serde(default, deserialize_with = "lenient")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    /// The error text Bank-Vaults writes into its conditions; read, never written.
    #[serde(default, deserialize_with = "lenient")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// What one Vault pod reports about itself. The controller writes it into the status and
/// `kubectl vault status` fills it from the live pods in the same shape.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VaultPodStatus {
    /// Name of the pod.
    pub name: String,

    /// Whether Vault on the pod is initialised; unknown when the pod did not answer.
    #[serde(default, deserialize_with = "lenient")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub initialized: Option<bool>,

    /// Whether Vault on the pod is sealed; unknown when the pod did not answer.
    #[serde(default, deserialize_with = "lenient")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sealed: Option<bool>,

    /// The pod's role in the cluster.
    #[serde(default, deserialize_with = "lenient")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub raft_role: Option<RaftRole>,

    /// Whether the pod is a voting Raft peer.
    #[serde(default, deserialize_with = "lenient")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub voter: Option<bool>,

    /// Vault (or OpenBao) version the pod runs.
    #[serde(default, deserialize_with = "lenient")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
}

/// A pod's role in the cluster.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum RaftRole {
    /// The active node and Raft leader.
    Leader,
    /// A Raft follower.
    Follower,
    /// A standby of a non-Raft HA backend.
    Standby,
    /// A role this version does not know.
    #[serde(other)]
    Unknown,
}

impl VaultStatus {
    /// The condition of a type, if set.
    pub fn condition(&self, type_: &str) -> Option<&Condition> {
        self.conditions.iter().find(|c| c.type_ == type_)
    }

    /// True when the condition of a type is set and `True`.
    pub fn is_true(&self, type_: &str) -> bool {
        self.condition(type_).is_some_and(|c| c.status == "True")
    }

    /// Sets a condition. Its transition time changes only when its status does, so that
    /// repeating the same state leaves the time of the change visible.
    pub fn set_condition(&mut self, update: ConditionUpdate<'_>, now: Time) {
        let status = if update.status { "True" } else { "False" };
        let previous = self.conditions.iter().position(|c| c.type_ == update.type_);
        let transition = match previous.map(|i| &self.conditions[i]) {
            Some(old) if old.status == status => old.last_transition_time.clone().or(Some(now)),
            _ => Some(now),
        };

        let condition = Condition {
            type_: update.type_.to_string(),
            status: status.to_string(),
            reason: Some(update.reason.to_string()),
            message: Some(update.message.to_string()),
            last_transition_time: transition,
            observed_generation: update.generation,
            error: None,
        };
        match previous {
            Some(i) => self.conditions[i] = condition,
            None => self.conditions.push(condition),
        }
    }
}

/// A condition to set through [`VaultStatus::set_condition`].
#[derive(Clone, Copy, Debug)]
pub struct ConditionUpdate<'a> {
    /// Ready, Initialized, Unsealed or Configured.
    pub type_: &'a str,
    /// Whether the condition holds.
    pub status: bool,
    /// A CamelCase word for why.
    pub reason: &'a str,
    /// What a person should know.
    pub message: &'a str,
    /// The resource generation it was set for.
    pub generation: Option<i64>,
}

/// Reads a field, or its default when the stored value does not have the expected shape.
fn lenient<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: DeserializeOwned + Default,
{
    let value = serde_json::Value::deserialize(deserializer)?;
    Ok(serde_json::from_value(value).unwrap_or_default())
}

/// Reads a list, keeping the items that parse and dropping the others.
fn lenient_items<'de, D, T>(deserializer: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: DeserializeOwned,
{
    let value = serde_json::Value::deserialize(deserializer)?;
    let items = match value {
        serde_json::Value::Array(items) => items,
        _ => return Ok(Vec::new()),
    };
    Ok(items
        .into_iter()
        .filter_map(|item| serde_json::from_value(item).ok())
        .collect())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn reads_a_status_written_by_bank_vaults() {
        let written = json!({
            "nodes": ["vault-0", "vault-1"],
            "leader": "vault-0",
            "conditions": [
                {"type": "Healthy", "status": "True"},
                {"type": "Healthy", "status": "False", "error": "sealed"},
            ],
        });
        let status: VaultStatus = serde_json::from_value(written).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(status.nodes, ["vault-0", "vault-1"]);
        assert_eq!(status.leader, "vault-0");
        assert_eq!(status.conditions.len(), 2);
        assert_eq!(status.conditions[1].error.as_deref(), Some("sealed"));
    }

    #[test]
    fn a_malformed_field_is_dropped_not_the_status() {
        let written = json!({
            "leader": 7,
            "nodes": "vault-0",
            "conditions": [{"status": "True"}, {"type": "Ready", "status": "True"}],
            "pods": [{"name": "vault-0", "sealed": "maybe", "raftRole": "learner"}],
        });
        let status: VaultStatus = serde_json::from_value(written).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(status.leader, "");
        assert!(status.nodes.is_empty());
        assert_eq!(
            status.conditions.len(),
            1,
            "the condition without a type is dropped"
        );
        assert!(status.is_true(READY));
        assert_eq!(status.pods[0].sealed, None);
        assert_eq!(status.pods[0].raft_role, Some(RaftRole::Unknown));
    }

    #[test]
    fn transition_time_moves_only_when_the_status_changes() {
        let t0: Time = serde_json::from_value(json!("2026-01-01T00:00:00Z"))
            .unwrap_or(Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH));
        let t1: Time = serde_json::from_value(json!("2026-01-02T00:00:00Z"))
            .unwrap_or(Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH));
        let mut status = VaultStatus::default();
        let sealed = ConditionUpdate {
            type_: UNSEALED,
            status: false,
            reason: "Sealed",
            message: "3 of 3 pods sealed",
            generation: Some(1),
        };
        status.set_condition(sealed, t0.clone());
        status.set_condition(
            ConditionUpdate {
                message: "2 of 3 pods sealed",
                ..sealed
            },
            t1.clone(),
        );
        let condition = status.condition(UNSEALED).cloned().unwrap_or_default();
        assert_eq!(condition.last_transition_time, Some(t0));
        assert_eq!(condition.message.as_deref(), Some("2 of 3 pods sealed"));

        status.set_condition(
            ConditionUpdate {
                status: true,
                ..sealed
            },
            t1.clone(),
        );
        assert_eq!(status.conditions.len(), 1);
        assert_eq!(status.conditions[0].last_transition_time, Some(t1));
        assert!(status.is_true(UNSEALED));
    }
}
