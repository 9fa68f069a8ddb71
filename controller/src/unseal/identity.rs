//! The controller's own identity in Vault: a Kubernetes-auth role bound to its
//! ServiceAccount. It is set up with the root token right after initialisation (or later,
//! while a stored root token exists), so that the controller configures Vault with a
//! token of its own, and `storeRootToken: false` can revoke the root token for good.

use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine;
use reqwest::Method;
use tracing::info;
use vaultrs::api::auth::kubernetes::requests::CreateKubernetesRoleRequest;

use super::UnsealError;
use crate::Secret;
use crate::vault::{VaultError, VaultPodClient};

/// Where a pod's ServiceAccount token is mounted.
pub const IN_CLUSTER_TOKEN: &str = "/var/run/secrets/kubernetes.io/serviceaccount/token";

/// The policy of the controller's role: reading and removing Raft peers, and managing what
/// `externalConfig` may declare (auth methods, secrets engines and their configuration,
/// policies, identity groups, audit devices, plugins, startup secrets). `sudo` only where
/// Vault requires it for those endpoints. Since it may write policies, its own included,
/// this login is as strong as a root token: guard the controller's ServiceAccount as such.
pub const DEFAULT_POLICY: &str = r#"
path "sys/storage/raft/configuration" { capabilities = ["read"] }
path "sys/storage/raft/autopilot/state" { capabilities = ["read"] }
path "sys/storage/raft/remove-peer" { capabilities = ["update"] }
path "sys/auth" { capabilities = ["read"] }
path "sys/auth/*" { capabilities = ["create", "read", "update", "delete", "sudo"] }
path "sys/mounts" { capabilities = ["read"] }
path "sys/mounts/*" { capabilities = ["create", "read", "update", "delete"] }
path "sys/policies/acl" { capabilities = ["list"] }
path "sys/policies/acl/*" { capabilities = ["create", "read", "update", "delete", "list"] }
path "sys/audit" { capabilities = ["read", "sudo"] }
path "sys/audit/*" { capabilities = ["create", "read", "update", "delete", "sudo"] }
path "sys/plugins/catalog/*" { capabilities = ["create", "read", "update", "delete", "sudo"] }
path "auth/*" { capabilities = ["create", "read", "update", "delete", "list"] }
path "identity/*" { capabilities = ["create", "read", "update", "delete", "list"] }
path "+/*" { capabilities = ["create", "read", "update", "delete", "list"] }
"#;

/// Mount path of the Kubernetes auth method the controller logs in through.
pub const AUTH_PATH: &str = "kubernetes";

/// Name of the controller's role, and of its policy. `purgeUnmanagedConfig` keeps both.
pub const ROLE: &str = "vault-controller";

/// How long the role's tokens live. The controller logs in again well before.
const TOKEN_TTL: &str = "1h";

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
            auth_path: AUTH_PATH.to_string(),
            role: ROLE.to_string(),
            policy: DEFAULT_POLICY.to_string(),
            service_account: service_account.to_string(),
            namespace: namespace.to_string(),
        }
    }

    /// The identity a ServiceAccount token was issued to, from its `sub` claim
    /// (`system:serviceaccount:<namespace>:<name>`). The signature is not checked: Vault
    /// checks the token itself, through a TokenReview, when the controller logs in.
    pub fn of_token(token: &Secret) -> Option<Self> {
        #[derive(serde::Deserialize)]
        struct Claims {
            sub: String,
        }
        let payload = token.expose().split('.').nth(1)?;
        let json = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload.trim_end_matches('='))
            .ok()?;
        let claims: Claims = serde_json::from_slice(&json).ok()?;
        let mut parts = claims
            .sub
            .strip_prefix("system:serviceaccount:")?
            .split(':');
        let (namespace, name) = (parts.next()?, parts.next()?);
        (parts.next().is_none() && !namespace.is_empty() && !name.is_empty())
            .then(|| Self::new(name, namespace))
    }
}

/// The file the controller's ServiceAccount token is read from, again at every login,
/// since the kubelet replaces a projected token before it expires.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceAccountToken {
    path: PathBuf,
}

impl ServiceAccountToken {
    /// The token at `path`.
    pub fn at(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into() }
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The token, and the identity it was issued to.
    pub fn read(&self) -> Result<(Secret, ControllerIdentity), String> {
        let where_ = self.path.display();
        let bytes = std::fs::read(&self.path)
            .map_err(|error| format!("reading the ServiceAccount token {where_}: {error}"))?;
        let token = Secret::from_bytes(bytes)
            .ok_or_else(|| format!("the ServiceAccount token {where_} is not text"))?;
        let token = Secret::from(token.expose().trim());
        let identity = ControllerIdentity::of_token(&token).ok_or_else(|| {
            format!("the ServiceAccount token {where_} names no ServiceAccount in its claims")
        })?;
        Ok((token, identity))
    }
}

