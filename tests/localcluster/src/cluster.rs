//! Starting, finding and stopping a local cluster.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{ConfigMap, Namespace, ServiceAccount};
use kube::api::{Api, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};

use crate::components::{self, API_PORT, CONTROLLER_MANAGER_PORT, ETCD_PORT, SCHEDULER_PORT};
use crate::pki::{self, Pki};
use crate::process::{self, Spec};
use crate::{CLUSTER_ENV, Error, GATEWAY, KUBERNETES_SERVICE_IP, Layout, net};

/// The control plane's processes, in the order they start.
const COMPONENTS: &[&str] = &[
    "etcd",
    "kube-apiserver",
    "forward",
    "kube-controller-manager",
    "kube-scheduler",
];

/// The node agent's process, which starts after the control plane.
const AGENT: &str = "node-agent";

/// How long a component gets between SIGTERM and SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(10);

/// How long a component may take to become ready.
const READY_TIMEOUT: Duration = Duration::from_secs(120);

/// How `up` runs.
#[derive(Clone, Debug)]
pub struct UpOptions {
    /// The cluster's name; it names its network namespace, so two names run side by side.
    pub name: String,
    /// The cluster's folder, if not the default.
    pub dir: Option<PathBuf>,
    /// The `localcluster` binary, which runs the loopback forward, the node agent and the
    /// container shim.
    pub localcluster_bin: PathBuf,
    /// How many nodes the agent runs (at least 1; 3 by default).
    pub nodes: usize,
    /// An image table laid over the built-in one.
    pub images: Option<PathBuf>,
}

impl UpOptions {
    /// Three nodes, the built-in image table.
    pub fn new(name: &str, localcluster_bin: PathBuf) -> Self {
        Self {
            name: name.into(),
            dir: None,
            localcluster_bin,
            nodes: 3,
            images: None,
        }
    }
}

/// A running local cluster.
pub struct LocalCluster {
    layout: Layout,
    client: kube::Client,
    /// Whether this handle started the cluster, and so stops it when dropped.
    owned: bool,
    figures: Figures,
}

/// Measurements of a cluster, printed by benchmarks and `localcluster status`.
#[derive(Clone, Debug, Default)]
pub struct Figures {
    /// Time from `up` to every component ready, when this handle started the cluster.
    pub ready_after: Option<Duration>,
    /// Resident memory of each running component, in KiB.
    pub resident_kib: Vec<(String, u64)>,
}

impl LocalCluster {
    /// The cluster for a test: the one named by `LOCALCLUSTER_NAME` when set (`make test`
    /// starts one per run), or a new one that stops when the handle is dropped.
    pub async fn start() -> Result<Self, Error> {
        match std::env::var(CLUSTER_ENV) {
            Ok(name) if !name.is_empty() => Self::attach(&Layout::new(&name, None)?).await,
            _ => {
                // Tests of one binary run at once: each needs a name of its own.
                static STARTED: std::sync::atomic::AtomicUsize =
                    std::sync::atomic::AtomicUsize::new(0);
                let n = STARTED.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let name = format!("t{}-{n}", std::process::id());
                let options = UpOptions::new(&name, find_binary()?);
                let mut cluster = Self::up(&options).await?;
                cluster.owned = true;
                Ok(cluster)
            }
        }
    }

    /// Connects to a running cluster.
    pub async fn attach(layout: &Layout) -> Result<Self, Error> {
        if process::running(layout, "kube-apiserver").is_none() {
            return Err(Error::NotRunning(layout.name().to_string()));
        }
        let client = client_for(&layout.kubeconfig()).await?;
        Ok(Self {
            layout: layout.clone(),
            client,
            owned: false,
            figures: Figures::default(),
        })
    }

