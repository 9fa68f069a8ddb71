//! What the local cluster's test suites share.

#![allow(dead_code)] // each suite uses its own part

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use localcluster::LocalCluster;

/// The cluster named by LOCALCLUSTER_NAME, or one of the test's own.
pub async fn cluster() -> LocalCluster {
    LocalCluster::start()
        .await
        .unwrap_or_else(|e| panic!("starting the cluster: {e}"))
}

/// A Kubernetes object from a JSON fixture.
pub fn object<T: serde::de::DeserializeOwned>(value: serde_json::Value) -> T {
    serde_json::from_value(value).unwrap_or_else(|e| panic!("building a fixture: {e}"))
}

/// Polls `check` until it returns a value, or fails the test after `limit`; returns the
/// value and how long it took.
pub async fn eventually<T, F, Fut>(what: &str, limit: Duration, check: F) -> (T, Duration)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let start = Instant::now();
    while start.elapsed() < limit {
        if let Some(value) = check().await {
            return (value, start.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    panic!("{what}: not within {limit:?}");
}

/// Polls `check` until it holds, or fails the test after `limit`; returns how long it took.
pub async fn until<F, Fut>(what: &str, limit: Duration, check: F) -> Duration
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    eventually(what, limit, || async { check().await.then_some(()) })
        .await
        .1
}

/// What a container has written so far.
pub fn log(cluster: &LocalCluster, ns: &str, pod: &str, container: &str) -> String {
    let path = localcluster::agent::pods::log_path(cluster.layout(), ns, pod, container);
    std::fs::read_to_string(path).unwrap_or_default()
}

/// The pod's phase.
pub fn phase(pod: &Pod) -> String {
    pod.status
        .as_ref()
        .and_then(|s| s.phase.clone())
        .unwrap_or_default()
}

/// The pod's address.
pub fn pod_ip(pod: &Pod) -> String {
    pod.status
        .as_ref()
        .and_then(|s| s.pod_ip.clone())
        .unwrap_or_default()
}

/// Whether the pod's Ready condition holds.
pub fn ready(pod: &Pod) -> bool {
    let conditions = pod
        .status
        .as_ref()
        .and_then(|s| s.conditions.clone())
        .unwrap_or_default();
    conditions
        .iter()
        .any(|c| c.type_ == "Ready" && c.status == "True")
}

/// The pid of the pod's first container, from its `localcluster://<pid>` container ID.
pub fn container_pid(pod: &Pod) -> Option<i32> {
    let statuses = pod
        .status
        .as_ref()
        .and_then(|s| s.container_statuses.clone())?;
    let id = statuses.first()?.container_id.clone()?;
    id.strip_prefix("localcluster://")?.parse().ok()
}

/// Runs `args` inside the cluster's network namespace; returns whether it succeeded, and
/// what it printed.
pub fn inside(cluster: &LocalCluster, args: &[&str]) -> (bool, String) {
    let output = std::process::Command::new("ip")
        .args(["netns", "exec", &cluster.layout().netns()])
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running {args:?} in the cluster: {e}"));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    (output.status.success(), format!("{stdout}{stderr}"))
}
