//! `unsealConfig.azure`: values kept as Azure Key Vault secrets, one secret per key, through
//! Microsoft's SDK (azure_security_keyvault_secrets and azure_identity), over the
//! workspace's reqwest with ring.
//!
//! The layout is Bank-Vaults' (`pkg/kv/azurekv/keyvault.go`), so that either operator reads
//! the keys the other wrote: the secret is named as the key (`vault-unseal-0`,
//! `vault-root`, ...) after `keyPrefix`, which is empty unless set and which Bank-Vaults
//! does not have, and its value is the key's text as it is. Bank-Vaults passes names to
//! Key Vault unchanged, and Key Vault takes only letters, digits and dashes: a prefix or key
//! with any other character is refused rather than rewritten, since a rewritten name would
//! differ from Bank-Vaults' and two names could become one.
//!
//! Endpoints and credentials come from the environment, as Azure's SDKs take them:
//! - `AZURE_TENANT_ID` and `AZURE_CLIENT_ID`, with `AZURE_CLIENT_SECRET` (a service
//!   principal) or `AZURE_FEDERATED_TOKEN_FILE` (AKS workload identity); with neither, the
//!   node's managed identity (`AZURE_CLIENT_ID`, if set, picks a user-assigned one).
//! - Or an SDK auth file (`az ad sp create-for-rbac --sdk-auth`, which Bank-Vaults reads
//!   from `AZURE_AUTH_LOCATION`), given to [`AzureCredentials::from_auth_file`].
//! - `AZURE_AUTHORITY_HOST`: the identity platform, by default
//!   `https://login.microsoftonline.com` (read by the SDK).
//! - `AZURE_KEYVAULT_URL`: the vault at this URL instead of
//!   `https://<keyVaultName>.vault.azure.net`, such as another cloud's vault domain. The SDK
//!   only sends tokens over https.

use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use azure_core::credentials::TokenCredential;
use azure_core::error::ErrorKind;
use azure_core::http::{ClientOptions, RequestContent, StatusCode, Transport};
use azure_identity::{
    ClientSecretCredential, ClientSecretCredentialOptions, ManagedIdentityCredential,
    ManagedIdentityCredentialOptions, UserAssignedId, WorkloadIdentityCredential,
    WorkloadIdentityCredentialOptions,
};
use azure_security_keyvault_secrets::models::SetSecretParameters;
use azure_security_keyvault_secrets::{ResourceExt, SecretClient, SecretClientOptions};
use futures::TryStreamExt;
use reqwest::Url;
use vault_api::unseal::AzureKeyStore;

use crate::cloud::{ApiErrorBody, SetupError, backend_error, http_client, shorten};
use crate::{KeyStore, KeyStoreError, Secret};

/// Longest secret name Key Vault takes.
const NAME_LIMIT: usize = 127;

/// How the store authenticates to Microsoft Entra ID.
#[derive(Clone, Debug)]
pub enum AzureCredentials {
    /// A service principal's client secret.
    ClientSecret {
        /// The directory (tenant) ID.
        tenant_id: String,
        /// The application (client) ID.
        client_id: String,
        /// The client secret.
        client_secret: Secret,
    },
    /// A federated token in a file, as AKS workload identity mounts it.
    WorkloadIdentity {
        /// The directory (tenant) ID.
        tenant_id: String,
        /// The application (client) ID.
        client_id: String,
        /// The file that holds the token, read again as it is rotated.
        token_file: PathBuf,
    },
    /// The node's managed identity, from the instance metadata service.
    ManagedIdentity {
        /// A user-assigned identity's client ID; `None` for the system-assigned one.
        client_id: Option<String>,
    },
}

impl AzureCredentials {
    /// The service principal of an SDK auth file's `content` (JSON with `clientId`,
    /// `clientSecret` and `tenantId`). `source` names the file in errors, which never
    /// quote its content.
    pub fn from_auth_file(content: &[u8], source: &str) -> Result<Self, SetupError> {
        #[derive(serde::Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct AuthFile {
            client_id: String,
            client_secret: Secret,
            tenant_id: String,
        }

