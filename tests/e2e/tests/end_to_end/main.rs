//! The operator end to end: the controller and the webhook installed from `manifests/` as
//! pods of the local cluster, driving real Vault (OpenBao) pods as a user would.
//!
//! 1. `raft_sample`: `cr-raft.yaml` unchanged in `default` with the shared `rbac.yaml`: three
//!    pods over three zones, unsealed, one leader; the time from `kubectl apply` is printed
//!    as a figure. A refusal through this suite's webhook (the webhook's own cluster test,
//!    `webhook/tests/cluster.rs`, covers every sample and refusal: scenario 2).
//! 3. `recovery`: deleted children back; a deleted pod, killed Vault processes and a deleted
//!    StatefulSet each end unsealed with a leader and the data written before.
//! 4. `scaling`: 3 to 5 and back to 3.
//! 6. `recreate`: the `Vault` deleted and made again unseals the data it had.
//! - `own_identity`: with `storeRootToken: false`, the controller works with a Kubernetes
//!   auth role of its own, and the root token is revoked and never stored.
//! 7. In each, `kubectl vault status -o json` is compared with what the pods' API says.
//! - `secrecy`, after all: no key or root token kept in a Secret shows in an Event, a
//!   status or a pod's log.
//!
//! 5. `interrupted`: a controller of its own, killed at each crash point of initialising
//!    and unsealing, restarted by the kubelet; `controller/tests/crash.rs` does the same
//!    against servers on loopback, with a storage reset checked per point.
//! - `aws_key_store`: the unseal keys in S3 under KMS (moto), read back after a restart.
//!
//! Other suites share the cluster, so the operator is scoped (see `e2e::operator`): its own
//! namespace `vault-operator-e2e`, cluster-wide objects named `*-e2e`, watching and admitting
//! only this suite's namespaces. Scenario 1 runs alone first, so that its figure is that of
//! one Vault starting; the others then run at once, each in a namespace of its own. The
//! controller's and webhook's resident memory is printed at the end; on a failure, their
//! logs and the Vault pods'. Measured times go straight to standard error, past the test
//! harness's capture.
//!
//! Run as root, against a cluster started from the Cargo target folder the operator's
//! binaries are built into (`make test` does both):
//! `cargo build -p vault-controller -p vault-webhook -p kubectl-vault`, then
//! `LOCALCLUSTER_NAME=e2e cargo test -p e2e --test end_to_end`. `E2E_SCENARIOS=recovery,scaling`
//! runs only those.

mod aws_key_store;
mod harness;
mod interrupted;
mod own_identity;
mod raft_sample;
mod recovery;
mod recreate;
mod scaling;
mod secrecy;

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use e2e::operator::{Component, Operator, Scope};
use e2e::{Kubectl, say};
use harness::{Case, OPERATOR_NAMESPACE, Suite};
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, DeleteParams};
use localcluster::LocalCluster;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The field manager of the CRD this suite applies.
const MANAGER: &str = "e2e-suite";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Scenario {
    RaftSample,
    Recovery,
    Scaling,
    Recreate,
    OwnIdentity,
    Interrupted,
    AwsKeyStore,
}

impl Scenario {
    const ALL: [Scenario; 7] = [
        Scenario::RaftSample,
        Scenario::Recovery,
        Scenario::Scaling,
        Scenario::Recreate,
        Scenario::OwnIdentity,
        Scenario::Interrupted,
        Scenario::AwsKeyStore,
    ];

