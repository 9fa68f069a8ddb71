//! One client for every per-pod call to Vault or OpenBao.
//!
//! [`VaultPodClient`] dials the pod's own address and checks the server's certificate for
//! the pod's DNS name against the given CA, with no proxy and nothing read from the
//! environment. The `sys/` endpoints that unsealing needs and `vaultrs` lacks are typed here
//! ([`types`]); everything else goes through `vaultrs` with [`VaultPodClient::authed`].

pub mod types;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderValue};
use reqwest::{Method, StatusCode, Url};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tracing::debug;
use vaultrs::client::VaultClient;
use zeroize::{Zeroize, Zeroizing};

pub use types::{
    AutopilotState, Flavor, Health, InitRequest, InitResponse, Leader, RaftConfiguration,
    RaftServer, SealStatus,
};

use crate::Secret;

/// How long one request may take when the caller does not say.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// How long `sys/init` may take.
pub const INIT_TIMEOUT: Duration = Duration::from_secs(120);

/// Where one Vault pod is reached.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodEndpoint {
    /// The pod's name, used in logs and errors.
    pub pod: String,
    /// The pod's IP address and API port: the only address dialled.
    pub address: SocketAddr,
    /// The DNS name the server certificate must be valid for, such as
    /// `vault-0.vault-internal`.
    pub server_name: String,
}

/// A failed call to one Vault pod. Each message names the pod and the operation.
#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    /// The client could not be built.
    #[error("building the Vault client for pod {pod}: {reason}")]
    Build {
        /// The pod.
        pod: String,
        /// What is wrong.
        reason: String,
    },
    /// The request did not get an answer.
    #[error("{operation} on pod {pod}: {}", with_causes(source))]
    Transport {
        /// The pod.
        pod: String,
        /// What was asked.
        operation: &'static str,
        /// The connection or TLS error.
        #[source]
        source: reqwest::Error,
    },
    /// Vault answered with an error status.
    #[error("{operation} on pod {pod}: Vault answered {status}: {errors}")]
    Status {
        /// The pod.
        pod: String,
        /// What was asked.
        operation: &'static str,
        /// The HTTP status.
        status: u16,
        /// Vault's error messages, joined.
        errors: String,
    },
    /// The answer did not have the expected shape.
    #[error("{operation} on pod {pod}: unexpected answer: {reason}")]
    Decode {
        /// The pod.
        pod: String,
        /// What was asked.
        operation: &'static str,
        /// The parse error, without the body (it may hold a key).
        reason: String,
    },
    /// A call made through `vaultrs` failed.
    #[error("{operation} on pod {pod}: {source}")]
    Client {
        /// The pod.
        pod: String,
        /// What was asked.
        operation: &'static str,
        /// The `vaultrs` error.
        #[source]
        source: Box<vaultrs::error::ClientError>,
    },
}

impl VaultError {
    /// The HTTP status Vault answered with, if it answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Status { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// A client for one Vault pod. Cheap to clone: clones share the connection pool.
#[derive(Clone)]
pub struct VaultPodClient {
    endpoint: PodEndpoint,
    base: Url,
    http: reqwest::Client,
    timeout: Duration,
}

impl std::fmt::Debug for VaultPodClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VaultPodClient")
            .field("endpoint", &self.endpoint)
            .finish_non_exhaustive()
    }
}

/// A TLS configuration that trusts only the certificates of `ca_pem`.
pub fn tls_config(ca_pem: &[u8]) -> Result<rustls::ClientConfig, String> {
    let mut roots = rustls::RootCertStore::empty();
    let mut found = 0;
    for cert in CertificateDer::pem_slice_iter(ca_pem) {
        let cert = cert.map_err(|error| format!("reading the CA certificate: {error}"))?;
        roots
            .add(cert)
            .map_err(|error| format!("adding the CA certificate: {error}"))?;
        found += 1;
    }
    if found == 0 {
        return Err("the CA bundle holds no certificate".to_string());
    }

    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|error| format!("choosing TLS versions: {error}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(config)
}

/// How a client checks the certificate a Vault pod presents.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Trust {
    /// The listener has TLS switched off: plain HTTP.
    Plain,
    /// Only the certificates of this CA bundle (PEM).
    Ca(String),
    /// The system's roots: a user's certificate from a public CA, with no CA named.
    SystemRoots,
}