        let file: AuthFile =
            serde_json::from_slice(content).map_err(|error| SetupError::Credentials {
                source_name: source.to_string(),
                reason: format!("not an Azure SDK auth file: {}", crate::json_error(&error)),
            })?;
        Ok(Self::ClientSecret {
            tenant_id: file.tenant_id,
            client_id: file.client_id,
            client_secret: file.client_secret,
        })
    }
}

/// Where the store finds Key Vault and how it authenticates.
#[derive(Clone, Debug)]
pub struct AzureConfig {
    /// The vault's URL; `None` for `https://<keyVaultName>.vault.azure.net`.
    pub vault_url: Option<Url>,
    /// How to get access tokens.
    pub credentials: AzureCredentials,
    /// The client for Key Vault and the identity platform; `None` for one that verifies
    /// servers against the system's roots.
    pub http_client: Option<reqwest::Client>,
}

impl AzureConfig {
    /// The configuration the environment gives (see the module's documentation).
    pub fn from_env() -> Result<Self, SetupError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// The configuration from the variables `lookup` returns.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, SetupError> {
        let set = |name: &str| lookup(name).filter(|value| !value.is_empty());
        let vault_url = match set("AZURE_KEYVAULT_URL") {
            Some(url) => Some(Url::parse(&url).map_err(|error| SetupError::Invalid {
                name: "AZURE_KEYVAULT_URL".to_string(),
                reason: format!("{url} is not a URL: {error}"),
            })?),
            None => None,
        };

        let tenant_and_client = || match (set("AZURE_TENANT_ID"), set("AZURE_CLIENT_ID")) {
            (Some(tenant_id), Some(client_id)) => Ok((tenant_id, client_id)),
            (None, _) => Err(missing("AZURE_TENANT_ID")),
            (_, None) => Err(missing("AZURE_CLIENT_ID")),
        };
        let credentials = if let Some(secret) = set("AZURE_CLIENT_SECRET") {
            let (tenant_id, client_id) = tenant_and_client()?;
            AzureCredentials::ClientSecret {
                tenant_id,
                client_id,
                client_secret: Secret::new(secret),
            }
        } else if let Some(file) = set("AZURE_FEDERATED_TOKEN_FILE") {
            let (tenant_id, client_id) = tenant_and_client()?;
            AzureCredentials::WorkloadIdentity {
                tenant_id,
                client_id,
                token_file: file.into(),
            }
        } else {
            AzureCredentials::ManagedIdentity {
                client_id: set("AZURE_CLIENT_ID"),
            }
        };
        Ok(Self {
            vault_url,
            credentials,
            http_client: None,
        })
    }
}

fn missing(name: &str) -> SetupError {
    SetupError::Credentials {
        source_name: "the environment".to_string(),
        reason: format!("{name} is not set"),
    }
}

/// The token credential `credentials` describe, sending its requests with `transport`.
fn token_credential(
    credentials: AzureCredentials,
    transport: Transport,
) -> azure_core::Result<Arc<dyn TokenCredential>> {
    let client_options = ClientOptions {
        transport: Some(transport),
        ..ClientOptions::default()
    };
    Ok(match credentials {
        AzureCredentials::ClientSecret {
            tenant_id,
            client_id,
            client_secret,
        } => {
            let secret = client_secret.expose().to_string().into();
            let options = ClientSecretCredentialOptions { client_options };
            ClientSecretCredential::new(&tenant_id, client_id, secret, Some(options))?
        }
        AzureCredentials::WorkloadIdentity {
            tenant_id,
            client_id,
            token_file,
        } => {
            let mut options = WorkloadIdentityCredentialOptions {
                tenant_id: Some(tenant_id),
                client_id: Some(client_id),
                token_file_path: Some(token_file),
                ..WorkloadIdentityCredentialOptions::default()
            };
            options.credential_options.client_options = client_options;
            WorkloadIdentityCredential::new(Some(options))?
        }
        AzureCredentials::ManagedIdentity { client_id } => {
            let options = ManagedIdentityCredentialOptions {
                user_assigned_id: client_id.map(UserAssignedId::ClientId),
                client_options,
            };
            ManagedIdentityCredential::new(Some(options))?
        }
    })
}

