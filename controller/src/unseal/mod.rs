//! Initialise Vault once, keep its keys, unseal every pod and join Raft peers.
//!
//! The steps are functions over the pods' clients, the key store and [`UnsealOptions`], so
//! the reconciler calls them on each pass and tests call them against real servers.
//! [`reconcile`] runs one pass of all of them; [`converge`] repeats passes until the
//! cluster is unsealed with a leader.
//!
//! ## Initialising exactly once
//! Only Vault is asked whether it is initialised. Before `sys/init` the init-intent marker
//! (`vault-init`) is written as `pending`, with the shares asked for; each key share and the
//! root token are stored the moment Vault returns them, read back, and then the marker is
//! set to `complete`. A process killed in between leaves Vault initialised and the marker
//! `pending`. Nothing unseals Vault before the marker is `complete` (the keys exist nowhere
//! else), so a cluster in that state holds no data: when the key set is complete the
//! marker is finished, and otherwise [`InitOutcome::ResetRequired`] asks the caller to wipe
//! that cluster's storage and start again. Vault initialised without a marker and without
//! keys was initialised by someone else and is never reset.

mod identity;
mod marker;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use tracing::{debug, info, warn};
use vault_api::status::{RaftRole, VaultPodStatus};
use vault_api::{Vault, VaultSpec};

pub use identity::{
    AUTH_PATH as CONTROLLER_AUTH_PATH, ControllerIdentity, DEFAULT_POLICY, IN_CLUSTER_TOKEN,
    ROLE as CONTROLLER_ROLE, ServiceAccountToken, login, refresh_controller_policy,
    revoke_root_token, setup_controller_identity,
};
pub use marker::{InitMarker, MarkerState};

use crate::Secret;
use crate::crash::{self, CrashPoint};
use crate::keystore::{
    self, INIT_MARKER, KeyStore, KeyStoreError, ROOT_TOKEN, Retry, TEST_KEY, write_verified,
};
use crate::vault::{
    Flavor, InitRequest, RaftConfiguration, SealStatus, VaultError, VaultPodClient,
};

/// What initialisation asks for, from `unsealConfig.options` and `config`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UnsealOptions {
    /// Key shares.
    pub shares: u32,
    /// Shares needed to unseal.
    pub threshold: u32,
    /// Recovery shares instead of unseal shares: `config` has an auto-unseal `seal`.
    pub recovery: bool,
    /// Write and read back a test value before initialising.
    pub pre_flight_checks: bool,
    /// Keep the root token in the key store.
    pub store_root_token: bool,
    /// Retries of each key-store write.
    pub retry: Retry,
    /// Retries of the writes of Vault's init answer, longer than `retry`: until they are
    /// stored the keys exist only in this process, and giving up loses them.
    pub retry_after_init: Retry,
}

/// Nine attempts, waits doubling from half a second: about two minutes of a key store that
/// fails, such as an API server restarting, before the keys of a fresh Vault are given up.
const RETRY_AFTER_INIT: Retry = Retry {
    attempts: 9,
    backoff: Duration::from_millis(500),
};

impl Default for UnsealOptions {
    fn default() -> Self {
        Self::for_spec(&VaultSpec::default())
    }
}

impl UnsealOptions {
    /// The options of a `Vault`, with the defaults of [`vault_api::default`] filled in.
    pub fn for_vault(vault: &Vault) -> Self {
        Self::for_spec(&vault_api::default(vault).spec)
    }

    fn for_spec(spec: &VaultSpec) -> Self {
        use vault_api::defaults::{SECRET_SHARES, SECRET_THRESHOLD};
        let options = spec
            .unseal_config
            .as_ref()
            .and_then(|unseal| unseal.options.clone())
            .unwrap_or_default();
        let count = |value: Option<i32>, default: i32| {
            u32::try_from(value.unwrap_or(default)).unwrap_or(1).max(1)
        };
        let shares = count(options.secret_shares, SECRET_SHARES);
        let threshold = count(
            options.secret_threshold,
            SECRET_THRESHOLD.min(shares as i32),
        );
        Self {
            shares,
            threshold: threshold.min(shares),
            recovery: spec.config.has_auto_unseal(),
            pre_flight_checks: options.pre_flight_checks.unwrap_or(true),
            store_root_token: options.store_root_token.unwrap_or(true),
            retry: Retry::default(),
            retry_after_init: RETRY_AFTER_INIT,
        }
    }

