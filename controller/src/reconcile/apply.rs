//! The apply step: server-side apply of every desired object with one field manager, the
//! takeover of a StatefulSet whose immutable fields differ, and removal of what is no
//! longer wanted.

use std::fmt::Debug;
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::networking::v1::Ingress;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::ClusterRoleBinding;
use k8s_openapi::{ClusterResourceScope, NamespaceResourceScope};
use kube::api::{
    ApiResource, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PropagationPolicy,
};
use kube::runtime::events::{Event, EventType};
use kube::{Api, Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tracing::{info, warn};
use vault_api::Vault;

use super::Context;
use crate::build::{self, Desired, FIELD_MANAGER};

/// How long the takeover waits for the old StatefulSet to be gone.
const TAKEOVER_TIMEOUT: Duration = Duration::from_secs(60);

/// Why applying the objects of a `Vault` failed.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// The API server refused an apply.
    #[error("applying {kind} {name}: {source}")]
    Apply {
        /// Kind of the object.
        kind: &'static str,
        /// Its name.
        name: String,
        /// The cause.
        source: kube::Error,
    },
    /// Removing an object that is no longer wanted failed.
    #[error("deleting {kind} {name}: {source}")]
    Delete {
        /// Kind of the object.
        kind: &'static str,
        /// Its name.
        name: String,
        /// The cause.
        source: kube::Error,
    },
    /// Listing objects to find stale ones failed.
    #[error("listing the {kind}s of Vault {vault}: {source}")]
    List {
        /// Kind of the objects.
        kind: &'static str,
        /// The `Vault`.
        vault: String,
        /// The cause.
        source: kube::Error,
    },
    /// The old StatefulSet did not go away in time.
    #[error("taking over StatefulSet {name}: it was still there after {seconds} s")]
    TakeoverTimeout {
        /// Its name.
        name: String,
        /// How long we waited.
        seconds: u64,
    },
}

fn params() -> PatchParams {
    // Force: the controller owns these fields, whoever (Bank-Vaults, kubectl) set them last.
    PatchParams::apply(FIELD_MANAGER).force()
}

fn name_of<K: Resource>(object: &K) -> String {
    object.meta().name.clone().unwrap_or_default()
}

/// Applies one namespaced object.
pub async fn apply_namespaced<K>(
    client: &Client,
    namespace: &str,
    object: &K,
) -> Result<K, ApplyError>
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>,
    K: Serialize + DeserializeOwned + Clone + Debug,
{
    apply_with(Api::namespaced(client.clone(), namespace), object).await
}

async fn apply_with<K>(api: Api<K>, object: &K) -> Result<K, ApplyError>
where
    K: Resource<DynamicType = ()> + Serialize + DeserializeOwned + Clone + Debug,
{
    let name = name_of(object);
    api.patch(&name, &params(), &Patch::Apply(object))
        .await
        .map_err(|source| ApplyError::Apply {
            kind: kind_of::<K>(),
            name,
            source,
        })
}

fn kind_of<K: Resource<DynamicType = ()>>() -> &'static str {
    // Kinds are static strings of the k8s-openapi types; leak-free through a match.
    match K::kind(&()).as_ref() {
        "StatefulSet" => "StatefulSet",
        "Service" => "Service",
        "Secret" => "Secret",
        "PodDisruptionBudget" => "PodDisruptionBudget",
        "Ingress" => "Ingress",
        "ClusterRoleBinding" => "ClusterRoleBinding",
        _ => "object",
    }
}

/// Deletes an object if it exists.
async fn delete_if_present<K>(api: &Api<K>, name: &str) -> Result<(), ApplyError>
where
    K: Resource<DynamicType = ()> + DeserializeOwned + Clone + Debug,
{
    match api.delete(name, &DeleteParams::default()).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
        Err(source) => Err(ApplyError::Delete {
            kind: kind_of::<K>(),
            name: name.to_string(),
            source,
        }),
    }
}

/// Applies every desired object of `vault`, in an order that lets pods start at once:
/// configuration first, then Services, then the StatefulSet.
pub async fn apply_all(ctx: &Context, vault: &Vault, desired: &Desired) -> Result<(), ApplyError> {
    let client = &ctx.client;
    let namespace = vault.namespace().unwrap_or_default();
    let name = vault.name_any();

    apply_namespaced(client, &namespace, &desired.raw_config).await?;
    for service in &desired.services {
        apply_namespaced(client, &namespace, service).await?;
    }
    remove_stale_pod_services(client, &namespace, &name, desired).await?;

    apply_stateful_set(ctx, vault, &desired.stateful_set).await?;

    let budgets: Api<PodDisruptionBudget> = Api::namespaced(client.clone(), &namespace);
    match &desired.disruption_budget {
        Some(budget) => drop(apply_namespaced(client, &namespace, budget).await?),
        None => delete_if_present(&budgets, &name).await?,
    }
    let ingresses: Api<Ingress> = Api::namespaced(client.clone(), &namespace);
    match &desired.ingress {
        Some(ingress) => drop(apply_namespaced(client, &namespace, ingress).await?),
        None => delete_if_present(&ingresses, &name).await?,
    }
    apply_service_monitor(client, &namespace, &name, desired.service_monitor.as_ref()).await?;
    let bindings: Api<ClusterRoleBinding> = Api::all(client.clone());
    match &desired.auth_delegator {
        Some(binding) => drop(apply_cluster(client, binding).await?),
        None => {
            let binding = build::auth_delegator_name(&namespace, &name);
            delete_if_present(&bindings, &binding).await?;
        }
    }
    Ok(())
}

