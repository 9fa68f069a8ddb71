//! The Vault step: initialise Vault, keep its keys, unseal every pod and join Raft peers,
//! talking to each running pod at its own address, then report what the pods say.
//!
//! The step needs to reach pod addresses, which a controller inside the cluster can and one
//! on a laptop or a CI host usually cannot (a pod address there would be sent to the default
//! route). [`ControllerOptions::operate_vault`](super::ControllerOptions) switches it off.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod, Secret as KubeSecret};
use kube::api::{DeleteParams, ListParams, Patch, PatchParams};
use kube::runtime::events::EventType;
use kube::{Api, ResourceExt};
use tracing::{info, warn};
use vault_api::Vault;
use vault_api::defaults::{APP_LABEL, CR_LABEL};
use vault_api::status::{ConditionUpdate, INITIALIZED, UNSEALED, VaultStatus};
use vault_api::unseal::{KeyStoreKind, UnsealConfig};

use super::config_step::{self, ConfigObservation};
use super::{Context, Trust, identity_step};
use crate::Secret;
use crate::build::{ACTIVE_LABEL, Desired, VAULT_CONTAINER};
use crate::keystore::{KeyStore, SecretKeyStore, SecretLocation};
use crate::unseal::{self, Cluster, Report, UnsealError, UnsealOptions};
use crate::vault::{PodEndpoint, VaultPodClient};

/// How long one call to a pod may take (initialisation has a longer limit of its own).
/// Short: a silent pod must not hold up the pass for long.
const POD_TIMEOUT: Duration = Duration::from_secs(10);

/// The reason of a pass that found the pods not answering yet, which passes by itself.
const WAITING_FOR_VAULT: &str = "WaitingForVault";

/// How soon a cluster that is not unsealed yet is looked at again, besides pod events.
pub const NOT_CONVERGED_REQUEUE: Duration = Duration::from_secs(5);

/// What the Vault step saw, for the status.
#[derive(Debug, Default)]
pub enum VaultObservation {
    /// The step is switched off: only the Kubernetes objects are managed.
    #[default]
    Skipped,
    /// No pod runs yet, or not the one that initialises Vault.
    NoPods,
    /// The step could not act; the reason is a condition reason, the message says what to
    /// do. Neither holds a key.
    Blocked {
        /// The condition reason, such as `KeyStoreUnusable`.
        reason: &'static str,
        /// What is wrong and what fixes it.
        message: String,
    },
    /// One pass ran.
    Observed(Report),
}

impl VaultObservation {
    /// Whether the cluster needs no more work now: every pod unsealed, a leader elected,
    /// every Raft peer a voter.
    pub fn settled(&self, raft: bool) -> bool {
        match self {
            Self::Skipped => true,
            // Pods still starting pass by themselves: look again within seconds. The other
            // reasons wait for a change that a person makes, which is a watch event.
            Self::Blocked { reason, .. } => *reason != WAITING_FOR_VAULT,
            Self::NoPods => false,
            // A new peer votes only once autopilot promotes it, seconds later: look again
            // soon, so the status does not show it as a non-voter until the next resync.
            Self::Observed(report) => {
                report.converged(raft) && report.pods.iter().all(|pod| pod.voter != Some(false))
            }
        }
    }

    /// Writes the Initialized and Unsealed conditions, the pods and the leader into
    /// `status`.
    pub fn apply_to(&self, status: &mut VaultStatus, vault: &Vault) {
        let now = k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            k8s_openapi::jiff::Timestamp::now(),
        );
        let generation = vault.metadata.generation;
        let was_initialised = status.is_true(INITIALIZED);
        let mut set = |type_, ok, reason, message: &str| {
            let update = ConditionUpdate {
                type_,
                status: ok,
                reason,
                message,
                generation,
            };
            status.set_condition(update, now.clone());
        };
        match self {
            Self::Skipped => {}
            Self::NoPods => set(
                UNSEALED,
                false,
                "NoPods",
                "waiting for the Vault pods to run",
            ),
            Self::Blocked { reason, message } => {
                // A pass that stops short, as when every pod restarts at once, says
                // nothing new about initialisation; and once it is known, the next pass
                // must not wait for pod 0 to run before unsealing the others.
                if !was_initialised {
                    set(INITIALIZED, false, reason, message);
                }
                set(UNSEALED, false, reason, message);
            }
            Self::Observed(report) => {
                if !report.reset_required.is_empty() {
                    let message = format!(
                        "an interrupted initialisation left {} without keys; resetting \
                         their storage",
                        report.reset_required.join(", ")
                    );
                    set(INITIALIZED, false, "ResettingStorage", &message);
                } else if report.initialized {
                    set(INITIALIZED, true, "Initialized", "Vault is initialised");
                }
                let total = report.pods.len();
                let sealed = report.sealed();
                let message = format!("{} of {total} pods unsealed", total - sealed);
                let reason = if sealed == 0 { "Unsealed" } else { "Sealed" };
                set(UNSEALED, sealed == 0 && total > 0, reason, &message);

                status.pods = report.pods.clone();
                status.sealed_pods = i32::try_from(sealed).ok();
                status.leader = report.leader.clone().unwrap_or_default();
                // Kept from earlier passes while no pod of the spec's image answers.
                if let Some(flavor) = report.flavors.values().next() {
                    status.flavor = Some(*flavor);
                    status.flavor_image = vault.spec.image.clone();
                }
            }
        }
    }
}

