//! The operator installed from `manifests/` as pods of the local cluster, for one suite.
//!
//! Other suites share the cluster and write `Vault`s of their own at the same time, some of
//! them invalid on purpose, with controllers of their own. So an installation is scoped
//! ([`Scope`]): its namespaced objects go into a namespace of its own, every cluster-wide
//! object (ClusterRole, ClusterRoleBinding, the webhook configurations) takes a name of its
//! own, the controller watches only the namespaces the suite names, and the webhook
//! configurations select only those. [`Operator`] removes it all when dropped, the webhook
//! configurations first: a webhook with `failurePolicy: Fail` that stops answering would
//! refuse every `Vault` it selects.
//!
//! The pods run the binaries in Cargo's target folder (`vault-operator/*` images, see
//! `tests/localcluster/src/agent/images.rs`): `cargo test --workspace` builds them; build
//! `vault-controller` and `vault-webhook` yourself when running one package's tests.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::Client;
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams, Patch,
    PatchParams, PostParams,
};
use kube::discovery::{self, Scope as ResourceScope};
use serde_json::{Value, json};

use crate::{Error, raft_vault, say, vault_api, wait_for};

/// The field manager of what an installation applies.
const MANAGER: &str = "e2e-operator";
/// How long the operator's pods may take from apply to Ready.
pub const READY_WITHIN: Duration = Duration::from_secs(90);
/// The namespace the manifests name, which no installation here may keep.
const MANIFESTS_NAMESPACE: &str = "vault-operator";

/// A part of the operator, as `manifests/` has it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Component {
    /// `manifests/controller.yaml`.
    Controller,
    /// `manifests/webhook.yaml`.
    Webhook,
}

impl Component {
    /// Its manifest file.
    pub fn manifest(self) -> PathBuf {
        let file = match self {
            Component::Controller => "controller.yaml",
            Component::Webhook => "webhook.yaml",
        };
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../manifests")
            .join(file)
    }

    /// The name of its Deployment, and of its cluster-wide objects in the manifests.
    pub fn name(self) -> &'static str {
        match self {
            Component::Controller => "vault-controller",
            Component::Webhook => "vault-webhook",
        }
    }
}

/// Where an installation runs and whom it serves.
#[derive(Clone, Debug)]
pub struct Scope {
    /// The operator's own namespace: every namespaced object of the manifests goes there.
    pub namespace: String,
    /// Appended to the name of every cluster-wide object: `vault-webhook` becomes
    /// `vault-webhook-<suffix>`.
    pub suffix: String,
    /// The namespaces whose `Vault`s it serves: the controller watches them and the webhook
    /// configurations select them.
    pub serves: Vec<String>,
}

impl Scope {
    /// The name a cluster-wide object of the manifests takes in this scope.
    pub fn renamed(&self, name: &str) -> String {
        format!("{name}-{}", self.suffix)
    }

    /// The name of both webhook configurations (and of the webhook's ClusterRole).
    pub fn webhook_configuration(&self) -> String {
        self.renamed(Component::Webhook.name())
    }

    /// The objects of the manifests of `components`, moved into this scope: namespaced
    /// objects into [`Scope::namespace`], cluster-wide ones renamed and every reference to
    /// them too, bindings' subjects into the namespace, the webhook configurations limited
    /// to [`Scope::serves`] and calling the webhook's Service there, and the controller's
    /// `WATCH_NAMESPACES` and the webhook's `WEBHOOK_CONFIGURATION` set to match. The
    /// manifests' Namespace is left out: [`Operator::install`] makes the namespace.
    pub fn manifests(&self, components: &[Component]) -> Result<Vec<Value>, Error> {
        let mut objects = Vec::new();
        for component in components {
            let path = component.manifest();
            let text = std::fs::read_to_string(&path)
                .map_err(|e| Error::Io(format!("reading {}", path.display()), e))?;
            let documents: Vec<Option<Value>> = serde_saphyr::from_multiple(&text)
                .map_err(|e| Error::Manifest(format!("{}: {e}", path.display())))?;
            objects.extend(
                documents
                    .into_iter()
                    .flatten()
                    .filter(|object| object["kind"] != "Namespace"),
            );
        }

        // References follow the objects they name, so collect the names first.
        let cluster_wide: Vec<String> = objects
            .iter()
            .filter(|object| is_cluster_wide(object["kind"].as_str().unwrap_or_default()))
            .filter_map(|object| object["metadata"]["name"].as_str().map(str::to_string))
            .collect();
        for object in &mut objects {
            self.move_object(object, &cluster_wide)?;
        }

        let written = serde_json::to_string(&objects)
            .map_err(|e| Error::Manifest(format!("writing the moved manifests: {e}")))?;
        if written.contains(&format!("\"{MANIFESTS_NAMESPACE}\"")) {
            return Err(Error::Manifest(format!(
                "the moved manifests still name {MANIFESTS_NAMESPACE}: {written}"
            )));
        }
        Ok(objects)
    }

