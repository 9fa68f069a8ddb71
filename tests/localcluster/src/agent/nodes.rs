//! The nodes the agent plays the kubelet for: registered, Ready, with Leases renewed so the
//! node lifecycle controller leaves them alone.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Node;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;

use crate::{Error, GATEWAY};

/// The field manager of everything the agent writes.
pub const MANAGER: &str = "localcluster-node-agent";

/// How often each node's Lease is renewed.
const LEASE_RENEWAL: Duration = Duration::from_secs(10);

/// A node the agent runs.
#[derive(Clone, Debug)]
pub struct NodeInfo {
    /// `node-a`, `node-b`, ...
    pub name: String,
    /// `zone-a`, `zone-b`, ...
    pub zone: String,
}

/// The agent's nodes: `node-a` in `zone-a`, and so on.
pub fn nodes(count: usize) -> Vec<NodeInfo> {
    (0..count)
        .map(|i| {
            let letter = (b'a' + (i % 26) as u8) as char;
            let suffix = if i < 26 {
                String::new()
            } else {
                (i / 26).to_string()
            };
            NodeInfo {
                name: format!("node-{letter}{suffix}"),
                zone: format!("zone-{letter}{suffix}"),
            }
        })
        .collect()
}

/// Creates or updates a node and marks it Ready.
pub async fn register(client: &kube::Client, node: &NodeInfo) -> Result<(), Error> {
    let api: Api<Node> = Api::all(client.clone());
    let params = PatchParams::apply(MANAGER).force();
    let object = json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": node.name,
            "labels": {
                "kubernetes.io/hostname": node.name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
                "topology.kubernetes.io/zone": node.zone,
                "topology.kubernetes.io/region": "local",
                "failure-domain.beta.kubernetes.io/zone": node.zone,
                "failure-domain.beta.kubernetes.io/region": "local",
            },
        },
    });
    api.patch(&node.name, &params, &Patch::Apply(object))
        .await
        .map_err(|e| Error::Kube(format!("registering node {}", node.name), e))?;
    report_ready(client, node).await
}

/// Writes the node's status: Ready, its address, capacity and version.
pub async fn report_ready(client: &kube::Client, node: &NodeInfo) -> Result<(), Error> {
    let api: Api<Node> = Api::all(client.clone());
    let now = k8s_openapi::jiff::Timestamp::now().to_string();
    let capacity =
        json!({"cpu": "32", "memory": "64Gi", "pods": "110", "ephemeral-storage": "100Gi"});
    let condition = |type_: &str, status: &str, reason: &str, message: &str| {
        json!({
            "type": type_, "status": status, "reason": reason, "message": message,
            "lastHeartbeatTime": now, "lastTransitionTime": now,
        })
    };
    let status = json!({
        "apiVersion": "v1",
        "kind": "Node",
        "status": {
            "capacity": capacity,
            "allocatable": capacity,
            "addresses": [
                {"type": "InternalIP", "address": GATEWAY},
                {"type": "Hostname", "address": node.name},
            ],
            "conditions": [
                condition("Ready", "True", "KubeletReady", "the local cluster's node agent runs"),
                condition("MemoryPressure", "False", "KubeletHasSufficientMemory", "ok"),
                condition("DiskPressure", "False", "KubeletHasNoDiskPressure", "ok"),
                condition("PIDPressure", "False", "KubeletHasSufficientPID", "ok"),
            ],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
            "nodeInfo": {
                "machineID": node.name, "systemUUID": node.name, "bootID": node.name,
                "kernelVersion": "local", "osImage": "localcluster", "operatingSystem": "linux",
                "architecture": "amd64", "containerRuntimeVersion": "localcluster://1",
                "kubeletVersion": "v1.37.2", "kubeProxyVersion": "",
            },
        },
    });
    api.patch_status(
        &node.name,
        &PatchParams::apply(MANAGER).force(),
        &Patch::Apply(status),
    )
    .await
    .map_err(|e| Error::Kube(format!("reporting node {} Ready", node.name), e))?;
    Ok(())
}

/// Renews each node's Lease every 10 s, and its Ready status every minute, until the task
/// is dropped.
pub async fn keep_alive(client: kube::Client, nodes: Vec<NodeInfo>) {
    let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-node-lease");
    let mut round: u64 = 0;
    loop {
        for node in &nodes {
            let now = MicroTime(k8s_openapi::jiff::Timestamp::now());
            let lease = json!({
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {"name": node.name},
                "spec": {"holderIdentity": node.name, "leaseDurationSeconds": 40, "renewTime": now},
            });
            let params = PatchParams::apply(MANAGER).force();
            if let Err(e) = leases
                .patch(&node.name, &params, &Patch::Apply(lease))
                .await
            {
                eprintln!("node agent: renewing the lease of {}: {e}", node.name);
            }
            if round % 6 == 5
                && let Err(e) = report_ready(&client, node).await
            {
                eprintln!("node agent: {e}");
            }
        }
        round += 1;
        tokio::time::sleep(LEASE_RENEWAL).await;
    }
}