/// Runs one pass of the Vault step over the pods of `vault` (defaulted and valid).
pub async fn operate(
    ctx: &Context,
    vault: &Vault,
    desired: &Desired,
    trust: &Trust,
) -> Result<(VaultObservation, ConfigObservation), kube::Error> {
    let observed = unseal_pass(ctx, vault, desired, trust).await?;
    Ok((observed.0, observed.1.unwrap_or_default()))
}

/// The unseal pass, and the configuration pass when Vault is ready for one.
async fn unseal_pass(
    ctx: &Context,
    vault: &Vault,
    desired: &Desired,
    trust: &Trust,
) -> Result<(VaultObservation, Option<ConfigObservation>), kube::Error> {
    let blocked = |reason, message| Ok((VaultObservation::Blocked { reason, message }, None));
    if !ctx.options.operate_vault {
        return Ok((VaultObservation::Skipped, None));
    }
    let name = vault.name_any();
    let namespace = vault.namespace().unwrap_or_default();

    let store = match cached_key_store(ctx, vault).await {
        Ok(store) => store,
        Err(message) => return blocked("KeyStoreUnusable", message),
    };

    let pods = running_pods(ctx, &namespace, &name).await?;
    if pods.is_empty() {
        return Ok((VaultObservation::NoPods, None));
    }
    // Only pod 0 is ever initialised (two pods initialised apart would hold different
    // keys), so until Vault is known to be initialised the pass waits for it to run.
    let first = format!("{name}-0");
    let initialised = vault
        .status
        .as_ref()
        .is_some_and(|status| status.is_true(INITIALIZED));
    if !initialised && pods.first().is_none_or(|pod| pod.name != first) {
        return Ok((VaultObservation::NoPods, None));
    }
    let port = u16::try_from(vault.spec.api_port()).unwrap_or(8200);
    let mut clients = Vec::with_capacity(pods.len());
    for pod in &pods {
        let endpoint = PodEndpoint {
            pod: pod.name.clone(),
            address: SocketAddr::new(pod.ip, port),
            // The per-pod Service shares the pod's name; the certificate names it.
            server_name: format!("{}.{namespace}.svc", pod.name),
        };
        match VaultPodClient::with_trust(endpoint, trust, POD_TIMEOUT) {
            Ok(client) => clients.push(client),
            Err(error) => return blocked("TlsUnusable", error.to_string()),
        }
    }
    let options = UnsealOptions::for_vault(vault);
    if !initialised && let Some(message) = identity_step::cannot_initialise(ctx, &options) {
        return blocked("IdentityUnavailable", message);
    }
    let cluster = Cluster {
        name: name.clone(),
        pods: clients,
        raft: vault.spec.config.is_raft(),
        ca_pem: match trust {
            Trust::Ca(pem) => pem.clone(),
            Trust::Plain | Trust::SystemRoots => String::new(),
        },
        // Without one, the stored root token reads the Raft configuration.
        token: ctx
            .identity_memory
            .reading_token(&identity_step::memory_key(vault)),
    };

    match unseal::reconcile(&cluster, store.as_ref(), &options).await {
        Ok(mut report) => {
            // Mid-rollout, pods of the earlier image may run the other server.
            let image = vault.spec.image.as_deref();
            report.flavors.retain(|pod, _| {
                pods.iter()
                    .any(|running| &running.name == pod && running.image.as_deref() == image)
            });
            publish_actions(ctx, vault, &report).await;
            let token = identity_step::operator_token(
                ctx,
                vault,
                &cluster,
                store.as_ref(),
                &options,
                &mut report,
            )
            .await;
            if cluster.raft
                && let Some(token) = token.token()
            {
                remove_departed_peers(ctx, vault, &cluster, token, &report).await;
            }
            if !report.reset_required.is_empty() {
                reset_storage(ctx, vault, desired, &report.reset_required).await?;
            }
            label_active_pod(ctx, vault, &pods, report.leader.as_deref()).await?;
            let configured =
                config_step::configure(ctx, vault, &cluster, store.as_ref(), &token, &report).await;
            Ok((VaultObservation::Observed(report), Some(configured)))
        }
        Err(error) => {
            let (reason, transient) = classify(&error);
            if matches!(
                error,
                UnsealError::Store { .. } | UnsealError::KeyShare { .. }
            ) {
                // A store with a dead session or an expired login is made again.
                ctx.key_stores.forget(&identity_step::memory_key(vault));
            }
            // The message names pods, stores and steps; UnsealError never holds a key.
            let message = error.to_string();
            if transient {
                info!(%message, "Vault step not finished; trying again");
            } else {
                warn!(%message, "Vault step blocked");
                ctx.publish(vault, EventType::Warning, reason, message.clone())
                    .await;
            }
            blocked(reason, message)
        }
    }
}

