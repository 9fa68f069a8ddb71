//! Scenario 3: recovery. Deleted children come back; a deleted pod, a killed Vault process,
//! all three killed at once and a deleted StatefulSet each end with every pod unsealed, one
//! leader, and the secret written before still readable.

use std::time::Instant;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{Pod, Secret, Service};
use kube::api::{Api, DeleteParams, ListParams};

use crate::BoxError;
use crate::harness::{Case, OBJECTS_WITHIN, RECOVERY_WITHIN, VAULT, deleted_comes_back, measured};

pub async fn run(case: &Case) -> Result<(), BoxError> {
    let ns = case.namespace.as_str();
    case.start_sample().await?;
    case.write_kv(3).await?;

    let services: Api<Service> = case.api();
    let took = deleted_comes_back(&services, &format!("{VAULT}-1")).await?;
    measured(ns, "a deleted per-pod Service back", took);
    let secrets: Api<Secret> = case.api();
    let took = deleted_comes_back(&secrets, &format!("{VAULT}-raw-config")).await?;
    measured(ns, "the deleted config Secret back", took);

    let pods: Api<Pod> = case.api();
    let pod = format!("{VAULT}-1");
    let before = pods.get(&pod).await?.metadata.uid;
    let started = Instant::now();
    pods.delete(&pod, &DeleteParams::default()).await?;
    e2e::wait_for(&format!("{pod} made again"), OBJECTS_WITHIN, || async {
        let now = pods.get_opt(&pod).await?.and_then(|p| p.metadata.uid);
        Ok::<_, BoxError>(now.filter(|uid| Some(uid) != before.as_ref()).map(drop))
    })
    .await?;
    measured(ns, "a deleted pod made again", started.elapsed());
    recovered(case, "a deleted pod", started).await?;

    // The leader's, so that the others elect one of them.
    let leader = case.live_leader(3).await?;
    let started = Instant::now();
    case.kill_vault(&[leader.as_str()]).await?;
    recovered(
        case,
        &format!("the leader {leader}'s Vault process killed"),
        started,
    )
    .await?;

    let started = Instant::now();
    case.kill_vault(&["vault-0", "vault-1", "vault-2"]).await?;
    recovered(case, "all three Vault processes killed at once", started).await?;

    // The StatefulSet takes its pods down with it; the controller makes it again.
    let sets: Api<StatefulSet> = case.api();
    let old_pods: Vec<Option<String>> = pods
        .list(&ListParams::default().labels("vault_cr=vault"))
        .await?
        .items
        .into_iter()
        .map(|p| p.metadata.uid)
        .collect();
    let started = Instant::now();
    let took = deleted_comes_back(&sets, VAULT).await?;
    measured(ns, "the deleted StatefulSet back", took);
    e2e::wait_for("three new pods", RECOVERY_WITHIN, || async {
        let list = pods
            .list(&ListParams::default().labels("vault_cr=vault"))
            .await?;
        let new = list
            .items
            .iter()
            .filter(|p| !old_pods.contains(&p.metadata.uid))
            .count();
        Ok::<_, BoxError>((new == 3).then_some(()))
    })
    .await?;
    recovered(case, "the StatefulSet deleted", started).await
}

/// Waits until the cluster is unsealed with a leader and three voters again (the next fault
/// then meets a whole cluster), reads the secret, compares
/// `kubectl vault status` with the pods, and prints the time since `started`.
async fn recovered(case: &Case, after: &str, started: Instant) -> Result<(), BoxError> {
    let ns = case.namespace.as_str();
    case.converged(3, RECOVERY_WITHIN).await?;
    measured(
        ns,
        &format!("{after}: unsealed, one leader"),
        started.elapsed(),
    );
    case.all_voters(3, RECOVERY_WITHIN).await?;
    measured(ns, &format!("{after}: three voters"), started.elapsed());
    case.kv_readable(3)
        .await
        .map_err(|e| format!("after {after}: the secret written before: {e}"))?;
    case.status_agrees(&format!("after {after}")).await
}
