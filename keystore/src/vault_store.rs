//! A key store in the KV v2 engine of another Vault or OpenBao.
//!
//! The layout is Bank-Vaults' (`pkg/kv/vault/vault.go` in bank-vaults/bank-vaults), so that
//! either operator reads the keys the other wrote: `unsealKeysPath` is the API path as
//! Bank-Vaults writes to it, `<mount>/data/<folder>` (the `data/` may be left out here), and
//! key `vault-unseal-0` is the secret `<folder>/vault-unseal-0`, whose one field is named
//! after the key and holds the value's bytes in standard base64 (how Go encodes `[]byte`).

use std::collections::HashMap;
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use reqwest::Url;
use tokio::sync::Mutex;
use tracing::debug;
use vaultrs::api::EndpointMiddleware;
use vaultrs::client::{VaultClient, VaultClientSettings};
use vaultrs::error::ClientError;
use zeroize::Zeroizing;

use crate::{KeyStore, KeyStoreError, Secret};

/// Where a pod's service-account token is mounted.
const SERVICE_ACCOUNT_TOKEN: &str = "/var/run/secrets/kubernetes.io/serviceaccount/token";

/// How long one request may take.
const TIMEOUT: Duration = Duration::from_secs(10);

/// A key store in another Vault's KV v2 engine; see the [module documentation](self) for
/// the layout.
pub struct VaultKvKeyStore {
    base: Url,
    http: reqwest::Client,
    mount: String,
    folder: String,
    auth: Auth,
    /// The token in use, dropped when Vault refuses it so that the next call logs in again.
    token: Mutex<Option<Secret>>,
}

/// How the store gets its token.
enum Auth {
    Token(Secret),
    TokenFile(PathBuf),
    Kubernetes {
        mount: String,
        role: String,
        jwt_path: PathBuf,
    },
}

impl std::fmt::Debug for VaultKvKeyStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe())
    }
}

impl VaultKvKeyStore {
    /// A store for `spec`. It logs in on first use: with `token`, else with the token in
    /// the file `tokenPath`, else with Kubernetes auth as `role` at `authPath` (default
    /// `kubernetes`), presenting the pod's service-account token. An `https` address is
    /// checked against the system's root certificates.
    pub fn from_spec(spec: &vault_api::unseal::VaultKeyStore) -> Result<Self, KeyStoreError> {
        let address = spec.address.as_deref().unwrap_or_default();
        let refuse = |reason: String| KeyStoreError::Backend {
            store: format!("Vault {address}"),
            operation: "configuring",
            key: "unsealConfig.vault".to_string(),
            reason,
        };
        let base = Url::parse(address).map_err(|error| refuse(format!("address: {error}")))?;
        let (mount, folder) = split_keys_path(spec.unseal_keys_path.as_deref().unwrap_or(""))
            .ok_or_else(|| {
                refuse(
                    "unsealKeysPath must be <mount>/data/<path>, such as secret/data/vault".into(),
                )
            })?;
        let auth = match (&spec.token, &spec.token_path, &spec.role) {
            (Some(token), _, _) if !token.is_empty() => Auth::Token(Secret::from(token.as_str())),
            (_, Some(path), _) if !path.is_empty() => Auth::TokenFile(path.into()),
            (_, _, Some(role)) if !role.is_empty() => Auth::Kubernetes {
                mount: spec
                    .auth_path
                    .as_deref()
                    .filter(|path| !path.is_empty())
                    .unwrap_or("kubernetes")
                    .trim_matches('/')
                    .trim_start_matches("auth/")
                    .to_string(),
                role: role.clone(),
                jwt_path: SERVICE_ACCOUNT_TOKEN.into(),
            },
            _ => return Err(refuse("set one of token, tokenPath or role".to_string())),
        };
        // The login presents the controller's own ServiceAccount token: never in clear text
        // across a network.
        let loopback = base.host_str().is_some_and(|host| {
            host == "localhost"
                || host
                    .parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback())
        });
        if matches!(auth, Auth::Kubernetes { .. }) && base.scheme() != "https" && !loopback {
            return Err(refuse(
                "Kubernetes auth sends the controller's ServiceAccount token: use an https \
                 address"
                    .to_string(),
            ));
        }