    /// The name of key share `index`: an unseal key, or a recovery key with auto-unseal.
    pub fn key_name(&self, index: u32) -> String {
        if self.recovery {
            keystore::recovery_key(index)
        } else {
            keystore::unseal_key(index)
        }
    }
}

/// The pods of one Vault cluster, as the controller reaches them.
#[derive(Clone, Debug)]
pub struct Cluster {
    /// The `Vault` resource's name, for logs and errors.
    pub name: String,
    /// One client per pod, in ordinal order; the first answering pod is initialised.
    pub pods: Vec<VaultPodClient>,
    /// Raft storage: pods join the first unsealed pod.
    pub raft: bool,
    /// The CA that signed the pods' certificates (PEM), sent with Raft joins.
    pub ca_pem: String,
    /// A token for the Raft configuration; when `None` the stored root token is used.
    pub token: Option<Secret>,
}

/// What [`ensure_initialized`] found or did.
#[derive(Debug)]
pub enum InitOutcome {
    /// This call initialised Vault and stored its keys. The root token is handed back for
    /// the steps that need it right after initialisation.
    Initialized {
        /// The pod that was initialised.
        pod: String,
        /// The fresh root token.
        root_token: Secret,
    },
    /// Vault was initialised and its keys are in the store.
    AlreadyInitialized,
    /// An earlier initialisation stored every key and was killed before marking itself
    /// complete; the marker is now complete.
    Resumed,
    /// Vault was initialised by an earlier run that was killed before its keys were all
    /// stored; that cluster holds no data and can never be unsealed. The caller must wipe
    /// these pods' storage (and restart them), then call again.
    ResetRequired {
        /// The pods that say they are initialised.
        pods: Vec<String>,
    },
}

/// A failed step. Messages name the Vault or pod and the operation, never a key.
#[derive(Debug, thiserror::Error)]
pub enum UnsealError {
    /// No pod answered.
    #[error("initialising Vault {vault}: no pod answered; last error: {last}")]
    NoPodAnswered {
        /// The Vault.
        vault: String,
        /// The last pod's error.
        last: String,
    },
    /// The first pod, the only one ever initialised, did not answer.
    #[error("initialising Vault {vault}: waiting for pod {pod}, the one to initialise")]
    FirstPodSilent {
        /// The Vault.
        vault: String,
        /// The first pod.
        pod: String,
    },
    /// Vault is initialised but the store has neither keys nor marker.
    #[error(
        "initialising Vault {vault}: Vault is initialised but {store} holds no keys and no \
         init-intent marker, so it was initialised by someone else; refusing to touch it"
    )]
    InitializedElsewhere {
        /// The Vault.
        vault: String,
        /// The key store.
        store: String,
    },
    /// The store holds the keys of a finished initialisation but Vault is not initialised.
    #[error(
        "initialising Vault {vault}: Vault is not initialised but {store} already holds keys \
         for it; refusing to initialise over them (move them away to start afresh)"
    )]
    KeysExist {
        /// The Vault.
        vault: String,
        /// The key store.
        store: String,
    },
    /// The store lacks keys the marker says were stored.
    #[error("initialising Vault {vault}: {store} is missing {missing} of the keys it stored")]
    KeysMissing {
        /// The Vault.
        vault: String,
        /// The key store.
        store: String,
        /// How many.
        missing: usize,
    },
    /// The pre-flight write and read failed.
    #[error("initialising Vault {vault}: pre-flight check of the key store failed: {source}")]
    PreFlight {
        /// The Vault.
        vault: String,
        /// The store error.
        #[source]
        source: KeyStoreError,
    },
    /// A key-store operation failed.
    #[error("{step} for Vault {vault}: {source}")]
    Store {
        /// The Vault.
        vault: String,
        /// The step, such as `storing the keys`.
        step: &'static str,
        /// The store error.
        #[source]
        source: KeyStoreError,
    },
    /// The init-intent marker cannot be read.
    #[error("initialising Vault {vault}: the init-intent marker in {store} is unreadable")]
    BadMarker {
        /// The Vault.
        vault: String,
        /// The key store.
        store: String,
    },
    /// Vault's answer to init lacks the shares asked for.
    #[error("initialising pod {pod}: Vault returned {got} key shares, {asked} were asked for")]
    ShortInit {
        /// The pod.
        pod: String,
        /// Shares returned.
        got: usize,
        /// Shares asked for.
        asked: u32,
    },
    /// A key share could not be read while unsealing a pod.
    #[error("unsealing pod {pod}: {source}")]
    KeyShare {
        /// The pod.
        pod: String,
        /// The store error.
        #[source]
        source: KeyStoreError,
    },
    /// Too few keys to unseal.
    #[error("unsealing pod {pod}: key store returned {found} of {needed} keys")]
    NotEnoughKeys {
        /// The pod.
        pod: String,
        /// Keys found.
        found: u32,
        /// Keys needed.
        needed: u32,
    },
    /// A call to Vault failed (the message names the pod and operation).
    #[error(transparent)]
    Vault(#[from] VaultError),
    /// The cluster did not converge in time.
    #[error("unsealing Vault {vault}: not converged after {waited:?}: {state}")]
    Timeout {
        /// The Vault.
        vault: String,
        /// How long.
        waited: Duration,
        /// What was still missing.
        state: String,
    },
}

