//! TLS for Vault: a CA and a server certificate, kept in the Secret `<name>-tls` (`ca.crt`,
//! `ca.key`, `server.crt`, `server.key`), whose names cover every way a client or a peer
//! reaches a Vault pod.
//!
//! Deciding whether to renew is a pure function of what the Secret holds, the names wanted
//! and the time: the server certificate is renewed when it nears expiry or its names differ
//! (compared as sets, not counted); the CA is kept while it is valid, and renewed, with a new
//! server certificate, when it nears expiry itself, so a server certificate never outlives
//! the CA that signed it.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use vault_api::Vault;

/// How long a new server certificate is valid unless told otherwise.
pub const SERVER_VALIDITY: Duration = Duration::from_secs(365 * 24 * 3600);
/// How long a new CA is valid unless told otherwise: long enough to outlive several server
/// certificates.
pub const CA_VALIDITY: Duration = Duration::from_secs(5 * 365 * 24 * 3600);

/// The key algorithm of the generated CA and server certificate.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum KeyAlgorithm {
    /// ECDSA on P-256 with SHA-256: what every Vault client and peer accepts.
    #[default]
    EcdsaP256,
    /// ECDSA on P-384 with SHA-384.
    EcdsaP384,
}

impl KeyAlgorithm {
    fn rcgen(self) -> &'static rcgen::SignatureAlgorithm {
        match self {
            Self::EcdsaP256 => &rcgen::PKCS_ECDSA_P256_SHA256,
            Self::EcdsaP384 => &rcgen::PKCS_ECDSA_P384_SHA384,
        }
    }
}

/// How new certificates are made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Issuance {
    /// The key algorithm of new keys.
    pub key: KeyAlgorithm,
    /// How long a new server certificate is valid.
    pub server_validity: Duration,
    /// How long a new CA is valid.
    pub ca_validity: Duration,
}

impl Issuance {
    /// These validities, lengthened by `threshold` where the threshold is more than half as
    /// long: a certificate renewed `validity - threshold` after it was made would roll every
    /// pod that often (on every pass, once the threshold passes the validity). So a
    /// threshold raised past the validity (to renew now, say) renews once, and the next
    /// renewal comes after about the usual validity.
    pub fn outliving(&self, threshold: Duration) -> Self {
        let lengthen = |validity: Duration| {
            if threshold.saturating_mul(2) > validity {
                validity.saturating_add(threshold)
            } else {
                validity
            }
        };
        Self {
            key: self.key,
            server_validity: lengthen(self.server_validity),
            ca_validity: lengthen(self.ca_validity),
        }
    }
}

impl Default for Issuance {
    fn default() -> Self {
        Self {
            key: KeyAlgorithm::default(),
            server_validity: SERVER_VALIDITY,
            ca_validity: CA_VALIDITY,
        }
    }
}

/// What went wrong making or reading a certificate.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// rcgen could not make a key or certificate.
    #[error("making the {what} of Vault {vault}: {source}")]
    Make {
        what: &'static str,
        vault: String,
        source: rcgen::Error,
    },
}

/// The names a certificate covers.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Names {
    /// DNS names.
    pub dns: BTreeSet<String>,
    /// IP addresses.
    pub ips: BTreeSet<IpAddr>,
}

/// Every name and address a client or peer uses to reach the Vault's pods: the main,
/// headless and per-pod Services and the pods' own names in every DNS form, loopback,
/// `tlsAdditionalHosts` and load-balancer addresses.
pub fn server_names(vault: &Vault, namespace: &str, load_balancers: &[String]) -> Names {
    let name = vault.metadata.name.as_deref().unwrap_or_default();
    let size = vault.spec.size.unwrap_or(vault_api::defaults::SIZE).max(0);
    let headless = vault_api::defaults::headless_service_name(name);

    let mut short = vec![name.to_string(), headless.clone()];
    for i in 0..size {
        let pod = vault_api::defaults::pod_service_name(name, i);
        short.push(format!("{pod}.{headless}"));
        short.push(pod);
    }
    let mut names = Names::default();
    for host in short {
        for form in [
            host.clone(),
            format!("{host}.{namespace}"),
            format!("{host}.{namespace}.svc"),
            format!("{host}.{namespace}.svc.cluster.local"),
        ] {
            names.dns.insert(form);
        }
    }
    names.dns.insert("localhost".into());
    names.ips.insert(IpAddr::from([127, 0, 0, 1]));

    let extra = vault.spec.tls_additional_hosts.iter();
    let balancers = vault.spec.load_balancer_ip.iter().chain(load_balancers);
    for host in extra.chain(balancers).filter(|h| !h.is_empty()) {
        match host.parse::<IpAddr>() {
            Ok(ip) => names.ips.insert(ip),
            Err(_) => names.dns.insert(host.clone()),
        };
    }
    names
}

