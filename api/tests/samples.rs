//! The Bank-Vaults sample resources, which users will apply unchanged, and broken resources
//! whose errors must name the field to fix.

use std::path::PathBuf;

use vault_api::{Vault, default, validate};

/// The shared samples: `../shared/samples/bank-vaults` beside the checkout, or the folder
/// `VAULT_SAMPLES_DIR` names.
fn samples_dir() -> PathBuf {
    match std::env::var_os("VAULT_SAMPLES_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/samples/bank-vaults"),
    }
}

fn read_sample(file: &str) -> Vault {
    let path = samples_dir().join(file);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    let mut vaults =
        vault_api::documents::read_vaults(&text).unwrap_or_else(|e| panic!("parsing {file}: {e}"));
    assert_eq!(vaults.len(), 1, "{file} holds one Vault");
    vaults
        .remove(0)
        .vault
        .unwrap_or_else(|e| panic!("{file}: {e}"))
}

/// What each sample must give: `None` when it is valid, or the path of the field refused.
const EXPECTED: &[(&str, Option<&str>)] = &[
    ("cr.yaml", None),
    ("cr-aws.yaml", None),
    ("cr-azure.yaml", None),
    ("cr-gcpkms.yaml", None),
    ("cr-kvv2.yaml", None),
    ("cr-podAntiAffinity.yaml", Some("spec.size")),
    ("cr-raft.yaml", None),
    ("cr-vault-kv-unseal.yaml", None),
];

#[test]
fn every_sample_has_an_expected_outcome() {
    let mut files: Vec<String> = std::fs::read_dir(samples_dir())
        .unwrap_or_else(|e| panic!("reading {}: {e}", samples_dir().display()))
        .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
        .filter(|name| name.starts_with("cr") && name.ends_with(".yaml"))
        .collect();
    files.sort();
    let mut expected: Vec<&str> = EXPECTED.iter().map(|(file, _)| *file).collect();
    expected.sort();
    assert_eq!(files, expected);
}

#[test]
fn samples_default_and_validate_as_expected() {
    for (file, refused) in EXPECTED {
        let vault = read_sample(file);
        let defaulted = default(&vault);
        assert_eq!(
            default(&defaulted),
            defaulted,
            "{file}: default is not idempotent"
        );

        match (validate(&defaulted, None), refused) {
            (Ok(_), None) => {}
            (Err(errors), Some(path)) => {
                assert!(errors.iter().any(|e| e.path == *path), "{file}: {errors:?}");
            }
            (outcome, _) => panic!("{file}: expected refusal at {refused:?}, got {outcome:?}"),
        }
    }
}

#[test]
fn file_storage_with_three_pods_is_refused_with_the_fix() {
    let errors = validate(&default(&read_sample("cr-podAntiAffinity.yaml")), None)
        .err()
        .unwrap_or_default();
    let message = errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n");
    assert!(message.contains("spec.size: 3 pods need storage that supports high availability"));
    assert!(message.contains("file does not"));
    assert!(
        message.contains("raft"),
        "the fix names raft storage: {message}"
    );
}

#[test]
fn raft_sample_keeps_its_fields_and_gains_defaults() {
    let vault = default(&read_sample("cr-raft.yaml"));
    let spec = &vault.spec;
    assert_eq!(spec.size, Some(3));
    assert_eq!(spec.image.as_deref(), Some("hashicorp/vault:2.0.1"));
    assert_eq!(spec.service_account.as_deref(), Some("vault"));
    assert_eq!(spec.ca_namespaces, ["vswh"]);
    assert_eq!(spec.config.storage_type(), Some("raft"));
    assert_eq!(
        spec.config.0["cluster_addr"],
        "https://${.Env.POD_NAME}:8201"
    );
    assert!(spec.external_config.0.contains_key("startupSecrets"));
    assert_eq!(
        spec.volume_claim_templates[0].metadata.name.as_deref(),
        Some("vault-raft")
    );

    let unseal = spec.unseal_config.clone().unwrap_or_default();
    let secret = unseal.kubernetes.unwrap_or_default();
    assert_eq!(secret.secret_namespace.as_deref(), Some("default"));
    assert_eq!(secret.secret_name.as_deref(), Some("vault-unseal-keys"));
    assert!(
        spec.affinity.is_some(),
        "three pods get the preferred spread"
    );
    assert_eq!(spec.tls_expiry_threshold.as_deref(), Some("168h"));
}