/// What each pod says, or why it said nothing.
pub async fn observe(pods: &[VaultPodClient]) -> Vec<(String, Result<SealStatus, VaultError>)> {
    let statuses = futures::future::join_all(pods.iter().map(|pod| pod.seal_status())).await;
    pods.iter()
        .map(|pod| pod.pod().to_string())
        .zip(statuses)
        .collect()
}

/// Initialises Vault if, and only if, Vault says it is not initialised; see the module
/// documentation for how an interrupted initialisation is told apart and finished.
pub async fn ensure_initialized(
    cluster: &Cluster,
    store: &dyn KeyStore,
    options: &UnsealOptions,
) -> Result<InitOutcome, UnsealError> {
    let vault = cluster.name.as_str();
    let store_error = |step: &'static str| {
        move |source| UnsealError::Store {
            vault: vault.to_string(),
            step,
            source,
        }
    };

    let observed = observe(&cluster.pods).await;
    let mut answered = Vec::new();
    let mut last = "no pods".to_string();
    for (pod, status) in observed {
        match status {
            Ok(status) => answered.push((pod, status)),
            Err(error) => last = error.to_string(),
        }
    }
    if answered.is_empty() {
        return Err(UnsealError::NoPodAnswered {
            vault: vault.to_string(),
            last,
        });
    }
    let initialized: Vec<String> = answered
        .iter()
        .filter(|(_, status)| status.initialized)
        .map(|(pod, _)| pod.clone())
        .collect();

    let names = store
        .list()
        .await
        .map_err(store_error("listing the key store"))?;
    let marker = read_marker(cluster, store).await?;

    if !initialized.is_empty() {
        return match marker {
            Some(marker) if marker.state == MarkerState::Complete => {
                let missing = marker.missing(&names).len();
                if missing == 0 {
                    Ok(InitOutcome::AlreadyInitialized)
                } else {
                    Err(UnsealError::KeysMissing {
                        vault: vault.to_string(),
                        store: store.describe(),
                        missing,
                    })
                }
            }
            Some(marker) if marker.missing(&names).is_empty() => {
                info!(
                    vault,
                    "every key of an interrupted initialisation is stored; finishing it"
                );
                let done = InitMarker {
                    state: MarkerState::Complete,
                    ..marker
                };
                write_verified(store, INIT_MARKER, &done.to_secret(), options.retry)
                    .await
                    .map_err(store_error("marking the initialisation complete"))?;
                Ok(InitOutcome::Resumed)
            }
            Some(_) => {
                warn!(
                    vault,
                    pods = ?initialized,
                    "Vault was initialised by a run killed before its keys were stored; \
                     its storage must be reset"
                );
                Ok(InitOutcome::ResetRequired { pods: initialized })
            }
            None if names.iter().any(|name| keystore::is_vault_key(name)) => {
                // Keys without a marker: written by an earlier operator such as Bank-Vaults.
                Ok(InitOutcome::AlreadyInitialized)
            }
            None => Err(UnsealError::InitializedElsewhere {
                vault: vault.to_string(),
                store: store.describe(),
            }),
        };
    }

    let finished = match &marker {
        Some(marker) => marker.state == MarkerState::Complete,
        None => names.iter().any(|name| keystore::is_vault_key(name)),
    };
    if finished {
        return Err(UnsealError::KeysExist {
            vault: vault.to_string(),
            store: store.describe(),
        });
    }

    // Always the first pod: were it down and another one initialised instead, two pods
    // could each end up initialised with keys of their own.
    let Some(target) = cluster.pods.first() else {
        return Err(UnsealError::NoPodAnswered {
            vault: vault.to_string(),
            last,
        });
    };
    if !answered.iter().any(|(name, _)| name == target.pod()) {
        return Err(UnsealError::FirstPodSilent {
            vault: vault.to_string(),
            pod: target.pod().to_string(),
        });
    }
    initialize(cluster, target, store, options).await
}