/// A CA and the server certificate it signed, in PEM.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Bundle {
    /// The CA certificate.
    pub ca_cert: String,
    /// The CA's private key.
    pub ca_key: String,
    /// The server certificate.
    pub cert: String,
    /// The server's private key.
    pub key: String,
}

/// What to do with the certificates a Secret holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// They are fine.
    Keep,
    /// Issue a new server certificate from the existing CA, for this reason.
    NewServer(String),
    /// Make a new CA and server certificate, for this reason.
    NewCa(String),
}

/// Decides whether to renew, `threshold` being how long before expiry renewal is due.
pub fn decide(
    existing: Option<&Bundle>,
    wanted: &Names,
    threshold: Duration,
    now: i64,
) -> Decision {
    let Some(bundle) = existing else {
        return Decision::NewCa("no certificate yet".into());
    };
    let due = now.saturating_add(threshold.as_secs() as i64);

    let Some(ca) = inspect(&bundle.ca_cert) else {
        return Decision::NewCa("the CA certificate does not parse".into());
    };
    if bundle.ca_key.trim().is_empty() {
        return Decision::NewCa("the CA key is missing".into());
    }
    if ca.not_after <= due {
        return Decision::NewCa(format!(
            "the CA expires at {} (within the threshold)",
            ca.not_after
        ));
    }

    let Some(server) = inspect(&bundle.cert) else {
        return Decision::NewServer("the server certificate does not parse".into());
    };
    if bundle.key.trim().is_empty() {
        return Decision::NewServer("the server key is missing".into());
    }
    let same_key = match (&server.authority_key_id, &ca.key_id) {
        (Some(authority), Some(key)) => authority == key,
        _ => server.issuer == ca.subject,
    };
    if !same_key {
        return Decision::NewServer("the server certificate was not issued by the CA".into());
    }
    if server.not_after <= due {
        let at = server.not_after;
        return Decision::NewServer(format!(
            "the server certificate expires at {at} (within the threshold)"
        ));
    }
    if server.names != *wanted {
        return Decision::NewServer(describe_change(&server.names, wanted));
    }
    Decision::Keep
}

fn describe_change(have: &Names, want: &Names) -> String {
    let added: Vec<String> = want
        .dns
        .difference(&have.dns)
        .cloned()
        .chain(want.ips.difference(&have.ips).map(ToString::to_string))
        .collect();
    let removed: Vec<String> = have
        .dns
        .difference(&want.dns)
        .cloned()
        .chain(have.ips.difference(&want.ips).map(ToString::to_string))
        .collect();
    format!(
        "the names changed (added: {}; removed: {})",
        list(&added),
        list(&removed)
    )
}

fn list(items: &[String]) -> String {
    if items.is_empty() {
        return "none".into();
    }
    let shown: Vec<&str> = items.iter().take(4).map(String::as_str).collect();
    let more = items.len().saturating_sub(4);
    if more > 0 {
        format!("{} and {more} more", shown.join(", "))
    } else {
        shown.join(", ")
    }
}

/// What the certificates a Secret holds say about themselves.
struct Inspected {
    subject: String,
    issuer: String,
    /// The subject key identifier (a CA's).
    key_id: Option<Vec<u8>>,
    /// The key identifier of the CA that signed it; names the same CA only if the keys match.
    authority_key_id: Option<Vec<u8>>,
    not_after: i64,
    names: Names,
}

