//! What Vault's `sys/` endpoints answer, typed for the fields the controller reads.

use serde::{Deserialize, Serialize};

use crate::Secret;

/// Which server answers: HashiCorp Vault or OpenBao.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flavor {
    /// HashiCorp Vault.
    Vault,
    /// OpenBao.
    OpenBao,
    /// A server that says neither in a way this version knows.
    Unknown,
}

/// `GET sys/seal-status`: answered without a token, sealed or not.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct SealStatus {
    /// `shamir`, or the auto-unseal type.
    #[serde(default, rename = "type")]
    pub seal_type: String,
    /// Whether Vault is initialised. A Raft node that has not joined says false.
    pub initialized: bool,
    /// Whether Vault is sealed.
    pub sealed: bool,
    /// Shares needed to unseal.
    #[serde(default, rename = "t")]
    pub threshold: u32,
    /// Shares in all.
    #[serde(default, rename = "n")]
    pub shares: u32,
    /// Shares submitted so far towards the next unseal.
    #[serde(default)]
    pub progress: u32,
    /// Whether the keys are recovery keys (auto-unseal).
    #[serde(default)]
    pub recovery_seal: bool,
    /// The server's version, such as `2.7.2`.
    #[serde(default)]
    pub version: String,
    /// HashiCorp Vault's build date; OpenBao does not send it.
    #[serde(default)]
    pub build_date: Option<String>,
    /// OpenBao's commit date; HashiCorp Vault does not send it.
    #[serde(default)]
    pub commit_date: Option<String>,
    /// The storage backend, such as `raft`.
    #[serde(default)]
    pub storage_type: Option<String>,
}

impl SealStatus {
    /// Tells OpenBao from HashiCorp Vault by what the server sends: HashiCorp Vault sends
    /// `build_date`, OpenBao sends `commit_date` instead.
    pub fn flavor(&self) -> Flavor {
        match (&self.build_date, &self.commit_date) {
            (Some(_), _) => Flavor::Vault,
            (None, Some(_)) => Flavor::OpenBao,
            (None, None) => Flavor::Unknown,
        }
    }
}

/// `GET sys/health`, asked so that every state answers 200.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct Health {
    /// Whether Vault is initialised.
    pub initialized: bool,
    /// Whether Vault is sealed.
    pub sealed: bool,
    /// Whether this node is a standby (not the active node).
    #[serde(default)]
    pub standby: bool,
    /// The server's version.
    #[serde(default)]
    pub version: String,
    /// Set by HashiCorp Vault 1.16 and later only.
    #[serde(default)]
    pub enterprise: Option<bool>,
}

/// `GET sys/leader`: answered without a token.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct Leader {
    /// Whether the storage supports HA.
    #[serde(default)]
    pub ha_enabled: bool,
    /// Whether the node asked is the active node.
    #[serde(default)]
    pub is_self: bool,
    /// The active node's API address, empty when there is none.
    #[serde(default)]
    pub leader_address: String,
}

/// What `sys/init` is asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InitRequest {
    /// Number of key shares.
    pub shares: u32,
    /// Shares needed to unseal (or to authorise with recovery keys).
    pub threshold: u32,
    /// Ask for recovery shares: the server has an auto-unseal `seal` stanza.
    pub recovery: bool,
}

/// What `sys/init` returns. Every value is a [`Secret`]; `Debug` shows only counts.
#[derive(Clone, Default, Deserialize)]
pub struct InitResponse {
    /// Unseal key shares, hex encoded; empty with auto-unseal.
    #[serde(default)]
    pub keys: Vec<Secret>,
    /// Recovery key shares, hex encoded; only with auto-unseal.
    #[serde(default)]
    pub recovery_keys: Vec<Secret>,
    /// The initial root token.
    pub root_token: Secret,
}

impl std::fmt::Debug for InitResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InitResponse")
            .field("keys", &self.keys.len())
            .field("recovery_keys", &self.recovery_keys.len())
            .field("root_token", &self.root_token)
            .finish()
    }
}

/// `GET sys/storage/raft/configuration`: the Raft peers as the leader knows them.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct RaftConfiguration {
    /// Every peer.
    pub servers: Vec<RaftServer>,
    /// The Raft index of this configuration.
    #[serde(default)]
    pub index: u64,
}

/// One Raft peer.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct RaftServer {
    /// The node ID, the pod name in our configurations.
    pub node_id: String,
    /// The peer's cluster address.
    #[serde(default)]
    pub address: String,
    /// Whether it is the leader.
    #[serde(default)]
    pub leader: bool,
    /// Whether it votes.
    #[serde(default)]
    pub voter: bool,
}

impl RaftConfiguration {
    /// The node ID of the leader, if one is elected.
    pub fn leader(&self) -> Option<&str> {
        self.servers
            .iter()
            .find(|server| server.leader)
            .map(|server| server.node_id.as_str())
    }

    /// The peer with this node ID.
    pub fn server(&self, node_id: &str) -> Option<&RaftServer> {
        self.servers.iter().find(|server| server.node_id == node_id)
    }
}

/// `GET sys/storage/raft/autopilot/state`: autopilot's view of the peers' health.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct AutopilotState {
    /// Whether every peer is healthy.
    #[serde(default)]
    pub healthy: bool,
    /// How many more peers may fail before the cluster loses quorum.
    #[serde(default)]
    pub failure_tolerance: i64,
    /// The leader's node ID.
    #[serde(default)]
    pub leader: String,
    /// Each peer by node ID.
    #[serde(default)]
    pub servers: std::collections::BTreeMap<String, AutopilotServer>,
}

/// One peer in [`AutopilotState`].
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct AutopilotServer {
    /// Node ID.
    #[serde(default)]
    pub id: String,
    /// Whether autopilot sees it healthy.
    #[serde(default)]
    pub healthy: bool,
    /// `leader`, `voter`, `non-voter`...
    #[serde(default)]
    pub status: String,
}
