//! The control plane's processes and their flags. The design note
//! (`shared/design/local-cluster.md`, "Settings that matter") says why each flag is there.

use std::path::{Path, PathBuf};

use crate::process::Spec;
use crate::{GATEWAY, Layout, SERVICE_CIDR};

/// etcd's client port, on loopback inside the cluster's namespace.
pub const ETCD_PORT: u16 = 2379;
/// The API server's port on the gateway address.
pub const API_PORT: u16 = 443;
/// The controller-manager's health port, on loopback inside the namespace.
pub const CONTROLLER_MANAGER_PORT: u16 = 10257;
/// The scheduler's health port, on loopback inside the namespace.
pub const SCHEDULER_PORT: u16 = 10259;

/// The service-account issuer, as a real cluster names it.
const ISSUER: &str = "https://kubernetes.default.svc.cluster.local";

/// etcd, with its data in the cluster folder.
pub fn etcd(layout: &Layout, program: &Path) -> Spec {
    let client = format!("http://127.0.0.1:{ETCD_PORT}");
    let peer = format!("http://127.0.0.1:{}", ETCD_PORT + 1);
    spec(
        layout,
        "etcd",
        program.to_path_buf(),
        vec![
            format!("--data-dir={}", layout.dir().join("etcd").display()),
            "--name=localcluster".into(),
            format!("--listen-client-urls={client}"),
            format!("--advertise-client-urls={client}"),
            format!("--listen-peer-urls={peer}"),
            format!("--initial-advertise-peer-urls={peer}"),
            format!("--initial-cluster=localcluster={peer}"),
            format!("--listen-metrics-urls=http://127.0.0.1:{}", ETCD_PORT + 2),
            "--log-level=warn".into(),
        ],
    )
}

/// kube-apiserver, serving on the gateway address and advertising it.
pub fn apiserver(layout: &Layout, bin: &Path) -> Spec {
    let pki = |f: &str| layout.pki_dir().join(f).display().to_string();
    spec(
        layout,
        "kube-apiserver",
        bin.join("kube-apiserver"),
        vec![
            format!("--etcd-servers=http://127.0.0.1:{ETCD_PORT}"),
            format!("--bind-address={GATEWAY}"),
            format!("--advertise-address={GATEWAY}"),
            format!("--secure-port={API_PORT}"),
            format!("--service-cluster-ip-range={SERVICE_CIDR}"),
            "--authorization-mode=Node,RBAC".into(),
            format!("--client-ca-file={}", pki("ca.crt")),
            format!("--tls-cert-file={}", pki("apiserver.crt")),
            format!("--tls-private-key-file={}", pki("apiserver.key")),
            format!(
                "--kubelet-client-certificate={}",
                pki("apiserver-kubelet-client.crt")
            ),
            format!(
                "--kubelet-client-key={}",
                pki("apiserver-kubelet-client.key")
            ),
            "--kubelet-preferred-address-types=InternalIP".into(),
            format!("--service-account-issuer={ISSUER}"),
            format!("--service-account-key-file={}", pki("sa.pub")),
            format!("--service-account-signing-key-file={}", pki("sa.key")),
            "--enable-aggregator-routing=true".into(),
            // The front proxy identity: aggregated APIs and the components' delegated
            // authentication read the request-header CA from the API server.
            format!("--requestheader-client-ca-file={}", pki("ca.crt")),
            "--requestheader-allowed-names=front-proxy-client".into(),
            "--requestheader-username-headers=X-Remote-User".into(),
            "--requestheader-group-headers=X-Remote-Group".into(),
            "--requestheader-extra-headers-prefix=X-Remote-Extra-".into(),
            format!("--proxy-client-cert-file={}", pki("front-proxy-client.crt")),
            format!("--proxy-client-key-file={}", pki("front-proxy-client.key")),
            "--allow-privileged=true".into(),
            format!("--cert-dir={}", layout.pki_dir().display()),
            "--profiling=false".into(),
            "--v=1".into(),
        ],
    )
}