/// Why `name` cannot be a Key Vault secret name, if it cannot.
fn invalid_name(name: &str) -> Option<String> {
    if name.is_empty() || name.len() > NAME_LIMIT {
        return Some(format!(
            "Key Vault secret names have 1 to {NAME_LIMIT} characters"
        ));
    }
    if !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
        return Some("Key Vault secret names have only letters, digits and dashes".to_string());
    }
    None
}

/// What went wrong in `error`, for our errors: Key Vault's status, code, inner code and
/// message when it answered, else the SDK's text. Neither holds a value we sent.
fn failure_text(error: &azure_core::Error) -> String {
    let ErrorKind::HttpResponse {
        status,
        error_code,
        raw_response,
    } = error.kind()
    else {
        return shorten(&error_chain(error));
    };
    let status = format!("{status} {}", status.canonical_reason());
    let body = raw_response
        .as_ref()
        .and_then(|response| response.body().json::<ApiErrorBody>().ok());
    match (body, error_code) {
        (Some(body), _) => body.describe(&status),
        (None, Some(code)) => format!("{status} {code}"),
        (None, None) => status,
    }
}

/// `error` and its causes, joined: the SDK wraps what failed, such as a token request the
/// identity platform refused, in errors that only say it will not retry. A cause that another
/// already quotes is left out.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut next = Some(error);
    while let Some(cause) = next {
        parts.push(cause.to_string().replace('\n', " "));
        next = cause.source();
    }
    let quoted = |index: usize, part: &String| {
        parts
            .iter()
            .enumerate()
            .any(|(other, text)| other != index && text.contains(part.as_str()) && text != part)
            || parts[..index].contains(part)
    };
    let kept: Vec<&str> = parts
        .iter()
        .enumerate()
        .filter(|(index, part)| !quoted(*index, part))
        .map(|(_, part)| part.as_str())
        .collect();
    kept.join(": ")
}

/// A key store in an Azure Key Vault, one secret per key.
pub struct AzureKeyVaultStore {
    client: SecretClient,
    vault_name: String,
    prefix: String,
}

impl AzureKeyVaultStore {
    /// The store `spec` describes, with endpoints and credentials from the environment.
    pub fn from_spec(spec: &AzureKeyStore) -> Result<Self, SetupError> {
        Self::new(spec, AzureConfig::from_env()?)
    }

    /// The store `spec` describes, reached as `config` says.
    pub fn new(spec: &AzureKeyStore, config: AzureConfig) -> Result<Self, SetupError> {
        let vault_name = match spec.key_vault_name.as_deref() {
            Some(name) if !name.is_empty() => name.to_string(),
            _ => {
                return Err(SetupError::MissingField {
                    store: "azure",
                    field: "keyVaultName",
                });
            }
        };
        // Vault names are 3 to 24 letters, digits and dashes: anything else would make the
        // default URL point at another host.
        if !(3..=24).contains(&vault_name.len())
            || !vault_name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return Err(SetupError::Invalid {
                name: "unsealConfig.azure.keyVaultName".to_string(),
                reason: "a Key Vault name has 3 to 24 letters, digits and dashes".to_string(),
            });
        }
        let prefix = spec.key_prefix.clone().unwrap_or_default();
        if !prefix.is_empty()
            && let Some(reason) = invalid_name(&prefix)
        {
            return Err(SetupError::Invalid {
                name: "unsealConfig.azure.keyPrefix".to_string(),
                reason,
            });
        }

