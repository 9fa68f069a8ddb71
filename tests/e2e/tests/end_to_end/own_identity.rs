//! The controller's own identity in Vault: `cr-raft.yaml` with `storeRootToken: false`.
//! The controller sets up a Kubernetes-auth role for its ServiceAccount with the fresh
//! root token, revokes that token, and does everything after unsealing with its own login:
//! reading the Raft configuration (each pod a voter) and applying `externalConfig`, whose
//! templates here also read a variable of `envsConfig` that comes from a Secret: a startup
//! secret's value, which a pod then reads.

use std::time::Instant;

use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, PostParams};
use serde_json::json;

use crate::BoxError;
use crate::harness::{Case, VAULT, measured};

/// A startup secret whose value comes from a Kubernetes Secret through `envsConfig`.
const TEMPLATED_PATH: &str = "secret/data/templated";
/// Its value: not the Secret's base64, and found in the reader pod's log.
const TEMPLATED_VALUE: &str = "hello-from-a-kubernetes-secret";

pub async fn run(case: &Case) -> Result<(), BoxError> {
    let ns = case.namespace.as_str();
    let secrets: Api<Secret> = case.api();
    let values: Secret = serde_json::from_value(json!({
        "metadata": {"name": "template-values"},
        "stringData": {"greeting": TEMPLATED_VALUE},
    }))?;
    secrets.create(&PostParams::default(), &values).await?;

    let started = Instant::now();
    // Roles and votes come from the Raft configuration, which only a token can read: the
    // controller's own, since no root token is kept (and the test has none either).
    case.start_changed_sample(|vault| {
        let spec = &mut vault["spec"];
        spec["unsealConfig"]["options"]["storeRootToken"] = false.into();
        spec["envsConfig"] = json!([{"name": "GREETING", "valueFrom":
            {"secretKeyRef": {"name": "template-values", "key": "greeting"}}}]);
        let templated = json!({"type": "kv", "path": TEMPLATED_PATH,
            "data": {"data": {"GREETING": "${env \"GREETING\"}"}}});
        if let Some(startup) = spec["externalConfig"]["startupSecrets"].as_array_mut() {
            startup.push(templated);
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
    if reasons.iter().any(|reason| reason == "VariableNotSet") {
        return Err(format!("GREETING was not read; the Events say {reasons:?}").into());
    }

    // What externalConfig set up works: a pod logs in and reads startup secrets, one
    // written from the Secret's value through a template.
    case.pod_reads_startup_secret().await?;
    case.pod_reads(TEMPLATED_PATH, TEMPLATED_VALUE).await?;
    case.status_agrees("with the controller's own login").await
}
