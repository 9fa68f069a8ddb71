//! `kubectl vault install`: the operator's manifests, embedded at build time, with the
//! namespace and images overridden, printed or applied server-side.
//!
//! Server-side apply because the CRD embeds pod templates and is too large for the
//! annotation a client-side apply writes.

use kube::api::{Api, DynamicObject, GroupVersionKind, Patch, PatchParams};
use kube::discovery::{Scope, pinned_kind};
use serde_json::{Value, json};

use crate::cluster::{Cluster, ClusterError, is_not_found};

include!(concat!(env!("OUT_DIR"), "/manifests.rs"));

/// The manifests the plugin is meant to carry; the build embeds those that exist.
pub const EXPECTED: &[&str] = &["crd.yaml", "controller.yaml", "webhook.yaml"];

/// The field manager of everything the plugin applies.
pub const FIELD_MANAGER: &str = "kubectl-vault";

/// Kinds that live outside namespaces, of those an operator's manifests may hold; every
/// other kind is taken to be namespaced.
const CLUSTER_SCOPED: &[&str] = &[
    "Namespace",
    "CustomResourceDefinition",
    "ClusterRole",
    "ClusterRoleBinding",
    "MutatingWebhookConfiguration",
    "ValidatingWebhookConfiguration",
    "ValidatingAdmissionPolicy",
    "ValidatingAdmissionPolicyBinding",
    "APIService",
    "PriorityClass",
    "StorageClass",
    "IngressClass",
    "PersistentVolume",
];

/// Namespaces every cluster has, never written by `install`.
const BUILT_IN_NAMESPACES: &[&str] = &["default", "kube-system", "kube-public"];

/// Why `install` printed or applied nothing, or stopped part way.
#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    /// An embedded manifest is not YAML (a build of a broken `manifests/`).
    #[error("manifests/{file} embedded in this plugin is not YAML: {problem}")]
    Manifest {
        /// The file.
        file: String,
        /// What the parser said.
        problem: String,
    },
    /// An `--image CONTAINER=IMAGE` names no container of the manifests.
    #[error("--image {container}=...: no container of that name; the manifests have: {known}")]
    UnknownContainer {
        /// The name given.
        container: String,
        /// The names there are.
        known: String,
    },
    /// The cluster serves no such kind.
    #[error("the cluster has no {kind} in {api_version}; is the CRD that defines it installed?")]
    UnknownKind {
        /// The document's apiVersion.
        api_version: String,
        /// The document's kind.
        kind: String,
    },
    /// A document lacks apiVersion, kind or name.
    #[error("a document of the manifests has no {0}")]
    Incomplete(&'static str),
    /// YAML output failed.
    #[error("writing the manifests as YAML: {0}")]
    Yaml(#[from] serde_saphyr::SerializeError),
    /// The cluster refused or could not be reached.
    #[error(transparent)]
    Cluster(#[from] ClusterError),
}

/// The embedded manifests that this build lacks, for a note to the user.
pub fn missing() -> Vec<&'static str> {
    EXPECTED
        .iter()
        .filter(|name| MANIFESTS.iter().all(|(file, _)| file != *name))
        .copied()
        .collect()
}

/// Every document of the embedded manifests, in apply order.
pub fn documents() -> Result<Vec<Value>, InstallError> {
    let mut documents = Vec::new();
    for (file, text) in MANIFESTS {
        let parsed: Vec<Option<Value>> =
            serde_saphyr::from_multiple(text).map_err(|e| InstallError::Manifest {
                file: file.to_string(),
                problem: e.to_string(),
            })?;
        documents.extend(parsed.into_iter().flatten().filter(|d| !d.is_null()));
    }
    Ok(documents)
}

/// What to change in the manifests.
#[derive(Clone, Debug, Default)]
pub struct Overrides {
    /// Move every namespaced object, and every reference to its namespace, here.
    pub namespace: Option<String>,
    /// `CONTAINER=IMAGE` or `IMAGE` (every container).
    pub images: Vec<String>,
}

/// Applies the overrides, and adds a Namespace for each namespace the objects live in that
/// the manifests do not create.
pub fn customise(mut documents: Vec<Value>, o: &Overrides) -> Result<Vec<Value>, InstallError> {
    if let Some(namespace) = &o.namespace {
        for document in &mut documents {
            move_to_namespace(document, namespace);
        }
    }
    for image in &o.images {
        set_image(&mut documents, image)?;
    }

    let declared: Vec<String> = documents
        .iter()
        .filter(|d| d["kind"] == "Namespace")
        .filter_map(|d| d["metadata"]["name"].as_str().map(str::to_string))
        .collect();
    // A namespaced object that names no namespace would land in the kubectl context's
    // (with `kubectl apply` as well as here), away from the bindings that name the
    // operator's namespace: it goes there instead.
    let home = o.namespace.clone().or_else(|| declared.first().cloned());
    for document in documents.iter_mut().filter(|d| is_namespaced(d)) {
        let metadata = document.get_mut("metadata").and_then(Value::as_object_mut);
        if let (Some(metadata), Some(home)) = (metadata, &home) {
            metadata
                .entry("namespace")
                .or_insert_with(|| home.clone().into());
        }
    }
    let mut used: Vec<String> = documents
        .iter()
        .filter_map(|d| d["metadata"]["namespace"].as_str().map(str::to_string))
        .filter(|ns| !declared.contains(ns) && !BUILT_IN_NAMESPACES.contains(&ns.as_str()))
        .collect();
    used.sort();
    used.dedup();
    let added = used
        .into_iter()
        .map(|name| json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}));
    // Namespaces first, wherever a manifest declares them: an object applied before its
    // namespace exists is refused (the controller's manifest comes before the webhook's,
    // which declares the operator's namespace).
    let (declared, others): (Vec<Value>, Vec<Value>) = documents
        .into_iter()
        .partition(|d| d["kind"] == "Namespace");
    Ok(added.chain(declared).chain(others).collect())
}

