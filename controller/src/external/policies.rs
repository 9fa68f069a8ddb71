//! `policies`: ACL policies, written when their rules differ from what Vault holds.

use std::collections::BTreeMap;

use serde_json::{Value, json};
use tracing::info;

use super::config::{Entry, Policy};
use super::io::{Current, ItemError};
use super::{Applied, Pass};

/// The placeholder replaced by the accessor of the auth mount named after it.
const ACCESSOR: &str = "__accessor__";

/// Applies every policy of the configuration.
pub(super) async fn apply(
    pass: &mut Pass<'_>,
    policies: &[Entry<Policy>],
    accessors: &Result<BTreeMap<String, String>, String>,
) {
    for entry in policies {
        let before = pass.io.writes();
        let result = match &entry.parsed {
            Ok(policy) => ensure(pass, &entry.item, policy, accessors).await,
            Err(problem) => Err(problem.clone().into()),
        };
        pass.record(&entry.item, before, result);
    }
}

async fn ensure(
    pass: &Pass<'_>,
    item: &str,
    policy: &Policy,
    accessors: &Result<BTreeMap<String, String>, String>,
) -> Result<Applied, ItemError> {
    let mut rules = policy.rules.text();
    if rules.contains(ACCESSOR) {
        let accessors = accessors
            .as_ref()
            .map_err(|e| ItemError::Prerequisite(e.clone()))?;
        rules = replace_accessors(&rules, accessors)?;
    }

    let path = format!("sys/policies/acl/{}", policy.name);
    let held = match pass.io.read(&path).await? {
        Current::Found(held) => held
            .get("policy")
            .and_then(Value::as_str)
            .map(str::to_string),
        Current::Missing | Current::Unreadable => None,
    };
    if held.as_deref() == Some(rules.as_str()) {
        return Ok(Applied::unchanged(None));
    }
    info!(pod = %pass.io.pod(), item, created = held.is_none(), "writing policy");
    pass.io.write(&path, &json!({ "policy": rules })).await?;
    Ok(Applied::written(None))
}

/// `text` with each `__accessor__<path>` replaced by the accessor of the auth mount at
/// `<path>`. Longer paths go first, so `__accessor__kubernetes_b` is not read as the
/// accessor of `kubernetes` followed by `_b`.
pub(super) fn replace_accessors(
    text: &str,
    accessors: &BTreeMap<String, String>,
) -> Result<String, ItemError> {
    let mut paths: Vec<&String> = accessors.keys().collect();
    paths.sort_by_key(|path| std::cmp::Reverse(path.len()));
    let mut replaced = text.to_string();
    for path in paths {
        replaced = replaced.replace(&format!("{ACCESSOR}{path}"), &accessors[path]);
    }
    if let Some(start) = replaced.find(ACCESSOR) {
        let rest = &replaced[start + ACCESSOR.len()..];
        let end = rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || "_-/".contains(c)))
            .unwrap_or(rest.len());
        return Err(ItemError::UnknownAccessor {
            placeholder: format!("{ACCESSOR}{}", &rest[..end]),
        });
    }
    Ok(replaced)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_take_the_longest_mount_path() {
        let accessors = BTreeMap::from([
            ("kubernetes".to_string(), "auth_kubernetes_1".to_string()),
            ("kubernetes_b".to_string(), "auth_kubernetes_2".to_string()),
        ]);
        let rules = r#"path "secret/{{identity.entity.aliases.__accessor__kubernetes.name}}" {}
path "x/{{identity.entity.aliases.__accessor__kubernetes_b.name}}" {}"#;
        let replaced = replace_accessors(rules, &accessors).map_err(|e| e.to_string());
        assert_eq!(
            replaced,
            Ok(
                r#"path "secret/{{identity.entity.aliases.auth_kubernetes_1.name}}" {}
path "x/{{identity.entity.aliases.auth_kubernetes_2.name}}" {}"#
                    .to_string()
            )
        );
    }

    #[test]
    fn a_placeholder_for_no_mount_is_named() {
        let error = replace_accessors("a.__accessor__oidc.name", &BTreeMap::new())
            .map_err(|e| e.to_string());
        assert_eq!(
            error,
            Err("`__accessor__oidc` names no enabled auth method".to_string())
        );
    }
}