    fn move_object(&self, object: &mut Value, cluster_wide: &[String]) -> Result<(), Error> {
        let kind = object["kind"].as_str().unwrap_or_default().to_string();
        let rename = |name: &mut Value| {
            if let Some(old) = name.as_str()
                && cluster_wide.iter().any(|n| n == old)
            {
                *name = json!(self.renamed(old));
            }
        };
        if is_cluster_wide(&kind) {
            rename(&mut object["metadata"]["name"]);
        } else {
            object["metadata"]["namespace"] = json!(self.namespace);
        }

        match kind.as_str() {
            "ClusterRole" => {
                let rules = object["rules"].as_array_mut().into_iter().flatten();
                for rule in rules {
                    let names = rule["resourceNames"].as_array_mut().into_iter().flatten();
                    names.for_each(rename);
                }
            }
            "ClusterRoleBinding" | "RoleBinding" => {
                if object["roleRef"]["kind"] == "ClusterRole" {
                    rename(&mut object["roleRef"]["name"]);
                }
                let subjects = object["subjects"]
                    .as_array_mut()
                    .ok_or_else(|| Error::Manifest(format!("a {kind} without subjects")))?;
                for subject in subjects {
                    if subject["kind"] == "ServiceAccount" {
                        subject["namespace"] = json!(self.namespace);
                    }
                }
            }
            "MutatingWebhookConfiguration" | "ValidatingWebhookConfiguration" => {
                let webhooks = object["webhooks"]
                    .as_array_mut()
                    .ok_or_else(|| Error::Manifest(format!("a {kind} without webhooks")))?;
                for webhook in webhooks {
                    webhook["clientConfig"]["service"]["namespace"] = json!(self.namespace);
                    webhook["namespaceSelector"] = json!({"matchExpressions": [{
                        "key": "kubernetes.io/metadata.name",
                        "operator": "In",
                        "values": self.serves,
                    }]});
                }
            }
            "Deployment" => match object["metadata"]["name"].as_str() {
                Some("vault-controller") => {
                    set_env(object, "WATCH_NAMESPACES", &self.serves.join(","))?
                }
                Some("vault-webhook") => set_env(
                    object,
                    "WEBHOOK_CONFIGURATION",
                    &self.webhook_configuration(),
                )?,
                other => return Err(Error::Manifest(format!("an unknown Deployment {other:?}"))),
            },
            _ => {}
        }
        Ok(())
    }
}

/// Sets `name` to `value` in the environment of a Deployment's first container, replacing
/// the manifests' value or adding one.
pub fn set_env(deployment: &mut Value, name: &str, value: &str) -> Result<(), Error> {
    let container = &mut deployment["spec"]["template"]["spec"]["containers"][0];
    if container["env"].is_null() {
        container["env"] = json!([]);
    }
    let env = container["env"]
        .as_array_mut()
        .ok_or_else(|| Error::Manifest("a Deployment's env that is no list".into()))?;
    match env.iter_mut().find(|e| e["name"] == name) {
        Some(found) => *found = json!({"name": name, "value": value}),
        None => env.push(json!({"name": name, "value": value})),
    }
    Ok(())
}

fn is_cluster_wide(kind: &str) -> bool {
    matches!(
        kind,
        "ClusterRole"
            | "ClusterRoleBinding"
            | "MutatingWebhookConfiguration"
            | "ValidatingWebhookConfiguration"
    )
}

/// An installed operator. Dropping it (or [`Operator::remove`]) deletes its webhook
/// configurations, then its other cluster-wide objects and its namespace; its pods' logs
/// are printed first unless the caller said it [`passed`](Operator::passed).
pub struct Operator {
    client: Client,
    kubeconfig: PathBuf,
    layout: localcluster::Layout,
    scope: Scope,
    /// Cluster-wide objects to delete, webhook configurations first.
    cluster_wide: Vec<(ApiResource, String)>,
    deployments: Vec<String>,
    installed: SystemTime,
    passed: bool,
    removed: bool,
}

