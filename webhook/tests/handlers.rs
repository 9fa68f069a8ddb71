//! The admission handlers on AdmissionReview fixtures: each default written by /mutate,
//! each refusal of /validate, update rules, deletions, and malformed bodies.

use axum::http::StatusCode;
use base64::Engine as _;
use serde_json::{Value, json};
use vault_api::Vault;
use vault_webhook::fixtures::{create_body, raft_vault, review, vault};
use vault_webhook::handlers::{self, Decision, Outcome};
use vault_webhook::review::{self, BadReview};
use vault_webhook::server::{Endpoint, answer};

fn decide(endpoint: Endpoint, body: &Value) -> Decision {
    let request = review::parse(body.to_string().as_bytes())
        .unwrap_or_else(|e| panic!("fixture does not parse: {e}"));
    match endpoint {
        Endpoint::Mutate => handlers::mutate(&request),
        Endpoint::Validate => handlers::validate(&request),
    }
}

/// The object after the patch /mutate returns for its CREATE.
fn mutated(object: &Value) -> (Outcome, Value) {
    let decision = decide(
        Endpoint::Mutate,
        &review("CREATE", Some(object.clone()), None),
    );
    assert!(decision.response.allowed, "mutate never refuses");
    let mut document = object.clone();
    if let Some(patch) = &decision.response.patch {
        let patch: json_patch::Patch =
            serde_json::from_slice(patch).unwrap_or_else(|e| panic!("patch is not JSON: {e}"));
        json_patch::patch(&mut document, &patch)
            .unwrap_or_else(|e| panic!("patch does not apply to the object sent: {e}"));
    }
    (decision.outcome, document)
}

fn read(document: &Value) -> Vault {
    serde_json::from_value(document.clone()).unwrap_or_else(|e| panic!("not a Vault: {e}"))
}

#[test]
fn mutate_patch_turns_the_object_into_its_defaults() {
    let object = raft_vault();
    let (outcome, patched) = mutated(&object);
    assert_eq!(outcome, Outcome::Patched);
    assert_eq!(read(&patched), vault_api::default(&read(&object)));
    assert_eq!(
        patched["spec"]["config"]["ui"], true,
        "user fields are kept"
    );
    assert_eq!(
        patched["metadata"], object["metadata"],
        "metadata is not touched"
    );
}

/// The preferred anti-affinity terms that spread the pods.
const SPREAD: &str =
    "/spec/affinity/podAntiAffinity/preferredDuringSchedulingIgnoredDuringExecution";
const SPREAD_0_WEIGHT: &str = "SPREAD/0/weight";
const SPREAD_0_KEY: &str = "SPREAD/0/podAffinityTerm/topologyKey";
const SPREAD_1_KEY: &str = "SPREAD/1/podAffinityTerm/topologyKey";

#[test]
fn mutate_writes_each_default() {
    let (_, patched) = mutated(&raft_vault());
    let cases: &[(&str, Value)] = &[
        ("/spec/size", json!(3)),
        ("/spec/image", json!(vault_api::defaults::IMAGE)),
        ("/spec/tlsExpiryThreshold", json!("168h")),
        (
            "/spec/config/listener/tcp/tls_cert_file",
            json!("/vault/tls/server.crt"),
        ),
        (
            "/spec/config/listener/tcp/tls_key_file",
            json!("/vault/tls/server.key"),
        ),
        ("/spec/config/listener/tcp/address", json!("0.0.0.0:8200")),
        ("/spec/unsealConfig/options/secretShares", json!(5)),
        ("/spec/unsealConfig/options/secretThreshold", json!(3)),
        ("/spec/unsealConfig/options/preFlightChecks", json!(true)),
        ("/spec/unsealConfig/options/storeRootToken", json!(true)),
        (
            "/spec/unsealConfig/kubernetes/secretName",
            json!("vault-unseal-keys"),
        ),
        (
            "/spec/unsealConfig/kubernetes/secretNamespace",
            json!("default"),
        ),
        (SPREAD_0_WEIGHT, json!(100)),
        (SPREAD_0_KEY, json!("kubernetes.io/hostname")),
        (SPREAD_1_KEY, json!("topology.kubernetes.io/zone")),
    ];
    for (pointer, expected) in cases {
        let pointer = pointer.replace("SPREAD", SPREAD);
        assert_eq!(patched.pointer(&pointer), Some(expected), "{pointer}");
    }
}

