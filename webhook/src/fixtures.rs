//! AdmissionReview bodies as the API server sends them, for the tests, the fuzz target and
//! the benchmark.

use serde_json::{Value, json};

/// A review of a `Vault`: `operation` is `CREATE`, `UPDATE` or `DELETE`.
pub fn review(operation: &str, object: Option<Value>, old_object: Option<Value>) -> Value {
    let gvk = json!({"group": "vault.banzaicloud.com", "version": "v1alpha1", "kind": "Vault"});
    let gvr =
        json!({"group": "vault.banzaicloud.com", "version": "v1alpha1", "resource": "vaults"});
    json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "705ab4f5-6393-11e8-b7cc-42010a800002",
            "kind": gvk,
            "resource": gvr,
            "requestKind": gvk,
            "requestResource": gvr,
            "name": "vault",
            "namespace": "default",
            "operation": operation,
            "userInfo": {"username": "admin", "groups": ["system:authenticated"]},
            "object": object,
            "oldObject": old_object,
            "dryRun": false,
        },
    })
}

/// A `Vault` named `vault` in namespace `default` with the given spec.
pub fn vault(spec: Value) -> Value {
    json!({
        "apiVersion": "vault.banzaicloud.com/v1alpha1",
        "kind": "Vault",
        "metadata": {"name": "vault", "namespace": "default", "uid": "8d6e0b1c"},
        "spec": spec,
    })
}

/// A valid three-pod Raft `Vault`, before defaults.
pub fn raft_vault() -> Value {
    vault(json!({
        "size": 3,
        "config": {
            "storage": {"raft": {"path": "/vault/file"}},
            "listener": {"tcp": {"address": "0.0.0.0:8200"}},
            "ui": true,
        },
        "volumeMounts": [{"name": "vault-raft", "mountPath": "/vault/file"}],
    }))
}

/// The review body of a CREATE of `object`.
pub fn create_body(object: Value) -> Vec<u8> {
    review("CREATE", Some(object), None)
        .to_string()
        .into_bytes()
}
