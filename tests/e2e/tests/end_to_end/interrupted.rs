//! Scenario 5: the controller killed mid-way. A controller of its own serves this
//! scenario's namespace, armed to abort at every step of initialising and unsealing
//! (`VAULT_CONTROLLER_CRASH_AT`), each point once (`VAULT_CONTROLLER_CRASH_RECORD`, on an
//! emptyDir that outlives the container). The kubelet restarts it after each abort, as it
//! would after a crash, and `cr-raft.yaml` still ends initialised once, every key stored,
//! every pod unsealed, and the data usable.

use e2e::operator::{Operator, set_env};
use k8s_openapi::api::core::v1::Secret;
use kube::api::Api;
use serde_json::{Value, json};

use crate::BoxError;
use crate::harness::{Case, VAULT, measured};

/// Every crash point of the controller, in the order the flow reaches them.
const POINTS: [&str; 5] = [
    "before-init",
    "after-init-response",
    "between-key-writes",
    "after-root-token",
    "between-unseal-keys",
];

pub async fn run(case: &Case) -> Result<(), BoxError> {
    let controller = case.own_controller("e2e-crash", arm).await?;
    let outcome = survive_crashes(case, &controller).await;
    case.remove_own_controller(controller, outcome).await
}

/// Every crash point armed, the record on an emptyDir.
fn arm(deployment: &mut Value) -> Result<(), BoxError> {
    set_env(deployment, "VAULT_CONTROLLER_CRASH_AT", &POINTS.join(","))?;
    set_env(deployment, "VAULT_CONTROLLER_CRASH_RECORD", "/crash/record")?;
    let pod = &mut deployment["spec"]["template"]["spec"];
    let mut volumes = pod["volumes"].as_array().cloned().unwrap_or_default();
    volumes.push(json!({"name": "crash", "emptyDir": {}}));
    pod["volumes"] = json!(volumes);
    let container = &mut pod["containers"][0];
    let mut mounts = container["volumeMounts"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    mounts.push(json!({"name": "crash", "mountPath": "/crash"}));
    container["volumeMounts"] = json!(mounts);
    Ok(())
}

async fn survive_crashes(case: &Case, operator: &Operator) -> Result<(), BoxError> {
    let ns = case.namespace.as_str();
    case.apply_rbac().await?;
    let took = case.sample_until_voters().await?;
    measured(
        ns,
        "killed at each of 5 crash points and restarted: three unsealed voters",
        took,
    );

    // It did stop at each point: one restart per point, no more.
    let pods = operator.pods().await?;
    let restarts: i32 = pods
        .iter()
        .filter_map(|pod| pod.status.as_ref()?.container_statuses.as_ref())
        .flatten()
        .map(|container| container.restart_count)
        .sum();
    if restarts != POINTS.len() as i32 {
        return Err(format!(
            "the controller restarted {restarts} times, not once per crash point ({})",
            POINTS.len()
        )
        .into());
    }
    let said = operator.logs(400);
    for point in POINTS {
        if !said.contains(&format!("crash point {point} reached")) {
            return Err(format!("the controller never stopped at {point}").into());
        }
    }

    // Every key share and the root token kept, the storage reset once for a response
    // that was lost, and Vault's data usable.
    let secrets: Api<Secret> = case.api();
    let keys = secrets.get(&format!("{VAULT}-unseal-keys")).await?;
    let names: Vec<&String> = keys.data.iter().flat_map(|data| data.keys()).collect();
    for index in 0..5 {
        let wanted = format!("vault-unseal-{index}");
        if !names.contains(&&wanted) {
            return Err(format!("{wanted} missing from the keys Secret: {names:?}").into());
        }
    }
    if !names.iter().any(|name| *name == "vault-root") {
        return Err(format!("no root token in the keys Secret: {names:?}").into());
    }
    let reasons = case.event_reasons().await?;
    if !reasons.iter().any(|reason| reason == "ResettingStorage") {
        return Err(format!("no ResettingStorage Event; the Events say {reasons:?}").into());
    }
    case.write_kv(3).await?;
    case.status_agrees("after the controller's crashes").await
}
