//! The webhook's certificates: a CA and a serving certificate kept in a Secret (so that
//! replicas share them), created when missing and renewed before expiry; or certificates
//! on disk (from cert-manager or anything else), reloaded when they change.
//!
//! This module holds the decisions as pure functions of the certificates and the clock:
//! [`plan`] says what to renew, [`ca_bundle`] what the API server must trust, and
//! [`ca_bundle_patch`] how to write that into the webhook configurations. [`cluster`] and
//! [`files`] do the reading and writing.

pub mod cluster;
pub mod files;

use std::collections::BTreeMap;

use base64::Engine as _;
use json_patch::jsonptr::PointerBuf;
use json_patch::{AddOperation, Patch, PatchOperation, TestOperation};
use k8s_openapi::ByteString;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};
use serde_json::Value;
use time::{Duration, OffsetDateTime};
use x509_parser::pem::Pem;

use crate::error::Error;

/// Secret key of the CA certificate.
pub const CA_CERT_KEY: &str = "ca.crt";
/// Secret key of the CA's private key.
pub const CA_KEY_KEY: &str = "ca.key";
/// Secret key of the CA that signed certificates before the last rollover.
pub const PREVIOUS_CA_CERT_KEY: &str = "ca-previous.crt";
/// Secret key of the serving certificate.
pub const TLS_CERT_KEY: &str = "tls.crt";
/// Secret key of the serving certificate's private key.
pub const TLS_KEY_KEY: &str = "tls.key";

/// Backdating of `notBefore`, so that clocks a little behind still accept a new certificate.
const CLOCK_SKEW: Duration = Duration::minutes(5);

/// How long a new CA must have been trusted by the webhook configurations before a serving
/// certificate it signed is put in service: the API server reloads a configuration's
/// `caBundle` shortly after it changes, and another replica may have written it just now.
pub const TRUST_DELAY: Duration = Duration::minutes(2);

/// How long generated certificates last. Each is renewed once two thirds of its life
/// have passed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Lifetimes {
    /// Lifetime of the CA.
    pub ca: Duration,
    /// Lifetime of the serving certificate (never beyond its CA's).
    pub serving: Duration,
}

impl Default for Lifetimes {
    fn default() -> Self {
        Lifetimes {
            ca: Duration::days(365),
            serving: Duration::days(90),
        }
    }
}

/// A certificate and its private key, both PEM.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyedCert {
    /// The certificate.
    pub cert: String,
    /// Its private key.
    pub key: String,
}

/// The certificates the Secret holds.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StoredCerts {
    /// The CA that signs serving certificates.
    pub ca: Option<KeyedCert>,
    /// The CA before the last rollover, still trusted until it expires.
    pub previous_ca: Option<String>,
    /// The serving certificate.
    pub serving: Option<KeyedCert>,
}

impl StoredCerts {
    /// Reads the certificates out of a Secret's data; missing or non-UTF-8 entries are absent.
    pub fn from_secret_data(data: &BTreeMap<String, ByteString>) -> Self {
        let text = |key: &str| {
            data.get(key)
                .and_then(|v| String::from_utf8(v.0.clone()).ok())
                .filter(|v| !v.trim().is_empty())
        };
        let pair = |cert: &str, key: &str| {
            Some(KeyedCert {
                cert: text(cert)?,
                key: text(key)?,
            })
        };
        StoredCerts {
            ca: pair(CA_CERT_KEY, CA_KEY_KEY),
            previous_ca: text(PREVIOUS_CA_CERT_KEY),
            serving: pair(TLS_CERT_KEY, TLS_KEY_KEY),
        }
    }

