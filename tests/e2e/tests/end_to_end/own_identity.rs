//! The controller's own identity in Vault: `cr-raft.yaml` with `storeRootToken: false`.
//! The controller sets up a Kubernetes-auth role for its ServiceAccount with the fresh
//! root token, revokes that token, and does everything after unsealing with its own login:
//! reading the Raft configuration (each pod a voter) and applying `externalConfig`, whose
//! templates here also read a variable of `envsConfig` that comes from a Secret.

use std::time::Instant;

use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, PostParams};
use serde_json::json;

use crate::BoxError;
use crate::harness::{Case, VAULT, measured};

pub async fn run(case: &Case) -> Result<(), BoxError> {
    let ns = case.namespace.as_str();
    let secrets: Api<Secret> = case.api();
    let values: Secret = serde_json::from_value(json!({
        "metadata": {"name": "template-values"},
        "stringData": {"policy-path": "secret/data/from-a-secret/*"},
    }))?;
    secrets.create(&PostParams::default(), &values).await?;

    let started = Instant::now();
    // Roles and votes come from the Raft configuration, which only a token can read: the
    // controller's own, since no root token is kept (and the test has none either).
    case.start_changed_sample(|vault| {
        let spec = &mut vault["spec"];
        spec["unsealConfig"]["options"]["storeRootToken"] = false.into();
        spec["envsConfig"] = json!([{"name": "POLICY_PATH", "valueFrom":
            {"secretKeyRef": {"name": "template-values", "key": "policy-path"}}}]);
        let rules = r#"path "${env "POLICY_PATH"}" { capabilities = ["read"] }"#;
        if let Some(policies) = spec["externalConfig"]["policies"].as_array_mut() {
            policies.push(json!({"name": "from_template", "rules": rules}));
        }
    })
    .await?;
    measured(
        ns,
        "three voters, without a stored root token",
        started.elapsed(),
    );
    case.configured().await?;
    measured(
        ns,
        "externalConfig applied with the controller's own login",
        started.elapsed(),
    );

    let keys = secrets.get(&format!("{VAULT}-unseal-keys")).await?;
    let names: Vec<&String> = keys.data.iter().flat_map(|data| data.keys()).collect();
    if names.iter().any(|name| *name == "vault-root") {
        return Err("storeRootToken: false, and the keys Secret holds vault-root".into());
    }
    if !names.iter().any(|name| *name == "vault-unseal-0") {
        return Err(format!("the keys Secret holds {names:?}, no unseal key").into());
    }
    let reasons = case.event_reasons().await?;
    for wanted in ["IdentitySetUp", "RootTokenRevoked"] {
        if !reasons.iter().any(|reason| reason == wanted) {
            return Err(format!("no {wanted} Event; the Events say {reasons:?}").into());
        }
    }
    // Configured means every item applied, the policy whose template reads the Secret's
    // value too: a variable left unset fails its item.
    if reasons.iter().any(|reason| reason == "VariableNotSet") {
        return Err(format!("POLICY_PATH was not read; the Events say {reasons:?}").into());
    }

    // What externalConfig set up works: a pod logs in and reads a startup secret.
    case.pod_reads_startup_secret().await?;
    case.status_agrees("with the controller's own login").await
}
