//! The renewal decisions, walked through a CA's life with a simulated clock.

use time::macros::datetime;

use super::*;

const NAME: &str = "vault-webhook.vault-operator.svc";
const START: OffsetDateTime = datetime!(2026-01-01 00:00 UTC);

fn created(now: OffsetDateTime) -> StoredCerts {
    let plan = plan(&StoredCerts::default(), NAME, now, false);
    apply(
        plan,
        &StoredCerts::default(),
        NAME,
        now,
        Lifetimes::default(),
    )
    .unwrap_or_else(|e| panic!("creating: {e}"))
}

fn facts(pem: Option<&KeyedCert>) -> CertFacts {
    let pem = pem.map(|c| c.cert.as_str()).unwrap_or_default();
    cert_facts(pem).unwrap_or_else(|e| panic!("parsing: {e}"))
}

#[test]
fn nothing_stored_makes_a_ca_and_a_serving_certificate() {
    let plan = plan(&StoredCerts::default(), NAME, START, false);
    assert_eq!(
        plan,
        Plan {
            new_ca: Some(CaChange::Create),
            issue_serving: true
        }
    );

    let certs = created(START);
    let ca = facts(certs.ca.as_ref());
    assert!(ca.is_ca);
    assert_eq!(ca.not_after, START + Duration::days(365));
    let serving = facts(certs.serving.as_ref());
    assert!(!serving.is_ca);
    assert_eq!(serving.dns_names, [NAME]);
    assert_eq!(serving.not_after, START + Duration::days(90));
    assert!(serving.not_before < START, "backdated for clock skew");
    let (ca_pem, serving_pem) = (&certs.ca.as_ref().map(|c| c.cert.clone()), &certs.serving);
    assert!(is_signed_by(
        &serving_pem
            .as_ref()
            .map(|c| c.cert.clone())
            .unwrap_or_default(),
        ca_pem.as_deref().unwrap_or_default()
    ));
    assert_eq!(certs.previous_ca, None);
}

#[test]
fn fresh_certificates_are_kept() {
    let certs = created(START);
    for later in [Duration::ZERO, Duration::days(30), Duration::days(59)] {
        let plan = plan(&certs, NAME, START + later, true);
        assert_eq!(plan, Plan::default(), "{later}");
        assert!(!plan.changes_anything());
    }
}

#[test]
fn the_serving_certificate_is_renewed_after_two_thirds_of_its_life() {
    let certs = created(START);
    let now = START + Duration::days(61);
    let plan = plan(&certs, NAME, now, false);
    assert_eq!(
        plan,
        Plan {
            new_ca: None,
            issue_serving: true
        }
    );
    let renewed = apply(plan, &certs, NAME, now, Lifetimes::default()).unwrap_or_default();
    assert_eq!(renewed.ca, certs.ca, "the CA is kept");
    assert_ne!(renewed.serving, certs.serving);
    assert_eq!(
        facts(renewed.serving.as_ref()).not_after,
        now + Duration::days(90)
    );
}

#[test]
fn a_serving_certificate_for_another_name_or_key_is_replaced() {
    let mut certs = created(START);
    let plan_for_other_name = plan(&certs, "other.ns.svc", START, false);
    assert!(plan_for_other_name.issue_serving);
    assert_eq!(plan_for_other_name.new_ca, None);

    let other = created(START);
    if let (Some(serving), Some(other)) = (certs.serving.as_mut(), other.serving) {
        serving.key = other.key;
    }
    assert!(
        plan(&certs, NAME, START, false).issue_serving,
        "key mismatch"
    );
}

#[test]
fn unusable_cas_are_replaced_and_not_kept() {
    let certs = created(START);
    let expired = plan(&certs, NAME, START + Duration::days(366), true);
    assert_eq!(expired.new_ca, Some(CaChange::Create));

    let mut garbled = certs.clone();
    if let Some(ca) = garbled.ca.as_mut() {
        ca.cert = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n".into();
    }
    let plan = plan(&garbled, NAME, START, true);
    assert_eq!(plan.new_ca, Some(CaChange::Create));
    let next = apply(plan, &garbled, NAME, START, Lifetimes::default()).unwrap_or_default();
    assert_eq!(next.previous_ca, None);
}