async fn read_marker(
    cluster: &Cluster,
    store: &dyn KeyStore,
) -> Result<Option<InitMarker>, UnsealError> {
    let value = store
        .get(INIT_MARKER)
        .await
        .map_err(|source| UnsealError::Store {
            vault: cluster.name.clone(),
            step: "reading the init-intent marker",
            source,
        })?;
    match value {
        None => Ok(None),
        Some(value) => InitMarker::parse(&value)
            .map(Some)
            .ok_or_else(|| UnsealError::BadMarker {
                vault: cluster.name.clone(),
                store: store.describe(),
            }),
    }
}

/// Pre-flight check, marker, `sys/init` on `target`, every key stored and read back, marker
/// complete.
async fn initialize(
    cluster: &Cluster,
    target: &VaultPodClient,
    store: &dyn KeyStore,
    options: &UnsealOptions,
) -> Result<InitOutcome, UnsealError> {
    let vault = cluster.name.as_str();
    let pod = target.pod();
    let store_error = |step: &'static str| {
        move |source| UnsealError::Store {
            vault: vault.to_string(),
            step,
            source,
        }
    };

    if options.pre_flight_checks {
        let probe = Secret::new(format!("pre-flight {}", std::process::id()));
        write_verified(store, TEST_KEY, &probe, options.retry)
            .await
            .map_err(|source| UnsealError::PreFlight {
                vault: vault.to_string(),
                source,
            })?;
    }

    let marker = InitMarker {
        state: MarkerState::Pending,
        shares: options.shares,
        recovery: options.recovery,
        root_token: options.store_root_token,
    };
    write_verified(store, INIT_MARKER, &marker.to_secret(), options.retry)
        .await
        .map_err(store_error("writing the init-intent marker"))?;
    crash::reached(CrashPoint::BeforeInit);

    info!(
        vault,
        pod,
        shares = options.shares,
        threshold = options.threshold,
        "initialising"
    );
    let request = InitRequest {
        shares: options.shares,
        threshold: options.threshold,
        recovery: options.recovery,
    };
    let response = target.init(request).await?;
    crash::reached(CrashPoint::AfterInitResponse);

    // Store every share before anything else: until then they exist only in this process.
    let shares = if options.recovery {
        &response.recovery_keys
    } else {
        &response.keys
    };
    if shares.len() != options.shares as usize {
        return Err(UnsealError::ShortInit {
            pod: pod.to_string(),
            got: shares.len(),
            asked: options.shares,
        });
    }
    for (index, share) in (0..).zip(shares) {
        write_verified(
            store,
            &options.key_name(index),
            share,
            options.retry_after_init,
        )
        .await
        .map_err(store_error("storing a key share"))?;
        crash::reached(CrashPoint::BetweenKeyWrites);
    }
    if options.store_root_token {
        write_verified(
            store,
            ROOT_TOKEN,
            &response.root_token,
            options.retry_after_init,
        )
        .await
        .map_err(store_error("storing the root token"))?;
    }
    crash::reached(CrashPoint::AfterRootToken);

    // Read everything back once more before declaring the keys safe.
    for (index, share) in (0..).zip(shares) {
        keystore::read_back(store, &options.key_name(index), share)
            .await
            .map_err(store_error("reading back the key shares"))?;
    }
    if options.store_root_token {
        keystore::read_back(store, ROOT_TOKEN, &response.root_token)
            .await
            .map_err(store_error("reading back the root token"))?;
    }
    let done = InitMarker {
        state: MarkerState::Complete,
        ..marker
    };
    write_verified(store, INIT_MARKER, &done.to_secret(), options.retry)
        .await
        .map_err(store_error("marking the initialisation complete"))?;
    info!(vault, pod, store = %store.describe(), "initialised; keys stored and read back");

    Ok(InitOutcome::Initialized {
        pod: pod.to_string(),
        root_token: response.root_token,
    })
}

