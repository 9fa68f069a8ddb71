//! The plugin against a real cluster (`tests/localcluster`): `init` output accepted by the
//! server's schema, `install` applying the embedded manifests, and `status` on three OpenBao
//! pods assembled by hand the way the controller would make them: all unsealed, as users
//! RBAC limits, with one pod's process stopped, and with it killed and back sealed.
//!
//! Run as root. `make test` names a running cluster in LOCALCLUSTER_NAME; without it each
//! test starts a cluster of its own. Each test works in a namespace of its own.

mod common;

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{INIT_CASES, Run, plugin};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret, Service};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, DynamicObject, GroupVersionKind, Patch, PatchParams};
use kube::discovery::{Scope, pinned_kind};
use kube::{Client, ResourceExt};
use localcluster::{LocalCluster, test_namespace};
use serde_json::{Value, json};
use vault_api::status::{ConditionUpdate, RaftRole};
use vault_api::{Vault, VaultPodStatus, VaultStatus, defaults};

/// The field manager of what the tests apply themselves.
const MANAGER: &str = "kubectl-vault-test";

/// The image of the hand-made Vault pods: OpenBao, which the local cluster runs.
const VAULT_IMAGE: &str = "openbao/openbao:2.4.1";

/// An image the local cluster does not know, so that `install`'s controller and webhook
/// pods never run: a controller watching every namespace would take over the other tests'
/// Vaults.
const INERT_IMAGE: &str = "vault-operator.invalid/inert:test";

/// Kinds that live outside namespaces, of those the manifests hold.
const CLUSTER_SCOPED: &[&str] = &[
    "Namespace",
    "CustomResourceDefinition",
    "ClusterRole",
    "ClusterRoleBinding",
    "MutatingWebhookConfiguration",
    "ValidatingWebhookConfiguration",
];

/// Held for writing while `install`'s webhook configurations exist (nothing serves them,
/// and they refuse every Vault written), and for reading by the tests that write Vaults,
/// so that the tests of this file do not trip over each other. Other suites' writes are
/// not covered: the window is kept short instead.
static VAULT_WRITES: tokio::sync::RwLock<()> = tokio::sync::RwLock::const_new(());

async fn cluster() -> LocalCluster {
    LocalCluster::start()
        .await
        .unwrap_or_else(|e| panic!("starting the cluster: {e}"))
}

async fn namespace(client: &Client, prefix: &str) -> String {
    test_namespace(client, prefix)
        .await
        .unwrap_or_else(|e| panic!("creating a test namespace: {e}"))
}

fn samples_dir() -> PathBuf {
    match std::env::var_os("VAULT_SAMPLES_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => common::crate_path("../../shared/samples/bank-vaults"),
    }
}

/// Applies `manifests/crd.yaml` server-side (forced, so the other suites' applies of the
/// same CRD agree) and waits until it is Established and served.
async fn install_crd(client: &Client) {
    let path = common::crate_path("../manifests/crd.yaml");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    let crd: CustomResourceDefinition = serde_saphyr::from_str(&text)
        .unwrap_or_else(|e| panic!("{} is not a CRD: {e}", path.display()));
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    crds.patch(
        &crd.name_any(),
        &PatchParams::apply(MANAGER).force(),
        &Patch::Apply(&crd),
    )
    .await
    .unwrap_or_else(|e| panic!("applying the CRD: {e}"));
    let vaults: Api<Vault> = Api::all(client.clone());
    eventually("the Vault CRD served", Duration::from_secs(30), || async {
        let crd = crds.get(&crd.name_any()).await.ok()?;
        established(&crd).then_some(())?;
        vaults.list(&Default::default()).await.ok().map(|_| ())
    })
    .await;
}

fn established(crd: &CustomResourceDefinition) -> bool {
    let conditions = crd.status.as_ref().and_then(|s| s.conditions.clone());
    conditions
        .unwrap_or_default()
        .iter()
        .any(|c| c.type_ == "Established" && c.status == "True")
}

