//! `startupSecrets`: key/value secrets written when missing or different, and CA bundles
//! imported into a pki engine when it holds another CA. Values may come from Kubernetes
//! Secrets (`secretKeyRef`), read through [`super::SecretValues`].

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
        if !matches!(secret.kind.as_str(), "kv" | "pki") {
            let reason = format!("startup secrets of type `{}` are not applied", secret.kind);
            pass.skip(&entry.item, reason);
            continue;
        }
        let mounts = mounts.as_ref().map(Clone::clone).unwrap_or_default();
        let before = pass.io.writes();
        let result = match resolve(pass, secret).await {
            Ok(data) if secret.kind == "pki" => ensure_pki(pass, secret, &data, &mounts).await,
            Ok(data) => ensure_kv(pass, secret, &data, &mounts).await,
            Err(error) => Err(error),
        };
        pass.record(&entry.item, before, result);
    }
}

/// The secret's data: `data.data`, with each `secretKeyRef` read from its Kubernetes
/// Secret and kept under its key, as Bank-Vaults does.
async fn resolve(pass: &mut Pass<'_>, secret: &StartupSecret) -> Result<Fields, ItemError> {
    let mut data = secret.data.data.clone();
    let references = &secret.data.secret_key_ref;
    if references.is_empty() {
        return Ok(data);
    }
    let Some(source) = pass.options.secret_values.clone() else {
        return Err(ItemError::SecretRef {
            index: 0,
            reason: "Kubernetes Secrets cannot be read here".to_string(),
        });
    };
    for (index, reference) in references.iter().enumerate() {
        let text = |key: &str| reference.get(key).and_then(Value::as_str);
        let (Some(name), Some(key)) = (text("name"), text("key")) else {
            let reason = "`name` and `key` are required".to_string();
            return Err(ItemError::SecretRef { index, reason });
        };
        let value = match source.value(name, key).await {
            Ok(Some(value)) => value,
            Ok(None) => {
                let reason = format!("Secret `{name}` has no key `{key}`");
                return Err(ItemError::SecretRef { index, reason });
            }
            Err(error) => {
                let reason = format!("reading Secret `{name}`: {error}");
                return Err(ItemError::SecretRef { index, reason });
            }
        };
        pass.redactor.add(value.expose().to_string());
        data.insert(key.to_string(), json!(value.expose()));
    }
    Ok(data)
}

/// The longest mount above `path` of one of `types`, without its `/`, and what Vault says
/// of it.
fn mount_above<'m>(path: &str, mounts: &'m Fields, types: &[&str]) -> Option<(&'m str, &'m Value)> {
    mounts
        .iter()
        .filter(|(mount, held)| {
            format!("{path}/").starts_with(mount.as_str())
                && held
                    .get("type")
                    .and_then(Value::as_str)
                    .is_some_and(|kind| types.contains(&kind))
        })
        .max_by_key(|(mount, _)| mount.len())
        .map(|(mount, held)| (mount.trim_end_matches('/'), held))
}

/// The kv mount above `path`, and its version.
pub(super) fn kv_mount<'m>(path: &str, mounts: &'m Fields) -> Option<(&'m str, u8)> {
    let (mount, held) = mount_above(path, mounts, &["kv", "generic"])?;
    let version = held.pointer("/options/version").and_then(|v| match v {
        Value::String(text) => text.parse().ok(),
        Value::Number(number) => number.as_u64().map(|n| n as u8),
        _ => None,
    });
    Some((mount, version.unwrap_or(1)))
}

/// The certificates of a PEM bundle, each as its base64 text without line breaks.
fn certificates(bundle: &str) -> Vec<String> {
    const BEGIN: &str = "-----BEGIN CERTIFICATE-----";
    const END: &str = "-----END CERTIFICATE-----";
    let mut found = Vec::new();
    let mut rest = bundle;
    while let Some(start) = rest.find(BEGIN) {
        let body = &rest[start + BEGIN.len()..];
        let Some(end) = body.find(END) else { break };
        found.push(body[..end].split_whitespace().collect());
        rest = &body[end + END.len()..];
    }
    found
}

/// The certificate of an answer of `cert/ca` or `issuer/<id>`, as [`certificates`] gives it.
fn certificate_of(answer: Option<Value>) -> Option<String> {
    let pem = answer?.pointer("/data/certificate")?.as_str()?.to_string();
    certificates(&pem).into_iter().next()
}

/// Imports the bundle (`data`'s values, CA certificate first, and its key) into the pki
/// engine above `secret.path` (`<mount>/config/ca`), unless that engine's default CA is
/// the bundle's already; and makes it the default issuer, which an import does not when
/// the engine has one.
async fn ensure_pki(
    pass: &Pass<'_>,
    secret: &StartupSecret,
    data: &Fields,
    mounts: &Fields,
) -> Result<Applied, ItemError> {
    let (mount, _) =
        mount_above(&secret.path, mounts, &["pki"]).ok_or_else(|| ItemError::NoPkiMount {
            path: secret.path.clone(),
        })?;
    let bundle = data
        .values()
        .filter_map(Value::as_str)
        .collect::<Vec<_>>()
        .join("\n");
    let ca = certificates(&bundle)
        .into_iter()
        .next()
        .ok_or(ItemError::NoCertificate)?;
    let default_ca = || async {
        match pass.io.get(&format!("{mount}/cert/ca")).await {
            Ok(answer) => Ok(certificate_of(answer)),
            // No CA yet.
            Err(error) if error.status() == Some(400) => Ok(None),
            Err(error) => Err(error),
        }
    };
    if default_ca().await?.as_ref() == Some(&ca) {
        return Ok(Applied::unchanged(None));
    }

    info!(pod = %pass.io.pod(), path = %secret.path, "importing CA bundle");
    let answer = pass
        .io
        .write(&secret.path, &json!({ "pem_bundle": bundle }))
        .await?;
    if default_ca().await?.as_ref() == Some(&ca) {
        return Ok(Applied::written(None));
    }
    let issuers: Vec<String> = match answer.pointer("/data/mapping") {
        Some(Value::Object(mapping)) => mapping.keys().cloned().collect(),
        _ => Vec::new(),
    };
    for issuer in issuers {
        let held = pass.io.get(&format!("{mount}/issuer/{issuer}")).await?;
        if certificate_of(held).as_ref() == Some(&ca) {
            let body = json!({ "default": issuer });
            pass.io
                .write(&format!("{mount}/config/issuers"), &body)
                .await?;
            break;
        }
    }
    Ok(Applied::written(None))
}

async fn ensure_kv(
    pass: &Pass<'_>,
    secret: &StartupSecret,
    wanted: &Fields,
    mounts: &Fields,
) -> Result<Applied, ItemError> {
    let (mount, version) = kv_mount(&secret.path, mounts).ok_or_else(|| ItemError::NoKvMount {
        path: secret.path.clone(),
    })?;
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
    fn certificates_are_read_from_a_bundle_whatever_its_line_breaks() {
        let bundle = "-----BEGIN PRIVATE KEY-----\nAAA\n-----END PRIVATE KEY-----\n\
                      -----BEGIN CERTIFICATE-----\nMIIB\nxyz=\n-----END CERTIFICATE-----\n\
                      -----BEGIN CERTIFICATE-----\r\nMIIC\r\n-----END CERTIFICATE-----";
        assert_eq!(certificates(bundle), ["MIIBxyz=", "MIIC"]);
        assert!(certificates("-----BEGIN CERTIFICATE-----\nMIIB").is_empty());
    }

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
