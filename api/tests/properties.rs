//! Properties of `default` over generated resources: it is idempotent, and it never turns a
//! valid resource into an invalid one.

use proptest::prelude::*;
use serde_json::{Value, json};
use vault_api::{Vault, default, validate};

fn storage() -> impl Strategy<Value = Option<Value>> {
    prop_oneof![
        Just(None),
        Just(Some(json!({"raft": {"path": "/vault/file"}}))),
        Just(Some(json!({"file": {"path": "/vault/file"}}))),
        Just(Some(json!([{"consul": {}}]))),
        Just(Some(json!({"dynamodb": {"ha_enabled": "true"}}))),
        Just(Some(json!({"raft": {}, "file": {}}))),
    ]
}

fn listener() -> impl Strategy<Value = Option<Value>> {
    let address = prop_oneof![Just("0.0.0.0:8200"), Just("[::]:8200"), Just("8200")];
    let tls_disable = prop_oneof![Just(None), Just(Some(json!(true))), Just(Some(json!("0")))];
    let cert = prop_oneof![Just(None), Just(Some("/etc/vault/cert.pem"))];
    (address, tls_disable, cert, any::<bool>()).prop_map(|(address, disable, cert, as_list)| {
        let mut tcp = json!({"address": address});
        if let Some(disable) = disable {
            tcp["tls_disable"] = disable;
        }
        if let Some(cert) = cert {
            tcp["tls_cert_file"] = cert.into();
        }
        Some(if as_list {
            json!([{"tcp": tcp}])
        } else {
            json!({"tcp": tcp})
        })
    })
}

fn unseal() -> impl Strategy<Value = Option<Value>> {
    let stores =
        proptest::sample::subsequence(vec!["kubernetes", "aws", "google", "vault", "hsm"], 0..=2);
    let count = proptest::option::of(-1i32..8);
    (stores, count.clone(), count, any::<bool>()).prop_map(|(stores, shares, threshold, opts)| {
        let mut unseal = json!({});
        for store in stores {
            unseal[store] = json!({});
        }
        if opts {
            unseal["options"] = json!({"secretShares": shares, "secretThreshold": threshold});
        }
        Some(unseal)
    })
}

fn placement() -> impl Strategy<Value = Value> {
    let anti = proptest::option::of(Just("topology.kubernetes.io/zone"));
    let node = proptest::option::of(Just(
        json!({"requiredDuringSchedulingIgnoredDuringExecution":
        {"nodeSelectorTerms": [{"matchExpressions": [{"key": "a", "operator": "Exists"}]}]}}),
    ));
    let affinity = proptest::option::of(Just(json!({"podAffinity": {}})));
    (anti, node, affinity).prop_map(|(anti, node, affinity)| {
        json!({"podAntiAffinity": anti, "nodeAffinity": node, "affinity": affinity})
    })
}

prop_compose! {
    fn vault()(
        name in "[a-z][a-z0-9-]{0,8}[a-z0-9]",
        namespace in proptest::option::of("[a-z]{1,8}"),
        size in proptest::option::of(-1i32..6),
        storage in storage(),
        listener in listener(),
        unseal in unseal(),
        placement in placement(),
        threshold in proptest::option::of(prop_oneof![Just("168h"), Just("1h30m"), Just("soon")]),
        mounted in any::<bool>(),
    ) -> Vault {
        let mut config = json!({});
        if let Some(storage) = storage {
            config["storage"] = storage;
        }
        if let Some(listener) = listener {
            config["listener"] = listener;
        }
        let mut spec = json!({"size": size, "config": config, "unsealConfig": unseal});
        for (field, value) in placement.as_object().into_iter().flatten() {
            spec[field] = value.clone();
        }
        spec["tlsExpiryThreshold"] = json!(threshold);
        if mounted {
            spec["volumeMounts"] = json!([{"name": "data", "mountPath": "/vault/file"}]);
        }
        strip_nulls(&mut spec);
        let object = json!({
            "apiVersion": "vault.banzaicloud.com/v1alpha1",
            "kind": "Vault",
            "metadata": {"name": name, "namespace": namespace},
            "spec": spec,
        });
        // A generated object that does not deserialise is a broken generator: fail loudly
        // rather than test an empty resource.
        #[allow(clippy::expect_used)]
        serde_json::from_value(object).expect("the generator makes only Vault-shaped objects")
    }
}

fn strip_nulls(value: &mut Value) {
    if let Value::Object(map) = value {
        map.retain(|_, v| !v.is_null());
        map.values_mut().for_each(strip_nulls);
    }
}

proptest! {
    // About one generated resource in six is valid; the others feed the last property.
    #![proptest_config(ProptestConfig {
        cases: 1000,
        max_global_rejects: 20_000,
        ..ProptestConfig::default()
    })]

    #[test]
    fn default_is_idempotent(vault in vault()) {
        let once = default(&vault);
        prop_assert_eq!(default(&once), once);
    }

    #[test]
    fn default_keeps_a_valid_resource_valid(vault in vault()) {
        prop_assume!(validate(&vault, None).is_ok());
        let defaulted = default(&vault);
        prop_assert!(validate(&defaulted, None).is_ok(), "{:?}", validate(&defaulted, None));
        prop_assert!(validate(&defaulted, Some(&vault)).is_ok(), "default is a valid update");
    }

    #[test]
    fn default_never_fixes_an_invalid_resource_silently(vault in vault()) {
        // The webhook defaults before it validates: a resource with an error must still be
        // refused after defaulting, or the user would never hear of the error.
        prop_assume!(validate(&vault, None).is_err());
        prop_assert!(validate(&default(&vault), None).is_err());
    }
}
