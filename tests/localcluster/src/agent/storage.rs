//! Storage: the default StorageClass's claims, provisioned as host folders in the cluster's
//! folder on the node the scheduler picked, and removed once released.

use std::path::{Path, PathBuf};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
use kube::api::{Api, DeleteParams, PostParams};
use kube::runtime::watcher;
use serde_json::json;

use crate::Error;

/// The provisioner named by the default StorageClass.
pub const PROVISIONER: &str = "localcluster.io/hostpath";
/// The default StorageClass.
pub const STORAGE_CLASS: &str = "local";

/// The default StorageClass, for `up` to create.
pub fn storage_class() -> serde_json::Value {
    json!({
        "apiVersion": "storage.k8s.io/v1",
        "kind": "StorageClass",
        "metadata": {
            "name": STORAGE_CLASS,
            "annotations": {"storageclass.kubernetes.io/is-default-class": "true"},
        },
        "provisioner": PROVISIONER,
        "reclaimPolicy": "Delete",
        "volumeBindingMode": "WaitForFirstConsumer",
    })
}

/// Provisions claims for `nodes` and removes released volumes, until dropped.
pub async fn provision(client: kube::Client, folder: PathBuf, nodes: Vec<String>) {
    let claims = watcher(
        Api::<PersistentVolumeClaim>::all(client.clone()),
        Default::default(),
    );
    let volumes = watcher(
        Api::<PersistentVolume>::all(client.clone()),
        Default::default(),
    );
    let mut events = futures::stream::select(
        claims
            .map(|e| e.map(|e| Change::Claim(Box::new(e))))
            .boxed(),
        volumes
            .map(|e| e.map(|e| Change::Volume(Box::new(e))))
            .boxed(),
    );
    while let Some(event) = events.next().await {
        let result = match event {
            Ok(Change::Claim(event)) => match *event {
                watcher::Event::Apply(claim) | watcher::Event::InitApply(claim) => {
                    provide(&client, &folder, &nodes, &claim).await
                }
                _ => Ok(()),
            },
            Ok(Change::Volume(event)) => match *event {
                watcher::Event::Apply(pv) | watcher::Event::InitApply(pv) => {
                    reclaim(&client, &pv).await
                }
                _ => Ok(()),
            },
            Err(e) => Err(Error::Command {
                command: "watching storage".into(),
                reason: e.to_string(),
            }),
        };
        if let Err(e) = result {
            eprintln!("node agent: storage: {e}");
        }
    }
}

enum Change {
    Claim(Box<watcher::Event<PersistentVolumeClaim>>),
    Volume(Box<watcher::Event<PersistentVolume>>),
}

/// Makes a volume for a claim of ours whose node the scheduler has picked.
async fn provide(
    client: &kube::Client,
    folder: &Path,
    nodes: &[String],
    claim: &PersistentVolumeClaim,
) -> Result<(), Error> {
    let annotations = claim.metadata.annotations.clone().unwrap_or_default();
    let spec = claim.spec.clone().unwrap_or_default();
    let ours = annotations
        .get("volume.kubernetes.io/storage-provisioner")
        .map(String::as_str)
        == Some(PROVISIONER);
    let node = annotations.get("volume.kubernetes.io/selected-node");
    let bound = spec.volume_name.as_deref().is_some_and(|v| !v.is_empty());
    let Some(node) = node.filter(|n| ours && !bound && nodes.contains(n)) else {
        return Ok(());
    };

    let uid = claim.metadata.uid.clone().unwrap_or_default();
    let name = format!("pvc-{uid}");
    let path = folder.join(&name);
    std::fs::create_dir_all(&path).map_err(|e| Error::io("creating", &path, e))?;
    let size = spec
        .resources
        .and_then(|r| r.requests)
        .and_then(|r| r.get("storage").map(|q| q.0.clone()))
        .unwrap_or_else(|| "1Gi".into());
    let volume: PersistentVolume = serde_json::from_value(json!({
        "metadata": {"name": name, "annotations": {"pv.kubernetes.io/provisioned-by": PROVISIONER}},
        "spec": {
            "capacity": {"storage": size},
            "accessModes": spec.access_modes.unwrap_or_else(|| vec!["ReadWriteOnce".into()]),
            "persistentVolumeReclaimPolicy": "Delete",
            "storageClassName": spec.storage_class_name.unwrap_or_else(|| STORAGE_CLASS.into()),
            "volumeMode": spec.volume_mode.unwrap_or_else(|| "Filesystem".into()),
            "hostPath": {"path": path.display().to_string(), "type": "DirectoryOrCreate"},
            "claimRef": {
                "kind": "PersistentVolumeClaim", "apiVersion": "v1",
                "namespace": claim.metadata.namespace, "name": claim.metadata.name, "uid": uid,
            },
            "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                {"key": "kubernetes.io/hostname", "operator": "In", "values": [node]},
            ]}]}},
        },
    }))
    .map_err(|e| Error::Command {
        command: "building a volume".into(),
        reason: e.to_string(),
    })?;
    let api: Api<PersistentVolume> = Api::all(client.clone());
    match api.create(&PostParams::default(), &volume).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 409 => Ok(()),
        Err(e) => Err(Error::Kube(format!("provisioning volume {name}"), e)),
    }
}

/// Deletes a released volume of ours and its folder.
async fn reclaim(client: &kube::Client, pv: &PersistentVolume) -> Result<(), Error> {
    let ours = pv
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get("pv.kubernetes.io/provisioned-by"))
        .map(String::as_str)
        == Some(PROVISIONER);
    let released = pv.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Released");
    let delete = pv
        .spec
        .as_ref()
        .and_then(|s| s.persistent_volume_reclaim_policy.as_deref())
        == Some("Delete");
    if !(ours && released && delete) {
        return Ok(());
    }
    if let Some(path) = pv
        .spec
        .as_ref()
        .and_then(|s| s.host_path.as_ref())
        .map(|h| &h.path)
    {
        let _ = std::fs::remove_dir_all(path);
    }
    let name = pv.metadata.name.clone().unwrap_or_default();
    let api: Api<PersistentVolume> = Api::all(client.clone());
    match api.delete(&name, &DeleteParams::default()).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
        Err(e) => Err(Error::Kube(format!("deleting released volume {name}"), e)),
    }
}
