//! Which token the controller works in Vault with, past initialisation and unsealing:
//! its own Kubernetes-auth role when it can log in, else the stored root token.
//!
//! The role is set up with the root token: the fresh one, right after initialisation, or
//! the stored one, for a cluster initialised before (by an older controller, say). With
//! `storeRootToken: false` the fresh root token is kept in memory only until the role
//! works, then revoked; a controller restarted in those few seconds loses it, and the
//! condition says so.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use kube::ResourceExt;
use kube::runtime::events::EventType;
use serde_json::json;
use tracing::{info, warn};
use vault_api::Vault;

use super::Context;
use crate::Secret;
use crate::keystore::{KeyStore, ROOT_TOKEN};
use crate::unseal::{self, Cluster, Report, UnsealOptions};
use crate::vault::VaultPodClient;

/// How long after a failed set-up of the role the next one is tried.
const SETUP_BACKOFF: Duration = Duration::from_secs(30);

/// The token the controller works with, and where it came from.
#[derive(Debug)]
pub enum OperatorToken {
    /// A token of the controller's own role.
    Own(Secret),
    /// The root token, from the key store or from this process's initialisation.
    Root(Secret),
    /// Neither: why, for the Configured condition.
    Missing(String),
}

impl OperatorToken {
    /// The token, if there is one.
    pub fn token(&self) -> Option<&Secret> {
        match self {
            Self::Own(token) | Self::Root(token) => Some(token),
            Self::Missing(_) => None,
        }
    }
}

/// What the controller remembers per `Vault` between passes. Lost on restart, which costs
/// one login.
#[derive(Default)]
pub struct IdentityMemory {
    entries: Mutex<HashMap<String, Remembered>>,
}

#[derive(Default)]
struct Remembered {
    /// A token of the controller's role, and when to log in again.
    own: Option<(Secret, Instant)>,
    /// A root token from an initialisation, not stored, waiting for the role to work.
    unstored_root: Option<Secret>,
    /// When setting up the role last failed.
    failed_at: Option<Instant>,
    /// Whether the role's policy was compared with this controller's since it started: a
    /// newer controller may need more than the one that set the role up.
    policy_checked: bool,
    /// The last failure, for the condition.
    failure: Option<String>,
}

impl IdentityMemory {
    fn with<T>(&self, key: &str, act: impl FnOnce(&mut Remembered) -> T) -> T {
        let mut entries = self
            .entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        act(entries.entry(key.to_string()).or_default())
    }

    /// A token of the controller's role for `key` that is not due for renewal.
    pub fn own_token(&self, key: &str) -> Option<Secret> {
        self.with(key, |entry| {
            entry
                .own
                .as_ref()
                .filter(|(_, renew_at)| Instant::now() < *renew_at)
                .map(|(token, _)| token.clone())
        })
    }

    /// A token that reads what only a token may (the Raft configuration): the role's, or
    /// a root token from an initialisation that is not stored.
    pub fn reading_token(&self, key: &str) -> Option<Secret> {
        self.own_token(key)
            .or_else(|| self.with(key, |entry| entry.unstored_root.clone()))
    }

    /// Forgets what is known of `key`, when its `Vault` is deleted.
    pub fn forget(&self, key: &str) {
        let mut entries = self
            .entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        entries.remove(key);
    }
}

/// The key of `vault` in the memories.
pub fn memory_key(vault: &Vault) -> String {
    format!(
        "{}/{}",
        vault.namespace().unwrap_or_default(),
        vault.name_any()
    )
}