fn inspect(pem: &str) -> Option<Inspected> {
    let (_, block) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).ok()?;
    let cert = block.parse_x509().ok()?;
    let mut names = Names::default();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            match name {
                x509_parser::extensions::GeneralName::DNSName(dns) => {
                    names.dns.insert(dns.to_string());
                }
                x509_parser::extensions::GeneralName::IPAddress(bytes) => {
                    let ip = match bytes.len() {
                        4 => <[u8; 4]>::try_from(*bytes).ok().map(IpAddr::from),
                        16 => <[u8; 16]>::try_from(*bytes).ok().map(IpAddr::from),
                        _ => None,
                    };
                    names.ips.extend(ip);
                }
                _ => {}
            }
        }
    }
    use x509_parser::extensions::ParsedExtension;
    let mut key_id = None;
    let mut authority_key_id = None;
    for extension in cert.extensions() {
        match extension.parsed_extension() {
            ParsedExtension::SubjectKeyIdentifier(id) => key_id = Some(id.0.to_vec()),
            ParsedExtension::AuthorityKeyIdentifier(aki) => {
                authority_key_id = aki.key_identifier.as_ref().map(|id| id.0.to_vec());
            }
            _ => {}
        }
    }
    Some(Inspected {
        subject: cert.subject().to_string(),
        issuer: cert.issuer().to_string(),
        key_id,
        authority_key_id,
        not_after: cert.validity().not_after.timestamp(),
        names,
    })
}

/// Carries out a decision: a new server certificate (and a new CA if asked) for `names`,
/// valid from `now`. Keeps the existing CA unless the decision is [`Decision::NewCa`].
pub fn issue(
    vault: &str,
    decision: &Decision,
    existing: Option<&Bundle>,
    names: &Names,
    now: i64,
    issuance: &Issuance,
) -> Result<Bundle, TlsError> {
    let make = |what: &'static str| {
        move |source| TlsError::Make {
            what,
            vault: vault.into(),
            source,
        }
    };
    let (ca_cert, ca_key) = match (decision, existing) {
        (Decision::Keep, Some(bundle)) => return Ok(bundle.clone()),
        (Decision::NewServer(_), Some(bundle)) => (bundle.ca_cert.clone(), bundle.ca_key.clone()),
        _ => {
            let key = KeyPair::generate_for(issuance.key.rcgen()).map_err(make("CA key"))?;
            let params = ca_params(vault, now, issuance.ca_validity);
            let cert = params.self_signed(&key).map_err(make("CA certificate"))?;
            (cert.pem(), key.serialize_pem())
        }
    };

    let ca_key_pair = KeyPair::from_pem(&ca_key).map_err(make("CA key"))?;
    let issuer = Issuer::from_ca_cert_pem(&ca_cert, ca_key_pair).map_err(make("CA issuer"))?;
    let mut params = CertificateParams::default();
    params
        .distinguished_name
        .push(DnType::CommonName, format!("{vault} Vault"));
    params.subject_alt_names = names
        .dns
        .iter()
        .filter_map(|d| d.clone().try_into().ok().map(SanType::DnsName))
        .chain(names.ips.iter().map(|ip| SanType::IpAddress(*ip)))
        .collect();
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    // Peers present the same certificate to each other on the cluster port.
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    // Names the CA's key, so a certificate from another CA of the same name is told apart.
    params.use_authority_key_identifier_extension = true;
    let (not_before, not_after) = validity(now, issuance.server_validity);
    params.not_before = not_before;
    params.not_after = not_after;
    let key = KeyPair::generate_for(issuance.key.rcgen()).map_err(make("server key"))?;
    let cert = params
        .signed_by(&key, &issuer)
        .map_err(make("server certificate"))?;
    Ok(Bundle {
        ca_cert,
        ca_key,
        cert: cert.pem(),
        key: key.serialize_pem(),
    })
}

fn ca_params(vault: &str, now: i64, life: Duration) -> CertificateParams {
    let mut params = CertificateParams::default();
    params
        .distinguished_name
        .push(DnType::CommonName, format!("{vault} Vault CA"));
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let (not_before, not_after) = validity(now, life);
    params.not_before = not_before;
    params.not_after = not_after;
    params
}