    /// Its name in `E2E_SCENARIOS` and in namespaces.
    fn name(self) -> &'static str {
        match self {
            Scenario::RaftSample => "raft-sample",
            Scenario::Recovery => "recovery",
            Scenario::Scaling => "scaling",
            Scenario::Recreate => "recreate",
            Scenario::OwnIdentity => "own-identity",
            Scenario::Interrupted => "interrupted",
            Scenario::AwsKeyStore => "aws-key-store",
        }
    }

    /// Whether it runs a controller of its own, which alone serves its namespace.
    fn has_own_controller(self) -> bool {
        matches!(self, Scenario::Interrupted | Scenario::AwsKeyStore)
    }

    async fn run(self, case: &Case) -> Result<(), BoxError> {
        match self {
            Scenario::RaftSample => raft_sample::run(case).await,
            Scenario::Recovery => recovery::run(case).await,
            Scenario::Scaling => scaling::run(case).await,
            Scenario::Recreate => recreate::run(case).await,
            Scenario::OwnIdentity => own_identity::run(case).await,
            Scenario::Interrupted => interrupted::run(case).await,
            Scenario::AwsKeyStore => aws_key_store::run(case).await,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_operator_runs_vault_end_to_end() -> Result<(), BoxError> {
    let started = Instant::now();
    let began = SystemTime::now();
    let scenarios = chosen()?;
    localcluster::install_crypto_provider();
    let cluster = LocalCluster::start().await?;
    let client = cluster.client();
    e2e::install_crd(&client, MANAGER).await?;

    let mut cases = Vec::new();
    for scenario in &scenarios {
        let namespace = match scenario {
            // The sample pins its keys Secret, api_addr and auth role to default.
            Scenario::RaftSample => "default".to_string(),
            other => {
                localcluster::test_namespace(&client, &format!("e2e-{}", other.name())).await?
            }
        };
        cases.push((*scenario, namespace));
    }
    let mut scope = Scope {
        namespace: OPERATOR_NAMESPACE.to_string(),
        suffix: "e2e".to_string(),
        serves: cases
            .iter()
            .filter(|(scenario, _)| !scenario.has_own_controller())
            .map(|(_, ns)| ns.clone())
            .collect(),
    };
    let namespaces: Vec<String> = cases.iter().map(|(_, ns)| ns.clone()).collect();
    // An empty list would mean every namespace, that of scenario 5 included.
    let serves_none = scope.serves.is_empty();
    if serves_none {
        scope.serves.push("e2e-no-scenario".to_string());
    }

    let kubectl = Kubectl::new(&cluster)?;
    let installing = Instant::now();
    let installed = match scope.manifests(&[Component::Controller, Component::Webhook]) {
        Ok(objects) => Operator::install(&cluster, scope.clone(), objects).await,
        Err(e) => Err(e),
    };
    let mut operator = match installed {
        Ok(operator) => operator,
        Err(e) => {
            delete_namespaces(&client, &namespaces).await;
            return Err(e.into());
        }
    };
    let rolled_out = installing.elapsed();
    let admitted = if serves_none {
        Ok(Duration::ZERO)
    } else {
        operator.admitting(&scope.serves[0]).await
    };
    let admitting = match admitted {
        Ok(took) => took,
        Err(e) => {
            delete_namespaces(&client, &namespaces).await;
            return Err(e.into());
        }
    };
    say(&format!(
        "e2e: operator in {OPERATOR_NAMESPACE} rolled out in {:.1}s, admitting {:.1}s later; \
         scenarios {:?}",
        rolled_out.as_secs_f64(),
        admitting.as_secs_f64(),
        scenarios.iter().map(|s| s.name()).collect::<Vec<_>>()
    ));

    let suite = Arc::new(Suite {
        kubectl,
        cluster,
        client: client.clone(),
        began,
    });
    let mut outcomes = Vec::new();
    let (alone, together): (Vec<_>, Vec<_>) = cases
        .iter()
        .cloned()
        .partition(|(scenario, _)| *scenario == Scenario::RaftSample);
    for (scenario, namespace) in alone {
        outcomes.push(run_case(suite.clone(), scenario, namespace).await);
    }
    let running: Vec<_> = together
        .into_iter()
        .map(|(scenario, namespace)| {
            let task = tokio::spawn(run_case(suite.clone(), scenario, namespace));
            (scenario, task)
        })
        .collect();
    for (scenario, task) in running {
        let outcome = task
            .await
            .unwrap_or_else(|e| (scenario, Err(format!("panicked: {e}"))));
        outcomes.push(outcome);
    }

    // Figures, not assertions.
    match operator.resident_memory().await {
        Ok(memory) => {
            for (pod, kib) in memory {
                let mib = kib as f64 / 1024.0;
                say(&format!("  figure: {pod} resident memory {mib:.1} MiB"));
            }
        }
        Err(e) => say(&format!("e2e: reading the operator's memory: {e}")),
    }

    let secrecy = secrecy::nothing_shows_a_key(&suite, &namespaces).await;
    match &secrecy {
        Ok(summary) => say(&format!("e2e: {summary}")),
        Err(e) => say(&format!("e2e: {e}")),
    }

    // The Vaults first: their finalizers need the controller.
    for (_, namespace) in &cases {
        let case = Case::new(suite.clone(), namespace);
        if let Err(e) = case.clean_up().await {
            say(&format!("e2e: cleaning up {namespace}: {e}"));
        }
    }
    let mut failed: Vec<String> = outcomes
        .iter()
        .filter_map(|(scenario, outcome)| {
            let error = outcome.as_ref().err()?;
            Some(format!("{}: {error}", scenario.name()))
        })
        .collect();
    if let Err(e) = secrecy {
        failed.push(format!("secrecy: {e}"));
    }
    if failed.is_empty() {
        operator.passed();
    }
    if let Err(e) = operator.remove().await {
        say(&format!("e2e: removing the operator: {e}"));
    }
    say(&format!(
        "e2e: {} passed, {} failed in {:.0}s",
        outcomes
            .iter()
            .filter(|(_, outcome)| outcome.is_ok())
            .count(),
        outcomes
            .iter()
            .filter(|(_, outcome)| outcome.is_err())
            .count(),
        started.elapsed().as_secs_f64()
    ));
    if failed.is_empty() {
        Ok(())
    } else {
        Err(failed.join("\n").into())
    }
}

/// Runs one scenario, printing its outcome, and on failure the logs and the state.
async fn run_case(
    suite: Arc<Suite>,
    scenario: Scenario,
    namespace: String,
) -> (Scenario, Result<Duration, String>) {
    let case = Case::new(suite, &namespace);
    say(&format!("e2e {} in {namespace}:", scenario.name()));
    let started = Instant::now();
    let outcome = scenario.run(&case).await;
    let took = started.elapsed();
    match outcome {
        Ok(()) => {
            say(&format!(
                "e2e {} passed in {:.0}s",
                scenario.name(),
                took.as_secs_f64()
            ));
            (scenario, Ok(took))
        }
        Err(error) => {
            say(&format!(
                "e2e {} FAILED after {:.0}s: {error}\n{}",
                scenario.name(),
                took.as_secs_f64(),
                case.failure_report().await
            ));
            (scenario, Err(error.to_string()))
        }
    }
}

/// The scenarios `E2E_SCENARIOS` names (comma-separated), or all.
fn chosen() -> Result<Vec<Scenario>, BoxError> {
    let Ok(names) = std::env::var("E2E_SCENARIOS") else {
        return Ok(Scenario::ALL.to_vec());
    };
    names
        .split(',')
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .map(|name| {
            let found = Scenario::ALL.into_iter().find(|s| s.name() == name);
            found.ok_or_else(|| format!("E2E_SCENARIOS: no scenario {name}").into())
        })
        .collect()
}

async fn delete_namespaces(client: &kube::Client, namespaces: &[String]) {
    let api: Api<Namespace> = Api::all(client.clone());
    for namespace in namespaces.iter().filter(|ns| *ns != "default") {
        let _ = api.delete(namespace, &DeleteParams::default()).await;
    }
}