#[test]
fn mutate_creates_missing_parents() {
    for spec in [json!({}), json!({"unsealConfig": null})] {
        let object = vault(spec.clone());
        let (outcome, patched) = mutated(&object);
        assert_eq!(outcome, Outcome::Patched, "{spec}");
        assert_eq!(read(&patched), vault_api::default(&read(&object)), "{spec}");
        assert_eq!(
            patched.pointer("/spec/config/listener/tcp/address"),
            Some(&json!(vault_api::defaults::LISTENER_ADDRESS)),
            "{spec}"
        );
    }

    // With no spec at all the object is not a Vault, and validation says so.
    let (outcome, _) = mutated(&json!({"apiVersion": "vault.banzaicloud.com/v1alpha1",
        "kind": "Vault", "metadata": {"name": "vault"}}));
    assert_eq!(outcome, Outcome::Allowed);
}

/// The ops of a /mutate answer's patch.
fn patch_paths(object: &Value) -> Vec<String> {
    let decision = decide(
        Endpoint::Mutate,
        &review("CREATE", Some(object.clone()), None),
    );
    let patch: json_patch::Patch = decision
        .response
        .patch
        .and_then(|p| serde_json::from_slice(&p).ok())
        .unwrap_or_default();
    patch.0.iter().map(|op| op.path().to_string()).collect()
}

#[test]
fn mutate_patches_only_what_changes() {
    // A listener block without `tcp` is replaced by a TCP one: its members, null or not,
    // are removed one by one rather than the whole spec rewritten.
    let object = vault(
        json!({"size": 1, "image": "vault", "config": {"storage": {"raft": {}},
        "listener": {"unix": null}, "ui": 1.0000000000000002}}),
    );
    let (_, patched) = mutated(&object);
    assert_eq!(read(&patched), vault_api::default(&read(&object)));
    let paths = patch_paths(&object);
    assert!(!paths.iter().any(|p| p == "/spec"), "{paths:?}");
    assert!(
        paths.iter().all(|p| !p.starts_with("/spec/size")),
        "{paths:?}"
    );
    assert!(
        paths.iter().all(|p| !p.starts_with("/spec/image")),
        "{paths:?}"
    );

    // A block sent as a list where an object is read (the typed object reads `[]` as an
    // empty one) is made an object, rather than the whole spec rewritten.
    let object = vault(
        json!({"config": {"storage": {"raft": {}}, "ui": 1.0000000000000002},
        "unsealConfig": []}),
    );
    let (_, patched) = mutated(&object);
    assert_eq!(read(&patched), vault_api::default(&read(&object)));
    let paths = patch_paths(&object);
    assert!(!paths.iter().any(|p| p == "/spec"), "{paths:?}");
}

#[test]
fn mutate_keeps_what_the_user_chose() {
    let object = vault(json!({
        "size": 3,
        "image": "openbao/openbao:2.4.1",
        "podAntiAffinity": "topology.kubernetes.io/zone",
        "config": {"storage": {"raft": {}}, "listener": {"tcp": {"address": ":8200",
            "tls_disable": true}}},
        "unsealConfig": {"aws": {"s3Bucket": "keys"}},
    }));
    let (_, patched) = mutated(&object);
    assert_eq!(patched["spec"]["image"], "openbao/openbao:2.4.1");
    assert_eq!(
        patched["spec"].get("affinity"),
        None,
        "own placement, no spread"
    );
    assert_eq!(
        patched["spec"]["config"]["listener"]["tcp"].get("tls_cert_file"),
        None
    );
    assert_eq!(patched["spec"].get("tlsExpiryThreshold"), None);
    assert_eq!(patched["spec"]["unsealConfig"].get("kubernetes"), None);
    assert_eq!(patched["spec"]["unsealConfig"]["aws"]["s3Bucket"], "keys");
}

#[test]
fn mutate_sends_no_patch_when_nothing_changes() {
    let defaulted = vault_api::default(&read(&raft_vault()));
    let object = serde_json::to_value(&defaulted).unwrap_or_default();
    let decision = decide(Endpoint::Mutate, &review("CREATE", Some(object), None));
    assert_eq!(decision.outcome, Outcome::Allowed);
    assert!(decision.response.allowed);
    assert_eq!(decision.response.patch, None);
}