/// True unless the document's kind is one of those known to be cluster-scoped.
fn is_namespaced(document: &Value) -> bool {
    let kind = document["kind"].as_str().unwrap_or_default();
    !CLUSTER_SCOPED.contains(&kind)
}

/// Moves one object, and the references it holds to services and service accounts of the
/// operator, to `namespace`. Only fields that are there are changed.
fn move_to_namespace(document: &mut Value, namespace: &str) {
    let is_namespace = document["kind"] == "Namespace";
    let field = if is_namespace { "name" } else { "namespace" };
    if let Some(value) = at(document, &["metadata", field]) {
        *value = namespace.into();
    }
    if is_namespace {
        return;
    }

    let subjects = at(document, &["subjects"]).and_then(Value::as_array_mut);
    for subject in subjects.into_iter().flatten() {
        if subject["kind"] == "ServiceAccount" {
            subject["namespace"] = namespace.into();
        }
    }
    let webhooks = at(document, &["webhooks"]).and_then(Value::as_array_mut);
    for webhook in webhooks.into_iter().flatten() {
        set_service_namespace(at(webhook, &["clientConfig", "service"]), namespace);
    }
    let conversion = ["spec", "conversion", "webhook", "clientConfig", "service"];
    set_service_namespace(at(document, &conversion), namespace);

    // cert-manager's CA injection names NAMESPACE/CERTIFICATE.
    let annotation = ["metadata", "annotations", "cert-manager.io/inject-ca-from"];
    if let Some(from) = at(document, &annotation)
        && let Some((_, certificate)) = from.as_str().and_then(|f| f.split_once('/'))
    {
        *from = format!("{namespace}/{certificate}").into();
    }
}

/// The value at a path of object fields, if every field is there. Unlike indexing, it
/// never adds a field.
fn at<'a>(value: &'a mut Value, path: &[&str]) -> Option<&'a mut Value> {
    path.iter()
        .try_fold(value, |value, field| value.get_mut(*field))
}

fn set_service_namespace(service: Option<&mut Value>, namespace: &str) {
    if let Some(service) = service.and_then(Value::as_object_mut) {
        service.insert("namespace".to_string(), namespace.into());
    }
}

