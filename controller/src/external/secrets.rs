//! `secrets`: mount or tune each engine, then write its `configuration` items.

use std::collections::BTreeMap;

use serde_json::{Value, json};
use tracing::info;

use super::auth::check_mount;
use super::config::{Entry, Fields, SecretsEngine, check_path};
use super::io::{Current, ItemError};
use super::policies::replace_accessors;
use super::{Applied, Desired, Pass, drift, name_of, without};

/// Keys of a configuration item that steer how it is applied and are not sent.
const CONTROL_KEYS: &[&str] = &["name", "create_only", "rotate", "save_to"];

/// Vault's answer when an engine's keys exist and it will not replace them (ssh CA).
const KEPT_KEYS: &str = "delete them before reconfiguring";

/// Applies every secrets engine of the configuration.
pub(super) async fn apply(
    pass: &mut Pass<'_>,
    engines: &[Entry<SecretsEngine>],
    accessors: &Result<BTreeMap<String, String>, String>,
) {
    if engines.is_empty() {
        return;
    }
    let mounts = pass.secrets_mounts().await;
    for entry in engines {
        let Some(engine) = pass.usable(entry, &mounts) else {
            continue;
        };
        let held = mounts
            .as_ref()
            .ok()
            .and_then(|mounts| mounts.get(&format!("{}/", engine.path)));

        let before = pass.io.writes();
        let mounted = ensure_mount(pass, &entry.item, engine, held).await;
        let mount_failed = mounted.is_err();
        pass.record(&entry.item, before, mounted);

        for item in configuration_items(&entry.item, engine) {
            match item {
                Ok(item) if mount_failed => {
                    let dependency = entry.item.clone();
                    pass.fail(&item.desired.item, ItemError::Dependency { dependency });
                }
                Ok(item) => {
                    let before = pass.io.writes();
                    let result = match entry.deferred_for(&item.desired.place) {
                        Some(problem) => Err(problem.clone().into()),
                        None => ensure_configuration(pass, engine, &item, accessors).await,
                    };
                    pass.record(&item.desired.item, before, result);
                }
                Err((item, error)) => pass.fail(&item, error),
            }
        }
    }
}

/// Mounts the engine when it is not there, tunes it when its settings differ.
async fn ensure_mount(
    pass: &Pass<'_>,
    item: &str,
    engine: &SecretsEngine,
    held: Option<&Value>,
) -> Result<Applied, ItemError> {
    let input = json!({
        "type": engine.mount_type(),
        "description": engine.description,
        "options": engine.options,
        "config": engine.config,
        "local": engine.local,
        "seal_wrap": engine.seal_wrap,
    });
    let (hash, previous) = pass.hashes(item, &input);

    let Some(held) = held else {
        let mut body = json!({
            "type": engine.mount_type(),
            "config": engine.config,
            "options": engine.options,
        });
        if let Some(description) = &engine.description {
            body["description"] = json!(description);
        }
        for (key, value) in [("local", engine.local), ("seal_wrap", engine.seal_wrap)] {
            if let Some(value) = value {
                body[key] = json!(value);
            }
        }
        info!(pod = %pass.io.pod(), item, "mounting secrets engine");
        pass.io
            .write(&format!("sys/mounts/{}", engine.path), &body)
            .await?;
        return Ok(Applied::written(Some(hash)));
    };

    check_mount(
        &engine.path,
        engine.mount_type(),
        held,
        engine.local,
        engine.seal_wrap,
    )?;
    let mut wanted = engine.config.clone();
    let mut actual = match held.get("config") {
        Some(Value::Object(config)) => config.clone(),
        _ => Fields::new(),
    };
    if let Some(description) = &engine.description {
        wanted.insert("description".to_string(), json!(description));
        if let Some(held) = held.get("description") {
            actual.insert("description".to_string(), held.clone());
        }
    }
    let mut drift = drift(&wanted, &actual);
    // Options compare one by one: Vault adds its own (kv's `version`) to those given.
    let held_options = match held.get("options") {
        Some(Value::Object(options)) => options.clone(),
        _ => Fields::new(),
    };
    let options = super::compare::drift(&engine.options, &held_options);
    drift
        .differs
        .extend(options.differs.iter().map(|key| format!("options.{key}")));
    drift.write_only.extend(
        options
            .write_only
            .iter()
            .map(|key| format!("options.{key}")),
    );

    let keep_hash = (!drift.write_only.is_empty()).then(|| hash.clone());
    if !drift.needs_write(previous, &hash) {
        return Ok(Applied::unchanged(keep_hash));
    }
    if !engine.options.is_empty() {
        wanted.insert("options".to_string(), json!(engine.options));
    }
    info!(pod = %pass.io.pod(), item, differs = ?drift.differs, "tuning secrets engine");
    pass.io
        .write(
            &format!("sys/mounts/{}/tune", engine.path),
            &Value::Object(wanted),
        )
        .await?;
    Ok(Applied::written(keep_hash))
}

