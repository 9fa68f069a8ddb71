//! The configuration step: `externalConfig` applied to an unsealed Vault through the
//! leader, when the resource changes and again every period, so drift in Vault (a policy
//! edited by hand, a role deleted) is put back. The Configured condition carries the
//! outcome; each failing item gets an Event with its path and Vault's answer. The input
//! hashes of items Vault cannot read back are kept in an annotation of the resource
//! ([`AppliedHashes::ANNOTATION`]), so a restarted controller does not write them again.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use k8s_openapi::api::core::v1::{ConfigMap, EnvVarSource, Secret as KubeSecret};
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::events::EventType;
use serde_json::Value;
use tracing::{info, warn};
use vault_api::Vault;
use vault_api::status::{CONFIGURED, ConditionUpdate, VaultStatus};

use super::Context;
use super::identity_step::OperatorToken;
use crate::Secret;
use crate::external::{self, AppliedHashes, ApplyOptions, ApplyReport, Outcome, SecretValues};
use crate::keystore::KeyStore;
use crate::unseal::UnsealOptions;
use crate::unseal::{Cluster, Report};

/// How soon a pass with failed items is tried again.
pub const RETRY_FAILED: Duration = Duration::from_secs(30);

/// When the last pass of each `Vault` ran and how it went, kept in memory: after a restart
/// the first pass compares everything again, which writes nothing Vault already holds.
#[derive(Default)]
pub struct ConfigMemory {
    passes: Mutex<HashMap<String, LastPass>>,
}

struct LastPass {
    generation: Option<i64>,
    at: Instant,
    failed: bool,
}

impl ConfigMemory {
    fn due(&self, key: &str, generation: Option<i64>, period: Duration) -> bool {
        let passes = self.passes.lock().unwrap_or_else(PoisonError::into_inner);
        passes.get(key).is_none_or(|last| {
            let wait = if last.failed { RETRY_FAILED } else { period };
            last.generation != generation || last.at.elapsed() >= wait
        })
    }

    fn record(&self, key: String, generation: Option<i64>, report: &ApplyReport) {
        let mut passes = self.passes.lock().unwrap_or_else(PoisonError::into_inner);
        passes.insert(
            key,
            LastPass {
                generation,
                at: Instant::now(),
                failed: !report.succeeded(),
            },
        );
    }
}

/// What the configuration step saw, for the status.
#[derive(Debug, Default)]
pub enum ConfigObservation {
    /// The resource has no `externalConfig`, or the Vault step is off.
    #[default]
    NotConfigured,
    /// Applied recently and nothing changed since: the condition stays as it is.
    NotDue,
    /// Not applied: Vault is not ready for it, or there is no way to log in.
    Waiting(String),
    /// One pass ran.
    Applied(ApplyReport),
}

impl ConfigObservation {
    /// Writes the Configured condition into `status`.
    pub fn apply_to(&self, status: &mut VaultStatus, vault: &Vault) {
        let (ok, reason, message) = match self {
            Self::NotConfigured | Self::NotDue => return,
            // What was applied to this generation stays applied while Vault is busy.
            Self::Waiting(_) if applied_to(status, vault.metadata.generation) => return,
            Self::Waiting(why) => (false, "Waiting", why.clone()),
            Self::Applied(report) if report.succeeded() => (true, "Applied", summary(report)),
            Self::Applied(report) => (false, "ItemsFailed", report.to_string()),
        };
        let update = ConditionUpdate {
            type_: CONFIGURED,
            status: ok,
            reason,
            message: &message,
            generation: vault.metadata.generation,
        };
        let now = k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            k8s_openapi::jiff::Timestamp::now(),
        );
        status.set_condition(update, now);
    }

    /// Whether a failed pass wants to be tried again soon.
    pub fn failed(&self) -> bool {
        matches!(self, Self::Applied(report) if !report.succeeded())
    }
}

/// Whether the Configured condition says this generation's configuration is applied.
fn applied_to(status: &VaultStatus, generation: Option<i64>) -> bool {
    status
        .condition(CONFIGURED)
        .is_some_and(|c| c.status == "True" && c.observed_generation == generation)
}

/// The counts of a pass, without the failures' messages.
fn summary(report: &ApplyReport) -> String {
    let full = report.to_string();
    full.split("; ").next().unwrap_or(&full).to_string()
}