impl Operator {
    /// Applies `objects` (from [`Scope::manifests`], changed as the caller likes)
    /// server-side into `scope`, making its namespace when missing (and waiting out one that
    /// an earlier run is still deleting), and waits until every Deployment is rolled out
    /// and Ready.
    pub async fn install(
        cluster: &localcluster::LocalCluster,
        scope: Scope,
        objects: Vec<Value>,
    ) -> Result<Self, Error> {
        let client = cluster.client();
        ensure_namespace(&client, &scope.namespace).await?;
        let mut operator = Operator {
            client: client.clone(),
            kubeconfig: cluster.kubeconfig(),
            layout: cluster.layout().clone(),
            scope,
            cluster_wide: Vec::new(),
            deployments: Vec::new(),
            installed: SystemTime::now(),
            passed: false,
            removed: false,
        };

        let mut resources: HashMap<String, (ApiResource, ResourceScope)> = HashMap::new();
        let params = PatchParams::apply(MANAGER).force();
        for value in objects {
            let object: DynamicObject = serde_json::from_value(value)
                .map_err(|e| Error::Manifest(format!("an object that does not parse: {e}")))?;
            let types = object.types.clone().unwrap_or_default();
            let name = object.metadata.name.clone().unwrap_or_default();
            let what = format!("{} {name}", types.kind);
            let key = format!("{}/{}", types.api_version, types.kind);
            let (resource, scope) = match resources.get(&key) {
                Some(found) => found.clone(),
                None => {
                    let gvk = GroupVersionKind::try_from(&types)
                        .map_err(|e| Error::Manifest(format!("{what}: {e}")))?;
                    let (resource, capabilities) = discovery::pinned_kind(&client, &gvk)
                        .await
                        .map_err(|e| Error::Kube(format!("discovering {what}"), e))?;
                    let found = (resource, capabilities.scope);
                    resources.insert(key, found.clone());
                    found
                }
            };
            let api: Api<DynamicObject> = match scope {
                ResourceScope::Cluster => {
                    // Recorded first, so that a failed install still removes it.
                    let entry = (resource.clone(), name.clone());
                    if types.kind.ends_with("WebhookConfiguration") {
                        operator.cluster_wide.insert(0, entry);
                    } else {
                        operator.cluster_wide.push(entry);
                    }
                    Api::all_with(client.clone(), &resource)
                }
                ResourceScope::Namespaced => {
                    Api::namespaced_with(client.clone(), &operator.scope.namespace, &resource)
                }
            };
            if types.kind == "Deployment" {
                operator.deployments.push(name.clone());
            }
            api.patch(&name, &params, &Patch::Apply(&object))
                .await
                .map_err(|e| Error::Kube(format!("applying {what}"), e))?;
        }

        for name in operator.deployments.clone() {
            operator.rolled_out(&name).await?;
        }
        Ok(operator)
    }

    /// Waits until Deployment `name` runs its replicas of the applied template, all Ready.
    async fn rolled_out(&self, name: &str) -> Result<(), Error> {
        let deployments: Api<Deployment> = Api::namespaced(self.client.clone(), self.namespace());
        let what = format!(
            "Deployment {}/{name} rolled out and Ready",
            self.namespace()
        );
        wait_for(&what, READY_WITHIN, || async {
            let deployment = deployments
                .get(name)
                .await
                .map_err(|e| Error::Kube(format!("reading Deployment {name}"), e))?;
            let want = deployment.spec.replicas.unwrap_or(1);
            let status = deployment.status.unwrap_or_default();
            let done = status.observed_generation >= deployment.metadata.generation
                && status.replicas == Some(want)
                && status.updated_replicas == Some(want)
                && status.ready_replicas == Some(want)
                && status.available_replicas == Some(want);
            Ok::<_, Error>(done.then_some(()))
        })
        .await
    }

    /// Where it runs and whom it serves.
    pub fn scope(&self) -> &Scope {
        &self.scope
    }

    /// Its own namespace.
    pub fn namespace(&self) -> &str {
        &self.scope.namespace
    }

