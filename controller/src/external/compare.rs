//! Whether what Vault holds is what the configuration asks for.
//!
//! Vault answers in its own forms: `ttl: 1h` comes back as `3600`, `policies: a,b` as
//! `["a", "b"]`, `"true"` as `true`, policy names in lower case. A steady state must make
//! no writes, so values are compared in those terms. Fields Vault never returns (passwords,
//! keys) cannot be compared: they are judged by a hash of the input last applied.

use serde_json::Value;
use sha2::{Digest, Sha256};

use super::config::Fields;
use crate::Secret;

/// Deprecated role fields and the `token_*` fields Vault may return them as, or the reverse.
const ALIASES: &[(&str, &str)] = &[
    ("ttl", "token_ttl"),
    ("max_ttl", "token_max_ttl"),
    ("period", "token_period"),
    ("policies", "token_policies"),
    ("bound_cidrs", "token_bound_cidrs"),
    ("num_uses", "token_num_uses"),
    ("explicit_max_ttl", "token_explicit_max_ttl"),
];

/// How the fields of an item compare with what Vault holds.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Drift {
    /// Fields Vault holds with another value.
    pub differs: Vec<String>,
    /// Fields Vault does not return, such as passwords.
    pub write_only: Vec<String>,
}

impl Drift {
    /// Whether the item must be written: a field differs, or a field that cannot be
    /// compared has an input other than the one last applied (or none is known).
    pub fn needs_write(&self, previous_hash: Option<&str>, input_hash: &str) -> bool {
        !self.differs.is_empty()
            || (!self.write_only.is_empty() && previous_hash != Some(input_hash))
    }
}

/// Compares every field of `desired` with `actual`.
pub(crate) fn drift(desired: &Fields, actual: &Fields) -> Drift {
    let mut drift = Drift::default();
    for (key, wanted) in desired {
        if wanted.is_null() {
            continue;
        }
        let held = actual.get(key).or_else(|| {
            ALIASES.iter().find_map(|(old, new)| match key.as_str() {
                k if k == *old => actual.get(*new),
                k if k == *new => actual.get(*old),
                _ => None,
            })
        });
        match held {
            Some(held) if same(key, wanted, held) => {}
            Some(_) => drift.differs.push(key.clone()),
            // `generate_signing_key` and the like are actions, not settings: that the item
            // exists shows they were done. Doing them again would replace a key.
            None if key.starts_with("generate_") => {}
            None => drift.write_only.push(key.clone()),
        }
    }
    drift
}

/// Whether `held` is `wanted` as Vault would return it, for the field `key`.
pub(crate) fn same(key: &str, wanted: &Value, held: &Value) -> bool {
    match (wanted, held) {
        (Value::Null, _) => true,
        (Value::String(wanted), Value::String(held)) => same_text(key, wanted, held),
        (Value::String(text), Value::Number(number))
        | (Value::Number(number), Value::String(text)) => {
            let seconds = text
                .trim()
                .parse::<f64>()
                .ok()
                .or_else(|| duration_seconds(text));
            seconds.is_some() && seconds == number.as_f64()
        }
        (Value::Number(wanted), Value::Number(held)) => wanted.as_f64() == held.as_f64(),
        (Value::String(text), Value::Bool(flag)) | (Value::Bool(flag), Value::String(text)) => {
            parse_bool(text) == Some(*flag)
        }
        (Value::Bool(wanted), Value::Bool(held)) => wanted == held,
        (Value::Number(number), Value::Bool(flag)) => number.as_f64() == Some(f64::from(*flag)),
        (Value::String(text), Value::Array(items)) => same_list(key, &split_list(text), items),
        (Value::Array(items), Value::String(text)) => same_list(key, items, &split_list(text)),
        (Value::Array(wanted), Value::Array(held)) => same_list(key, wanted, held),
        (Value::Object(wanted), Value::Object(held)) => same_map(wanted, held),
        (wanted, Value::Null) => is_empty(wanted),
        _ => false,
    }
}

fn same_text(key: &str, wanted: &str, held: &str) -> bool {
    if wanted == held {
        return true;
    }
    // Vault keeps policy names in lower case.
    if key.contains("polic") && wanted.eq_ignore_ascii_case(held) {
        return true;
    }
    match (duration_seconds(wanted), duration_seconds(held)) {
        (Some(wanted), Some(held)) => wanted == held,
        _ => false,
    }
}