/// The key stores made for each `Vault`, kept between passes: a store may log in (to
/// another Vault) or fetch an OAuth token, which each pass would do again, leaving a token
/// behind each time. A changed `unsealConfig` makes a new one, and so does a failed pass.
#[derive(Default)]
pub struct KeyStoreCache {
    stores: Mutex<HashMap<String, KeptStore>>,
}

/// A store, and the `unsealConfig` (as JSON) it was made from.
type KeptStore = (String, Arc<dyn KeyStore>);

impl KeyStoreCache {
    fn get(&self, key: &str, settings: &str) -> Option<Arc<dyn KeyStore>> {
        let stores = self.stores.lock().unwrap_or_else(PoisonError::into_inner);
        let (kept_for, store) = stores.get(key)?;
        (kept_for == settings).then(|| store.clone())
    }

    fn keep(&self, key: String, settings: String, store: Arc<dyn KeyStore>) {
        let mut stores = self.stores.lock().unwrap_or_else(PoisonError::into_inner);
        stores.insert(key, (settings, store));
    }

    /// Drops the store of `key`: its `Vault` is gone, or the store failed.
    pub fn forget(&self, key: &str) {
        let mut stores = self.stores.lock().unwrap_or_else(PoisonError::into_inner);
        stores.remove(key);
    }
}

/// The key store of `vault`, from the cache or made anew.
async fn cached_key_store(ctx: &Context, vault: &Vault) -> Result<Arc<dyn KeyStore>, String> {
    let key = identity_step::memory_key(vault);
    let settings = serde_json::to_string(&vault.spec.unseal_config).unwrap_or_default();
    if let Some(store) = ctx.key_stores.get(&key, &settings) {
        return Ok(store);
    }
    let store: Arc<dyn KeyStore> = Arc::from(key_store(ctx, vault).await?);
    ctx.key_stores.keep(key, settings, store.clone());
    Ok(store)
}

