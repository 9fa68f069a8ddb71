//! `startupSecrets`: key/value secrets written when missing or different.

use serde_json::{Value, json};
use tracing::info;

use super::config::{Entry, Fields, StartupSecret};
use super::io::{Current, ItemError};
use super::{Applied, Pass};

/// Applies every startup secret of the configuration.
pub(super) async fn apply(pass: &mut Pass<'_>, secrets: &[Entry<StartupSecret>]) {
    if secrets.is_empty() {
        return;
    }
    // Read after the engines are mounted: the mount says which kv version a path is.
    let mounts = pass.secrets_mounts().await;
    for entry in secrets {
        let Some(secret) = pass.usable(entry, &mounts) else {
            continue;
        };
        // TODO(pki startup secrets, secretKeyRef from Kubernetes Secrets): reported as
        // skipped until the controller reads Secrets for them.
        if secret.kind != "kv" {
            pass.skip(
                &entry.item,
                format!(
                    "startup secrets of type `{}` are not applied yet",
                    secret.kind
                ),
            );
            continue;
        }
        if !secret.data.secret_key_ref.is_empty() {
            pass.skip(&entry.item, "secretKeyRef is not applied yet".to_string());
            continue;
        }
        let mounts = mounts.as_ref().map(Clone::clone).unwrap_or_default();
        let before = pass.io.writes();
        let result = ensure_kv(pass, secret, &mounts).await;
        pass.record(&entry.item, before, result);
    }
}

/// The kv mount above `path`, and its version.
pub(super) fn kv_mount<'m>(path: &str, mounts: &'m Fields) -> Option<(&'m str, u8)> {
    mounts
        .iter()
        .filter(|(mount, held)| {
            format!("{path}/").starts_with(mount.as_str())
                && matches!(
                    held.get("type").and_then(Value::as_str),
                    Some("kv" | "generic")
                )
        })
        .max_by_key(|(mount, _)| mount.len())
        .map(|(mount, held)| {
            let version = held.pointer("/options/version").and_then(|v| match v {
                Value::String(text) => text.parse().ok(),
                Value::Number(number) => number.as_u64().map(|n| n as u8),
                _ => None,
            });
            (mount.trim_end_matches('/'), version.unwrap_or(1))
        })
}

async fn ensure_kv(
    pass: &Pass<'_>,
    secret: &StartupSecret,
    mounts: &Fields,
) -> Result<Applied, ItemError> {
    let (mount, version) = kv_mount(&secret.path, mounts).ok_or_else(|| ItemError::NoKvMount {
        path: secret.path.clone(),
    })?;
    let wanted = &secret.data.data;
    if version < 2 {
        let held = match pass.io.read(&secret.path).await? {
            Current::Found(held) => Some(held),
            Current::Missing | Current::Unreadable => None,
        };
        if held.as_ref() == Some(wanted) {
            return Ok(Applied::unchanged(None));
        }
        info!(pod = %pass.io.pod(), path = %secret.path, "writing startup secret");
        pass.io
            .write(&secret.path, &Value::Object(wanted.clone()))
            .await?;
        return Ok(Applied::written(None));
    }

    let mut written = false;
    let held = match pass.io.read(&secret.path).await? {
        // A deleted latest version reads as `data: null`.
        Current::Found(mut held) => match held.remove("data") {
            Some(Value::Object(data)) => Some(data),
            _ => None,
        },
        Current::Missing | Current::Unreadable => None,
    };
    // `cas: 0` asks for the secret to be created only, never replaced.
    let create_only = secret
        .data
        .options
        .get("cas")
        .is_some_and(|cas| cas.as_u64() == Some(0) || cas == "0");
    let keep = match &held {
        Some(held) => held == wanted || create_only,
        None => false,
    };
    if !keep {
        let mut body = json!({ "data": wanted });
        if !secret.data.options.is_empty() {
            body["options"] = json!(secret.data.options);
        }
        info!(pod = %pass.io.pod(), path = %secret.path, "writing startup secret");
        pass.io.write(&secret.path, &body).await?;
        written = true;
    }

    if let Some(max_versions) = secret.max_versions {
        let relative = secret.path[mount.len()..].trim_start_matches('/');
        let relative = relative.strip_prefix("data/").unwrap_or(relative);
        let metadata = format!("{mount}/metadata/{relative}");
        let held = match pass.io.read(&metadata).await? {
            Current::Found(held) => held.get("max_versions").and_then(Value::as_u64),
            Current::Missing | Current::Unreadable => None,
        };
        if held != Some(max_versions) {
            let body = json!({ "max_versions": max_versions });
            pass.io.write(&metadata, &body).await?;
            written = true;
        }
    }
    Ok(if written {
        Applied::written(None)
    } else {
        Applied::unchanged(None)
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn the_longest_kv_mount_above_a_path_gives_the_version() {
        let Value::Object(mounts) = json!({
            "secret/": {"type": "kv", "options": {"version": "2"}},
            "secret/old/": {"type": "kv", "options": {"version": "1"}},
            "kv1/": {"type": "kv", "options": null},
            "pki/": {"type": "pki"},
        }) else {
            panic!("not a map");
        };
        assert_eq!(kv_mount("secret/data/a/b", &mounts), Some(("secret", 2)));
        assert_eq!(kv_mount("secret/old/x", &mounts), Some(("secret/old", 1)));
        assert_eq!(kv_mount("kv1/x", &mounts), Some(("kv1", 1)));
        assert_eq!(kv_mount("secretive/x", &mounts), None);
        assert_eq!(kv_mount("pki/x", &mounts), None);
    }
}