/// A TLS configuration that trusts no certificate, for clients that speak plain HTTP.
fn no_trust_tls_config() -> Result<rustls::ClientConfig, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|error| format!("choosing TLS versions: {error}"))
        .map(|builder| {
            builder
                .with_root_certificates(rustls::RootCertStore::empty())
                .with_no_client_auth()
        })
}

/// A TLS configuration that trusts the system's root certificates.
fn system_tls_config() -> Result<rustls::ClientConfig, String> {
    let mut roots = rustls::RootCertStore::empty();
    let found = rustls_native_certs::load_native_certs();
    let (added, _) = roots.add_parsable_certificates(found.certs);
    if added == 0 {
        return Err("the system has no root certificates to trust".to_string());
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|error| format!("choosing TLS versions: {error}"))
        .map(|builder| builder.with_root_certificates(roots).with_no_client_auth())
}

impl VaultPodClient {
    /// A client that dials `endpoint.address` and trusts only `ca_pem` (PEM, one or more
    /// certificates) for `endpoint.server_name`. Each request may take `timeout`.
    pub fn new(
        endpoint: PodEndpoint,
        ca_pem: &[u8],
        timeout: Duration,
    ) -> Result<Self, VaultError> {
        let ca = String::from_utf8_lossy(ca_pem).into_owned();
        Self::with_trust(endpoint, &Trust::Ca(ca), timeout)
    }