/// Lists compare in order, or as sets when they hold plain values (Vault sorts some).
fn same_list(key: &str, wanted: &[Value], held: &[Value]) -> bool {
    if wanted.len() != held.len() {
        return false;
    }
    if wanted.iter().zip(held).all(|(w, h)| same(key, w, h)) {
        return true;
    }
    let plain = |items: &[Value]| -> Option<Vec<String>> {
        let mut texts = items
            .iter()
            .map(|item| match item {
                Value::String(text) if key.contains("polic") => Some(text.to_lowercase()),
                Value::String(text) => Some(text.clone()),
                Value::Number(_) | Value::Bool(_) => Some(item.to_string()),
                _ => None,
            })
            .collect::<Option<Vec<_>>>()?;
        texts.sort();
        Some(texts)
    };
    matches!((plain(wanted), plain(held)), (Some(w), Some(h)) if w == h)
}

/// Maps within a field (`bound_claims`, `metadata`) compare whole: a key Vault holds that
/// the configuration does not name is a difference, unless its value is empty.
fn same_map(wanted: &Fields, held: &Fields) -> bool {
    wanted
        .iter()
        .all(|(key, w)| held.get(key).is_some_and(|h| same(key, w, h)) || is_empty(w))
        && held
            .iter()
            .all(|(key, h)| wanted.contains_key(key) || is_empty(h))
}

fn is_empty(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::String(text) => text.is_empty(),
        Value::Array(items) => items.is_empty(),
        Value::Object(fields) => fields.is_empty(),
        _ => false,
    }
}

/// `a, b,c` as `["a", "b", "c"]`: Vault takes comma-separated text for its list fields.
fn split_list(text: &str) -> Vec<Value> {
    text.split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
        .map(|item| Value::String(item.to_string()))
        .collect()
}

fn parse_bool(text: &str) -> Option<bool> {
    match text.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "t" => Some(true),
        "false" | "0" | "f" => Some(false),
        _ => None,
    }
}

/// Seconds in a duration as Vault reads one: Go's form (`1h30m`, `10m`, `1.5h`, `300ms`),
/// with Vault's `d` for days, or a plain number of seconds.
pub(crate) fn duration_seconds(text: &str) -> Option<f64> {
    let text = text.trim();
    if let Ok(seconds) = text.parse::<f64>() {
        return Some(seconds);
    }
    let mut rest = text;
    let mut total = 0.0;
    while !rest.is_empty() {
        let number_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .filter(|&end| end > 0)?;
        let number: f64 = rest[..number_end].parse().ok()?;
        rest = &rest[number_end..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_end] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            "d" => 86400.0,
            _ => return None,
        };
        total += number * scale;
        rest = &rest[unit_end..];
    }
    Some(total)
}

