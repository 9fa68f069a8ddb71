//! The node agent runs pods as processes the way a kubelet runs containers: scheduled by the
//! real scheduler, each with its own network namespace and address, restarted when they exit,
//! stopped when deleted, and unable to reach anything outside the cluster.
//!
//! Run as root. Under `make test` the tests share the cluster named by LOCALCLUSTER_NAME.

mod common;

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{cluster, container_pid, eventually, inside, object, phase};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use localcluster::{Layout, LocalCluster, UpOptions, test_namespace};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::json;

fn restarts(pod: &Pod) -> i32 {
    let statuses = pod
        .status
        .as_ref()
        .and_then(|s| s.container_statuses.clone());
    statuses
        .unwrap_or_default()
        .first()
        .map_or(0, |s| s.restart_count)
}

fn openbao_statefulset(replicas: i32) -> StatefulSet {
    object(json!({
        "metadata": {"name": "bao"},
        "spec": {
            "replicas": replicas,
            "serviceName": "bao",
            "podManagementPolicy": "Parallel",
            "selector": {"matchLabels": {"app": "bao"}},
            "template": {
                "metadata": {"labels": {"app": "bao"}},
                "spec": {
                    "terminationGracePeriodSeconds": 5,
                    "affinity": {"podAntiAffinity": {
                        "requiredDuringSchedulingIgnoredDuringExecution": [{
                            "labelSelector": {"matchLabels": {"app": "bao"}},
                            "topologyKey": "topology.kubernetes.io/zone",
                        }],
                    }},
                    "containers": [{
                        "name": "bao",
                        "image": "openbao/openbao:2.4",
                        "args": ["server", "-dev", "-dev-root-token-id=root"],
                        "env": [{"name": "POD_NAME",
                                 "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}],
                    }],
                },
            },
        },
    }))
}

#[tokio::test]
async fn a_statefulset_spreads_over_zones_and_each_pod_serves_on_its_address() {
    let cluster = cluster().await;
    let client = cluster.client();
    let ns = test_namespace(&client, "sts")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let sets: Api<StatefulSet> = Api::namespaced(client.clone(), &ns);
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    sets.create(&PostParams::default(), &openbao_statefulset(3))
        .await
        .unwrap_or_else(|e| panic!("{e}"));

    let (running, took) = eventually("three Running pods", Duration::from_secs(90), || async {
        let list = pods.list(&ListParams::default()).await.ok()?.items;
        (list.len() == 3 && list.iter().all(|p| phase(p) == "Running")).then_some(list)
    })
    .await;
    eprintln!(
        "three OpenBao pods Running after {:.1}s",
        took.as_secs_f64()
    );

    let nodes: std::collections::BTreeSet<String> = running
        .iter()
        .filter_map(|p| p.spec.as_ref()?.node_name.clone())
        .collect();
    assert_eq!(nodes.len(), 3, "one pod per zone: {nodes:?}");

    for pod in &running {
        let ip = pod
            .status
            .as_ref()
            .and_then(|s| s.pod_ip.clone())
            .unwrap_or_default();
        let url = format!("http://{ip}:8200/v1/sys/health");
        let (healthy, _) = eventually(
            &format!("{url} answers"),
            Duration::from_secs(30),
            || async {
                let (ok, body) = inside(&cluster, &["curl", "-s", "--max-time", "2", &url]);
                (ok && body.contains("\"initialized\":true")).then_some(())
            },
        )
        .await;
        let () = healthy;
    }

    // A fourth replica has no zone left: the scheduler says so.
    let scale = Patch::Merge(json!({"spec": {"replicas": 4}}));
    sets.patch("bao", &PatchParams::default(), &scale)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let (message, _) = eventually("bao-3 unschedulable", Duration::from_secs(30), || async {
        let pod = pods.get("bao-3").await.ok()?;
        let conditions = pod.status?.conditions?;
        let scheduled = conditions.into_iter().find(|c| c.type_ == "PodScheduled")?;
        (scheduled.status == "False" && scheduled.reason.as_deref() == Some("Unschedulable"))
            .then(|| scheduled.message.unwrap_or_default())
    })
    .await;
    assert!(message.contains("anti-affinity"), "{message}");
}

#[tokio::test]
async fn an_exited_container_restarts_and_a_deleted_pod_is_replaced() {
    let cluster = cluster().await;
    let client = cluster.client();
    let ns = test_namespace(&client, "restart")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let sets: Api<StatefulSet> = Api::namespaced(client.clone(), &ns);
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let set: StatefulSet = object(json!({
        "metadata": {"name": "sleeper"},
        "spec": {
            "replicas": 1,
            "serviceName": "sleeper",
            "selector": {"matchLabels": {"app": "sleeper"}},
            "template": {
                "metadata": {"labels": {"app": "sleeper"}},
                "spec": {
                    "terminationGracePeriodSeconds": 2,
                    "containers": [{"name": "main", "image": "busybox",
                                    "command": ["sleep", "3600"]}],
                },
            },
        },
    }));
    sets.create(&PostParams::default(), &set)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let running =
        |pod: Pod| (phase(&pod) == "Running" && container_pid(&pod).is_some()).then_some(pod);
    let (first, _) = eventually("sleeper-0 Running", Duration::from_secs(60), || async {
        running(pods.get("sleeper-0").await.ok()?)
    })
    .await;
    let pid = container_pid(&first).unwrap_or_default();

    // The process dies; the agent starts it again and counts the restart.
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::SIGKILL);
    let (again, took) = eventually("a restart", Duration::from_secs(60), || async {
        let pod = running(pods.get("sleeper-0").await.ok()?)?;
        (restarts(&pod) == 1 && container_pid(&pod) != Some(pid)).then_some(pod)
    })
    .await;
    eprintln!("container restarted after {:.1}s", took.as_secs_f64());

    // Deleting the pod ends its process; the StatefulSet makes a new pod.
    let old_uid = again.metadata.uid.clone();
    let old_pid = container_pid(&again).unwrap_or_default();
    pods.delete("sleeper-0", &DeleteParams::default())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let (_, took) = eventually("a replacement pod", Duration::from_secs(60), || async {
        let pod = running(pods.get("sleeper-0").await.ok()?)?;
        (pod.metadata.uid != old_uid).then_some(pod)
    })
    .await;
    eprintln!(
        "replacement Running {:.1}s after the delete",
        took.as_secs_f64()
    );
    assert!(
        !std::path::Path::new(&format!("/proc/{old_pid}/cmdline")).exists()
            || std::fs::read_to_string(format!("/proc/{old_pid}/stat"))
                .is_ok_and(|s| s.contains(") Z ")),
        "the deleted pod's process {old_pid} still runs"
    );
}

#[tokio::test]
async fn a_container_sees_its_hostname_and_nothing_of_the_host() {
    let cluster = cluster().await;
    let client = cluster.client();
    let ns = test_namespace(&client, "isolation")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    // The tools are checked first: a missing one must not pass for a refused lookup. The
    // dial goes to TEST-NET-1 (192.0.2.0/24, never routed anywhere) from inside the pod,
    // where there is no route to it: it must fail at once, as a timeout would mean the
    // packets went somewhere.
    let script = r#"cat /proc/sys/kernel/hostname; echo ---; env | sort; echo ---
for tool in getent ip timeout bash date; do
  command -v "$tool" >/dev/null && echo "HAVE $tool" || echo "MISSING $tool"
done
getent hosts example.com; echo "LOOKUP-EXIT $?"
ip route get 192.0.2.1; echo "ROUTE-EXIT $?"
start=$(date +%s%N)
timeout 3 bash -c '</dev/tcp/192.0.2.1/80'; code=$?
echo "CONNECT-EXIT $code AFTER-MS $(( ($(date +%s%N) - start) / 1000000 ))""#;
    let pod: Pod = object(json!({
        "metadata": {"name": "probe"},
        "spec": {
            "restartPolicy": "Never",
            "containers": [{"name": "probe", "image": "busybox",
                            "command": ["sh", "-c", script],
                            "env": [{"name": "GREETING", "value": "hello $(POD)"},
                                    {"name": "POD", "valueFrom":
                                        {"fieldRef": {"fieldPath": "metadata.name"}}}]}],
        },
    }));
    pods.create(&PostParams::default(), &pod)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    eventually(
        "the probe pod to finish",
        Duration::from_secs(60),
        || async {
            let pod = pods.get("probe").await.ok()?;
            (phase(&pod) == "Succeeded").then_some(())
        },
    )
    .await;

    let log = localcluster::agent::pods::log_path(cluster.layout(), &ns, "probe", "probe");
    let text = std::fs::read_to_string(&log).unwrap_or_else(|e| panic!("{}: {e}", log.display()));
    let parts: Vec<&str> = text.split("---\n").collect();
    assert_eq!(parts.len(), 3, "{text}");
    assert_eq!(parts[0].trim(), "probe", "the pod's hostname");
    let env = parts[1];
    assert!(env.contains("HOSTNAME=probe"), "{env}");
    assert!(env.contains("KUBERNETES_SERVICE_HOST=10.244.0.1"), "{env}");
    assert!(env.contains("POD=probe"), "{env}");
    assert!(
        env.contains("GREETING=hello $(POD)"),
        "a later variable is not expanded: {env}"
    );
    for host_only in ["CARGO", "RUST", "SSH_", "LOCALCLUSTER_NAME", "USER="] {
        assert!(
            !env.contains(host_only),
            "the host's {host_only} leaked: {env}"
        );
    }
    let network = parts[2];
    for tool in ["getent", "ip", "timeout", "bash", "date"] {
        assert!(network.contains(&format!("HAVE {tool}\n")), "{network}");
    }
    // getent's 2 is "not found": the lookup was made and nothing answered it.
    assert!(network.contains("LOOKUP-EXIT 2\n"), "{network}");
    assert!(
        network.contains("Network is unreachable\nROUTE-EXIT 2\n"),
        "no route to an outside address: {network}"
    );
    let connect = network
        .lines()
        .find_map(|l| l.strip_prefix("CONNECT-EXIT "))
        .unwrap_or_else(|| panic!("no CONNECT-EXIT: {network}"));
    let (code, after) = connect
        .split_once(" AFTER-MS ")
        .unwrap_or_else(|| panic!("{connect}"));
    let after: u64 = after.parse().unwrap_or_else(|e| panic!("{after}: {e}"));
    assert_eq!(
        code, "1",
        "bash fails to connect, not timeout's 124: {network}"
    );
    assert!(
        network.contains("connect: Network is unreachable"),
        "{network}"
    );
    assert!(
        after < 1000,
        "the dial failed at once, not after {after} ms"
    );
}

/// The fields of `/proc/<pid>/stat` after the command name; none once the process is gone.
fn stat_fields(pid: u32) -> Vec<String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let rest = stat.rsplit_once(") ").map_or("", |(_, rest)| rest);
    rest.split_whitespace().map(str::to_string).collect()
}