        let tls = system_tls_config().map_err(refuse)?;
        let http = reqwest::Client::builder()
            .timeout(TIMEOUT)
            .tls_backend_preconfigured(tls)
            .build()
            .map_err(|error| refuse(format!("building the HTTP client: {error}")))?;
        Ok(Self {
            base,
            http,
            mount,
            folder,
            auth,
            token: Mutex::new(None),
        })
    }

    /// Reads the service-account token for Kubernetes auth from `path` instead of the
    /// pod's mount (for tests).
    pub fn with_service_account_token(mut self, path: impl Into<PathBuf>) -> Self {
        if let Auth::Kubernetes { jwt_path, .. } = &mut self.auth {
            *jwt_path = path.into();
        }
        self
    }

    fn error(&self, operation: &'static str, key: &str, reason: String) -> KeyStoreError {
        KeyStoreError::Backend {
            store: self.describe(),
            operation,
            key: key.to_string(),
            reason,
        }
    }

    fn secret_path(&self, key: &str) -> String {
        match self.folder.as_str() {
            "" => key.to_string(),
            folder => format!("{folder}/{key}"),
        }
    }

    /// A token: the one in use, or a new one from the auth method.
    async fn token(&self) -> Result<Secret, String> {
        let mut cached = self.token.lock().await;
        if let Some(token) = cached.as_ref() {
            return Ok(token.clone());
        }
        let token = match &self.auth {
            Auth::Token(token) => token.clone(),
            Auth::TokenFile(path) => read_secret_file(path)?,
            Auth::Kubernetes {
                mount,
                role,
                jwt_path,
            } => {
                let jwt = read_secret_file(jwt_path)?;
                let client = self.client(&Secret::default());
                let login = vaultrs::auth::kubernetes::login(&client, mount, role, jwt.expose())
                    .await
                    .map_err(|error| {
                        format!(
                            "logging in with Kubernetes auth at auth/{mount}: {}",
                            reason(&error)
                        )
                    })?;
                debug!(store = %self.describe(), "logged in with Kubernetes auth");
                Secret::new(login.client_token)
            }
        };
        *cached = Some(token.clone());
        Ok(token)
    }

    /// A `vaultrs` client on our connection, sending `token`.
    fn client(&self, token: &Secret) -> VaultClient {
        vaultrs_client(&self.base, self.http.clone(), TIMEOUT, token)
    }

    /// Runs `call` with a token; when Vault refuses the token (expired, say), logs in again
    /// and runs it once more.
    async fn with_token<T, F, Fut>(&self, call: F) -> Result<T, String>
    where
        F: Fn(Arc<VaultClient>) -> Fut,
        Fut: Future<Output = Result<T, ClientError>>,
    {
        let token = self.token().await?;
        match call(Arc::new(self.client(&token))).await {
            Err(ClientError::APIError { code: 403, .. }) => {
                *self.token.lock().await = None;
                let token = self.token().await?;
                call(Arc::new(self.client(&token)))
                    .await
                    .map_err(|error| reason(&error))
            }
            other => other.map_err(|error| reason(&error)),
        }
    }
}

/// A `vaultrs` client that sends its requests over `http`, a client the caller built (its
/// TLS trust, proxy and name resolution), to `base`, with `token`. Each request may take
/// `timeout`.
pub fn vaultrs_client(
    base: &Url,
    http: reqwest::Client,
    timeout: Duration,
    token: &Secret,
) -> VaultClient {
    let settings = VaultClientSettings {
        address: base.clone(),
        ca_certs: Vec::new(),
        identity: None,
        timeout: Some(timeout),
        token: String::new(),
        verify: true,
        version: 1,
        wrapping: false,
        namespace: None,
        proxy: None,
    };
    VaultClient {
        http: rustify::clients::reqwest::Client::new(base.as_str(), http),
        middle: EndpointMiddleware {
            token: token.expose().to_string(),
            version: "v1".to_string(),
            wrap: None,
            namespace: None,
        },
        settings,
    }
}

/// Mount and folder of `<mount>/data/<folder>` (or `<mount>/<folder>`).
fn split_keys_path(path: &str) -> Option<(String, String)> {
    let path = path.trim_matches('/');
    let (mount, rest) = path.split_once('/').unwrap_or((path, ""));
    let folder = match rest.strip_prefix("data") {
        Some("") => "",
        Some(after) if after.starts_with('/') => &after[1..],
        _ => rest,
    };
    (!mount.is_empty()).then(|| (mount.to_string(), folder.trim_matches('/').to_string()))
}

/// A token or JWT from a file, without the line end an editor adds.
fn read_secret_file(path: &std::path::Path) -> Result<Secret, String> {
    let bytes = std::fs::read(path)
        .map_err(|error| format!("reading the token file {}: {error}", path.display()))?;
    let text = Secret::from_bytes(bytes)
        .ok_or_else(|| format!("the token file {} is not UTF-8", path.display()))?;
    Ok(Secret::from(text.expose().trim()))
}