async fn eventually<T, F, Fut>(what: &str, limit: Duration, check: F) -> T
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let start = Instant::now();
    while start.elapsed() < limit {
        if let Some(value) = check().await {
            return value;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    panic!("{what}: not within {limit:?}");
}

/// Runs the cluster's kubectl with its admin kubeconfig.
fn kubectl(cluster: &LocalCluster, args: &[&str], stdin: &str) -> Output {
    let bin = cluster
        .bin_dir()
        .unwrap_or_else(|e| panic!("finding kubectl: {e}"));
    let kubeconfig = cluster.kubeconfig();
    let mut child = Command::new(bin.join("kubectl"))
        .arg("--kubeconfig")
        .arg(&kubeconfig)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("starting kubectl: {e}"));
    if let Some(mut input) = child.stdin.take() {
        use std::io::Write;
        let _ = input.write_all(stdin.as_bytes());
    }
    child
        .wait_with_output()
        .unwrap_or_else(|e| panic!("kubectl {args:?}: {e}"))
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Runs the plugin against the cluster; returns what it printed and how long it took.
fn plugin_on(cluster: &LocalCluster, args: &[&str]) -> (Run, Duration) {
    let kubeconfig = cluster.kubeconfig().display().to_string();
    let mut all = vec!["--kubeconfig", kubeconfig.as_str()];
    all.extend(args);
    let started = Instant::now();
    let run = plugin(&all, "");
    (run, started.elapsed())
}

#[tokio::test]
async fn init_output_is_accepted_by_the_server_schema() {
    let cluster = cluster().await;
    let client = cluster.client();
    install_crd(&client).await;
    let ns = namespace(&client, "init").await;
    let _writing = VAULT_WRITES.read().await;

    for (name, args) in INIT_CASES {
        // The golden cases pin namespace `vault`; the server needs one that exists.
        let args = args.replace("-n vault", &format!("-n {ns}"));
        let mut command = vec!["init"];
        command.extend(args.split_whitespace());
        let run = plugin(&command, "");
        assert_eq!(run.code, Some(0), "init {args}: {}", run.stderr);

        let apply = [
            "apply",
            "--server-side",
            "--dry-run=server",
            "--field-manager",
            MANAGER,
            "-n",
            &ns,
            "-f",
            "-",
        ];
        let applied = kubectl(&cluster, &apply, &run.stdout);
        assert!(
            applied.status.success(),
            "the server refused `init {args}` (golden {name}): {}\n{}",
            text(&applied.stderr),
            run.stdout
        );
    }

    // `--apply` creates the resource and its RBAC for real.
    let args = [
        "-n",
        &ns,
        "init",
        "applied",
        "--size",
        "1",
        "--with-rbac",
        "--apply",
    ];
    let (run, _) = plugin_on(&cluster, &args);
    assert_eq!(run.code, Some(0), "init --apply: {}", run.stderr);
    let applied: Vec<&str> = run
        .stdout
        .lines()
        .filter_map(|line| line.strip_suffix(" serverside-applied"))
        .collect();
    assert!(applied.contains(&"vault/applied"), "{}", run.stdout);
    let mut get = vec!["get", "-n", &ns, "-o", "name"];
    get.extend(&applied);
    let found = kubectl(&cluster, &get, "");
    assert!(
        found.status.success(),
        "init --apply said it applied {applied:?}: {}",
        text(&found.stderr)
    );

    // Into a namespace that does not exist: the API server's word, without its Status dump.
    let missing = format!("{ns}-none");
    let (run, _) = plugin_on(&cluster, &["-n", &missing, "init", "--apply"]);
    assert_eq!(run.code, Some(1), "{}", run.stdout);
    let expected =
        format!("error: applying vault/vault: namespaces \"{missing}\" not found (404)\n");
    assert_eq!(run.stderr, expected);
}

#[tokio::test]
async fn install_prints_and_applies_the_embedded_manifests() {
    let cluster = cluster().await;
    let client = cluster.client();
    // A namespace that does not exist yet: install makes it, before what goes in it.
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or_default();
    let ns = format!("install-{}-{stamp}", std::process::id());

    // --dry-run prints YAML that parses, every object named and moved to the namespace.
    let dry = ["-n", &ns, "install", "--dry-run", "--image", INERT_IMAGE];
    let (printed, _) = plugin_on(&cluster, &dry);
    assert_eq!(
        printed.code,
        Some(0),
        "install --dry-run: {}",
        printed.stderr
    );
    let documents: Vec<Option<Value>> = serde_saphyr::from_multiple(&printed.stdout)
        .unwrap_or_else(|e| panic!("install --dry-run printed no YAML: {e}"));
    let documents: Vec<Value> = documents.into_iter().flatten().collect();
    let mut kinds = Vec::new();
    for document in &documents {
        let kind = document["kind"].as_str().unwrap_or_default();
        assert!(document["apiVersion"].is_string(), "{document}");
        assert!(document["metadata"]["name"].is_string(), "{document}");
        let namespace = document["metadata"]["namespace"].as_str();
        if CLUSTER_SCOPED.contains(&kind) {
            assert_eq!(namespace, None, "{kind} is cluster-scoped");
        } else {
            assert_eq!(namespace, Some(ns.as_str()), "{kind} belongs in {ns}");
        }
        kinds.push(kind.to_string());
    }
    assert_eq!(kinds.first().map(String::as_str), Some("Namespace"));
    let namespaces = kinds.iter().take_while(|k| *k == "Namespace").count();
    assert_eq!(namespaces, 1, "one Namespace, first: {kinds:?}");
    assert_eq!(kinds[1], "CustomResourceDefinition", "{kinds:?}");

    // Other suites apply the same CRD, hence --force-conflicts.
    let webhooks_up = VAULT_WRITES.write().await;
    let install = [
        "-n",
        &ns,
        "install",
        "--image",
        INERT_IMAGE,
        "--force-conflicts",
    ];
    let (run, took) = plugin_on(&cluster, &install);
    assert_eq!(run.code, Some(0), "install: {}", run.stderr);
    eprintln!(
        "install applied {} objects in {:.2}s; notes: {:?}",
        documents.len(),
        took.as_secs_f64(),
        run.stderr.trim()
    );
    let lines = run.stdout.lines().count();
    assert_eq!(
        lines,
        documents.len(),
        "one line per object: {}",
        run.stdout
    );

    // Every object is there as printed. The webhook configurations are checked first and
    // removed at once: while nothing serves them, they refuse every Vault in the cluster.
    let (webhooks, others): (Vec<&Value>, Vec<&Value>) = documents.iter().partition(|d| {
        let kind = d["kind"].as_str().unwrap_or_default();
        kind.ends_with("WebhookConfiguration")
    });
    let mut missing = Vec::new();
    for document in webhooks.iter().chain(&others) {
        let Some(found) = get(&client, document, &ns).await else {
            missing.push(format!(
                "{}/{}",
                document["kind"], document["metadata"]["name"]
            ));
            continue;
        };
        if webhooks.contains(document) {
            remove_webhook_configuration(&client, document, &found, &ns).await;
            continue;
        }
        let kind = document["kind"].as_str().unwrap_or_default();
        if kind == "Deployment" {
            let containers = &found.data["spec"]["template"]["spec"]["containers"];
            for container in containers.as_array().into_iter().flatten() {
                assert_eq!(
                    container["image"], INERT_IMAGE,
                    "--image overrides every image"
                );
            }
        }
    }
    drop(webhooks_up);
    assert!(missing.is_empty(), "install did not create {missing:?}");

    // The server accepts every object as printed, as the README tells users to apply it.
    // (A dry run makes no namespace, so it comes once install has made it.)
    let apply = [
        "apply",
        "--server-side",
        "--force-conflicts",
        "--dry-run=server",
        "--field-manager",
        MANAGER,
        "-f",
        "-",
    ];
    let applied = kubectl(&cluster, &apply, &printed.stdout);
    assert!(
        applied.status.success(),
        "the server refused install --dry-run's output: {}",
        text(&applied.stderr)
    );

    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    eventually("the CRD Established", Duration::from_secs(30), || async {
        let crd = crds.get("vaults.vault.banzaicloud.com").await.ok()?;
        established(&crd).then_some(())
    })
    .await;

    // Its pods never run (INERT_IMAGE); the namespace goes, and them with it.
    let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client.clone());
    let _ = namespaces.delete(&ns, &DeleteParams::default()).await;
}

