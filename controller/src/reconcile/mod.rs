//! Reconciling one `Vault`: fetch, default and validate, build, apply, operate Vault,
//! write status. [`run`] drives it with `kube::runtime::Controller`, watching the `Vault`s
//! and every kind they own, so that a deleted or edited child is restored at once.

mod apply;
mod certificates;
mod config_step;
mod identity_step;
mod status;
mod vault_step;

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{Pod, Secret, Service};
use k8s_openapi::api::networking::v1::Ingress;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::ClusterRoleBinding;
use kube::api::{Patch, PatchParams};
use kube::core::DeserializeGuard;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{EventType, Recorder, Reporter};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Api, Client, Resource, ResourceExt};
use tracing::{Instrument, debug, info, info_span, warn};
use vault_api::Vault;
use vault_api::status::{ConditionUpdate, READY, VaultStatus};

pub use apply::{ApplyError, apply_all, apply_namespaced};
pub use certificates::{CertificateError, TLS_DIGEST_ANNOTATION, Trust, ensure_certificates};
pub use config_step::{ConfigMemory, ConfigObservation};
pub use status::{StatusError, write_status};
pub use vault_step::VaultObservation;

use crate::build::{self, BuildError, BuildOptions};
use crate::metrics::Metrics;

/// Finalizer of a `Vault` that owns cluster-scoped objects or copies of its CA in other
/// namespaces, which its deletion cannot garbage-collect (an owner reference cannot point
/// across namespaces).
pub const FINALIZER: &str = "vault.banzaicloud.com/cluster-objects";

/// What the controller is run with.
#[derive(Clone, Debug)]
pub struct ControllerOptions {
    /// Namespaces to watch; empty means all.
    pub namespaces: Vec<String>,
    /// Options of the build step.
    pub build: BuildOptions,
    /// The safety-net requeue of every `Vault`, in case a watch event was missed.
    pub requeue: Duration,
    /// Initialise, unseal and join the Vault pods, dialling each at its own address. Off
    /// for a controller that cannot reach pod addresses (one outside the cluster's
    /// network): it then manages the Kubernetes objects only.
    pub operate_vault: bool,
    /// How often `externalConfig` is applied again when nothing changed, to put back what
    /// was changed in Vault by hand.
    pub config_period: Duration,
    /// How generated certificates are made: key algorithm and validity.
    pub issuance: crate::tls::Issuance,
    /// The controller's ServiceAccount token, to log in to Vault with a role of its own;
    /// `None` where it has none (run outside the cluster), and then only the stored root
    /// token configures Vault.
    pub service_account_token: Option<crate::unseal::ServiceAccountToken>,
}

impl Default for ControllerOptions {
    fn default() -> Self {
        ControllerOptions {
            namespaces: Vec::new(),
            build: BuildOptions::default(),
            requeue: Duration::from_secs(300),
            operate_vault: true,
            config_period: Duration::from_secs(300),
            issuance: crate::tls::Issuance::default(),
            service_account_token: None,
        }
    }
}

/// What every reconcile shares.
pub struct Context {
    /// The API client.
    pub client: Client,
    /// How objects are built.
    pub options: ControllerOptions,
    /// Records Events on the `Vault`s.
    pub recorder: Recorder,
    /// Counters and timings for `/metrics`.
    pub metrics: Arc<Metrics>,
    /// What the last configuration pass of each `Vault` left.
    pub config_memory: ConfigMemory,
    /// The controller's own tokens in each Vault.
    pub identity_memory: identity_step::IdentityMemory,
    /// The key store of each Vault.
    pub key_stores: vault_step::KeyStoreCache,
}

impl Context {
    /// Records an Event on `vault`; failures are logged, never returned, since a missing
    /// Event must not stop the reconcile.
    pub async fn publish(&self, vault: &Vault, type_: EventType, reason: &str, note: String) {
        let event = apply::event(type_, reason, note);
        if let Err(error) = self.recorder.publish(&event, &vault.object_ref(&())).await {
            warn!(%error, reason, "recording an Event failed");
        }
    }
}

