//! The node agent: it plays the kubelet for the local cluster's nodes and runs each pod's
//! containers as local processes (see `shared/design/local-cluster.md`).
//!
//! It runs on the host, as its own process started by `localcluster up`, and talks to the
//! API server through the loopback forward with an identity of its own. Each pod gets a
//! network namespace on the cluster's bridge; each container is started through the shim
//! ([`shim`]) inside it.

pub mod container;
pub mod env;
pub mod images;
pub mod names;
pub mod network;
pub mod nodes;
pub mod pods;
pub mod probes;
pub mod shim;
pub mod storage;
pub mod volumes;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::Api;
use kube::runtime::watcher;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio::sync::mpsc;

use crate::{Error, Layout};
use images::ImageTable;
use network::Addresses;
use pods::{PodEvent, Workers};

/// What the agent needs to run.
pub struct Agent {
    /// A client with the agent's own identity.
    pub client: kube::Client,
    /// The cluster's files and names.
    pub layout: Layout,
    /// Pod addresses in use.
    pub addresses: Addresses,
    /// How images run.
    pub images: ImageTable,
    /// OpenBao's `bao`, which Vault and OpenBao images run.
    pub bao: PathBuf,
    /// The `localcluster` binary, whose `run-container` starts each container.
    pub localcluster_bin: PathBuf,
    /// The nodes this agent runs.
    pub nodes: Vec<nodes::NodeInfo>,
}

/// What the pod workers share besides the agent: the names of Services and pods.
pub struct Shared {
    /// The current names, for `/etc/hosts`.
    pub names: tokio::sync::watch::Receiver<Arc<names::Names>>,
    /// Runs network probes inside the cluster's namespace.
    pub prober: probes::Prober,
}

/// Registers the nodes and runs their pods until SIGTERM or SIGINT, then stops every
/// container it started.
pub async fn run(agent: Agent) -> Result<(), Error> {
    let agent = Arc::new(agent);
    for node in &agent.nodes {
        nodes::register(&agent.client, node).await?;
    }
    let keep_alive = tokio::spawn(nodes::keep_alive(agent.client.clone(), agent.nodes.clone()));
    let node_names = agent.nodes.iter().map(|n| n.name.clone()).collect();
    let volumes = agent.layout.dir().join("volumes");
    let storage = tokio::spawn(storage::provision(
        agent.client.clone(),
        volumes,
        node_names,
    ));

    let shared = Arc::new(Shared {
        names: names::watch_names(agent.client.clone()),
        prober: probes::Prober::start(&agent.layout.netns())?,
    });
    let mut workers = Workers::new();
    let result = watch_pods(&agent, &shared, &mut workers).await;

    keep_alive.abort();
    storage.abort();
    // All pods at once: one after another, their grace periods would add up past the time
    // `down` gives the agent.
    let stopping = std::mem::take(&mut workers)
        .into_values()
        .map(|(events, worker)| async move {
            let _ = events.send(PodEvent::Shutdown).await;
            let _ = worker.await;
        });
    futures::future::join_all(stopping).await;
    // What the workers did not stop: pods still in their grace period after a deletion,
    // and processes that left their container's group.
    let layout = agent.layout.clone();
    tokio::task::spawn_blocking(move || clean_up(&layout))
        .await
        .map_err(|e| Error::Command {
            command: "cleaning up after the pods".into(),
            reason: e.to_string(),
        })??;
    result
}

/// How long the processes of pods an agent left behind get between SIGTERM and SIGKILL.
const LEFTOVER_GRACE: Duration = Duration::from_secs(10);

/// Stops every process and removes every network namespace the cluster's pods left: what
/// a crashed or killed agent never stopped. `down`, and `up` after a crash, call it with
/// the agent gone.
///
/// The recorded container processes are stopped with their process groups, all at once;
/// then anything still inside one of the cluster's pod namespaces (a process that left
/// its container's group, or whose container's record was never written) is stopped too.
/// Only this cluster's are touched: its own pid files, and the namespaces named after it.
/// Returns the names of the recorded container processes that were running.
pub fn clean_up(layout: &Layout) -> Result<Vec<String>, Error> {
    let records: Vec<String> = crate::process::recorded(layout)
        .into_iter()
        .filter(|name| name.starts_with(pods::RECORD_PREFIX))
        .collect();
    let stopped = crate::process::stop_all(layout, &records, LEFTOVER_GRACE);

    let namespaces: Vec<PathBuf> = network::pod_namespaces(&layout.netns())
        .iter()
        .map(|name| Path::new("/run/netns").join(name))
        .collect();
    stop_everything_in(&namespaces, Duration::from_secs(2));
    network::delete_all(&layout.netns())?;
    Ok(stopped)
}