        let vault_url = match config.vault_url {
            Some(url) => url.to_string(),
            None => format!("https://{vault_name}.vault.azure.net"),
        };
        let http = match config.http_client {
            Some(http) => http,
            None => http_client()?,
        };
        let transport = Transport::new(Arc::new(http));
        let credential =
            token_credential(config.credentials, transport.clone()).map_err(|error| {
                SetupError::Credentials {
                    source_name: "the Azure credentials".to_string(),
                    reason: failure_text(&error),
                }
            })?;
        let options = SecretClientOptions {
            client_options: ClientOptions {
                transport: Some(transport),
                ..ClientOptions::default()
            },
            ..SecretClientOptions::default()
        };
        let client = SecretClient::new(&vault_url, credential, Some(options)).map_err(|error| {
            SetupError::Invalid {
                name: format!("the vault URL {vault_url}"),
                reason: failure_text(&error),
            }
        })?;
        Ok(Self {
            client,
            vault_name,
            prefix,
        })
    }

    /// The secret name of `key`, checked against Key Vault's rules.
    fn secret_name(&self, operation: &'static str, key: &str) -> Result<String, KeyStoreError> {
        let name = format!("{}{key}", self.prefix);
        match invalid_name(&name) {
            Some(reason) => Err(backend_error(self, operation, key, reason)),
            None => Ok(name),
        }
    }
}

#[async_trait]
impl KeyStore for AzureKeyVaultStore {
    fn describe(&self) -> String {
        if self.prefix.is_empty() {
            format!("Azure Key Vault {}", self.vault_name)
        } else {
            format!(
                "Azure Key Vault {} (prefix {})",
                self.vault_name, self.prefix
            )
        }
    }

    async fn get(&self, key: &str) -> Result<Option<Secret>, KeyStoreError> {
        let name = self.secret_name("reading", key)?;
        let failed =
            |error: azure_core::Error| backend_error(self, "reading", key, failure_text(&error));
        let response = match self.client.get_secret(&name, None).await {
            Ok(response) => response,
            Err(error) if error.http_status() == Some(StatusCode::NotFound) => return Ok(None),
            Err(error) => return Err(failed(error)),
        };
        // TODO(zeroize): the SDK parses the value into a String of its own, which is not
        // wiped; it moves into the Secret here, but the response bytes are not wiped.
        let secret = response.into_model().map_err(failed)?;
        match secret.value {
            Some(value) => Ok(Some(Secret::new(value))),
            None => Err(backend_error(
                self,
                "reading",
                key,
                "the secret has no value".to_string(),
            )),
        }
    }

    async fn set(&self, key: &str, value: &Secret) -> Result<(), KeyStoreError> {
        let name = self.secret_name("writing", key)?;
        let failed =
            |error: azure_core::Error| backend_error(self, "writing", key, failure_text(&error));
        let parameters = SetSecretParameters {
            value: Some(value.expose().to_string()),
            ..SetSecretParameters::default()
        };
        let body: RequestContent<SetSecretParameters> = parameters.try_into().map_err(failed)?;
        self.client
            .set_secret(&name, body, None)
            .await
            .map(drop)
            .map_err(failed)
    }

