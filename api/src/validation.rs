//! [`validate`]: the rules a `Vault` resource must meet, as one pure function that the
//! webhook, the plugin and the controller all call.

use std::fmt;
use std::net::IpAddr;

use crate::config::StorageProblem;
use crate::spec::{Vault, VaultSpec};
use crate::unseal::KeyStoreKind;

/// A problem that keeps the resource from being accepted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldError {
    /// JSON path of the field, such as `spec.unsealConfig.options.secretThreshold`.
    pub path: String,
    /// What is wrong.
    pub problem: String,
    /// What would fix it.
    pub fix: String,
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}; {}", self.path, self.problem, self.fix)
    }
}

impl std::error::Error for FieldError {}

/// Something accepted that the user should know about.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Warning {
    /// JSON path of the field.
    pub path: String,
    /// What the user should know.
    pub message: String,
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// Fields that configure Bank-Vaults' own images, which this operator does not run.
const BANK_VAULTS_ONLY: &[&str] = &[
    "bankVaultsImage",
    "bankVaultsVolumeMounts",
    "statsdImage",
    "statsdConfig",
    "fluentdEnabled",
    "fluentdImage",
    "fluentdConfLocation",
    "fluentdConfFile",
    "fluentdConfig",
    "vaultConfigurerAnnotations",
    "vaultConfigurerLabels",
    "vaultConfigurerPodSpec",
    "secretInitsConfig",
];

/// Vault accepts at most this many key shares.
const MAX_SECRET_SHARES: i32 = 255;

/// The longest resource name whose StatefulSet pods still get a valid
/// `controller-revision-hash` label (63 characters, with a suffix of up to 11).
const MAX_NAME_LENGTH: usize = 52;

/// Checks a resource, and on update the change from `old`. Returns the warnings when it is
/// valid, or every problem found, each naming its field and a fix.
pub fn validate(vault: &Vault, old: Option<&Vault>) -> Result<Vec<Warning>, Vec<FieldError>> {
    let mut report = Report::default();
    let spec = &vault.spec;

    check_name(vault.metadata.name.as_deref(), &mut report);
    check_size_and_storage(spec, &mut report);
    check_listener(spec, &mut report);
    check_unseal(spec, &mut report);
    check_tls(spec, &mut report);
    check_services(spec, &mut report);
    check_raft_data_is_kept(spec, &mut report);
    warn_bank_vaults_only(spec, &mut report);
    if let Some(old) = old {
        check_update(old, vault, &mut report);
    }

    if report.errors.is_empty() {
        Ok(report.warnings)
    } else {
        Err(report.errors)
    }
}

#[derive(Default)]
struct Report {
    errors: Vec<FieldError>,
    warnings: Vec<Warning>,
}

impl Report {
    fn error(&mut self, path: &str, problem: impl Into<String>, fix: impl Into<String>) {
        let (path, problem, fix) = (path.to_string(), problem.into(), fix.into());
        self.errors.push(FieldError { path, problem, fix });
    }

    fn warn(&mut self, path: &str, message: impl Into<String>) {
        self.warnings.push(Warning {
            path: path.to_string(),
            message: message.into(),
        });
    }
}

fn check_name(name: Option<&str>, report: &mut Report) {
    let Some(name) = name else { return };
    if !is_dns1035_label(name) || name.len() > MAX_NAME_LENGTH {
        report.error(
            "metadata.name",
            format!("{name:?} cannot name the Services and StatefulSet made from it"),
            format!(
                "use at most {MAX_NAME_LENGTH} lowercase letters, digits and '-', starting \
                 with a letter and ending with a letter or digit"
            ),
        );
    }
}

fn check_size_and_storage(spec: &VaultSpec, report: &mut Report) {
    let size = spec.size.unwrap_or(crate::defaults::SIZE);
    if size < 0 {
        report.error(
            "spec.size",
            format!("{size} is negative"),
            "set 0 or more pods",
        );
    }

    match spec.config.storage() {
        Err(StorageProblem::Missing) => report.error(
            "spec.config.storage",
            "no storage backend is configured",
            "add one, for example `storage: {raft: {path: /vault/file}}`",
        ),
        Err(StorageProblem::NotOneBackend(count)) => report.error(
            "spec.config.storage",
            format!("names {count} backends instead of one"),
            "keep exactly one backend, such as `raft`, under `storage`",
        ),
        Ok((kind, _)) if size > 1 && !spec.config.supports_ha() => report.error(
            "spec.size",
            format!(
                "{size} pods need storage that supports high availability, and {kind} does not"
            ),
            "set size to 1, or use raft storage (`spec.config.storage.raft`)",
        ),
        Ok(_) => {}
    }
}