    /// A client that dials `endpoint.address` and checks the server the way `trust` says.
    pub fn with_trust(
        endpoint: PodEndpoint,
        trust: &Trust,
        timeout: Duration,
    ) -> Result<Self, VaultError> {
        let build_error = |reason: String| VaultError::Build {
            pod: endpoint.pod.clone(),
            reason,
        };
        let plain = *trust == Trust::Plain;
        let tls = match trust {
            // reqwest builds a TLS backend even for plain HTTP, and panics without a
            // process-wide crypto provider: give it one that trusts nothing instead.
            Trust::Plain => no_trust_tls_config().map_err(build_error)?,
            Trust::Ca(ca_pem) => tls_config(ca_pem.as_bytes()).map_err(build_error)?,
            Trust::SystemRoots => system_tls_config().map_err(build_error)?,
        };
        let scheme = if plain { "http" } else { "https" };
        let base = format!(
            "{scheme}://{}:{}/",
            endpoint.server_name,
            endpoint.address.port()
        );
        let base = Url::parse(&base)
            .map_err(|error| build_error(format!("server name {base:?}: {error}")))?;

        // The pod's name resolves to the pod's address and nowhere else; no proxy from the
        // environment may sit between the controller and the keys it sends.
        let mut http = reqwest::Client::builder()
            .no_proxy()
            .resolve(&endpoint.server_name, endpoint.address)
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(5)));
        http = http.tls_backend_preconfigured(tls).https_only(!plain);
        let http = http
            .build()
            .map_err(|error| build_error(format!("{error}")))?;
        Ok(Self {
            endpoint,
            base,
            http,
            timeout,
        })
    }

    /// The pod this client talks to.
    pub fn pod(&self) -> &str {
        &self.endpoint.pod
    }

    /// `https` or `http`, as the pod's listener serves.
    pub fn scheme(&self) -> &str {
        self.base.scheme()
    }

    /// Where this client dials.
    pub fn endpoint(&self) -> &PodEndpoint {
        &self.endpoint
    }

    /// `GET sys/seal-status`: whether the pod is initialised and sealed.
    pub async fn seal_status(&self) -> Result<SealStatus, VaultError> {
        self.call(
            "reading the seal status",
            Method::GET,
            "sys/seal-status",
            None,
            None::<&()>,
        )
        .await
    }

    /// `GET sys/health`, answered with 200 in every state.
    pub async fn health(&self) -> Result<Health, VaultError> {
        let path = "sys/health?standbyok=true&perfstandbyok=true&sealedcode=200\
                    &uninitcode=200&drsecondarycode=200&performancestandbycode=200";
        self.call("reading the health", Method::GET, path, None, None::<&()>)
            .await
    }

    /// `GET sys/leader`: the active node, as this pod knows it.
    pub async fn leader(&self) -> Result<Leader, VaultError> {
        self.call(
            "reading the leader",
            Method::GET,
            "sys/leader",
            None,
            None::<&()>,
        )
        .await
    }

    /// Asks the server whether it is OpenBao or HashiCorp Vault; `None` when it says
    /// neither in a way this version knows.
    pub async fn flavor(&self) -> Result<Option<Flavor>, VaultError> {
        let status = self.seal_status().await?;
        if let Some(flavor) = status.flavor() {
            return Ok(Some(flavor));
        }

        // HashiCorp Vault 1.16 and later say `enterprise` in the health answer.
        let health = self.health().await?;
        Ok(health.enterprise.map(|_| Flavor::Vault))
    }

    /// `POST sys/init`. The answer holds every key share and the root token.
    pub async fn init(&self, request: InitRequest) -> Result<InitResponse, VaultError> {
        #[derive(Serialize)]
        struct Body {
            #[serde(skip_serializing_if = "Option::is_none")]
            secret_shares: Option<u32>,
            #[serde(skip_serializing_if = "Option::is_none")]
            secret_threshold: Option<u32>,
            #[serde(skip_serializing_if = "Option::is_none")]
            recovery_shares: Option<u32>,
            #[serde(skip_serializing_if = "Option::is_none")]
            recovery_threshold: Option<u32>,
        }
        let body = if request.recovery {
            Body {
                secret_shares: None,
                secret_threshold: None,
                recovery_shares: Some(request.shares),
                recovery_threshold: Some(request.threshold),
            }
        } else {
            Body {
                secret_shares: Some(request.shares),
                secret_threshold: Some(request.threshold),
                recovery_shares: None,
                recovery_threshold: None,
            }
        };
        // Initialising Raft storage elects a leader first, which can take far longer than
        // the client's limit; an answer given up on loses the keys it carried.
        let timeout = Some(INIT_TIMEOUT.max(self.timeout));
        self.send(
            "initialising",
            Method::POST,
            "sys/init",
            None,
            Some(&body),
            timeout,
        )
        .await
    }

    /// `POST sys/unseal` with one key share; the answer says the progress.
    pub async fn unseal(&self, key: &Secret) -> Result<SealStatus, VaultError> {
        #[derive(Serialize)]
        struct Body<'a> {
            key: &'a str,
        }
        let body = Body { key: key.expose() };
        self.call("unsealing", Method::POST, "sys/unseal", None, Some(&body))
            .await
    }

    /// `POST sys/unseal` with `reset`: forgets the shares submitted so far.
    pub async fn unseal_reset(&self) -> Result<SealStatus, VaultError> {
        let body = serde_json::json!({"reset": true});
        self.call(
            "resetting the unseal progress",
            Method::POST,
            "sys/unseal",
            None,
            Some(&body),
        )
        .await
    }

    /// `POST sys/storage/raft/join`: asks this pod to join the Raft cluster led at
    /// `leader_api_addr`. Vault answers `joined: true` even when the join cannot finish until
    /// the pod is unsealed, so check membership with [`Self::raft_configuration`].
    pub async fn raft_join(
        &self,
        leader_api_addr: &str,
        leader_ca_cert: Option<&str>,
        leader_tls_servername: Option<&str>,
    ) -> Result<bool, VaultError> {
        #[derive(Serialize)]
        struct Body<'a> {
            leader_api_addr: &'a str,
            #[serde(skip_serializing_if = "Option::is_none")]
            leader_ca_cert: Option<&'a str>,
            #[serde(skip_serializing_if = "Option::is_none")]
            leader_tls_servername: Option<&'a str>,
        }
        #[derive(serde::Deserialize)]
        struct Joined {
            #[serde(default)]
            joined: bool,
        }
        let body = Body {
            leader_api_addr,
            leader_ca_cert,
            leader_tls_servername,
        };
        let joined: Joined = self
            .call(
                "joining the Raft cluster",
                Method::POST,
                "sys/storage/raft/join",
                None,
                Some(&body),
            )
            .await?;
        Ok(joined.joined)
    }

    /// `GET sys/storage/raft/configuration`: the Raft peers, as the leader knows them.
    pub async fn raft_configuration(
        &self,
        token: &Secret,
    ) -> Result<RaftConfiguration, VaultError> {
        #[derive(serde::Deserialize)]
        struct Data {
            data: Config,
        }
        #[derive(serde::Deserialize)]
        struct Config {
            config: RaftConfiguration,
        }
        let path = "sys/storage/raft/configuration";
        let data: Data = self
            .call(
                "reading the Raft configuration",
                Method::GET,
                path,
                Some(token),
                None::<&()>,
            )
            .await?;
        Ok(data.data.config)
    }

    /// `POST sys/storage/raft/remove-peer`: takes the peer `server_id` out of the Raft
    /// cluster. Any unsealed peer forwards it to the leader.
    pub async fn raft_remove_peer(
        &self,
        token: &Secret,
        server_id: &str,
    ) -> Result<(), VaultError> {
        let body = serde_json::json!({ "server_id": server_id });
        let _: serde_json::Value = self
            .call(
                "removing a Raft peer",
                Method::POST,
                "sys/storage/raft/remove-peer",
                Some(token),
                Some(&body),
            )
            .await?;
        Ok(())
    }

    /// `POST auth/<mount>/login` of Kubernetes auth: a token for `role`, in exchange for a
    /// ServiceAccount token, and how long it lives.
    pub async fn kubernetes_login(
        &self,
        mount: &str,
        role: &str,
        service_account_token: &Secret,
    ) -> Result<(Secret, Duration), VaultError> {
        #[derive(Serialize)]
        struct Body<'a> {
            role: &'a str,
            jwt: &'a str,
        }
        #[derive(serde::Deserialize)]
        struct Login {
            auth: Auth,
        }
        #[derive(serde::Deserialize)]
        struct Auth {
            client_token: Secret,
            #[serde(default)]
            lease_duration: u64,
        }
        let body = Body {
            role,
            jwt: service_account_token.expose(),
        };
        let login: Login = self
            .call(
                "logging in with Kubernetes auth",
                Method::POST,
                &format!("auth/{mount}/login"),
                None,
                Some(&body),
            )
            .await?;
        let lifetime = Duration::from_secs(login.auth.lease_duration);
        Ok((login.auth.client_token, lifetime))
    }

    /// `GET sys/storage/raft/autopilot/state`: autopilot's view of the peers.
    pub async fn autopilot_state(&self, token: &Secret) -> Result<AutopilotState, VaultError> {
        #[derive(serde::Deserialize)]
        struct Data {
            data: AutopilotState,
        }
        let path = "sys/storage/raft/autopilot/state";
        let data: Data = self
            .call(
                "reading the autopilot state",
                Method::GET,
                path,
                Some(token),
                None::<&()>,
            )
            .await?;
        Ok(data.data)
    }

    /// A `vaultrs` client on this pod's connection, logged in with `token`, for the
    /// endpoints `vaultrs` has. Its copies of the token are wiped when it is dropped.
    pub fn authed(&self, token: &Secret) -> Result<AuthedClient, VaultError> {
        // Our connection (pod address, pinned CA, no proxy), not one vaultrs would build.
        let client =
            vault_keystore::vaultrs_client(&self.base, self.http.clone(), self.timeout, token);
        Ok(AuthedClient {
            pod: self.endpoint.pod.clone(),
            client,
            raw: self.clone(),
            token: token.clone(),
        })
    }

    /// Sends one request and reads a JSON answer. The body is read into memory that is
    /// wiped afterwards, since answers such as `sys/init`'s hold keys.
    async fn call<T: DeserializeOwned>(
        &self,
        operation: &'static str,
        method: Method,
        path: &str,
        token: Option<&Secret>,
        body: Option<&impl Serialize>,
    ) -> Result<T, VaultError> {
        self.send(operation, method, path, token, body, None).await
    }

    /// [`Self::call`], with a time limit of its own instead of the client's.
    async fn send<T: DeserializeOwned>(
        &self,
        operation: &'static str,
        method: Method,
        path: &str,
        token: Option<&Secret>,
        body: Option<&impl Serialize>,
        timeout: Option<Duration>,
    ) -> Result<T, VaultError> {
        let url = self
            .base
            .join(&format!("v1/{path}"))
            .map_err(|error| VaultError::Build {
                pod: self.endpoint.pod.clone(),
                reason: format!("path {path}: {error}"),
            })?;
        let mut headers = HeaderMap::new();
        if let Some(token) = token {
            let mut value =
                HeaderValue::from_str(token.expose()).map_err(|_| VaultError::Build {
                    pod: self.endpoint.pod.clone(),
                    reason: "the token is not a valid header value".to_string(),
                })?;
            value.set_sensitive(true);
            headers.insert("X-Vault-Token", value);
        }
        // A GET is safe to send twice: the first may go out on a pooled connection to a
        // server that has since restarted (pods restart, that is what we are here for).
        let retry_get = method == Method::GET;
        let mut request = self.http.request(method, url).headers(headers);
        if let Some(timeout) = timeout {
            request = request.timeout(timeout);
        }
        if let Some(body) = body {
            // TODO(wiping request bodies): reqwest owns the body bytes and does not wipe them.
            let bytes =
                Zeroizing::new(
                    serde_json::to_vec(body).map_err(|error| VaultError::Decode {
                        pod: self.endpoint.pod.clone(),
                        operation,
                        reason: format!("encoding the request: {error}"),
                    })?,
                );
            request = request
                .header("Content-Type", "application/json")
                .body(bytes.to_vec());
        }

        debug!(pod = %self.endpoint.pod, operation, path, "vault request");
        let transport = |source| VaultError::Transport {
            pod: self.endpoint.pod.clone(),
            operation,
            source,
        };
        let response = match (retry_get, request.try_clone()) {
            (true, Some(again)) => match request.send().await {
                Ok(response) => response,
                Err(error) => {
                    debug!(pod = %self.endpoint.pod, operation, %error, "retrying once");
                    again.send().await.map_err(transport)?
                }
            },
            _ => request.send().await.map_err(transport)?,
        };
        let status = response.status();
        let mut bytes = Zeroizing::new(Vec::from(response.bytes().await.map_err(transport)?));

        if !status.is_success() {
            return Err(VaultError::Status {
                pod: self.endpoint.pod.clone(),
                operation,
                status: status.as_u16(),
                errors: vault_errors(&bytes),
            });
        }
        if status == StatusCode::NO_CONTENT || bytes.is_empty() {
            bytes.zeroize();
            bytes = Zeroizing::new(b"null".to_vec());
        }
        serde_json::from_slice(&bytes).map_err(|error| VaultError::Decode {
            pod: self.endpoint.pod.clone(),
            operation,
            reason: vault_keystore::json_error(&error),
        })
    }
}