    async fn list(&self) -> Result<Vec<String>, KeyStoreError> {
        let failed = |error: azure_core::Error| {
            let reason = failure_text(&error);
            backend_error(self, "listing", "keys", reason)
        };
        let mut pager = self.client.list_secret_properties(None).map_err(failed)?;

        let mut keys = Vec::new();
        while let Some(properties) = pager.try_next().await.map_err(failed)? {
            let name = properties.resource_id().map_err(failed)?.name;
            if let Some(key) = name.strip_prefix(&self.prefix)
                && !key.is_empty()
            {
                keys.push(key.to_string());
            }
        }
        Ok(keys)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_sdk_auth_file_gives_a_service_principal() {
        let file = br#"{"clientId": "app-1", "clientSecret": "hidden-secret",
            "subscriptionId": "sub", "tenantId": "tenant-1",
            "activeDirectoryEndpointUrl": "https://login.microsoftonline.com"}"#;
        let credentials = AzureCredentials::from_auth_file(file, "Secret vault/azure-cred");
        let Ok(AzureCredentials::ClientSecret {
            tenant_id,
            client_id,
            client_secret,
        }) = credentials
        else {
            panic!("{credentials:?}");
        };
        assert_eq!(
            (tenant_id.as_str(), client_id.as_str()),
            ("tenant-1", "app-1")
        );
        assert_eq!(client_secret.expose(), "hidden-secret");

        let wrong = br#"{"clientId": "app-1", "clientSecret": 7, "tenantId": "t"}"#;
        let message = AzureCredentials::from_auth_file(wrong, "Secret vault/azure-cred")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(message.contains("Secret vault/azure-cred"), "{message}");
        let missing = br#"{"clientId": "app-1", "tenantId": "t"}"#;
        let message = AzureCredentials::from_auth_file(missing, "Secret vault/azure-cred")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            message.contains("missing field `clientSecret`"),
            "{message}"
        );
    }

    fn environment(name: &str) -> Option<String> {
        match name {
            "AZURE_TENANT_ID" => Some("tenant".to_string()),
            "AZURE_CLIENT_ID" => Some("client".to_string()),
            "AZURE_FEDERATED_TOKEN_FILE" => Some("/var/run/token".to_string()),
            "AZURE_KEYVAULT_URL" => Some("https://kv.vault.azure.cn".to_string()),
            _ => None,
        }
    }

    #[test]
    fn workload_identity_is_used_without_a_client_secret() -> Result<(), SetupError> {
        let config = AzureConfig::from_lookup(environment)?;
        let url = config.vault_url.as_ref().map(Url::as_str);
        assert_eq!(url, Some("https://kv.vault.azure.cn/"));
        let file = match &config.credentials {
            AzureCredentials::WorkloadIdentity { token_file, .. } => token_file.clone(),
            _ => PathBuf::new(),
        };
        assert_eq!(file, PathBuf::from("/var/run/token"));
        Ok(())
    }

    #[test]
    fn a_client_secret_needs_its_tenant() {
        let lookup = |name: &str| match name {
            "AZURE_CLIENT_SECRET" => Some("hidden-value".to_string()),
            "AZURE_TENANT_ID" => None,
            _ => environment(name),
        };
        let error = AzureConfig::from_lookup(lookup)
            .err()
            .map(|e| e.to_string());
        assert_eq!(
            error.as_deref(),
            Some("reading the environment: AZURE_TENANT_ID is not set")
        );
    }

    #[test]
    fn names_key_vault_refuses_are_refused() -> Result<(), SetupError> {
        let spec = |name: &str, prefix: &str| AzureKeyStore {
            key_vault_name: Some(name.to_string()),
            key_prefix: Some(prefix.to_string()),
        };
        // A client secret: workload identity would read its token file at once.
        let config = AzureConfig::from_lookup(|name| match name {
            "AZURE_CLIENT_SECRET" => Some("secret".to_string()),
            _ => environment(name),
        })?;
        let error = |name, prefix| {
            AzureKeyVaultStore::new(&spec(name, prefix), config.clone())
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default()
        };
        let bad_vault = "unsealConfig.azure.keyVaultName is not valid: a Key Vault name has \
                         3 to 24 letters, digits and dashes";
        assert_eq!(error("kv", ""), bad_vault);
        assert_eq!(error("vault.evil.example#", ""), bad_vault);
        assert_eq!(
            error("prod-vault", "team_a/"),
            "unsealConfig.azure.keyPrefix is not valid: Key Vault secret names have only \
             letters, digits and dashes"
        );
        assert_eq!(error("prod-vault", "team-a-"), "");
        Ok(())
    }
}