/// Whether the process runs: it exists and is not a zombie.
fn alive(pid: u32) -> bool {
    stat_fields(pid)
        .first()
        .is_some_and(|state| !matches!(state.as_str(), "Z" | "X"))
}

/// Every live process of the cluster's pods: those in the process group of each container
/// the pods report, and those inside any of the cluster's pod network namespaces.
fn pod_processes(layout: &Layout, pods: &[Pod]) -> Vec<u32> {
    let groups: Vec<String> = pods
        .iter()
        .filter_map(container_pid)
        .map(|pid| pid.to_string())
        .collect();
    let namespaces: Vec<(u64, u64)> = localcluster::agent::network::pod_namespaces(&layout.netns())
        .iter()
        .filter_map(|name| std::fs::metadata(Path::new("/run/netns").join(name)).ok())
        .map(|meta| (meta.dev(), meta.ino()))
        .collect();
    let pids: Vec<u32> = std::fs::read_dir("/proc")
        .map(|entries| {
            entries
                .flatten()
                .filter_map(|e| e.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    pids.into_iter()
        .filter(|pid| alive(*pid))
        .filter(|pid| {
            let in_group = stat_fields(*pid).get(2).is_some_and(|g| groups.contains(g));
            let netns = std::fs::metadata(format!("/proc/{pid}/ns/net"))
                .is_ok_and(|meta| namespaces.contains(&(meta.dev(), meta.ino())));
            in_group || netns
        })
        .collect()
}

/// The processes of `pods` once all four have started: a pod is Running as soon as its
/// first process exists, and the shell forks its two sleeps a moment later.
async fn all_pod_processes(layout: &Layout, pods: &[Pod]) -> Vec<u32> {
    let (processes, _) = eventually(
        "sh, its two sleeps and the plain sleep",
        Duration::from_secs(10),
        || async {
            let processes = pod_processes(layout, pods);
            (processes.len() >= 4).then_some(processes)
        },
    )
    .await;
    processes
}

/// Creates the pods the crash test kills and waits until they run; returns them.
async fn start_pods(pods: &Api<Pod>, previous: &[Pod]) -> Vec<Pod> {
    for (name, command) in [
        ("shell", "sleep 1000 & sleep 1000"),
        ("plain", "exec sleep 1000"),
    ] {
        let pod: Pod = object(json!({"metadata": {"name": name}, "spec": {"containers": [
            {"name": "main", "image": "busybox", "command": ["sh", "-c", command]}]}}));
        if let Err(e) = pods.create(&PostParams::default(), &pod).await
            && !matches!(&e, kube::Error::Api(s) if s.code == 409)
        {
            panic!("creating {name}: {e}");
        }
    }
    let old_pids: Vec<i32> = previous.iter().filter_map(container_pid).collect();
    let (running, _) = eventually("both pods run", Duration::from_secs(60), || async {
        let list = pods.list(&ListParams::default()).await.ok()?.items;
        let fresh = |p: &Pod| container_pid(p).is_some_and(|pid| !old_pids.contains(&pid));
        (list.len() == 2 && list.iter().all(|p| phase(p) == "Running" && fresh(p))).then_some(list)
    })
    .await;
    running
}

/// Kills the node agent as a crash would; returns once it is gone.
async fn kill_agent(layout: &Layout) {
    let agent = localcluster::status(layout)
        .into_iter()
        .find(|(name, _, _)| name == "node-agent")
        .and_then(|(_, pid, _)| pid)
        .unwrap_or_else(|| panic!("the node agent does not run"));
    kill(Pid::from_raw(agent as i32), Signal::SIGKILL).unwrap_or_else(|e| panic!("{e}"));
    // It was started by this process: collect it, or it stays a zombie.
    let _ = nix::sys::wait::waitpid(Pid::from_raw(agent as i32), None);
}

/// A crashed agent stops none of its pods: `up` and `down` must, with every process of a
/// pod (a shell's children too) and every pod namespace, and only this cluster's.
#[tokio::test]
async fn after_the_agent_is_killed_up_and_down_leave_no_pod_behind() {
    let binary = PathBuf::from(env!("CARGO_BIN_EXE_localcluster"));
    let name = format!("k{}", std::process::id());
    let options = UpOptions::new(&name, binary);
    let cluster = LocalCluster::up(&options)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .stop_on_drop();
    let layout = cluster.layout().clone();
    let pods: Api<Pod> = Api::namespaced(cluster.client(), "default");

    let running = start_pods(&pods, &[]).await;
    let processes = all_pod_processes(&layout, &running).await;
    let shell = running
        .iter()
        .find(|p| p.metadata.name.as_deref() == Some("shell"))
        .and_then(container_pid)
        .unwrap_or_default();
    let shell_group = processes
        .iter()
        .filter(|pid| stat_fields(**pid).get(2) == Some(&shell.to_string()))
        .count();
    assert_eq!(shell_group, 3, "sh and its two sleeps: {processes:?}");

    // `up` after the crash starts afresh, and first stops what the agent left.
    kill_agent(&layout).await;
    let again = LocalCluster::up(&options)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let left: Vec<u32> = processes.iter().copied().filter(|p| alive(*p)).collect();
    assert!(left.is_empty(), "up left the old pods' processes: {left:?}");

    // The new agent runs the pods again; this time `down` follows the crash.
    let pods: Api<Pod> = Api::namespaced(again.client(), "default");
    let running = start_pods(&pods, &running).await;
    let processes = all_pod_processes(&layout, &running).await;
    kill_agent(&layout).await;
    let stopped = cluster.down().unwrap_or_else(|e| panic!("{e}"));
    eprintln!("down stopped {stopped:?}");

    let left: Vec<u32> = processes.iter().copied().filter(|p| alive(*p)).collect();
    assert!(left.is_empty(), "down left pod processes: {left:?}");
    let namespaces = localcluster::agent::network::pod_namespaces(&layout.netns());
    assert!(
        namespaces.is_empty(),
        "down left pod namespaces: {namespaces:?}"
    );
    assert!(!localcluster::net::exists(&layout.netns()));
    assert!(
        localcluster::status(&layout).is_empty(),
        "no pid files left"
    );
    let _ = std::fs::remove_dir_all(layout.dir());
}