    /// Waits until the API server calls both webhooks for `namespace`: a valid `Vault` comes
    /// back from a dry run with its defaults, an invalid one is refused by the webhook.
    /// Returns the time it took.
    pub async fn admitting(&self, namespace: &str) -> Result<Duration, Error> {
        let vaults = vault_api(&self.client, namespace);
        let started = Instant::now();
        let dry_run = PostParams {
            dry_run: true,
            ..PostParams::default()
        };
        let valid = raft_vault(namespace, "probe", json!({}));
        let unseal = json!({"options": {"secretShares": 3, "secretThreshold": 4}});
        let invalid = raft_vault(namespace, "probe", unseal);
        loop {
            let admitted = vaults.create(&dry_run, &valid).await;
            let refused = vaults.create(&dry_run, &invalid).await;
            let last = match (admitted, refused) {
                (Ok(vault), Err(kube::Error::Api(status)))
                    if vault.data["spec"]["unsealConfig"]["options"]["secretShares"] == 5
                        && status.message.contains("denied the request") =>
                {
                    return Ok(started.elapsed());
                }
                (admitted, refused) => format!("{admitted:?} / {refused:?}"),
            };
            if started.elapsed() > READY_WITHIN {
                return Err(Error::Command {
                    command: format!("admission of Vaults in {namespace}"),
                    reason: format!("the webhook does not admit them: {last}"),
                });
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// Its pods.
    pub async fn pods(&self) -> Result<Vec<Pod>, Error> {
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), self.namespace());
        let list = pods
            .list(&ListParams::default())
            .await
            .map_err(|e| Error::Kube(format!("listing the pods of {}", self.namespace()), e))?;
        Ok(list.items)
    }

    /// The resident memory of each of its pods' processes, in KiB, by pod name: the local
    /// cluster runs each container as a host process whose pid is its container ID.
    pub async fn resident_memory(&self) -> Result<Vec<(String, u64)>, Error> {
        let mut memory = Vec::new();
        for pod in self.pods().await? {
            let name = pod.metadata.name.clone().unwrap_or_default();
            let rss = crate::inside::container_pid(&pod, None).and_then(resident_kib);
            if let Some(kib) = rss {
                memory.push((name, kib));
            }
        }
        memory.sort();
        Ok(memory)
    }

    /// The last `lines` lines of each of its pods' logs since it was installed.
    pub fn logs(&self, lines: usize) -> String {
        crate::pod_logs(&self.layout, self.namespace(), lines, self.installed, None)
    }

    /// Marks the run passed: removal prints no logs.
    pub fn passed(&mut self) {
        self.passed = true;
    }

    /// Removes it: what [`Drop`] does, awaited, with the errors returned.
    pub async fn remove(mut self) -> Result<(), Error> {
        self.removed = true;
        if !self.passed {
            say(&self.logs(40));
        }
        remove(&self.client, &self.scope.namespace, &self.cluster_wide).await
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        if self.removed {
            return;
        }
        if !self.passed || std::thread::panicking() {
            say(&self.logs(40));
        }
        // Drop cannot await, and may run inside a runtime that cannot be blocked on: remove
        // from a thread with a runtime and a client of its own.
        let (kubeconfig, namespace) = (self.kubeconfig.clone(), self.scope.namespace.clone());
        let cluster_wide = self.cluster_wide.clone();
        let removed = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| Error::Io("starting a runtime".into(), e))?;
            runtime.block_on(async {
                let client = localcluster::client_for(&kubeconfig).await?;
                remove(&client, &namespace, &cluster_wide).await
            })
        })
        .join();
        match removed {
            Ok(Ok(())) => {}
            Ok(Err(e)) => say(&format!(
                "removing the operator in {}: {e}",
                self.namespace()
            )),
            Err(_) => say(&format!(
                "removing the operator in {}: panicked",
                self.namespace()
            )),
        }
    }
}

/// Deletes `cluster_wide` in order, then `namespace`, without waiting for the namespace to
/// be emptied; what is gone already is no error.
async fn remove(
    client: &Client,
    namespace: &str,
    cluster_wide: &[(ApiResource, String)],
) -> Result<(), Error> {
    let gone = |result: Result<(), kube::Error>, what: String| match result {
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
        other => other.map_err(|e| Error::Kube(what, e)),
    };
    let mut first_error = Ok(());
    for (resource, name) in cluster_wide {
        let api: Api<DynamicObject> = Api::all_with(client.clone(), resource);
        let deleted = api.delete(name, &DeleteParams::default()).await.map(drop);
        let result = gone(deleted, format!("deleting {} {name}", resource.kind));
        first_error = first_error.and(result);
    }
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let deleted = namespaces.delete(namespace, &DeleteParams::default()).await;
    first_error.and(gone(
        deleted.map(drop),
        format!("deleting namespace {namespace}"),
    ))
}

/// Makes `namespace` unless it exists; one still being deleted is waited out first.
async fn ensure_namespace(client: &Client, namespace: &str) -> Result<(), Error> {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let what = format!("namespace {namespace} from an earlier run to be deleted");
    wait_for(&what, Duration::from_secs(120), || async {
        let found = namespaces
            .get_opt(namespace)
            .await
            .map_err(|e| Error::Kube(format!("reading namespace {namespace}"), e))?;
        Ok::<_, Error>(match found {
            Some(ns) if ns.metadata.deletion_timestamp.is_some() => None,
            _ => Some(()),
        })
    })
    .await?;
    let object = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}});
    namespaces
        .patch(
            namespace,
            &PatchParams::apply(MANAGER),
            &Patch::Apply(&object),
        )
        .await
        .map_err(|e| Error::Kube(format!("making namespace {namespace}"), e))?;
    Ok(())
}

/// `VmRSS` of a process, in KiB.
fn resident_kib(pid: i32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}
