//! The control plane behaves as a real cluster's does: RBAC, controllers, garbage
//! collection, CRDs, admission webhooks reached by endpoint routing; and `down` leaves
//! nothing behind.
//!
//! Run as root. Under `make test` the tests share the cluster named by LOCALCLUSTER_NAME;
//! run alone, each starts a cluster of its own.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::{cluster, eventually, object, until};
use k8s_openapi::api::admissionregistration::v1::ValidatingWebhookConfiguration;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use localcluster::{LocalCluster, test_namespace};
use serde_json::json;

fn kubectl(cluster: &LocalCluster, args: &[&str]) -> Output {
    let bin = cluster.bin_dir().unwrap_or_else(|e| panic!("{e}"));
    Command::new(bin.join("kubectl"))
        .arg(format!("--kubeconfig={}", cluster.kubeconfig().display()))
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running kubectl: {e}"))
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

#[tokio::test]
async fn readyz_answers_ok() {
    let cluster = cluster().await;
    let output = kubectl(&cluster, &["get", "--raw", "/readyz"]);
    assert_eq!(text(&output).trim(), "ok");
}

#[tokio::test]
async fn service_account_tokens_are_held_to_rbac() {
    let cluster = cluster().await;
    let client = cluster.client();
    let ns = test_namespace(&client, "rbac")
        .await
        .unwrap_or_else(|e| panic!("{e}"));

    let setup = format!(
        "apiVersion: v1
kind: ServiceAccount
metadata: {{name: reader, namespace: {ns}}}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {{name: pod-reader, namespace: {ns}}}
rules:
- {{apiGroups: [\"\"], resources: [pods], verbs: [get, list]}}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {{name: reader, namespace: {ns}}}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: Role, name: pod-reader}}
subjects:
- {{kind: ServiceAccount, name: reader, namespace: {ns}}}
"
    );
    let file = std::env::temp_dir().join(format!("rbac-{ns}.yaml"));
    std::fs::write(&file, setup).unwrap_or_else(|e| panic!("{e}"));
    let applied = kubectl(&cluster, &["apply", "-f", &file.display().to_string()]);
    assert!(applied.status.success(), "{}", text(&applied));

    // A token from the TokenRequest API, used without the admin's certificate.
    let token = kubectl(&cluster, &["create", "token", "reader", "-n", &ns]);
    assert!(token.status.success(), "{}", text(&token));
    let token = String::from_utf8_lossy(&token.stdout).trim().to_string();
    let server = kubectl(
        &cluster,
        &[
            "config",
            "view",
            "-o",
            "jsonpath={.clusters[0].cluster.server}",
        ],
    );
    let server = String::from_utf8_lossy(&server.stdout).to_string();
    let ca = cluster.layout().pki_dir().join("ca.crt");
    let bin = cluster.bin_dir().unwrap_or_else(|e| panic!("{e}"));
    let can_i = |verb: &str, resource: &str| {
        let output = Command::new(bin.join("kubectl"))
            .args([
                "--kubeconfig=/dev/null",
                "--server",
                &server,
                "--token",
                &token,
            ])
            .arg(format!("--certificate-authority={}", ca.display()))
            .args(["auth", "can-i", verb, resource, "-n", &ns])
            .output()
            .unwrap_or_else(|e| panic!("{e}"));
        String::from_utf8_lossy(&output.stdout).trim().to_string()
    };
    assert_eq!(can_i("list", "pods"), "yes");
    assert_eq!(can_i("get", "secrets"), "no");
    assert_eq!(can_i("delete", "pods"), "no");
}

#[tokio::test]
async fn deployments_make_pods_and_owners_collect_them() {
    let cluster = cluster().await;
    let client = cluster.client();
    let ns = test_namespace(&client, "gc")
        .await
        .unwrap_or_else(|e| panic!("{e}"));

    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    let deployment: Deployment = object(json!({
        "metadata": {"name": "web"},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "web", "image": "busybox"}]},
            },
        },
    }));
    deployments
        .create(&PostParams::default(), &deployment)
        .await
        .unwrap_or_else(|e| panic!("{e}"));

    let replica_sets: Api<ReplicaSet> = Api::namespaced(client.clone(), &ns);
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let count = |items: usize, want: usize| items == want;
    until(
        "a ReplicaSet owned by the Deployment",
        Duration::from_secs(30),
        || async {
            let list = replica_sets
                .list(&ListParams::default())
                .await
                .map(|l| l.items);
            list.is_ok_and(|items| {
                items.iter().any(|rs| {
                    rs.metadata
                        .owner_references
                        .iter()
                        .flatten()
                        .any(|o| o.kind == "Deployment")
                })
            })
        },
    )
    .await;
    until("two pods", Duration::from_secs(30), || async {
        pods.list(&ListParams::default())
            .await
            .is_ok_and(|l| count(l.items.len(), 2))
    })
    .await;

    deployments
        .delete("web", &DeleteParams::background())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let took = until(
        "dependents garbage-collected",
        Duration::from_secs(60),
        || async {
            let sets = replica_sets.list(&ListParams::default()).await;
            let left = pods.list(&ListParams::default()).await;
            sets.is_ok_and(|l| l.items.is_empty()) && left.is_ok_and(|l| l.items.is_empty())
        },
    )
    .await;
    eprintln!("garbage collection took {:.1}s", took.as_secs_f64());
}

