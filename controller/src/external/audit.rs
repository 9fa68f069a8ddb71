//! `audit`: audit devices. HashiCorp Vault enables them through `sys/audit`. OpenBao
//! refuses that and reads them from its server configuration only: the build step renders
//! them there when the pods run OpenBao ([`runs_openbao`], [`server_config_stanzas`]), and
//! a pass checks that OpenBao lists them.

use serde_json::{Map, Value, json};
use tracing::info;

use super::compare::{Drift, drift};
use super::config::{AuditDevice, Entry, Fields};
use super::io::ItemError;
use super::{Applied, Pass};
use crate::vault::types::Flavor;

/// Whether the pods of `vault` run OpenBao, and so are given the audit devices in their
/// configuration: as pods of the spec's image said (the status keeps it), or as the image
/// is named before any has answered. A wrong guess costs one roll of the pods once they
/// answer.
pub fn runs_openbao(vault: &vault_api::Vault) -> bool {
    let image = vault.spec.image.as_deref();
    let said = vault
        .status
        .as_ref()
        .filter(|status| status.flavor_image.as_deref() == image)
        .and_then(|status| status.flavor);
    match said {
        Some(flavor) => flavor == Flavor::OpenBao,
        None => image.is_some_and(|image| image.contains("openbao")),
    }
}

/// The `audit` stanzas of OpenBao's server configuration (its JSON form) for the `audit`
/// section of `external_config`, or `None` when it has none. Each device becomes
/// `{"<type>": {"<path>": {"description": ..., "options": {...}}}}`, options as text.
/// Templates are left as written: the pods expand them. Items that cannot be read are left
/// out here and reported by the configuration pass.
pub fn server_config_stanzas(external_config: &Value) -> Option<Value> {
    let devices = external_config.get("audit")?.as_array()?;
    let stanzas: Vec<Value> = devices
        .iter()
        .filter_map(|device| {
            let kind = device.get("type")?.as_str()?;
            let path = device
                .get("path")
                .and_then(Value::as_str)
                .map(|path| path.trim_matches('/'))
                .filter(|path| !path.is_empty())
                .unwrap_or(kind);
            let mut body = Map::new();
            if let Some(description) = device.get("description").and_then(Value::as_str) {
                body.insert("description".to_string(), json!(description));
            }
            if let Some(Value::Object(options)) = device.get("options") {
                let options: Map<String, Value> = options
                    .iter()
                    .map(|(key, value)| (key.clone(), json!(as_text(value))))
                    .collect();
                body.insert("options".to_string(), Value::Object(options));
            }
            if let Some(local) = device.get("local").and_then(Value::as_bool) {
                body.insert("local".to_string(), json!(local));
            }
            Some(json!({ kind: { path: body } }))
        })
        .collect();
    (!stanzas.is_empty()).then_some(Value::Array(stanzas))
}

/// An option's value as the text OpenBao's configuration takes.
fn as_text(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}

/// Applies every audit device of the configuration; `flavor` says which server this is.
pub(super) async fn apply(
    pass: &mut Pass<'_>,
    devices: &[Entry<AuditDevice>],
    flavor: &Result<Option<Flavor>, String>,
) {
    if devices.is_empty() {
        return;
    }
    let held = pass
        .io
        .get("sys/audit")
        .await
        .map(|answer| super::auth::mounts_of(answer.as_ref()));
    for entry in devices {
        let device = match (&entry.parsed, &held, flavor) {
            (Err(problem), _, _) => {
                pass.fail(&entry.item, problem.clone().into());
                continue;
            }
            (Ok(_), Err(error), _) => {
                let error = ItemError::Prerequisite(format!("listing audit devices: {error}"));
                pass.fail(&entry.item, error);
                continue;
            }
            (Ok(_), _, Err(error)) => {
                let error = ItemError::Prerequisite(format!("asking the server's kind: {error}"));
                pass.fail(&entry.item, error);
                continue;
            }
            (Ok(device), Ok(_), Ok(_)) => device,
        };
        let held = held
            .as_ref()
            .ok()
            .and_then(|held| held.get(&format!("{}/", device.path)));
        if flavor == &Ok(Some(Flavor::OpenBao)) {
            declared(pass, &entry.item, device, held);
        } else {
            let before = pass.io.writes();
            let result = enable(pass, &entry.item, device, held).await;
            pass.record(&entry.item, before, result);
        }
    }
}

/// How a device Vault holds differs from the configured one.
fn difference(device: &AuditDevice, held: &Value) -> Drift {
    let mut wanted = device.options.clone();
    let mut actual = match held.get("options") {
        Some(Value::Object(options)) => options.clone(),
        _ => Fields::new(),
    };
    wanted.insert("type".to_string(), json!(device.kind));
    for (key, value) in [
        ("description", device.description.as_ref().map(|d| json!(d))),
        ("local", device.local.map(|l| json!(l))),
    ] {
        if let Some(value) = value {
            wanted.insert(key.to_string(), value);
        }
    }
    for key in ["type", "description", "local"] {
        if let Some(value) = held.get(key) {
            actual.insert(key.to_string(), value.clone());
        }
    }
    drift(&wanted, &actual)
}