/// Applies `externalConfig` through the leader when it is due.
pub async fn configure(
    ctx: &Context,
    vault: &Vault,
    cluster: &Cluster,
    store: &dyn KeyStore,
    token: &OperatorToken,
    unsealed: &Report,
) -> ConfigObservation {
    if vault.spec.external_config.is_empty() {
        return ConfigObservation::NotConfigured;
    }
    let key = super::identity_step::memory_key(vault);
    let generation = vault.metadata.generation;
    // Before anything else: a pod restarting after a pass does not undo that pass.
    if !ctx
        .config_memory
        .due(&key, generation, ctx.options.config_period)
    {
        return ConfigObservation::NotDue;
    }
    if !unsealed.converged(cluster.raft) {
        return ConfigObservation::Waiting("waiting for every pod to be unsealed".to_string());
    }
    let leader = unsealed
        .leader
        .as_deref()
        .and_then(|leader| cluster.pods.iter().find(|pod| pod.pod() == leader));
    let Some(leader) = leader else {
        return ConfigObservation::Waiting("waiting for a leader".to_string());
    };
    let token = match token {
        OperatorToken::Own(token) | OperatorToken::Root(token) => token,
        OperatorToken::Missing(reason) => return ConfigObservation::Waiting(reason.clone()),
    };
    let authed = match leader.authed(token) {
        Ok(authed) => authed,
        Err(error) => return ConfigObservation::Waiting(error.to_string()),
    };

    let namespace = vault.namespace().unwrap_or_default();
    let objects = Arc::new(NamespaceObjects {
        secrets: Api::namespaced(ctx.client.clone(), &namespace),
        config_maps: Api::namespaced(ctx.client.clone(), &namespace),
    });
    let (environment, unresolved) = template_environment(vault, objects.as_ref()).await;
    for problem in unresolved {
        warn!(vault = %vault.name_any(), %problem, "an externalConfig variable is not set");
        let reason = "VariableNotSet";
        ctx.publish(vault, EventType::Warning, reason, problem)
            .await;
    }

    let applied_hashes = applied_hashes(vault);
    let hash_key = hash_key(store, vault).await;
    let options = ApplyOptions {
        applied_hashes: applied_hashes.clone(),
        // The annotation can be read by whoever reads the resource: keyed with the first
        // key share, its hashes cannot be checked against guessed passwords. The share
        // lives as long as Vault's data; tokens (the controller's own is renewed hourly)
        // would make every item with unreadable fields be written again at each change.
        hash_key: hash_key.clone(),
        environment: Some(environment),
        secret_values: Some(objects),
        ..ApplyOptions::default()
    };
    let config = Value::Object(vault.spec.external_config.0.clone());
    let report = external::apply(&authed, &config, &options).await;
    ctx.config_memory.record(key, generation, &report);
    let hashes = report.applied_hashes();
    // Unkeyed hashes of passwords must not be shown to whoever reads the resource: without
    // the key, items with unreadable fields are written again on each pass instead.
    if hashes != applied_hashes && hash_key.is_some() {
        keep_hashes(ctx, vault, &hashes).await;
    }
    publish(ctx, vault, &report).await;
    ConfigObservation::Applied(report)
}

/// What `${env "NAME"}` reads in `externalConfig`: the resource's `envsConfig` and
/// `vaultEnvsConfig` (where Bank-Vaults' configurer found its variables), their `valueFrom`
/// read from the Secrets and ConfigMaps of the Vault's namespace, and where Vault reaches
/// the Kubernetes API. Never the controller's own environment: it holds the key stores'
/// cloud credentials, which a resource must not be able to read. Also returns, for each
/// variable that could not be read, why (naming the variable and the object, no value).
async fn template_environment(
    vault: &Vault,
    objects: &dyn NamespaceValues,
) -> (BTreeMap<String, String>, Vec<String>) {
    let mut environment: BTreeMap<String, String> =
        ["KUBERNETES_SERVICE_HOST", "KUBERNETES_SERVICE_PORT"]
            .into_iter()
            .filter_map(|name| Some((name.to_string(), std::env::var(name).ok()?)))
            .collect();
    let mut unresolved = Vec::new();

    let spec = &vault.spec;
    let lists = [
        ("envsConfig", &spec.envs_config),
        ("vaultEnvsConfig", &spec.vault_envs_config),
    ];
    for (field, variables) in lists {
        for variable in variables {
            let value = match (&variable.value, &variable.value_from) {
                (Some(value), _) => Ok(Some(value.clone())),
                (None, Some(source)) => value_from(source, objects).await,
                (None, None) => Ok(None),
            };
            match value {
                Ok(Some(value)) => {
                    environment.insert(variable.name.clone(), value);
                }
                Ok(None) => {}
                Err(why) => {
                    // As in a pod, a later entry of the same name replaces an earlier one.
                    environment.remove(&variable.name);
                    unresolved.push(format!("{field} {}: {why}", variable.name));
                }
            }
        }
    }
    (environment, unresolved)
}

