//! `manifests/crd.yaml` is generated from the Rust types; this test fails when it is stale.
//! Regenerate it with `make crd`.

use std::path::PathBuf;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;

fn committed() -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../manifests/crd.yaml");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

#[test]
fn committed_crd_matches_the_types() {
    let generated = vault_api::crd_yaml().unwrap_or_else(|e| panic!("rendering the CRD: {e}"));
    assert!(
        committed() == generated,
        "manifests/crd.yaml differs from the Rust types: run `make crd` and commit the result"
    );
}

#[test]
fn crd_serves_the_bank_vaults_group_with_status_and_columns() {
    let crd: CustomResourceDefinition =
        serde_saphyr::from_str(&committed()).unwrap_or_else(|e| panic!("parsing: {e}"));
    assert_eq!(crd.spec.group, "vault.banzaicloud.com");
    assert_eq!(crd.spec.names.plural, "vaults");
    assert_eq!(crd.spec.scope, "Namespaced");

    let version = &crd.spec.versions[0];
    assert_eq!(version.name, "v1alpha1");
    assert!(
        version
            .subresources
            .as_ref()
            .and_then(|s| s.status.as_ref())
            .is_some()
    );
    let columns: Vec<_> = version
        .additional_printer_columns
        .iter()
        .flatten()
        .map(|c| c.name.as_str())
        .collect();
    assert_eq!(columns, ["Size", "Ready", "Sealed", "Leader", "Age"]);
}

#[test]
fn every_bank_vaults_field_is_in_the_schema() {
    let ours_crd: serde_json::Value =
        serde_saphyr::from_str(&committed()).unwrap_or_else(|e| panic!("parsing: {e}"));
    let samples = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/samples/bank-vaults/vault.banzaicloud.com_vaults.yaml");
    let theirs = std::fs::read_to_string(&samples)
        .unwrap_or_else(|e| panic!("reading {}: {e}", samples.display()));
    let theirs: serde_json::Value =
        serde_saphyr::from_str(&theirs).unwrap_or_else(|e| panic!("parsing theirs: {e}"));

    let spec = "/spec/versions/0/schema/openAPIV3Schema/properties/spec/properties";
    let fields = |crd: &serde_json::Value| -> Vec<String> {
        let mut names: Vec<String> = crd
            .pointer(spec)
            .and_then(|p| p.as_object())
            .into_iter()
            .flatten()
            .map(|(name, _)| name.clone())
            .collect();
        names.sort();
        names
    };
    let ours = fields(&ours_crd);
    let missing: Vec<_> = fields(&theirs)
        .into_iter()
        .filter(|f| !ours.contains(f))
        .collect();
    assert!(
        missing.is_empty(),
        "fields of Bank-Vaults' CRD missing from ours: {missing:?}"
    );

    for field in &ours {
        let description = format!("{spec}/{field}/description");
        assert!(
            ours_crd.pointer(&description).is_some(),
            "spec.{field} has no description"
        );
    }
}

/// Walks Bank-Vaults' schema beside ours: every property of theirs must be in ours at the
/// same path, and ours must require nothing theirs leaves optional, or a resource they
/// accept would be refused (or a field of it dropped) by our API server.
fn compare_schemas(
    path: &str,
    theirs: &serde_json::Value,
    ours: &serde_json::Value,
    problems: &mut Vec<String>,
) {
    let required = |schema: &serde_json::Value| -> Vec<String> {
        let names = schema.get("required").and_then(|r| r.as_array());
        let names = names.into_iter().flatten().filter_map(|n| n.as_str());
        names.map(str::to_string).collect()
    };
    let theirs_required = required(theirs);
    for name in required(ours) {
        if !theirs_required.contains(&name) {
            problems.push(format!("{path}.{name} is required by ours only"));
        }
    }

    let free_form = ours.get("x-kubernetes-preserve-unknown-fields") == Some(&true.into());
    if let Some(properties) = theirs.get("properties").and_then(|p| p.as_object()) {
        for (name, schema) in properties {
            match ours.pointer(&format!("/properties/{name}")) {
                Some(our_schema) => {
                    compare_schemas(&format!("{path}.{name}"), schema, our_schema, problems)
                }
                None if free_form => {}
                None => problems.push(format!("{path}.{name} is missing from ours")),
            }
        }
    }
    for nested in ["items", "additionalProperties"] {
        if let (Some(theirs), Some(ours)) = (theirs.get(nested), ours.get(nested)) {
            compare_schemas(&format!("{path}[]"), theirs, ours, problems);
        }
    }
}

#[test]
fn every_nested_bank_vaults_field_is_in_the_schema_and_no_more_is_required() {
    let ours: serde_json::Value =
        serde_saphyr::from_str(&committed()).unwrap_or_else(|e| panic!("parsing: {e}"));
    let samples = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/samples/bank-vaults/vault.banzaicloud.com_vaults.yaml");
    let theirs = std::fs::read_to_string(&samples)
        .unwrap_or_else(|e| panic!("reading {}: {e}", samples.display()));
    let theirs: serde_json::Value =
        serde_saphyr::from_str(&theirs).unwrap_or_else(|e| panic!("parsing theirs: {e}"));

    let root = "/spec/versions/0/schema/openAPIV3Schema/properties/spec";
    let (Some(theirs), Some(ours)) = (theirs.pointer(root), ours.pointer(root)) else {
        panic!("a CRD without a spec schema");
    };
    let mut problems = Vec::new();
    compare_schemas("spec", theirs, ours, &mut problems);
    assert!(
        problems.is_empty(),
        "{} problems:\n{}",
        problems.len(),
        problems.join("\n")
    );
}

/// Every property of the schema at any depth, our fields and the Kubernetes types they
/// embed, has a description: `kubectl explain` shows it.
#[test]
fn every_property_at_every_depth_is_described() {
    fn walk(path: &str, schema: &serde_json::Value, undescribed: &mut Vec<String>) {
        let properties = schema.get("properties").and_then(|p| p.as_object());
        for (name, property) in properties.into_iter().flatten() {
            let path = format!("{path}.{name}");
            if property.get("description").is_none() {
                undescribed.push(path.clone());
            }
            walk(&path, property, undescribed);
        }
        for nested in ["items", "additionalProperties"] {
            if let Some(inner) = schema.get(nested).filter(|v| v.is_object()) {
                walk(&format!("{path}[]"), inner, undescribed);
            }
        }
    }

    let crd: serde_json::Value =
        serde_saphyr::from_str(&committed()).unwrap_or_else(|e| panic!("parsing: {e}"));
    let root = crd
        .pointer("/spec/versions/0/schema/openAPIV3Schema/properties")
        .unwrap_or_else(|| panic!("the CRD has no schema"));
    let mut undescribed = Vec::new();
    let mut properties = 0;
    for part in ["spec", "status"] {
        let schema = &root[part];
        properties += schema.to_string().matches("\"description\"").count();
        walk(part, schema, &mut undescribed);
    }
    assert!(
        properties > 500,
        "the walk saw the schema ({properties} descriptions)"
    );
    assert!(
        undescribed.is_empty(),
        "properties without a description: {undescribed:?}"
    );
}