/// Why a resource cannot be initialised with this controller as it runs, or `None`: with
/// `storeRootToken: false` the root token is revoked once the controller's own login
/// works, and a controller without a ServiceAccount token has no such login.
pub fn cannot_initialise(ctx: &Context, options: &UnsealOptions) -> Option<String> {
    if options.store_root_token {
        return None;
    }
    let why = match (&ctx.options.service_account_token, kubernetes_host()) {
        (None, _) => {
            "it runs without a ServiceAccount token (--service-account-token-file)".to_string()
        }
        (Some(file), Some(_)) => match file.read() {
            Ok(_) => return None,
            Err(error) => error,
        },
        (Some(_), None) => "it does not know where Vault reaches the Kubernetes API \
                            (KUBERNETES_SERVICE_HOST is not set)"
            .to_string(),
    };
    Some(format!(
        "unsealConfig.options.storeRootToken is false, so the controller must log in to \
         Vault with its own ServiceAccount before the root token is revoked, and {why}: run \
         it in the cluster, or set storeRootToken to true"
    ))
}

/// The token to work with after `report`'s pass, setting up the controller's role when it
/// is missing and a root token is at hand.
pub async fn operator_token(
    ctx: &Context,
    vault: &Vault,
    cluster: &Cluster,
    store: &dyn KeyStore,
    options: &UnsealOptions,
    report: &mut Report,
) -> OperatorToken {
    let key = memory_key(vault);
    let memory = &ctx.identity_memory;
    if let Some(root) = report.fresh_root_token.take() {
        // A new Vault: a token of an earlier one under this key is worthless.
        memory.with(&key, |entry| {
            entry.own = None;
            entry.policy_checked = false;
            if !options.store_root_token {
                entry.unstored_root = Some(root);
            }
        });
    }
    let leader = report
        .leader
        .as_deref()
        .and_then(|leader| cluster.pods.iter().find(|pod| pod.pod() == leader));
    if let Some(token) = memory.own_token(&key) {
        if let Some(leader) = leader {
            revoke_unstored_root(ctx, vault, leader, &key).await;
        }
        return OperatorToken::Own(token);
    }

    let stored_root = match store.get(ROOT_TOKEN).await {
        Ok(token) => token,
        Err(error) => {
            warn!(%error, "reading the root token");
            None
        }
    };
    let root = stored_root.or_else(|| memory.with(&key, |entry| entry.unstored_root.clone()));
    let (Some(file), Some(leader)) = (&ctx.options.service_account_token, leader) else {
        return root.map_or_else(
            || OperatorToken::Missing(missing_reason(memory, &key)),
            OperatorToken::Root,
        );
    };

    match own_login(ctx, vault, leader, file, root.as_ref(), &key).await {
        Ok(token) => {
            revoke_unstored_root(ctx, vault, leader, &key).await;
            OperatorToken::Own(token)
        }
        Err(failure) => {
            memory.with(&key, |entry| entry.failure = Some(failure));
            root.map_or_else(
                || OperatorToken::Missing(missing_reason(memory, &key)),
                OperatorToken::Root,
            )
        }
    }
}

