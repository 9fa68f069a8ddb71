//! The controller's own identity in Vault, set up with the fresh root token.

use tracing::info;
use vaultrs::api::auth::kubernetes::requests::CreateKubernetesRoleRequest;

use super::UnsealError;
use crate::Secret;
use crate::vault::VaultPodClient;

/// The policy the controller's role gets unless told otherwise: reading the Raft state,
/// and managing the auth methods, mounts and policies that `externalConfig` declares.
pub const DEFAULT_POLICY: &str = r#"
path "sys/storage/raft/configuration" { capabilities = ["read"] }
path "sys/storage/raft/autopilot/state" { capabilities = ["read"] }
path "sys/auth" { capabilities = ["read"] }
path "sys/auth/*" { capabilities = ["create", "read", "update", "delete", "sudo"] }
path "sys/mounts" { capabilities = ["read"] }
path "sys/mounts/*" { capabilities = ["create", "read", "update", "delete"] }
path "sys/policies/acl/*" { capabilities = ["create", "read", "update", "delete", "list"] }
path "auth/*" { capabilities = ["create", "read", "update", "delete", "list"] }
"#;

/// The Kubernetes auth role the controller logs in with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ControllerIdentity {
    /// Mount path of the Kubernetes auth method, such as `kubernetes`.
    pub auth_path: String,
    /// Name of the role and of its policy.
    pub role: String,
    /// The policy's HCL.
    pub policy: String,
    /// The controller's ServiceAccount.
    pub service_account: String,
    /// The controller's namespace.
    pub namespace: String,
}

impl ControllerIdentity {
    /// The identity of the ServiceAccount `service_account` in `namespace`, with
    /// [`DEFAULT_POLICY`] under the name `vault-controller`.
    pub fn new(service_account: &str, namespace: &str) -> Self {
        Self {
            auth_path: "kubernetes".to_string(),
            role: "vault-controller".to_string(),
            policy: DEFAULT_POLICY.to_string(),
            service_account: service_account.to_string(),
            namespace: namespace.to_string(),
        }
    }
}

/// Enables Kubernetes auth (when absent), writes the controller's policy and binds a role to
/// its ServiceAccount. Idempotent. Configuring where the Kubernetes API is
/// (`auth/<path>/config`) is left to the caller, which knows it.
pub async fn setup_controller_identity(
    pod: &VaultPodClient,
    root_token: &Secret,
    identity: &ControllerIdentity,
) -> Result<(), UnsealError> {
    let vault = pod.authed(root_token)?;
    let client = vault.client();

    let mounts = vaultrs::sys::auth::list(client)
        .await
        .map_err(|e| vault.error("listing auth methods", e))?;
    if !mounts.contains_key(&format!("{}/", identity.auth_path)) {
        vaultrs::sys::auth::enable(client, &identity.auth_path, "kubernetes", None)
            .await
            .map_err(|e| vault.error("enabling Kubernetes auth", e))?;
    }
    vaultrs::sys::policy::set(client, &identity.role, &identity.policy)
        .await
        .map_err(|e| vault.error("writing the controller's policy", e))?;

    let mut role = CreateKubernetesRoleRequest::builder();
    role.bound_service_account_names(vec![identity.service_account.clone()])
        .bound_service_account_namespaces(vec![identity.namespace.clone()])
        .token_policies(vec![identity.role.clone()])
        .token_ttl("1h");
    vaultrs::auth::kubernetes::role::create(
        client,
        &identity.auth_path,
        &identity.role,
        Some(&mut role),
    )
    .await
    .map_err(|e| vault.error("writing the controller's role", e))?;
    info!(pod = %pod.pod(), role = %identity.role, "controller identity set up");
    Ok(())
}

/// Revokes the root token, for `storeRootToken: false` once the controller has its own
/// identity. OpenBao refuses to generate a new root token by default, so this is final.
pub async fn revoke_root_token(
    pod: &VaultPodClient,
    root_token: &Secret,
) -> Result<(), UnsealError> {
    let vault = pod.authed(root_token)?;
    vaultrs::token::revoke_self(vault.client())
        .await
        .map_err(|e| vault.error("revoking the root token", e))?;
    info!(pod = %pod.pod(), "root token revoked");
    Ok(())
}