    /// The Secret's data holding these certificates.
    pub fn to_secret_data(&self) -> BTreeMap<String, ByteString> {
        let mut data = BTreeMap::new();
        let mut put = |key: &str, value: &str| {
            data.insert(key.to_string(), ByteString(value.as_bytes().to_vec()));
        };
        if let Some(ca) = &self.ca {
            put(CA_CERT_KEY, &ca.cert);
            put(CA_KEY_KEY, &ca.key);
        }
        if let Some(previous) = &self.previous_ca {
            put(PREVIOUS_CA_CERT_KEY, previous);
        }
        if let Some(serving) = &self.serving {
            put(TLS_CERT_KEY, &serving.cert);
            put(TLS_KEY_KEY, &serving.key);
        }
        data
    }
}

/// What a certificate says about itself, as far as renewal is concerned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertFacts {
    /// Start of validity.
    pub not_before: OffsetDateTime,
    /// End of validity.
    pub not_after: OffsetDateTime,
    /// DNS names among the subject alternative names.
    pub dns_names: Vec<String>,
    /// True for a CA certificate.
    pub is_ca: bool,
}

impl CertFacts {
    /// True once the certificate is no longer valid.
    pub fn expired(&self, now: OffsetDateTime) -> bool {
        now >= self.not_after
    }

    /// True once two thirds of the certificate's life have passed: time to renew it.
    pub fn renewal_due(&self, now: OffsetDateTime) -> bool {
        now >= self.not_after - (self.not_after - self.not_before) / 3
    }
}

/// Reads the first certificate of a PEM text.
pub fn cert_facts(pem: &str) -> Result<CertFacts, String> {
    let (_, pem) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).map_err(|e| e.to_string())?;
    let cert = pem.parse_x509().map_err(|e| e.to_string())?;
    let time = |t: x509_parser::time::ASN1Time| {
        OffsetDateTime::from_unix_timestamp(t.timestamp()).map_err(|e| e.to_string())
    };
    let dns_names = match cert.subject_alternative_name() {
        Ok(Some(names)) => names
            .value
            .general_names
            .iter()
            .filter_map(|name| match name {
                x509_parser::extensions::GeneralName::DNSName(dns) => Some(dns.to_string()),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    };
    Ok(CertFacts {
        not_before: time(cert.validity().not_before)?,
        not_after: time(cert.validity().not_after)?,
        dns_names,
        is_ca: cert.is_ca(),
    })
}

/// True when the certificate `cert_pem` carries a valid signature of the CA `ca_pem`.
pub fn is_signed_by(cert_pem: &str, ca_pem: &str) -> bool {
    let parse = |text: &str| x509_parser::pem::parse_x509_pem(text.as_bytes()).map(|(_, p)| p);
    let (Ok(cert), Ok(ca)) = (parse(cert_pem), parse(ca_pem)) else {
        return false;
    };
    let (Ok(cert), Ok(ca)) = (cert.parse_x509(), ca.parse_x509()) else {
        return false;
    };
    cert.issuer() == ca.subject() && cert.verify_signature(Some(ca.public_key())).is_ok()
}

/// What to change in the Secret this time round.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// Whether, and how, to make a new CA.
    pub new_ca: Option<CaChange>,
    /// Issue a new serving certificate from the (new) CA.
    pub issue_serving: bool,
}

/// How a new CA replaces the current one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CaChange {
    /// There is no usable CA: make one. Nothing can be trusted yet, so nothing is kept.
    Create,
    /// The CA is due for renewal: make a new one, and keep trusting the old one (and serving
    /// a certificate it signed) until the API server trusts the new one.
    Rollover,
}

impl Plan {
    /// True when the Secret must be rewritten.
    pub fn changes_anything(&self) -> bool {
        self.new_ca.is_some() || self.issue_serving
    }
}