fn check_listener(spec: &VaultSpec, report: &mut Report) {
    let Some(address) = spec.config.listener_address() else {
        return;
    };
    if !is_listen_address(address) {
        report.error(
            "spec.config.listener.tcp.address",
            format!("{address:?} is not a host and port"),
            "write it as host:port, such as 0.0.0.0:8200 or [::]:8200",
        );
    }
}

fn check_unseal(spec: &VaultSpec, report: &mut Report) {
    let Some(unseal) = &spec.unseal_config else {
        return;
    };

    if unseal.key_store().is_none() {
        let names: Vec<_> = unseal
            .key_stores()
            .into_iter()
            .map(KeyStoreKind::field)
            .collect();
        report.error(
            "spec.unsealConfig",
            format!("{} key stores are set ({})", names.len(), names.join(", ")),
            "keep exactly one (hsm may be paired with kubernetes); unlike Bank-Vaults, which \
             picks one by precedence, this operator does not guess where the keys are",
        );
    }

    check_key_store_settings(unseal, report);

    if let Some(options) = &unseal.options {
        let shares = options
            .secret_shares
            .unwrap_or(crate::defaults::SECRET_SHARES);
        if !(1..=MAX_SECRET_SHARES).contains(&shares) {
            report.error(
                "spec.unsealConfig.options.secretShares",
                format!("{shares} is out of range"),
                format!("use 1 to {MAX_SECRET_SHARES} key shares"),
            );
        }
        let threshold = options
            .secret_threshold
            .unwrap_or_else(|| crate::defaults::SECRET_THRESHOLD.min(shares));
        if threshold < 1 || threshold > shares.max(1) {
            report.error(
                "spec.unsealConfig.options.secretThreshold",
                format!("{threshold} is not between 1 and secretShares ({shares})"),
                "set a threshold from 1 to the number of key shares",
            );
        }
    }

    if let Some(secret) = &unseal.kubernetes {
        if let Some(name) = secret
            .secret_name
            .as_deref()
            .filter(|n| !is_dns1123_subdomain(n))
        {
            report.error(
                "spec.unsealConfig.kubernetes.secretName",
                format!("{name:?} is not a valid Secret name"),
                "use lowercase letters, digits, '-' and '.', at most 253 characters",
            );
        }
        if let Some(ns) = secret
            .secret_namespace
            .as_deref()
            .filter(|n| !is_dns1123_label(n))
        {
            report.error(
                "spec.unsealConfig.kubernetes.secretNamespace",
                format!("{ns:?} is not a valid namespace name"),
                "use at most 63 lowercase letters, digits and '-'",
            );
        }
    }

    if unseal
        .vault
        .as_ref()
        .is_some_and(|store| store.token.is_some())
    {
        report.warn(
            "spec.unsealConfig.vault.token",
            "a token in the resource is readable by everyone who can read the resource; \
             prefer tokenPath or a Kubernetes auth role",
        );
    }
}

