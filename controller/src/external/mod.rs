//! Applies a `Vault` resource's `externalConfig` to a running Vault, and keeps applying it:
//! each item is compared with what Vault holds and written only when it differs, so a pass
//! over a Vault that already holds the configuration writes nothing, and a pass after a
//! manual change puts the configuration back.
//!
//! The schema is Bank-Vaults' (`../shared/samples/bank-vaults/external-config-reference.yml`).
//! Sections are applied in dependency order: audit devices (so that they record the rest),
//! plugins (auth methods and engines may run them), auth methods (policies and group
//! aliases name their accessors), identity groups and their aliases, policies, secrets
//! engines, startup secrets (written into the engines); then, with `purgeUnmanagedConfig`,
//! what the configuration does not name is removed. Every item is reported on its own, by its path in the
//! configuration (`auth[kubernetes].roles[default]`); one that fails does not stop the
//! others.
//!
//! - [`config`]: the schema, typed, templated and checked item by item.
//! - [`report`]: what a pass did, and the [`AppliedHashes`] to keep for the next.
//!
//! Audit devices go through the API of HashiCorp Vault; OpenBao takes them from its server
//! configuration only, where [`audit::server_config_stanzas`] renders them.

pub mod audit;
mod auth;
mod compare;
pub mod config;
mod identity;
mod io;
mod plugins;
mod policies;
mod purge;
pub mod report;
mod secrets;
mod startup;

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use serde_json::Value;
use tracing::{debug, info, warn};

pub use config::{ExternalConfig, Problem, parse};
pub use report::{AppliedHashes, ApplyReport, ItemReport, Outcome};

use self::compare::{Drift, drift, input_hash};
use self::config::{Fields, Redactor};
use self::io::{Current, ItemError, VaultIo};
use crate::Secret;
use crate::vault::AuthedClient;

/// What a pass needs besides the configuration.
#[derive(Clone, Default)]
pub struct ApplyOptions {
    /// The variables that `${env "NAME"}` and `${ .Env.NAME }` read, and
    /// `KUBERNETES_SERVICE_HOST` and `KUBERNETES_SERVICE_PORT` (the default
    /// `kubernetes_host` of Kubernetes auth). `None` reads the controller's own environment.
    pub environment: Option<BTreeMap<String, String>>,
    /// The input hashes of the last pass, as [`ApplyReport::applied_hashes`] gave them.
    /// Without them, an item with fields Vault does not return (a user's password) is
    /// written again even when Vault holds it.
    pub applied_hashes: AppliedHashes,
    /// A secret mixed into every input hash, so that a stored hash cannot be checked
    /// against guessed passwords. It must stay the same from pass to pass.
    pub hash_key: Option<Secret>,
    /// The `kubernetes_ca_cert` of Kubernetes auth methods whose `config` leaves it out.
    /// Leave it out when Vault's pods mount a service-account token: Vault then reads the
    /// CA from its own pod. OpenBao refuses the config with neither.
    pub kubernetes_ca_cert: Option<String>,
    /// Where the `secretKeyRef` values of startup secrets are read. Without it, startup
    /// secrets with a `secretKeyRef` fail.
    pub secret_values: Option<Arc<dyn SecretValues>>,
}

/// Reads the values that startup secrets name with `secretKeyRef`: the controller reads the
/// Kubernetes Secrets of the `Vault`'s namespace.
#[async_trait]
pub trait SecretValues: Send + Sync {
    /// The value under `key` of the Secret `name`; `Ok(None)` when either is missing. An
    /// error says why the Secret could not be read, without its values.
    async fn value(&self, name: &str, key: &str) -> Result<Option<Secret>, String>;
}

impl std::fmt::Debug for ApplyOptions {
    // The environment and the key may hold secrets: only their shape is shown.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApplyOptions")
            .field(
                "environment",
                &self
                    .environment
                    .as_ref()
                    .map(|env| env.keys().collect::<Vec<_>>()),
            )
            .field("applied_hashes", &self.applied_hashes.len())
            .field("hash_key", &self.hash_key)
            .field("kubernetes_ca_cert", &self.kubernetes_ca_cert.is_some())
            .field("secret_values", &self.secret_values.is_some())
            .finish()
    }
}

impl ApplyOptions {
    /// The value of the environment variable `name`.
    pub fn variable(&self, name: &str) -> Option<String> {
        match &self.environment {
            Some(environment) => environment.get(name).cloned(),
            None => std::env::var(name).ok(),
        }
    }
}