    /// Starts the cluster, or reuses it when it already runs. Whatever a crashed run left
    /// behind is removed first. The returned handle does not stop the cluster when dropped.
    pub async fn up(options: &UpOptions) -> Result<Self, Error> {
        let started = Instant::now();
        if !nix::unistd::geteuid().is_root() {
            return Err(Error::NotRoot);
        }
        let layout = Layout::new(&options.name, options.dir.clone())?;
        // A cluster missing a process (a crashed agent leaves its pods behind) is started
        // afresh, not reused.
        let complete = COMPONENTS
            .iter()
            .chain([&AGENT])
            .all(|name| process::running(&layout, name).is_some());
        if complete
            && let Ok(running) = Self::attach(&layout).await
            && running.ready().await.is_ok()
        {
            return Ok(running);
        }
        down(&layout)?;

        // A cluster half started is worse than none: stop whatever did start.
        match Self::start_fresh(&layout, options).await {
            Ok(mut cluster) => {
                cluster.figures.ready_after = Some(started.elapsed());
                Ok(cluster)
            }
            Err(e) => {
                let _ = down(&layout);
                Err(e)
            }
        }
    }

    async fn start_fresh(layout: &Layout, options: &UpOptions) -> Result<Self, Error> {
        let bin = build_kubernetes()?;
        prepare_files(layout)?;
        net::create(&layout.netns())?;

        let etcd_bin = etcd_bin_vendored::etcd_bin_path()
            .map_err(|e| Error::Build(format!("no etcd for this machine: {e}")))?;
        start_and_wait(layout, components::etcd(layout, etcd_bin), |l| {
            probe_inside(l, &format!("http://127.0.0.1:{ETCD_PORT}/health"))
        })
        .await?;

        process::start(layout, &components::apiserver(layout, &bin))?;
        let _ = std::fs::remove_file(layout.forward_port_file());
        process::start(
            layout,
            &components::forward(layout, &options.localcluster_bin),
        )?;
        let port = wait_for_forward(layout).await?;
        write_host_kubeconfig(layout, port)?;
        let client = client_for(&layout.kubeconfig()).await?;
        let cluster = Self {
            layout: layout.clone(),
            client,
            owned: false,
            figures: Figures::default(),
        };
        wait_until(layout, "kube-apiserver", || cluster.ready()).await?;

        for (spec, port) in [
            (
                components::controller_manager(layout, &bin),
                CONTROLLER_MANAGER_PORT,
            ),
            (components::scheduler(layout, &bin), SCHEDULER_PORT),
        ] {
            let url = format!("https://127.0.0.1:{port}/healthz");
            start_and_wait(layout, spec, |l| probe_inside(l, &url)).await?;
        }

        agent_rbac(&cluster.client).await?;
        write_kubeconfig(
            layout,
            &layout.dir().join("node-agent.host.kubeconfig"),
            &format!("https://127.0.0.1:{port}"),
            "node-agent",
        )?;
        let agent = components::node_agent(layout, options, &bao_path()?);
        process::start(layout, &agent)?;
        let want = options.nodes.max(1);
        wait_until(layout, AGENT, || nodes_ready(&cluster.client, want)).await?;
        // Ready means a pod can be made: the default namespace needs its ServiceAccount.
        wait_until(layout, "kube-controller-manager", || {
            namespace_ready(&cluster.client, "default")
        })
        .await?;
        Ok(cluster)
    }

    /// Makes the handle stop the cluster when it is dropped.
    pub fn stop_on_drop(mut self) -> Self {
        self.owned = true;
        self
    }

    /// Stops the cluster's processes and removes its network namespace.
    pub fn down(&self) -> Result<Vec<String>, Error> {
        down(&self.layout)
    }

    /// Answers `Ok` when the API server's `/readyz` does.
    pub async fn ready(&self) -> Result<(), Error> {
        let request = http::Request::get("/readyz")
            .body(Vec::new())
            .map_err(|e| Error::Command {
                command: "GET /readyz".into(),
                reason: e.to_string(),
            })?;
        let text = self
            .client
            .request_text(request)
            .await
            .map_err(|e| Error::Kube("GET /readyz".into(), e))?;
        if text.trim() == "ok" {
            Ok(())
        } else {
            Err(Error::Command {
                command: "GET /readyz".into(),
                reason: text,
            })
        }
    }