#[test]
fn mutate_leaves_deletions_and_objects_being_deleted_alone() {
    let mut deleting = raft_vault();
    deleting["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
    for body in [
        review("UPDATE", Some(deleting.clone()), Some(raft_vault())),
        review("DELETE", None, Some(raft_vault())),
    ] {
        let decision = decide(Endpoint::Mutate, &body);
        assert!(decision.response.allowed);
        assert_eq!(decision.response.patch, None);
    }
}

#[test]
fn mutate_lets_an_unreadable_object_through_for_validation_to_refuse() {
    let object = vault(json!({"size": "three"}));
    let decision = decide(Endpoint::Mutate, &review("CREATE", Some(object), None));
    assert!(decision.response.allowed);
    assert_eq!(decision.response.patch, None);
}

/// A valid Raft resource with one field changed (`null` removes it).
fn with(pointer: &str, value: Value) -> Value {
    let mut object = raft_vault();
    let (parent, key) = pointer.rsplit_once('/').unwrap_or(("", pointer));
    let target = object
        .pointer_mut(parent)
        .unwrap_or_else(|| panic!("{parent} is not in the fixture"));
    match value {
        Value::Null => {
            target.as_object_mut().map(|m| m.remove(key));
        }
        value => target[key] = value,
    }
    object
}

fn denial(body: &Value) -> (String, Vec<String>, u16) {
    let decision = decide(Endpoint::Validate, body);
    assert_eq!(decision.outcome, Outcome::Denied, "{body}");
    let response = decision.response;
    assert!(!response.allowed);
    let fields = response
        .result
        .details
        .map(|d| d.causes.into_iter().map(|c| c.field).collect())
        .unwrap_or_default();
    (response.result.message, fields, response.result.code)
}

#[test]
fn validate_refuses_each_problem_naming_its_field() {
    let cases = [
        (
            with("/spec/config/storage", Value::Null),
            "spec.config.storage",
        ),
        (
            with(
                "/spec/config/storage",
                json!({"file": {"path": "/vault/file"}}),
            ),
            "spec.size",
        ),
        (with("/spec/size", json!(-1)), "spec.size"),
        (
            with("/spec/unsealConfig", json!({"aws": {}, "google": {}})),
            "spec.unsealConfig",
        ),
        (
            with(
                "/spec/unsealConfig",
                json!({"options": {"secretShares": 3,
                "secretThreshold": 4}}),
            ),
            "spec.unsealConfig.options.secretThreshold",
        ),
        (
            with(
                "/spec/unsealConfig",
                json!({"options": {"secretShares": 300}}),
            ),
            "spec.unsealConfig.options.secretShares",
        ),
        (
            with("/spec/tlsExpiryThreshold", json!("a week")),
            "spec.tlsExpiryThreshold",
        ),
        (
            with("/spec/existingTlsSecretName", json!("My_Secret")),
            "spec.existingTlsSecretName",
        ),
        (
            with(
                "/spec/config/listener",
                json!({"tcp": {"address": "0.0.0.0"}}),
            ),
            "spec.config.listener.tcp.address",
        ),
        (
            with(
                "/spec/unsealConfig",
                json!({"kubernetes": {"secretNamespace": "Prod"}}),
            ),
            "spec.unsealConfig.kubernetes.secretNamespace",
        ),
        (
            with("/spec/serviceType", json!("Ingress")),
            "spec.serviceType",
        ),
        (
            with("/spec/servicePorts", json!({"api-port": 70000})),
            "spec.servicePorts.api-port",
        ),
        (with("/metadata/name", json!("1vault")), "metadata.name"),
        (with("/spec/size", json!("three")), "spec.size"),
    ];
    for (object, path) in cases {
        let (message, fields, code) = denial(&review("CREATE", Some(object), None));
        assert_eq!(code, 422, "{path}");
        assert!(
            message.contains(&format!("- {path}: ")),
            "{path}: {message}"
        );
        assert!(fields.iter().any(|f| f == path), "{path}: {fields:?}");
    }
}

#[test]
fn validate_lists_every_problem_in_one_message() {
    let mut object = with("/spec/config/storage", json!({"file": {}}));
    object["spec"]["tlsExpiryThreshold"] = json!("soon");
    object["spec"]["serviceType"] = json!("Ingress");
    let (message, fields, _) = denial(&review("CREATE", Some(object), None));
    assert!(
        message.starts_with("Vault default/vault is invalid, 3 problems to fix:\n- "),
        "{message}"
    );
    assert_eq!(
        fields,
        ["spec.size", "spec.tlsExpiryThreshold", "spec.serviceType"]
    );
    assert!(
        message.contains("set size to 1, or use raft storage"),
        "the fix: {message}"
    );
}

#[test]
fn validate_returns_warnings_as_admission_warnings() {
    let object = with(
        "/spec/bankVaultsImage",
        json!("ghcr.io/bank-vaults/bank-vaults"),
    );
    let decision = decide(Endpoint::Validate, &review("CREATE", Some(object), None));
    assert_eq!(decision.outcome, Outcome::Allowed);
    let warnings = decision.response.warnings.unwrap_or_default();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].starts_with("spec.bankVaultsImage: "),
        "{warnings:?}"
    );

    let clean = decide(
        Endpoint::Validate,
        &review("CREATE", Some(raft_vault()), None),
    );
    assert_eq!(clean.response.warnings, None);
}