/// Vault's answer, or what kept it from answering. Vault's error messages name paths and
/// permissions, never a token or a value.
fn reason(error: &ClientError) -> String {
    match error {
        ClientError::APIError { code, errors } if errors.is_empty() => {
            format!("Vault answered {code}")
        }
        ClientError::APIError { code, errors } => {
            format!("Vault answered {code}: {}", errors.join("; "))
        }
        ClientError::RestClientError { source } => {
            let mut text = source.to_string();
            let mut cause = std::error::Error::source(source);
            while let Some(next) = cause {
                text.push_str(&format!(": {next}"));
                cause = next.source();
            }
            text
        }
        other => other.to_string(),
    }
}

/// The TLS configuration for an `https` address: the system's root certificates, on ring.
fn system_tls_config() -> Result<rustls::ClientConfig, String> {
    let mut roots = rustls::RootCertStore::empty();
    let found = rustls_native_certs::load_native_certs();
    roots.add_parsable_certificates(found.certs);
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|error| format!("choosing TLS versions: {error}"))
        .map(|builder| builder.with_root_certificates(roots).with_no_client_auth())
}

fn is_not_found(error: &ClientError) -> bool {
    matches!(error, ClientError::APIError { code: 404, .. })
}

#[async_trait]
impl KeyStore for VaultKvKeyStore {
    fn describe(&self) -> String {
        format!("Vault {} KV {}/data/{}", self.base, self.mount, self.folder)
    }

    async fn get(&self, key: &str) -> Result<Option<Secret>, KeyStoreError> {
        let path = self.secret_path(key);
        let read = self
            .with_token(|client| {
                let path = path.clone();
                async move {
                    match vaultrs::kv2::read::<HashMap<String, Secret>>(
                        &*client,
                        &self.mount,
                        &path,
                    )
                    .await
                    {
                        Err(error) if is_not_found(&error) => Ok(None),
                        other => other.map(Some),
                    }
                }
            })
            .await
            .map_err(|reason| self.error("reading", key, reason))?;
        let Some(fields) = read else {
            return Ok(None);
        };

        let encoded = fields.get(key).ok_or_else(|| {
            self.error("reading", key, format!("the secret has no field {key:?}"))
        })?;
        let bytes = STANDARD
            .decode(encoded.expose().trim())
            .map(Zeroizing::new)
            .map_err(|_| self.error("reading", key, "the field is not base64".to_string()))?;
        Secret::from_bytes(bytes.to_vec())
            .map(Some)
            .ok_or_else(|| self.error("reading", key, "the value is not UTF-8".to_string()))
    }

    async fn set(&self, key: &str, value: &Secret) -> Result<(), KeyStoreError> {
        let path = self.secret_path(key);
        let encoded = Zeroizing::new(STANDARD.encode(value.expose()));
        let fields = HashMap::from([(key, encoded)]);
        self.with_token(|client| {
            let (path, fields) = (path.clone(), &fields);
            async move {
                vaultrs::kv2::set(&*client, &self.mount, &path, fields)
                    .await
                    .map(|_| ())
            }
        })
        .await
        .map_err(|reason| self.error("writing", key, reason))
    }

    async fn list(&self) -> Result<Vec<String>, KeyStoreError> {
        let names = self
            .with_token(|client| async move {
                match vaultrs::kv2::list(&*client, &self.mount, &self.folder).await {
                    Err(error) if is_not_found(&error) => Ok(Vec::new()),
                    other => other,
                }
            })
            .await
            .map_err(|reason| self.error("listing", "", reason))?;
        // Names ending in `/` are folders below ours, not keys.
        Ok(names
            .into_iter()
            .filter(|name| !name.ends_with('/'))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_path_as_bank_vaults_writes_it() {
        let split = |path| split_keys_path(path);
        assert_eq!(
            split("secret/data/unseal"),
            Some(("secret".into(), "unseal".into()))
        );
        assert_eq!(
            split("secret/unseal/a"),
            Some(("secret".into(), "unseal/a".into()))
        );
        assert_eq!(split("/kv/data/"), Some(("kv".into(), String::new())));
        assert_eq!(split("kv/database"), Some(("kv".into(), "database".into())));
        assert_eq!(split(""), None);
    }

    #[test]
    fn kubernetes_auth_never_sends_the_service_account_token_in_clear() {
        let spec = |address: &str| vault_api::unseal::VaultKeyStore {
            address: Some(address.to_string()),
            unseal_keys_path: Some("secret/data/vault".to_string()),
            role: Some("unsealer".to_string()),
            ..Default::default()
        };
        let refused = VaultKvKeyStore::from_spec(&spec("http://vault.other:8200"));
        let message = refused.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(message.contains("use an https address"), "{message}");
        for address in ["https://vault.other:8200", "http://127.0.0.1:8200"] {
            assert!(
                VaultKvKeyStore::from_spec(&spec(address)).is_ok(),
                "{address}"
            );
        }
    }
}