    /// A client with the cluster's admin identity.
    pub fn client(&self) -> kube::Client {
        self.client.clone()
    }

    /// The admin kubeconfig for use on the host.
    pub fn kubeconfig(&self) -> PathBuf {
        self.layout.kubeconfig()
    }

    /// Where the cluster keeps its files.
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// Start-up time and the resident memory of each component.
    pub fn figures(&self) -> Figures {
        Figures {
            resident_kib: resident_memory(&self.layout),
            ..self.figures.clone()
        }
    }

    /// The folder of the Kubernetes binaries (kubectl among them).
    pub fn bin_dir(&self) -> Result<PathBuf, Error> {
        build_kubernetes()
    }

    /// Issues a serving certificate from the cluster's CA, for test servers the API server
    /// calls. Returns the certificate and key in PEM.
    pub fn serving_cert(&self, hosts: &[String]) -> Result<(String, String), Error> {
        pki::issue_serving_cert(&Pki::new(self.layout.pki_dir()), hosts)
    }

    /// The CA certificate in PEM.
    pub fn ca_pem(&self) -> Result<String, Error> {
        pki::read(&Pki::new(self.layout.pki_dir()).ca_cert())
    }
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        if self.owned {
            let _ = down(&self.layout);
        }
    }
}

/// Stops every process the cluster started, its pods' among them, and removes every
/// network namespace it made; returns the names of the processes that were running. Leaves
/// the cluster folder, so that its certificates and data survive a restart.
pub fn down(layout: &Layout) -> Result<Vec<String>, Error> {
    // The agent first, as it started last: it stops its pods itself when it can.
    let mut stopped = Vec::new();
    if process::stop(layout, AGENT, STOP_GRACE) {
        stopped.push(AGENT.to_string());
    }
    // What it left, or all its pods when it crashed or was killed.
    let pods = crate::agent::clean_up(layout);

    // Then the rest in the reverse order of start, so nothing logs errors about what went
    // first; a process of no known component last.
    let mut names: Vec<String> = process::recorded(layout)
        .into_iter()
        .filter(|n| !n.starts_with(crate::agent::pods::RECORD_PREFIX))
        .collect();
    names.sort_by_key(|n| {
        COMPONENTS
            .iter()
            .position(|c| c == n)
            .map_or(usize::MAX, |i| COMPONENTS.len() - i)
    });
    for name in names {
        if process::stop(layout, &name, STOP_GRACE) {
            stopped.push(name);
        }
    }
    stopped.extend(pods?);
    net::delete(&layout.netns())?;
    Ok(stopped)
}

/// What each component runs as: its pid, if running, and resident memory.
pub fn status(layout: &Layout) -> Vec<(String, Option<u32>, Option<u64>)> {
    process::recorded(layout)
        .into_iter()
        .map(|name| {
            let pid = process::running(layout, &name);
            let rss = pid.and_then(process::resident_kib);
            (name, pid, rss)
        })
        .collect()
}

fn resident_memory(layout: &Layout) -> Vec<(String, u64)> {
    status(layout)
        .into_iter()
        .filter_map(|(name, _, rss)| Some((name, rss?)))
        .collect()
}