#[test]
fn validate_compares_old_and_new_on_update() {
    let old = with("/spec/size", json!(1));
    let mut new = with(
        "/spec/config/storage",
        json!({"file": {"path": "/vault/file"}}),
    );
    new["spec"]["size"] = json!(1);
    let (message, fields, _) = denial(&review("UPDATE", Some(new.clone()), Some(old.clone())));
    assert_eq!(fields, ["spec.config.storage"]);
    assert!(message.contains("from raft to file"), "{message}");

    // The same object is fine on create, and other changes are fine on update.
    let created = decide(Endpoint::Validate, &review("CREATE", Some(new), None));
    assert!(created.response.allowed);
    let scaled = decide(
        Endpoint::Validate,
        &review("UPDATE", Some(with("/spec/size", json!(5))), Some(old)),
    );
    assert!(scaled.response.allowed);
}

#[test]
fn validate_skips_update_rules_when_the_stored_object_does_not_read() {
    let old = with("/spec/size", json!("three"));
    let decision = decide(
        Endpoint::Validate,
        &review("UPDATE", Some(raft_vault()), Some(old)),
    );
    assert!(decision.response.allowed);
    let warnings = decision.response.warnings.unwrap_or_default();
    assert!(warnings[0].contains("spec.size"), "{warnings:?}");
}