/// `error` and what caused it, such as a refused connection or a timeout, which reqwest's
/// own message ("error sending request") leaves out.
fn with_causes(error: &reqwest::Error) -> String {
    let mut message = error.to_string();
    let mut cause = std::error::Error::source(error);
    while let Some(inner) = cause {
        message.push_str(": ");
        message.push_str(&inner.to_string());
        cause = inner.source();
    }
    message
}

/// Vault's `errors` list from an error answer. Vault's error messages never echo a key.
fn vault_errors(body: &[u8]) -> String {
    #[derive(serde::Deserialize)]
    struct Errors {
        #[serde(default)]
        errors: Vec<String>,
    }
    match serde_json::from_slice::<Errors>(body) {
        Ok(errors) if !errors.errors.is_empty() => errors
            .errors
            .iter()
            .map(|e| e.trim().replace('\n', " "))
            .collect::<Vec<_>>()
            .join("; "),
        _ => "no error message".to_string(),
    }
}

/// A `vaultrs` client bound to one pod and logged in. Pass [`AuthedClient::client`] to any
/// `vaultrs` function.
pub struct AuthedClient {
    pod: String,
    client: VaultClient,
    /// The same connection, for [`AuthedClient::request`].
    raw: VaultPodClient,
    token: Secret,
}