/// The object a manifest document names, read back from the cluster.
async fn get(client: &Client, document: &Value, ns: &str) -> Option<DynamicObject> {
    let api_version = document["apiVersion"].as_str()?;
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    let kind = document["kind"].as_str()?;
    let gvk = GroupVersionKind::gvk(group, version, kind);
    let (resource, capabilities) = pinned_kind(client, &gvk)
        .await
        .unwrap_or_else(|e| panic!("the cluster does not serve {kind}: {e}"));
    let api: Api<DynamicObject> = match capabilities.scope {
        Scope::Cluster => Api::all_with(client.clone(), &resource),
        Scope::Namespaced => Api::namespaced_with(client.clone(), ns, &resource),
    };
    api.get(document["metadata"]["name"].as_str()?).await.ok()
}

/// Deletes a webhook configuration `install` made, if it still routes to this test's
/// namespace (another suite may have applied its own since).
async fn remove_webhook_configuration(
    client: &Client,
    document: &Value,
    found: &DynamicObject,
    ns: &str,
) {
    let webhooks = found.data["webhooks"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let ours = webhooks
        .iter()
        .all(|w| w["clientConfig"]["service"]["namespace"] == ns);
    assert!(
        ours,
        "install -n {ns} moves the webhook's service: {webhooks:?}"
    );
    let kind = document["kind"].as_str().unwrap_or_default();
    let gvk = GroupVersionKind::gvk("admissionregistration.k8s.io", "v1", kind);
    let Ok((resource, _)) = pinned_kind(client, &gvk).await else {
        return;
    };
    let api: Api<DynamicObject> = Api::all_with(client.clone(), &resource);
    let _ = api
        .delete(&found.name_any(), &DeleteParams::default())
        .await;
}

/// Runs curl inside the cluster's network namespace, where pod addresses are reachable.
fn inside_curl(cluster: &LocalCluster, args: &[&str]) -> String {
    let netns = cluster.layout().netns();
    let output = Command::new("ip")
        .args(["netns", "exec", &netns, "curl", "-sk", "--max-time", "10"])
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running curl in {netns}: {e}"));
    text(&output.stdout)
}

/// One request to Vault's API on a pod; `Null` when it did not answer JSON.
fn vault_api(cluster: &LocalCluster, ip: &str, method: &str, path: &str, body: &Value) -> Value {
    let url = format!("https://{ip}:8200/v1/{path}");
    let body = body.to_string();
    let mut args = vec!["-X", method, url.as_str()];
    if method != "GET" {
        args.extend(["-d", body.as_str()]);
    }
    let answer = inside_curl(cluster, &args);
    serde_json::from_str(&answer).unwrap_or(Value::Null)
}

fn object<T: serde::de::DeserializeOwned>(value: Value) -> T {
    serde_json::from_value(value).unwrap_or_else(|e| panic!("building a fixture: {e}"))
}

fn pod_ip(pod: &Pod) -> Option<String> {
    pod.status.as_ref()?.pod_ip.clone()
}

fn pod_ready(pod: &Pod) -> bool {
    let conditions = pod.status.as_ref().and_then(|s| s.conditions.clone());
    conditions
        .unwrap_or_default()
        .iter()
        .any(|c| c.type_ == "Ready" && c.status == "True")
}

/// The pid of a pod's first container, from its `localcluster://<pid>` container ID.
fn container_pid(pod: &Pod) -> Option<i32> {
    let statuses = pod.status.as_ref()?.container_statuses.as_ref()?;
    let id = statuses.first()?.container_id.as_deref()?;
    id.strip_prefix("localcluster://")?.parse().ok()
}

/// Sends a signal with the host's `kill`, so the test needs no unsafe code.
fn signal(pid: i32, name: &str) {
    let status = Command::new("kill")
        .args([format!("-{name}"), pid.to_string()])
        .status()
        .unwrap_or_else(|e| panic!("kill -{name} {pid}: {e}"));
    assert!(status.success(), "kill -{name} {pid} failed");
}

/// Resumes a stopped process when dropped, so that a failing test leaves it stoppable.
struct Resume(i32);

impl Drop for Resume {
    fn drop(&mut self) {
        // Quiet: the process may have been killed since, on purpose.
        let _ = Command::new("kill")
            .args(["-CONT", &self.0.to_string()])
            .stderr(Stdio::null())
            .status();
    }
}

/// `cr-raft.yaml` with the fields that name namespaces moved to `ns`, and OpenBao's image.
fn raft_sample(ns: &str) -> Value {
    let path = samples_dir().join("cr-raft.yaml");
    let sample = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {} (set VAULT_SAMPLES_DIR): {e}", path.display()));
    let mut vault: Value = serde_saphyr::from_str(&sample)
        .unwrap_or_else(|e| panic!("{} is not YAML: {e}", path.display()));
    vault["metadata"]["namespace"] = json!(ns);
    vault["spec"]["image"] = json!(VAULT_IMAGE);
    vault["spec"]["caNamespaces"] = json!([ns]);
    vault["spec"]["unsealConfig"]["kubernetes"]["secretNamespace"] = json!(ns);
    vault["spec"]["config"]["api_addr"] = json!(format!("https://vault.{ns}:8200"));
    let roles = vault["spec"]["externalConfig"]["auth"][0]["roles"].as_array_mut();
    for role in roles.into_iter().flatten() {
        role["bound_service_account_namespaces"] = json!([ns]);
    }
    vault
}

/// What the controller would make of the Vault `vault` for status to read: a TLS Secret
/// from the cluster CA, a governing and per-pod Services, the configuration, and a
/// StatefulSet of three OpenBao pods on Raft, labelled as the operator labels them.
async fn vault_pods(cluster: &LocalCluster, ns: &str, name: &str) {
    let client = cluster.client();
    let pods = ["0", "1", "2"].map(|i| format!("{name}-{i}"));
    let mut hosts = vec!["127.0.0.1".to_string(), "localhost".to_string()];
    for host in pods.iter().chain([&name.to_string()]) {
        hosts.extend([
            host.clone(),
            format!("{host}.{ns}"),
            format!("{host}.{ns}.svc"),
        ]);
    }
    let (cert, key) = cluster
        .serving_cert(&hosts)
        .unwrap_or_else(|e| panic!("issuing a certificate: {e}"));
    let ca = cluster.ca_pem().unwrap_or_else(|e| panic!("{e}"));
    let secret: Secret = object(json!({
        "metadata": {"name": defaults::tls_secret_name(name)},
        "stringData": {
            defaults::TLS_CA_KEY: ca,
            defaults::TLS_CERT_KEY: cert,
            defaults::TLS_KEY_KEY: key,
        },
    }));
    let config = format!(
        "disable_mlock = true\nui = true\n\
         storage \"raft\" {{\n  path = \"/vault/file\"\n}}\n\
         listener \"tcp\" {{\n  address = \"0.0.0.0:8200\"\n\
           tls_cert_file = \"{}\"\n  tls_key_file = \"{}\"\n}}\n",
        defaults::TLS_CERT_FILE,
        defaults::TLS_KEY_FILE,
    );
    let config: ConfigMap = object(json!({
        "metadata": {"name": format!("{name}-config")},
        "data": {"vault.hcl": config},
    }));
    let labels = defaults::selector_labels(name);
    let ports = json!([
        {"name": "api-port", "port": 8200},
        {"name": "cluster-port", "port": 8201},
    ]);
    let mut services: Vec<Service> = vec![object(json!({
        "metadata": {"name": name, "labels": labels},
        "spec": {"clusterIP": "None", "publishNotReadyAddresses": true,
                 "selector": labels, "ports": ports},
    }))];
    // Each pod's own Service, which its API and cluster addresses name.
    for pod in &pods {
        services.push(object(json!({
            "metadata": {"name": pod, "labels": labels},
            "spec": {"publishNotReadyAddresses": true, "ports": ports,
                     "selector": {"statefulset.kubernetes.io/pod-name": pod}},
        })));
    }
    let set: StatefulSet = object(json!({
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "replicas": 3, "serviceName": name, "podManagementPolicy": "Parallel",
            "selector": {"matchLabels": labels},
            "template": {"metadata": {"labels": labels}, "spec": {
                "terminationGracePeriodSeconds": 2,
                "containers": [{
                    "name": "vault", "image": VAULT_IMAGE,
                    "args": ["server", "-config=/vault/config/vault.hcl"],
                    "env": [
                        {"name": "POD_NAME",
                         "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                        {"name": "VAULT_API_ADDR",
                         "value": format!("https://$(POD_NAME).{ns}.svc:8200")},
                        {"name": "VAULT_CLUSTER_ADDR",
                         "value": format!("https://$(POD_NAME).{ns}.svc:8201")},
                    ],
                    "ports": [{"name": "api-port", "containerPort": 8200},
                              {"name": "cluster-port", "containerPort": 8201}],
                    "readinessProbe": {"periodSeconds": 1, "httpGet": {
                        "scheme": "HTTPS", "port": 8200,
                        "path": "/v1/sys/health?standbyok=true"}},
                    "volumeMounts": [
                        {"name": "vault-tls", "mountPath": defaults::TLS_MOUNT_PATH},
                        {"name": "vault-config", "mountPath": "/vault/config"},
                        {"name": "vault-raft", "mountPath": "/vault/file"},
                    ],
                }],
                "volumes": [
                    {"name": "vault-tls",
                     "secret": {"secretName": defaults::tls_secret_name(name)}},
                    {"name": "vault-config", "configMap": {"name": format!("{name}-config")}},
                    {"name": "vault-raft", "emptyDir": {}},
                ],
            }},
        },
    }));

    let params = PatchParams::apply(MANAGER);
    let secrets: Api<Secret> = Api::namespaced(client.clone(), ns);
    secrets
        .patch(&secret.name_any(), &params, &Patch::Apply(&secret))
        .await
        .unwrap_or_else(|e| panic!("creating the TLS Secret: {e}"));
    let maps: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    maps.patch(&config.name_any(), &params, &Patch::Apply(&config))
        .await
        .unwrap_or_else(|e| panic!("creating the configuration: {e}"));
    let service_api: Api<Service> = Api::namespaced(client.clone(), ns);
    for service in &services {
        service_api
            .patch(&service.name_any(), &params, &Patch::Apply(service))
            .await
            .unwrap_or_else(|e| panic!("creating service/{}: {e}", service.name_any()));
    }
    let sets: Api<StatefulSet> = Api::namespaced(client.clone(), ns);
    sets.patch(name, &params, &Patch::Apply(&set))
        .await
        .unwrap_or_else(|e| panic!("creating the StatefulSet: {e}"));
}

