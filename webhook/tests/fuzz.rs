//! Fuzzing the request parsing and both handlers with proptest: arbitrary bytes, arbitrary
//! JSON, and arbitrary specs inside well-formed reviews. Nothing may panic; every answer is
//! a review (200) or a reason (400); every patch applies to the object sent.
//!
//! The run is bounded in time: cases after [`BUDGET`] (from the first case) pass without
//! running, so that a busy machine still finishes in a few seconds. For a longer run:
//! `FUZZ_SECONDS=600 PROPTEST_CASES=100000 cargo test --release -p vault-webhook --test fuzz`.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use base64::Engine as _;
use proptest::prelude::*;
use serde_json::{Map, Value};
use vault_webhook::fixtures::{raft_vault, review, vault};
use vault_webhook::server::{Endpoint, answer};

/// Field names the handlers look at, so that generated objects reach deep into them.
const KEYS: &[&str] = &[
    "apiVersion",
    "kind",
    "request",
    "uid",
    "operation",
    "object",
    "oldObject",
    "metadata",
    "name",
    "namespace",
    "deletionTimestamp",
    "spec",
    "size",
    "image",
    "config",
    "storage",
    "raft",
    "file",
    "path",
    "listener",
    "tcp",
    "address",
    "tls_disable",
    "unsealConfig",
    "options",
    "secretShares",
    "secretThreshold",
    "kubernetes",
    "secretName",
    "aws",
    "google",
    "hsm",
    "affinity",
    "podAntiAffinity",
    "nodeAffinity",
    "tlsExpiryThreshold",
    "servicePorts",
    "serviceType",
    "volumeMounts",
    "mountPath",
    "bankVaultsImage",
    "caNamespaces",
];

fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => prop::sample::select(KEYS).prop_map(str::to_string),
        1 => ".{0,12}",
    ]
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        (-1000i32..1000).prop_map(Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        ".{0,16}".prop_map(Value::from),
        prop::sample::select(
            &[
                "CREATE",
                "UPDATE",
                "DELETE",
                "admission.k8s.io/v1",
                "AdmissionReview",
                "Vault",
                "vault.banzaicloud.com",
                "v1alpha1",
                "0.0.0.0:8200",
                "168h",
                "true"
            ][..]
        )
        .prop_map(Value::from),
    ];
    leaf.prop_recursive(5, 96, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((key(), inner), 0..8)
                .prop_map(|fields| Value::Object(fields.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

/// Time given to each property's generated cases, from its first one.
const BUDGET: Duration = Duration::from_secs(3);

/// Cases every property runs whatever the time, so a slow machine still tests each one.
const MIN_CASES: u32 = 64;

/// False once `property` has run its minimum of cases and spent its time budget. Each
/// property has a budget of its own: with one shared budget, the properties run last could
/// run no case at all and still pass.
fn within_budget(property: &'static str) -> bool {
    static SEEN: OnceLock<Mutex<HashMap<&'static str, (Instant, u32)>>> = OnceLock::new();
    let budget = std::env::var("FUZZ_SECONDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .map_or(BUDGET, Duration::from_secs);
    let mut seen = SEEN
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    let (started, cases) = seen.entry(property).or_insert((Instant::now(), 0));
    *cases += 1;
    *cases <= MIN_CASES || started.elapsed() < budget
}

fn check_answer(endpoint: Endpoint, body: &[u8]) -> Result<Value, TestCaseError> {
    let answer = answer(endpoint, body);
    prop_assert!(
        answer.status == StatusCode::OK || answer.status == StatusCode::BAD_REQUEST,
        "{:?} answered {}",
        endpoint,
        answer.status
    );
    if answer.status == StatusCode::BAD_REQUEST {
        prop_assert!(!answer.body.is_empty(), "a 400 gives its reason");
        return Ok(Value::Null);
    }
    let review: Value = serde_json::from_slice(&answer.body)
        .map_err(|e| TestCaseError::fail(format!("answer is not JSON: {e}")))?;
    prop_assert_eq!(&review["kind"], "AdmissionReview");
    Ok(review)
}

/// Applies the patch of a /mutate answer to `object`; it must apply, and the result must
/// be what `vault_api::default` makes of the object.
fn check_patch(review: &Value, object: &Value) -> Result<(), TestCaseError> {
    let Some(patch) = review["response"]["patch"].as_str() else {
        return Ok(());
    };
    let patch = base64::engine::general_purpose::STANDARD
        .decode(patch)
        .map_err(|e| TestCaseError::fail(format!("patch is not base64: {e}")))?;
    let patch: json_patch::Patch = serde_json::from_slice(&patch)
        .map_err(|e| TestCaseError::fail(format!("patch is not a JSON Patch: {e}")))?;
    let mut patched = object.clone();
    json_patch::patch(&mut patched, &patch)
        .map_err(|e| TestCaseError::fail(format!("patch does not apply: {e}")))?;
    let read = |v: &Value| serde_json::from_value::<vault_api::Vault>(v.clone());
    let (Ok(before), Ok(after)) = (read(object), read(&patched)) else {
        return Err(TestCaseError::fail("a patched object reads as a Vault"));
    };
    prop_assert_eq!(after, vault_api::default(&before));
    Ok(())
}

fn config(cases: u32) -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(cases);
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(config(600))]

    #[test]
    fn arbitrary_bytes_never_panic(body in prop::collection::vec(any::<u8>(), 0..512)) {
        if !within_budget("arbitrary_bytes_never_panic") {
            return Ok(());
        }
        check_answer(Endpoint::Mutate, &body)?;
        check_answer(Endpoint::Validate, &body)?;
    }

    #[test]
    fn arbitrary_json_never_panics(document in json_value()) {
        if !within_budget("arbitrary_json_never_panics") {
            return Ok(());
        }
        let body = document.to_string().into_bytes();
        check_answer(Endpoint::Mutate, &body)?;
        check_answer(Endpoint::Validate, &body)?;
    }
}

proptest! {
    #![proptest_config(config(300))]

    #[test]
    fn arbitrary_requests_in_a_review_never_panic(
        request in json_value(),
        operation in prop::sample::select(&["CREATE", "UPDATE", "DELETE", "CONNECT"][..]),
    ) {
        if !within_budget("arbitrary_requests_in_a_review_never_panic") {
            return Ok(());
        }
        let mut body = review(operation, Some(raft_vault()), None);
        if let (Some(generated), Some(fields)) =
            (request.as_object(), body["request"].as_object_mut())
        {
            fields.extend(generated.clone());
        }
        let body = body.to_string().into_bytes();
        check_answer(Endpoint::Mutate, &body)?;
        check_answer(Endpoint::Validate, &body)?;
    }

    #[test]
    fn arbitrary_specs_are_defaulted_and_judged_without_panic(
        fields in prop::collection::vec((key(), json_value()), 0..6),
        old_fields in prop::collection::vec((key(), json_value()), 0..3),
    ) {
        if !within_budget("arbitrary_specs_are_defaulted_and_judged_without_panic") {
            return Ok(());
        }
        let mut object = raft_vault();
        for (key, value) in fields {
            object["spec"][key] = value;
        }
        let mut old = raft_vault();
        for (key, value) in old_fields {
            old["spec"][key] = value;
        }
        let body = review("UPDATE", Some(object.clone()), Some(old)).to_string().into_bytes();
        let mutated = check_answer(Endpoint::Mutate, &body)?;
        prop_assert_eq!(&mutated["response"]["allowed"], true, "mutate never refuses");
        check_patch(&mutated, &object)?;
        let validated = check_answer(Endpoint::Validate, &body)?;
        prop_assert!(validated["response"]["allowed"].is_boolean());
    }

    #[test]
    fn arbitrary_whole_specs_are_defaulted_without_panic(spec in json_value()) {
        if !within_budget("arbitrary_whole_specs_are_defaulted_without_panic") {
            return Ok(());
        }
        let object = vault(spec);
        let body = review("CREATE", Some(object.clone()), None).to_string().into_bytes();
        let mutated = check_answer(Endpoint::Mutate, &body)?;
        check_patch(&mutated, &object)?;
        check_answer(Endpoint::Validate, &body)?;
    }
}

#[test]
fn a_deep_document_is_refused_not_overflowed() {
    let deep = "[".repeat(100_000);
    let refused = answer(Endpoint::Validate, deep.as_bytes());
    assert_eq!(refused.status, StatusCode::BAD_REQUEST);

    // As deep as the JSON reader allows, inside the free-form configuration.
    let mut object = raft_vault();
    object["spec"]["config"]["deep"] =
        serde_json::from_str(&format!("{}{}", "[".repeat(110), "]".repeat(110)))
            .unwrap_or_else(|e| panic!("{e}"));
    let body = review("CREATE", Some(object), None).to_string();
    for endpoint in [Endpoint::Mutate, Endpoint::Validate] {
        assert_eq!(answer(endpoint, body.as_bytes()).status, StatusCode::OK);
    }
}
