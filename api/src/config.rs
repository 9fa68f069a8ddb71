//! The Vault server configuration (`spec.config`): kept free-form, as Vault reads it, with
//! typed views of the few parts the operator acts on.

use std::borrow::Cow;

use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::schema::preserve_unknown_object;

/// Storage backends that can run more than one Vault server at once on their own.
const HA_STORAGE: &[&str] = &["raft", "consul", "etcd", "zookeeper"];

/// Storage backends that support HA only with `ha_enabled: "true"`.
const OPTIONAL_HA_STORAGE: &[&str] = &[
    "dynamodb",
    "gcs",
    "spanner",
    "mysql",
    "postgresql",
    "cockroachdb",
    "mssql",
];

/// The Vault server configuration, as its configuration file holds it.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(transparent)]
pub struct VaultConfig(pub Map<String, Value>);

impl JsonSchema for VaultConfig {
    fn schema_name() -> Cow<'static, str> {
        "VaultConfig".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        preserve_unknown_object()
    }
}

/// Why `config.storage` names no single backend.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StorageProblem {
    /// There is no `storage` (nor `backend`) stanza.
    Missing,
    /// The stanza is not an object of one backend.
    NotOneBackend(usize),
}

impl VaultConfig {
    /// The `storage` stanza (Vault also accepts its old name, `backend`).
    fn storage_stanza(&self) -> Option<&Value> {
        self.0.get("storage").or_else(|| self.0.get("backend"))
    }

    /// The storage backend's type and settings, such as `("raft", {"path": ...})`.
    pub fn storage(&self) -> Result<(&str, &Value), StorageProblem> {
        let stanza = first_block(self.storage_stanza().ok_or(StorageProblem::Missing)?);
        match stanza.and_then(Value::as_object) {
            Some(backends) if backends.len() == 1 => {
                let (kind, settings) = backends.iter().next().ok_or(StorageProblem::Missing)?;
                Ok((kind.as_str(), settings))
            }
            Some(backends) => Err(StorageProblem::NotOneBackend(backends.len())),
            None => Err(StorageProblem::NotOneBackend(0)),
        }
    }

    /// The storage backend's type, when there is exactly one.
    pub fn storage_type(&self) -> Option<&str> {
        self.storage().ok().map(|(kind, _)| kind)
    }

    /// True when the configuration can run several servers at once: the backend supports
    /// HA (some only with `ha_enabled`), or a separate `ha_storage` is given.
    pub fn supports_ha(&self) -> bool {
        if self.0.contains_key("ha_storage") || self.0.contains_key("ha_backend") {
            return true;
        }
        match self.storage() {
            Ok((kind, _)) if HA_STORAGE.contains(&kind) => true,
            Ok((kind, settings)) if OPTIONAL_HA_STORAGE.contains(&kind) => {
                settings.get("ha_enabled").is_some_and(is_true)
            }
            _ => false,
        }
    }

    /// True when the storage is Raft (integrated storage).
    pub fn is_raft(&self) -> bool {
        self.storage_type() == Some("raft")
    }

    /// The `path` of a file or Raft storage backend.
    pub fn storage_path(&self) -> Option<&str> {
        match self.storage() {
            Ok(("raft" | "file", settings)) => settings.get("path").and_then(Value::as_str),
            _ => None,
        }
    }

    /// True when an auto-unseal `seal` stanza is configured (Vault then uses recovery keys).
    pub fn has_auto_unseal(&self) -> bool {
        self.0.get("seal").is_some_and(|seal| !seal.is_null())
    }

    /// The first TCP listener's settings, in either the object or the list form Vault takes.
    pub fn tcp_listener(&self) -> Option<&Map<String, Value>> {
        let listener = self.0.get("listener")?;
        let blocks: Vec<&Value> = match listener {
            Value::Array(items) => items.iter().collect(),
            other => vec![other],
        };
        blocks
            .into_iter()
            .find_map(|block| first_block(block.get("tcp")?)?.as_object())
    }

    /// Mutable access to the first TCP listener's settings.
    pub fn tcp_listener_mut(&mut self) -> Option<&mut Map<String, Value>> {
        let listener = self.0.get_mut("listener")?;
        let blocks: Vec<&mut Value> = match listener {
            Value::Array(items) => items.iter_mut().collect(),
            other => vec![other],
        };
        blocks.into_iter().find_map(|block| {
            let tcp = block.get_mut("tcp")?;
            let tcp = match tcp {
                Value::Array(items) => items.first_mut()?,
                other => other,
            };
            tcp.as_object_mut()
        })
    }

    /// True unless the TCP listener sets `tls_disable`. Vault serves TLS by default.
    pub fn tls_enabled(&self) -> bool {
        self.tcp_listener()
            .and_then(|tcp| tcp.get("tls_disable"))
            .is_none_or(|disabled| !is_true(disabled))
    }

    /// The TCP listener's address, such as `0.0.0.0:8200`.
    pub fn listener_address(&self) -> Option<&str> {
        self.tcp_listener()?.get("address")?.as_str()
    }
}

/// Vault's JSON form lets a block be an object or a list of objects; the first one counts.
fn first_block(value: &Value) -> Option<&Value> {
    match value {
        Value::Array(items) => items.first(),
        other => Some(other),
    }
}

/// Vault reads booleans from HCL loosely: `true`, `"true"`, `1` and `"1"` all mean true.
pub fn is_true(value: &Value) -> bool {
    match value {
        Value::Bool(b) => *b,
        Value::String(s) => matches!(s.to_ascii_lowercase().as_str(), "true" | "1" | "t"),
        Value::Number(n) => n.as_i64() == Some(1),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn config(value: Value) -> VaultConfig {
        serde_json::from_value(value).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn storage_in_object_and_list_forms() {
        let object = config(json!({"storage": {"raft": {"path": "/vault/file"}}}));
        assert_eq!(object.storage_type(), Some("raft"));
        assert_eq!(object.storage_path(), Some("/vault/file"));

        let list = config(json!({"storage": [{"file": {"path": "/data"}}]}));
        assert_eq!(list.storage_type(), Some("file"));

        let old_name = config(json!({"backend": {"consul": {}}}));
        assert_eq!(old_name.storage_type(), Some("consul"));
    }

    #[test]
    fn storage_problems() {
        assert_eq!(config(json!({})).storage(), Err(StorageProblem::Missing));
        let two = config(json!({"storage": {"raft": {}, "file": {}}}));
        assert_eq!(two.storage(), Err(StorageProblem::NotOneBackend(2)));
    }

    #[test]
    fn ha_support() {
        assert!(config(json!({"storage": {"raft": {}}})).supports_ha());
        assert!(!config(json!({"storage": {"file": {}}})).supports_ha());
        assert!(!config(json!({"storage": {"dynamodb": {}}})).supports_ha());
        assert!(config(json!({"storage": {"dynamodb": {"ha_enabled": "true"}}})).supports_ha());
        let separate = json!({"storage": {"s3": {}}, "ha_storage": {"consul": {}}});
        assert!(config(separate).supports_ha());
    }

    #[test]
    fn tls_follows_tls_disable() {
        assert!(config(json!({"listener": {"tcp": {"address": "0.0.0.0:8200"}}})).tls_enabled());
        for off in [json!(true), json!("true"), json!(1), json!("1")] {
            let c = config(json!({"listener": [{"tcp": {"tls_disable": off}}]}));
            assert!(!c.tls_enabled(), "tls_disable = {off}");
        }
        let on = config(json!({"listener": {"tcp": {"tls_disable": false}}}));
        assert!(on.tls_enabled());
    }
}
