//! The Kubernetes Secret key store (`unsealConfig.kubernetes`).

use std::collections::BTreeMap;

use async_trait::async_trait;
use base64::Engine;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret as KubeSecret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client};
use serde::ser::{Serialize, SerializeMap, Serializer};
use vault_api::Vault;
use vault_api::defaults::unseal_keys_secret_name;
use zeroize::Zeroize;

use super::{KeyStore, KeyStoreError};
use crate::Secret;

/// Label on the Secret naming the `Vault` whose keys it holds.
pub const VAULT_LABEL: &str = vault_api::defaults::CR_LABEL;

/// Which Secret holds the keys of a `Vault`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SecretLocation {
    /// The Secret's name.
    pub name: String,
    /// The Secret's namespace.
    pub namespace: String,
    /// The `Vault` it belongs to, written as a label (not an owner: the Secret outlives it).
    pub vault: String,
}

impl SecretLocation {
    /// The Secret `unsealConfig.kubernetes` names: `secretName`, default
    /// `<name>-unseal-keys`, in `secretNamespace`, default the resource's namespace. `None`
    /// when the resource has no name or namespace.
    pub fn for_vault(vault: &Vault) -> Option<Self> {
        let name = vault.metadata.name.clone()?;
        let kubernetes = vault
            .spec
            .unseal_config
            .as_ref()
            .and_then(|unseal| unseal.kubernetes.clone())
            .unwrap_or_default();
        let namespace = kubernetes
            .secret_namespace
            .or_else(|| vault.metadata.namespace.clone())?;
        Some(Self {
            name: kubernetes
                .secret_name
                .unwrap_or_else(|| unseal_keys_secret_name(&name)),
            namespace,
            vault: name,
        })
    }

    /// A new Secret holding one value, with no owner reference.
    pub fn new_secret(&self, key: &str, value: &[u8]) -> KubeSecret {
        KubeSecret {
            metadata: ObjectMeta {
                name: Some(self.name.clone()),
                namespace: Some(self.namespace.clone()),
                labels: Some(BTreeMap::from([(
                    VAULT_LABEL.to_string(),
                    self.vault.clone(),
                )])),
                ..ObjectMeta::default()
            },
            type_: Some("Opaque".to_string()),
            data: Some(BTreeMap::from([(
                key.to_string(),
                ByteString(value.to_vec()),
            )])),
            ..KubeSecret::default()
        }
    }
}

/// A merge patch that sets one key of a Secret's `data`. Its `Debug` shows the key only,
/// in case the client logs patches.
pub struct DataPatch<'a> {
    key: &'a str,
    value: &'a [u8],
}

impl<'a> DataPatch<'a> {
    /// The patch that sets `key` to `value`.
    pub fn new(key: &'a str, value: &'a [u8]) -> Self {
        Self { key, value }
    }
}

impl std::fmt::Debug for DataPatch<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "DataPatch({})", self.key)
    }
}

impl Serialize for DataPatch<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        struct Data<'a>(&'a str, &'a [u8]);
        impl Serialize for Data<'_> {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                let mut encoded = base64::engine::general_purpose::STANDARD.encode(self.1);
                let mut map = serializer.serialize_map(Some(1))?;
                let result = map.serialize_entry(self.0, &encoded);
                encoded.zeroize();
                result?;
                map.end()
            }
        }
        let mut map = serializer.serialize_map(Some(1))?;
        map.serialize_entry("data", &Data(self.key, self.value))?;
        map.end()
    }
}

/// Keys kept in one Kubernetes Secret, one data entry per key. The Secret is created on the
/// first write, with a label naming the `Vault` and no owner reference, so deleting the
/// `Vault` does not delete its keys.
#[derive(Clone)]
pub struct SecretKeyStore {
    api: Api<KubeSecret>,
    location: SecretLocation,
}

impl SecretKeyStore {
    /// A store in the Secret at `location`.
    pub fn new(client: Client, location: SecretLocation) -> Self {
        Self {
            api: Api::namespaced(client, &location.namespace),
            location,
        }
    }

    fn error(&self, operation: &'static str, key: &str, error: kube::Error) -> KeyStoreError {
        KeyStoreError::Backend {
            store: self.describe(),
            operation,
            key: key.to_string(),
            reason: error.to_string(),
        }
    }

    async fn data(&self, key: &str) -> Result<BTreeMap<String, ByteString>, KeyStoreError> {
        let secret = self
            .api
            .get_opt(&self.location.name)
            .await
            .map_err(|error| self.error("reading", key, error))?;
        Ok(secret.and_then(|secret| secret.data).unwrap_or_default())
    }
}

fn status_code(error: &kube::Error) -> Option<u16> {
    match error {
        kube::Error::Api(status) => Some(status.code),
        _ => None,
    }
}

#[async_trait]
impl KeyStore for SecretKeyStore {
    fn describe(&self) -> String {
        format!("Secret {}/{}", self.location.namespace, self.location.name)
    }

    async fn get(&self, key: &str) -> Result<Option<Secret>, KeyStoreError> {
        let Some(bytes) = self.get_bytes(key).await? else {
            return Ok(None);
        };
        vault_keystore::text_value(self, key, bytes).map(Some)
    }