/// Applies `config` (a `Vault`'s `spec.externalConfig`) to the Vault behind `vault`, whose
/// token must be allowed to configure it. Never fails as a whole: each item's outcome,
/// failures included, is in the report.
pub async fn apply(vault: &AuthedClient, config: &Value, options: &ApplyOptions) -> ApplyReport {
    let env = |name: &str| options.variable(name);
    let parsed = parse(config, &env);
    let mut pass = Pass {
        io: VaultIo::new(vault),
        options,
        redactor: parsed.redactor.clone(),
        report: ApplyReport::default(),
    };

    // Audit devices first, so that they record the rest of the pass. Asked only when
    // needed: OpenBao takes audit devices from its configuration only.
    let flavor = if parsed.audit.is_empty() {
        Ok(None)
    } else {
        vault.flavor().await.map_err(|error| error.to_string())
    };
    audit::apply(&mut pass, &parsed.audit, &flavor).await;
    // Then plugins: auth methods and engines may run them.
    pass.ensure_each(&parsed.plugins, plugins::desired).await;
    auth::apply(&mut pass, &parsed.auth).await;
    // Read after the auth methods are enabled: policies, engine configuration and group
    // aliases name their accessors.
    let accessors = if needs_accessors(config)
        || !parsed.group_aliases.is_empty()
        || parsed.purge.purges("group-aliases")
    {
        auth::accessors(&pass.io).await
    } else {
        Ok(BTreeMap::new())
    };
    pass.ensure_each(&parsed.groups, identity::group).await;
    identity::apply_aliases(&mut pass, &parsed.group_aliases, &accessors).await;
    policies::apply(&mut pass, &parsed.policies, &accessors).await;
    secrets::apply(&mut pass, &parsed.secrets, &accessors).await;
    startup::apply(&mut pass, &parsed.startup_secrets).await;
    purge::apply(&mut pass, &parsed, &accessors).await;

    for entry in &parsed.other {
        let outcome = match &entry.parsed {
            Err(problem) => Outcome::Failed(problem.to_string()),
            Ok(()) => continue,
        };
        pass.report.push(ItemReport {
            item: entry.item.clone(),
            outcome,
            writes: 0,
            input_hash: None,
        });
    }

    // Each failure was logged with its item; the pass itself is news only when it failed
    // or changed something.
    let report = pass.report;
    let (failed, writes) = (report.failures().count(), report.writes());
    if failed > 0 {
        warn!(pod = %vault.pod(), failed, writes, "external configuration partly applied");
    } else if writes > 0 {
        info!(pod = %vault.pod(), writes, "external configuration applied");
    } else {
        debug!(pod = %vault.pod(), "external configuration already held");
    }
    report
}

/// Whether any text of the configuration has an `__accessor__` placeholder.
fn needs_accessors(config: &Value) -> bool {
    match config {
        Value::String(text) => text.contains("__accessor__"),
        Value::Array(items) => items.iter().any(needs_accessors),
        Value::Object(fields) => fields.values().any(needs_accessors),
        _ => false,
    }
}

/// One pass: the Vault, the options and the report being built.
pub(crate) struct Pass<'a> {
    io: VaultIo<'a>,
    options: &'a ApplyOptions,
    /// Masks secret values in messages; values read from Secrets are added as they come.
    redactor: Redactor,
    report: ApplyReport,
}

/// What became of an item that did not fail.
pub(crate) struct Applied {
    written: bool,
    input_hash: Option<String>,
}

impl Applied {
    fn written(input_hash: Option<String>) -> Self {
        Self {
            written: true,
            input_hash,
        }
    }

    fn unchanged(input_hash: Option<String>) -> Self {
        Self {
            written: false,
            input_hash,
        }
    }
}

/// One item held at one Vault path.
#[derive(Clone, Debug)]
pub(crate) struct Desired {
    /// The item's path in the configuration.
    item: String,
    /// Its place within its top-level item, such as `roles[0]`: where its template
    /// problems are found.
    place: String,
    /// The API path it is read from and written to.
    api_path: String,
    /// The fields written.
    body: Fields,
}