/// The key store `unsealConfig` names, or what is wrong with it. Cloud stores take their
/// credentials and endpoints from the controller's environment, the usual way for each
/// cloud, or their credentials from the file `credentialsConfig` names: an AWS shared
/// credentials file, a Google service account key or an Azure SDK auth file.
async fn key_store(ctx: &Context, vault: &Vault) -> Result<Box<dyn KeyStore>, String> {
    use vault_keystore::{
        AzureConfig, AzureCredentials, AzureKeyVaultStore, GcsKeyStore, GoogleConfig,
        GoogleCredentials, OciBucketKeyStore, OssKeyStore, Pkcs11KeyStore, S3KeyStore,
        VaultKvKeyStore,
    };

    let unseal = vault.spec.unseal_config.clone().unwrap_or_default();
    let kind = unseal
        .key_store()
        .ok_or("unsealConfig: name exactly one key store (or hsm with kubernetes)")?;
    let secret = || -> Result<SecretKeyStore, String> {
        let location = SecretLocation::for_vault(vault)
            .ok_or("the resource has no name or namespace".to_string())?;
        Ok(SecretKeyStore::new(ctx.client.clone(), location))
    };
    let failed = |error: &dyn std::fmt::Display| format!("unsealConfig.{kind}: {error}");
    let store: Box<dyn KeyStore> = match (kind, &unseal) {
        (KeyStoreKind::Kubernetes, _) => Box::new(secret()?),
        (
            KeyStoreKind::Aws,
            UnsealConfig {
                aws: Some(spec), ..
            },
        ) => {
            let file = credentials(ctx, vault).await?.map(|(_, content)| content);
            let store = S3KeyStore::with_credentials_file(spec, file.as_ref()).await;
            Box::new(store.map_err(|e| failed(&e))?)
        }
        (
            KeyStoreKind::Vault,
            UnsealConfig {
                vault: Some(spec), ..
            },
        ) => Box::new(VaultKvKeyStore::from_spec(spec).map_err(|e| failed(&e))?),
        (
            KeyStoreKind::Alibaba,
            UnsealConfig {
                alibaba: Some(spec),
                ..
            },
        ) => Box::new(OssKeyStore::from_spec(spec).map_err(|e| failed(&e))?),
        (
            KeyStoreKind::Oci,
            UnsealConfig {
                oci: Some(spec), ..
            },
        ) => Box::new(OciBucketKeyStore::from_spec(spec).map_err(|e| failed(&e))?),
        (
            KeyStoreKind::Hsm,
            UnsealConfig {
                hsm: Some(spec),
                kubernetes,
                ..
            },
        ) => {
            if kubernetes.is_some() {
                let inner = Box::new(secret()?);
                let store = Pkcs11KeyStore::encrypting(spec, inner).await;
                Box::new(store.map_err(|e| failed(&e))?)
            } else {
                Box::new(
                    Pkcs11KeyStore::from_spec(spec)
                        .await
                        .map_err(|e| failed(&e))?,
                )
            }
        }
        (
            KeyStoreKind::Google,
            UnsealConfig {
                google: Some(spec), ..
            },
        ) => {
            let mut config = GoogleConfig::from_env().await.map_err(|e| failed(&e))?;
            if let Some((source, content)) = credentials(ctx, vault).await? {
                let key = service_account(&source, &content)?;
                config.credentials = GoogleCredentials::ServiceAccount(key);
            }
            Box::new(GcsKeyStore::new(spec, config).map_err(|e| failed(&e))?)
        }
        (
            KeyStoreKind::Azure,
            UnsealConfig {
                azure: Some(spec), ..
            },
        ) => {
            let mut config = AzureConfig::from_env().map_err(|e| failed(&e))?;
            if let Some((source, content)) = credentials(ctx, vault).await? {
                config.credentials =
                    AzureCredentials::from_auth_file(content.expose().as_bytes(), &source)
                        .map_err(|e| failed(&e))?;
            }
            Box::new(AzureKeyVaultStore::new(spec, config).map_err(|e| failed(&e))?)
        }
        (other, _) => return Err(format!("unsealConfig.{other}: the store has no settings")),
    };
    Ok(store)
}

/// The file `credentialsConfig` names, read from its Secret in the `Vault`'s namespace (see
/// [`credentials_file`]). `None` when `credentialsConfig` names no Secret: the controller's
/// own environment then decides.
async fn credentials(ctx: &Context, vault: &Vault) -> Result<Option<(String, Secret)>, String> {
    let Some(config) = &vault.spec.credentials_config else {
        return Ok(None);
    };
    let Some(name) = config
        .secret_name
        .as_deref()
        .filter(|name| !name.is_empty())
    else {
        return Ok(None);
    };
    let namespace = vault.namespace().unwrap_or_default();
    let secrets: Api<KubeSecret> = Api::namespaced(ctx.client.clone(), &namespace);
    let secret = secrets
        .get_opt(name)
        .await
        .map_err(|error| format!("credentialsConfig: reading Secret {namespace}/{name}: {error}"))?
        .ok_or_else(|| format!("credentialsConfig: Secret {namespace}/{name} does not exist"))?;
    credentials_file(&secret, config.path.as_deref()).map(Some)
}