/// Initialises `vault-0`, unseals it, joins the other two to it and unseals them, from
/// inside the cluster's network namespace, as the controller would. Returns the pods'
/// addresses.
async fn initialise_and_join(cluster: &LocalCluster, ns: &str, name: &str) -> Vec<String> {
    let pods: Api<Pod> = Api::namespaced(cluster.client(), ns);
    let mut ips = Vec::new();
    for i in 0..3 {
        let pod = format!("{name}-{i}");
        let ip = eventually(
            &format!("{pod} running"),
            Duration::from_secs(90),
            || async {
                let found = pods.get(&pod).await.ok()?;
                container_pid(&found)?;
                pod_ip(&found)
            },
        )
        .await;
        eventually(
            &format!("{pod} answering"),
            Duration::from_secs(60),
            || async {
                let seal = vault_api(cluster, &ip, "GET", "sys/seal-status", &Value::Null);
                seal["sealed"].as_bool().map(|_| ())
            },
        )
        .await;
        ips.push(ip);
    }

    let init = json!({"secret_shares": 1, "secret_threshold": 1});
    let init = vault_api(cluster, &ips[0], "PUT", "sys/init", &init);
    let Some(key) = init["keys"][0].as_str() else {
        panic!("initialising {name}-0 gave no key: {init}");
    };
    let unseal = json!({"key": key});
    vault_api(cluster, &ips[0], "PUT", "sys/unseal", &unseal);
    eventually(
        &format!("{name}-0 active"),
        Duration::from_secs(60),
        || async {
            let leader = vault_api(cluster, &ips[0], "GET", "sys/leader", &Value::Null);
            (leader["is_self"] == true).then_some(())
        },
    )
    .await;

    let ca = cluster.ca_pem().unwrap_or_else(|e| panic!("{e}"));
    let join = json!({
        "leader_api_addr": format!("https://{name}-0.{ns}.svc:8200"),
        "leader_ca_cert": ca,
    });
    for ip in &ips[1..] {
        let joined = vault_api(cluster, ip, "PUT", "sys/storage/raft/join", &join);
        assert_eq!(joined["joined"], true, "joining {ip}: {joined}");
        vault_api(cluster, ip, "PUT", "sys/unseal", &unseal);
    }
    for ip in &ips[1..] {
        eventually(
            &format!("{ip} unsealed, following"),
            Duration::from_secs(60),
            || async {
                let leader = vault_api(cluster, ip, "GET", "sys/leader", &Value::Null);
                let known = leader["leader_address"]
                    .as_str()
                    .is_some_and(|a| !a.is_empty());
                (leader["is_self"] == false && known).then_some(())
            },
        )
        .await;
    }
    ips
}

