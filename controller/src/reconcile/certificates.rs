//! The TLS step: keeps the Secret `<name>-tls` (a CA and the server certificate it signed)
//! current, or takes `existingTlsSecretName` as given; rolls the pods when the served
//! certificate changes; copies the CA into `caNamespaces`; and tells the Vault step which
//! CA to trust.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{KeyToPath, Namespace, Secret, Service};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{DeleteParams, ListParams};
use kube::runtime::events::EventType;
use kube::{Api, Resource, ResourceExt};
use sha2::{Digest, Sha256};
use tracing::info;
use vault_api::Vault;
use vault_api::defaults::{
    self, KUBERNETES_TLS_CERT_KEY, KUBERNETES_TLS_KEY_KEY, TLS_CA_KEY, TLS_CERT_KEY, TLS_KEY_KEY,
};

use super::Context;
use super::apply::{ApplyError, apply_namespaced};
use crate::build::{Desired, NAMESPACE_LABEL};
use crate::tls::{self, Bundle, Decision, TlsError};
pub use crate::vault::Trust;

/// Annotation on the pod template with a digest of the served certificate: a new
/// certificate changes the template, so the StatefulSet restarts the pods one at a time
/// (Vault reads its certificate only at start).
pub const TLS_DIGEST_ANNOTATION: &str = "vault.banzaicloud.com/tls-digest";
/// The `ca.crt` key of the Secrets that carry the CA, here and in `caNamespaces`.
const CA_KEY: &str = TLS_CA_KEY;
/// The CA key of the generated Secret.
const CA_PRIVATE_KEY: &str = "ca.key";
/// Label on the copies of the CA in `caNamespaces`, naming the `Vault` they copy.
const CA_COPY_LABEL: &str = "vault.banzaicloud.com/ca-copy-of";