/// The credentials file in `secret` mounted at `path`, as Bank-Vaults mounts it into its
/// unsealer: the Secret's key named as the file of `path`, or its only key. Returns where
/// it was found, for messages, and its content, which messages never quote.
fn credentials_file(secret: &KubeSecret, path: Option<&str>) -> Result<(String, Secret), String> {
    let name = secret.name_any();
    let data = secret.data.clone().unwrap_or_default();
    let file = path
        .and_then(|path| path.rsplit('/').next())
        .filter(|file| !file.is_empty());
    let (key, bytes) = match file {
        Some(file) => (file.to_string(), data.get(file)),
        None if data.len() == 1 => match data.iter().next() {
            Some((key, bytes)) => (key.clone(), Some(bytes)),
            None => (String::new(), None),
        },
        None => (String::new(), None),
    };
    let bytes = bytes.ok_or_else(|| {
        format!(
            "credentialsConfig: Secret {name} has no key {key:?}: name the file in \
             credentialsConfig.path"
        )
    })?;
    let source = format!("credentialsConfig: Secret {name} key {key}");
    let content =
        Secret::from_bytes(bytes.0.clone()).ok_or_else(|| format!("{source}: not text"))?;
    Ok((source, content))
}

/// The Google service account key in a credentials file's `content`, found at `source`.
fn service_account(
    source: &str,
    content: &Secret,
) -> Result<vault_keystore::ServiceAccountKey, String> {
    let failed = |reason: String| format!("{source}: {reason}");
    let account: vault_keystore::ServiceAccountKey = serde_json::from_str(content.expose())
        .map_err(|error| failed(vault_keystore::json_error(&error)))?;
    if account.kind != "service_account" {
        return Err(failed(format!(
            "credentials of type {:?}; only service_account keys are supported",
            account.kind
        )));
    }
    Ok(account)
}

/// A Vault pod whose container runs.
struct RunningPod {
    name: String,
    ip: IpAddr,
    /// Its `vault-active` label, which the main Service selects with service registration.
    active: Option<String>,
    /// The image of its Vault container.
    image: Option<String>,
}

/// The pods of `name` whose Vault container runs, with their addresses, in ordinal order.
async fn running_pods(
    ctx: &Context,
    namespace: &str,
    name: &str,
) -> Result<Vec<RunningPod>, kube::Error> {
    let api: Api<Pod> = Api::namespaced(ctx.client.clone(), namespace);
    let selector = format!("{APP_LABEL}=vault,{CR_LABEL}={name}");
    let listed = api.list(&ListParams::default().labels(&selector)).await?;
    let mut pods: Vec<(u32, RunningPod)> = listed
        .items
        .iter()
        .filter(|pod| pod.metadata.deletion_timestamp.is_none())
        .filter(|pod| vault_container_running(pod))
        .filter_map(|pod| {
            let name = pod.name_any();
            let ordinal = name.rsplit('-').next()?.parse().ok()?;
            let ip = pod.status.as_ref()?.pod_ip.as_deref()?.parse().ok()?;
            let active = pod.labels().get(ACTIVE_LABEL).cloned();
            let image = (pod.spec.as_ref()?.containers.iter())
                .find(|container| container.name == VAULT_CONTAINER)
                .and_then(|container| container.image.clone());
            let pod = RunningPod {
                name,
                ip,
                active,
                image,
            };
            Some((ordinal, pod))
        })
        .collect();
    pods.sort_by_key(|(ordinal, _)| *ordinal);
    Ok(pods.into_iter().map(|(_, pod)| pod).collect())
}

/// With service registration, the main Service selects `vault-active=true`. HashiCorp
/// Vault labels its pods so; OpenBao writes `openbao-active` instead, which would leave the
/// Service without endpoints. The controller, which knows the leader, keeps the label.
async fn label_active_pod(
    ctx: &Context,
    vault: &Vault,
    pods: &[RunningPod],
    leader: Option<&str>,
) -> Result<(), kube::Error> {
    let Some(leader) = leader else {
        return Ok(());
    };
    if vault.spec.service_registration_enabled != Some(true) {
        return Ok(());
    }
    let api: Api<Pod> = Api::namespaced(ctx.client.clone(), &vault.namespace().unwrap_or_default());
    for pod in pods {
        let wanted = if pod.name == leader { "true" } else { "false" };
        if pod.active.as_deref() == Some(wanted) {
            continue;
        }
        let patch = serde_json::json!({"metadata": {"labels": {ACTIVE_LABEL: wanted}}});
        ignore_missing(api.patch(&pod.name, &PatchParams::default(), &Patch::Merge(&patch)))
            .await?;
    }
    Ok(())
}