/// Writes the status the controller would write once every pod is unsealed.
async fn write_status(client: &Client, ns: &str, name: &str) {
    let now =
        k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(k8s_openapi::jiff::Timestamp::now());
    let nodes: Vec<String> = (0..3).map(|i| format!("{name}-{i}")).collect();
    let mut status = VaultStatus {
        nodes: nodes.clone(),
        leader: format!("{name}-0"),
        ready_pods: Some(3),
        sealed_pods: Some(0),
        pods: nodes
            .iter()
            .enumerate()
            .map(|(i, pod)| VaultPodStatus {
                name: pod.clone(),
                initialized: Some(true),
                sealed: Some(false),
                raft_role: Some(if i == 0 {
                    RaftRole::Leader
                } else {
                    RaftRole::Follower
                }),
                voter: Some(true),
                version: None,
            })
            .collect(),
        ..VaultStatus::default()
    };
    for type_ in ["Initialized", "Unsealed", "Ready"] {
        let update = ConditionUpdate {
            type_,
            status: true,
            reason: "AllPodsUnsealed",
            message: "written by the kubectl-vault cluster test",
            generation: None,
        };
        status.set_condition(update, now.clone());
    }
    let vaults: Api<Vault> = Api::namespaced(client.clone(), ns);
    let patch = Patch::Merge(json!({"status": status}));
    vaults
        .patch_status(name, &PatchParams::default(), &patch)
        .await
        .unwrap_or_else(|e| panic!("writing the status of vault/{name}: {e}"));
}