/// Each key store's settings that it cannot work without.
fn check_key_store_settings(unseal: &crate::unseal::UnsealConfig, report: &mut Report) {
    if let Some(aws) = &unseal.aws {
        require(
            report,
            "aws",
            "s3Bucket",
            aws.s3_bucket.as_ref(),
            "the bucket the keys are kept in",
        );
        if aws.s3_sse.is_none() {
            let what = "the KMS key that encrypts the keys (or set s3SSE to use S3's encryption)";
            require(report, "aws", "kmsKeyId", aws.kms_key_id.as_ref(), what);
        }
    }
    if let Some(google) = &unseal.google {
        require(
            report,
            "google",
            "kmsKeyRing",
            google.kms_key_ring.as_ref(),
            "the KMS key ring",
        );
        require(
            report,
            "google",
            "kmsCryptoKey",
            google.kms_crypto_key.as_ref(),
            "the KMS key",
        );
        require(
            report,
            "google",
            "kmsLocation",
            google.kms_location.as_ref(),
            "the key ring's location",
        );
        require(
            report,
            "google",
            "kmsProject",
            google.kms_project.as_ref(),
            "the key ring's project",
        );
        let bucket = google.storage_bucket.as_ref();
        require(
            report,
            "google",
            "storageBucket",
            bucket,
            "the bucket the keys are kept in",
        );
    }
    if let Some(azure) = &unseal.azure {
        require(
            report,
            "azure",
            "keyVaultName",
            azure.key_vault_name.as_ref(),
            "the Key Vault",
        );
    }
    if let Some(alibaba) = &unseal.alibaba {
        require(
            report,
            "alibaba",
            "kmsRegion",
            alibaba.kms_region.as_ref(),
            "the KMS region",
        );
        require(
            report,
            "alibaba",
            "kmsKeyId",
            alibaba.kms_key_id.as_ref(),
            "the KMS key",
        );
        require(
            report,
            "alibaba",
            "ossEndpoint",
            alibaba.oss_endpoint.as_ref(),
            "the OSS endpoint",
        );
        require(
            report,
            "alibaba",
            "ossBucket",
            alibaba.oss_bucket.as_ref(),
            "the OSS bucket",
        );
    }
    if let Some(oci) = &unseal.oci {
        require(
            report,
            "oci",
            "keyOCID",
            oci.key_ocid.as_ref(),
            "the encryption key's OCID",
        );
        let endpoint = oci.cryptographic_endpoint.as_ref();
        require(
            report,
            "oci",
            "cryptographicEndpoint",
            endpoint,
            "the Vault's crypto endpoint",
        );
        require(
            report,
            "oci",
            "bucketName",
            oci.bucket_name.as_ref(),
            "the bucket",
        );
        require(
            report,
            "oci",
            "bucketNamespace",
            oci.bucket_namespace.as_ref(),
            "the bucket's namespace",
        );
    }
    if let Some(vault) = &unseal.vault {
        require(
            report,
            "vault",
            "address",
            vault.address.as_ref(),
            "the other Vault's address",
        );
        let path = vault.unseal_keys_path.as_ref();
        require(
            report,
            "vault",
            "unsealKeysPath",
            path,
            "the KV v2 path the keys are kept under",
        );
        if vault.role.is_none() && vault.token.is_none() && vault.token_path.is_none() {
            report.error(
                "spec.unsealConfig.vault",
                "says no way to log in to the other Vault",
                "set role (Kubernetes auth), tokenPath, or token",
            );
        }
    }
    if let Some(hsm) = &unseal.hsm {
        require(
            report,
            "hsm",
            "modulePath",
            hsm.module_path.as_ref(),
            "the PKCS#11 module library",
        );
        if hsm.slot_id.is_none() && hsm.token_label.is_none() {
            report.error(
                "spec.unsealConfig.hsm",
                "names no token",
                "set slotId or tokenLabel",
            );
        }
    }
}

/// Adds an error when a key store's setting is missing or blank.
fn require(report: &mut Report, store: &str, field: &str, value: Option<&String>, what: &str) {
    if value.is_none_or(|v| v.trim().is_empty()) {
        report.error(
            &format!("spec.unsealConfig.{store}.{field}"),
            "is required",
            format!("name {what}"),
        );
    }
}

fn check_tls(spec: &VaultSpec, report: &mut Report) {
    if let Some(threshold) = &spec.tls_expiry_threshold {
        match humantime::parse_duration(threshold) {
            Ok(d) if !d.is_zero() => {}
            _ => report.error(
                "spec.tlsExpiryThreshold",
                format!("{threshold:?} is not a positive duration"),
                "write a duration such as 168h or 720h",
            ),
        }
    }

    if let Some(name) = spec.existing_tls_secret_name.as_deref()
        && !is_dns1123_subdomain(name)
    {
        report.error(
            "spec.existingTlsSecretName",
            format!("{name:?} is not a valid Secret name"),
            "use lowercase letters, digits, '-' and '.', at most 253 characters",
        );
    }

    for (i, host) in spec.tls_additional_hosts.iter().enumerate() {
        let name = host.strip_prefix("*.").unwrap_or(host);
        if host.parse::<IpAddr>().is_err() && !is_dns1123_subdomain(name) {
            report.error(
                &format!("spec.tlsAdditionalHosts[{i}]"),
                format!("{host:?} is neither an IP address nor a DNS name"),
                "give a DNS name (a leading `*.` is allowed) or an IP address",
            );
        }
    }

    for (i, ns) in spec.ca_namespaces.iter().enumerate() {
        if ns != "*" && !is_dns1123_label(ns) {
            report.error(
                &format!("spec.caNamespaces[{i}]"),
                format!("{ns:?} is not a namespace name"),
                "name a namespace, or use \"*\" for all of them",
            );
        }
    }
}

fn check_services(spec: &VaultSpec, report: &mut Report) {
    if let Some(kind) = spec.service_type.as_deref()
        && !["ClusterIP", "NodePort", "LoadBalancer"].contains(&kind)
    {
        report.error(
            "spec.serviceType",
            format!("{kind:?} is not a Service type Vault can be served by"),
            "use ClusterIP, NodePort or LoadBalancer",
        );
    }

    for (name, port) in &spec.service_ports {
        let path = format!("spec.servicePorts.{name}");
        if !(1..=65535).contains(port) {
            report.error(
                &path,
                format!("{port} is not a port number"),
                "use 1 to 65535",
            );
        }
        if !is_port_name(name) {
            report.error(
                &path,
                format!("{name:?} is not a valid port name"),
                "use at most 15 lowercase letters, digits and '-', with at least one letter",
            );
        }
    }

    if let Some(scheme) = spec.raft_leader_api_scheme_override.as_deref()
        && !["http", "https"].contains(&scheme)
    {
        report.error(
            "spec.raftLeaderApiSchemeOverride",
            format!("{scheme:?} is not a scheme"),
            "use http or https",
        );
    }
}