/// Stops every process inside the network namespaces bound at `netns_paths`: SIGTERM, and
/// SIGKILL to what is left after `grace`, until none is left. A process may fork while
/// it is being stopped, so each round looks again.
pub fn stop_everything_in(netns_paths: &[PathBuf], grace: Duration) {
    let inside = || crate::process::in_network_namespaces(netns_paths);
    let signal_all = |signal: Signal| {
        for pid in inside() {
            let _ = kill(Pid::from_raw(pid as i32), signal);
        }
    };
    signal_all(Signal::SIGTERM);
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline && !inside().is_empty() {
        std::thread::sleep(Duration::from_millis(50));
    }
    for _ in 0..40 {
        if inside().is_empty() {
            return;
        }
        signal_all(Signal::SIGKILL);
        std::thread::sleep(Duration::from_millis(50));
    }
}

async fn watch_pods(
    agent: &Arc<Agent>,
    shared: &Arc<Shared>,
    workers: &mut Workers,
) -> Result<(), Error> {
    let pods: Api<Pod> = Api::all(agent.client.clone());
    let config = watcher::Config::default().fields("spec.nodeName!=");
    let mut stream = watcher(pods, config).boxed();
    let mut seen_in_listing: Option<BTreeSet<String>> = None;
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|e| Error::Command {
        command: "handling SIGTERM".into(),
        reason: e.to_string(),
    })?;

    loop {
        let event = tokio::select! {
            event = stream.next() => event,
            _ = terminate.recv() => return Ok(()),
            _ = tokio::signal::ctrl_c() => return Ok(()),
        };
        let Some(event) = event else { return Ok(()) };
        match event {
            Ok(watcher::Event::Init) => seen_in_listing = Some(BTreeSet::new()),
            Ok(watcher::Event::InitApply(pod)) => {
                if let (Some(seen), Some(uid)) =
                    (seen_in_listing.as_mut(), pod.metadata.uid.clone())
                {
                    seen.insert(uid);
                }
                dispatch(agent, shared, workers, pod).await;
            }
            Ok(watcher::Event::InitDone) => {
                // Pods deleted while the watch was re-listing are gone.
                let seen = seen_in_listing.take().unwrap_or_default();
                let gone: Vec<String> = workers
                    .keys()
                    .filter(|u| !seen.contains(*u))
                    .cloned()
                    .collect();
                for uid in gone {
                    if let Some((events, _)) = workers.remove(&uid) {
                        let _ = events.send(PodEvent::Gone).await;
                    }
                }
            }
            Ok(watcher::Event::Apply(pod)) => dispatch(agent, shared, workers, pod).await,
            Ok(watcher::Event::Delete(pod)) => {
                let uid = pod.metadata.uid.clone().unwrap_or_default();
                if let Some((events, _)) = workers.remove(&uid) {
                    let _ = events.send(PodEvent::Gone).await;
                }
            }
            // The watcher retries by itself; say what happened and go on.
            Err(e) => eprintln!("node agent: watching pods: {e}"),
        }
        workers.retain(|_, (_, worker)| !worker.is_finished());
    }
}

/// Hands a pod to its worker, starting one for a pod of ours that has none.
async fn dispatch(agent: &Arc<Agent>, shared: &Arc<Shared>, workers: &mut Workers, pod: Pod) {
    let node = pod
        .spec
        .as_ref()
        .and_then(|s| s.node_name.clone())
        .unwrap_or_default();
    if !agent.nodes.iter().any(|n| n.name == node) {
        return;
    }
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    if let Some((events, _)) = workers.get(&uid) {
        let _ = events.send(PodEvent::Update(Box::new(pod))).await;
        return;
    }

    let phase = pod
        .status
        .as_ref()
        .and_then(|s| s.phase.clone())
        .unwrap_or_default();
    let finished = phase == "Succeeded" || phase == "Failed";
    if finished && pod.metadata.deletion_timestamp.is_none() {
        return;
    }
    let (events, receiver) = mpsc::channel(16);
    let worker = tokio::spawn(pods::run_pod(agent.clone(), shared.clone(), pod, receiver));
    workers.insert(uid, (events, worker));
}
