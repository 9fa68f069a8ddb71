//! What every scenario does: a namespace of its own (or `default`), the sample applied, the
//! wait for Vault to converge checked against Vault's own API, `kubectl vault status`
//! compared with it, processes killed, a kv secret written and read back, the logs shown
//! on failure, and the clean-up.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use e2e::inside::{VaultPods, container_pid, secret_value};
use e2e::operator::{Component, Operator, Scope};
use e2e::{Kubectl, say, wait_for};
use k8s_openapi::api::core::v1::{Event, Pod, Secret};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Client, Resource};
use localcluster::LocalCluster;
use serde_json::{Value, json};
use vault_api::Vault;
use vault_api::status::{CONFIGURED, READY, UNSEALED, VaultStatus};

use crate::BoxError;

/// The name of every `Vault` here, as in the samples.
pub const VAULT: &str = "vault";
/// The operator's namespace.
pub const OPERATOR_NAMESPACE: &str = "vault-operator-e2e";
/// How quickly a deleted object must come back.
pub const OBJECTS_WITHIN: Duration = Duration::from_secs(30);
/// How long a new Vault may take to be initialised and unsealed.
pub const FIRST_UNSEAL_WITHIN: Duration = Duration::from_secs(240);
/// How long Vault may take to be unsealed with a leader again after a fault.
pub const RECOVERY_WITHIN: Duration = Duration::from_secs(180);
/// How long externalConfig may take once Vault is unsealed, and a pod to read a secret.
pub const CONFIGURED_WITHIN: Duration = Duration::from_secs(120);
/// The kv mount the scenarios write to: not the sample's `secret`, which its
/// `externalConfig` mounts.
const KV_MOUNT: &str = "e2e-kv";
/// What they write there.
const KV_VALUE: &str = "written before the fault";

/// The cluster and its clients, shared by every scenario.
pub struct Suite {
    pub cluster: LocalCluster,
    pub client: Client,
    pub kubectl: Kubectl,
    /// When the suite began: older logs are not its own.
    pub began: SystemTime,
}

/// One scenario's run: its namespace and its `Vault`.
pub struct Case {
    pub suite: Arc<Suite>,
    pub namespace: String,
    pub vaults: Api<Vault>,
}

impl Case {
    pub fn new(suite: Arc<Suite>, namespace: &str) -> Self {
        let vaults = Api::namespaced(suite.client.clone(), namespace);
        Self {
            suite,
            namespace: namespace.to_string(),
            vaults,
        }
    }

    pub fn client(&self) -> Client {
        self.suite.client.clone()
    }

    pub fn api<K>(&self) -> Api<K>
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        <K as Resource>::DynamicType: Default,
    {
        Api::namespaced(self.client(), &self.namespace)
    }

    /// The shared `rbac.yaml` (the `vault` ServiceAccount the pods run as), applied with
    /// kubectl into the namespace.
    pub async fn apply_rbac(&self) -> Result<(), BoxError> {
        let rbac = e2e::samples_dir().join("rbac.yaml");
        let file = rbac.to_string_lossy();
        self.suite
            .kubectl
            .apply(&self.namespace, &["-f", &file], "")
            .await?;
        Ok(())
    }

    /// `cr-raft.yaml` moved into the namespace, created through the webhook.
    pub async fn create_sample(&self) -> Result<(), BoxError> {
        let vault = e2e::sample_in("cr-raft.yaml", &self.namespace)?;
        let params = PostParams::default();
        e2e::admit(&self.namespace, || self.vaults.create(&params, &vault)).await?;
        Ok(())
    }

    /// `cr-raft.yaml` created as `create_sample` does, then waited on until three pods are
    /// unsealed voting Raft peers. Returns the time from the creation.
    pub async fn sample_until_voters(&self) -> Result<Duration, BoxError> {
        let started = Instant::now();
        self.create_sample().await?;
        self.converged(3, FIRST_UNSEAL_WITHIN).await?;
        self.all_voters(3, RECOVERY_WITHIN).await?;
        Ok(started.elapsed())
    }

    /// The shared `rbac.yaml` and `cr-raft.yaml`, moved into the namespace, applied, and
    /// waited on until three pods are unsealed with a leader and all vote.
    pub async fn start_sample(&self) -> Result<(), BoxError> {
        self.apply_rbac().await?;
        self.create_sample().await?;
        let took = self.converged(3, FIRST_UNSEAL_WITHIN).await?;
        measured(&self.namespace, "three pods unsealed", took);
        let took = self.all_voters(3, RECOVERY_WITHIN).await?;
        measured(&self.namespace, "then all three voting Raft peers", took);
        Ok(())
    }