/// Raft data outside a mounted volume is lost whenever a pod restarts.
fn check_raft_data_is_kept(spec: &VaultSpec, report: &mut Report) {
    if !spec.config.is_raft() {
        return;
    }
    let Some(path) = spec.config.storage_path() else {
        return;
    };
    let mounted = spec.volume_mounts.iter().any(|m| {
        let folder = m.mount_path.trim_end_matches('/');
        path == folder || path.starts_with(&format!("{folder}/"))
    });
    if !mounted {
        report.warn(
            "spec.config.storage.raft.path",
            format!(
                "{path} is on no volume in spec.volumeMounts, so a restarted pod loses its \
                 Raft data; mount a volumeClaimTemplate there"
            ),
        );
    }
}

fn warn_bank_vaults_only(spec: &VaultSpec, report: &mut Report) {
    let Ok(serde_json::Value::Object(fields)) = serde_json::to_value(spec) else {
        return;
    };
    for field in BANK_VAULTS_ONLY {
        if fields.contains_key(*field) {
            report.warn(
                &format!("spec.{field}"),
                "configures a Bank-Vaults image that this operator does not run; it has no effect",
            );
        }
    }
}

fn check_update(old: &Vault, new: &Vault, report: &mut Report) {
    let (before, after) = (
        old.spec.config.storage_type(),
        new.spec.config.storage_type(),
    );
    if let (Some(before), Some(after)) = (before, after)
        && before != after
    {
        report.error(
            "spec.config.storage",
            format!(
                "changing the storage from {before} to {after} would start Vault on \
                     empty storage, away from its data and keys"
            ),
            format!(
                "keep {before}; to move, migrate the data with `vault operator \
                     migrate` into a new Vault resource"
            ),
        );
    }
}

/// A DNS-1035 label: what Service names must be.
fn is_dns1035_label(s: &str) -> bool {
    is_dns1123_label(s) && s.starts_with(|c: char| c.is_ascii_lowercase())
}

/// A DNS-1123 label: what namespace names must be.
fn is_dns1123_label(s: &str) -> bool {
    let alnum = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
    !s.is_empty()
        && s.len() <= 63
        && s.starts_with(alnum)
        && s.ends_with(alnum)
        && s.chars().all(|c| alnum(c) || c == '-')
}

/// A DNS-1123 subdomain: what Secret names must be.
fn is_dns1123_subdomain(s: &str) -> bool {
    s.len() <= 253 && s.split('.').all(is_dns1123_label)
}

/// An IANA service name: what container and Service port names must be.
fn is_port_name(s: &str) -> bool {
    is_dns1123_label(s)
        && s.len() <= 15
        && !s.contains("--")
        && s.chars().any(|c| c.is_ascii_lowercase())
}

/// `host:port` as Vault's listener takes it: the host may be empty, an IP (IPv6 in brackets)
/// or a name.
fn is_listen_address(address: &str) -> bool {
    let Some((host, port)) = address.rsplit_once(':') else {
        return false;
    };
    if port.parse::<u16>().is_err() {
        return false;
    }
    match host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        Some(v6) => v6.parse::<std::net::Ipv6Addr>().is_ok(),
        None => host.is_empty() || host.parse::<IpAddr>().is_ok() || is_dns1123_subdomain(host),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_addresses() {
        for good in [
            "0.0.0.0:8200",
            ":8200",
            "[::]:8200",
            "localhost:8200",
            "10.0.0.1:1",
        ] {
            assert!(is_listen_address(good), "{good}");
        }
        for bad in [
            "8200",
            "0.0.0.0",
            "0.0.0.0:http",
            "[::1:8200",
            "a b:8200",
            "::1:99999",
        ] {
            assert!(!is_listen_address(bad), "{bad}");
        }
    }

    #[test]
    fn names() {
        assert!(is_dns1035_label("vault"));
        assert!(!is_dns1035_label("1vault"));
        assert!(!is_dns1123_label("Vault"));
        assert!(!is_dns1123_label("vault-"));
        assert!(is_dns1123_subdomain("vault.tls"));
        assert!(!is_dns1123_subdomain("vault..tls"));
        assert!(is_port_name("api-port"));
        assert!(!is_port_name("a-very-long-port-name"));
        assert!(!is_port_name("8200"));
    }
}
