//! Prints the node agent's figures on a running cluster: the time from creating a trivial
//! pod to Running, and the agent's resident memory with 30 pods.
//!
//!     localcluster up --name figures && \
//!     LOCALCLUSTER_NAME=figures cargo run -p localcluster --example agent_figures

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use localcluster::{LocalCluster, test_namespace};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cluster = LocalCluster::start().await?;
    let client = cluster.client();
    let ns = test_namespace(&client, "figures").await?;
    let pods: Api<Pod> = Api::namespaced(client, &ns);
    let pod = |name: String| -> anyhow::Result<Pod> {
        Ok(serde_json::from_value(serde_json::json!({
            "metadata": {"name": name},
            "spec": {"containers": [{"name": "c", "image": "busybox",
                                     "command": ["sleep", "3600"]}]},
        }))?)
    };

    let started = Instant::now();
    pods.create(&PostParams::default(), &pod("single".into())?)
        .await?;
    wait_running(&pods, 1).await?;
    println!(
        "trivial pod created to Running: {:.2}s",
        started.elapsed().as_secs_f64()
    );

    for i in 1..30 {
        pods.create(&PostParams::default(), &pod(format!("p{i}"))?)
            .await?;
    }
    wait_running(&pods, 30).await?;
    let agent = localcluster::status(cluster.layout())
        .into_iter()
        .find(|(name, _, _)| name == "node-agent")
        .and_then(|(_, _, rss)| rss);
    println!(
        "node agent resident memory with 30 pods: {} MiB",
        agent.unwrap_or(0) / 1024
    );

    pods.delete_collection(&DeleteParams::default(), &ListParams::default())
        .await?;
    Ok(())
}

async fn wait_running(pods: &Api<Pod>, count: usize) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(180);
    while Instant::now() < deadline {
        let list = pods.list(&ListParams::default()).await?.items;
        let running = list
            .iter()
            .filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"))
            .count();
        if running >= count {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    anyhow::bail!("{count} pods were not Running within 180s")
}
