//! What Vault's `sys/` endpoints answer, typed for the fields the controller reads.

use serde::{Deserialize, Serialize};

use crate::Secret;
pub use vault_api::status::Flavor;

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
    /// `build_date`, OpenBao sends `commit_date` instead; `None` when it sends neither.
    pub fn flavor(&self) -> Option<Flavor> {
        match (&self.build_date, &self.commit_date) {
            (Some(_), _) => Some(Flavor::Vault),
            (None, Some(_)) => Some(Flavor::OpenBao),
            (None, None) => None,
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

impl RaftServer {
    /// The ordinal of the pod of StatefulSet `set` this peer is, by node ID or cluster
    /// address; `None` for a peer that is no such pod.
    pub fn ordinal_in(&self, set: &str) -> Option<u32> {
        let prefix = format!("{set}-");
        [self.node_id.as_str(), self.host_label()]
            .into_iter()
            .find_map(|name| name.strip_prefix(&prefix)?.parse().ok())
    }

    /// The first label of the host in the cluster address.
    fn host_label(&self) -> &str {
        let host = self
            .address
            .rsplit_once(':')
            .map_or(self.address.as_str(), |(host, _)| host);
        host.split('.').next().unwrap_or(host)
    }
}

impl RaftConfiguration {
    /// The node ID of the leader, if one is elected.
    pub fn leader(&self) -> Option<&str> {
        self.servers
            .iter()
            .find(|server| server.leader)
            .map(|server| server.node_id.as_str())
    }

    /// The peer that is pod `pod`: the one with that node ID, else the one whose cluster
    /// address names the pod (`vault-0:8201`, `vault-0.ns.svc:8201`). Raft node IDs are
    /// random unless the configuration sets them, and Bank-Vaults' samples do not.
    pub fn server(&self, pod: &str) -> Option<&RaftServer> {
        let by_id = self.servers.iter().find(|server| server.node_id == pod);
        by_id.or_else(|| {
            self.servers
                .iter()
                .find(|server| server.host_label() == pod)
        })
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

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn seal_status(value: serde_json::Value) -> SealStatus {
        serde_json::from_value(value).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn flavor_from_what_the_server_sends() {
        // As OpenBao 2.7.2 answers `sys/seal-status`.
        let openbao = seal_status(
            json!({"type": "shamir", "initialized": true, "sealed": false,
            "t": 1, "n": 1, "progress": 0, "version": "2.7.2",
            "commit_date": "2026-10-26T20:32:27Z", "storage_type": "raft"}),
        );
        assert_eq!(openbao.flavor(), Some(Flavor::OpenBao));
        // As HashiCorp Vault answers it.
        let vault = seal_status(
            json!({"type": "shamir", "initialized": false, "sealed": true,
            "t": 0, "n": 0, "progress": 0, "version": "1.20.0",
            "build_date": "2025-06-23T10:21:30Z"}),
        );
        assert_eq!(vault.flavor(), Some(Flavor::Vault));
        assert_eq!(
            seal_status(json!({"initialized": true, "sealed": true})).flavor(),
            None
        );
    }

    #[test]
    fn init_response_debug_shows_counts_only() {
        let response: InitResponse = serde_json::from_value(json!({
            "keys": ["aa11", "bb22"], "keys_base64": ["qhE=", "uyI="],
            "root_token": "s.rootrootroot"}))
        .unwrap_or_default();
        assert_eq!(response.keys.len(), 2);
        assert_eq!(response.keys[1].expose(), "bb22");
        let debug = format!("{response:?}");
        assert_eq!(
            debug,
            "InitResponse { keys: 2, recovery_keys: 0, root_token: Secret(***) }"
        );
    }

    #[test]
    fn leader_from_the_raft_configuration() {
        let config: RaftConfiguration = serde_json::from_value(json!({"index": 0, "servers": [
            {"node_id": "vault-0", "address": "10.0.0.1:8201", "leader": false, "voter": true},
            {"node_id": "vault-1", "address": "10.0.0.2:8201", "leader": true, "voter": true},
        ]}))
        .unwrap_or_default();
        assert_eq!(config.leader(), Some("vault-1"));
        assert!(
            config
                .server("vault-0")
                .is_some_and(|s| s.voter && !s.leader)
        );
        assert!(config.server("vault-2").is_none());
    }

    #[test]
    fn a_peer_with_a_random_node_id_is_found_by_its_cluster_address() {
        let config: RaftConfiguration = serde_json::from_value(json!({"index": 0, "servers": [
            {"node_id": "6f0c4f36-8a52", "address": "vault-0:8201", "leader": true},
            {"node_id": "0d2b7c1e-91aa", "address": "vault-1.ns.svc:8201", "voter": true},
            {"node_id": "e4f1a2b3-0000", "address": "10.0.0.3:8201"},
        ]}))
        .unwrap_or_default();
        assert!(config.server("vault-0").is_some_and(|s| s.leader));
        assert!(config.server("vault-1").is_some_and(|s| s.voter));
        assert!(config.server("vault-2").is_none());
        assert!(config.server("vault").is_none(), "a prefix is not a match");
        let ordinals: Vec<_> = config
            .servers
            .iter()
            .map(|s| s.ordinal_in("vault"))
            .collect();
        assert_eq!(ordinals, [Some(0), Some(1), None]);
        assert_eq!(config.servers[0].ordinal_in("vault-0"), None);
    }
}