/// The value a `valueFrom` names; `Ok(None)` when it is missing and marked optional, or
/// when it is a field of the pod.
async fn value_from(
    source: &EnvVarSource,
    objects: &dyn NamespaceValues,
) -> Result<Option<String>, String> {
    let (kind, name, key, optional, found) = if let Some(from) = &source.secret_key_ref {
        let found = objects.value(&from.name, &from.key).await;
        let found = found.map(|value| value.map(|value| value.expose().to_string()));
        ("Secret", &from.name, &from.key, from.optional, found)
    } else if let Some(from) = &source.config_map_key_ref {
        let found = objects.config_map_value(&from.name, &from.key).await;
        ("ConfigMap", &from.name, &from.key, from.optional, found)
    } else {
        // fieldRef and resourceFieldRef describe the pod that reads them; the controller
        // applies the configuration from outside every pod, so they are the pod's alone.
        return Ok(None);
    };
    match found {
        Ok(Some(value)) => Ok(Some(value)),
        Ok(None) if optional == Some(true) => Ok(None),
        Ok(None) => Err(format!("{kind} {name} does not exist or has no key {key}")),
        Err(error) => Err(format!("reading {kind} {name}: {error}")),
    }
}

/// The first unseal (or recovery) key share, which keys the hashes of applied inputs; none
/// when the store cannot give it, and then no hash is kept.
async fn hash_key(store: &dyn KeyStore, vault: &Vault) -> Option<Secret> {
    let first = UnsealOptions::for_vault(vault).key_name(0);
    match store.get(&first).await {
        Ok(share) => share,
        Err(error) => {
            warn!(%error, "reading the key that keys the applied configuration hashes");
            None
        }
    }
}

/// Reads the ConfigMap values that `envsConfig` names, beside the Secret values.
#[async_trait]
trait NamespaceValues: SecretValues {
    /// The value under `key` of the ConfigMap `name`; `Ok(None)` when either is missing.
    async fn config_map_value(&self, name: &str, key: &str) -> Result<Option<String>, String>;
}

/// The Secrets and ConfigMaps of the `Vault`'s namespace, which `secretKeyRef`s of startup
/// secrets and `valueFrom`s of `envsConfig` name.
struct NamespaceObjects {
    secrets: Api<KubeSecret>,
    config_maps: Api<ConfigMap>,
}

#[async_trait]
impl SecretValues for NamespaceObjects {
    async fn value(&self, name: &str, key: &str) -> Result<Option<Secret>, String> {
        // kube's errors name the object and the API server's reason, not the data.
        let found = self
            .secrets
            .get_opt(name)
            .await
            .map_err(|e| e.to_string())?;
        let Some(bytes) = found.and_then(|secret| secret.data?.remove(key)) else {
            return Ok(None);
        };
        String::from_utf8(bytes.0)
            .map(|value| Some(Secret::new(value)))
            .map_err(|_| format!("the value of `{key}` is not UTF-8 text"))
    }
}

#[async_trait]
impl NamespaceValues for NamespaceObjects {
    async fn config_map_value(&self, name: &str, key: &str) -> Result<Option<String>, String> {
        let found = self.config_maps.get_opt(name).await;
        let Some(config_map) = found.map_err(|e| e.to_string())? else {
            return Ok(None);
        };
        if let Some(text) = config_map.data.and_then(|mut data| data.remove(key)) {
            return Ok(Some(text));
        }
        let binary = config_map.binary_data.and_then(|mut data| data.remove(key));
        binary
            .map(|bytes| String::from_utf8(bytes.0))
            .transpose()
            .map_err(|_| format!("binaryData {key} of ConfigMap {name} is not text"))
    }
}

/// The hashes the last pass left in the resource's annotation.
fn applied_hashes(vault: &Vault) -> AppliedHashes {
    vault
        .annotations()
        .get(AppliedHashes::ANNOTATION)
        .and_then(|text| AppliedHashes::from_annotation(text))
        .unwrap_or_default()
}