/// HashiCorp Vault: enables the device, or enables it again when it differs, since an
/// audit device cannot be changed in place.
async fn enable(
    pass: &Pass<'_>,
    item: &str,
    device: &AuditDevice,
    held: Option<&Value>,
) -> Result<Applied, ItemError> {
    let mut body = json!({"type": device.kind, "options": device.options});
    if let Some(description) = &device.description {
        body["description"] = json!(description);
    }
    if let Some(local) = device.local {
        body["local"] = json!(local);
    }
    let (hash, previous) = pass.hashes(item, &body);
    let path = format!("sys/audit/{}", device.path);

    let Some(held) = held else {
        info!(pod = %pass.io.pod(), item, "enabling audit device");
        pass.io.write(&path, &body).await?;
        return Ok(Applied::written(Some(hash)));
    };
    let drift = difference(device, held);
    let keep_hash = (!drift.write_only.is_empty()).then(|| hash.clone());
    if !drift.needs_write(previous, &hash) {
        return Ok(Applied::unchanged(keep_hash));
    }
    info!(pod = %pass.io.pod(), item, differs = ?drift.differs, "enabling audit device again");
    pass.io.delete(&path).await?;
    pass.io.write(&path, &body).await?;
    Ok(Applied::written(keep_hash))
}

/// OpenBao: the device is in the server configuration; the pass checks that OpenBao runs
/// it as configured.
fn declared(pass: &mut Pass<'_>, item: &str, device: &AuditDevice, held: Option<&Value>) {
    let reason = match held {
        Some(held) if difference(device, held).differs.is_empty() => {
            let before = pass.io.writes();
            return pass.record(item, before, Ok(Applied::unchanged(None)));
        }
        Some(_) => format!(
            "OpenBao runs another device at {}/: it takes audit devices from its server \
             configuration only, where this one is declared; applied when the pods restart",
            device.path
        ),
        None => "OpenBao takes audit devices from its server configuration only, where this \
                 one is declared; listed once the pods restart with it"
            .to_string(),
    };
    pass.skip(item, reason);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devices_become_openbao_configuration_stanzas() {
        let config = json!({"audit": [
            {"type": "file", "description": "File based audit logging device",
             "options": {"file_path": "/tmp/vault.log", "log_raw": true, "hmac_accessor": 0}},
            {"type": "socket", "path": "/net/", "local": true,
             "options": {"address": "127.0.0.1:9090"}},
            {"path": "no-type"},
        ]});
        assert_eq!(
            server_config_stanzas(&config),
            Some(json!([
                {"file": {"file": {"description": "File based audit logging device",
                    "options": {"file_path": "/tmp/vault.log", "log_raw": "true",
                                "hmac_accessor": "0"}}}},
                {"socket": {"net": {"local": true,
                    "options": {"address": "127.0.0.1:9090"}}}},
            ]))
        );
        assert_eq!(server_config_stanzas(&json!({"policies": []})), None);
        assert_eq!(server_config_stanzas(&json!({"audit": []})), None);
    }

    /// The configuration the pods get: the devices when the pods run OpenBao only, and an
    /// `audit` the user wrote into `spec.config` kept as written.
    #[test]
    fn the_build_step_renders_devices_into_openbao_configuration_only() {
        let vault = |image: &str, config: Value| -> vault_api::Vault {
            let resource = json!({
                "apiVersion": "vault.banzaicloud.com/v1alpha1",
                "kind": "Vault",
                "metadata": {"name": "vault", "namespace": "ns", "uid": "0000"},
                "spec": {"size": 1, "image": image, "config": config,
                         "externalConfig": {"audit": [
                             {"type": "file", "options": {"file_path": "stdout"}}]}},
            });
            match serde_json::from_value(resource) {
                Ok(vault) => vault_api::default(&vault),
                Err(error) => panic!("{error}"),
            }
        };
        let storage = json!({"storage": {"file": {"path": "/vault/file"}}});
        let rendered = |vault: &vault_api::Vault| match crate::build::render_config(vault) {
            Ok(config) => config.get("audit").cloned(),
            Err(error) => panic!("{error}"),
        };

        let openbao = vault("openbao/openbao:2.7.2", storage.clone());
        assert_eq!(
            rendered(&openbao),
            Some(json!([{"file": {"file": {"options": {"file_path": "stdout"}}}}]))
        );
        assert_eq!(
            rendered(&vault("hashicorp/vault:2.0.1", storage.clone())),
            None
        );
        let mut own = storage.clone();
        own["audit"] = json!([{"file": {"mine": {"options": {"file_path": "x"}}}}]);
        let kept = vault("openbao/openbao:2.7.2", own.clone());
        assert_eq!(rendered(&kept), Some(own["audit"].clone()));

        // What pods of the same image said overrides the image's name, either way; what
        // pods of an earlier image said does not count.
        let said = |image: &str, flavor: Flavor, said_by: &str| {
            let mut vault = vault(image, storage.clone());
            vault.status = Some(vault_api::status::VaultStatus {
                flavor: Some(flavor),
                flavor_image: Some(said_by.to_string()),
                ..Default::default()
            });
            rendered(&vault)
        };
        let bao = "registry.example/bao:2.7.2";
        assert!(said(bao, Flavor::OpenBao, bao).is_some());
        let mirror = "registry.example/openbao-mirror:1";
        assert_eq!(said(mirror, Flavor::Vault, mirror), None);
        assert_eq!(said("hashicorp/vault:2.0.1", Flavor::OpenBao, bao), None);
        assert!(said("openbao/openbao:2.7.2", Flavor::Vault, "hashicorp/vault:2").is_some());
    }
}