    /// The shared `rbac.yaml`, and `cr-raft.yaml` moved into the namespace and changed by
    /// `change`, created through the webhook and waited on until three pods are unsealed
    /// voters (as the status says: no root token may be at hand). Returns the time.
    pub async fn start_changed_sample(
        &self,
        change: impl FnOnce(&mut Value),
    ) -> Result<Duration, BoxError> {
        self.apply_rbac().await?;
        let mut vault = serde_json::to_value(e2e::sample_in("cr-raft.yaml", &self.namespace)?)?;
        change(&mut vault);
        let vault: Vault = serde_json::from_value(vault)?;
        let started = Instant::now();
        let params = PostParams::default();
        e2e::admit(&self.namespace, || self.vaults.create(&params, &vault)).await?;
        self.converged(3, FIRST_UNSEAL_WITHIN).await?;
        self.voters_in_status(3).await?;
        Ok(started.elapsed())
    }

    /// Changes `spec.size`, through the webhook.
    pub async fn resize(&self, size: i32) -> Result<(), BoxError> {
        let patch = Patch::Merge(json!({"spec": {"size": size}}));
        let params = PatchParams::default();
        e2e::admit(&self.namespace, || {
            self.vaults.patch(VAULT, &params, &patch)
        })
        .await?;
        Ok(())
    }

    /// The Vault's status as stored now.
    pub async fn status(&self) -> Result<VaultStatus, BoxError> {
        let vault = self.vaults.get_status(VAULT).await?;
        Ok(vault.status.unwrap_or_default())
    }

    /// Waits until the Configured condition is true: `externalConfig` applied.
    pub async fn configured(&self) -> Result<(), BoxError> {
        wait_for("the Configured condition", CONFIGURED_WITHIN, || async {
            let status = self.status().await?;
            Ok::<_, BoxError>(status.is_true(CONFIGURED).then_some(()))
        })
        .await
    }

    /// A controller of this case's own, alone serving its namespace, in namespace
    /// `vault-operator-<suffix>`, with one replica changed by `configure` (its
    /// environment, say). Remove it after deleting the Vault: its finalizer needs it.
    pub async fn own_controller(
        &self,
        suffix: &str,
        configure: impl Fn(&mut Value) -> Result<(), BoxError>,
    ) -> Result<Operator, BoxError> {
        let scope = Scope {
            namespace: format!("vault-operator-{suffix}"),
            suffix: suffix.to_string(),
            serves: vec![self.namespace.clone()],
        };
        let mut objects = scope.manifests(&[Component::Controller])?;
        for deployment in objects.iter_mut().filter(|o| o["kind"] == "Deployment") {
            deployment["spec"]["replicas"] = json!(1);
            configure(deployment)?;
        }
        Ok(Operator::install(&self.suite.cluster, scope, objects).await?)
    }

    /// Deletes the Vault, then removes `controller` (from [`Case::own_controller`]), with
    /// its logs printed unless `outcome` is a success; gives back `outcome`, or what failed
    /// after it.
    pub async fn remove_own_controller(
        &self,
        mut controller: Operator,
        outcome: Result<(), BoxError>,
    ) -> Result<(), BoxError> {
        let deleted = self.delete_vault().await;
        if outcome.is_ok() && deleted.is_ok() {
            controller.passed();
        }
        controller.remove().await?;
        deleted?;
        outcome
    }

    /// Waits until the status shows `size` pods, each a Raft voter with a role: read by
    /// the controller with its own token, where no root token is at hand.
    pub async fn voters_in_status(&self, size: usize) -> Result<(), BoxError> {
        wait_for("voters in the status", RECOVERY_WITHIN, || async {
            let status = self.status().await?;
            let voting = status.pods.len() == size
                && status
                    .pods
                    .iter()
                    .all(|pod| pod.voter == Some(true) && pod.raft_role.is_some());
            Ok::<_, BoxError>(voting.then_some(()))
        })
        .await
    }