/// What the Secret's certificates need, at `now`.
///
/// `new_ca_trusted` tells whether both webhook configurations already trusted the current
/// CA when this round began: only then, and [`TRUST_DELAY`] after the CA was made, is a
/// serving certificate from a freshly rolled-over CA put in service, so that the API server
/// never meets a certificate it cannot verify.
pub fn plan(
    stored: &StoredCerts,
    dns_name: &str,
    now: OffsetDateTime,
    new_ca_trusted: bool,
) -> Plan {
    let ca = stored.ca.as_ref().and_then(|ca| {
        let facts = cert_facts(&ca.cert).ok()?;
        let usable = facts.is_ca && !facts.expired(now) && KeyPair::from_pem(&ca.key).is_ok();
        usable.then_some((ca, facts))
    });
    let serving = stored.serving.as_ref().and_then(|serving| {
        let facts = cert_facts(&serving.cert).ok()?;
        let matches_key =
            crate::tls::certified_key(serving.cert.as_bytes(), serving.key.as_bytes(), "").is_ok();
        let usable = matches_key
            && !facts.expired(now)
            && facts.dns_names.iter().any(|name| name == dns_name);
        usable.then_some((serving, facts))
    });

    let Some((ca, ca_facts)) = ca else {
        return Plan {
            new_ca: Some(CaChange::Create),
            issue_serving: true,
        };
    };
    if ca_facts.renewal_due(now) {
        return Plan {
            new_ca: Some(CaChange::Rollover),
            issue_serving: serving.is_none(),
        };
    }
    let issue_serving = match serving {
        None => true,
        Some((serving, _)) if !is_signed_by(&serving.cert, &ca.cert) => {
            let created = ca_facts.not_before + CLOCK_SKEW;
            new_ca_trusted && now >= created + TRUST_DELAY
        }
        Some((_, facts)) => facts.renewal_due(now),
    };
    Plan {
        new_ca: None,
        issue_serving,
    }
}

/// Carries out a plan: the certificates to store.
pub fn apply(
    plan: Plan,
    stored: &StoredCerts,
    dns_name: &str,
    now: OffsetDateTime,
    lifetimes: Lifetimes,
) -> Result<StoredCerts, Error> {
    let mut next = stored.clone();
    match plan.new_ca {
        Some(CaChange::Create) => {
            next.ca = Some(generate_ca(now, lifetimes.ca)?);
            next.previous_ca = None;
        }
        Some(CaChange::Rollover) => {
            next.previous_ca = stored.ca.as_ref().map(|ca| ca.cert.clone());
            next.ca = Some(generate_ca(now, lifetimes.ca)?);
        }
        None => {}
    }
    if plan.issue_serving
        && let Some(ca) = &next.ca
    {
        next.serving = Some(issue_serving_cert(ca, dns_name, now, lifetimes.serving)?);
    }
    Ok(next)
}

/// A new self-signed CA, valid from a little before `now` for `lifetime`. Its name carries
/// its creation time, so that each CA is told apart from the one it replaces.
pub fn generate_ca(now: OffsetDateTime, lifetime: Duration) -> Result<KeyedCert, Error> {
    let generate = |source| Error::Generate {
        what: "the webhook CA",
        source,
    };
    let mut params = CertificateParams::default();
    let mut name = DistinguishedName::new();
    name.push(
        DnType::CommonName,
        format!("vault-webhook CA {}", now.unix_timestamp()),
    );
    params.distinguished_name = name;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.not_before = now - CLOCK_SKEW;
    params.not_after = now + lifetime;
    let key = KeyPair::generate().map_err(generate)?;
    let cert = params.self_signed(&key).map_err(generate)?;
    Ok(KeyedCert {
        cert: cert.pem(),
        key: key.serialize_pem(),
    })
}