/// kube-controller-manager with every controller, including the one that publishes
/// `kube-root-ca.crt`, without which no pod can mount its service-account token.
pub fn controller_manager(layout: &Layout, bin: &Path) -> Spec {
    let pki = |f: &str| layout.pki_dir().join(f).display().to_string();
    let kubeconfig = layout.dir().join("controller-manager.kubeconfig");
    spec(
        layout,
        "kube-controller-manager",
        bin.join("kube-controller-manager"),
        vec![
            format!("--kubeconfig={}", kubeconfig.display()),
            format!("--authentication-kubeconfig={}", kubeconfig.display()),
            format!("--authorization-kubeconfig={}", kubeconfig.display()),
            "--controllers=*".into(),
            format!("--root-ca-file={}", pki("ca.crt")),
            format!("--service-account-private-key-file={}", pki("sa.key")),
            format!("--cluster-signing-cert-file={}", pki("ca.crt")),
            format!("--cluster-signing-key-file={}", pki("ca.key")),
            "--use-service-account-credentials=true".into(),
            "--bind-address=127.0.0.1".into(),
            format!("--secure-port={CONTROLLER_MANAGER_PORT}"),
            "--leader-elect=false".into(),
            // A busy node agent must not get its nodes tainted unreachable.
            "--node-monitor-grace-period=2m".into(),
            format!("--service-cluster-ip-range={SERVICE_CIDR}"),
            "--profiling=false".into(),
        ],
    )
}

/// kube-scheduler, for affinity, anti-affinity and topology spread.
pub fn scheduler(layout: &Layout, bin: &Path) -> Spec {
    let kubeconfig = layout.dir().join("scheduler.kubeconfig");
    spec(
        layout,
        "kube-scheduler",
        bin.join("kube-scheduler"),
        vec![
            format!("--kubeconfig={}", kubeconfig.display()),
            format!("--authentication-kubeconfig={}", kubeconfig.display()),
            format!("--authorization-kubeconfig={}", kubeconfig.display()),
            "--bind-address=127.0.0.1".into(),
            format!("--secure-port={SCHEDULER_PORT}"),
            "--leader-elect=false".into(),
            "--profiling=false".into(),
        ],
    )
}

/// The forward from a loopback port on the host to the API server.
pub fn forward(layout: &Layout, localcluster: &Path) -> Spec {
    Spec {
        name: "forward".into(),
        program: localcluster.to_path_buf(),
        args: vec![
            "forward".into(),
            format!("--netns={}", layout.netns()),
            format!("--to={GATEWAY}:{API_PORT}"),
            format!("--port-file={}", layout.forward_port_file().display()),
        ],
        netns: None,
    }
}

/// The node agent, on the host, with its own identity.
pub fn node_agent(layout: &Layout, options: &crate::UpOptions, bao: &Path) -> Spec {
    let mut args = vec![
        "agent".into(),
        format!("--name={}", layout.name()),
        format!("--dir={}", layout.dir().display()),
        format!("--nodes={}", options.nodes.max(1)),
        format!("--bao={}", bao.display()),
    ];
    if let Some(images) = &options.images {
        args.push(format!("--images={}", images.display()));
    }
    Spec {
        name: "node-agent".into(),
        program: options.localcluster_bin.clone(),
        args,
        netns: None,
    }
}

fn spec(layout: &Layout, name: &str, program: PathBuf, args: Vec<String>) -> Spec {
    Spec {
        name: name.into(),
        program,
        args,
        netns: Some(layout.netns()),
    }
}

/// A kubeconfig with an embedded client certificate.
pub fn kubeconfig(server: &str, ca: &str, cert: &str, key: &str, user: &str) -> String {
    use base64::Engine;
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    format!(
        "apiVersion: v1
kind: Config
clusters:
- name: localcluster
  cluster:
    server: {server}
    certificate-authority-data: {ca}
users:
- name: {user}
  user:
    client-certificate-data: {cert}
    client-key-data: {key}
contexts:
- name: localcluster
  context:
    cluster: localcluster
    user: {user}
    namespace: default
current-context: localcluster
",
        ca = b64(ca),
        cert = b64(cert),
        key = b64(key),
    )
}