/// One item of an engine's `configuration`.
#[derive(Debug)]
pub(super) struct ConfigurationItem {
    desired: Desired,
    /// The endpoint under the mount, such as `roles` or `root/generate`.
    endpoint: String,
    name: Option<String>,
    /// Write only when nothing is there yet.
    create_only: bool,
    /// Ask Vault to rotate the root credentials once written (database, aws); implies
    /// `create_only`, since the credentials written stop working once rotated.
    rotate: bool,
    /// Where to keep the answer of the write (kv version 2), such as a generated CA key.
    save_to: Option<String>,
}

/// A sub-item that could not be made, with its path in the configuration.
type Refused = (String, ItemError);

/// Every item of `configuration`: `<mount>/<endpoint>/<name>`, or `<mount>/<endpoint>`
/// for an item without a name.
pub(super) fn configuration_items(
    item: &str,
    engine: &SecretsEngine,
) -> Vec<Result<ConfigurationItem, Refused>> {
    let mut items = Vec::new();
    for (endpoint, entries) in &engine.configuration {
        let at = format!("{item}.configuration.{endpoint}");
        if let Err(problem) = check_path("endpoint", endpoint) {
            items.push(Err((at, problem.into())));
            continue;
        }
        let Value::Array(entries) = entries else {
            items.push(Err((at, ItemError::Shape { expected: "a list" })));
            continue;
        };
        let mut labels: Vec<String> = Vec::new();
        for (index, fields) in entries.iter().enumerate() {
            let name = name_of(fields.get("name"));
            let label = name.clone().unwrap_or_else(|| index.to_string());
            let item = format!("{at}[{label}]");
            let Value::Object(fields) = fields else {
                items.push(Err((item, ItemError::Shape { expected: "a map" })));
                continue;
            };
            if labels.contains(&label) {
                items.push(Err((item, super::Problem::Duplicate.into())));
                continue;
            }
            labels.push(label);
            if let Some(Err(problem)) = name.as_deref().map(|name| check_path("name", name)) {
                items.push(Err((item, problem.into())));
                continue;
            }
            let api_path = match &name {
                Some(name) => format!("{}/{endpoint}/{name}", engine.path),
                None => format!("{}/{endpoint}", engine.path),
            };
            let flag = |key: &str| {
                fields
                    .get(key)
                    .is_some_and(|v| super::compare::same(key, &json!(true), v))
            };
            items.push(Ok(ConfigurationItem {
                endpoint: endpoint.clone(),
                create_only: flag("create_only"),
                rotate: flag("rotate"),
                save_to: name_of(fields.get("save_to")).filter(|path| !path.is_empty()),
                name,
                desired: Desired {
                    item,
                    place: format!("configuration.{endpoint}[{index}]"),
                    api_path,
                    body: without(fields, CONTROL_KEYS),
                },
            }));
        }
    }
    items
}

/// Writes one configuration item unless Vault holds it already (or, `create_only`, holds
/// anything there).
async fn ensure_configuration(
    pass: &Pass<'_>,
    engine: &SecretsEngine,
    item: &ConfigurationItem,
    accessors: &Result<BTreeMap<String, String>, String>,
) -> Result<Applied, ItemError> {
    let mut desired = item.desired.clone();
    for value in desired.body.values_mut() {
        with_accessors(value, accessors)?;
    }

    // A CA cannot be read back from `root/generate`: without the hash of the input last
    // applied (a controller that restarted), a CA already there is taken as that input's,
    // rather than replaced by a new one.
    let (hash, previous) = pass.hashes(&desired.item, &Value::Object(desired.body.clone()));
    if item.endpoint == "root/generate"
        && previous.is_none()
        && exists(pass, engine, item, &desired).await?
    {
        return Ok(Applied::unchanged(Some(hash)));
    }

    if !(item.create_only || item.rotate) {
        return match pass.ensure(&desired).await {
            // Vault keeps the keys it has (ssh CA): as Bank-Vaults does, leave them.
            Err(ItemError::Vault { message, .. }) if message.contains(KEPT_KEYS) => {
                Ok(Applied::unchanged(None))
            }
            other => other,
        };
    }

    if exists(pass, engine, item, &desired).await? {
        return Ok(Applied::unchanged(None));
    }
    info!(pod = %pass.io.pod(), item = %desired.item, "creating");
    let answer = pass
        .io
        .write(&desired.api_path, &Value::Object(desired.body.clone()))
        .await?;
    if let Some(save_to) = &item.save_to {
        let data = answer.get("data").cloned().unwrap_or(Value::Null);
        let body = json!({ "data": data, "options": { "cas": 0 } });
        pass.io.write(save_to, &body).await?;
    }
    if item.rotate
        && let Some(path) = rotate_path(engine, item)
    {
        info!(pod = %pass.io.pod(), item = %desired.item, "rotating root credentials");
        pass.io.write(&path, &json!({})).await?;
    }
    // Recorded so that an item Vault cannot read back is not created again next pass.
    Ok(Applied::written(Some(hash)))
}