/// What [`unseal_pod`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UnsealOutcome {
    /// The pod was unsealed already.
    AlreadyUnsealed,
    /// This call unsealed it.
    Unsealed,
    /// The pod is not initialised (a Raft node that has not joined): nothing to unseal.
    NotInitialized,
    /// The pod unseals itself (auto-unseal); it is still sealed.
    AutoUnseal,
    /// Every share needed was accepted and the pod is still sealed: a Raft node that has
    /// just joined uses them to finish its join, and unseals moments later.
    Finishing,
}

/// Unseals one pod with the stored shares, reading only as many as its threshold needs.
pub async fn unseal_pod(
    pod: &VaultPodClient,
    store: &dyn KeyStore,
    options: &UnsealOptions,
) -> Result<UnsealOutcome, UnsealError> {
    let mut status = pod.seal_status().await?;
    if !status.initialized {
        return Ok(UnsealOutcome::NotInitialized);
    }
    if !status.sealed {
        return Ok(UnsealOutcome::AlreadyUnsealed);
    }
    if status.recovery_seal || (!status.seal_type.is_empty() && status.seal_type != "shamir") {
        return Ok(UnsealOutcome::AutoUnseal);
    }
    if status.progress > 0 {
        // Shares from an interrupted attempt; we cannot tell which, so start over.
        status = pod.unseal_reset().await?;
    }

    let needed = status.threshold.max(1);
    let mut found = 0;
    let mut index = 0;
    while found < needed && index < status.shares.max(options.shares) {
        let key = store
            .get(&keystore::unseal_key(index))
            .await
            .map_err(|source| UnsealError::KeyShare {
                pod: pod.pod().to_string(),
                source,
            })?;
        index += 1;
        let Some(key) = key else { continue };
        found += 1;
        let progress = pod.unseal(&key).await?;
        let sent = progress.progress;
        debug!(pod = %pod.pod(), progress = sent, threshold = needed, "key share sent");
        if !progress.sealed {
            info!(pod = %pod.pod(), "unsealed");
            return Ok(UnsealOutcome::Unsealed);
        }
        if found == 1 {
            crash::reached(CrashPoint::BetweenUnsealKeys);
        }
        if found >= needed && progress.progress == 0 {
            info!(pod = %pod.pod(), "key shares accepted; unseal finishing");
            return Ok(UnsealOutcome::Finishing);
        }
    }
    Err(UnsealError::NotEnoughKeys {
        pod: pod.pod().to_string(),
        found,
        needed,
    })
}