#[test]
fn bank_vaults_only_fields_are_warned_about() {
    let warnings = validate(&default(&read_sample("cr-raft.yaml")), None).unwrap_or_default();
    let paths: Vec<&str> = warnings.iter().map(|w| w.path.as_str()).collect();
    assert!(
        paths.contains(&"spec.vaultConfigurerAnnotations"),
        "{paths:?}"
    );
    assert!(paths.contains(&"spec.secretInitsConfig"), "{paths:?}");
}

/// A valid three-pod Raft resource that each broken case changes in one place.
fn base() -> serde_json::Value {
    serde_json::json!({
        "apiVersion": "vault.banzaicloud.com/v1alpha1",
        "kind": "Vault",
        "metadata": {"name": "vault", "namespace": "default"},
        "spec": {
            "size": 3,
            "config": {
                "storage": {"raft": {"path": "/vault/file"}},
                "listener": {"tcp": {"address": "0.0.0.0:8200"}},
            },
            "volumeMounts": [{"name": "vault-raft", "mountPath": "/vault/file"}],
        },
    })
}

fn with(pointer: &str, value: serde_json::Value) -> Vault {
    let mut object = base();
    let (parent, key) = pointer.rsplit_once('/').unwrap_or(("", pointer));
    let mut target = &mut object;
    for part in parent.split('/').filter(|p| !p.is_empty()) {
        target = &mut target[part];
    }
    if value.is_null() {
        if let Some(map) = target.as_object_mut() {
            map.remove(key);
        }
    } else {
        target[key] = value;
    }
    serde_json::from_value(object).unwrap_or_else(|e| panic!("{pointer}: {e}"))
}

#[test]
fn the_base_resource_is_valid_without_warnings() {
    assert_eq!(
        validate(&default(&with("/spec/size", 3.into())), None),
        Ok(vec![])
    );
}

#[test]
fn broken_resources_name_the_field() {
    use serde_json::json;
    let cases: Vec<(&str, Vault, &str)> = vec![
        (
            "no storage",
            with("/spec/config/storage", json!(null)),
            "spec.config.storage",
        ),
        (
            "two storage backends",
            with("/spec/config/storage", json!({"raft": {}, "file": {}})),
            "spec.config.storage",
        ),
        (
            "file storage, 3 pods",
            with("/spec/config/storage", json!({"file": {}})),
            "spec.size",
        ),
        ("negative size", with("/spec/size", json!(-1)), "spec.size"),
        (
            "two key stores",
            with("/spec/unsealConfig", json!({"aws": {}, "google": {}})),
            "spec.unsealConfig",
        ),
        (
            "threshold above shares",
            with(
                "/spec/unsealConfig",
                json!({"options": {"secretShares": 3, "secretThreshold": 4}}),
            ),
            "spec.unsealConfig.options.secretThreshold",
        ),
        (
            "zero threshold",
            with(
                "/spec/unsealConfig",
                json!({"options": {"secretThreshold": 0}}),
            ),
            "spec.unsealConfig.options.secretThreshold",
        ),
        (
            "too many shares",
            with(
                "/spec/unsealConfig",
                json!({"options": {"secretShares": 300}}),
            ),
            "spec.unsealConfig.options.secretShares",
        ),
        (
            "bad duration",
            with("/spec/tlsExpiryThreshold", json!("a week")),
            "spec.tlsExpiryThreshold",
        ),
        (
            "bad TLS Secret name",
            with("/spec/existingTlsSecretName", json!("My_Secret")),
            "spec.existingTlsSecretName",
        ),
        (
            "bad listener address",
            with(
                "/spec/config/listener",
                json!({"tcp": {"address": "0.0.0.0"}}),
            ),
            "spec.config.listener.tcp.address",
        ),
        (
            "bad keys Secret namespace",
            with(
                "/spec/unsealConfig",
                json!({"kubernetes": {"secretNamespace": "Prod"}}),
            ),
            "spec.unsealConfig.kubernetes.secretNamespace",
        ),
        (
            "bad service type",
            with("/spec/serviceType", json!("Ingress")),
            "spec.serviceType",
        ),
        (
            "bad port",
            with("/spec/servicePorts", json!({"api-port": 70000})),
            "spec.servicePorts.api-port",
        ),
        (
            "bad CA namespace",
            with("/spec/caNamespaces", json!(["a b"])),
            "spec.caNamespaces[0]",
        ),
        (
            "bad extra TLS host",
            with(
                "/spec/tlsAdditionalHosts",
                json!(["vault.example.com", "not a host"]),
            ),
            "spec.tlsAdditionalHosts[1]",
        ),
        (
            "name too long",
            with("/metadata/name", json!("v".repeat(53))),
            "metadata.name",
        ),
        (
            "name starts with digit",
            with("/metadata/name", json!("1vault")),
            "metadata.name",
        ),
    ];

    for (case, vault, path) in cases {
        let errors = validate(&vault, None).err().unwrap_or_default();
        assert!(
            errors.iter().any(|e| e.path == path),
            "{case}: expected {path}, got {errors:?}"
        );
        for error in &errors {
            assert!(!error.fix.is_empty(), "{case}: {error} says no fix");
        }
    }
}