/// Whether a create-only item is there already.
async fn exists(
    pass: &Pass<'_>,
    engine: &SecretsEngine,
    item: &ConfigurationItem,
    desired: &Desired,
) -> Result<bool, ItemError> {
    // `root/generate/<type>` cannot be read: a CA is there when `cert/ca` answers.
    if item.endpoint == "root/generate" {
        return match pass.io.get(&format!("{}/cert/ca", engine.path)).await {
            Ok(answer) => Ok(answer
                .and_then(|a| a.pointer("/data/certificate").cloned())
                .is_some_and(|certificate| certificate != "")),
            Err(error) if error.status() == Some(400) => Ok(false),
            Err(error) => Err(error),
        };
    }
    Ok(match pass.io.read(&desired.api_path).await? {
        Current::Found(_) => true,
        Current::Missing => false,
        // Nothing to read back: created when this input was applied before.
        Current::Unreadable => {
            let (hash, previous) = pass.hashes(&desired.item, &Value::Object(desired.body.clone()));
            previous == Some(hash.as_str())
        }
    })
}

/// Where root credentials are rotated, for the engines that have it.
fn rotate_path(engine: &SecretsEngine, item: &ConfigurationItem) -> Option<String> {
    match (engine.mount_type(), item.endpoint.as_str(), &item.name) {
        ("database", "config", Some(name)) => Some(format!("{}/rotate-root/{name}", engine.path)),
        ("aws", "config/root", _) => Some(format!("{}/config/rotate-root", engine.path)),
        _ => None,
    }
}

/// Replaces `__accessor__<path>` placeholders in the strings of `value`.
fn with_accessors(
    value: &mut Value,
    accessors: &Result<BTreeMap<String, String>, String>,
) -> Result<(), ItemError> {
    match value {
        Value::String(text) if text.contains("__accessor__") => {
            let accessors = accessors
                .as_ref()
                .map_err(|error| ItemError::Prerequisite(error.clone()))?;
            *text = replace_accessors(text, accessors)?;
        }
        Value::Array(items) => {
            for item in items {
                with_accessors(item, accessors)?;
            }
        }
        Value::Object(fields) => {
            for field in fields.values_mut() {
                with_accessors(field, accessors)?;
            }
        }
        _ => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::external::config::parse;

    fn engine(value: Value) -> SecretsEngine {
        let parsed = parse(&json!({ "secrets": [value] }), &|_| None);
        match parsed.secrets.into_iter().next().map(|entry| entry.parsed) {
            Some(Ok(engine)) => engine,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn items_are_written_under_their_endpoint_and_name() {
        let pki = engine(json!({"type": "pki", "configuration": {
            "config": [{"name": "urls", "issuing_certificates": "https://v/ca"}],
            "root/generate": [{"name": "exported", "common_name": "v", "create_only": true,
                               "save_to": "secret/data/pki/ca"}],
            "roles": [{"name": "default", "ttl": "30m"}, {"name": "default"}, "x"],
        }}));
        let items = configuration_items("secrets[pki]", &pki);
        let shown: Vec<String> = items
            .iter()
            .map(|item| match item {
                Ok(item) => format!(
                    "{} -> {} {}{}",
                    item.desired.item,
                    item.desired.api_path,
                    if item.create_only { "create_only " } else { "" },
                    item.save_to.as_deref().unwrap_or(""),
                ),
                Err((item, error)) => format!("{item}: {error}"),
            })
            .collect();
        assert_eq!(
            shown,
            [
                "secrets[pki].configuration.config[urls] -> pki/config/urls ",
                "secrets[pki].configuration.roles[default] -> pki/roles/default ",
                "secrets[pki].configuration.roles[default]: named twice in its section; only \
                 the first is applied",
                "secrets[pki].configuration.roles[2]: expected a map",
                "secrets[pki].configuration.root/generate[exported] -> \
                 pki/root/generate/exported create_only secret/data/pki/ca",
            ]
        );
        let Some(Ok(root)) = items.last() else {
            panic!("{shown:?}");
        };
        assert_eq!(
            root.desired.body.keys().collect::<Vec<_>>(),
            ["common_name"]
        );
    }

    #[test]
    fn unnamed_items_write_the_endpoint_itself_and_rotation_has_a_path_per_type() {
        let kv = engine(json!({"type": "kv", "path": "secret",
            "configuration": {"config": [{"max_versions": 3}]}}));
        let items = configuration_items("secrets[secret]", &kv);
        let Some(Ok(config)) = items.first() else {
            panic!("{items:?}");
        };
        assert_eq!(
            config.desired.item,
            "secrets[secret].configuration.config[0]"
        );
        assert_eq!(config.desired.api_path, "secret/config");

        let db = engine(json!({"type": "database", "configuration": {
            "config": [{"name": "my-mysql", "rotate": true, "password": "p"}]}}));
        let items = configuration_items("secrets[database]", &db);
        let Some(Ok(config)) = items.first() else {
            panic!("{items:?}");
        };
        assert!(config.rotate);
        assert_eq!(
            rotate_path(&db, config).as_deref(),
            Some("database/rotate-root/my-mysql")
        );
    }
}
