//! `status` rendering from fixed structs, against golden files: a healthy three-pod Raft
//! cluster with one pod unreachable, and a sealed one the controller reports on.

mod common;

use common::golden;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kubectl_vault::cli::StatusFormat;
use kubectl_vault::status::render::render;
use kubectl_vault::status::{PodReport, StatusReport, VaultReport};
use vault_api::VaultPodStatus;
use vault_api::status::{Condition, RaftRole};

/// 2026-12-03T12:00:00Z, the time the golden files were rendered at.
const NOW: i64 = 1_796_299_200;
const DAY: i64 = 86_400;

fn at(seconds: i64) -> Timestamp {
    Timestamp::from_second(seconds).unwrap_or(Timestamp::UNIX_EPOCH)
}

fn condition(type_: &str, status: &str, reason: &str, message: &str) -> Condition {
    Condition {
        type_: type_.to_string(),
        status: status.to_string(),
        reason: Some(reason.to_string()),
        message: Some(message.to_string()),
        ..Condition::default()
    }
}

fn pod(name: &str, node: &str, zone: &str, role: RaftRole) -> PodReport {
    PodReport {
        vault: VaultPodStatus {
            name: name.to_string(),
            initialized: Some(true),
            sealed: Some(false),
            raft_role: Some(role),
            voter: Some(true),
            version: Some("2.0.1".to_string()),
        },
        node: Some(node.to_string()),
        zone: Some(zone.to_string()),
        ready: true,
        restarts: 0,
        certificate_expiry: Some(Time(at(NOW + 60 * DAY))),
        unreachable: None,
    }
}

fn report() -> StatusReport {
    let unreachable = PodReport {
        vault: VaultPodStatus {
            name: "vault-2".to_string(),
            voter: Some(true),
            ..VaultPodStatus::default()
        },
        ready: false,
        restarts: 4,
        unreachable: Some("no answer within 3s".to_string()),
        ..pod("vault-2", "node-c", "zone-c", RaftRole::Follower)
    };
    let raft = VaultReport {
        name: "vault".to_string(),
        namespace: "default".to_string(),
        size: 3,
        key_store: "kubernetes".to_string(),
        conditions: vec![
            condition("Ready", "False", "PodsNotReady", "1 of 3 pods not ready"),
            condition(
                "Initialized",
                "True",
                "Initialized",
                "keys in secret/vault-unseal-keys",
            ),
            condition("Unsealed", "True", "Unsealed", "every pod is unsealed"),
            condition("Configured", "True", "Configured", "externalConfig applied"),
        ],
        pods: vec![
            pod("vault-0", "node-a", "zone-a", RaftRole::Leader),
            pod("vault-1", "node-b", "zone-b", RaftRole::Follower),
            unreachable,
        ],
        ..VaultReport::default()
    }
    .summarise("vault-0");

    let sealed_pod = PodReport {
        vault: VaultPodStatus {
            sealed: Some(true),
            raft_role: None,
            voter: None,
            version: Some("2.4.1".to_string()),
            ..pod("bao-0", "", "", RaftRole::Leader).vault
        },
        zone: None,
        ready: false,
        certificate_expiry: Some(Time(at(NOW + 2 * DAY))),
        ..pod("bao-0", "node-a", "", RaftRole::Leader)
    };
    let sealed = VaultReport {
        name: "bao".to_string(),
        namespace: "openbao".to_string(),
        size: 1,
        key_store: "aws".to_string(),
        conditions: vec![condition(
            "Unsealed",
            "False",
            "KeyStoreUnreachable",
            "reading keys from s3://vault-keys: access denied",
        )],
        pods: vec![sealed_pod],
        problems: vec!["the cluster refused reading secret/bao-tls: forbidden".to_string()],
        ..VaultReport::default()
    }
    .summarise("");

    let empty = VaultReport {
        name: "new".to_string(),
        namespace: "default".to_string(),
        size: 3,
        key_store: "kubernetes".to_string(),
        ..VaultReport::default()
    }
    .summarise("");

    StatusReport {
        vaults: vec![raft, sealed, empty],
        namespace: None,
    }
}

fn rendered(format: StatusFormat, colour: bool) -> String {
    match render(&report(), format, at(NOW), colour) {
        Ok(text) => text,
        Err(e) => panic!("rendering: {e}"),
    }
}

#[test]
fn table() {
    golden("status/table.txt", &rendered(StatusFormat::Table, false));
}

#[test]
fn table_in_colour() {
    golden(
        "status/table-colour.txt",
        &rendered(StatusFormat::Table, true),
    );
}

#[test]
fn json() {
    golden("status/status.json", &rendered(StatusFormat::Json, false));
}

#[test]
fn yaml() {
    golden("status/status.yaml", &rendered(StatusFormat::Yaml, false));
}

#[test]
fn the_summary_counts_the_pods() {
    let vaults = report().vaults;
    let counts: Vec<_> = vaults
        .iter()
        .map(|v| (v.ready_pods, v.sealed_pods, v.leader.as_deref()))
        .collect();
    assert_eq!(
        counts,
        [(2, 0, Some("vault-0")), (0, 1, None), (0, 0, None)]
    );
}

#[test]
fn no_vaults() {
    let report = StatusReport {
        vaults: Vec::new(),
        namespace: Some("default".to_string()),
    };
    let text = render(&report, StatusFormat::Table, at(NOW), false).unwrap_or_default();
    assert_eq!(text, "No Vault resources found in default namespace.\n");
}