#[tokio::test]
async fn the_vault_crd_is_served_and_takes_the_bank_vaults_sample() {
    let cluster = cluster().await;
    let client = cluster.client();
    let ns = test_namespace(&client, "crd")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let top = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");

    // The CRD embeds pod specs: too large for client-side apply's annotation.
    let crd = top.join("manifests/crd.yaml").display().to_string();
    let applied = kubectl(
        &cluster,
        &["apply", "--server-side", "--force-conflicts", "-f", &crd],
    );
    assert!(applied.status.success(), "{}", text(&applied));
    // `kubectl wait` fails at once on a CRD whose status has no conditions yet.
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let established = kube::runtime::wait::await_condition(
        crds,
        "vaults.vault.banzaicloud.com",
        kube::runtime::wait::conditions::is_crd_established(),
    );
    tokio::time::timeout(Duration::from_secs(60), established)
        .await
        .unwrap_or_else(|_| panic!("the CRD was not established within 60s"))
        .unwrap_or_else(|e| panic!("watching the CRD: {e}"));

    let sample = top
        .join("../shared/samples/bank-vaults/cr-raft.yaml")
        .display()
        .to_string();
    let created = kubectl(&cluster, &["apply", "-n", &ns, "-f", &sample]);
    assert!(created.status.success(), "{}", text(&created));

    let listed = kubectl(&cluster, &["get", "vaults", "-n", &ns]);
    let listed = text(&listed);
    assert!(
        listed.contains("SIZE") && listed.contains("LEADER"),
        "{listed}"
    );
    let size = kubectl(
        &cluster,
        &[
            "get",
            "vault",
            "vault",
            "-n",
            &ns,
            "-o",
            "jsonpath={.spec.size}",
        ],
    );
    assert_eq!(text(&size), "3");
    let external = kubectl(
        &cluster,
        &[
            "get",
            "vault",
            "vault",
            "-n",
            &ns,
            "-o",
            "jsonpath={.spec.externalConfig.policies[0].name}",
        ],
    );
    assert_eq!(
        text(&external),
        "allow_secrets",
        "free-form fields are kept"
    );
}

/// The admission requests the test webhook has answered.
static WEBHOOK_CALLS: AtomicUsize = AtomicUsize::new(0);