/// Creates a namespace for one test and waits until pods can be made in it: its default
/// ServiceAccount and `kube-root-ca.crt` exist.
pub async fn test_namespace(client: &kube::Client, prefix: &str) -> Result<String, Error> {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let mut namespace = Namespace::default();
    namespace.metadata.generate_name = Some(format!("{prefix}-"));
    let created = namespaces
        .create(&PostParams::default(), &namespace)
        .await
        .map_err(|e| Error::Kube(format!("creating a namespace {prefix}-*"), e))?;
    let name = created.metadata.name.unwrap_or_default();

    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if namespace_ready(client, &name).await.is_ok() {
            return Ok(name);
        }
        if Instant::now() > deadline {
            return Err(Error::Command {
                command: format!("preparing namespace {name}"),
                reason: "no default ServiceAccount or kube-root-ca.crt after 60s: is the \
                         controller-manager running?"
                    .into(),
            });
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The agent's own identity: what a kubelet does for its nodes and pods, and no more.
async fn agent_rbac(client: &kube::Client) -> Result<(), Error> {
    use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding};
    let rule = |groups: &[&str], resources: &[&str], verbs: &[&str]| serde_json::json!({"apiGroups": groups, "resources": resources, "verbs": verbs});
    let all = [
        "get", "list", "watch", "create", "update", "patch", "delete",
    ];
    let read = ["get", "list", "watch"];
    let role = serde_json::json!({
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": {"name": "localcluster:node-agent"},
        "rules": [
            rule(&[""], &["nodes", "nodes/status"], &all),
            rule(&[""], &["pods"], &["get", "list", "watch", "delete"]),
            rule(&[""], &["pods/status"], &["get", "patch", "update"]),
            rule(&[""], &["serviceaccounts/token"], &["create"]),
            rule(&[""], &["secrets", "configmaps", "services", "serviceaccounts"], &read),
            rule(&["discovery.k8s.io"], &["endpointslices"], &read),
            rule(&[""], &["persistentvolumes"], &all),
            rule(&[""], &["persistentvolumeclaims"], &["get", "list", "watch", "update", "patch"]),
            rule(&["storage.k8s.io"], &["storageclasses"], &read),
            rule(&["coordination.k8s.io"], &["leases"], &all),
            rule(&["", "events.k8s.io"], &["events"], &["create", "patch", "update"]),
        ],
    });
    let binding = serde_json::json!({
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding",
        "metadata": {"name": "localcluster:node-agent"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                    "name": "localcluster:node-agent"},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User",
                      "name": crate::pki::IDENTITIES[3].user}],
    });
    let params = kube::api::PatchParams::apply("localcluster").force();
    let roles: Api<ClusterRole> = Api::all(client.clone());
    roles
        .patch(
            "localcluster:node-agent",
            &params,
            &kube::api::Patch::Apply(role),
        )
        .await
        .map_err(|e| Error::Kube("granting the node agent its role".into(), e))?;
    let classes: Api<k8s_openapi::api::storage::v1::StorageClass> = Api::all(client.clone());
    let class = crate::agent::storage::storage_class();
    classes
        .patch(
            crate::agent::storage::STORAGE_CLASS,
            &params,
            &kube::api::Patch::Apply(class),
        )
        .await
        .map_err(|e| Error::Kube("creating the default StorageClass".into(), e))?;
    let bindings: Api<ClusterRoleBinding> = Api::all(client.clone());
    bindings
        .patch(
            "localcluster:node-agent",
            &params,
            &kube::api::Patch::Apply(binding),
        )
        .await
        .map_err(|e| Error::Kube("granting the node agent its role".into(), e))?;
    Ok(())
}

/// Ok once pods can be made in `namespace`: its default ServiceAccount and
/// `kube-root-ca.crt` exist.
async fn namespace_ready(client: &kube::Client, namespace: &str) -> Result<(), Error> {
    let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), namespace);
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
    let account = accounts.get_opt("default").await;
    let root_ca = config_maps.get_opt("kube-root-ca.crt").await;
    match (account, root_ca) {
        (Ok(Some(_)), Ok(Some(_))) => Ok(()),
        _ => Err(Error::Command {
            command: format!("preparing namespace {namespace}"),
            reason: "no default ServiceAccount or kube-root-ca.crt yet".into(),
        }),
    }
}

/// Ok once `count` nodes report Ready.
async fn nodes_ready(client: &kube::Client, count: usize) -> Result<(), Error> {
    let nodes: Api<k8s_openapi::api::core::v1::Node> = Api::all(client.clone());
    let list = nodes
        .list(&kube::api::ListParams::default())
        .await
        .map_err(|e| Error::Kube("listing nodes".into(), e))?;
    let ready = list
        .items
        .iter()
        .filter(|node| {
            let conditions = node.status.as_ref().and_then(|s| s.conditions.as_ref());
            conditions
                .into_iter()
                .flatten()
                .any(|c| c.type_ == "Ready" && c.status == "True")
        })
        .count();
    if ready >= count {
        Ok(())
    } else {
        Err(Error::Command {
            command: "waiting for nodes".into(),
            reason: format!("{ready} Ready"),
        })
    }
}