/// One pass over the cluster: what [`reconcile`] saw and did.
#[derive(Clone, Debug, Default)]
pub struct Report {
    /// Whether Vault is initialised.
    pub initialized: bool,
    /// The pods whose storage must be reset (see [`InitOutcome::ResetRequired`]).
    pub reset_required: Vec<String>,
    /// What each pod reported, in the shape of the `Vault` status.
    pub pods: Vec<VaultPodStatus>,
    /// The Raft leader (or active node), when known.
    pub leader: Option<String>,
    /// Which server each pod that answered says it runs, by pod name.
    pub flavors: BTreeMap<String, Flavor>,
    /// The Raft configuration read from the leader, when read.
    pub raft: Option<RaftConfiguration>,
    /// The pods this pass initialised, unsealed or joined, in order.
    pub actions: Vec<String>,
    /// The root token, when this pass initialised Vault: the caller sets up its own
    /// identity with it, and drops it (or revokes it, when it is not stored).
    pub fresh_root_token: Option<Secret>,
}

impl Report {
    /// Pods that are known to be sealed or did not answer.
    pub fn sealed(&self) -> usize {
        self.pods
            .iter()
            .filter(|pod| pod.sealed != Some(false))
            .count()
    }

    /// True when every pod is unsealed and, with Raft, every pod is a peer and a leader is
    /// elected.
    pub fn converged(&self, raft: bool) -> bool {
        let members = match (&self.raft, raft) {
            (_, false) => true,
            (Some(config), true) => self
                .pods
                .iter()
                .all(|pod| config.server(&pod.name).is_some()),
            (None, true) => false,
        };
        self.initialized && self.sealed() == 0 && self.leader.is_some() && members
    }

    /// A one-line summary without any secret, for logs and timeouts.
    pub fn summary(&self) -> String {
        format!(
            "initialised: {}, sealed: {} of {}, leader: {}, peers: {}",
            self.initialized,
            self.sealed(),
            self.pods.len(),
            self.leader.as_deref().unwrap_or("none"),
            self.raft.as_ref().map_or(0, |config| config.servers.len()),
        )
    }
}

/// One pass: initialise when needed, unseal every sealed pod, join pods that are not Raft
/// peers, and read who leads. Call again until [`Report::converged`].
pub async fn reconcile(
    cluster: &Cluster,
    store: &dyn KeyStore,
    options: &UnsealOptions,
) -> Result<Report, UnsealError> {
    let mut report = Report::default();
    let mut fresh_token = None;
    match ensure_initialized(cluster, store, options).await? {
        InitOutcome::ResetRequired { pods } => {
            report.reset_required = pods;
            return Ok(report);
        }
        InitOutcome::Initialized { pod, root_token } => {
            report.actions.push(format!("initialised {pod}"));
            fresh_token = Some(root_token);
        }
        InitOutcome::Resumed | InitOutcome::AlreadyInitialized => {}
    }
    report.initialized = true;

    // After an initialisation its root token must reach the caller even when the rest of
    // the pass fails: unless stored, it exists nowhere else. The failure shows next pass.
    let unsealed = unseal_and_join(cluster, store, options, &mut report).await;
    match unsealed {
        Err(error) if fresh_token.is_some() => {
            warn!(vault = %cluster.name, %error, "unsealing after initialisation failed");
        }
        other => other?,
    }

    let token = match (&cluster.token, &fresh_token) {
        (Some(token), _) | (None, Some(token)) => Some(token.clone()),
        (None, None) => store.get(ROOT_TOKEN).await.ok().flatten(),
    };
    read_roles(cluster, token.as_ref(), &mut report).await;
    report.fresh_root_token = fresh_token;
    Ok(report)
}

/// Unseals every pod that is initialised, then joins and unseals the pods that are not.
async fn unseal_and_join(
    cluster: &Cluster,
    store: &dyn KeyStore,
    options: &UnsealOptions,
    report: &mut Report,
) -> Result<(), UnsealError> {
    // Unseal what is initialised first: a Raft node joins only an unsealed leader.
    for pod in &cluster.pods {
        match unseal_pod(pod, store, options).await {
            Ok(UnsealOutcome::Unsealed) => report.actions.push(format!("unsealed {}", pod.pod())),
            Ok(_) => {}
            Err(UnsealError::Vault(error)) => {
                warn!(vault = %cluster.name, pod = %pod.pod(), %error, "pod not unsealed");
            }
            Err(error) => return Err(error),
        }
    }

    if cluster.raft {
        join_raft_peers(cluster, store, options, report).await?;
    }
    Ok(())
}