fn vault_container_running(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|status| status.container_statuses.as_ref())
        .into_iter()
        .flatten()
        .any(|container| {
            container.name == VAULT_CONTAINER
                && container
                    .state
                    .as_ref()
                    .is_some_and(|state| state.running.is_some())
        })
}

/// A condition reason for `error`, and whether it is the kind that passes by itself (a pod
/// still starting) rather than one a person must act on.
fn classify(error: &UnsealError) -> (&'static str, bool) {
    match error {
        UnsealError::Vault(_)
        | UnsealError::NoPodAnswered { .. }
        | UnsealError::FirstPodSilent { .. }
        | UnsealError::Timeout { .. } => (WAITING_FOR_VAULT, true),
        UnsealError::InitializedElsewhere { .. } => ("InitializedElsewhere", false),
        UnsealError::KeysExist { .. } => ("KeysExist", false),
        UnsealError::KeysMissing { .. } | UnsealError::NotEnoughKeys { .. } => {
            ("KeysMissing", false)
        }
        UnsealError::PreFlight { .. } => ("KeyStorePreFlightFailed", false),
        UnsealError::Store { .. } | UnsealError::KeyShare { .. } => ("KeyStoreFailed", false),
        UnsealError::BadMarker { .. } => ("BadInitMarker", false),
        UnsealError::ShortInit { .. } => ("InitFailed", false),
    }
}

/// Takes out of Raft the peers whose pods a scale-down removed: a departed voter still
/// counts towards the quorum, so two of them in a five-peer cluster scaled to three would
/// leave it one failure from losing its leader.
async fn remove_departed_peers(
    ctx: &Context,
    vault: &Vault,
    cluster: &Cluster,
    token: &Secret,
    report: &Report,
) {
    let (Some(config), Some(leader)) = (&report.raft, &report.leader) else {
        return;
    };
    let size = u32::try_from(vault.spec.size.unwrap_or(vault_api::defaults::SIZE)).unwrap_or(1);
    let departed: Vec<(&str, u32)> = config
        .servers
        .iter()
        .filter_map(|server| {
            let ordinal = server.ordinal_in(&cluster.name)?;
            (ordinal >= size).then_some((server.node_id.as_str(), ordinal))
        })
        .collect();
    if departed.is_empty() {
        return;
    }
    let Some(client) = cluster.pods.iter().find(|pod| pod.pod() == leader) else {
        return;
    };
    for (node_id, ordinal) in departed {
        match client.raft_remove_peer(token, node_id).await {
            Ok(()) => {
                let note = format!(
                    "removed Raft peer {node_id}: pod {}-{ordinal} is beyond size {size}",
                    cluster.name
                );
                info!(%note);
                ctx.publish(vault, EventType::Normal, "RemovedRaftPeer", note)
                    .await;
            }
            Err(error) => warn!(%error, node_id, "removing a departed Raft peer"),
        }
    }
}

/// One Event per kind of thing this pass did, naming the pods.
async fn publish_actions(ctx: &Context, vault: &Vault, report: &Report) {
    for (verb, reason) in [
        ("initialised", "Initialized"),
        ("unsealed", "Unsealed"),
        ("joined", "JoinedRaft"),
    ] {
        let done: Vec<&str> = report
            .actions
            .iter()
            .filter_map(|action| action.strip_prefix(verb))
            .map(str::trim)
            .collect();
        if !done.is_empty() {
            let note = format!("{verb} {}", done.join(", "));
            info!(%note, "Vault step");
            ctx.publish(vault, EventType::Normal, reason, note).await;
        }
    }
}