/// `status -o json` of one Vault; returns its report and how long the command took.
fn status_json(cluster: &LocalCluster, ns: &str, name: &str) -> (Value, Duration) {
    let args = ["-n", ns, "status", name, "-o", "json", "--pod-timeout", "3"];
    let (run, took) = plugin_on(cluster, &args);
    assert_eq!(run.code, Some(0), "status: {}", run.stderr);
    let report: Value = serde_json::from_str(&run.stdout)
        .unwrap_or_else(|e| panic!("status -o json is not JSON: {e}\n{}", run.stdout));
    (report["vaults"][0].clone(), took)
}

fn status_table(cluster: &LocalCluster, ns: &str, name: &str) -> (String, Duration) {
    let args = ["-n", ns, "status", name, "--color", "never"];
    let (run, took) = plugin_on(cluster, &args);
    assert_eq!(run.code, Some(0), "status: {}", run.stderr);
    (run.stdout, took)
}

#[tokio::test]
async fn status_of_three_openbao_pods_and_of_one_stopped() {
    let cluster = cluster().await;
    let client = cluster.client();
    install_crd(&client).await;
    let ns = namespace(&client, "status").await;
    let name = "vault";

    let vault = raft_sample(&ns);
    let vaults: Api<Vault> = Api::namespaced(client.clone(), &ns);
    let writing = VAULT_WRITES.read().await;
    vaults
        .patch(name, &PatchParams::apply(MANAGER), &Patch::Apply(&vault))
        .await
        .unwrap_or_else(|e| panic!("creating vault/{name} from cr-raft.yaml: {e}"));
    drop(writing);
    vault_pods(&cluster, &ns, name).await;
    initialise_and_join(&cluster, &ns, name).await;
    write_status(&client, &ns, name).await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    eventually("three pods Ready", Duration::from_secs(60), || async {
        let list = pods.list(&Default::default()).await.ok()?;
        (list.items.iter().filter(|p| pod_ready(p)).count() == 3).then_some(())
    })
    .await;

    // Three rows, one leader, none sealed, every pod answering.
    let (table, table_took) = status_table(&cluster, &ns, name);
    let (report, took) = status_json(&cluster, &ns, name);
    eprintln!("{table}");
    eprintln!(
        "status of 3 unsealed pods: {:.2}s (table), {:.2}s (json)",
        table_took.as_secs_f64(),
        took.as_secs_f64()
    );
    let rows = report["pods"].as_array().cloned().unwrap_or_default();
    assert_eq!(rows.len(), 3, "{report}");
    let leaders = rows.iter().filter(|p| p["raftRole"] == "leader").count();
    assert_eq!(leaders, 1, "{report}");
    assert_eq!(report["leader"], format!("{name}-0"), "{report}");
    assert_eq!(report["sealedPods"], 0, "{report}");
    assert_eq!(report["readyPods"], 3, "{report}");
    for row in &rows {
        assert!(row["unreachable"].is_null(), "{row}");
        assert_eq!(row["sealed"], false, "{row}");
        assert_eq!(row["initialized"], true, "{row}");
        assert_eq!(row["voter"], true, "{row}");
        assert!(row["zone"].is_string() && row["node"].is_string(), "{row}");
        assert!(row["certificateExpiry"].is_string(), "{row}");
        assert!(row["version"].is_string(), "{row}");
    }
    assert!(report["problems"].is_null(), "{report}");

    // kubectl's completion protocol offers the Vaults of the namespace.
    // (kubectl puts `__complete` first; the cluster flags are words of the command line.)
    let kubeconfig = cluster.kubeconfig().display().to_string();
    let words = [
        "__complete",
        "status",
        "--kubeconfig",
        &kubeconfig,
        "-n",
        &ns,
        "",
    ];
    let run = plugin(&words, "");
    assert_eq!(run.stdout.lines().next(), Some(name), "{}", run.stdout);

    refusals_say_what_to_do(&cluster, &ns, name).await;

    // A pod whose process is stopped: it accepts connections and never answers, so only
    // the per-pod timeout ends the wait for it.
    let stopped = format!("{name}-2");
    let pod = pods
        .get(&stopped)
        .await
        .unwrap_or_else(|e| panic!("reading pod/{stopped}: {e}"));
    let Some(pid) = container_pid(&pod) else {
        panic!("pod/{stopped} has no container pid: {:?}", pod.status);
    };
    signal(pid, "STOP");
    let _resume = Resume(pid);
    let (table, table_took) = status_table(&cluster, &ns, name);
    let (report, took) = status_json(&cluster, &ns, name);
    eprintln!("{table}");
    eprintln!(
        "status with {stopped} stopped: {:.2}s (table), {:.2}s (json), pod timeout 3s",
        table_took.as_secs_f64(),
        took.as_secs_f64()
    );
    for took in [table_took, took] {
        assert!(
            took < Duration::from_secs(8),
            "the pod timeout bounds the command: {took:?}"
        );
    }
    let rows = report["pods"].as_array().cloned().unwrap_or_default();
    assert_eq!(rows.len(), 3, "{report}");
    for row in &rows {
        if row["name"] == stopped.as_str() {
            let unreachable = row["unreachable"].as_str().unwrap_or_default();
            assert!(
                unreachable.contains("no answer") || row["sealed"] == true,
                "the stopped pod says so: {row}"
            );
            assert!(table.contains(&stopped), "{table}");
        } else {
            assert_eq!(row["sealed"], false, "{row}");
        }
    }
    assert_eq!(report["leader"], format!("{name}-0"), "{report}");

    // Killed, it is restarted, and answers sealed: the row and the summary say so.
    signal(pid, "KILL");
    eventually(
        &format!("{stopped} restarted"),
        Duration::from_secs(60),
        || async {
            let pod = pods.get(&stopped).await.ok()?;
            let restarted = container_pid(&pod).is_some_and(|new| new != pid);
            let ip = pod_ip(&pod).filter(|_| restarted)?;
            let seal = vault_api(&cluster, &ip, "GET", "sys/seal-status", &Value::Null);
            (seal["sealed"] == true).then_some(())
        },
    )
    .await;
    let (table, table_took) = status_table(&cluster, &ns, name);
    let (report, _) = status_json(&cluster, &ns, name);
    eprintln!("{table}");
    eprintln!(
        "status with {stopped} restarted and sealed: {:.2}s",
        table_took.as_secs_f64()
    );
    assert_eq!(report["sealedPods"], 1, "{report}");
    let row = report["pods"][2].clone();
    assert_eq!(row["name"], stopped.as_str(), "{report}");
    assert_eq!(row["sealed"], true, "{row}");
    assert!(row["unreachable"].is_null(), "a sealed pod answers: {row}");
    assert!(row["raftRole"].is_null(), "a sealed pod cannot say: {row}");
    assert_eq!(report["leader"], format!("{name}-0"), "{report}");
}

