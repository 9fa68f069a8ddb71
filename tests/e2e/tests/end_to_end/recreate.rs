//! Scenario 6: deleting the `Vault` leaves its unseal-keys Secret and its claims; a `Vault`
//! of the same name made again finds the keys and unseals the data it had, instead of
//! initialising anew.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod, Secret};
use kube::api::{Api, ListParams};

use crate::BoxError;
use crate::harness::{Case, RECOVERY_WITHIN, VAULT, measured};

pub async fn run(case: &Case) -> Result<(), BoxError> {
    let ns = case.namespace.as_str();
    case.start_sample().await?;
    case.write_kv(3).await?;

    let secrets: Api<Secret> = case.api();
    let claims: Api<PersistentVolumeClaim> = case.api();
    let keys_name = format!("{VAULT}-unseal-keys");
    let keys = secrets.get(&keys_name).await?;
    let claims_before = claim_uids(&claims).await?;
    if claims_before.len() != 3 {
        return Err(format!("claims before: {claims_before:?}").into());
    }

    let took = case.delete_vault().await?;
    measured(ns, "the Vault deleted (its finalizer run)", took);
    let pods: Api<Pod> = case.api();
    e2e::wait_for("the Vault pods gone", RECOVERY_WITHIN, || async {
        let left = pods
            .list(&ListParams::default().labels("vault_cr=vault"))
            .await?;
        Ok::<_, BoxError>(left.items.is_empty().then_some(()))
    })
    .await?;
    let kept = secrets.get_opt(&keys_name).await?;
    if kept.as_ref().map(|k| &k.metadata.uid) != Some(&keys.metadata.uid) {
        return Err(format!("{keys_name} was not kept").into());
    }
    let claims_after = claim_uids(&claims).await?;
    if claims_after != claims_before {
        return Err(format!("claims {claims_before:?} became {claims_after:?}").into());
    }

    let took = case.sample_until_voters().await?;
    measured(
        ns,
        "re-created: the kept data unsealed with the kept keys, three voters",
        took,
    );
    // Unsealed with the same keys and token: not initialised again.
    let again = secrets.get(&keys_name).await?;
    if again.metadata.uid != keys.metadata.uid || again.data != keys.data {
        return Err(format!("{keys_name} was made or written again").into());
    }
    if claim_uids(&claims).await? != claims_before {
        return Err("the claims were made again".into());
    }
    case.kv_readable(3)
        .await
        .map_err(|e| format!("the secret written before the deletion: {e}"))?;
    case.status_agrees("after the Vault was re-created").await
}

/// Claim name to uid.
async fn claim_uids(
    claims: &Api<PersistentVolumeClaim>,
) -> Result<BTreeMap<String, String>, BoxError> {
    let list = claims.list(&ListParams::default()).await?;
    Ok(list
        .items
        .into_iter()
        .filter_map(|c| Some((c.metadata.name?, c.metadata.uid?)))
        .collect())
}