/// Wipes the storage of pods that an interrupted initialisation left initialised without
/// keys: they hold no data and can never be unsealed. Their claims are deleted first, then
/// the pods, so the StatefulSet makes them again on fresh claims.
async fn reset_storage(
    ctx: &Context,
    vault: &Vault,
    desired: &Desired,
    pods: &[String],
) -> Result<(), kube::Error> {
    let namespace = vault.namespace().unwrap_or_default();
    let templates: Vec<String> = desired
        .stateful_set
        .spec
        .volume_claim_templates
        .as_ref()
        .into_iter()
        .flatten()
        .filter_map(|template| template.metadata.name.clone())
        .collect();
    if templates.is_empty() {
        let note = format!(
            "an initialisation was interrupted before its keys were stored, and {} keep \
             their storage outside a claim of the StatefulSet: empty it by hand, then \
             delete those pods",
            pods.join(", ")
        );
        warn!(%note);
        ctx.publish(vault, EventType::Warning, "ResetNeeded", note)
            .await;
        return Ok(());
    }
    let note = format!(
        "an initialisation was interrupted before its keys were stored; resetting the \
         storage of {} (no data can be on it) and initialising again",
        pods.join(", ")
    );
    warn!(%note);
    ctx.publish(vault, EventType::Warning, "ResettingStorage", note)
        .await;

    let claims: Api<PersistentVolumeClaim> = Api::namespaced(ctx.client.clone(), &namespace);
    let pod_api: Api<Pod> = Api::namespaced(ctx.client.clone(), &namespace);
    for pod in pods {
        for template in &templates {
            ignore_missing(claims.delete(&format!("{template}-{pod}"), &DeleteParams::default()))
                .await?;
        }
        ignore_missing(pod_api.delete(pod, &DeleteParams::default())).await?;
    }
    Ok(())
}

async fn ignore_missing<T>(
    call: impl std::future::Future<Output = Result<T, kube::Error>>,
) -> Result<(), kube::Error> {
    match call.await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
        Err(error) => Err(error),
    }
}

#[cfg(test)]
mod tests {
    use vault_api::status::{Flavor, RaftRole, VaultPodStatus};

    use super::*;

    fn pod(name: &str, sealed: bool) -> VaultPodStatus {
        VaultPodStatus {
            name: name.to_string(),
            initialized: Some(true),
            sealed: Some(sealed),
            raft_role: (!sealed).then_some(RaftRole::Follower),
            ..VaultPodStatus::default()
        }
    }

    fn vault() -> Vault {
        let mut vault = Vault::new("vault", Default::default());
        vault.metadata.generation = Some(4);
        vault
    }

    #[test]
    fn a_google_service_account_is_read_from_the_credentials_secret() {
        let service_account_in = |secret: &KubeSecret, path: Option<&str>| {
            let (source, content) = credentials_file(secret, path)?;
            service_account(&source, &content)
        };
        let key = serde_json::json!({
            "type": "service_account",
            "client_email": "unsealer@project.iam.gserviceaccount.com",
            "private_key": "-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----\n",
        });
        let secret = |file: &str, content: String| KubeSecret {
            metadata: kube::api::ObjectMeta {
                name: Some("gcp".to_string()),
                ..Default::default()
            },
            data: Some(
                [(
                    file.to_string(),
                    k8s_openapi::ByteString(content.into_bytes()),
                )]
                .into(),
            ),
            ..Default::default()
        };
        let mounted = secret("service-account.json", key.to_string());
        let path = Some("/etc/gcp/service-account.json");
        let account = service_account_in(&mounted, path);
        assert_eq!(
            account.map(|a| a.client_email),
            Ok("unsealer@project.iam.gserviceaccount.com".to_string())
        );
        assert!(service_account_in(&mounted, None).is_ok(), "its only key");

        let elsewhere = service_account_in(&mounted, Some("/etc/gcp/other.json"));
        let message = elsewhere.err().unwrap_or_default();
        assert!(message.contains("has no key \"other.json\""), "{message}");
        let user = serde_json::json!({"type": "authorized_user", "client_email": "x",
            "private_key": "hidden-value"});
        let refused = service_account_in(&secret("key.json", user.to_string()), None);
        let message = refused.err().unwrap_or_default();
        assert!(message.contains("authorized_user"), "{message}");
        assert!(!message.contains("hidden-value"), "{message}");
    }