/// A kubeconfig for the ServiceAccount `account` of `ns`, with a token from the API server.
fn kubeconfig_for(cluster: &LocalCluster, ns: &str, account: &str) -> PathBuf {
    let token = kubectl(cluster, &["create", "token", account, "-n", ns], "");
    assert!(token.status.success(), "{}", text(&token.stderr));
    let token = text(&token.stdout).trim().to_string();
    let admin = kube::config::Kubeconfig::read_from(cluster.kubeconfig())
        .unwrap_or_else(|e| panic!("reading the admin kubeconfig: {e}"));
    let Some(server) = admin.clusters.first().and_then(|c| c.cluster.clone()) else {
        panic!("the admin kubeconfig names no cluster");
    };
    let config = json!({
        "apiVersion": "v1", "kind": "Config", "current-context": account,
        "clusters": [{"name": "local", "cluster": {
            "server": server.server,
            "certificate-authority-data": server.certificate_authority_data,
        }}],
        "users": [{"name": account, "user": {"token": token}}],
        "contexts": [{"name": account, "context":
            {"cluster": "local", "user": account, "namespace": ns}}],
    });
    let path = std::env::temp_dir().join(format!("kubectl-vault-{ns}-{account}.kubeconfig"));
    std::fs::write(&path, config.to_string())
        .unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
    path
}