/// Logs in with the controller's role, setting the role up first when the login fails and
/// a root token is at hand (at most every [`SETUP_BACKOFF`]).
async fn own_login(
    ctx: &Context,
    vault: &Vault,
    leader: &VaultPodClient,
    file: &unseal::ServiceAccountToken,
    root: Option<&Secret>,
    key: &str,
) -> Result<Secret, String> {
    let memory = &ctx.identity_memory;
    let (jwt, identity) = file.read()?;
    let first = match unseal::login(leader, &identity, &jwt).await {
        Ok(login) => Ok(login),
        Err(error) => Err(error.to_string()),
    };
    let (token, lifetime) = match (first, root) {
        (Ok(login), _) => login,
        (Err(error), None) => {
            return Err(format!("logging in with role {}: {error}", identity.role));
        }
        (Err(_), Some(root)) => {
            let recently = memory.with(key, |entry| {
                entry
                    .failed_at
                    .is_some_and(|at| at.elapsed() < SETUP_BACKOFF)
            });
            if recently {
                return Err(memory
                    .with(key, |entry| entry.failure.clone())
                    .unwrap_or_default());
            }
            // Vault pods review tokens with their own ServiceAccount and cluster CA.
            let config = kubernetes_host().map(|host| json!({ "kubernetes_host": host }));
            let set_up = async {
                unseal::setup_controller_identity(leader, root, &identity, config.as_ref())
                    .await
                    .map_err(|error| error.to_string())?;
                unseal::login(leader, &identity, &jwt)
                    .await
                    .map_err(|error| format!("logging in with role {}: {error}", identity.role))
            };
            match set_up.await {
                Ok(login) => {
                    let note = format!(
                        "the controller logs in to Vault with Kubernetes auth role {} at \
                         auth/{}, bound to ServiceAccount {}/{}",
                        identity.role,
                        identity.auth_path,
                        identity.namespace,
                        identity.service_account
                    );
                    info!(%note);
                    ctx.publish(vault, EventType::Normal, "IdentitySetUp", note)
                        .await;
                    login
                }
                Err(error) => {
                    memory.with(key, |entry| entry.failed_at = Some(Instant::now()));
                    warn!(%error, "setting up the controller's identity in Vault");
                    return Err(error);
                }
            }
        }
    };

    if !memory.with(key, |entry| entry.policy_checked) {
        match unseal::refresh_controller_policy(leader, &token, &identity).await {
            Ok(()) => memory.with(key, |entry| entry.policy_checked = true),
            Err(error) => warn!(%error, "checking the controller's policy"),
        }
    }

    // Log in again at four fifths of the token's life.
    let renew_at = Instant::now() + lifetime.mul_f32(0.8).max(Duration::from_secs(10));
    memory.with(key, |entry| {
        entry.own = Some((token.clone(), renew_at));
        entry.failure = None;
        entry.failed_at = None;
    });
    Ok(token)
}

/// Revokes the root token of an initialisation that is not stored, once the controller's
/// own login works. One that cannot be revoked is kept for the next pass: nobody else
/// holds it to revoke it by hand.
async fn revoke_unstored_root(ctx: &Context, vault: &Vault, leader: &VaultPodClient, key: &str) {
    let memory = &ctx.identity_memory;
    if let Some(unstored) = memory.with(key, |entry| entry.unstored_root.take())
        && !revoke(ctx, vault, leader, &unstored).await
    {
        memory.with(key, |entry| entry.unstored_root = Some(unstored));
    }
}

/// Revokes the unstored root token; whether that worked.
async fn revoke(ctx: &Context, vault: &Vault, leader: &VaultPodClient, root: &Secret) -> bool {
    match unseal::revoke_root_token(leader, root).await {
        Ok(()) => {
            let note = "root token revoked (storeRootToken: false); the controller works with \
                        its own role";
            info!(note);
            let note = note.to_string();
            ctx.publish(vault, EventType::Normal, "RootTokenRevoked", note)
                .await;
            true
        }
        Err(error) => {
            let note = format!("revoking the root token failed; trying again: {error}");
            warn!(%note);
            ctx.publish(vault, EventType::Warning, "RootTokenNotRevoked", note)
                .await;
            false
        }
    }
}

fn missing_reason(memory: &IdentityMemory, key: &str) -> String {
    let failure = memory.with(key, |entry| entry.failure.clone());
    let base = "no root token in the key store (unsealConfig.options.storeRootToken: false) \
                and no login of the controller's own";
    match failure {
        Some(failure) => format!("{base}: {failure}"),
        None => format!("{base} yet"),
    }
}

/// Where Vault pods reach the Kubernetes API: the controller's own in-cluster address,
/// which is the same for every pod of the cluster.
fn kubernetes_host() -> Option<String> {
    let host = std::env::var("KUBERNETES_SERVICE_HOST").ok()?;
    let port = std::env::var("KUBERNETES_SERVICE_PORT").unwrap_or_else(|_| "443".to_string());
    let host = if host.contains(':') {
        format!("[{host}]")
    } else {
        host
    };
    Some(format!("https://{host}:{port}"))
}
