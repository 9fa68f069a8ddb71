//! Real OpenBao servers for the tests: Raft storage, TLS from a CA made here, loopback only.
//!
//! Every test passes its own base port, so tests run in parallel; servers and their folders
//! go away when the [`TestCluster`] is dropped.

#![allow(dead_code)]

use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose,
    SanType,
};
use vault_controller::unseal::Cluster;
use vault_controller::vault::{PodEndpoint, VaultPodClient};

/// Any error, for test set-up.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The `bao` binary, installed by `scripts/tools.sh` when missing.
pub fn bao() -> Result<PathBuf, BoxError> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/tools.sh");
    let output = Command::new("bash").arg(script).arg("bao").output()?;
    if !output.status.success() {
        return Err(format!(
            "scripts/tools.sh bao failed: {}",
            String::from_utf8_lossy(&output.stderr)
        )
        .into());
    }
    Ok(PathBuf::from(String::from_utf8(output.stdout)?.trim()))
}

/// One `bao server` process.
struct Node {
    name: String,
    api_port: u16,
    cluster_port: u16,
    config: PathBuf,
    data: PathBuf,
    log: PathBuf,
    child: Option<Child>,
}

/// A cluster of `bao server` processes on 127.0.0.1, each with its own Raft folder.
pub struct TestCluster {
    /// The cluster's name (the `Vault` resource's, in the controller's terms).
    pub name: String,
    folder: tempfile::TempDir,
    bao: PathBuf,
    /// The CA certificate, PEM.
    pub ca_pem: String,
    /// Where the CA certificate is written.
    pub ca_path: PathBuf,
    nodes: Vec<Node>,
}