impl Pass<'_> {
    /// The hash of an item's input, and the one the last pass applied.
    fn hashes(&self, item: &str, input: &Value) -> (String, Option<&str>) {
        let hash = input_hash(self.options.hash_key.as_ref(), item, input);
        let previous = self.options.applied_hashes.get(item);
        (hash, previous)
    }

    /// Adds an item's outcome to the report; `writes_before` is the write count before the
    /// item was worked on.
    fn record(&mut self, item: &str, writes_before: usize, result: Result<Applied, ItemError>) {
        let writes = self.io.writes() - writes_before;
        let (outcome, input_hash) = match result {
            Ok(applied) if applied.written => (Outcome::Written, applied.input_hash),
            Ok(applied) => (Outcome::Unchanged, applied.input_hash),
            Err(error) => {
                let message = self.redactor.redact(&error.to_string());
                warn!(pod = %self.io.pod(), item, error = %message, "configuration item failed");
                (Outcome::Failed(message), None)
            }
        };
        self.report.push(ItemReport {
            item: item.to_string(),
            outcome,
            writes,
            input_hash,
        });
    }

    /// Removes what is at `path` and reports it as `item`.
    async fn remove(&mut self, item: &str, path: &str) {
        let before = self.io.writes();
        info!(pod = %self.io.pod(), item, "removing what the configuration does not name");
        match self.io.delete(path).await {
            Ok(()) => self.report.push(ItemReport {
                item: item.to_string(),
                outcome: Outcome::Removed,
                writes: self.io.writes() - before,
                input_hash: None,
            }),
            Err(error) => self.record(item, before, Err(error)),
        }
    }

    /// Reports an item that was not tried.
    fn fail(&mut self, item: &str, error: ItemError) {
        let writes = self.io.writes();
        self.record(item, writes, Err(error));
    }

    /// The secrets engines Vault has mounted now (`sys/mounts`, by path with its `/`).
    async fn secrets_mounts(&self) -> Result<config::Fields, ItemError> {
        let answer = self.io.get("sys/mounts").await?;
        Ok(auth::mounts_of(answer.as_ref()))
    }

    /// The parsed value of `entry`, or `None` once it is reported failed: it did not parse,
    /// or the mounts it is checked against could not be read.
    fn usable<'e, T>(
        &mut self,
        entry: &'e config::Entry<T>,
        mounts: &Result<config::Fields, ItemError>,
    ) -> Option<&'e T> {
        match (&entry.parsed, mounts) {
            (Err(problem), _) => self.fail(&entry.item, problem.clone().into()),
            (Ok(_), Err(error)) => {
                let error = ItemError::Prerequisite(format!("listing secrets engines: {error}"));
                self.fail(&entry.item, error);
            }
            (Ok(value), Ok(_)) => return Some(value),
        }
        None
    }

    /// Reports an item left out on purpose.
    fn skip(&mut self, item: &str, reason: String) {
        self.report.push(ItemReport {
            item: item.to_string(),
            outcome: Outcome::Skipped(reason),
            writes: 0,
            input_hash: None,
        });
    }

    /// Applies each item of a section whose items are one [`Desired`] each.
    async fn ensure_each<T>(
        &mut self,
        entries: &[config::Entry<T>],
        desired: impl Fn(&str, &T) -> Desired,
    ) {
        for entry in entries {
            match &entry.parsed {
                Ok(value) => self.ensure_and_record(&desired(&entry.item, value)).await,
                Err(problem) => self.fail(&entry.item, problem.clone().into()),
            }
        }
    }

    /// Applies one item and reports it.
    async fn ensure_and_record(&mut self, desired: &Desired) {
        let before = self.io.writes();
        let result = self.ensure(desired).await;
        self.record(&desired.item, before, result);
    }

    /// Writes `desired` unless Vault holds it already.
    async fn ensure(&self, desired: &Desired) -> Result<Applied, ItemError> {
        let input = Value::Object(desired.body.clone());
        let (hash, previous) = self.hashes(&desired.item, &input);
        let drift = match self.io.read(&desired.api_path).await? {
            Current::Found(held) => drift(&desired.body, &held),
            Current::Missing => {
                info!(pod = %self.io.pod(), item = %desired.item, "creating");
                self.io.write(&desired.api_path, &input).await?;
                return Ok(Applied::written(Some(hash)));
            }
            Current::Unreadable => Drift {
                differs: Vec::new(),
                write_only: desired.body.keys().cloned().collect(),
            },
        };
        let keep_hash = (!drift.write_only.is_empty()).then(|| hash.clone());
        if !drift.needs_write(previous, &hash) {
            debug!(pod = %self.io.pod(), item = %desired.item, "unchanged");
            return Ok(Applied::unchanged(keep_hash));
        }
        info!(
            pod = %self.io.pod(),
            item = %desired.item,
            differs = ?drift.differs,
            unreadable = ?drift.write_only,
            "updating"
        );
        self.io.write(&desired.api_path, &input).await?;
        Ok(Applied::written(keep_hash))
    }
}

/// `value` as a name in a path: text, or a number written without quotes.
fn name_of(value: Option<&Value>) -> Option<String> {
    match value? {
        Value::String(text) => Some(text.clone()),
        Value::Number(number) => Some(number.to_string()),
        _ => None,
    }
}

/// `fields` without `keys`, for bodies whose name is in the path.
fn without(fields: &Fields, keys: &[&str]) -> Fields {
    fields
        .iter()
        .filter(|(key, _)| !keys.contains(&key.as_str()))
        .map(|(key, value)| (key.clone(), value.clone()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The reconciler runs a pass inside a spawned task.
    #[allow(dead_code)]
    fn apply_is_send(vault: &AuthedClient, config: &Value, options: &ApplyOptions) {
        fn send<T: Send>(_: &T) {}
        send(&apply(vault, config, options));
    }

    #[test]
    fn options_read_the_given_environment_and_hide_it() {
        let options = ApplyOptions {
            environment: Some(BTreeMap::from([("A".to_string(), "s3cr3t".to_string())])),
            hash_key: Some(Secret::from("key")),
            ..ApplyOptions::default()
        };
        assert_eq!(options.variable("A").as_deref(), Some("s3cr3t"));
        assert_eq!(options.variable("PATH"), None);
        let shown = format!("{options:?}");
        assert!(
            !shown.contains("s3cr3t") && !shown.contains("\"key\""),
            "{shown}"
        );
    }

    #[test]
    fn accessors_are_read_only_when_named() {
        let plain = serde_json::json!({"policies": [{"name": "a", "rules": "path"}]});
        let named = serde_json::json!({"policies": [{"name": "a", "rules": "__accessor__k8s"}]});
        assert!(!needs_accessors(&plain));
        assert!(needs_accessors(&named));
    }
}
