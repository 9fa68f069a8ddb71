//! Scenario 1: `cr-raft.yaml` applied unchanged in `default`, beside the shared
//! `rbac.yaml`, with kubectl, as a user would. Then one refusal through the webhook this
//! suite installed (scenario 2; the webhook's own cluster test covers every sample and
//! refusal), and `kubectl vault status` against the pods (scenario 7).

use std::collections::BTreeSet;
use std::time::Instant;

use e2e::say;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, ListParams, PostParams};
use serde_json::json;

use crate::BoxError;
use crate::harness::{Case, FIRST_UNSEAL_WITHIN, RECOVERY_WITHIN, VAULT, measured};

/// The webhook that refuses, as the API server names it.
const VALIDATING_WEBHOOK: &str = "validate.vaults.vault.banzaicloud.com";

pub async fn run(case: &Case) -> Result<(), BoxError> {
    // What an earlier run on the same cluster may have left, so that the time measured is
    // that of a new Vault.
    case.clean_up().await?;
    case.apply_rbac().await?;

    let sample = e2e::samples_dir().join("cr-raft.yaml");
    let started = Instant::now();
    let file = sample.to_string_lossy();
    case.suite
        .kubectl
        .apply("default", &["-f", &file], "")
        .await?;
    case.converged(3, FIRST_UNSEAL_WITHIN).await?;
    say(&format!(
        "  figure: kubectl apply -f cr-raft.yaml to three pods unsealed with one leader: {:.1}s",
        started.elapsed().as_secs_f64()
    ));
    case.all_voters(3, RECOVERY_WITHIN).await?;
    measured(
        &case.namespace,
        "then all three voting Raft peers",
        started.elapsed(),
    );

    // Stored with the webhook's defaults: the sample leaves tlsExpiryThreshold out.
    let stored = e2e::vault_api(&case.client(), "default").get(VAULT).await?;
    if stored.data["spec"]["tlsExpiryThreshold"] != "168h" {
        return Err(format!(
            "stored without the webhook's defaults: {}",
            stored.data["spec"]
        )
        .into());
    }

    // One pod per zone: the default spread over nodes and zones.
    let pods: Api<Pod> = case.api();
    let nodes: Api<Node> = Api::all(case.client());
    let mut zones = BTreeSet::new();
    for pod in pods
        .list(&ListParams::default().labels("vault_cr=vault"))
        .await?
    {
        let node = pod.spec.and_then(|s| s.node_name).unwrap_or_default();
        let labels = nodes.get(&node).await?.metadata.labels.unwrap_or_default();
        let zone = labels.get("topology.kubernetes.io/zone").cloned();
        zones.insert(zone.ok_or(format!("node {node} has no zone"))?);
    }
    if zones.len() != 3 {
        return Err(format!("three pods in zones {zones:?}, not one in each of three").into());
    }

    // One leader, in the status and by Vault's API (each pod's sys/leader).
    let status = case.status().await?;
    let leader = case.live_leader(3).await?;
    if status.leader != leader {
        return Err(format!("the status names {}, {leader} is active", status.leader).into());
    }
    say(&format!(
        "  default: zones {zones:?}, {leader} the one leader"
    ));
    case.status_agrees("after the first unseal").await?;

    configured(case, started).await?;

    refused_by_the_webhook(case).await
}

/// A `Vault` whose threshold is above its shares is refused by this suite's webhook, with
/// the field and what to fix, and not stored.
async fn refused_by_the_webhook(case: &Case) -> Result<(), BoxError> {
    let vaults = e2e::vault_api(&case.client(), &case.namespace);
    let unseal = json!({"options": {"secretShares": 3, "secretThreshold": 4}});
    let vault = e2e::raft_vault(&case.namespace, "e2e-refused", unseal);
    let started = Instant::now();
    let params = PostParams::default();
    let refusal = match e2e::admit(&case.namespace, || vaults.create(&params, &vault)).await {
        Ok(_) => return Err("a threshold above the shares was stored".into()),
        Err(kube::Error::Api(status)) => status,
        Err(e) => return Err(e.into()),
    };
    let expected = format!("admission webhook \"{VALIDATING_WEBHOOK}\" denied the request");
    if refusal.code != 422
        || !refusal.message.starts_with(&expected)
        || !refusal
            .message
            .contains("spec.unsealConfig.options.secretThreshold")
    {
        return Err(format!("not the webhook's refusal: {refusal:?}").into());
    }
    if vaults.get_opt("e2e-refused").await?.is_some() {
        return Err("the refused Vault is stored".into());
    }
    measured(
        &case.namespace,
        "an invalid Vault refused by the webhook",
        started.elapsed(),
    );
    Ok(())
}

/// externalConfig is applied: the policy, the kubernetes auth role and the startup secrets
/// are in Vault, and a pod of `default` logs in with its token and reads one.
async fn configured(case: &Case, started: Instant) -> Result<(), BoxError> {
    case.configured().await?;
    measured(
        &case.namespace,
        "kubectl apply -f cr-raft.yaml to externalConfig applied",
        started.elapsed(),
    );

    let pods = case.vault_pods().await?;
    let token = case.root_token().await?;
    let policy = pods
        .get("vault-0", "sys/policies/acl/allow_secrets", Some(&token))
        .await?;
    if !policy["data"]["policy"]
        .as_str()
        .is_some_and(|rules| rules.contains("secret/*"))
    {
        return Err(format!("policy allow_secrets: {policy}").into());
    }
    let role = pods
        .get("vault-0", "auth/kubernetes/role/default", Some(&token))
        .await?;
    if role["data"]["bound_service_account_names"][0] != "default" {
        return Err(format!("kubernetes auth role default: {role}").into());
    }
    for (path, key) in [
        ("secret/data/accounts/aws", "AWS_ACCESS_KEY_ID"),
        ("secret/data/dockerrepo", "DOCKER_REPO_USER"),
        ("secret/data/mysql", "MYSQL_ROOT_PASSWORD"),
    ] {
        let secret = pods.get("vault-0", path, Some(&token)).await?;
        if secret["data"]["data"][key].is_null() {
            return Err(format!("startup secret {path}: {secret}").into());
        }
    }

    case.pod_reads_startup_secret().await
}
