//! Vault pods reached where their addresses lead: from inside the cluster's network
//! namespace, by `ip netns exec lc-<name> curl`. The test process runs on the host, where a
//! pod address would leave the machine, so it never dials one itself.

use std::process::Stdio;

use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::Client;
use kube::api::Api;
use serde_json::Value;
use tokio::io::AsyncWriteExt;

use crate::Error;

/// How long one request to a pod may take.
const REQUEST_TIMEOUT_SECONDS: &str = "5";

/// The pods of one `Vault`, spoken to over TLS as a client that trusts only the CA the
/// controller made for it (the Secret `<name>-tls`), by the names its certificate carries.
pub struct VaultPods {
    client: Client,
    netns: String,
    namespace: String,
    ca_file: tempfile::NamedTempFile,
}

impl VaultPods {
    /// The pods of the `Vault` `name` in `namespace`. Its CA is read now: make another after
    /// the Vault is re-created, as its Secret is re-made with a new CA.
    pub async fn new(
        cluster: &localcluster::LocalCluster,
        namespace: &str,
        name: &str,
    ) -> Result<Self, Error> {
        let client = cluster.client();
        let secret_name = format!("{name}-tls");
        let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
        let secret = secrets
            .get(&secret_name)
            .await
            .map_err(|e| Error::Kube(format!("reading Secret {namespace}/{secret_name}"), e))?;
        let ca = secret_value(&secret, "ca.crt").ok_or_else(|| Error::Command {
            command: format!("reading Secret {namespace}/{secret_name}"),
            reason: "it has no ca.crt".into(),
        })?;
        let ca_file = tempfile::NamedTempFile::new()
            .map_err(|e| Error::Io("making a file for the CA".into(), e))?;
        std::fs::write(ca_file.path(), ca)
            .map_err(|e| Error::Io(format!("writing {}", ca_file.path().display()), e))?;
        Ok(Self {
            client,
            netns: cluster.layout().netns(),
            namespace: namespace.to_string(),
            ca_file,
        })
    }

    /// The pod's address, from its status.
    pub async fn address(&self, pod: &str) -> Result<String, Error> {
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), &self.namespace);
        let found = pods
            .get(pod)
            .await
            .map_err(|e| Error::Kube(format!("reading pod {}/{pod}", self.namespace), e))?;
        found
            .status
            .and_then(|s| s.pod_ip)
            .ok_or_else(|| Error::Command {
                command: format!("reading pod {}/{pod}", self.namespace),
                reason: "it has no address yet".into(),
            })
    }

    /// `GET /v1/<path>` of the pod, with `token` if given; the JSON body (`null` when empty).
    pub async fn get(&self, pod: &str, path: &str, token: Option<&str>) -> Result<Value, Error> {
        self.request(pod, path, token, None).await
    }

    /// `POST /v1/<path>` of the pod with `body`, with `token` if given.
    pub async fn post(
        &self,
        pod: &str,
        path: &str,
        token: Option<&str>,
        body: &Value,
    ) -> Result<Value, Error> {
        self.request(pod, path, token, Some(body)).await
    }

    /// `sys/seal-status` of the pod.
    pub async fn seal_status(&self, pod: &str) -> Result<Value, Error> {
        self.get(pod, "sys/seal-status", None).await
    }

    /// Whether the pod says it is the active node (`sys/leader`'s `is_self`).
    pub async fn is_leader(&self, pod: &str) -> Result<bool, Error> {
        let leader = self.get(pod, "sys/leader", None).await?;
        Ok(leader["is_self"] == true)
    }

    async fn request(
        &self,
        pod: &str,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> Result<Value, Error> {
        let ip = self.address(pod).await?;
        let host = format!("{pod}.{}.svc", self.namespace);
        let method = if body.is_some() { "POST" } else { "GET" };
        let what = format!("{method} /v1/{path} of {}/{pod} at {ip}", self.namespace);

        let mut command = tokio::process::Command::new("ip");
        command
            .args(["netns", "exec", &self.netns, "curl", "-sS", "--max-time"])
            .arg(REQUEST_TIMEOUT_SECONDS)
            .arg("--cacert")
            .arg(self.ca_file.path())
            .args(["--resolve", &format!("{host}:8200:{ip}")])
            .args(["-w", "\n%{http_code}"]);
        if token.is_some() {
            // From standard input, so that the token is in no process's arguments.
            command.args(["-H", "@-"]);
        }
        if let Some(body) = body {
            command
                .args(["-X", "POST", "-H", "Content-Type: application/json"])
                .args(["--data-raw", &body.to_string()]);
        }
        let mut child = command
            .arg(format!("https://{host}:8200/v1/{path}"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| Error::Io(format!("running curl in {} for {what}", self.netns), e))?;
        if let Some(mut stdin) = child.stdin.take() {
            if let Some(token) = token {
                let header = format!("X-Vault-Token: {token}\n");
                stdin
                    .write_all(header.as_bytes())
                    .await
                    .map_err(|e| Error::Io(what.clone(), e))?;
            }
            drop(stdin);
        }
        let output = child
            .wait_with_output()
            .await
            .map_err(|e| Error::Io(what.clone(), e))?;
        let stdout = String::from_utf8_lossy(&output.stdout);
        let (text, code) = stdout.rsplit_once('\n').unwrap_or(("", stdout.as_ref()));
        if !output.status.success() || !code.starts_with('2') {
            let stderr = String::from_utf8_lossy(&output.stderr);
            return Err(Error::Command {
                command: what,
                reason: format!("HTTP {code}: {} {}", text.trim(), stderr.trim()),
            });
        }
        if text.trim().is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_str(text).map_err(|e| Error::Command {
            command: what,
            reason: format!("the body is no JSON: {e}"),
        })
    }
}

/// The host pid of a running container of the pod (the first, or the one named): the local
/// cluster runs containers as host processes and gives their pid as the container ID
/// (`localcluster://<pid>`).
pub fn container_pid(pod: &Pod, container: Option<&str>) -> Option<i32> {
    let statuses = pod.status.as_ref()?.container_statuses.as_ref()?;
    let status = match container {
        Some(name) => statuses.iter().find(|s| s.name == name)?,
        None => statuses.first()?,
    };
    status
        .container_id
        .as_deref()?
        .strip_prefix("localcluster://")?
        .parse()
        .ok()
}

/// A key of a Secret, as text.
pub fn secret_value(secret: &Secret, key: &str) -> Option<String> {
    let bytes = secret.data.as_ref()?.get(key)?;
    String::from_utf8(bytes.0.clone()).ok()
}

/// Runs `curl` with `args` in the network namespace `netns`, for servers that only pods
/// and that namespace reach; gives the HTTP status code and the body.
pub async fn curl(netns: &str, args: &[&str]) -> Result<(u16, String), Error> {
    let what = format!("curl {} in {netns}", args.join(" "));
    let output = tokio::process::Command::new("ip")
        .args(["netns", "exec", netns, "curl", "-sS", "--max-time"])
        .arg(REQUEST_TIMEOUT_SECONDS)
        .args(["-w", "\n%{http_code}"])
        .args(args)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|e| Error::Io(what.clone(), e))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let (body, code) = stdout.rsplit_once('\n').unwrap_or(("", stdout.as_ref()));
    if !output.status.success() {
        return Err(Error::Command {
            command: what,
            reason: String::from_utf8_lossy(&output.stderr).trim().to_string(),
        });
    }
    let code = code.trim().parse().map_err(|_| Error::Command {
        command: what,
        reason: format!("no status code in {code:?}"),
    })?;
    Ok((code, body.to_string()))
}
