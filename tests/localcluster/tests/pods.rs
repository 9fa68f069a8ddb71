//! The node agent runs pods as processes the way a kubelet runs containers: scheduled by the
//! real scheduler, each with its own network namespace and address, restarted when they exit,
//! stopped when deleted, and unable to reach anything outside the cluster.
//!
//! Run as root. Under `make test` the tests share the cluster named by LOCALCLUSTER_NAME.

mod common;

use std::time::Duration;

use common::{cluster, container_pid, eventually, inside, object, phase};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use localcluster::test_namespace;
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
    let script = "cat /proc/sys/kernel/hostname; echo ---; env | sort; echo ---; \
                  getent hosts example.com && echo RESOLVED || echo NO-LOOKUP; \
                  ip route get 192.0.2.1 2>&1 || echo NO-ROUTE";
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
    assert!(network.contains("NO-LOOKUP"), "{network}");
    assert!(
        network.contains("NO-ROUTE") || network.contains("unreachable"),
        "{network}"
    );
}