/// Why the TLS step failed.
#[derive(Debug, thiserror::Error)]
pub enum CertificateError {
    /// Reading an object failed.
    #[error("reading {kind} {name}: {source}")]
    Read {
        /// Kind of the object.
        kind: &'static str,
        /// Its name.
        name: String,
        /// The cause.
        source: kube::Error,
    },
    /// `existingTlsSecretName` names a Secret that does not exist or lacks a key.
    #[error(
        "spec.existingTlsSecretName: Secret {namespace}/{name} {problem}; create it with \
         server.crt and server.key (or tls.crt and tls.key), and ca.crt if a private CA \
         signed it"
    )]
    ExistingSecret {
        /// Its namespace.
        namespace: String,
        /// Its name.
        name: String,
        /// What is wrong.
        problem: String,
    },
    /// `spec.tlsExpiryThreshold` is not a duration.
    #[error("spec.tlsExpiryThreshold {value:?} is not a duration such as 168h: {reason}")]
    Threshold {
        /// The value given.
        value: String,
        /// The parse error.
        reason: String,
    },
    /// Making a certificate failed.
    #[error(transparent)]
    Make(#[from] TlsError),
    /// Writing a Secret failed.
    #[error(transparent)]
    Apply(#[from] ApplyError),
}

/// Makes or checks the certificates of `vault`, marks the pod template of `desired` with the
/// served certificate's digest, and says how to trust Vault.
pub async fn ensure_certificates(
    ctx: &Context,
    vault: &Vault,
    desired: &mut Desired,
) -> Result<Trust, CertificateError> {
    if !vault.spec.config.tls_enabled() {
        return Ok(Trust::Plain);
    }
    let namespace = vault.namespace().unwrap_or_default();

    let (trust, served_cert) = match &vault.spec.existing_tls_secret_name {
        Some(existing) => existing_secret(ctx, &namespace, existing, desired).await?,
        None => {
            let bundle = generated_secret(ctx, vault, &namespace).await?;
            (Trust::Ca(bundle.ca_cert), bundle.cert)
        }
    };
    match &trust {
        Trust::Ca(ca) => copy_ca(ctx, vault, ca).await?,
        // Nothing to copy: clients already trust the system's roots.
        _ => copy_ca(ctx, &without_ca_namespaces(vault), "").await?,
    }

    let digest = hex(&Sha256::digest(served_cert.as_bytes())[..12]);
    let template = desired
        .stateful_set
        .spec
        .template
        .metadata
        .get_or_insert_with(Default::default);
    template
        .annotations
        .get_or_insert_with(BTreeMap::new)
        .insert(TLS_DIGEST_ANNOTATION.to_string(), digest);
    Ok(trust)
}

fn without_ca_namespaces(vault: &Vault) -> Vault {
    let mut vault = vault.clone();
    vault.spec.ca_namespaces.clear();
    vault
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn text(secret: &Secret, key: &str) -> Option<String> {
    let value = secret.data.as_ref()?.get(key)?;
    let text = String::from_utf8(value.0.clone()).ok()?;
    (!text.trim().is_empty()).then_some(text)
}

async fn read_secret(
    ctx: &Context,
    namespace: &str,
    name: &str,
) -> Result<Option<Secret>, CertificateError> {
    let api: Api<Secret> = Api::namespaced(ctx.client.clone(), namespace);
    api.get_opt(name)
        .await
        .map_err(|source| CertificateError::Read {
            kind: "Secret",
            name: format!("{namespace}/{name}"),
            source,
        })
}

/// The user's Secret, used as is. A `kubernetes.io/tls` Secret's `tls.crt` and `tls.key`
/// are mounted under the names the Vault configuration reads.
async fn existing_secret(
    ctx: &Context,
    namespace: &str,
    name: &str,
    desired: &mut Desired,
) -> Result<(Trust, String), CertificateError> {
    let problem = |problem: &str| CertificateError::ExistingSecret {
        namespace: namespace.to_string(),
        name: name.to_string(),
        problem: problem.to_string(),
    };
    let secret = read_secret(ctx, namespace, name)
        .await?
        .ok_or_else(|| problem("does not exist"))?;

    let (cert_key, key_key) = if text(&secret, TLS_CERT_KEY).is_some() {
        (TLS_CERT_KEY, TLS_KEY_KEY)
    } else {
        (KUBERNETES_TLS_CERT_KEY, KUBERNETES_TLS_KEY_KEY)
    };
    let cert = text(&secret, cert_key).ok_or_else(|| problem("has no server.crt or tls.crt"))?;
    if text(&secret, key_key).is_none() {
        return Err(problem(&format!("has no {key_key} beside {cert_key}")));
    }
    let ca = text(&secret, CA_KEY);

    if cert_key == KUBERNETES_TLS_CERT_KEY {
        let mut items = vec![
            key_to_path(KUBERNETES_TLS_CERT_KEY, TLS_CERT_KEY),
            key_to_path(KUBERNETES_TLS_KEY_KEY, TLS_KEY_KEY),
        ];
        if ca.is_some() {
            items.push(key_to_path(CA_KEY, TLS_CA_KEY));
        }
        map_tls_volume(desired, items);
    }
    let trust = match ca {
        Some(ca) => Trust::Ca(ca),
        None => Trust::SystemRoots,
    };
    Ok((trust, cert))
}

fn key_to_path(key: &str, path: &str) -> KeyToPath {
    KeyToPath {
        key: key.to_string(),
        path: path.to_string(),
        ..KeyToPath::default()
    }
}

fn map_tls_volume(desired: &mut Desired, items: Vec<KeyToPath>) {
    let volumes = desired
        .stateful_set
        .spec
        .template
        .spec
        .as_mut()
        .and_then(|pod| pod.volumes.as_mut());
    for volume in volumes.into_iter().flatten() {
        if volume.name == "vault-tls"
            && let Some(secret) = volume.secret.as_mut()
        {
            secret.items = Some(items.clone());
        }
    }
}

/// The generated Secret: read, renewed when [`tls::decide`] says so, written back.
async fn generated_secret(
    ctx: &Context,
    vault: &Vault,
    namespace: &str,
) -> Result<Bundle, CertificateError> {
    let name = vault.name_any();
    let secret_name = defaults::tls_secret_name(&name);
    let existing = read_secret(ctx, namespace, &secret_name).await?;
    let bundle = existing.as_ref().map(|secret| Bundle {
        ca_cert: text(secret, CA_KEY).unwrap_or_default(),
        ca_key: text(secret, CA_PRIVATE_KEY).unwrap_or_default(),
        cert: text(secret, TLS_CERT_KEY).unwrap_or_default(),
        key: text(secret, TLS_KEY_KEY).unwrap_or_default(),
    });

    let balancers = load_balancer_addresses(ctx, namespace, &name).await?;
    let names = tls::server_names(vault, namespace, &balancers);
    let threshold_text = vault
        .spec
        .tls_expiry_threshold
        .clone()
        .unwrap_or_else(|| defaults::TLS_EXPIRY_THRESHOLD.to_string());
    let threshold = humantime::parse_duration(&threshold_text).map_err(|error| {
        CertificateError::Threshold {
            value: threshold_text.clone(),
            reason: error.to_string(),
        }
    })?;
    let now = k8s_openapi::jiff::Timestamp::now().as_second();
    let decision = tls::decide(bundle.as_ref(), &names, threshold, now);
    let (reason, note) = match &decision {
        Decision::Keep => return Ok(bundle.unwrap_or_default()),
        Decision::NewServer(why) => (
            "CertificateRenewed",
            format!("new server certificate: {why}"),
        ),
        Decision::NewCa(why) => (
            "CertificateIssued",
            format!("new CA and server certificate: {why}"),
        ),
    };

    let issuance = ctx.options.issuance.outliving(threshold);
    let issued = tls::issue(&name, &decision, bundle.as_ref(), &names, now, &issuance)?;
    let secret = Secret {
        metadata: tls_secret_metadata(vault, secret_name.clone()),
        data: Some(BTreeMap::from([
            (
                CA_KEY.to_string(),
                ByteString(issued.ca_cert.clone().into_bytes()),
            ),
            (
                CA_PRIVATE_KEY.to_string(),
                ByteString(issued.ca_key.clone().into_bytes()),
            ),
            (
                TLS_CERT_KEY.to_string(),
                ByteString(issued.cert.clone().into_bytes()),
            ),
            (
                TLS_KEY_KEY.to_string(),
                ByteString(issued.key.clone().into_bytes()),
            ),
        ])),
        type_: Some("Opaque".to_string()),
        ..Secret::default()
    };
    apply_namespaced(&ctx.client, namespace, &secret).await?;
    info!(secret = %secret_name, %note, "TLS certificate written");
    ctx.publish(
        vault,
        EventType::Normal,
        reason,
        format!("Secret {secret_name}: {note}"),
    )
    .await;
    Ok(issued)
}

/// The generated Secret's metadata: Bank-Vaults gives it the Vault's labels and
/// annotations, and it is owned by the `Vault` (it holds nothing that outlives it).
fn tls_secret_metadata(vault: &Vault, name: String) -> ObjectMeta {
    let mut labels = defaults::selector_labels(&vault.name_any());
    labels.extend(vault.spec.vault_labels.clone());
    let mut annotations = vault.spec.annotations.clone();
    annotations.extend(vault.spec.vault_annotations.clone());
    ObjectMeta {
        name: Some(name),
        namespace: vault.namespace(),
        labels: Some(labels),
        annotations: (!annotations.is_empty()).then_some(annotations),
        owner_references: vault.controller_owner_ref(&()).map(|owner| vec![owner]),
        ..ObjectMeta::default()
    }
}

/// Addresses a load balancer gave the main Service, for the certificate's names.
async fn load_balancer_addresses(
    ctx: &Context,
    namespace: &str,
    name: &str,
) -> Result<Vec<String>, CertificateError> {
    let api: Api<Service> = Api::namespaced(ctx.client.clone(), namespace);
    let service = api
        .get_opt(name)
        .await
        .map_err(|source| CertificateError::Read {
            kind: "Service",
            name: format!("{namespace}/{name}"),
            source,
        })?;
    let ingress = service
        .and_then(|s| s.status)
        .and_then(|s| s.load_balancer)
        .and_then(|lb| lb.ingress)
        .unwrap_or_default();
    Ok(ingress
        .into_iter()
        .flat_map(|i| [i.ip, i.hostname])
        .flatten()
        .collect())
}

/// The namespaces `caNamespaces` names that exist; `*` means every namespace.
async fn ca_namespaces(ctx: &Context, vault: &Vault) -> Result<Vec<String>, CertificateError> {
    let wanted = &vault.spec.ca_namespaces;
    if wanted.is_empty() {
        return Ok(Vec::new());
    }
    let api: Api<Namespace> = Api::all(ctx.client.clone());
    let existing: Vec<String> = api
        .list(&ListParams::default())
        .await
        .map_err(|source| CertificateError::Read {
            kind: "Namespace",
            name: "list".to_string(),
            source,
        })?
        .into_iter()
        .filter(|ns| ns.metadata.deletion_timestamp.is_none())
        .map(|ns| ns.name_any())
        .collect();
    if wanted.iter().any(|ns| ns == "*") {
        return Ok(existing);
    }
    let mut found = Vec::new();
    for namespace in wanted {
        if existing.contains(namespace) {
            found.push(namespace.clone());
        } else {
            let note = format!(
                "caNamespaces: namespace {namespace} does not exist; the CA is copied there \
                 once it does"
            );
            ctx.publish(vault, EventType::Warning, "CaNamespaceMissing", note)
                .await;
        }
    }
    Ok(found)
}

fn copy_selector(vault: &Vault) -> String {
    format!(
        "{CA_COPY_LABEL}={},{NAMESPACE_LABEL}={}",
        vault.name_any(),
        vault.namespace().unwrap_or_default()
    )
}

/// Copies `ca.crt`, and nothing else (no key, no annotations: cert-manager's injector acts
/// on copied annotations), into each namespace of `caNamespaces` but the Vault's own, and
/// removes copies from namespaces no longer named.
async fn copy_ca(ctx: &Context, vault: &Vault, ca_pem: &str) -> Result<(), CertificateError> {
    let own = vault.namespace().unwrap_or_default();
    let name = defaults::tls_secret_name(&vault.name_any());
    let targets: Vec<String> = ca_namespaces(ctx, vault)
        .await?
        .into_iter()
        .filter(|ns| *ns != own)
        .collect();

    for namespace in &targets {
        let copy = Secret {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: Some(namespace.clone()),
                labels: Some(BTreeMap::from([
                    (CA_COPY_LABEL.to_string(), vault.name_any()),
                    (NAMESPACE_LABEL.to_string(), own.clone()),
                ])),
                ..ObjectMeta::default()
            },
            data: Some(BTreeMap::from([(
                CA_KEY.to_string(),
                ByteString(ca_pem.as_bytes().to_vec()),
            )])),
            type_: Some("Opaque".to_string()),
            ..Secret::default()
        };
        apply_namespaced(&ctx.client, namespace, &copy).await?;
    }

    let stale = list_copies(ctx, vault)
        .await?
        .into_iter()
        .filter(|s| !targets.contains(&s.namespace().unwrap_or_default()));
    for secret in stale {
        delete_copy(ctx, &secret).await?;
    }
    Ok(())
}

async fn list_copies(ctx: &Context, vault: &Vault) -> Result<Vec<Secret>, CertificateError> {
    let api: Api<Secret> = Api::all(ctx.client.clone());
    let copies = api
        .list_metadata(&ListParams::default().labels(&copy_selector(vault)))
        .await
        .map_err(|source| CertificateError::Read {
            kind: "Secret",
            name: format!("copies of the CA of Vault {}", vault.name_any()),
            source,
        })?;
    Ok(copies
        .into_iter()
        .map(|meta| Secret {
            metadata: meta.metadata,
            ..Secret::default()
        })
        .collect())
}

async fn delete_copy(ctx: &Context, secret: &Secret) -> Result<(), CertificateError> {
    let namespace = secret.namespace().unwrap_or_default();
    let name = secret.name_any();
    let api: Api<Secret> = Api::namespaced(ctx.client.clone(), &namespace);
    match api.delete(&name, &DeleteParams::default()).await {
        Ok(_) => {
            info!(namespace = %namespace, secret = %name, "removed a copy of the CA");
            Ok(())
        }
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
        Err(source) => Err(ApplyError::Delete {
            kind: "Secret",
            name: format!("{namespace}/{name}"),
            source,
        }
        .into()),
    }
}

/// On deletion of the `Vault`: removes every copy of its CA. Owner references cannot cross
/// namespaces, so the garbage collector would leave them.
pub async fn remove_ca_copies(ctx: &Context, vault: &Vault) -> Result<(), CertificateError> {
    for secret in list_copies(ctx, vault).await? {
        delete_copy(ctx, &secret).await?;
    }
    Ok(())
}

/// Whether `vault` may have copies of its CA in other namespaces, which only a finalizer
/// can remove.
pub fn has_ca_copies(vault: &Vault) -> bool {
    !vault.spec.ca_namespaces.is_empty()
}