/// Enables Kubernetes auth (when absent), points it at the Kubernetes API with
/// `kubernetes_config` (the body of `auth/<path>/config`, at least `kubernetes_host`; only
/// when the method is new or has no configuration), writes the controller's policy and
/// binds a role to its ServiceAccount. Idempotent.
pub async fn setup_controller_identity(
    pod: &VaultPodClient,
    root_token: &Secret,
    identity: &ControllerIdentity,
    kubernetes_config: Option<&serde_json::Value>,
) -> Result<(), UnsealError> {
    let vault = pod.authed(root_token)?;
    let client = vault.client();

    let mounts = vaultrs::sys::auth::list(client)
        .await
        .map_err(|e| vault.error("listing auth methods", e))?;
    let enabled = mounts.contains_key(&format!("{}/", identity.auth_path));
    if !enabled {
        vaultrs::sys::auth::enable(client, &identity.auth_path, "kubernetes", None)
            .await
            .map_err(|e| vault.error("enabling Kubernetes auth", e))?;
    }
    let config_path = format!("auth/{}/config", identity.auth_path);
    // A configuration someone else wrote (externalConfig, say) is theirs to keep.
    let configured = enabled
        && vault
            .request(
                "reading the Kubernetes auth configuration",
                Method::GET,
                &config_path,
                None,
            )
            .await
            .ok()
            .is_some_and(|answer| {
                answer["data"]["kubernetes_host"]
                    .as_str()
                    .is_some_and(|host| !host.is_empty())
            });
    if let (false, Some(body)) = (configured, kubernetes_config) {
        vault
            .request(
                "configuring Kubernetes auth",
                Method::POST,
                &config_path,
                Some(body),
            )
            .await?;
    }
    vaultrs::sys::policy::set(client, &identity.role, &identity.policy)
        .await
        .map_err(|e| vault.error("writing the controller's policy", e))?;

    let mut role = CreateKubernetesRoleRequest::builder();
    role.bound_service_account_names(vec![identity.service_account.clone()])
        .bound_service_account_namespaces(vec![identity.namespace.clone()])
        .token_policies(vec![identity.role.clone()])
        .token_ttl(TOKEN_TTL);
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

/// Rewrites the role's policy with `token`, the role's own, when it differs from
/// `identity`'s: a newer controller may need paths an older one did not.
pub async fn refresh_controller_policy(
    pod: &VaultPodClient,
    token: &Secret,
    identity: &ControllerIdentity,
) -> Result<(), UnsealError> {
    let vault = pod.authed(token)?;
    let path = format!("sys/policies/acl/{}", identity.role);
    let held = vault
        .request("reading the controller's policy", Method::GET, &path, None)
        .await?;
    if held["data"]["policy"].as_str() == Some(identity.policy.as_str()) {
        return Ok(());
    }
    let body = serde_json::json!({ "policy": identity.policy });
    vault
        .request(
            "updating the controller's policy",
            Method::POST,
            &path,
            Some(&body),
        )
        .await?;
    info!(pod = %pod.pod(), role = %identity.role, "controller policy updated");
    Ok(())
}

/// Logs in with the controller's role: a token and how long it lives.
pub async fn login(
    pod: &VaultPodClient,
    identity: &ControllerIdentity,
    service_account_token: &Secret,
) -> Result<(Secret, Duration), VaultError> {
    pod.kubernetes_login(&identity.auth_path, &identity.role, service_account_token)
        .await
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

#[cfg(test)]
mod tests {
    use super::*;

    fn token_with(claims: &str) -> Secret {
        let encode = |text: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(text);
        Secret::from(format!(
            "{}.{}.sig",
            encode(r#"{"alg":"RS256"}"#),
            encode(claims)
        ))
    }

    #[test]
    fn the_identity_comes_from_the_tokens_subject() {
        let token = token_with(r#"{"sub":"system:serviceaccount:ops:vault-controller"}"#);
        let identity = ControllerIdentity::of_token(&token);
        assert_eq!(
            identity,
            Some(ControllerIdentity::new("vault-controller", "ops"))
        );
        for claims in [
            r#"{"sub":"system:node:n1"}"#,
            r#"{"sub":"system:serviceaccount:ops"}"#,
            r#"{"sub":"system:serviceaccount:ops:a:b"}"#,
            r#"{"iss":"x"}"#,
        ] {
            assert_eq!(
                ControllerIdentity::of_token(&token_with(claims)),
                None,
                "{claims}"
            );
        }
        assert_eq!(
            ControllerIdentity::of_token(&Secret::from("not-a-jwt")),
            None
        );
    }

    #[test]
    fn a_token_file_is_read_trimmed_and_named_in_errors() -> Result<(), Box<dyn std::error::Error>>
    {
        let folder = tempfile::tempdir()?;
        let path = folder.path().join("token");
        let token = token_with(r#"{"sub":"system:serviceaccount:ops:ctl"}"#);
        std::fs::write(&path, format!("{}\n", token.expose()))?;
        let (read, identity) = ServiceAccountToken::at(&path).read()?;
        assert_eq!(read, token);
        assert_eq!(identity.service_account, "ctl");

        let missing = ServiceAccountToken::at(folder.path().join("absent")).read();
        let message = missing.err().unwrap_or_default();
        assert!(message.contains("absent"), "{message}");
        Ok(())
    }
}
