//! Scenario 4: scaling 3 to 5, where the new pods join Raft and are unsealed, and back to
//! 3, where the departed pods leave Raft and their per-pod Services and claims go.

use std::time::Instant;

use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod, Service};
use kube::api::Api;

use crate::BoxError;
use crate::harness::{Case, OBJECTS_WITHIN, RECOVERY_WITHIN, VAULT, measured};

pub async fn run(case: &Case) -> Result<(), BoxError> {
    let ns = case.namespace.as_str();
    case.start_sample().await?;

    let started = Instant::now();
    case.resize(5).await?;
    case.converged(5, RECOVERY_WITHIN).await?;
    measured(ns, "scaled 3 to 5: five pods unsealed", started.elapsed());
    case.all_voters(5, RECOVERY_WITHIN).await?;
    measured(
        ns,
        "scaled 3 to 5: five voting Raft peers",
        started.elapsed(),
    );
    case.status_agrees("at size 5").await?;

    let started = Instant::now();
    case.resize(3).await?;
    case.converged(3, RECOVERY_WITHIN).await?;
    let pods: Api<Pod> = case.api();
    let services: Api<Service> = case.api();
    let claims: Api<PersistentVolumeClaim> = case.api();
    let departed = [3, 4].map(|i| format!("{VAULT}-{i}"));
    e2e::wait_for(
        "the departed pods, their Services and claims gone",
        OBJECTS_WITHIN,
        || async {
            for pod in &departed {
                if pods.get_opt(pod).await?.is_some()
                    || services.get_opt(pod).await?.is_some()
                    || claims
                        .get_opt(&format!("vault-raft-{pod}"))
                        .await?
                        .is_some()
                {
                    return Ok::<_, BoxError>(None);
                }
            }
            Ok(Some(()))
        },
    )
    .await?;
    measured(
        ns,
        "scaled 5 to 3: pods, Services and claims gone",
        started.elapsed(),
    );

    // Exactly three peers: the controller takes the departed out of Raft, where they would
    // still count towards the quorum.
    case.all_voters(3, OBJECTS_WITHIN).await?;
    measured(
        ns,
        "scaled 5 to 3: three Raft peers, the departed removed",
        started.elapsed(),
    );
    case.status_agrees("back at size 3").await
}