/// The hash of the input of one item, kept (by the caller) in place of the input: it tells
/// whether a field Vault does not return changed since it was applied. `key`, when given,
/// keeps a guessed password from being checked against a stored hash.
pub(crate) fn input_hash(key: Option<&Secret>, item: &str, body: &Value) -> String {
    let mut hasher = Sha256::new();
    if let Some(key) = key {
        hasher.update((key.expose().len() as u64).to_be_bytes());
        hasher.update(key.expose().as_bytes());
    }
    hasher.update(item.as_bytes());
    hasher.update([0]);
    let mut text = String::new();
    canonical(body, &mut text);
    hasher.update(text.as_bytes());
    hasher
        .finalize()
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

/// JSON with the keys of every map sorted, so that equal inputs hash alike whatever order
/// they were written in.
fn canonical(value: &Value, out: &mut String) {
    match value {
        Value::Object(fields) => {
            let mut keys: Vec<&String> = fields.keys().collect();
            keys.sort();
            out.push('{');
            for (index, key) in keys.into_iter().enumerate() {
                if index > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(key.clone()).to_string());
                out.push(':');
                canonical(&fields[key], out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (index, item) in items.iter().enumerate() {
                if index > 0 {
                    out.push(',');
                }
                canonical(item, out);
            }
            out.push(']');
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn fields(value: Value) -> Fields {
        match value {
            Value::Object(fields) => fields,
            _ => Fields::new(),
        }
    }

    #[test]
    fn durations_read_as_vault_reads_them() {
        assert_eq!(duration_seconds("1h"), Some(3600.0));
        assert_eq!(duration_seconds("1h30m"), Some(5400.0));
        assert_eq!(duration_seconds("720h"), Some(2_592_000.0));
        assert_eq!(duration_seconds("3600"), Some(3600.0));
        assert_eq!(duration_seconds("0s"), Some(0.0));
        assert_eq!(duration_seconds("7d"), Some(604_800.0));
        assert_eq!(duration_seconds("300ms"), Some(0.3));
        assert_eq!(duration_seconds("1x"), None);
        assert_eq!(duration_seconds("h"), None);
        assert_eq!(duration_seconds("default"), None);
    }

    #[test]
    fn a_kubernetes_role_as_written_is_the_role_vault_returns() {
        let desired = fields(json!({
            "bound_service_account_names": ["default", "secrets-webhook"],
            "bound_service_account_namespaces": "default, vswh",
            "policies": "Allow_Secrets",
            "ttl": "1h",
            "token_no_default_policy": "false",
            "max_ttl": "2h",
        }));
        let actual = fields(json!({
            "bound_service_account_names": ["secrets-webhook", "default"],
            "bound_service_account_namespaces": ["default", "vswh"],
            "policies": ["allow_secrets"],
            "token_policies": ["allow_secrets"],
            "ttl": 3600,
            "token_ttl": 3600,
            "token_no_default_policy": false,
            "token_max_ttl": 7200,
        }));
        assert_eq!(drift(&desired, &actual), Drift::default());
    }

    #[test]
    fn differences_and_write_only_fields_are_told_apart() {
        let desired = fields(
            json!({"ttl": "1h", "password": "x", "policies": "a", "n": null,
            "generate_signing_key": true}),
        );
        let actual = fields(json!({"ttl": 60, "policies": ["a"]}));
        let drift = drift(&desired, &actual);
        assert_eq!(drift.differs, ["ttl"]);
        assert_eq!(drift.write_only, ["password"]);

        let write_only = Drift {
            differs: vec![],
            write_only: vec!["password".to_string()],
        };
        assert!(write_only.needs_write(None, "h1"));
        assert!(write_only.needs_write(Some("h0"), "h1"));
        assert!(!write_only.needs_write(Some("h1"), "h1"));
        assert!(!Drift::default().needs_write(None, "h1"));
    }

    #[test]
    fn values_compare_in_vault_terms() {
        assert!(same("max_versions", &json!("3"), &json!(3)));
        assert!(same("version", &json!(2), &json!("2")));
        assert!(same("cas_required", &json!(true), &json!(true)));
        assert!(same("allow_subdomains", &json!("true"), &json!(true)));
        assert!(same("delete_version_after", &json!("0"), &json!("0s")));
        assert!(same(
            "issuing_certificates",
            &json!("https://a/ca"),
            &json!(["https://a/ca"])
        ));
        assert!(same("allowed_domains", &json!(""), &json!([])));
        assert!(same("bound_claims", &json!({"a": "b"}), &json!({"a": "b"})));
        assert!(!same(
            "bound_claims",
            &json!({"a": "b"}),
            &json!({"a": "b", "c": "d"})
        ));
        assert!(!same("ttl", &json!("1h"), &json!(60)));
        assert!(!same("name", &json!("A"), &json!("a")));
        assert!(!same("allowed_domains", &json!("a,b"), &json!(["a"])));
    }

    #[test]
    fn hashes_ignore_key_order_and_depend_on_item_and_key() {
        let one = json!({"a": 1, "b": {"c": [1, 2], "d": "x"}});
        let other: Value = match serde_json::from_str(r#"{"b": {"d": "x", "c": [1, 2]}, "a": 1}"#) {
            Ok(value) => value,
            Err(error) => panic!("{error}"),
        };
        let hash = input_hash(None, "auth[userpass].users[admin]", &one);
        assert_eq!(
            hash,
            input_hash(None, "auth[userpass].users[admin]", &other)
        );
        assert_eq!(hash.len(), 64);
        assert_ne!(hash, input_hash(None, "auth[userpass].users[other]", &one));
        let key = Secret::from("hash key");
        assert_ne!(
            hash,
            input_hash(Some(&key), "auth[userpass].users[admin]", &one)
        );
    }
}
