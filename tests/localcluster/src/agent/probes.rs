//! Readiness, liveness and startup probes, with their periods and thresholds, as the kubelet
//! runs them: httpGet (HTTP or HTTPS, the certificate not checked), tcpSocket and exec.
//!
//! Pod addresses are reachable only inside the cluster's network namespace, so network
//! probes run on a thread that entered it; exec probes enter the container's namespaces.

use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, Probe};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use tokio::sync::{mpsc, oneshot};

use crate::Error;

/// What a probe found, sent to the pod's worker.
#[derive(Debug)]
pub enum ProbeEvent {
    /// The startup probe succeeded (or there is none).
    Started,
    /// Readiness changed.
    Ready(bool),
    /// The liveness or startup probe failed too often: restart the container.
    Restart(String),
}

/// A network check to make inside the cluster's namespace.
#[derive(Debug)]
enum Check {
    Http {
        url: String,
        headers: Vec<(String, String)>,
    },
    Tcp {
        address: String,
    },
}

/// Runs network checks inside the cluster's network namespace.
#[derive(Clone, Debug)]
pub struct Prober {
    requests: mpsc::UnboundedSender<(Check, Duration, oneshot::Sender<bool>)>,
}

impl Prober {
    /// Starts the prober's thread in `netns`.
    pub fn start(netns: &str) -> Result<Self, Error> {
        let path = std::path::Path::new("/run/netns").join(netns);
        let file = std::fs::File::open(&path).map_err(|e| Error::io("opening", &path, e))?;
        let (requests, mut receiver) =
            mpsc::unbounded_channel::<(Check, Duration, oneshot::Sender<bool>)>();
        std::thread::Builder::new()
            .name("prober".into())
            .spawn(move || {
                if crate::net::enter(&file).is_err() {
                    return;
                }
                let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                else {
                    return;
                };
                let http = reqwest::Client::builder()
                    .tls_danger_accept_invalid_certs(true)
                    .no_proxy()
                    .redirect(reqwest::redirect::Policy::limited(10))
                    .build();
                let Ok(http) = http else { return };
                runtime.block_on(async move {
                    while let Some((check, timeout, reply)) = receiver.recv().await {
                        let http = http.clone();
                        tokio::spawn(async move {
                            let ok = tokio::time::timeout(timeout, run_check(&http, check))
                                .await
                                .unwrap_or(false);
                            let _ = reply.send(ok);
                        });
                    }
                });
            })
            .map_err(|e| Error::Command {
                command: "starting the prober".into(),
                reason: e.to_string(),
            })?;
        Ok(Self { requests })
    }

    async fn check(&self, check: Check, timeout: Duration) -> bool {
        let (reply, answer) = oneshot::channel();
        if self.requests.send((check, timeout, reply)).is_err() {
            return false;
        }
        answer.await.unwrap_or(false)
    }
}

async fn run_check(http: &reqwest::Client, check: Check) -> bool {
    match check {
        Check::Http { url, headers } => {
            let mut request = http.get(&url);
            for (name, value) in headers {
                request = request.header(name, value);
            }
            match request.send().await {
                Ok(response) => (200..400).contains(&response.status().as_u16()),
                Err(_) => false,
            }
        }
        Check::Tcp { address } => tokio::net::TcpStream::connect(address).await.is_ok(),
    }
}

/// Where a container's probes go.
#[derive(Clone, Debug)]
pub struct Target {
    /// The pod's address.
    pub ip: String,
    /// The container's process, whose namespaces exec probes enter.
    pub pid: u32,
}

