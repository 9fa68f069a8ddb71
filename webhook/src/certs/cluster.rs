//! Keeping the certificates in the webhook's Secret and the CA in the `caBundle` of its two
//! webhook configurations: the few Kubernetes calls around the pure decisions of
//! [`super`]. Each round reads, decides, writes; a conflict with another replica is left
//! for the next round to read again.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::admissionregistration::v1::{
    MutatingWebhookConfiguration, ValidatingWebhookConfiguration,
};
use k8s_openapi::api::core::v1::Secret;
use kube::api::{ObjectMeta, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use time::OffsetDateTime;
use tracing::{info, warn};

use super::{Lifetimes, StoredCerts, WebhookTrust};
use crate::error::Error;
use crate::tls::ServingCert;

const MUTATING: &str = "MutatingWebhookConfiguration";
const VALIDATING: &str = "ValidatingWebhookConfiguration";

/// Where the certificates live in the cluster, and what they are for.
#[derive(Clone)]
pub struct ClusterCerts {
    secrets: Api<Secret>,
    mutating: Api<MutatingWebhookConfiguration>,
    validating: Api<ValidatingWebhookConfiguration>,
    namespace: String,
    secret_name: String,
    configuration_name: String,
    dns_name: String,
    lifetimes: Lifetimes,
}

impl ClusterCerts {
    /// The certificates of Secret `namespace/secret_name`, serving `dns_name`, trusted by
    /// the Mutating and Validating webhook configurations named `configuration_name`.
    pub fn new(
        client: Client,
        namespace: &str,
        secret_name: &str,
        configuration_name: &str,
        dns_name: &str,
        lifetimes: Lifetimes,
    ) -> Self {
        ClusterCerts {
            secrets: Api::namespaced(client.clone(), namespace),
            mutating: Api::all(client.clone()),
            validating: Api::all(client),
            namespace: namespace.to_string(),
            secret_name: secret_name.to_string(),
            configuration_name: configuration_name.to_string(),
            dns_name: dns_name.to_string(),
            lifetimes,
        }
    }

    /// Renews what is due, every `interval`, until the task is dropped. A failed round is
    /// logged and retried sooner.
    pub async fn run(self, serving: Arc<ServingCert>, interval: Duration) {
        loop {
            let wait = match self.round(&serving).await {
                Ok(()) => interval,
                Err(e) => {
                    warn!(error = %e, kind = e.label(), "keeping the webhook certificates");
                    interval.min(Duration::from_secs(10))
                }
            };
            tokio::time::sleep(wait).await;
        }
    }

    /// One round: read the Secret and the configurations, renew what is due, publish the
    /// CA bundle, serve the current certificate.
    pub async fn round(&self, serving: &ServingCert) -> Result<(), Error> {
        let now = OffsetDateTime::now_utc();
        let secret = self
            .secrets
            .get_opt(&self.secret_name)
            .await
            .map_err(|e| self.secret_error("reading", e))?;
        let stored = secret
            .as_ref()
            .and_then(|s| s.data.as_ref())
            .map(StoredCerts::from_secret_data)
            .unwrap_or_default();
        let webhooks = self.webhooks().await?;

        let trusted = stored.ca.as_ref().is_some_and(|ca| {
            webhooks.iter().flat_map(|(_, hooks)| hooks).all(|hook| {
                let bundle = hook.ca_bundle.as_deref().unwrap_or_default();
                super::bundle_trusts(bundle, &ca.cert)
            })
        });
        let plan = super::plan(&stored, &self.dns_name, now, trusted);
        let stored = if plan.changes_anything() {
            let next = super::apply(plan, &stored, &self.dns_name, now, self.lifetimes)?;
            self.save(secret, &next).await?;
            info!(secret = %self.secret_name, ?plan, "webhook certificates renewed");
            next
        } else {
            stored
        };

        if let Some(bundle) = super::ca_bundle(&stored, now) {
            for (kind, hooks) in &webhooks {
                self.publish(kind, hooks, bundle.as_bytes()).await?;
            }
        }
        if let Some(cert) = &stored.serving {
            let what = format!("the serving certificate of Secret {}", self.secret_name);
            if serving.install(cert.cert.as_bytes(), cert.key.as_bytes(), &what)? {
                info!(secret = %self.secret_name, "serving certificate loaded");
            }
        }
        Ok(())
    }

    /// The webhooks of both configurations; a configuration not (yet) installed has none.
    async fn webhooks(&self) -> Result<Vec<(&'static str, Vec<WebhookTrust>)>, Error> {
        let name = &self.configuration_name;
        let mutating = self
            .mutating
            .get_opt(name)
            .await
            .map_err(|e| self.configuration_error(MUTATING, "reading", e))?;
        let validating = self
            .validating
            .get_opt(name)
            .await
            .map_err(|e| self.configuration_error(VALIDATING, "reading", e))?;

        let trust = |name: &str, bundle: &Option<k8s_openapi::ByteString>| WebhookTrust {
            name: name.to_string(),
            ca_bundle: bundle.as_ref().map(|b| b.0.clone()),
        };
        let mutating = mutating
            .and_then(|c| c.webhooks)
            .unwrap_or_default()
            .iter()
            .map(|w| trust(&w.name, &w.client_config.ca_bundle))
            .collect();
        let validating = validating
            .and_then(|c| c.webhooks)
            .unwrap_or_default()
            .iter()
            .map(|w| trust(&w.name, &w.client_config.ca_bundle))
            .collect();
        Ok(vec![(MUTATING, mutating), (VALIDATING, validating)])
    }

    /// Writes the certificates, replacing the Secret read at the start of the round (its
    /// resourceVersion makes a concurrent write by another replica fail rather than be lost).
    async fn save(&self, read: Option<Secret>, certs: &StoredCerts) -> Result<(), Error> {
        let params = PostParams::default();
        match read {
            Some(mut secret) => {
                secret.data = Some(certs.to_secret_data());
                self.secrets
                    .replace(&self.secret_name, &params, &secret)
                    .await
                    .map_err(|e| self.secret_error("replacing", e))?;
            }
            None => {
                let secret = Secret {
                    metadata: ObjectMeta {
                        name: Some(self.secret_name.clone()),
                        namespace: Some(self.namespace.clone()),
                        ..ObjectMeta::default()
                    },
                    data: Some(certs.to_secret_data()),
                    type_: Some("Opaque".into()),
                    ..Secret::default()
                };
                self.secrets
                    .create(&params, &secret)
                    .await
                    .map_err(|e| self.secret_error("creating", e))?;
            }
        }
        Ok(())
    }

    /// Patches the `caBundle` of one configuration's webhooks when it differs.
    async fn publish(
        &self,
        kind: &'static str,
        webhooks: &[WebhookTrust],
        bundle: &[u8],
    ) -> Result<(), Error> {
        let Some(patch) = super::ca_bundle_patch(webhooks, bundle) else {
            return Ok(());
        };
        let name = &self.configuration_name;
        let params = PatchParams::default();
        let patch = Patch::Json::<()>(patch);
        let result = match kind {
            MUTATING => self.mutating.patch(name, &params, &patch).await.map(drop),
            _ => self.validating.patch(name, &params, &patch).await.map(drop),
        };
        result.map_err(|e| self.configuration_error(kind, "patching the caBundle of", e))?;
        info!(configuration = %name, kind, "CA bundle published");
        Ok(())
    }

    fn secret_error(&self, operation: &'static str, source: kube::Error) -> Error {
        Error::Secret {
            operation,
            namespace: self.namespace.clone(),
            name: self.secret_name.clone(),
            source: Box::new(source),
        }
    }

    fn configuration_error(
        &self,
        kind: &'static str,
        operation: &'static str,
        source: kube::Error,
    ) -> Error {
        Error::WebhookConfiguration {
            operation,
            kind,
            name: self.configuration_name.clone(),
            source: Box::new(source),
        }
    }
}