#[tokio::test]
async fn a_webhook_behind_a_service_is_called_by_endpoint_routing() {
    let cluster = cluster().await;
    let client = cluster.client();
    let ns = test_namespace(&client, "webhook")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let service = "deny-labelled";
    let port = 20_000 + (std::process::id() % 10_000) as u16;

    let (cert, key) = cluster
        .serving_cert(&[format!("{service}.{ns}.svc")])
        .unwrap_or_else(|e| panic!("{e}"));
    let server = serve_webhook(cluster.layout().netns(), port, cert, key);

    // A Service without a selector, its EndpointSlice written by hand at the gateway.
    let services: Api<Service> = Api::namespaced(client.clone(), &ns);
    let svc: Service = object(json!({
        "metadata": {"name": service},
        "spec": {"ports": [{"name": "https", "port": 443, "targetPort": port}]},
    }));
    services
        .create(&PostParams::default(), &svc)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), &ns);
    let slice: EndpointSlice = object(json!({
        "metadata": {"name": service, "labels": {"kubernetes.io/service-name": service}},
        "addressType": "IPv4",
        "endpoints": [{"addresses": [localcluster::GATEWAY], "conditions": {"ready": true}}],
        "ports": [{"name": "https", "port": port, "protocol": "TCP"}],
    }));
    slices
        .create(&PostParams::default(), &slice)
        .await
        .unwrap_or_else(|e| panic!("{e}"));

    use base64::Engine;
    let ca = cluster.ca_pem().unwrap_or_else(|e| panic!("{e}"));
    let configs: Api<ValidatingWebhookConfiguration> = Api::all(client.clone());
    let config: ValidatingWebhookConfiguration = object(json!({
        "metadata": {"name": format!("deny-labelled-{ns}")},
        "webhooks": [{
            "name": "deny-labelled.localcluster.test",
            "admissionReviewVersions": ["v1"],
            "sideEffects": "None",
            "failurePolicy": "Fail",
            "timeoutSeconds": 5,
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": ns}},
            "rules": [{
                "apiGroups": [""], "apiVersions": ["v1"],
                "operations": ["CREATE"], "resources": ["configmaps"],
            }],
            "clientConfig": {
                "service": {"namespace": ns, "name": service, "path": "/validate", "port": 443},
                "caBundle": base64::engine::general_purpose::STANDARD.encode(ca),
            },
        }],
    }));
    configs
        .create(&PostParams::default(), &config)
        .await
        .unwrap_or_else(|e| panic!("{e}"));

    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    let labelled: ConfigMap = object(json!({"metadata": {"name": "x", "labels": {"deny": "yes"}}}));
    let plain: ConfigMap = object(json!({"metadata": {"name": "y"}}));
    // The webhook configuration takes effect within a second or two.
    let refused = until("the webhook refuses", Duration::from_secs(30), || async {
        match config_maps.create(&PostParams::default(), &labelled).await {
            Err(kube::Error::Api(status)) => status.message.contains("refused by the test webhook"),
            Ok(_) => {
                let _ = config_maps.delete("x", &DeleteParams::default()).await;
                false
            }
            Err(_) => false,
        }
    })
    .await;
    eprintln!("webhook in effect after {:.1}s", refused.as_secs_f64());
    config_maps
        .create(&PostParams::default(), &plain)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(WEBHOOK_CALLS.load(Ordering::SeqCst) >= 2);

    let _ = configs
        .delete(&format!("deny-labelled-{ns}"), &DeleteParams::default())
        .await;
    drop(server);
}

/// Serves `/validate` over TLS at the gateway address inside the cluster's namespace: it
/// refuses objects labelled `deny: yes`. The server stops when the returned handle drops.
fn serve_webhook(netns: String, port: u16, cert: String, key: String) -> WebhookServer {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};

    let (stop_tx, stop_rx) = std::sync::mpsc::channel::<()>();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel::<()>();
    let thread = std::thread::spawn(move || {
        let ns_file = std::fs::File::open(Path::new("/run/netns").join(&netns))
            .unwrap_or_else(|e| panic!("{e}"));
        localcluster::net::enter(&ns_file).unwrap_or_else(|e| panic!("{e}"));
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap_or_else(|e| panic!("{e}"));
        runtime.block_on(async move {
            let certs = vec![
                CertificateDer::from_pem_slice(cert.as_bytes()).unwrap_or_else(|e| panic!("{e}")),
            ];
            let key =
                PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap_or_else(|e| panic!("{e}"));
            let config = rustls::ServerConfig::builder_with_provider(Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .unwrap_or_else(|e| panic!("{e}"))
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .unwrap_or_else(|e| panic!("{e}"));
            let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
            let address = format!("{}:{port}", localcluster::GATEWAY);
            let listener = tokio::net::TcpListener::bind(&address)
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            let _ = ready_tx.send(());
            let app = axum::Router::new().route("/validate", axum::routing::post(review));
            loop {
                if stop_rx.try_recv().is_ok() {
                    return;
                }
                let accepted =
                    tokio::time::timeout(Duration::from_millis(200), listener.accept()).await;
                let Ok(Ok((stream, _))) = accepted else {
                    continue;
                };
                let (acceptor, app) = (acceptor.clone(), app.clone());
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(stream).await else {
                        return;
                    };
                    let service = hyper_util::service::TowerToHyperService::new(app);
                    let _ = hyper_util::server::conn::auto::Builder::new(
                        hyper_util::rt::TokioExecutor::new(),
                    )
                    .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                    .await;
                });
            }
        });
    });
    ready_rx
        .recv_timeout(Duration::from_secs(10))
        .unwrap_or_else(|e| panic!("webhook: {e}"));
    WebhookServer {
        stop: stop_tx,
        thread: Some(thread),
    }
}