/// Sets the image of one container (`NAME=IMAGE`) or of all of them (`IMAGE`).
fn set_image(documents: &mut [Value], image: &str) -> Result<(), InstallError> {
    let (container, image) = match image.split_once('=') {
        Some((container, image)) => (Some(container), image),
        None => (None, image),
    };
    let mut known = Vec::new();
    let mut matched = false;
    for document in documents.iter_mut() {
        let Some(pod) = at(document, &["spec", "template", "spec"]) else {
            continue;
        };
        for list in ["initContainers", "containers"] {
            let containers = at(pod, &[list]).and_then(Value::as_array_mut);
            for c in containers.into_iter().flatten() {
                let name = c["name"].as_str().unwrap_or_default().to_string();
                if container.is_none_or(|wanted| wanted == name) {
                    c["image"] = image.into();
                    matched = true;
                }
                known.push(name);
            }
        }
    }
    match container {
        Some(container) if !matched => Err(InstallError::UnknownContainer {
            container: container.to_string(),
            known: if known.is_empty() {
                "no containers (the controller and webhook manifests are not embedded)".into()
            } else {
                known.join(", ")
            },
        }),
        _ => Ok(()),
    }
}

/// The documents as one YAML stream, as `--dry-run` prints them.
pub fn to_yaml(documents: &[Value]) -> Result<String, InstallError> {
    let mut out = String::new();
    for document in documents {
        out.push_str("---\n");
        out.push_str(&serde_saphyr::to_string(document)?);
    }
    Ok(out)
}

/// Applies every document server-side, in order; returns `kind/name` of each, as applied.
pub async fn apply(
    cluster: &Cluster,
    documents: &[Value],
    force: bool,
) -> Result<Vec<String>, InstallError> {
    let mut applied = Vec::new();
    for document in documents {
        applied.push(apply_one(cluster, document, force).await?);
    }
    Ok(applied)
}

/// Server-side applies one object, finding its resource through discovery.
pub async fn apply_one(
    cluster: &Cluster,
    document: &Value,
    force: bool,
) -> Result<String, InstallError> {
    let api_version = document["apiVersion"]
        .as_str()
        .ok_or(InstallError::Incomplete("apiVersion"))?;
    let kind = document["kind"]
        .as_str()
        .ok_or(InstallError::Incomplete("kind"))?;
    let name = document["metadata"]["name"]
        .as_str()
        .ok_or(InstallError::Incomplete("metadata.name"))?;
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    let gvk = GroupVersionKind::gvk(group, version, kind);
    let what = format!("{}/{name}", kind.to_lowercase());

    let (resource, capabilities) = match pinned_kind(&cluster.client, &gvk).await {
        Ok(found) => found,
        Err(e) if is_unknown_kind(&e) && group == vault_api::documents::GROUP => {
            return Err(ClusterError::CrdMissing.into());
        }
        Err(e) if is_unknown_kind(&e) => {
            let (api_version, kind) = (api_version.to_string(), kind.to_string());
            return Err(InstallError::UnknownKind { api_version, kind });
        }
        Err(e) => {
            return Err(cluster
                .explain(&format!("finding the {kind} resource"), e)
                .into());
        }
    };
    let api: Api<DynamicObject> = match capabilities.scope {
        Scope::Cluster => Api::all_with(cluster.client.clone(), &resource),
        Scope::Namespaced => {
            let namespace = document["metadata"]["namespace"]
                .as_str()
                .unwrap_or(&cluster.namespace);
            Api::namespaced_with(cluster.client.clone(), namespace, &resource)
        }
    };
    let mut params = PatchParams::apply(FIELD_MANAGER);
    params.force = force;
    api.patch(name, &params, &Patch::Apply(document))
        .await
        .map_err(|e| cluster.explain(&format!("applying {what}"), e))?;
    Ok(what)
}