/// Joins every uninitialised pod to the first unsealed pod, then unseals it.
async fn join_raft_peers(
    cluster: &Cluster,
    store: &dyn KeyStore,
    options: &UnsealOptions,
    report: &mut Report,
) -> Result<(), UnsealError> {
    let observed = observe(&cluster.pods).await;
    let unsealed: Vec<&VaultPodClient> = cluster
        .pods
        .iter()
        .zip(&observed)
        .filter(|(_, (_, status))| matches!(status, Ok(s) if s.initialized && !s.sealed))
        .map(|(pod, _)| pod)
        .collect();
    if !observed
        .iter()
        .any(|(_, status)| matches!(status, Ok(s) if !s.initialized))
    {
        return Ok(());
    }
    // Join the active node when one says so, else any unsealed peer.
    let mut leader = unsealed.first().copied();
    for pod in &unsealed {
        if pod.leader().await.is_ok_and(|leader| leader.is_self) {
            leader = Some(*pod);
            break;
        }
    }
    let Some(leader) = leader else {
        return Ok(());
    };
    let leader_endpoint = leader.endpoint();
    let leader_api_addr = format!("{}://{}", leader.scheme(), leader_endpoint.address);

    for (pod, (_, status)) in cluster.pods.iter().zip(&observed) {
        if !matches!(status, Ok(s) if !s.initialized) {
            continue;
        }
        // A join answers `joined` before the node is a peer: membership is checked in the
        // Raft configuration, the join finishes when the node is unsealed.
        let joined = pod
            .raft_join(
                &leader_api_addr,
                (!cluster.ca_pem.is_empty()).then_some(cluster.ca_pem.as_str()),
                Some(&leader_endpoint.server_name),
            )
            .await;
        match joined {
            Ok(_) => report
                .actions
                .push(format!("joined {} to {}", pod.pod(), leader.pod())),
            Err(error) => {
                warn!(vault = %cluster.name, pod = %pod.pod(), %error, "Raft join failed");
                continue;
            }
        }
        match unseal_pod(pod, store, options).await {
            Ok(UnsealOutcome::Unsealed | UnsealOutcome::Finishing) => {
                report.actions.push(format!("unsealed {}", pod.pod()));
            }
            Ok(_) => {}
            Err(UnsealError::Vault(error)) => {
                warn!(vault = %cluster.name, pod = %pod.pod(), %error, "joined pod not unsealed");
            }
            Err(error) => return Err(error),
        }
    }
    Ok(())
}

/// Fills in each pod's status and the leader, from the pods and the Raft configuration.
async fn read_roles(cluster: &Cluster, token: Option<&Secret>, report: &mut Report) {
    let observed = observe(&cluster.pods).await;
    let leaders = futures::future::join_all(cluster.pods.iter().map(|pod| pod.leader())).await;

    for ((name, status), leader) in observed.into_iter().zip(leaders) {
        let mut pod = VaultPodStatus {
            name,
            ..VaultPodStatus::default()
        };
        if let Ok(status) = status {
            if let Some(flavor) = status.flavor() {
                report.flavors.insert(pod.name.clone(), flavor);
            }
            pod.initialized = Some(status.initialized);
            pod.sealed = Some(status.sealed);
            pod.version = Some(status.version);
        }
        if let Ok(leader) = leader
            && leader.is_self
        {
            report.leader = Some(pod.name.clone());
        }
        report.pods.push(pod);
    }

    if !cluster.raft {
        for pod in &mut report.pods {
            if pod.sealed == Some(false) {
                let leads = report.leader.as_deref() == Some(pod.name.as_str());
                pod.raft_role = Some(if leads {
                    RaftRole::Leader
                } else {
                    RaftRole::Standby
                });
            }
        }
        return;
    }
    let Some(token) = token else {
        return;
    };
    // Ask the leader; any unsealed peer forwards the request when it is not the leader.
    let asked = cluster
        .pods
        .iter()
        .filter(|pod| {
            report
                .pods
                .iter()
                .any(|status| status.name == pod.pod() && status.sealed == Some(false))
        })
        .collect::<Vec<_>>();
    for pod in asked {
        match pod.raft_configuration(token).await {
            Ok(config) => {
                for status in &mut report.pods {
                    if let Some(server) = config.server(&status.name) {
                        status.voter = Some(server.voter);
                        status.raft_role = Some(if server.leader {
                            RaftRole::Leader
                        } else {
                            RaftRole::Follower
                        });
                    }
                }
                // The leader by pod name; node IDs may be random.
                let leader = report.pods.iter().find(|status| {
                    config
                        .server(&status.name)
                        .is_some_and(|server| server.leader)
                });
                if let Some(leader) = leader {
                    report.leader = Some(leader.name.clone());
                }
                report.raft = Some(config);
                return;
            }
            Err(error) => {
                debug!(pod = %pod.pod(), %error, "Raft configuration not read");
            }
        }
    }
}