    /// The reasons of the Events recorded on the Vault.
    pub async fn event_reasons(&self) -> Result<Vec<String>, BoxError> {
        let events: Api<Event> = self.api();
        let selector = format!("involvedObject.name={VAULT}");
        let list = events
            .list(&ListParams::default().fields(&selector))
            .await?;
        Ok(list
            .items
            .into_iter()
            .filter_map(|event| event.reason)
            .collect())
    }

    /// The pods of the Vault, spoken to from inside the cluster with its CA.
    pub async fn vault_pods(&self) -> Result<VaultPods, BoxError> {
        Ok(VaultPods::new(&self.suite.cluster, &self.namespace, VAULT).await?)
    }

    /// Waits until the status says `size` pods are unsealed and Ready with a leader, for the
    /// current generation, and each pod's own `sys/seal-status` and `sys/leader` agree: all
    /// initialised and unsealed, exactly one active. Returns the time it took.
    pub async fn converged(&self, size: usize, limit: Duration) -> Result<Duration, BoxError> {
        let started = Instant::now();
        let what = format!(
            "{size} pods unsealed and Ready with one leader in {}",
            self.namespace
        );
        wait_for(&what, limit, || async {
            let vault = self.vaults.get_status(VAULT).await?;
            if !status_converged(&vault, size) {
                return Ok::<_, BoxError>(None);
            }
            Ok(self.live_leader(size).await.ok().map(drop))
        })
        .await?;
        Ok(started.elapsed())
    }

    /// Waits until each of `size` pods is a voting Raft peer, as the status and the
    /// leader's Raft configuration say, and no other peer is left: a peer that joins is a
    /// non-voter until autopilot promotes it, and until then the cluster is no more
    /// available than its voters. Returns the time it took.
    pub async fn all_voters(&self, size: usize, limit: Duration) -> Result<Duration, BoxError> {
        let started = Instant::now();
        let what = format!("{size} voting Raft peers in {}", self.namespace);
        let voting = wait_for(&what, limit, || async {
            let vault = self.vaults.get_status(VAULT).await?;
            let status = vault.status.unwrap_or_default();
            let shown =
                status.pods.len() == size && status.pods.iter().all(|pod| pod.voter == Some(true));
            if !shown {
                return Ok::<_, BoxError>(None);
            }
            let Ok(peers) = self.raft_peers(size).await else {
                return Ok(None);
            };
            let voting = peers.len() == size && peers.iter().all(|peer| peer["voter"] == true);
            Ok(voting.then_some(()))
        })
        .await;
        if let Err(error) = voting {
            let peers = self.raft_peers(size).await;
            return Err(format!("{error}; peers {peers:?}").into());
        }
        Ok(started.elapsed())
    }

    /// The servers of the Raft configuration, as the leader among pods `vault-0..size`
    /// gives them (`node_id`, `address`, `voter`, ...).
    pub async fn raft_peers(&self, size: usize) -> Result<Vec<Value>, BoxError> {
        let token = self.root_token().await?;
        let leader = self.live_leader(size).await?;
        let pods = self.vault_pods().await?;
        let answer = pods
            .get(&leader, "sys/storage/raft/configuration", Some(&token))
            .await?;
        let servers = answer["data"]["config"]["servers"].as_array().cloned();
        Ok(servers.unwrap_or_default())
    }

    /// The pod that says it is the active node, when pods `vault-0..size` all answer
    /// initialised and unsealed and exactly one says so.
    pub async fn live_leader(&self, size: usize) -> Result<String, BoxError> {
        let pods = self.vault_pods().await?;
        let mut leaders = Vec::new();
        for i in 0..size {
            let pod = format!("{VAULT}-{i}");
            let seal = pods.seal_status(&pod).await?;
            if seal["initialized"] != true || seal["sealed"] != false {
                return Err(format!("{pod} answers {seal}").into());
            }
            if pods.is_leader(&pod).await? {
                leaders.push(pod);
            }
        }
        match <[String; 1]>::try_from(leaders) {
            Ok([leader]) => Ok(leader),
            Err(leaders) => Err(format!("active nodes: {leaders:?}").into()),
        }
    }