#[test]
fn every_problem_is_reported_at_once() {
    let mut vault = with("/spec/config/storage", serde_json::json!({"file": {}}));
    vault.spec.tls_expiry_threshold = Some("soon".into());
    vault.spec.service_type = Some("Ingress".into());
    let errors = validate(&vault, None).err().unwrap_or_default();
    let paths: Vec<&str> = errors.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(
        paths,
        ["spec.size", "spec.tlsExpiryThreshold", "spec.serviceType"]
    );
}

#[test]
fn changing_the_storage_type_is_refused_on_update() {
    let old = with("/spec/size", 1.into());
    let new = with(
        "/spec/config/storage",
        serde_json::json!({"file": {"path": "/vault/file"}}),
    );
    let new = Vault {
        spec: vault_api::VaultSpec {
            size: Some(1),
            ..new.spec
        },
        ..new
    };
    let errors = validate(&new, Some(&old)).err().unwrap_or_default();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0].path, "spec.config.storage");
    assert!(
        errors[0].problem.contains("from raft to file"),
        "{}",
        errors[0]
    );

    let scaled = with("/spec/size", 5.into());
    assert!(validate(&scaled, Some(&old)).is_ok(), "other changes pass");
}

#[test]
fn raft_data_off_any_volume_is_warned_about() {
    let vault = with("/spec/volumeMounts", serde_json::json!([]));
    let warnings = validate(&vault, None).unwrap_or_default();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert_eq!(warnings[0].path, "spec.config.storage.raft.path");
}

#[test]
fn hsm_with_a_secret_is_one_key_store() {
    let vault = with(
        "/spec/unsealConfig",
        serde_json::json!({"hsm": {"slotId": 0, "modulePath": "/m.so"}, "kubernetes": {}}),
    );
    assert!(validate(&vault, None).is_ok());
    let store = vault.spec.unseal_config.and_then(|u| u.key_store());
    assert_eq!(store, Some(vault_api::unseal::KeyStoreKind::Hsm));
}

#[test]
fn s3_server_side_encryption_keeps_its_bank_vaults_name_and_needs_no_kms_key() {
    let sse = serde_json::json!({"aws": {"s3Bucket": "keys", "s3Region": "eu-west-1",
                                          "s3SSE": "AES256"}});
    let vault = with("/spec/unsealConfig", sse);
    assert!(
        validate(&vault, None).is_ok(),
        "{:?}",
        validate(&vault, None)
    );
    let written = serde_json::to_value(&vault).unwrap_or_default();
    assert_eq!(written["spec"]["unsealConfig"]["aws"]["s3SSE"], "AES256");

    let neither = serde_json::json!({"aws": {"s3Bucket": "keys", "s3Region": "eu-west-1"}});
    let errors = validate(&with("/spec/unsealConfig", neither), None)
        .err()
        .unwrap_or_default();
    assert!(
        errors
            .iter()
            .any(|e| e.path == "spec.unsealConfig.aws.kmsKeyId"),
        "{errors:?}"
    );
}