/// Applies or removes the ServiceMonitor. Without the Prometheus Operator's CRD the API
/// server answers 404 to both, and there is nothing to do.
async fn apply_service_monitor(
    client: &Client,
    namespace: &str,
    name: &str,
    monitor: Option<&serde_json::Value>,
) -> Result<(), ApplyError> {
    let resource = ApiResource {
        group: "monitoring.coreos.com".to_string(),
        version: "v1".to_string(),
        api_version: "monitoring.coreos.com/v1".to_string(),
        kind: "ServiceMonitor".to_string(),
        plural: "servicemonitors".to_string(),
    };
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), namespace, &resource);
    let result = match monitor {
        Some(monitor) => api
            .patch(name, &params(), &Patch::Apply(monitor))
            .await
            .map(drop)
            .map_err(|source| ApplyError::Apply {
                kind: "ServiceMonitor",
                name: name.to_string(),
                source,
            }),
        None => api
            .delete(name, &DeleteParams::default())
            .await
            .map(drop)
            .map_err(|source| ApplyError::Delete {
                kind: "ServiceMonitor",
                name: name.to_string(),
                source,
            }),
    };
    match result {
        Err(ApplyError::Apply { source, .. } | ApplyError::Delete { source, .. }) if matches!(&source, kube::Error::Api(status) if status.code == 404) => {
            Ok(())
        }
        other => other,
    }
}

async fn apply_cluster<K>(client: &Client, object: &K) -> Result<K, ApplyError>
where
    K: Resource<Scope = ClusterResourceScope, DynamicType = ()>,
    K: Serialize + DeserializeOwned + Clone + Debug,
{
    apply_with(Api::all(client.clone()), object).await
}

/// Removes the `<name>-<i>` Services of pods that scaling down removed.
async fn remove_stale_pod_services(
    client: &Client,
    namespace: &str,
    name: &str,
    desired: &Desired,
) -> Result<(), ApplyError> {
    let size = desired.stateful_set.spec.replicas.unwrap_or(1);
    let api: Api<Service> = Api::namespaced(client.clone(), namespace);
    let selector = format!(
        "{}=vault,{}={name}",
        vault_api::defaults::APP_LABEL,
        vault_api::defaults::CR_LABEL
    );
    let services = api
        .list(&ListParams::default().labels(&selector))
        .await
        .map_err(|source| ApplyError::List {
            kind: "Service",
            vault: name.to_string(),
            source,
        })?;
    for service in services {
        let service_name = service.name_any();
        if build::per_pod_service_index(name, &service_name).is_some_and(|i| i >= size) {
            info!(service = %service_name, "removing the Service of a pod scaled away");
            delete_if_present(&api, &service_name).await?;
        }
    }
    Ok(())
}

/// The API server's message, when it refused a change because an immutable field differs.
fn is_immutable_field_error(error: &ApplyError) -> Option<String> {
    match error {
        ApplyError::Apply {
            source: kube::Error::Api(status),
            ..
        } if status.code == 422
            // Older API servers say "Forbidden: updates to statefulset spec for fields
            // other than..."; newer ones name each field "field is immutable".
            && (status.message.contains("Forbidden") || status.message.contains("immutable")) =>
        {
            Some(status.message.clone())
        }
        _ => None,
    }
}

/// Applies the StatefulSet. When one exists whose immutable fields differ (one made by
/// Bank-Vaults: another service name, ordered pod management), it is deleted without its
/// pods and made again; the new one adopts the pods, and their claims stay.
async fn apply_stateful_set(
    ctx: &Context,
    vault: &Vault,
    stateful_set: &StatefulSet,
) -> Result<(), ApplyError> {
    let namespace = vault.namespace().unwrap_or_default();
    let name = name_of(stateful_set);
    let first = apply_namespaced(&ctx.client, &namespace, stateful_set).await;
    let Err(error) = first else {
        return Ok(());
    };
    let Some(reason) = is_immutable_field_error(&error) else {
        return Err(error);
    };

    warn!(statefulset = %name, %reason, "taking over the StatefulSet: recreating it");
    let note = format!(
        "StatefulSet {name} differs in fields Kubernetes cannot change; recreating it and \
         keeping its pods and claims ({reason})"
    );
    ctx.publish(vault, EventType::Normal, "TakingOverStatefulSet", note)
        .await;

    let api: Api<StatefulSet> = Api::namespaced(ctx.client.clone(), &namespace);
    let orphan = DeleteParams {
        propagation_policy: Some(PropagationPolicy::Orphan),
        ..DeleteParams::default()
    };
    match api.delete(&name, &orphan).await {
        Ok(_) => {}
        Err(kube::Error::Api(status)) if status.code == 404 => {}
        Err(source) => {
            return Err(ApplyError::Delete {
                kind: "StatefulSet",
                name,
                source,
            });
        }
    }

    // The garbage collector first moves the pods' owner references away (the orphan
    // finalizer); creating before it is done would make the new set a duplicate owner.
    let started = Instant::now();
    loop {
        match api.get_opt(&name).await {
            Ok(None) => break,
            Ok(Some(_)) | Err(_) if started.elapsed() < TAKEOVER_TIMEOUT => {
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            _ => {
                return Err(ApplyError::TakeoverTimeout {
                    name,
                    seconds: TAKEOVER_TIMEOUT.as_secs(),
                });
            }
        }
    }
    apply_namespaced(&ctx.client, &namespace, stateful_set).await?;
    ctx.publish(
        vault,
        EventType::Normal,
        "TookOverStatefulSet",
        format!("StatefulSet {name} recreated"),
    )
    .await;
    Ok(())
}

/// Events are best effort: failing to record one must not fail the reconcile.
pub(super) fn event(type_: EventType, reason: &str, note: String) -> Event {
    Event {
        type_,
        reason: reason.to_string(),
        note: Some(note),
        action: reason.to_string(),
        secondary: None,
    }
}