#[test]
fn a_ca_rollover_keeps_the_old_ca_trusted_until_the_new_one_is() {
    let certs = created(START);

    // Two thirds into the CA's life: a new CA, the old one kept, the serving certificate
    // (still from the old CA) kept until the API server trusts the new CA.
    let rollover_at = START + Duration::days(250);
    let serving_before = apply(
        plan(&certs, NAME, START + Duration::days(200), true),
        &certs,
        NAME,
        START + Duration::days(200),
        Lifetimes::default(),
    )
    .unwrap_or_default();
    let plan_rollover = plan(&serving_before, NAME, rollover_at, true);
    assert_eq!(
        plan_rollover,
        Plan {
            new_ca: Some(CaChange::Rollover),
            issue_serving: false
        }
    );
    let rolled = apply(
        plan_rollover,
        &serving_before,
        NAME,
        rollover_at,
        Lifetimes::default(),
    )
    .unwrap_or_default();
    let old_ca = serving_before.ca.as_ref().map(|c| c.cert.clone());
    assert_eq!(rolled.previous_ca, old_ca);
    assert_ne!(rolled.ca, serving_before.ca);
    assert_eq!(rolled.serving, serving_before.serving);

    // The bundle holds both CAs, new first; never the serving certificate.
    let bundle = ca_bundle(&rolled, rollover_at).unwrap_or_default();
    let new_ca = rolled
        .ca
        .as_ref()
        .map(|c| c.cert.clone())
        .unwrap_or_default();
    let old_ca = old_ca.unwrap_or_default();
    assert!(bundle.starts_with(new_ca.trim()));
    assert!(bundle_trusts(bundle.as_bytes(), &new_ca));
    assert!(bundle_trusts(bundle.as_bytes(), &old_ca));
    let serving = rolled
        .serving
        .as_ref()
        .map(|c| c.cert.clone())
        .unwrap_or_default();
    assert!(!bundle_trusts(bundle.as_bytes(), &serving));
    assert_eq!(bundle.matches("BEGIN CERTIFICATE").count(), 2);

    // Not yet trusted by the configurations, or trusted only just now: keep serving the old
    // CA's certificate.
    let later = rollover_at + TRUST_DELAY;
    assert_eq!(plan(&rolled, NAME, later, false), Plan::default());
    assert_eq!(plan(&rolled, NAME, rollover_at, true), Plan::default());
    // Trusted for a while: switch to a certificate from the new CA.
    let switch = plan(&rolled, NAME, later, true);
    assert_eq!(
        switch,
        Plan {
            new_ca: None,
            issue_serving: true
        }
    );
    let switched = apply(switch, &rolled, NAME, later, Lifetimes::default()).unwrap_or_default();
    let serving = switched
        .serving
        .as_ref()
        .map(|c| c.cert.clone())
        .unwrap_or_default();
    assert!(is_signed_by(&serving, &new_ca));
    assert!(!is_signed_by(&serving, &old_ca));

    // Once the old CA has expired it leaves the bundle.
    let after_expiry = START + Duration::days(366);
    let bundle = ca_bundle(&switched, after_expiry).unwrap_or_default();
    assert_eq!(bundle.matches("BEGIN CERTIFICATE").count(), 1);
    assert!(bundle_trusts(bundle.as_bytes(), &new_ca));
}

#[test]
fn a_missing_serving_certificate_is_issued_even_during_a_rollover() {
    let mut certs = created(START);
    certs.serving = None;
    let plan = plan(&certs, NAME, START + Duration::days(250), false);
    assert_eq!(
        plan,
        Plan {
            new_ca: Some(CaChange::Rollover),
            issue_serving: true
        }
    );
}

#[test]
fn the_serving_certificate_never_outlives_its_ca() {
    let certs = created(START);
    let now = START + Duration::days(200);
    let ca = certs.ca.clone().unwrap_or(KeyedCert {
        cert: String::new(),
        key: String::new(),
    });
    let serving = issue_serving_cert(&ca, NAME, now, Duration::days(365)).unwrap_or(ca.clone());
    assert_eq!(
        facts(Some(&serving)).not_after,
        facts(certs.ca.as_ref()).not_after
    );
}

#[test]
fn the_secret_data_round_trips() {
    let certs = created(START);
    let data = certs.to_secret_data();
    let keys: Vec<&str> = data.keys().map(String::as_str).collect();
    assert_eq!(keys, ["ca.crt", "ca.key", "tls.crt", "tls.key"]);
    assert_eq!(StoredCerts::from_secret_data(&data), certs);
    assert_eq!(
        StoredCerts::from_secret_data(&Default::default()),
        StoredCerts::default()
    );
}

#[test]
fn the_ca_bundle_patch_touches_only_webhooks_that_differ() {
    let bundle = b"-----BEGIN CERTIFICATE-----\n...".to_vec();
    let webhooks = [
        WebhookTrust {
            name: "vaults.vault.banzaicloud.com".into(),
            ca_bundle: Some(bundle.clone()),
        },
        WebhookTrust {
            name: "other.vault.banzaicloud.com".into(),
            ca_bundle: None,
        },
    ];
    let patch = ca_bundle_patch(&webhooks, &bundle).unwrap_or_default();
    let json = serde_json::to_value(&patch).unwrap_or_default();
    let encoded = base64::engine::general_purpose::STANDARD.encode(&bundle);
    assert_eq!(
        json,
        serde_json::json!([
            {"op": "test", "path": "/webhooks/1/name", "value": "other.vault.banzaicloud.com"},
            {"op": "add", "path": "/webhooks/1/clientConfig/caBundle", "value": encoded},
        ])
    );
    assert_eq!(ca_bundle_patch(&webhooks[..1], &bundle), None);
    assert_eq!(ca_bundle_patch(&[], &bundle), None);
}

#[test]
fn the_serving_certificate_names_the_service() {
    assert_eq!(
        service_dns_name("vault-webhook", "vault-operator"),
        "vault-webhook.vault-operator.svc"
    );
}