/// True when discovery says the cluster serves no such group, version or kind.
fn is_unknown_kind(error: &kube::Error) -> bool {
    is_not_found(error)
        || matches!(
            error,
            kube::Error::Discovery(kube::error::DiscoveryError::MissingKind(_))
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn workload() -> Value {
        json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "vault-operator", "namespace": "vault-operator"},
            "spec": {"template": {"spec": {"containers": [
                {"name": "controller", "image": "a:1"},
                {"name": "webhook", "image": "b:1"},
            ]}}},
        })
    }

    #[test]
    fn the_crd_is_embedded_first() {
        assert_eq!(MANIFESTS.first().map(|(file, _)| *file), Some("crd.yaml"));
        let documents = documents().unwrap_or_default();
        assert_eq!(documents[0]["kind"], "CustomResourceDefinition");
        assert_eq!(
            documents[0]["metadata"]["name"],
            "vaults.vault.banzaicloud.com"
        );
    }

    #[test]
    fn namespace_and_image_overrides() {
        let binding = json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
            "metadata": {"name": "vault-operator"},
            "subjects": [{"kind": "ServiceAccount", "name": "op", "namespace": "vault-operator"}],
        });
        let overrides = Overrides {
            namespace: Some("ops".to_string()),
            images: vec!["controller=me/controller:2".to_string()],
        };
        let out = customise(vec![workload(), binding], &overrides).unwrap_or_default();
        assert_eq!(out[0]["kind"], "Namespace");
        assert_eq!(out[0]["metadata"]["name"], "ops");
        assert_eq!(out[1]["metadata"]["namespace"], "ops");
        let containers = &out[1]["spec"]["template"]["spec"]["containers"];
        assert_eq!(containers[0]["image"], "me/controller:2");
        assert_eq!(containers[1]["image"], "b:1");
        assert_eq!(out[2]["subjects"][0]["namespace"], "ops");
    }

    #[test]
    fn overrides_add_no_fields() {
        let original = documents().unwrap_or_default();
        let overrides = Overrides {
            namespace: Some("ops".to_string()),
            images: vec!["me/image:1".to_string()],
        };
        let moved = customise(original.clone(), &overrides).unwrap_or_default();
        let crd = moved
            .iter()
            .find(|d| d["kind"] == "CustomResourceDefinition");
        assert_eq!(
            crd,
            original.first(),
            "the CRD is cluster-scoped and has no image"
        );
        let role = json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
                          "metadata": {"name": "a"}});
        let moved = customise(vec![role.clone()], &overrides).unwrap_or_default();
        assert_eq!(moved, [role]);
    }

    #[test]
    fn objects_without_a_namespace_go_to_the_operators() {
        let account = json!({"apiVersion": "v1", "kind": "ServiceAccount",
                             "metadata": {"name": "a"}});
        let operator = json!({"apiVersion": "v1", "kind": "Namespace",
                              "metadata": {"name": "vault-operator"}});
        // The Namespace comes last here, as it does in the embedded manifests.
        let documents = vec![account, operator];
        let kept = customise(documents.clone(), &Overrides::default()).unwrap_or_default();
        assert_eq!(kept.len(), 2);
        assert_eq!(kept[0]["kind"], "Namespace", "namespaces are applied first");
        assert_eq!(kept[1]["metadata"]["namespace"], "vault-operator");

        let overrides = Overrides {
            namespace: Some("ops".to_string()),
            images: Vec::new(),
        };
        let moved = customise(documents, &overrides).unwrap_or_default();
        assert_eq!(
            moved.len(),
            2,
            "the Namespace is renamed, not added: {moved:?}"
        );
        assert_eq!(moved[0]["metadata"]["name"], "ops");
        assert_eq!(moved[1]["metadata"]["namespace"], "ops");
    }

    #[test]
    fn every_namespace_of_the_embedded_manifests_moves() {
        let overrides = Overrides {
            namespace: Some("ops".to_string()),
            images: Vec::new(),
        };
        let moved = customise(documents().unwrap_or_default(), &overrides).unwrap_or_default();
        let mut namespaces = Vec::new();
        for document in &moved {
            if document["kind"] == "Namespace" {
                namespaces.push(&document["metadata"]["name"]);
            }
            namespaces.push(&document["metadata"]["namespace"]);
            for subject in document["subjects"].as_array().into_iter().flatten() {
                namespaces.push(&subject["namespace"]);
            }
            for webhook in document["webhooks"].as_array().into_iter().flatten() {
                namespaces.push(&webhook["clientConfig"]["service"]["namespace"]);
            }
        }
        namespaces.retain(|ns| !ns.is_null());
        assert!(namespaces.iter().all(|ns| *ns == "ops"), "{namespaces:?}");
        let created = moved.iter().filter(|d| d["kind"] == "Namespace").count();
        assert!(created <= 1, "one Namespace at most: {created}");
    }

    #[test]
    fn an_unknown_container_is_refused() {
        let overrides = Overrides {
            namespace: None,
            images: vec!["sidecar=x:1".to_string()],
        };
        let error = customise(vec![workload()], &overrides).err();
        assert_eq!(
            error.map(|e| e.to_string()).as_deref(),
            Some(
                "--image sidecar=...: no container of that name; the manifests have: \
                 controller, webhook"
            )
        );
    }
}