/// A serving certificate for `dns_name` signed by `ca`, ending no later than the CA.
pub fn issue_serving_cert(
    ca: &KeyedCert,
    dns_name: &str,
    now: OffsetDateTime,
    lifetime: Duration,
) -> Result<KeyedCert, Error> {
    let generate = |source| Error::Generate {
        what: "the serving certificate",
        source,
    };
    let ca_key = KeyPair::from_pem(&ca.key).map_err(generate)?;
    let issuer = Issuer::from_ca_cert_pem(&ca.cert, ca_key).map_err(generate)?;
    let ca_end = cert_facts(&ca.cert)
        .map(|facts| facts.not_after)
        .map_err(|reason| Error::Certificate {
            what: "the webhook CA".into(),
            reason,
        })?;

    let mut params = CertificateParams::new(vec![dns_name.to_string()]).map_err(generate)?;
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, dns_name);
    params.distinguished_name = name;
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.use_authority_key_identifier_extension = true;
    params.not_before = now - CLOCK_SKEW;
    params.not_after = (now + lifetime).min(ca_end);
    let key = KeyPair::generate().map_err(generate)?;
    let cert = params.signed_by(&key, &issuer).map_err(generate)?;
    Ok(KeyedCert {
        cert: cert.pem(),
        key: key.serialize_pem(),
    })
}

/// The PEM bundle the API server must trust: the current CA, then the CA before the last
/// rollover while it is still valid. Only CA certificates ever go in, never the serving one.
pub fn ca_bundle(stored: &StoredCerts, now: OffsetDateTime) -> Option<String> {
    let is_valid_ca = |pem: &str| cert_facts(pem).is_ok_and(|f| f.is_ca && !f.expired(now));
    let current = stored.ca.as_ref().map(|ca| ca.cert.as_str())?;
    if !is_valid_ca(current) {
        return None;
    }
    let mut bundle = pem_block(current);
    if let Some(previous) = stored.previous_ca.as_deref()
        && is_valid_ca(previous)
        && previous.trim() != current.trim()
    {
        bundle.push_str(&pem_block(previous));
    }
    Some(bundle)
}

fn pem_block(pem: &str) -> String {
    format!("{}\n", pem.trim())
}

/// True when the PEM bundle `ca_bundle` holds the certificate `ca_pem`.
pub fn bundle_trusts(ca_bundle: &[u8], ca_pem: &str) -> bool {
    let Ok((_, wanted)) = x509_parser::pem::parse_x509_pem(ca_pem.as_bytes()) else {
        return false;
    };
    Pem::iter_from_buffer(ca_bundle)
        .filter_map(Result::ok)
        .any(|pem| pem.contents == wanted.contents)
}

/// One webhook of a configuration: its name and the `caBundle` it has now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WebhookTrust {
    /// The webhook's name.
    pub name: String,
    /// Its `clientConfig.caBundle`, decoded.
    pub ca_bundle: Option<Vec<u8>>,
}

/// The JSON Patch that sets `caBundle` of every webhook of a configuration to `bundle`, or
/// `None` when every one already has it. Each change is guarded by a test of the webhook's
/// name, so that a list reordered since it was read is not patched in the wrong place.
pub fn ca_bundle_patch(webhooks: &[WebhookTrust], bundle: &[u8]) -> Option<Patch> {
    let encoded = Value::String(base64::engine::general_purpose::STANDARD.encode(bundle));
    let mut operations = Vec::new();
    for (index, webhook) in webhooks.iter().enumerate() {
        if webhook.ca_bundle.as_deref() == Some(bundle) {
            continue;
        }
        let mut path = PointerBuf::from_tokens(["webhooks", index.to_string().as_str()]);
        let mut name = path.clone();
        name.push_back("name");
        path.push_back("clientConfig");
        path.push_back("caBundle");
        operations.push(PatchOperation::Test(TestOperation {
            path: name,
            value: Value::String(webhook.name.clone()),
        }));
        operations.push(PatchOperation::Add(AddOperation {
            path,
            value: encoded.clone(),
        }));
    }
    (!operations.is_empty()).then_some(Patch(operations))
}

/// The name the serving certificate must carry: the one the API server checks when it
/// calls the Service, even when it dials a pod address.
pub fn service_dns_name(service: &str, namespace: &str) -> String {
    format!("{service}.{namespace}.svc")
}

#[cfg(test)]
mod tests;