    /// What the status and each pod say, for messages.
    pub async fn state(&self) -> String {
        let status = match self.vaults.get_status(VAULT).await {
            Ok(vault) => serde_json::to_string(&vault.status).unwrap_or_default(),
            Err(e) => format!("no status: {e}"),
        };
        let mut live = Vec::new();
        if let Ok(pods) = self.vault_pods().await {
            let names = self.pod_names().await.unwrap_or_default();
            for pod in names {
                let seal = pods.seal_status(&pod).await;
                let said = seal.map_or_else(|e| e.to_string(), |s| s.to_string());
                live.push(format!("{pod}: {said}"));
            }
        }
        format!("status: {status}; pods say: {}", live.join("; "))
    }

    async fn pod_names(&self) -> Result<Vec<String>, BoxError> {
        let pods: Api<Pod> = self.api();
        let selector = format!("vault_cr={VAULT}");
        let list = pods.list(&ListParams::default().labels(&selector)).await?;
        let mut names: Vec<String> = list
            .items
            .into_iter()
            .filter_map(|p| p.metadata.name)
            .collect();
        names.sort();
        Ok(names)
    }

    /// `kubectl vault status -o json` agrees with what each pod's API says right after:
    /// which pods are sealed and initialised, the count of sealed pods, and the leader.
    /// Asked up to three times a second apart, in case Vault changed in between.
    pub async fn status_agrees(&self, when: &str) -> Result<(), BoxError> {
        let mut problems = Vec::new();
        for attempt in 1..=3 {
            problems = self.status_differences().await?;
            if problems.is_empty() {
                say(&format!(
                    "  {}: kubectl vault status agrees with the pods {when} (asked {attempt}x)",
                    self.namespace
                ));
                return Ok(());
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        Err(format!("kubectl vault status {when}: {}", problems.join("; ")).into())
    }

    async fn status_differences(&self) -> Result<Vec<String>, BoxError> {
        let args = ["status", VAULT, "-n", &self.namespace, "-o", "json"];
        let output = self.suite.kubectl.vault(&args).await?;
        if !output.status.success() {
            let stderr = String::from_utf8_lossy(&output.stderr);
            return Err(format!("kubectl vault status: {}", stderr.trim()).into());
        }
        let report: Value = serde_json::from_slice(&output.stdout)?;
        let shown = &report["vaults"][0];
        let pods = self.vault_pods().await?;

        let mut problems = Vec::new();
        let mut sealed = 0;
        let mut leader = None;
        let listed = shown["pods"].as_array().cloned().unwrap_or_default();
        let names: Vec<&str> = listed.iter().filter_map(|p| p["name"].as_str()).collect();
        let running = self.pod_names().await?;
        if names != running {
            problems.push(format!("shows pods {names:?}, there are {running:?}"));
        }
        for pod in &listed {
            let name = pod["name"].as_str().unwrap_or_default();
            let live = match pods.seal_status(name).await {
                Ok(live) => live,
                Err(e) => {
                    if pod.get("unreachable").is_none() {
                        problems.push(format!("{name} does not answer ({e}), shown as reachable"));
                    }
                    continue;
                }
            };
            for field in ["sealed", "initialized"] {
                if pod[field] != live[field] {
                    problems.push(format!(
                        "{name}: shows {field} {}, says {}",
                        pod[field], live[field]
                    ));
                }
            }
            sealed += usize::from(live["sealed"] == true);
            if pods.is_leader(name).await.unwrap_or(false) {
                leader = Some(name.to_string());
            }
        }
        if shown["sealedPods"] != sealed {
            problems.push(format!(
                "shows {} sealed, {sealed} say so",
                shown["sealedPods"]
            ));
        }
        if shown["leader"].as_str() != leader.as_deref() {
            problems.push(format!(
                "shows leader {}, active: {leader:?}",
                shown["leader"]
            ));
        }
        Ok(problems)
    }

    /// A pod of the namespace (ServiceAccount `default`) logs in with Kubernetes auth
    /// through the sample's role and reads the startup secret `secret/data/mysql`.
    pub async fn pod_reads_startup_secret(&self) -> Result<(), BoxError> {
        self.pod_reads("secret/data/mysql", "MYSQL_ROOT_PASSWORD")
            .await
    }

    /// A pod of the namespace (ServiceAccount `default`) logs in with Kubernetes auth
    /// through the sample's role and reads `path`, whose answer holds `wanted`.
    pub async fn pod_reads(&self, path: &str, wanted: &str) -> Result<(), BoxError> {
        let login = Instant::now();
        let pods_api: Api<Pod> = self.api();
        let _ = pods_api.delete("reader", &Default::default()).await;
        e2e::wait_for("an earlier reader pod to go", RECOVERY_WITHIN, || async {
            Ok::<_, BoxError>(pods_api.get_opt("reader").await?.is_none().then_some(()))
        })
        .await?;
        let reader = e2e::reader_pod(&self.namespace, "default", path)?;
        pods_api.create(&PostParams::default(), &reader).await?;
        let log = localcluster::agent::pods::log_path(
            self.suite.cluster.layout(),
            &self.namespace,
            "reader",
            "reader",
        );
        let read = e2e::wait_for(
            "a pod to read a startup secret",
            CONFIGURED_WITHIN,
            || async {
                let text = std::fs::read_to_string(&log).unwrap_or_default();
                Ok::<_, BoxError>(text.contains(wanted).then_some(()))
            },
        )
        .await;
        if let Err(error) = read {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            return Err(format!("{error}; the reader's log:\n{text}").into());
        }
        measured(
            &self.namespace,
            &format!("a pod logged in with kubernetes auth and read {path}"),
            login.elapsed(),
        );
        pods_api.delete("reader", &Default::default()).await?;
        Ok(())
    }

    /// The root token the controller stored in the keys Secret.
    pub async fn root_token(&self) -> Result<String, BoxError> {
        let secrets: Api<Secret> = self.api();
        let keys = secrets.get(&format!("{VAULT}-unseal-keys")).await?;
        Ok(secret_value(&keys, "vault-root").ok_or("no vault-root in the keys Secret")?)
    }

    /// Mounts a kv engine and writes a secret there, through the leader.
    pub async fn write_kv(&self, size: usize) -> Result<(), BoxError> {
        let token = self.root_token().await?;
        let leader = self.live_leader(size).await?;
        let pods = self.vault_pods().await?;
        let mount = json!({"type": "kv", "options": {"version": "1"}});
        pods.post(
            &leader,
            &format!("sys/mounts/{KV_MOUNT}"),
            Some(&token),
            &mount,
        )
        .await?;
        let secret = json!({"value": KV_VALUE});
        pods.post(&leader, &format!("{KV_MOUNT}/probe"), Some(&token), &secret)
            .await?;
        self.kv_readable(size).await
    }

    /// The secret [`Case::write_kv`] wrote reads back through the leader.
    pub async fn kv_readable(&self, size: usize) -> Result<(), BoxError> {
        let token = self.root_token().await?;
        let leader = self.live_leader(size).await?;
        let pods = self.vault_pods().await?;
        let read = pods
            .get(&leader, &format!("{KV_MOUNT}/probe"), Some(&token))
            .await?;
        if read["data"]["value"] != KV_VALUE {
            return Err(format!("{KV_MOUNT}/probe reads {}", read["data"]).into());
        }
        Ok(())
    }

    /// Kills the Vault process of each of `pods` at once (SIGKILL), then waits until the
    /// node agent has started each again.
    pub async fn kill_vault(&self, pods: &[&str]) -> Result<(), BoxError> {
        let api: Api<Pod> = self.api();
        let mut pids = Vec::new();
        for pod in pods {
            let found = api.get(pod).await?;
            let pid = container_pid(&found, Some("vault")).ok_or(format!("{pod} runs no vault"))?;
            // The pid is the container's process, as long as it still runs `bao server`.
            let command = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            if !String::from_utf8_lossy(&command).contains("server") {
                return Err(format!("{pod}'s pid {pid} is no Vault server").into());
            }
            pids.push(pid.to_string());
        }
        let output = tokio::process::Command::new("kill")
            .arg("-KILL")
            .args(&pids)
            .output()
            .await?;
        if !output.status.success() {
            return Err(
                format!("kill {pids:?}: {}", String::from_utf8_lossy(&output.stderr)).into(),
            );
        }

        for (pod, old) in pods.iter().zip(&pids) {
            let what = format!("{pod}'s Vault started again");
            wait_for(&what, OBJECTS_WITHIN, || async {
                let found = api.get(pod).await?;
                let pid = container_pid(&found, Some("vault")).map(|p| p.to_string());
                Ok::<_, BoxError>(pid.filter(|pid| pid != old).map(drop))
            })
            .await?;
        }
        Ok(())
    }

    /// The state, the operator's log lines about this namespace, and the tails of the
    /// Vault pods' logs, for a failure.
    pub async fn failure_report(&self) -> String {
        let (layout, began) = (self.suite.cluster.layout(), self.suite.began);
        let ns = self.namespace.as_str();
        let about = format!("\"namespace\":\"{ns}\"");
        format!(
            "=== {ns}: {state}\n=== the operator's logs about {ns}:\n{operator}\
             === the webhook's and the controller's last lines:\n{last}=== the logs in {ns}:\n{vault}",
            state = self.state().await,
            operator = e2e::pod_logs(layout, OPERATOR_NAMESPACE, 40, began, Some(&about)),
            last = e2e::pod_logs(layout, OPERATOR_NAMESPACE, 5, began, None),
            vault = e2e::pod_logs(layout, ns, 30, began, None),
        )
    }

    /// Deletes the Vault and waits until its finalizer has run (the controller must still
    /// run), then the namespace, or in `default` what the Vault leaves behind and the
    /// shared `rbac.yaml`.
    pub async fn clean_up(&self) -> Result<(), BoxError> {
        self.delete_vault().await?;
        if self.namespace != "default" {
            let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(self.client());
            namespaces
                .delete(&self.namespace, &DeleteParams::default())
                .await?;
            return Ok(());
        }
        let mut left = vec![format!("secret/{VAULT}-unseal-keys")];
        left.extend((0..5).map(|i| format!("persistentvolumeclaim/vault-raft-{VAULT}-{i}")));
        let mut args = vec![
            "delete",
            "-n",
            "default",
            "--ignore-not-found",
            "--wait=false",
        ];
        args.extend(left.iter().map(String::as_str));
        let deleted = self.suite.kubectl.run(&args, "").await?;
        let rbac = e2e::samples_dir().join("rbac.yaml");
        let file = rbac.to_string_lossy();
        let args = ["delete", "-n", "default", "--ignore-not-found", "-f", &file];
        let rbac_deleted = self.suite.kubectl.run(&args, "").await?;
        for output in [deleted, rbac_deleted] {
            if !output.status.success() {
                return Err(String::from_utf8_lossy(&output.stderr).into_owned().into());
            }
        }
        Ok(())
    }

    /// Deletes the Vault, if there is one, and waits until it is gone.
    pub async fn delete_vault(&self) -> Result<Duration, BoxError> {
        let started = Instant::now();
        let deleted = self.vaults.delete(VAULT, &DeleteParams::default()).await;
        match deleted {
            Err(kube::Error::Api(status)) if status.code == 404 => {}
            other => drop(other?),
        }
        let what = format!("Vault {}/{VAULT} deleted", self.namespace);
        wait_for(&what, Duration::from_secs(60), || async {
            Ok::<_, BoxError>(self.vaults.get_opt(VAULT).await?.is_none().then_some(()))
        })
        .await?;
        Ok(started.elapsed())
    }
}

/// The status says `size` pods, all unsealed, a leader, Unsealed and Ready, for the
/// current generation.
pub fn status_converged(vault: &Vault, size: usize) -> bool {
    let Some(status) = &vault.status else {
        return false;
    };
    status.observed_generation == vault.metadata.generation
        && status.pods.len() == size
        && status.pods.iter().all(|pod| pod.sealed == Some(false))
        && !status.leader.is_empty()
        && status.is_true(UNSEALED)
        && status.is_true(READY)
}

/// Deletes an object and measures how long until one of the same name is back.
pub async fn deleted_comes_back<K>(api: &Api<K>, name: &str) -> Result<Duration, BoxError>
where
    K: Resource + Clone + k8s_openapi::serde::de::DeserializeOwned + std::fmt::Debug,
{
    let uid = |object: Option<K>| object.and_then(|o| o.meta().uid.clone());
    let before = uid(api.get_opt(name).await?).ok_or(format!("{name} is not there"))?;
    let started = Instant::now();
    api.delete(name, &DeleteParams::background()).await?;
    wait_for(&format!("{name} back"), OBJECTS_WITHIN, || async {
        let now = uid(api.get_opt(name).await?);
        Ok::<_, BoxError>(now.filter(|uid| *uid != before).map(drop))
    })
    .await?;
    Ok(started.elapsed())
}

/// Prints a measured time, indented under its scenario.
pub fn measured(namespace: &str, what: &str, took: Duration) {
    say(&format!(
        "  {namespace}: {what} in {:.1}s",
        took.as_secs_f64()
    ));
}
