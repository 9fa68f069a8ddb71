//! The Vault configuration as the controller stores it in `<name>-raw-config`: the user's
//! `spec.config` plus what the operator adds (Raft `retry_join`, service registration, and
//! for OpenBao the audit devices of `externalConfig`).
//! Variables such as `${.Env.POD_NAME}` stay in; each pod's init container expands them.

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};
use vault_api::defaults;

use super::{BuildError, Facts};
use crate::external;

/// Key of the configuration in `<name>-raw-config`, as Bank-Vaults names it.
pub const RAW_CONFIG_KEY: &str = "vault-config.json";

/// The configuration each pod renders: `spec.config` with `retry_join` stanzas for every
/// Raft peer and the Kubernetes service registration stanza when it is enabled.
pub fn render_config(vault: &vault_api::Vault) -> Result<Value, BuildError> {
    let facts = super::facts(vault)?;
    Ok(Value::Object(config(&facts)))
}

fn config(facts: &Facts<'_>) -> Map<String, Value> {
    let mut config = facts.vault.spec.config.0.clone();

    if facts.is_raft() {
        let peers = retry_join(facts);
        if let Some(raft) = raft_settings(&mut config) {
            // The user's own retry_join is kept as written: they may join peers we do not
            // know about, such as another cluster's.
            raft.entry("retry_join").or_insert(Value::Array(peers));
        }
    }

    // OpenBao takes audit devices from its configuration only, not through its API.
    if external::audit::runs_openbao(facts.vault) {
        let external_config = Value::Object(facts.vault.spec.external_config.0.clone());
        if let Some(audit) = external::audit::server_config_stanzas(&external_config) {
            config.entry("audit").or_insert(audit);
        }
    }

    if facts.vault.spec.service_registration_enabled == Some(true) {
        config
            .entry("service_registration")
            .or_insert_with(|| json!({"kubernetes": {}}));
    }
    config
}

/// One `retry_join` stanza per pod, at its own `<name>-<i>` Service: followers can then
/// rejoin after a full outage, when no main Service endpoint is ready to lead them.
fn retry_join(facts: &Facts<'_>) -> Vec<Value> {
    let scheme = facts.scheme();
    let mut addresses: Vec<String> = (0..facts.size)
        .map(|i| {
            format!(
                "{scheme}://{}-{i}.{}.svc:{}",
                facts.name, facts.namespace, facts.api_port
            )
        })
        .collect();
    if let Some(leader) = facts.vault.spec.raft_leader_address.as_deref() {
        let leader_scheme = facts
            .vault
            .spec
            .raft_leader_api_scheme_override
            .as_deref()
            .unwrap_or(scheme);
        addresses.push(if leader.contains("://") {
            leader.to_string()
        } else {
            format!("{leader_scheme}://{leader}:{}", facts.api_port)
        });
    }

    addresses
        .into_iter()
        .map(|address| {
            let mut stanza = json!({"leader_api_addr": address});
            if facts.tls {
                stanza["leader_ca_cert_file"] = defaults::TLS_CA_FILE.into();
            }
            stanza
        })
        .collect()
}

/// The settings object of the Raft backend, in the object or list form Vault accepts.
fn raft_settings(config: &mut Map<String, Value>) -> Option<&mut Map<String, Value>> {
    let key = if config.contains_key("storage") {
        "storage"
    } else {
        "backend"
    };
    let stanza = match config.get_mut(key)? {
        Value::Array(items) => items.first_mut()?,
        other => other,
    };
    let raft = match stanza.get_mut("raft")? {
        Value::Array(items) => items.first_mut()?,
        other => other,
    };
    raft.as_object_mut()
}

/// `<name>-raw-config`, holding the configuration as JSON.
pub(super) fn raw_config_secret(facts: &Facts<'_>) -> Result<Secret, BuildError> {
    let json = serde_json::to_vec_pretty(&config(facts))
        .map_err(facts.serialize_error("the configuration"))?;
    Ok(Secret {
        metadata: facts.metadata(format!("{}-raw-config", facts.name)),
        data: Some([(RAW_CONFIG_KEY.to_string(), ByteString(json))].into()),
        ..Secret::default()
    })
}

/// A digest of the configuration, put on the pod template so that a change of
/// configuration rolls the pods (Vault reads its configuration only at start).
pub(super) fn config_hash(raw_config: &Secret) -> String {
    let mut digest = Sha256::new();
    for (key, value) in raw_config.data.iter().flatten() {
        digest.update(key.as_bytes());
        digest.update(&value.0);
    }
    digest
        .finalize()
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect()
}