impl AuthedClient {
    /// The `vaultrs` client.
    pub fn client(&self) -> &VaultClient {
        &self.client
    }

    /// The pod it talks to.
    pub fn pod(&self) -> &str {
        &self.pod
    }

    /// Sends one request to any path under `/v1/` with this client's token, for what
    /// `vaultrs` lacks or types too narrowly (free-form configuration). Gives the whole JSON
    /// answer, `null` when Vault answers with no body; an error status is
    /// [`VaultError::Status`] carrying Vault's messages and never the body.
    pub async fn request(
        &self,
        operation: &'static str,
        method: Method,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<serde_json::Value, VaultError> {
        self.raw
            .call(operation, method, path, Some(&self.token), body)
            .await
    }

    /// Asks the server whether it is OpenBao or HashiCorp Vault.
    pub async fn flavor(&self) -> Result<Option<Flavor>, VaultError> {
        self.raw.flavor().await
    }

    /// Wraps a `vaultrs` error with this pod and an operation.
    pub fn error(
        &self,
        operation: &'static str,
        source: vaultrs::error::ClientError,
    ) -> VaultError {
        VaultError::Client {
            pod: self.pod.clone(),
            operation,
            source: Box::new(source),
        }
    }
}

impl Drop for AuthedClient {
    fn drop(&mut self) {
        self.client.settings.token.zeroize();
        self.client.middle.token.zeroize();
    }
}