    async fn set(&self, key: &str, value: &Secret) -> Result<(), KeyStoreError> {
        self.set_bytes(key, value.expose().as_bytes()).await
    }

    // A Secret holds bytes: kept raw, as Bank-Vaults keeps the HSM's ciphertext.
    async fn get_bytes(&self, key: &str) -> Result<Option<Vec<u8>>, KeyStoreError> {
        let mut data = self.data(key).await?;
        let value = data.remove(key);
        for other in data.values_mut() {
            other.0.zeroize();
        }
        Ok(value.map(|bytes| bytes.0))
    }

    async fn set_bytes(&self, key: &str, value: &[u8]) -> Result<(), KeyStoreError> {
        let patch = Patch::Merge(DataPatch::new(key, value));
        let params = PatchParams::default();
        match self.api.patch(&self.location.name, &params, &patch).await {
            Ok(mut secret) => {
                wipe(&mut secret);
                return Ok(());
            }
            Err(error) if status_code(&error) == Some(404) => {}
            Err(error) => return Err(self.error("writing", key, error)),
        }

        // No Secret yet: create it; if another writer created it meanwhile, patch that one.
        let mut new = self.location.new_secret(key, value);
        let created = self.api.create(&PostParams::default(), &new).await;
        wipe(&mut new);
        match created {
            Ok(mut secret) => {
                wipe(&mut secret);
                Ok(())
            }
            Err(error) if status_code(&error) == Some(409) => {
                let mut secret = self
                    .api
                    .patch(&self.location.name, &params, &patch)
                    .await
                    .map_err(|error| self.error("writing", key, error))?;
                wipe(&mut secret);
                Ok(())
            }
            Err(error) => Err(self.error("creating the Secret for", key, error)),
        }
    }

    async fn list(&self) -> Result<Vec<String>, KeyStoreError> {
        let mut data = self.data("*").await?;
        for value in data.values_mut() {
            value.0.zeroize();
        }
        Ok(data.into_keys().collect())
    }
}