impl TestCluster {
    /// Starts `size` servers; node `i` listens on `base_port + 2i` (API) and
    /// `base_port + 2i + 1` (cluster), with a certificate for `vault-<i>.test`.
    pub fn start(name: &str, size: usize, base_port: u16) -> Result<Self, BoxError> {
        let folder = tempfile::Builder::new().prefix(name).tempdir()?;
        let bao = bao()?;

        let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, format!("{name} test CA"));
        ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate()?)?;
        let ca_pem = ca.pem();
        let ca_path = folder.path().join("ca.crt");
        std::fs::write(&ca_path, &ca_pem)?;

        let mut nodes = Vec::new();
        for i in 0..size {
            let node_name = format!("vault-{i}");
            let api_port = base_port + 2 * i as u16;
            let cluster_port = api_port + 1;
            let mut params =
                CertificateParams::new(vec![format!("{node_name}.test"), "localhost".into()])?;
            params
                .subject_alt_names
                .push(SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)));
            params
                .distinguished_name
                .push(DnType::CommonName, &node_name);
            let key = KeyPair::generate()?;
            let cert = params.signed_by(&key, &ca)?;
            let cert_path = folder.path().join(format!("{node_name}.crt"));
            let key_path = folder.path().join(format!("{node_name}.key"));
            std::fs::write(&cert_path, cert.pem())?;
            std::fs::write(&key_path, key.serialize_pem())?;

            let data = folder.path().join(&node_name);
            std::fs::create_dir_all(&data)?;
            let config = folder.path().join(format!("{node_name}.hcl"));
            let hcl = format!(
                r#"ui = false
disable_mlock = true
api_addr = "https://127.0.0.1:{api_port}"
cluster_addr = "https://127.0.0.1:{cluster_port}"
listener "tcp" {{
  address = "127.0.0.1:{api_port}"
  cluster_address = "127.0.0.1:{cluster_port}"
  tls_cert_file = "{cert}"
  tls_key_file = "{key}"
}}
storage "raft" {{
  path = "{data}"
  node_id = "{node_name}"
  performance_multiplier = 1
}}
"#,
                cert = cert_path.display(),
                key = key_path.display(),
                data = data.display(),
            );
            std::fs::write(&config, hcl)?;
            nodes.push(Node {
                log: folder.path().join(format!("{node_name}.log")),
                name: node_name,
                api_port,
                cluster_port,
                config,
                data,
                child: None,
            });
        }

        let mut cluster = Self {
            name: name.to_string(),
            folder,
            bao,
            ca_pem,
            ca_path,
            nodes,
        };
        for i in 0..size {
            cluster.start_node(i)?;
        }
        Ok(cluster)
    }

    /// The folder the cluster's files are in.
    pub fn folder(&self) -> &Path {
        self.folder.path()
    }

    /// Starts node `i` and waits until it listens.
    pub fn start_node(&mut self, i: usize) -> Result<(), BoxError> {
        let node = &mut self.nodes[i];
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&node.log)?;
        let child = Command::new(&self.bao)
            .arg("server")
            .arg(format!("-config={}", node.config.display()))
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()?;
        node.child = Some(child);

        let address = SocketAddr::from((Ipv4Addr::LOCALHOST, node.api_port));
        let start = Instant::now();
        while TcpStream::connect_timeout(&address, Duration::from_millis(200)).is_err() {
            if start.elapsed() > Duration::from_secs(20) {
                return Err(format!("{} did not listen on {address}", node.name).into());
            }
            if let Some(child) = node.child.as_mut()
                && let Some(status) = child.try_wait()?
            {
                let log = std::fs::read_to_string(&node.log).unwrap_or_default();
                return Err(format!("{} exited with {status}: {log}", node.name).into());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }

    /// Kills node `i` (SIGKILL) and waits for it to exit.
    pub fn stop_node(&mut self, i: usize) {
        if let Some(mut child) = self.nodes[i].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Kills and starts node `i` again: it comes back sealed.
    pub fn restart_node(&mut self, i: usize) -> Result<(), BoxError> {
        self.stop_node(i);
        self.start_node(i)
    }

    /// Kills every node, wipes its Raft storage and starts it again: what the reconciler
    /// does to the pods and volumes when a reset is required.
    pub fn reset_all(&mut self) -> Result<(), BoxError> {
        for i in 0..self.nodes.len() {
            self.stop_node(i);
            let data = self.nodes[i].data.clone();
            std::fs::remove_dir_all(&data)?;
            std::fs::create_dir_all(&data)?;
        }
        for i in 0..self.nodes.len() {
            self.start_node(i)?;
        }
        Ok(())
    }

    /// Where each node is reached.
    pub fn endpoints(&self) -> Vec<PodEndpoint> {
        self.nodes
            .iter()
            .map(|node| PodEndpoint {
                pod: node.name.clone(),
                address: SocketAddr::from((Ipv4Addr::LOCALHOST, node.api_port)),
                server_name: format!("{}.test", node.name),
            })
            .collect()
    }

    /// The API ports, in node order.
    pub fn api_ports(&self) -> Vec<u16> {
        self.nodes.iter().map(|node| node.api_port).collect()
    }

    /// One client per node.
    pub fn clients(&self) -> Result<Vec<VaultPodClient>, BoxError> {
        self.endpoints()
            .into_iter()
            .map(|endpoint| {
                VaultPodClient::new(endpoint, self.ca_pem.as_bytes(), Duration::from_secs(10))
                    .map_err(BoxError::from)
            })
            .collect()
    }

    /// The cluster as the unseal functions take it.
    pub fn cluster(&self) -> Result<Cluster, BoxError> {
        Ok(Cluster {
            name: self.name.clone(),
            pods: self.clients()?,
            raft: true,
            ca_pem: self.ca_pem.clone(),
            token: None,
        })
    }

    /// Every server's log so far.
    pub fn logs(&self) -> String {
        self.nodes
            .iter()
            .map(|node| std::fs::read_to_string(&node.log).unwrap_or_default())
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        for i in 0..self.nodes.len() {
            self.stop_node(i);
        }
    }
}

/// A `tracing` writer that keeps everything written, to scan it for secrets.
#[derive(Clone, Default)]
pub struct Capture(Arc<Mutex<Vec<u8>>>);

impl Capture {
    /// Everything written so far.
    pub fn text(&self) -> String {
        let bytes = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        String::from_utf8_lossy(&bytes).into_owned()
    }

    /// Installs a subscriber writing into this capture (and to the test's output) on the
    /// current thread, at debug level for the controller.
    pub fn install(&self) -> tracing::subscriber::DefaultGuard {
        let subscriber = tracing_subscriber::fmt()
            .with_env_filter("vault_controller=debug,info")
            .with_writer(self.clone())
            .with_ansi(false)
            .finish();
        tracing::subscriber::set_default(subscriber)
    }
}

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend_from_slice(buf);
        std::io::stderr().write_all(buf)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Capture {
    type Writer = Capture;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

/// Fails with the first secret found in `text`, naming where it was found but not the
/// secret itself. Keys are checked in hex and base64 forms.
pub fn assert_no_secret(text: &str, secrets: &[String], what: &str) -> Result<(), BoxError> {
    use base64::Engine;
    for secret in secrets.iter().filter(|s| s.len() >= 8) {
        let mut forms = vec![secret.clone()];
        if let Some(bytes) = hex_decode(secret) {
            forms.push(base64::engine::general_purpose::STANDARD.encode(&bytes));
        }
        forms.push(base64::engine::general_purpose::STANDARD.encode(secret.as_bytes()));
        if forms.iter().any(|form| text.contains(form.as_str())) {
            return Err(format!("{what} contains a key or token").into());
        }
    }
    Ok(())
}

fn hex_decode(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}
