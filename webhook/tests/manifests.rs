//! `manifests/webhook.yaml` asks for what the webhook needs and nothing more, and its names
//! agree with the binary's defaults.

use std::collections::BTreeSet;
use std::path::PathBuf;

use serde_json::Value;

fn manifests() -> Vec<Value> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../manifests/webhook.yaml");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    let documents: Vec<Option<Value>> =
        serde_saphyr::from_multiple(&text).unwrap_or_else(|e| panic!("parsing: {e}"));
    documents.into_iter().flatten().collect()
}

fn one(kind: &str) -> Value {
    let mut found: Vec<Value> = manifests()
        .into_iter()
        .filter(|d| d["kind"] == kind)
        .collect();
    assert_eq!(found.len(), 1, "one {kind}");
    found.remove(0)
}

fn strings(value: &Value) -> BTreeSet<String> {
    value
        .as_array()
        .map(|items| {
            items
                .iter()
                .filter_map(|i| i.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

#[test]
fn webhook_configurations_are_scoped_to_vaults_on_create_and_update() {
    for (kind, path) in [
        ("MutatingWebhookConfiguration", "/mutate"),
        ("ValidatingWebhookConfiguration", "/validate"),
    ] {
        let configuration = one(kind);
        assert_eq!(configuration["metadata"]["name"], "vault-webhook", "{kind}");
        let webhooks = configuration["webhooks"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        assert_eq!(webhooks.len(), 1, "{kind}");
        let webhook = &webhooks[0];

        assert_eq!(webhook["sideEffects"], "None", "{kind}");
        let timeout = webhook["timeoutSeconds"].as_i64().unwrap_or_default();
        assert!(
            (5..=10).contains(&timeout),
            "{kind}: timeoutSeconds {timeout}"
        );
        assert_eq!(webhook["failurePolicy"], "Fail", "{kind}");
        assert_eq!(strings(&webhook["admissionReviewVersions"]), set(&["v1"]));
        assert!(
            webhook["clientConfig"].get("caBundle").is_none(),
            "written at run time"
        );
        let service = &webhook["clientConfig"]["service"];
        assert_eq!(service["name"], "vault-webhook");
        assert_eq!(service["namespace"], "vault-operator");
        assert_eq!(service["path"], path);

        let rules = webhook["rules"].as_array().cloned().unwrap_or_default();
        assert_eq!(rules.len(), 1, "{kind}");
        let rule = &rules[0];
        assert_eq!(strings(&rule["apiGroups"]), set(&["vault.banzaicloud.com"]));
        assert_eq!(strings(&rule["apiVersions"]), set(&["v1alpha1"]));
        assert_eq!(
            strings(&rule["resources"]),
            set(&["vaults"]),
            "never /status"
        );
        assert_eq!(strings(&rule["operations"]), set(&["CREATE", "UPDATE"]));
    }
}

#[test]
fn rbac_grants_only_the_secret_and_the_two_configurations() {
    let role = one("Role");
    let rules = role["rules"].as_array().cloned().unwrap_or_default();
    assert_eq!(rules.len(), 1);
    assert_eq!(strings(&rules[0]["resources"]), set(&["secrets"]));
    assert_eq!(
        strings(&rules[0]["resourceNames"]),
        set(&["vault-webhook-tls"])
    );
    assert_eq!(strings(&rules[0]["verbs"]), set(&["get", "update"]));

    let cluster_role = one("ClusterRole");
    let rules = cluster_role["rules"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(rules.len(), 1);
    assert_eq!(
        strings(&rules[0]["resources"]),
        set(&[
            "mutatingwebhookconfigurations",
            "validatingwebhookconfigurations"
        ])
    );
    assert_eq!(strings(&rules[0]["resourceNames"]), set(&["vault-webhook"]));
    assert_eq!(strings(&rules[0]["verbs"]), set(&["get", "patch"]));

    for binding in [one("RoleBinding"), one("ClusterRoleBinding")] {
        assert_eq!(binding["subjects"][0]["name"], "vault-webhook");
        assert_eq!(binding["subjects"][0]["namespace"], "vault-operator");
    }
}

#[test]
fn the_deployment_serves_what_the_service_and_probes_expect() {
    let deployment = one("Deployment");
    let container = &deployment["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(container["image"], "vault-operator/vault-webhook:dev");
    let ports: BTreeSet<(String, i64)> = container["ports"]
        .as_array()
        .map(|ports| {
            ports
                .iter()
                .map(|p| {
                    let name = p["name"].as_str().unwrap_or_default().to_string();
                    (name, p["containerPort"].as_i64().unwrap_or_default())
                })
                .collect()
        })
        .unwrap_or_default();
    let expected = [("probes".to_string(), 8080), ("webhook".to_string(), 8443)];
    assert_eq!(ports, expected.into_iter().collect());
    assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert_eq!(container["livenessProbe"]["httpGet"]["path"], "/healthz");

    let service = one("Service");
    assert_eq!(service["spec"]["ports"][0]["port"], 443);
    assert_eq!(service["spec"]["ports"][0]["targetPort"], "webhook");
    assert_eq!(one("Secret")["metadata"]["name"], "vault-webhook-tls");
}