/// OpenBao's `bao`: `LOCALCLUSTER_BAO`, or what `scripts/tools.sh bao` installs.
fn bao_path() -> Result<PathBuf, Error> {
    if let Some(path) = std::env::var_os("LOCALCLUSTER_BAO") {
        return Ok(PathBuf::from(path));
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/tools.sh");
    let output = std::process::Command::new(&script)
        .arg("bao")
        .stderr(std::process::Stdio::inherit())
        .output()
        .map_err(|e| Error::Build(format!("running {} bao: {e}", script.display())))?;
    if !output.status.success() {
        return Err(Error::Build(format!(
            "{} bao failed (its output is above)",
            script.display()
        )));
    }
    Ok(PathBuf::from(
        String::from_utf8_lossy(&output.stdout).trim(),
    ))
}

/// Finds the `localcluster` binary: `LOCALCLUSTER_BIN`, or beside the running program.
fn find_binary() -> Result<PathBuf, Error> {
    if let Some(path) = std::env::var_os("LOCALCLUSTER_BIN") {
        return Ok(PathBuf::from(path));
    }
    let exe = std::env::current_exe()
        .map_err(|e| Error::io("finding", Path::new("/proc/self/exe"), e))?;
    let candidates = exe
        .ancestors()
        .skip(1)
        .take(2)
        .map(|dir| dir.join("localcluster"));
    candidates
        .into_iter()
        .find(|p| p.is_file())
        .ok_or_else(|| Error::Command {
            command: "finding the localcluster binary".into(),
            reason: "build it with `cargo build -p localcluster` or set LOCALCLUSTER_BIN".into(),
        })
}

/// Builds the Kubernetes binaries if they are missing and returns their folder.
fn build_kubernetes() -> Result<PathBuf, Error> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("k8s/build.sh");
    let output = std::process::Command::new(&script)
        .stderr(std::process::Stdio::inherit())
        .output()
        .map_err(|e| Error::Build(format!("running {}: {e}", script.display())))?;
    if !output.status.success() {
        return Err(Error::Build(format!(
            "{} failed (its output is above)",
            script.display()
        )));
    }
    Ok(PathBuf::from(
        String::from_utf8_lossy(&output.stdout).trim(),
    ))
}

/// Certificates and the kubeconfigs the components use inside the namespace.
fn prepare_files(layout: &Layout) -> Result<(), Error> {
    let api_hosts: Vec<String> = [
        GATEWAY,
        KUBERNETES_SERVICE_IP,
        "127.0.0.1",
        "localhost",
        "kubernetes",
        "kubernetes.default",
        "kubernetes.default.svc",
        "kubernetes.default.svc.cluster.local",
    ]
    .map(String::from)
    .to_vec();
    let pki = Pki::new(layout.pki_dir());
    pki.ensure(&api_hosts)?;

    let inside = format!("https://{GATEWAY}:{API_PORT}");
    for (file, identity) in [
        ("controller-manager.kubeconfig", "controller-manager"),
        ("scheduler.kubeconfig", "scheduler"),
        ("node-agent.kubeconfig", "node-agent"),
        ("kubeconfig.inside", "admin"),
    ] {
        write_kubeconfig(layout, &layout.dir().join(file), &inside, identity)?;
    }
    Ok(())
}

fn write_host_kubeconfig(layout: &Layout, port: u16) -> Result<(), Error> {
    let server = format!("https://127.0.0.1:{port}");
    write_kubeconfig(layout, &layout.kubeconfig(), &server, "admin")
}