async fn review(
    axum::Json(review): axum::Json<serde_json::Value>,
) -> axum::Json<serde_json::Value> {
    WEBHOOK_CALLS.fetch_add(1, Ordering::SeqCst);
    let request = &review["request"];
    let denied = request["object"]["metadata"]["labels"]["deny"] == "yes";
    let mut response = json!({"uid": request["uid"], "allowed": !denied});
    if denied {
        response["status"] = json!({"code": 403, "message": "refused by the test webhook"});
    }
    axum::Json(json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "response": response,
    }))
}

struct WebhookServer {
    stop: std::sync::mpsc::Sender<()>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for WebhookServer {
    fn drop(&mut self) {
        let _ = self.stop.send(());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[tokio::test]
async fn two_clusters_run_side_by_side_and_down_leaves_nothing() {
    let binary = PathBuf::from(env!("CARGO_BIN_EXE_localcluster"));
    let names = [
        format!("a{}", std::process::id()),
        format!("b{}", std::process::id()),
    ];

    let mut clusters = Vec::new();
    for name in &names {
        let options = localcluster::UpOptions::new(name, binary.clone());
        let cluster = LocalCluster::up(&options)
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        clusters.push(cluster.stop_on_drop());
    }
    for cluster in &clusters {
        cluster.ready().await.unwrap_or_else(|e| panic!("{e}"));
        let figures = cluster.figures();
        eprintln!(
            "cluster {} ready in {:.1}s; resident memory: {}",
            cluster.layout().name(),
            figures.ready_after.unwrap_or_default().as_secs_f64(),
            figures
                .resident_kib
                .iter()
                .map(|(name, kib)| format!("{name} {} MiB", kib / 1024))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }

    // Each cluster runs a pod, whose process and network must go with the cluster.
    let mut pod_pids = Vec::new();
    for cluster in &clusters {
        let pods: Api<Pod> = Api::namespaced(cluster.client(), "default");
        let pod: Pod = object(
            json!({"metadata": {"name": "sleeper"}, "spec": {"containers": [
            {"name": "sleeper", "image": "busybox", "command": ["sleep", "3600"]}]}}),
        );
        pods.create(&PostParams::default(), &pod)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let (pid, _) = eventually("the pod runs", Duration::from_secs(60), || async {
            let pod = pods.get("sleeper").await.ok()?;
            let status = pod.status?.container_statuses?.into_iter().next()?;
            status
                .container_id?
                .strip_prefix("localcluster://")?
                .parse::<u32>()
                .ok()
        })
        .await;
        pod_pids.push(pid);
    }

    for cluster in &clusters {
        let pids: Vec<u32> = localcluster::status(cluster.layout())
            .into_iter()
            .filter(|(name, _, _)| !name.starts_with("pod_"))
            .filter_map(|(_, p, _)| p)
            .collect();
        assert_eq!(
            pids.len(),
            6,
            "etcd, API server, forward, controller-manager, scheduler, node agent"
        );
        let stopped = cluster.down().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(stopped.len(), 6);
        for pid in pids {
            // A zombie has stopped; whoever is its parent (or PID 1) collects it.
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            let state = stat
                .rsplit_once(") ")
                .and_then(|(_, rest)| rest.chars().next());
            assert!(
                matches!(state, None | Some('Z')),
                "process {pid} still runs: {stat}"
            );
        }
        assert!(!localcluster::net::exists(&cluster.layout().netns()));
        let prefix = localcluster::agent::network::netns_prefix(&cluster.layout().netns());
        let left: Vec<String> = std::fs::read_dir("/run/netns")
            .map(|d| {
                d.flatten()
                    .map(|e| e.file_name().to_string_lossy().to_string())
                    .collect()
            })
            .unwrap_or_default();
        assert!(
            !left.iter().any(|n| n.starts_with(&prefix)),
            "pod namespaces left: {left:?}"
        );
        assert!(
            localcluster::status(cluster.layout()).is_empty(),
            "no pid files left"
        );
    }
    for pid in pod_pids {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let state = stat
            .rsplit_once(") ")
            .and_then(|(_, rest)| rest.chars().next());
        assert!(
            matches!(state, None | Some('Z')),
            "pod process {pid} still runs: {stat}"
        );
    }
    for name in &names {
        let _ = std::fs::remove_dir_all(
            localcluster::Layout::new(name, None)
                .map(|l| l.dir().to_path_buf())
                .unwrap_or_default(),
        );
    }
}
