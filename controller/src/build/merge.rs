//! Merging the user's `vaultPodSpec` and `vaultContainerSpec` into what the operator builds.
//!
//! Objects merge field by field, the user's value winning; lists whose items all have a
//! `name` (containers, env, volumes, ports) merge item by item on that name, so a user can
//! change one field of the Vault container without restating the rest of it.

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

/// Merges `overlay` into `base`: see the module documentation.
pub fn merge_by_name(base: &mut Value, overlay: Value) {
    match (base, overlay) {
        (Value::Object(base), Value::Object(overlay)) => {
            for (key, value) in overlay {
                match base.get_mut(&key) {
                    Some(existing) => merge_by_name(existing, value),
                    None => {
                        base.insert(key, value);
                    }
                }
            }
        }
        (Value::Array(base), Value::Array(overlay)) if all_named(base) && all_named(&overlay) => {
            for item in overlay {
                let name = item.get("name").cloned();
                match base.iter_mut().find(|b| b.get("name") == name.as_ref()) {
                    Some(existing) => merge_by_name(existing, item),
                    None => base.push(item),
                }
            }
        }
        (base, overlay) => *base = overlay,
    }
}

fn all_named(items: &[Value]) -> bool {
    items
        .iter()
        .all(|item| item.get("name").is_some_and(Value::is_string))
}

/// Merges a typed overlay into a typed base through their JSON forms.
pub(super) fn merge_typed<T, O>(base: &T, overlay: &O) -> Result<T, serde_json::Error>
where
    T: Serialize + DeserializeOwned,
    O: Serialize,
{
    let mut merged = serde_json::to_value(base)?;
    merge_by_name(&mut merged, serde_json::to_value(overlay)?);
    serde_json::from_value(merged)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn named_lists_merge_by_name_and_others_are_replaced() {
        let mut base = json!({
            "containers": [{"name": "vault", "image": "v", "args": ["server"]}],
            "hostAliases": [{"ip": "1.1.1.1"}],
        });
        merge_by_name(
            &mut base,
            json!({
                "containers": [{"name": "vault", "args": ["x"]}, {"name": "side"}],
                "hostAliases": [{"ip": "127.0.0.1", "hostnames": ["vault.local"]}],
            }),
        );
        assert_eq!(
            base,
            json!({
                "containers": [{"name": "vault", "image": "v", "args": ["x"]}, {"name": "side"}],
                "hostAliases": [{"ip": "127.0.0.1", "hostnames": ["vault.local"]}],
            })
        );
    }
}