fn write_kubeconfig(
    layout: &Layout,
    path: &Path,
    server: &str,
    identity: &str,
) -> Result<(), Error> {
    let pki = Pki::new(layout.pki_dir());
    let ca = pki::read(&pki.ca_cert())?;
    let cert = pki::read(&pki.path(&format!("{identity}.crt")))?;
    let key = pki::read(&pki.path(&format!("{identity}.key")))?;
    let text = components::kubeconfig(server, &ca, &cert, &key, identity);
    std::fs::write(path, text).map_err(|e| Error::io("writing", path, e))
}

/// A client from a kubeconfig file.
pub async fn client_for(kubeconfig: &Path) -> Result<kube::Client, Error> {
    install_crypto_provider();
    let error = |e: String| Error::Kubeconfig(kubeconfig.to_path_buf(), e);
    let file = Kubeconfig::read_from(kubeconfig).map_err(|e| error(e.to_string()))?;
    let config = kube::Config::from_custom_kubeconfig(file, &KubeConfigOptions::default())
        .await
        .map_err(|e| error(e.to_string()))?;
    kube::Client::try_from(config).map_err(|e| error(e.to_string()))
}

async fn start_and_wait<F>(layout: &Layout, spec: Spec, probe: F) -> Result<(), Error>
where
    F: Fn(&Layout) -> Result<(), Error>,
{
    process::start(layout, &spec)?;
    wait_until(layout, &spec.name, || async { probe(layout) }).await
}

/// Polls `probe` until it succeeds, failing early with the log's tail if the component
/// exits.
async fn wait_until<F, Fut>(layout: &Layout, component: &str, probe: F) -> Result<(), Error>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<(), Error>>,
{
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        let last = match probe().await {
            Ok(()) => return Ok(()),
            Err(e) => e.to_string(),
        };
        if process::running(layout, component).is_none() {
            return Err(component_error(layout, component, "exited".into()));
        }
        if Instant::now() > deadline {
            let problem = format!("was not ready after {READY_TIMEOUT:?} ({last})");
            return Err(component_error(layout, component, problem));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

async fn wait_for_forward(layout: &Layout) -> Result<u16, Error> {
    let file = layout.forward_port_file();
    let read = || -> Result<(), Error> {
        let port = std::fs::read_to_string(&file).map_err(|e| Error::io("reading", &file, e))?;
        port.trim()
            .parse::<u16>()
            .map(|_| ())
            .map_err(|e| Error::Command {
                command: "reading the forward's port".into(),
                reason: e.to_string(),
            })
    };
    wait_until(layout, "forward", || async { read() }).await?;
    let port = std::fs::read_to_string(&file).map_err(|e| Error::io("reading", &file, e))?;
    port.trim()
        .parse()
        .map_err(|e: std::num::ParseIntError| Error::Command {
            command: "reading the forward's port".into(),
            reason: e.to_string(),
        })
}

/// A GET from inside the cluster's namespace that must answer 200. Components serve their
/// health endpoints with self-signed certificates, which are not checked here.
fn probe_inside(layout: &Layout, url: &str) -> Result<(), Error> {
    install_crypto_provider();
    net::in_netns(&layout.netns(), || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .ok()?;
        runtime.block_on(async {
            let client = reqwest::Client::builder()
                .tls_danger_accept_invalid_certs(true)
                .no_proxy()
                .timeout(Duration::from_secs(2))
                .build()
                .ok()?;
            let response = client.get(url).send().await.ok()?;
            response.status().is_success().then_some(())
        })
    })?
    .ok_or_else(|| Error::Command {
        command: format!("GET {url}"),
        reason: "not ready".into(),
    })
}

/// Picks rustls's ring provider for the process: the dependency tree enables more than one,
/// and rustls then refuses to guess.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

fn component_error(layout: &Layout, component: &str, problem: String) -> Error {
    let log = layout.log(component);
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    let tail = lines[lines.len().saturating_sub(20)..].join("\n");
    Error::Component {
        component: component.to_string(),
        problem,
        log,
        tail,
    }
}
