//! Scenario 4: scaling 3 to 5, where the new pods join Raft and are unsealed, and back to
//! 3, where the departed pods leave Raft and their per-pod Services and claims go; then an
//! `externalConfig` edit reaches Vault, and a certificate renewal forced by a long threshold
//! rolls the pods while Vault stays available, ending unsealed with a leader.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod, Secret, Service};
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;

use e2e::say;

use crate::BoxError;
use crate::harness::{CONFIGURED_WITHIN, Case, OBJECTS_WITHIN, RECOVERY_WITHIN, VAULT, measured};

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
    case.status_agrees("back at size 3").await?;

    config_edit_is_applied(case).await?;
    renewal_rolls_the_pods(case).await
}

/// A policy added to `externalConfig` is in Vault soon after, without any other change.
async fn config_edit_is_applied(case: &Case) -> Result<(), BoxError> {
    let vault = case.vaults.get(VAULT).await?;
    let mut config = serde_json::Value::Object(vault.spec.external_config.0.clone());
    let rules = r#"path "secret/data/e2e" { capabilities = ["read"] }"#;
    let added = json!({"name": "e2e_added", "rules": rules});
    config["policies"]
        .as_array_mut()
        .ok_or("cr-raft.yaml's externalConfig has no policies")?
        .push(added);
    let started = Instant::now();
    let patch = Patch::Merge(json!({"spec": {"externalConfig": config}}));
    let params = PatchParams::default();
    e2e::admit(&case.namespace, || {
        case.vaults.patch(VAULT, &params, &patch)
    })
    .await?;
    let pods = case.vault_pods().await?;
    let token = case.root_token().await?;
    e2e::wait_for("the added policy in Vault", CONFIGURED_WITHIN, || async {
        let found = pods
            .get("vault-0", "sys/policies/acl/e2e_added", Some(&token))
            .await;
        Ok::<_, BoxError>(found.ok().filter(|p| !p["data"].is_null()).map(|_| ()))
    })
    .await?;
    measured(
        &case.namespace,
        "an externalConfig edit applied to Vault",
        started.elapsed(),
    );
    Ok(())
}

/// How long Vault may go without an active, unsealed node while the pods roll: a
/// leader's pod restarting costs a Raft election and an unseal.
const LONGEST_OUTAGE: Duration = Duration::from_secs(30);

/// A renewal threshold longer than the certificate's life renews it; the StatefulSet rolls
/// every pod onto it, one at a time, and the cluster ends unsealed with one leader and three
/// voters. Vault is sampled meanwhile: some pod answers as active and unsealed in all but
/// short gaps.
async fn renewal_rolls_the_pods(case: &Case) -> Result<(), BoxError> {
    let secrets: Api<Secret> = case.api();
    let before = e2e::inside::secret_value(&secrets.get("vault-tls").await?, "server.crt");
    let started = Instant::now();
    // Past the default validity of a year: due now, and the new one outlives it.
    let patch = Patch::Merge(json!({"spec": {"tlsExpiryThreshold": "9000h"}}));
    let params = PatchParams::default();
    e2e::admit(&case.namespace, || {
        case.vaults.patch(VAULT, &params, &patch)
    })
    .await?;

    let rolled = AtomicBool::new(false);
    let sampling = async {
        let mut samples = Vec::new();
        while !rolled.load(Ordering::SeqCst) {
            samples.push((Instant::now(), serving(case).await));
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        samples
    };
    let sets: Api<StatefulSet> = case.api();
    let rolling = async {
        let waited = e2e::wait_for(
            "the pods rolled onto the renewed certificate",
            RECOVERY_WITHIN,
            || async {
                let now = e2e::inside::secret_value(&secrets.get("vault-tls").await?, "server.crt");
                let status = sets.get(VAULT).await?.status.unwrap_or_default();
                let rolled = now != before
                    && status.update_revision == status.current_revision
                    && status.updated_replicas == Some(3)
                    && status.ready_replicas == Some(3);
                Ok::<_, BoxError>(rolled.then_some(()))
            },
        )
        .await;
        rolled.store(true, Ordering::SeqCst);
        waited
    };
    let (samples, waited) = tokio::join!(sampling, rolling);
    waited?;
    let renewed = e2e::inside::secret_value(&secrets.get("vault-tls").await?, "server.crt");

    case.converged(3, RECOVERY_WITHIN).await?;
    case.all_voters(3, RECOVERY_WITHIN).await?;
    measured(
        &case.namespace,
        "a renewal forced by a long threshold rolled onto every pod, all unsealed voters",
        started.elapsed(),
    );
    let (available, longest) = availability(&samples);
    say(&format!(
        "  figure: {}: during the roll, Vault had an active unsealed node in {available} of \
         {} samples (every 0.5 s); longest gap {:.1}s",
        case.namespace,
        samples.len(),
        longest.as_secs_f64()
    ));
    if longest > LONGEST_OUTAGE {
        return Err(format!(
            "no active unsealed node for {:.1}s during the roll",
            longest.as_secs_f64()
        )
        .into());
    }
    let now = e2e::inside::secret_value(&secrets.get("vault-tls").await?, "server.crt");
    if now != renewed {
        return Err("the certificate was renewed again after the roll".into());
    }
    case.status_agrees("after the certificate renewal").await
}

/// Whether some pod answers, now, as the active node and unsealed.
async fn serving(case: &Case) -> bool {
    let Ok(pods) = case.vault_pods().await else {
        return false;
    };
    for i in 0..3 {
        let pod = format!("{VAULT}-{i}");
        let active = pods.is_leader(&pod).await.unwrap_or(false);
        if active
            && pods
                .seal_status(&pod)
                .await
                .is_ok_and(|seal| seal["sealed"] == false)
        {
            return true;
        }
    }
    false
}

/// How many samples found Vault serving, and the longest run of time without.
fn availability(samples: &[(Instant, bool)]) -> (usize, Duration) {
    let available = samples.iter().filter(|(_, up)| *up).count();
    let mut longest = Duration::ZERO;
    let mut down_since: Option<Instant> = None;
    for (at, up) in samples {
        match (up, down_since) {
            (false, None) => down_since = Some(*at),
            (true, Some(since)) => {
                longest = longest.max(at.duration_since(since));
                down_since = None;
            }
            _ => {}
        }
    }
    if let (Some(since), Some((last, _))) = (down_since, samples.last()) {
        longest = longest.max(last.duration_since(since));
    }
    (available, longest)
}
