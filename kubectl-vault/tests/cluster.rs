//! The plugin against a real cluster (`tests/localcluster`): `init` output accepted by the
//! server's schema, `install` applying the embedded manifests, and `status` on `cr-raft.yaml`
//! as the real controller builds, unseals and records it: all unsealed, as users RBAC
//! limits, with one pod's process stopped, and with it killed and left sealed.
//!
//! Run as root. `make test` names a running cluster in LOCALCLUSTER_NAME; without it each
//! test starts a cluster of its own. Each test works in a namespace of its own. The status
//! test runs the `vault-controller` binary of the same target folder (built when missing).

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{INIT_CASES, Run, plugin};
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, DynamicObject, GroupVersionKind, Patch, PatchParams};
use kube::discovery::{Scope, pinned_kind};
use kube::{Client, ResourceExt};
use localcluster::{LocalCluster, test_namespace};
use serde_json::{Value, json};
use vault_api::status::{READY, UNSEALED};
use vault_api::{Vault, VaultStatus, defaults};

/// The field manager of what the tests apply themselves.
const MANAGER: &str = "kubectl-vault-test";

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

/// The `vault-controller` binary of this build, beside the test binary's folder
/// (`<target>/debug/deps/..`), where `cargo test --workspace` builds it. A run of this
/// crate's tests alone does not build it: then it is built here, and the test says so.
fn controller_binary() -> PathBuf {
    let test = std::env::current_exe().unwrap_or_else(|e| panic!("finding the test binary: {e}"));
    let Some(profile) = test.parent().and_then(Path::parent) else {
        panic!("{} is not in a Cargo target folder", test.display());
    };
    let binary = profile.join("vault-controller");
    if binary.is_file() {
        return binary;
    }

    eprintln!(
        "{} is missing: building it with `cargo build -p vault-controller`",
        binary.display()
    );
    let Some(target) = profile.parent() else {
        panic!("{} is not in a Cargo target folder", profile.display());
    };
    let cargo_profile = match profile.file_name().and_then(|n| n.to_str()) {
        Some("debug") | None => "dev",
        Some(other) => other,
    };
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let built = Command::new(cargo)
        .args([
            "build",
            "-p",
            "vault-controller",
            "--profile",
            cargo_profile,
        ])
        .arg("--manifest-path")
        .arg(common::crate_path("../Cargo.toml"))
        .arg("--target-dir")
        .arg(target)
        .status()
        .unwrap_or_else(|e| panic!("running cargo build -p vault-controller: {e}"));
    assert!(
        built.success() && binary.is_file(),
        "cargo build -p vault-controller did not build {}",
        binary.display()
    );
    binary
}

/// The real controller, watching one namespace, run as its own process inside the cluster's
/// network namespace, as in a pod: it reaches the pod addresses, which the test on the host
/// never dials. Stopped when dropped; its log is printed when the test fails.
struct ControllerProcess {
    child: std::process::Child,
    log: PathBuf,
}

impl ControllerProcess {
    fn start(cluster: &LocalCluster, ns: &str) -> Self {
        let binary = controller_binary();
        let log = std::env::temp_dir().join(format!("kubectl-vault-{ns}-controller.log"));
        let output = std::fs::File::create(&log)
            .unwrap_or_else(|e| panic!("creating {}: {e}", log.display()));
        let output_too = output
            .try_clone()
            .unwrap_or_else(|e| panic!("sharing {}: {e}", log.display()));
        let child = Command::new("ip")
            .args(["netns", "exec", &cluster.layout().netns()])
            .arg(&binary)
            .args(["run", "--no-leader-election", "--namespaces", ns])
            .args(["--metrics-address", "127.0.0.1:0"])
            .args(["--log-level", "info,vault_controller=debug"])
            .env("KUBECONFIG", cluster.layout().inside_kubeconfig())
            .stdin(Stdio::null())
            .stdout(output)
            .stderr(output_too)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", binary.display()));
        Self { child, log }
    }
}

impl Drop for ControllerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            eprintln!("controller log ({}):\n{log}", self.log.display());
        } else {
            let _ = std::fs::remove_file(&self.log);
        }
    }
}