/// Valid from a minute before `now` (clocks differ a little) for `life`.
fn validity(now: i64, life: Duration) -> (time::OffsetDateTime, time::OffsetDateTime) {
    let at = |seconds: i64| {
        time::OffsetDateTime::from_unix_timestamp(seconds)
            .unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
    };
    // The last second X.509 can express; an absurd validity ends there, not wrapped round.
    const LAST: i64 = 253_402_300_799;
    let life = i64::try_from(life.as_secs()).unwrap_or(i64::MAX);
    (at(now - 60), at(now.saturating_add(life).min(LAST)))
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: i64 = 24 * 3600;
    const WEEK: Duration = Duration::from_secs(7 * 24 * 3600);

    fn vault(size: i32, extra: &[&str]) -> Vault {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "vault.banzaicloud.com/v1alpha1", "kind": "Vault",
            "metadata": {"name": "vault", "namespace": "ns"},
            "spec": {"size": size, "tlsAdditionalHosts": extra},
        }))
        .unwrap_or_default()
    }

    #[test]
    fn one_pod_is_named_in_every_form() {
        let names = server_names(&vault(1, &[]), "ns", &[]);
        for dns in [
            "vault",
            "vault.ns.svc",
            "vault-0.ns.svc.cluster.local",
            "vault-0.vault-headless.ns.svc",
            "vault-headless",
            "localhost",
        ] {
            assert!(names.dns.contains(dns), "{dns} in {names:?}");
        }
        assert!(!names.dns.contains("vault-1"));
        assert_eq!(names.ips, BTreeSet::from([IpAddr::from([127, 0, 0, 1])]));
    }

    #[test]
    fn several_pods_extra_hosts_and_balancers_are_named() {
        let names = server_names(
            &vault(3, &["vault.example.com", "192.0.2.7"]),
            "ns",
            &["198.51.100.1".into()],
        );
        assert!(
            names
                .dns
                .contains("vault-2.vault-headless.ns.svc.cluster.local")
        );
        assert!(names.dns.contains("vault.example.com"));
        assert!(
            names.ips.contains(&IpAddr::from([192, 0, 2, 7])),
            "an IP is an IP SAN"
        );
        assert!(names.ips.contains(&IpAddr::from([198, 51, 100, 1])));
        assert!(!names.dns.contains("192.0.2.7"));
    }

    fn fresh(names: &Names, now: i64) -> Bundle {
        issue(
            "vault",
            &Decision::NewCa("test".into()),
            None,
            names,
            now,
            &Issuance::default(),
        )
        .unwrap_or_default()
    }

    #[test]
    fn a_fresh_bundle_is_kept() {
        let names = server_names(&vault(3, &[]), "ns", &[]);
        let bundle = fresh(&names, 0);
        assert_eq!(decide(Some(&bundle), &names, WEEK, DAY), Decision::Keep);
        let issued = inspect(&bundle.cert).map(|i| i.names);
        assert_eq!(
            issued,
            Some(names),
            "the certificate names exactly what was asked"
        );
    }

    #[test]
    fn a_server_certificate_near_expiry_is_renewed_from_the_same_ca() {
        let names = server_names(&vault(1, &[]), "ns", &[]);
        let bundle = fresh(&names, 0);
        let near_expiry = SERVER_VALIDITY.as_secs() as i64 - 3 * DAY;
        let decision = decide(Some(&bundle), &names, WEEK, near_expiry);
        assert!(matches!(decision, Decision::NewServer(_)), "{decision:?}");
        let renewed = issue(
            "vault",
            &decision,
            Some(&bundle),
            &names,
            near_expiry,
            &Issuance::default(),
        )
        .unwrap_or_default();
        assert_eq!(
            renewed.ca_cert, bundle.ca_cert,
            "the CA is kept while valid"
        );
        assert_ne!(renewed.cert, bundle.cert);
        assert_eq!(
            decide(Some(&renewed), &names, WEEK, near_expiry),
            Decision::Keep
        );
    }

    #[test]
    fn a_ca_near_expiry_is_renewed_with_its_server_certificate() {
        let names = server_names(&vault(1, &[]), "ns", &[]);
        let bundle = fresh(&names, 0);
        let near_ca_expiry = CA_VALIDITY.as_secs() as i64 - DAY;
        let decision = decide(Some(&bundle), &names, WEEK, near_ca_expiry);
        assert!(matches!(decision, Decision::NewCa(_)), "{decision:?}");
        let renewed = issue(
            "vault",
            &decision,
            Some(&bundle),
            &names,
            near_ca_expiry,
            &Issuance::default(),
        )
        .unwrap_or_default();
        assert_ne!(renewed.ca_cert, bundle.ca_cert);
        assert_eq!(
            decide(Some(&renewed), &names, WEEK, near_ca_expiry),
            Decision::Keep
        );
    }

    #[test]
    fn a_change_of_names_renews_even_at_the_same_count() {
        let three = server_names(&vault(3, &["a.example.com"]), "ns", &[]);
        let bundle = fresh(&three, 0);
        let swapped = server_names(&vault(3, &["b.example.com"]), "ns", &[]);
        assert_eq!(three.dns.len(), swapped.dns.len());
        let decision = decide(Some(&bundle), &swapped, WEEK, DAY);
        assert!(
            matches!(&decision, Decision::NewServer(why) if why.contains("b.example.com")),
            "{decision:?}"
        );
        let scaled = server_names(&vault(5, &["a.example.com"]), "ns", &[]);
        assert!(matches!(
            decide(Some(&bundle), &scaled, WEEK, DAY),
            Decision::NewServer(_)
        ));
    }

    #[test]
    fn a_broken_secret_is_replaced() {
        let names = server_names(&vault(1, &[]), "ns", &[]);
        assert!(matches!(decide(None, &names, WEEK, 0), Decision::NewCa(_)));
        let mut bundle = fresh(&names, 0);
        bundle.cert = "garbage".into();
        assert!(matches!(
            decide(Some(&bundle), &names, WEEK, DAY),
            Decision::NewServer(_)
        ));
        bundle.ca_cert = "garbage".into();
        assert!(matches!(
            decide(Some(&bundle), &names, WEEK, DAY),
            Decision::NewCa(_)
        ));
        let other = fresh(&names, 0);
        let foreign = Bundle {
            cert: other.cert,
            key: other.key,
            ..fresh(&names, 0)
        };
        let decision = decide(Some(&foreign), &names, WEEK, DAY);
        assert!(
            matches!(&decision, Decision::NewServer(why) if why.contains("not issued")),
            "{decision:?}"
        );
    }

    #[test]
    fn key_algorithm_and_validity_follow_the_issuance() {
        let names = server_names(&vault(1, &[]), "ns", &[]);
        let issuance = Issuance {
            key: KeyAlgorithm::EcdsaP384,
            server_validity: Duration::from_secs(30 * DAY as u64),
            ca_validity: Duration::from_secs(90 * DAY as u64),
        };
        let bundle = issue(
            "vault",
            &Decision::NewCa("test".into()),
            None,
            &names,
            0,
            &issuance,
        )
        .unwrap_or_default();
        for (pem, days) in [(&bundle.cert, 30), (&bundle.ca_cert, 90)] {
            let (_, block) = x509_parser::pem::parse_x509_pem(pem.as_bytes())
                .unwrap_or_else(|e| panic!("a generated certificate is PEM: {e}"));
            let cert = block
                .parse_x509()
                .unwrap_or_else(|e| panic!("a generated certificate parses: {e}"));
            let curve = cert.public_key().algorithm.parameters.as_ref();
            let curve = curve
                .and_then(|p| p.as_oid().ok())
                .map(|oid| oid.to_id_string());
            assert_eq!(curve.as_deref(), Some("1.3.132.0.34"), "P-384");
            let life =
                cert.validity().not_after.timestamp() - cert.validity().not_before.timestamp();
            assert!(
                (life - days * DAY).abs() <= 2 * DAY,
                "{life} s for {days} days"
            );
        }
        assert_eq!(decide(Some(&bundle), &names, WEEK, DAY), Decision::Keep);
    }

    #[test]
    fn a_threshold_past_the_validity_renews_once_not_on_every_pass() {
        let names = server_names(&vault(1, &[]), "ns", &[]);
        let issuance = Issuance::default();
        let threshold = issuance.server_validity + Duration::from_secs(DAY as u64);
        let old = fresh(&names, 0);
        let decision = decide(Some(&old), &names, threshold, DAY);
        assert!(matches!(decision, Decision::NewServer(_)), "{decision:?}");

        let lengthened = issuance.outliving(threshold);
        assert_eq!(
            lengthened.ca_validity, issuance.ca_validity,
            "the CA outlives it"
        );
        let renewed =
            issue("vault", &decision, Some(&old), &names, DAY, &lengthened).unwrap_or_default();
        assert_eq!(
            decide(Some(&renewed), &names, threshold, DAY),
            Decision::Keep
        );
        assert_eq!(
            issuance.outliving(WEEK),
            issuance,
            "a threshold shorter than the validities changes nothing"
        );
    }
}