    #[test]
    fn a_pass_writes_conditions_pods_and_leader() {
        let report = Report {
            initialized: true,
            pods: vec![
                pod("vault-0", false),
                pod("vault-1", true),
                pod("vault-2", false),
            ],
            leader: Some("vault-0".to_string()),
            flavors: [("vault-0".to_string(), Flavor::OpenBao)].into(),
            ..Report::default()
        };
        let mut status = VaultStatus::default();
        let mut vault = vault();
        vault.spec.image = Some("quay.io/openbao/openbao:2.7.2".to_string());
        VaultObservation::Observed(report).apply_to(&mut status, &vault);

        assert!(status.is_true(INITIALIZED));
        assert!(!status.is_true(UNSEALED));
        let unsealed = status.condition(UNSEALED).cloned().unwrap_or_default();
        assert_eq!(unsealed.message.as_deref(), Some("2 of 3 pods unsealed"));
        assert_eq!(unsealed.reason.as_deref(), Some("Sealed"));
        assert_eq!(unsealed.observed_generation, Some(4));
        assert_eq!(status.sealed_pods, Some(1));
        assert_eq!(status.leader, "vault-0");
        assert_eq!(status.pods.len(), 3);
        assert_eq!(status.flavor, Some(Flavor::OpenBao));
        assert_eq!(status.flavor_image, vault.spec.image);

        // A pass where no pod answered keeps what the pods said before.
        let silent = Report {
            pods: vec![pod("vault-0", true)],
            ..Report::default()
        };
        VaultObservation::Observed(silent).apply_to(&mut status, &vault);
        assert_eq!(status.flavor, Some(Flavor::OpenBao));
        assert_eq!(status.flavor_image, vault.spec.image);
    }

    #[test]
    fn every_pod_unsealed_with_a_leader_is_settled() {
        let report = Report {
            initialized: true,
            pods: vec![pod("vault-0", false)],
            leader: Some("vault-0".to_string()),
            ..Report::default()
        };
        let observed = VaultObservation::Observed(report);
        assert!(observed.settled(false));
        assert!(!observed.settled(true), "no Raft configuration read yet");
        let mut status = VaultStatus::default();
        observed.apply_to(&mut status, &vault());
        assert!(status.is_true(UNSEALED));
        assert_eq!(status.sealed_pods, Some(0));
        assert!(!VaultObservation::NoPods.settled(false));

        let mut waiting = pod("vault-0", false);
        waiting.voter = Some(false);
        let report = Report {
            initialized: true,
            pods: vec![waiting],
            leader: Some("vault-0".to_string()),
            ..Report::default()
        };
        assert!(
            !VaultObservation::Observed(report).settled(false),
            "not a voter yet"
        );
    }

    #[test]
    fn a_blocked_step_says_why_on_both_conditions_and_waits_for_a_change() {
        let blocked = VaultObservation::Blocked {
            reason: "KeyStoreUnusable",
            message: "unsealConfig.aws: not supported".to_string(),
        };
        let mut status = VaultStatus::default();
        blocked.apply_to(&mut status, &vault());
        for type_ in [INITIALIZED, UNSEALED] {
            let condition = status.condition(type_).cloned().unwrap_or_default();
            assert_eq!(condition.status, "False");
            assert_eq!(condition.reason.as_deref(), Some("KeyStoreUnusable"));
        }
        assert!(blocked.settled(false));
    }

    #[test]
    fn a_blocked_pass_keeps_initialised_once_vault_was() {
        let mut status = VaultStatus::default();
        let report = Report {
            initialized: true,
            pods: vec![pod("vault-0", false)],
            leader: Some("vault-0".to_string()),
            ..Report::default()
        };
        VaultObservation::Observed(report).apply_to(&mut status, &vault());

        // Every pod restarting at once: none answers.
        let blocked = VaultObservation::Blocked {
            reason: "WaitingForVault",
            message: "no Vault pod answered".to_string(),
        };
        blocked.apply_to(&mut status, &vault());
        assert!(status.is_true(INITIALIZED), "{:?}", status.conditions);
        let unsealed = status.condition(UNSEALED).cloned().unwrap_or_default();
        assert_eq!(unsealed.status, "False");
        assert_eq!(unsealed.reason.as_deref(), Some("WaitingForVault"));
    }

    #[test]
    fn pods_still_starting_are_transient_and_a_foreign_init_is_not() {
        let silent = UnsealError::FirstPodSilent {
            vault: "vault".into(),
            pod: "vault-0".into(),
        };
        assert_eq!(classify(&silent), ("WaitingForVault", true));
        let waiting = VaultObservation::Blocked {
            reason: classify(&silent).0,
            message: String::new(),
        };
        assert!(
            !waiting.settled(true),
            "pods still starting are looked at again soon"
        );
        let foreign = UnsealError::InitializedElsewhere {
            vault: "vault".into(),
            store: "Secret ns/vault-unseal-keys".into(),
        };
        assert_eq!(classify(&foreign), ("InitializedElsewhere", false));
    }
}