/// Whether the controller's status says all three pods are unsealed, Ready and Raft voters,
/// with a leader: what a three-pod Raft Vault settles to.
fn settled(status: &VaultStatus) -> bool {
    status.pods.len() == 3
        && status
            .pods
            .iter()
            .all(|pod| pod.sealed == Some(false) && pod.voter == Some(true))
        && !status.leader.is_empty()
        && status.is_true(UNSEALED)
        && status.is_true(READY)
}

/// The pid of a pod's `vault` container, from its `localcluster://<pid>` container ID.
fn container_pid(pod: &Pod) -> Option<i32> {
    let statuses = pod.status.as_ref()?.container_statuses.as_ref()?;
    let vault = statuses.iter().find(|c| c.name == "vault")?;
    let id = vault.container_id.as_deref()?;
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

/// The pod rows of a status table, by pod name: each column's text under its heading
/// (but the last, the certificate expiry, which has spaces in it).
fn table_rows(table: &str) -> BTreeMap<String, BTreeMap<String, String>> {
    let mut lines = table.lines().skip_while(|line| !line.starts_with("POD "));
    let Some(headings) = lines.next() else {
        panic!("no pod table:\n{table}");
    };
    let headings: Vec<&str> = headings.split_whitespace().collect();
    let Some(last) = headings.iter().position(|h| *h == "CERTIFICATE") else {
        panic!("no CERTIFICATE EXPIRY column:\n{table}");
    };
    lines
        .take_while(|line| line.starts_with(|c: char| c.is_ascii_alphanumeric()))
        .map(|line| {
            let cells: BTreeMap<String, String> = headings[..last]
                .iter()
                .zip(line.split_whitespace())
                .map(|(heading, cell)| (heading.to_string(), cell.to_string()))
                .collect();
            (cells["POD"].clone(), cells)
        })
        .collect()
}

#[tokio::test]
async fn status_of_the_raft_sample_the_controller_unsealed_and_of_one_pod_stopped() {
    let cluster = cluster().await;
    let client = cluster.client();
    install_crd(&client).await;
    let ns = namespace(&client, "status").await;
    let name = "vault";

    // cr-raft.yaml's pods run as the ServiceAccount `vault`, which users make themselves.
    let account = format!(
        "apiVersion: v1\nkind: ServiceAccount\nmetadata: {{name: vault, namespace: {ns}}}\n"
    );
    let applied = kubectl(&cluster, &["apply", "-f", "-"], &account);
    assert!(applied.status.success(), "{}", text(&applied.stderr));
    let controller = ControllerProcess::start(&cluster, &ns);
    let vault = e2e::sample_in("cr-raft.yaml", &ns).unwrap_or_else(|e| panic!("{e}"));
    let vaults: Api<Vault> = Api::namespaced(client.clone(), &ns);
    let writing = VAULT_WRITES.read().await;
    let started = Instant::now();
    vaults
        .patch(name, &PatchParams::apply(MANAGER), &Patch::Apply(&vault))
        .await
        .unwrap_or_else(|e| panic!("creating vault/{name} from cr-raft.yaml: {e}"));
    drop(writing);
    let recorded = eventually(
        "the controller's status: three pods unsealed, Ready and voters, with a leader",
        Duration::from_secs(240),
        || async {
            let status = vaults.get_status(name).await.ok()?.status?;
            settled(&status).then_some(status)
        },
    )
    .await;
    eprintln!(
        "the controller had cr-raft.yaml's three pods unsealed, Ready and voters in {:.1}s",
        started.elapsed().as_secs_f64()
    );

    // Three rows, one leader, none sealed, every pod answering; the leader and versions are
    // Vault's live answers, the voters the controller's, the zones those of the nodes.
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
    let leaders: Vec<&Value> = rows.iter().filter(|p| p["raftRole"] == "leader").collect();
    assert_eq!(leaders.len(), 1, "{report}");
    assert_eq!(report["leader"], leaders[0]["name"], "{report}");
    assert_eq!(report["leader"], recorded.leader.as_str(), "{report}");
    assert_eq!(report["sealedPods"], 0, "{report}");
    assert_eq!(report["readyPods"], 3, "{report}");
    assert!(report["problems"].is_null(), "{report}");
    let nodes: Api<Node> = Api::all(client.clone());
    for row in &rows {
        let Some(pod) = recorded
            .pods
            .iter()
            .find(|p| row["name"] == p.name.as_str())
        else {
            panic!("the controller recorded no pod of {row}");
        };
        assert!(row["unreachable"].is_null(), "{row}");
        assert_eq!(row["sealed"], false, "{row}");
        assert_eq!(row["initialized"], true, "{row}");
        assert_eq!(row["voter"], true, "{row}");
        let version = pod.version.as_deref().unwrap_or_default();
        assert!(
            !version.is_empty(),
            "the controller recorded a version: {pod:?}"
        );
        assert_eq!(row["version"], version, "{row}");
        assert_eq!(report["version"], version, "one version: {report}");
        let node = row["node"].as_str().unwrap_or_default();
        let node = nodes
            .get(node)
            .await
            .unwrap_or_else(|e| panic!("reading node {node:?} of {row}: {e}"));
        let zone = node.labels().get(defaults::ZONE_KEY).map(String::as_str);
        assert_eq!(row["zone"].as_str(), zone, "{row}");
        assert!(row["certificateExpiry"].is_string(), "{row}");
    }
    let cells = table_rows(&table);
    assert_eq!(cells.len(), 3, "{table}");
    for row in &rows {
        let pod = row["name"].as_str().unwrap_or_default();
        let cell = |heading: &str| cells[pod][heading].clone();
        assert_eq!(cell("SEALED"), "no", "{pod}:\n{table}");
        assert_eq!(cell("VOTER"), "yes", "{pod}:\n{table}");
        assert_eq!(cell("ROLE"), row["raftRole"].as_str().unwrap_or_default());
        assert_eq!(cell("ZONE"), row["zone"].as_str().unwrap_or_default());
        assert_eq!(cell("VERSION"), row["version"].as_str().unwrap_or_default());
    }

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

    // A follower whose process is stopped: it accepts connections and never answers, so
    // only the per-pod timeout ends the wait for it, and its row says so.
    let Some(stopped) = rows.iter().find(|p| p["raftRole"] == "follower") else {
        panic!("no follower: {report}");
    };
    let stopped = stopped["name"].as_str().unwrap_or_default().to_string();
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
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
            assert_eq!(row["unreachable"], "no answer within 3s", "{row}");
            assert!(row["sealed"].is_null(), "nothing live is known: {row}");
        } else {
            assert!(row["unreachable"].is_null(), "{row}");
            assert_eq!(row["sealed"], false, "{row}");
        }
    }
    assert_eq!(report["leader"], recorded.leader.as_str(), "{report}");
    let cells = table_rows(&table);
    let row = &cells[&stopped];
    assert_eq!(row["ROLE"], "unreachable", "{table}");
    assert_eq!(row["SEALED"], "?", "{table}");
    assert_eq!(row["INITIALISED"], "?", "{table}");
    let said = format!("\n  {stopped}: unreachable: no answer within 3s\n");
    assert!(table.contains(&said), "{table}");

    // Killed with the controller gone, it is restarted and nothing unseals it: it answers
    // sealed, and the row and the summary say so.
    drop(controller);
    signal(pid, "KILL");
    let report = eventually(
        &format!("{stopped} restarted, answering sealed"),
        Duration::from_secs(60),
        || async {
            let (report, _) = status_json(&cluster, &ns, name);
            let rows = report["pods"].as_array().cloned().unwrap_or_default();
            let row = rows.iter().find(|r| r["name"] == stopped.as_str())?;
            (row["sealed"] == true).then_some(report)
        },
    )
    .await;
    let (table, table_took) = status_table(&cluster, &ns, name);
    eprintln!("{table}");
    eprintln!(
        "status with {stopped} restarted and sealed: {:.2}s",
        table_took.as_secs_f64()
    );
    assert_eq!(report["sealedPods"], 1, "{report}");
    let rows = report["pods"].as_array().cloned().unwrap_or_default();
    let Some(row) = rows.iter().find(|r| r["name"] == stopped.as_str()) else {
        panic!("no row of {stopped}: {report}");
    };
    assert!(row["unreachable"].is_null(), "a sealed pod answers: {row}");
    assert!(row["raftRole"].is_null(), "a sealed pod cannot say: {row}");
    assert_eq!(table_rows(&table)[&stopped]["SEALED"], "yes", "{table}");
    assert_eq!(report["leader"], recorded.leader.as_str(), "{report}");
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