/// Repeats [`reconcile`] until the cluster has converged or `timeout` has passed. A reset
/// required is returned as soon as it is seen, for the caller to act on.
pub async fn converge(
    cluster: &Cluster,
    store: &dyn KeyStore,
    options: &UnsealOptions,
    timeout: Duration,
) -> Result<Report, UnsealError> {
    let start = Instant::now();
    loop {
        let report = reconcile(cluster, store, options).await?;
        if report.converged(cluster.raft) || !report.reset_required.is_empty() {
            return Ok(report);
        }
        if start.elapsed() >= timeout {
            return Err(UnsealError::Timeout {
                vault: cluster.name.clone(),
                waited: start.elapsed(),
                state: report.summary(),
            });
        }
        debug!(vault = %cluster.name, state = %report.summary(), "not converged yet");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn vault(spec: serde_json::Value) -> Vault {
        let object = json!({
            "apiVersion": "vault.banzaicloud.com/v1alpha1",
            "kind": "Vault",
            "metadata": {"name": "vault", "namespace": "ns"},
            "spec": spec,
        });
        serde_json::from_value(object).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn options_follow_unseal_config_and_defaults() {
        let defaults = UnsealOptions::for_vault(&vault(json!({})));
        assert_eq!((defaults.shares, defaults.threshold), (5, 3));
        assert!(defaults.pre_flight_checks && defaults.store_root_token && !defaults.recovery);
        assert_eq!(defaults.key_name(2), "vault-unseal-2");

        let spec = json!({
            "config": {"seal": {"awskms": {"kms_key_id": "k"}}},
            "unsealConfig": {"options": {"secretShares": 2, "storeRootToken": false,
                                         "preFlightChecks": false}},
        });
        let options = UnsealOptions::for_vault(&vault(spec));
        assert_eq!((options.shares, options.threshold), (2, 2));
        assert!(options.recovery && !options.store_root_token && !options.pre_flight_checks);
        assert_eq!(options.key_name(0), "vault-recovery-0");
    }

    #[test]
    fn converged_needs_every_pod_unsealed_a_leader_and_every_raft_peer() {
        let pod = |name: &str, sealed| VaultPodStatus {
            name: name.to_string(),
            sealed: Some(sealed),
            ..VaultPodStatus::default()
        };
        let peer = |name: &str| crate::vault::RaftServer {
            node_id: name.to_string(),
            ..Default::default()
        };
        let mut report = Report {
            initialized: true,
            pods: vec![pod("vault-0", false), pod("vault-1", false)],
            leader: Some("vault-0".to_string()),
            raft: Some(RaftConfiguration {
                servers: vec![peer("vault-0")],
                index: 0,
            }),
            ..Report::default()
        };
        assert!(report.converged(false));
        assert!(!report.converged(true), "vault-1 is not a peer");
        if let Some(raft) = report.raft.as_mut() {
            raft.servers.push(peer("vault-1"));
        }
        assert!(report.converged(true));
        report.pods[1].sealed = None;
        assert!(
            !report.converged(true),
            "a pod that did not answer counts as sealed"
        );
        assert_eq!(
            report.summary(),
            "initialised: true, sealed: 1 of 2, leader: vault-0, peers: 2"
        );
    }
}