/// Probes one container until the task is aborted, sending what it finds.
pub async fn watch(
    prober: Prober,
    container: Container,
    target: Target,
    events: mpsc::Sender<ProbeEvent>,
) {
    let startup = container.startup_probe.clone();
    let readiness = container.readiness_probe.clone();
    let liveness = container.liveness_probe.clone();

    if let Some(probe) = &startup
        && !until_threshold(&prober, &container, probe, &target).await
    {
        let _ = events
            .send(ProbeEvent::Restart("Startup probe failed".into()))
            .await;
        return;
    }
    let _ = events.send(ProbeEvent::Started).await;
    if readiness.is_none() {
        let _ = events.send(ProbeEvent::Ready(true)).await;
    }
    if readiness.is_none() && liveness.is_none() {
        return;
    }

    let mut ready = false;
    let (mut passed, mut failed, mut live_fail) = (0, 0, 0);
    let delay = |p: &Option<Probe>| {
        p.as_ref()
            .and_then(|p| p.initial_delay_seconds)
            .unwrap_or(0)
    };
    let first = delay(&readiness).min(delay(&liveness)).max(0) as u64;
    tokio::time::sleep(Duration::from_secs(first)).await;
    loop {
        if let Some(probe) = &readiness {
            let (success, failure) = thresholds(probe);
            if once(&prober, &container, probe, &target).await {
                (passed, failed) = (passed + 1, 0);
            } else {
                (passed, failed) = (0, failed + 1);
            }
            let now_ready = if ready {
                failed < failure
            } else {
                passed >= success
            };
            if now_ready != ready {
                ready = now_ready;
                let _ = events.send(ProbeEvent::Ready(ready)).await;
            }
        }
        if let Some(probe) = &liveness {
            live_fail = if once(&prober, &container, probe, &target).await {
                0
            } else {
                live_fail + 1
            };
            if live_fail >= thresholds(probe).1 {
                let _ = events
                    .send(ProbeEvent::Restart("Liveness probe failed".into()))
                    .await;
                return;
            }
        }
        let period = |p: &Option<Probe>| p.as_ref().and_then(|p| p.period_seconds).unwrap_or(10);
        let next = match (&readiness, &liveness) {
            (Some(_), Some(_)) => period(&readiness).min(period(&liveness)),
            (Some(_), None) => period(&readiness),
            _ => period(&liveness),
        };
        tokio::time::sleep(Duration::from_secs(next.max(1) as u64)).await;
    }
}

/// Runs a probe until it has succeeded `successThreshold` times in a row (true) or failed
/// `failureThreshold` times (false).
async fn until_threshold(
    prober: &Prober,
    container: &Container,
    probe: &Probe,
    target: &Target,
) -> bool {
    let (success, failure) = thresholds(probe);
    let period = probe.period_seconds.unwrap_or(10).max(1) as u64;
    tokio::time::sleep(Duration::from_secs(
        probe.initial_delay_seconds.unwrap_or(0).max(0) as u64,
    ))
    .await;
    let (mut passed, mut failed) = (0, 0);
    loop {
        if once(prober, container, probe, target).await {
            passed += 1;
            failed = 0;
            if passed >= success {
                return true;
            }
        } else {
            passed = 0;
            failed += 1;
            if failed >= failure {
                return false;
            }
        }
        tokio::time::sleep(Duration::from_secs(period)).await;
    }
}

fn thresholds(probe: &Probe) -> (i32, i32) {
    (
        probe.success_threshold.unwrap_or(1).max(1),
        probe.failure_threshold.unwrap_or(3).max(1),
    )
}

/// Runs a probe once.
async fn once(prober: &Prober, container: &Container, probe: &Probe, target: &Target) -> bool {
    let timeout = Duration::from_secs(probe.timeout_seconds.unwrap_or(1).max(1) as u64);
    if let Some(http) = &probe.http_get {
        let Some(port) = port(container, &http.port) else {
            return false;
        };
        let scheme = http
            .scheme
            .as_deref()
            .unwrap_or("HTTP")
            .to_ascii_lowercase();
        let host = http.host.clone().unwrap_or_else(|| target.ip.clone());
        let path = http.path.clone().unwrap_or_else(|| "/".into());
        let path = if path.starts_with('/') {
            path
        } else {
            format!("/{path}")
        };
        let headers = http
            .http_headers
            .iter()
            .flatten()
            .map(|h| (h.name.clone(), h.value.clone()))
            .collect();
        let url = format!("{scheme}://{host}:{port}{path}");
        return prober.check(Check::Http { url, headers }, timeout).await;
    }
    if let Some(tcp) = &probe.tcp_socket {
        let Some(port) = port(container, &tcp.port) else {
            return false;
        };
        let host = tcp.host.clone().unwrap_or_else(|| target.ip.clone());
        return prober
            .check(
                Check::Tcp {
                    address: format!("{host}:{port}"),
                },
                timeout,
            )
            .await;
    }
    if let Some(exec) = &probe.exec {
        let pid = target.pid.to_string();
        let mut command = tokio::process::Command::new("nsenter");
        command
            .args(["-t", &pid, "-m", "-u", "-n", "-r", "-w", "--"])
            .args(exec.command.iter().flatten())
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true);
        return matches!(
            tokio::time::timeout(timeout, command.status()).await,
            Ok(Ok(status)) if status.success()
        );
    }
    true
}

/// A probe's port: a number, or the name of one of the container's ports.
fn port(container: &Container, port: &IntOrString) -> Option<i32> {
    match port {
        IntOrString::Int(number) => Some(*number),
        IntOrString::String(name) => container
            .ports
            .iter()
            .flatten()
            .find(|p| p.name.as_deref() == Some(name))
            .map(|p| p.container_port)
            .or_else(|| name.parse().ok()),
    }
}