/// Writes `hashes` into the resource's annotation. A failure is logged: the next pass then
/// writes the items with unreadable fields once more, which is harmless.
async fn keep_hashes(ctx: &Context, vault: &Vault, hashes: &AppliedHashes) {
    let api: Api<Vault> =
        Api::namespaced(ctx.client.clone(), &vault.namespace().unwrap_or_default());
    let patch = serde_json::json!({"metadata": {"annotations": {
        AppliedHashes::ANNOTATION: hashes.to_annotation(),
    }}});
    let patched = api
        .patch(
            &vault.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await;
    if let Err(error) = patched {
        warn!(vault = %vault.name_any(), %error, "keeping the applied configuration hashes");
    }
}

/// An Event when the pass wrote or removed anything, and one per failed item.
async fn publish(ctx: &Context, vault: &Vault, report: &ApplyReport) {
    let changed = |wanted: Outcome| -> Vec<&str> {
        report
            .items
            .iter()
            .filter(|item| item.outcome == wanted)
            .map(|item| item.item.as_str())
            .collect()
    };
    let (written, removed) = (changed(Outcome::Written), changed(Outcome::Removed));
    if !written.is_empty() || !removed.is_empty() {
        let mut note = format!("externalConfig applied: {}", written.join(", "));
        if !removed.is_empty() {
            note.push_str(&format!("; removed: {}", removed.join(", ")));
        }
        info!(%note);
        ctx.publish(vault, EventType::Normal, "Configured", note)
            .await;
    }
    for item in report.failures() {
        if let Outcome::Failed(message) = &item.outcome {
            // The message names the item and carries Vault's answer, secrets masked.
            let note = format!("{}: {message}", item.item);
            warn!(%note, "externalConfig item failed");
            ctx.publish(vault, EventType::Warning, "ConfigItemFailed", note)
                .await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::external::ItemReport;

    /// Secrets and ConfigMaps of a namespace, in memory, by object and key.
    #[derive(Default)]
    struct Objects {
        secrets: BTreeMap<(String, String), String>,
        config_maps: BTreeMap<(String, String), String>,
    }

    fn at(map: &BTreeMap<(String, String), String>, name: &str, key: &str) -> Option<String> {
        map.get(&(name.to_string(), key.to_string())).cloned()
    }

    #[async_trait]
    impl SecretValues for Objects {
        async fn value(&self, name: &str, key: &str) -> Result<Option<Secret>, String> {
            if name == "unreadable" {
                return Err("secrets \"unreadable\" is forbidden".to_string());
            }
            Ok(at(&self.secrets, name, key).map(Secret::new))
        }
    }

    #[async_trait]
    impl NamespaceValues for Objects {
        async fn config_map_value(&self, name: &str, key: &str) -> Result<Option<String>, String> {
            Ok(at(&self.config_maps, name, key))
        }
    }

    #[tokio::test]
    async fn templates_read_the_resources_variables_never_the_controllers() {
        use k8s_openapi::api::core::v1::{ConfigMapKeySelector, EnvVar, SecretKeySelector};

        let literal = |name: &str, value: &str| EnvVar {
            name: name.to_string(),
            value: Some(value.to_string()),
            ..Default::default()
        };
        let from = |name: &str, source: EnvVarSource| EnvVar {
            name: name.to_string(),
            value_from: Some(source),
            ..Default::default()
        };
        let secret = |name: &str, key: &str, optional: Option<bool>| EnvVarSource {
            secret_key_ref: Some(SecretKeySelector {
                name: name.to_string(),
                key: key.to_string(),
                optional,
            }),
            ..Default::default()
        };
        let config_map = |key: &str| EnvVarSource {
            config_map_key_ref: Some(ConfigMapKeySelector {
                name: "settings".to_string(),
                key: key.to_string(),
                optional: None,
            }),
            ..Default::default()
        };
        let pod_field = EnvVarSource {
            field_ref: Some(k8s_openapi::api::core::v1::ObjectFieldSelector {
                field_path: "status.podIP".to_string(),
                ..Default::default()
            }),
            ..Default::default()
        };
        let mut vault = Vault::new("vault", Default::default());
        vault.spec.envs_config = vec![
            literal("ROOT_USERNAME", "admin"),
            from("DB_PASSWORD", secret("db", "password", None)),
            literal("MISSING", "replaced by the entry below"),
            from("MISSING", secret("db", "other", None)),
            from("MAYBE", secret("db", "other", Some(true))),
            from("FORBIDDEN", secret("unreadable", "x", None)),
        ];
        vault.spec.vault_envs_config = vec![
            from("REGION", config_map("region")),
            from("ZONE", config_map("zone")),
            // Meant for the Vault pod's own environment, where it is set.
            from("POD_IP", pod_field),
        ];
        let mut objects = Objects::default();
        let entry = |name: &str, key: &str| (name.to_string(), key.to_string());
        objects
            .secrets
            .insert(entry("db", "password"), "s3cret-value".to_string());
        objects
            .config_maps
            .insert(entry("settings", "region"), "eu".to_string());

        let (environment, unresolved) = template_environment(&vault, &objects).await;
        let value = |name: &str| environment.get(name).map(String::as_str);
        assert_eq!(value("ROOT_USERNAME"), Some("admin"));
        assert_eq!(value("DB_PASSWORD"), Some("s3cret-value"));
        assert_eq!(value("REGION"), Some("eu"));
        for unset in ["MISSING", "MAYBE", "FORBIDDEN", "ZONE", "POD_IP"] {
            assert_eq!(value(unset), None, "{unset}");
        }
        assert_eq!(
            unresolved,
            [
                "envsConfig MISSING: Secret db does not exist or has no key other",
                "envsConfig FORBIDDEN: reading Secret unreadable: secrets \"unreadable\" is \
                 forbidden",
                "vaultEnvsConfig ZONE: ConfigMap settings does not exist or has no key zone",
            ]
        );
        // Set in every process's environment, and not the resource's to read.
        assert!(std::env::var("PATH").is_ok());
        assert!(!environment.contains_key("PATH"));
    }

    fn item(path: &str, outcome: Outcome) -> ItemReport {
        ItemReport {
            item: path.to_string(),
            outcome,
            writes: 0,
            input_hash: Some(format!("hash-of-{path}")),
        }
    }

    #[test]
    fn a_pass_is_due_on_a_change_on_the_period_and_soon_after_a_failure() {
        let memory = ConfigMemory::default();
        let period = Duration::from_secs(300);
        assert!(memory.due("ns/vault", Some(1), period), "never applied");

        let good = ApplyReport {
            items: vec![item("policies[a]", Outcome::Unchanged)],
        };
        memory.record("ns/vault".into(), Some(1), &good);
        assert!(!memory.due("ns/vault", Some(1), period));
        assert!(
            memory.due("ns/vault", Some(2), period),
            "the resource changed"
        );
        assert!(
            memory.due("ns/vault", Some(1), Duration::ZERO),
            "the period passed"
        );

        let bad = ApplyReport {
            items: vec![item("auth[x]", Outcome::Failed("refused".into()))],
        };
        memory.record("ns/vault".into(), Some(1), &bad);
        assert!(!memory.due("ns/vault", Some(1), period), "not at once");
        assert!(memory.due("ns/other", Some(1), period), "per Vault");
    }

    #[test]
    fn hashes_are_read_back_from_the_annotation_they_are_kept_in() {
        let mut vault = Vault::new("vault", Default::default());
        assert!(applied_hashes(&vault).is_empty());

        let hashes = AppliedHashes(
            [(
                "auth[userpass].users[admin]".to_string(),
                "ab12".to_string(),
            )]
            .into(),
        );
        vault
            .annotations_mut()
            .insert(AppliedHashes::ANNOTATION.into(), hashes.to_annotation());
        assert_eq!(applied_hashes(&vault), hashes);

        vault
            .annotations_mut()
            .insert(AppliedHashes::ANNOTATION.into(), "edited by hand".into());
        assert!(applied_hashes(&vault).is_empty(), "compared afresh");
    }

    #[test]
    fn the_condition_says_applied_or_names_the_failed_items() {
        let vault = Vault::new("vault", Default::default());
        let mut status = VaultStatus::default();
        let good = ApplyReport {
            items: vec![item("policies[a]", Outcome::Written)],
        };
        ConfigObservation::Applied(good).apply_to(&mut status, &vault);
        assert!(status.is_true(CONFIGURED));

        let bad = ApplyReport {
            items: vec![item("auth[x].roles[r]", Outcome::Failed("refused".into()))],
        };
        let observed = ConfigObservation::Applied(bad);
        assert!(observed.failed());
        observed.apply_to(&mut status, &vault);
        let condition = status.condition(CONFIGURED).cloned().unwrap_or_default();
        assert_eq!(condition.status, "False");
        assert!(
            condition
                .message
                .is_some_and(|m| m.contains("auth[x].roles[r]: refused"))
        );

        let before = status.clone();
        ConfigObservation::NotDue.apply_to(&mut status, &vault);
        assert_eq!(status, before, "a pass not due leaves the condition");

        let good = ApplyReport {
            items: vec![item("policies[a]", Outcome::Unchanged)],
        };
        ConfigObservation::Applied(good).apply_to(&mut status, &vault);
        let waiting = ConfigObservation::Waiting("a pod restarts".into());
        waiting.apply_to(&mut status, &vault);
        assert!(
            status.is_true(CONFIGURED),
            "applied stays applied while a pod restarts"
        );
        let mut changed = vault.clone();
        changed.metadata.generation = Some(2);
        waiting.apply_to(&mut status, &changed);
        assert!(
            !status.is_true(CONFIGURED),
            "a new generation is not applied yet"
        );
    }
}