/// Wipes the values of a Secret the API server sent back.
fn wipe(secret: &mut KubeSecret) {
    for value in secret.data.iter_mut().flat_map(|data| data.values_mut()) {
        value.0.zeroize();
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
    fn location_defaults_to_name_unseal_keys_in_the_resources_namespace() {
        let location = SecretLocation::for_vault(&vault(json!({})));
        assert_eq!(
            location,
            Some(SecretLocation {
                name: "vault-unseal-keys".to_string(),
                namespace: "ns".to_string(),
                vault: "vault".to_string(),
            })
        );
    }

    #[test]
    fn location_follows_secret_name_and_namespace() {
        let spec = json!({"unsealConfig": {"kubernetes":
            {"secretName": "keys", "secretNamespace": "vault-keys"}}});
        let location = SecretLocation::for_vault(&vault(spec));
        assert_eq!(location.as_ref().map(|l| l.name.as_str()), Some("keys"));
        assert_eq!(
            location.map(|l| l.namespace),
            Some("vault-keys".to_string())
        );
    }

    #[test]
    fn new_secret_has_no_owner_and_is_labelled() {
        let location = SecretLocation::for_vault(&vault(json!({})));
        let secret = location.map(|l| l.new_secret("vault-root", b"t"));
        let secret = secret.unwrap_or_default();
        assert!(secret.metadata.owner_references.is_none());
        let labels = secret.metadata.labels.unwrap_or_default();
        assert_eq!(labels.get(VAULT_LABEL).map(String::as_str), Some("vault"));
        let data = secret.data.unwrap_or_default();
        assert_eq!(
            data.get("vault-root").map(|b| b.0.as_slice()),
            Some(&b"t"[..])
        );
    }

    #[test]
    fn data_patch_sets_one_base64_value_and_hides_it_in_debug() {
        let value = Secret::from("s3cret");
        let patch = DataPatch::new("vault-unseal-0", value.expose().as_bytes());
        let body = serde_json::to_value(&patch).unwrap_or_default();
        assert_eq!(body, json!({"data": {"vault-unseal-0": "czNjcmV0"}}));
        let debug = format!("{:?}", Patch::Merge(&patch));
        assert!(
            !debug.contains("czNjcmV0") && !debug.contains("s3cret"),
            "{debug}"
        );
    }
}

/// The store against a stand-in for the API server's Secret endpoints: the real store's
/// live test waits for the local cluster.
#[cfg(test)]
mod api_tests {
    use std::sync::{Arc, Mutex, PoisonError};

    use bytes::Bytes;
    use http::{Method, Request, Response, StatusCode};
    use http_body_util::{BodyExt, Full};
    use serde_json::{Value, json};

    use super::*;

    type Seen = Arc<Mutex<Vec<String>>>;

    /// One Secret in memory, served at its namespaced path, with merge patches.
    fn fake_api_server(
        secret: Arc<Mutex<Option<Value>>>,
        seen: Seen,
    ) -> impl tower::Service<
        Request<kube::client::Body>,
        Response = Response<Full<Bytes>>,
        Error = std::convert::Infallible,
        Future = impl Send,
    > + Send
    + 'static {
        tower::service_fn(move |request: Request<kube::client::Body>| {
            let secret = secret.clone();
            let seen = seen.clone();
            async move {
                let (parts, body) = request.into_parts();
                let body = body
                    .collect()
                    .await
                    .map(|b| b.to_bytes())
                    .unwrap_or_default();
                let content_type = parts
                    .headers
                    .get("content-type")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
                    .to_string();
                let path = parts.uri.path().to_string();
                seen.lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push(format!("{} {path}", parts.method));

                let mut stored = secret.lock().unwrap_or_else(PoisonError::into_inner);
                let item = "/api/v1/namespaces/ns/secrets/vault-unseal-keys";
                let (status, answer) = match (parts.method, path.as_str()) {
                    (Method::GET, p) if p == item => match stored.clone() {
                        Some(secret) => (StatusCode::OK, secret),
                        None => not_found(),
                    },
                    (Method::PATCH, p) if p == item => match stored.as_mut() {
                        Some(secret) if content_type == "application/merge-patch+json" => {
                            let patch: Value = serde_json::from_slice(&body).unwrap_or_default();
                            if let (Some(data), Some(new)) = (
                                secret.get_mut("data").and_then(Value::as_object_mut),
                                patch.get("data").and_then(Value::as_object),
                            ) {
                                data.extend(new.clone());
                            }
                            (StatusCode::OK, secret.clone())
                        }
                        Some(_) => (StatusCode::UNSUPPORTED_MEDIA_TYPE, json!({})),
                        None => not_found(),
                    },
                    (Method::POST, "/api/v1/namespaces/ns/secrets") => {
                        let created: Value = serde_json::from_slice(&body).unwrap_or_default();
                        *stored = Some(created.clone());
                        (StatusCode::CREATED, created)
                    }
                    _ => (StatusCode::METHOD_NOT_ALLOWED, json!({})),
                };
                let body = Full::new(Bytes::from(answer.to_string()));
                let response = Response::builder()
                    .status(status)
                    .header("content-type", "application/json")
                    .body(body)
                    .unwrap_or_default();
                Ok(response)
            }
        })
    }

    fn not_found() -> (StatusCode, Value) {
        let status = json!({"kind": "Status", "apiVersion": "v1", "metadata": {},
            "status": "Failure", "message": "not found", "reason": "NotFound", "code": 404});
        (StatusCode::NOT_FOUND, status)
    }

    #[tokio::test]
    async fn creates_the_secret_on_first_write_then_patches_it() -> Result<(), KeyStoreError> {
        let secret = Arc::new(Mutex::new(None));
        let seen = Seen::default();
        let client = Client::new(fake_api_server(secret.clone(), seen.clone()), "ns");
        let location = SecretLocation {
            name: "vault-unseal-keys".to_string(),
            namespace: "ns".to_string(),
            vault: "vault".to_string(),
        };
        let store = SecretKeyStore::new(client, location);

        assert_eq!(store.get("vault-root").await?, None);
        assert!(store.list().await?.is_empty());
        store.set("vault-unseal-0", &Secret::from("k0")).await?;
        store.set("vault-root", &Secret::from("t")).await?;
        assert_eq!(store.get("vault-unseal-0").await?, Some(Secret::from("k0")));
        assert_eq!(store.get("vault-root").await?, Some(Secret::from("t")));
        assert_eq!(store.list().await?, ["vault-root", "vault-unseal-0"]);
        assert_eq!(store.describe(), "Secret ns/vault-unseal-keys");

        let item = "/api/v1/namespaces/ns/secrets/vault-unseal-keys";
        let seen = seen.lock().unwrap_or_else(PoisonError::into_inner).clone();
        assert_eq!(
            seen[2..5],
            [
                format!("PATCH {item}"),
                "POST /api/v1/namespaces/ns/secrets".to_string(),
                format!("PATCH {item}"),
            ]
        );
        let stored = secret
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let stored = stored.unwrap_or_default();
        assert!(
            stored["metadata"].get("ownerReferences").is_none(),
            "{stored}"
        );
        assert_eq!(stored["metadata"]["labels"][VAULT_LABEL], "vault");
        assert_eq!(stored["data"]["vault-root"], "dA==");

        // Bytes, such as the HSM's ciphertext, are kept raw: one base64 layer, the API's.
        let ciphertext = [0xff_u8, 0x00, 0x80, 0x7f];
        store.set_bytes("vault-unseal-1", &ciphertext).await?;
        assert_eq!(
            store.get_bytes("vault-unseal-1").await?,
            Some(ciphertext.to_vec())
        );
        let stored = secret
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        assert_eq!(
            stored.unwrap_or_default()["data"]["vault-unseal-1"],
            "/wCAfw=="
        );
        let as_text = store.get("vault-unseal-1").await;
        assert!(
            as_text
                .as_ref()
                .is_err_and(|e| e.to_string().contains("not UTF-8")),
            "{as_text:?}"
        );
        Ok(())
    }
}