/// Why a reconcile failed; each step has its own error.
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    /// The build step failed.
    #[error(transparent)]
    Build(#[from] BuildError),
    /// The apply step failed.
    #[error(transparent)]
    Apply(#[from] ApplyError),
    /// Writing the status failed.
    #[error(transparent)]
    Status(#[from] StatusError),
    /// The TLS step failed.
    #[error(transparent)]
    Certificates(#[from] CertificateError),
    /// Listing or resetting the Vault pods failed.
    #[error("operating the pods of Vault {name}: {source}")]
    Pods {
        /// The `Vault`.
        name: String,
        /// The cause.
        source: kube::Error,
    },
    /// Adding or removing the finalizer failed.
    #[error("{operation} the finalizer of Vault {name}: {source}")]
    Finalizer {
        /// Adding or removing.
        operation: &'static str,
        /// The `Vault`.
        name: String,
        /// The cause.
        source: kube::Error,
    },
}

impl ReconcileError {
    /// A short label of the failed step, for the errors metric.
    pub fn metric_label(&self) -> &'static str {
        match self {
            ReconcileError::Build(_) => "build",
            ReconcileError::Apply(_) => "apply",
            ReconcileError::Status(_) => "status",
            ReconcileError::Certificates(_) => "certificates",
            ReconcileError::Pods { .. } => "pods",
            ReconcileError::Finalizer { .. } => "finalizer",
        }
    }
}

/// Reconciles one `Vault`, under a span naming it.
pub async fn reconcile(
    object: Arc<DeserializeGuard<Vault>>,
    ctx: Arc<Context>,
) -> Result<Action, ReconcileError> {
    let meta = match &object.0 {
        Ok(vault) => vault.metadata.clone(),
        Err(invalid) => invalid.metadata.clone(),
    };
    let span = info_span!(
        "reconcile",
        vault = %meta.name.clone().unwrap_or_default(),
        namespace = %meta.namespace.clone().unwrap_or_default(),
    );
    let started = Instant::now();
    let result = reconcile_inner(&object, &ctx).instrument(span).await;
    ctx.metrics
        .observe(started.elapsed(), result.as_ref().err());
    result
}

async fn reconcile_inner(
    object: &DeserializeGuard<Vault>,
    ctx: &Context,
) -> Result<Action, ReconcileError> {
    let vault = match &object.0 {
        Ok(vault) => vault,
        Err(invalid) => {
            // Retrying cannot help: only a change of the resource can, and that is a new
            // watch event.
            warn!(error = %invalid.error, "the resource does not deserialise; not acting on it");
            report_undeserialisable(ctx, invalid).await;
            return Ok(Action::await_change());
        }
    };

    if vault.metadata.deletion_timestamp.is_some() {
        ctx.identity_memory
            .forget(&identity_step::memory_key(vault));
        remove_cluster_objects(ctx, vault).await?;
        return Ok(Action::await_change());
    }

    let defaulted = vault_api::default(vault);
    if let Err(problems) = vault_api::validate(&defaulted, None) {
        let message = problems
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; ");
        warn!(%message, "the resource is invalid; not acting on it");
        ctx.publish(vault, EventType::Warning, "Invalid", message.clone())
            .await;
        let invalid = ConditionUpdate {
            type_: READY,
            status: false,
            reason: "Invalid",
            message: &message,
            generation: vault.metadata.generation,
        };
        write_status(&ctx.client, vault, |status| set(status, invalid)).await?;
        return Ok(Action::await_change());
    }

    let mut desired = build::build(&defaulted, &ctx.options.build)?;
    if desired.auth_delegator.is_some() || certificates::has_ca_copies(&defaulted) {
        ensure_finalizer(ctx, vault).await?;
    }
    // Before the StatefulSet, so that new pods start with their certificate.
    let trust = ensure_certificates(ctx, &defaulted, &mut desired).await?;
    apply_all(ctx, &defaulted, &desired).await?;
    debug!("applied every object");

    let (observed, configured) = vault_step::operate(ctx, &defaulted, &desired, &trust)
        .await
        .map_err(|source| ReconcileError::Pods {
            name: vault.name_any(),
            source,
        })?;

    let steps = status::Steps {
        vault: &observed,
        config: &configured,
        trust: &trust,
    };
    status::write_workload_status(ctx, vault, &desired, steps).await?;
    Ok(next_pass(ctx, &defaulted, &observed, &configured))
}

/// When to look at the `Vault` again, besides watch events.
fn next_pass(
    ctx: &Context,
    vault: &Vault,
    observed: &VaultObservation,
    configured: &ConfigObservation,
) -> Action {
    if !observed.settled(vault.spec.config.is_raft()) {
        return Action::requeue(vault_step::NOT_CONVERGED_REQUEUE);
    }
    if configured.failed() {
        return Action::requeue(config_step::RETRY_FAILED);
    }
    if vault.spec.external_config.is_empty() {
        return Action::requeue(ctx.options.requeue);
    }
    Action::requeue(ctx.options.requeue.min(ctx.options.config_period))
}

fn set(status: &mut VaultStatus, update: ConditionUpdate<'_>) {
    let now =
        k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(k8s_openapi::jiff::Timestamp::now());
    status.set_condition(update, now);
}

async fn report_undeserialisable(
    ctx: &Context,
    invalid: &kube::core::error_boundary::InvalidObject,
) {
    let reference = k8s_openapi::api::core::v1::ObjectReference {
        api_version: Some(Vault::api_version(&()).to_string()),
        kind: Some(Vault::kind(&()).to_string()),
        name: invalid.metadata.name.clone(),
        namespace: invalid.metadata.namespace.clone(),
        uid: invalid.metadata.uid.clone(),
        ..Default::default()
    };
    let event = apply::event(
        EventType::Warning,
        "Undeserialisable",
        format!(
            "the resource does not match the Vault schema: {}",
            invalid.error
        ),
    );
    if let Err(error) = ctx.recorder.publish(&event, &reference).await {
        warn!(%error, "recording an Event failed");
    }
}

async fn ensure_finalizer(ctx: &Context, vault: &Vault) -> Result<(), ReconcileError> {
    if vault.finalizers().iter().any(|f| f == FINALIZER) {
        return Ok(());
    }
    let mut finalizers = vault.finalizers().to_vec();
    finalizers.push(FINALIZER.to_string());
    patch_finalizers(ctx, vault, finalizers, "adding").await
}

async fn patch_finalizers(
    ctx: &Context,
    vault: &Vault,
    finalizers: Vec<String>,
    operation: &'static str,
) -> Result<(), ReconcileError> {
    let api: Api<Vault> =
        Api::namespaced(ctx.client.clone(), &vault.namespace().unwrap_or_default());
    // The resource version makes this a compare-and-swap with other finalizer owners;
    // a conflict (our cache was behind) is retried at once by the error policy.
    let patch = serde_json::json!({"metadata": {
        "finalizers": finalizers,
        "resourceVersion": vault.resource_version(),
    }});
    api.patch(
        &vault.name_any(),
        &PatchParams::default(),
        &Patch::Merge(&patch),
    )
    .await
    .map(drop)
    .map_err(|source| ReconcileError::Finalizer {
        operation,
        name: vault.name_any(),
        source,
    })
}

/// On deletion: removes the cluster-scoped objects and the CA's copies, then lets the
/// deletion finish. The namespaced ones go with the garbage collector; the unseal keys and
/// claims stay.
async fn remove_cluster_objects(ctx: &Context, vault: &Vault) -> Result<(), ReconcileError> {
    if !vault.finalizers().iter().any(|f| f == FINALIZER) {
        return Ok(());
    }
    let namespace = vault.namespace().unwrap_or_default();
    let name = build::auth_delegator_name(&namespace, &vault.name_any());
    let bindings: Api<ClusterRoleBinding> = Api::all(ctx.client.clone());
    match bindings.delete(&name, &Default::default()).await {
        Ok(_) => info!(binding = %name, "removed the auth-delegator binding"),
        Err(kube::Error::Api(status)) if status.code == 404 => {}
        Err(source) => {
            return Err(ApplyError::Delete {
                kind: "ClusterRoleBinding",
                name,
                source,
            }
            .into());
        }
    }
    certificates::remove_ca_copies(ctx, vault).await?;
    let finalizers = vault
        .finalizers()
        .iter()
        .filter(|f| *f != FINALIZER)
        .cloned()
        .collect();
    patch_finalizers(ctx, vault, finalizers, "removing").await
}

fn error_policy(
    _object: Arc<DeserializeGuard<Vault>>,
    error: &ReconcileError,
    _ctx: Arc<Context>,
) -> Action {
    let conflict = matches!(
        error,
        ReconcileError::Finalizer { source: kube::Error::Api(status), .. } if status.code == 409
    );
    if conflict {
        // Our copy was older than the server's: the next try reads the newer one.
        debug!(%error, "conflict; retrying at once");
        return Action::requeue(Duration::from_millis(500));
    }
    warn!(%error, "reconcile failed; retrying");
    Action::requeue(Duration::from_secs(10))
}

/// Watches of the children, by label only, so the caches hold the Vault objects and not
/// every Secret or Service of the cluster.
fn child_watch() -> watcher::Config {
    watcher::Config::default().labels(&format!("{}=vault", vault_api::defaults::APP_LABEL))
}

/// Runs the controller until `shutdown` completes, over the namespaces of `options`.
pub async fn run<F>(client: Client, options: ControllerOptions, shutdown: F)
where
    F: std::future::Future<Output = ()> + Clone + Send + Sync + 'static,
{
    let metrics = Arc::new(Metrics::default());
    run_with_metrics(client, options, metrics, shutdown).await;
}

/// [`run`], counting into `metrics` (which `/metrics` serves).
pub async fn run_with_metrics<F>(
    client: Client,
    options: ControllerOptions,
    metrics: Arc<Metrics>,
    shutdown: F,
) where
    F: std::future::Future<Output = ()> + Clone + Send + Sync + 'static,
{
    let reporter = Reporter {
        controller: build::FIELD_MANAGER.to_string(),
        instance: std::env::var("POD_NAME").ok(),
    };
    let ctx = Arc::new(Context {
        client: client.clone(),
        options: options.clone(),
        recorder: Recorder::new(client.clone(), reporter),
        metrics,
        config_memory: ConfigMemory::default(),
        identity_memory: identity_step::IdentityMemory::default(),
        key_stores: vault_step::KeyStoreCache::default(),
    });

    let scopes: Vec<Option<String>> = if options.namespaces.is_empty() {
        vec![None]
    } else {
        options.namespaces.iter().cloned().map(Some).collect()
    };
    let controllers = scopes.into_iter().map(|namespace| {
        let ctx = ctx.clone();
        let client = client.clone();
        let shutdown = shutdown.clone();
        async move {
            info!(
                namespace = namespace.as_deref().unwrap_or("*"),
                "watching Vaults"
            );
            controller(client, namespace.as_deref())
                .graceful_shutdown_on(shutdown)
                .run(reconcile, error_policy, ctx)
                .for_each(|result| async move {
                    if let Err(error) = result {
                        debug!(%error, "controller event");
                    }
                })
                .await;
        }
    });
    futures::future::join_all(controllers).await;
}

fn api<K>(client: &Client, namespace: Option<&str>) -> Api<K>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
{
    match namespace {
        Some(namespace) => Api::namespaced(client.clone(), namespace),
        None => Api::all(client.clone()),
    }
}

fn controller(client: Client, namespace: Option<&str>) -> Controller<DeserializeGuard<Vault>> {
    let vaults: Api<DeserializeGuard<Vault>> = api(&client, namespace);
    Controller::new(vaults, watcher::Config::default())
        .owns(api::<StatefulSet>(&client, namespace), child_watch())
        .owns(api::<Service>(&client, namespace), child_watch())
        .owns(api::<Secret>(&client, namespace), child_watch())
        .owns(
            api::<PodDisruptionBudget>(&client, namespace),
            child_watch(),
        )
        .owns(api::<Ingress>(&client, namespace), child_watch())
        // Pods belong to the StatefulSet, not the Vault: map them back by their label, so a
        // restarted (sealed) pod is unsealed within seconds.
        .watches(api::<Pod>(&client, namespace), child_watch(), vault_of_pod)
}

fn vault_of_pod(pod: Pod) -> Option<ObjectRef<DeserializeGuard<Vault>>> {
    let name = pod.labels().get(vault_api::defaults::CR_LABEL)?;
    Some(ObjectRef::new(name).within(&pod.namespace()?))
}
