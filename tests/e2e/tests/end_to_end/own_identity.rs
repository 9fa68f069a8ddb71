//! The controller's own identity in Vault: `cr-raft.yaml` with `storeRootToken: false`.
//! The controller sets up a Kubernetes-auth role for its ServiceAccount with the fresh
//! root token, revokes that token, and does everything after unsealing with its own login:
//! reading the Raft configuration (each pod a voter) and applying `externalConfig`.

use std::time::Instant;

use k8s_openapi::api::core::v1::Secret;
use kube::api::Api;

use crate::BoxError;
use crate::harness::{Case, VAULT, measured};

pub async fn run(case: &Case) -> Result<(), BoxError> {
    let ns = case.namespace.as_str();
    let started = Instant::now();
    // Roles and votes come from the Raft configuration, which only a token can read: the
    // controller's own, since no root token is kept (and the test has none either).
    case.start_changed_sample(|vault| {
        vault["spec"]["unsealConfig"]["options"]["storeRootToken"] = false.into();
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

    let secrets: Api<Secret> = case.api();
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

    // What externalConfig set up works: a pod logs in and reads a startup secret.
    case.pod_reads_startup_secret().await?;
    case.status_agrees("with the controller's own login").await
}