/// `status` as users RBAC limits: one who may read Vaults and pods but not Secrets nor the
/// pod proxy still gets a report, each gap explained; one who may read nothing is told to
/// ask for a Role.
async fn refusals_say_what_to_do(cluster: &LocalCluster, ns: &str, name: &str) {
    let rbac = format!(
        "apiVersion: v1\nkind: ServiceAccount\nmetadata: {{name: viewer, namespace: {ns}}}\n\
         ---\napiVersion: v1\nkind: ServiceAccount\nmetadata: {{name: nobody, namespace: {ns}}}\n\
         ---\napiVersion: rbac.authorization.k8s.io/v1\nkind: Role\n\
         metadata: {{name: viewer, namespace: {ns}}}\nrules:\n\
         - {{apiGroups: [vault.banzaicloud.com], resources: [vaults], verbs: [get, list]}}\n\
         - {{apiGroups: [''], resources: [pods], verbs: [get, list]}}\n\
         ---\napiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\n\
         metadata: {{name: viewer, namespace: {ns}}}\n\
         roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: Role, name: viewer}}\n\
         subjects: [{{kind: ServiceAccount, name: viewer, namespace: {ns}}}]\n"
    );
    let applied = kubectl(cluster, &["apply", "-f", "-"], &rbac);
    assert!(applied.status.success(), "{}", text(&applied.stderr));

    let viewer = kubeconfig_for(cluster, ns, "viewer");
    let viewer = viewer.display().to_string();
    let args = ["--kubeconfig", &viewer, "status", name, "-o", "json"];
    let run = plugin(&args, "");
    assert_eq!(run.code, Some(0), "a viewer gets a report: {}", run.stderr);
    let report: Value = serde_json::from_str(&run.stdout)
        .unwrap_or_else(|e| panic!("status -o json is not JSON: {e}\n{}", run.stdout));
    eprintln!("as a viewer: {report:#}");
    let report = &report["vaults"][0];
    let rows = report["pods"].as_array().cloned().unwrap_or_default();
    assert_eq!(rows.len(), 3, "{report}");
    for row in &rows {
        assert_eq!(
            row["unreachable"], "the cluster refused the pod proxy",
            "{row}"
        );
    }
    let problems: Vec<String> = report["problems"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| p.as_str().map(str::to_string))
        .collect();
    let said = |what: &str| {
        problems
            .iter()
            .any(|p| p.contains(what) && p.contains("ask an administrator"))
    };
    assert!(
        said("pods/proxy"),
        "the refused pod proxy, once: {problems:?}"
    );
    assert!(said("secret/vault-tls"), "the refused Secret: {problems:?}");
    assert_eq!(problems.len(), 2, "{problems:?}");

    let nobody = kubeconfig_for(cluster, ns, "nobody");
    let nobody = nobody.display().to_string();
    let run = plugin(&["--kubeconfig", &nobody, "status", name], "");
    eprintln!("as nobody: {}", run.stderr);
    assert_eq!(run.code, Some(1), "{}", run.stdout);
    assert!(
        run.stderr.contains("the cluster refused") && run.stderr.contains("ask an administrator"),
        "{}",
        run.stderr
    );
}