#[test]
fn validate_never_blocks_deletion() {
    let mut deleting = with("/spec/config/storage", Value::Null);
    deleting["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
    deleting["metadata"]["finalizers"] = json!([]);
    let invalid = with("/spec/config/storage", Value::Null);
    for body in [
        review("UPDATE", Some(deleting), Some(invalid.clone())),
        review("DELETE", None, Some(invalid)),
    ] {
        let decision = decide(Endpoint::Validate, &body);
        assert!(decision.response.allowed, "{body}");
    }
}

#[test]
fn status_updates_are_let_through() {
    let invalid = with("/spec/config/storage", Value::Null);
    let mut body = review("UPDATE", Some(invalid.clone()), Some(invalid));
    body["request"]["subResource"] = json!("status");
    for endpoint in [Endpoint::Mutate, Endpoint::Validate] {
        let decision = decide(endpoint, &body);
        assert!(decision.response.allowed, "{endpoint:?}");
        assert_eq!(decision.response.patch, None, "{endpoint:?}");
    }
}

#[test]
fn the_response_answers_the_request() {
    let answer = answer(Endpoint::Validate, &create_body(raft_vault()));
    assert_eq!(answer.status, StatusCode::OK);
    let body: Value = serde_json::from_slice(&answer.body).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(body["apiVersion"], "admission.k8s.io/v1");
    assert_eq!(body["kind"], "AdmissionReview");
    assert_eq!(
        body["response"]["uid"],
        "705ab4f5-6393-11e8-b7cc-42010a800002"
    );
    assert_eq!(body["response"]["allowed"], true);

    let answer = vault_webhook::server::answer(Endpoint::Mutate, &create_body(raft_vault()));
    let body: Value = serde_json::from_slice(&answer.body).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(body["response"]["patchType"], "JSONPatch");
    let patch = body["response"]["patch"].as_str().unwrap_or_default();
    let patch = base64::engine::general_purpose::STANDARD
        .decode(patch)
        .unwrap_or_default();
    let patch: Result<json_patch::Patch, _> = serde_json::from_slice(&patch);
    assert!(
        patch.is_ok_and(|p| !p.0.is_empty()),
        "the patch is base64 JSON: {body}"
    );
}

#[test]
fn malformed_bodies_get_400_with_a_reason() {
    let mut pod = review("CREATE", Some(json!({"metadata": {"name": "p"}})), None);
    pod["request"]["kind"] = json!({"group": "", "version": "v1", "kind": "Pod"});
    let mut v1beta1 = review("CREATE", Some(raft_vault()), None);
    v1beta1["apiVersion"] = json!("admission.k8s.io/v1beta1");
    let mut wrong_kind = review("CREATE", Some(raft_vault()), None);
    wrong_kind["kind"] = json!("Vault");
    let mut no_request = review("CREATE", Some(raft_vault()), None);
    no_request.as_object_mut().map(|m| m.remove("request"));
    let mut null_request = review("CREATE", Some(raft_vault()), None);
    null_request["request"] = Value::Null;
    let mut bad_uid = review("CREATE", Some(raft_vault()), None);
    bad_uid["request"]["uid"] = json!(5);
    let mut bad_operation = review("CREATE", Some(raft_vault()), None);
    bad_operation["request"]["operation"] = json!("PATCH");

    let cases: Vec<(Vec<u8>, &str)> = vec![
        (b"".to_vec(), "not JSON"),
        (b"{\"apiVersion\":".to_vec(), "not JSON"),
        (b"\xff\xfe".to_vec(), "not JSON"),
        (b"[1,2]".to_vec(), "not a JSON object"),
        (
            v1beta1.to_string().into_bytes(),
            "apiVersion is \"admission.k8s.io/v1beta1\"",
        ),
        (wrong_kind.to_string().into_bytes(), "kind is \"Vault\""),
        (no_request.to_string().into_bytes(), "no request"),
        (null_request.to_string().into_bytes(), "no request"),
        (bad_uid.to_string().into_bytes(), "request.uid"),
        (bad_operation.to_string().into_bytes(), "request.operation"),
        (pod.to_string().into_bytes(), "about /v1 Pod"),
        (
            review("CREATE", None, None).to_string().into_bytes(),
            "CREATE request carries no object",
        ),
    ];
    for endpoint in [Endpoint::Mutate, Endpoint::Validate] {
        for (body, reason) in &cases {
            let answer = answer(endpoint, body);
            let text = String::from_utf8_lossy(&answer.body);
            assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{reason}: {text}");
            assert_eq!(answer.outcome, "bad_request");
            assert!(text.contains(reason), "expected {reason:?} in {text:?}");
        }
    }
}

#[test]
fn bad_review_reasons_name_what_to_send() {
    let reason = BadReview::Unreadable {
        limit: 10,
        reason: "length limit exceeded".into(),
    };
    assert_eq!(
        reason.to_string(),
        "the body could not be read within 10 bytes: length limit exceeded"
    );
}

#[test]
fn samples_through_mutate_then_validate_have_the_expected_outcome() {
    for (file, refused) in e2e::SAMPLE_OUTCOMES {
        let path = e2e::samples_dir().join(file);
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
        let documents: Vec<Option<Value>> =
            serde_saphyr::from_multiple(&text).unwrap_or_else(|e| panic!("{file}: {e}"));
        let mut object = documents
            .into_iter()
            .flatten()
            .find(|d| d["kind"] == "Vault")
            .unwrap_or_else(|| panic!("{file} holds no Vault"));
        object["metadata"]["namespace"] = json!("default");

        let (outcome, patched) = mutated(&object);
        assert_eq!(outcome, Outcome::Patched, "{file} gains defaults");
        let paths = patch_paths(&object);
        assert!(!paths.iter().any(|p| p == "/spec"), "{file}: {paths:?}");
        assert_eq!(read(&patched), vault_api::default(&read(&object)), "{file}");

        let decision = decide(Endpoint::Validate, &review("CREATE", Some(patched), None));
        match refused {
            None => assert!(decision.response.allowed, "{file}: {:?}", decision.response),
            Some(path) => {
                let (_, fields, _) = denial(&review("CREATE", Some(mutated(&object).1), None));
                assert!(fields.iter().any(|f| f == path), "{file}: {fields:?}");
            }
        }
    }
}
