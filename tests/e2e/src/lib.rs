//! The end-to-end suite's helpers: what a scenario needs besides the local cluster.
//!
//! The shared Bank-Vaults samples pin their namespace in several fields (the keys Secret's
//! namespace, `api_addr`, the Kubernetes auth role's bound namespaces). Only one scenario
//! runs a sample unchanged, in `default`; the others each take a namespace of their own,
//! with those fields rewritten for it by [`sample_in`].
//!
//! [`operator`] installs the controller and the webhook from `manifests/` as pods, scoped to
//! the namespaces of one suite; [`inside`] reaches Vault pods from inside the cluster's
//! network namespace, where their addresses lead; [`Kubectl`] runs kubectl and the plugin.

pub mod inside;
pub mod operator;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::{Duration, Instant, SystemTime};

use kube::Client;
use kube::api::{Api, ApiResource, DynamicObject, ListParams, Patch, PatchParams};
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;
use vault_api::Vault;

/// What went wrong driving the cluster.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A request to the API server failed.
    #[error("{0}: {1}")]
    Kube(String, #[source] kube::Error),
    /// A file or a program could not be used.
    #[error("{0}: {1}")]
    Io(String, #[source] std::io::Error),
    /// A program ran and failed.
    #[error("{command}: {reason}")]
    Command {
        /// What was run.
        command: String,
        /// What it said.
        reason: String,
    },
    /// The manifests are not as this suite expects them.
    #[error("manifests: {0}")]
    Manifest(String),
    /// Something did not happen in time.
    #[error("timed out after {limit:?} waiting for {what}")]
    Timeout {
        /// What was waited for.
        what: String,
        /// How long.
        limit: Duration,
    },
    /// The local cluster could not be used.
    #[error(transparent)]
    Cluster(#[from] localcluster::Error),
    /// A sample could not be loaded.
    #[error(transparent)]
    Sample(#[from] SampleError),
}

/// Polls `check` every quarter second until it gives a value, failing after `limit`.
pub async fn wait_for<T, E, F, Fut>(what: &str, limit: Duration, mut check: F) -> Result<T, E>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Option<T>, E>>,
    E: From<Error>,
{
    let started = Instant::now();
    loop {
        if let Some(value) = check().await? {
            return Ok(value);
        }
        if started.elapsed() > limit {
            return Err(Error::Timeout {
                what: what.to_string(),
                limit,
            }
            .into());
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Writes a line straight to the test process's standard error, past the test harness's
/// capture: the suite's measured times and figures show in every `cargo test` run.
pub fn say(line: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr().lock(), "{line}");
}

/// Installs the `Vault` CRD (server-side apply, forced, so that suites running at the same
/// time agree) and waits until it is served.
pub async fn install_crd(client: &Client, manager: &str) -> Result<(), Error> {
    let crds: Api<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition> =
        Api::all(client.clone());
    let params = PatchParams::apply(manager).force();
    crds.patch(
        "vaults.vault.banzaicloud.com",
        &params,
        &Patch::Apply(vault_api::crd()),
    )
    .await
    .map_err(|e| Error::Kube("applying the Vault CRD".into(), e))?;
    let vaults: Api<Vault> = Api::all(client.clone());
    wait_for("the Vault CRD served", Duration::from_secs(30), || async {
        Ok::<_, Error>(
            vaults
                .list(&ListParams::default().limit(1))
                .await
                .ok()
                .map(drop),
        )
    })
    .await
}

/// `Vault`s as JSON, so that what is written is exactly what the caller says.
pub fn vault_api(client: &Client, namespace: &str) -> Api<DynamicObject> {
    Api::namespaced_with(client.clone(), namespace, &ApiResource::erase::<Vault>(&()))
}

/// A valid three-pod Raft `Vault` without TLS, with `unseal` as its `unsealConfig`: what
/// admission checks send.
pub fn raft_vault(namespace: &str, name: &str, unseal: Value) -> DynamicObject {
    DynamicObject::new(name, &ApiResource::erase::<Vault>(&()))
        .within(namespace)
        .data(json!({
            "spec": {
                "size": 3,
                "config": {
                    "storage": {"raft": {"path": "/vault/file"}},
                    "listener": {"tcp": {"address": "0.0.0.0:8200", "tls_disable": true}},
                },
                "volumeMounts": [{"name": "vault-raft", "mountPath": "/vault/file"}],
                "unsealConfig": unseal,
            },
        }))
}

/// A request that passes through admission, retried for up to a minute while it meets
/// another suite's webhook configuration that nothing serves (kubectl-vault's `install`
/// test makes one for a few seconds; it covers every namespace).
pub async fn admit<T, F, Fut>(namespace: &str, request: F) -> Result<T, kube::Error>
where
    F: Fn() -> Fut,
    Fut: Future<Output = Result<T, kube::Error>>,
{
    let started = Instant::now();
    loop {
        let result = request().await;
        match &result {
            Err(kube::Error::Api(status))
                if is_foreign_failure(&status.message, namespace)
                    && started.elapsed() < Duration::from_secs(60) =>
            {
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            _ => return result,
        }
    }
}

/// A webhook call that failed on a configuration whose Service is not in `namespace`.
pub fn is_foreign_failure(message: &str, namespace: &str) -> bool {
    message.contains("failed calling webhook") && !message.contains(&format!(".{namespace}.svc"))
}

/// kubectl and the `kubectl-vault` plugin, run on the host against the cluster's API server
/// (never a pod address).
#[derive(Clone, Debug)]
pub struct Kubectl {
    kubectl: PathBuf,
    kubeconfig: PathBuf,
}

impl Kubectl {
    /// kubectl of the cluster's own build, with its admin kubeconfig.
    pub fn new(cluster: &localcluster::LocalCluster) -> Result<Self, Error> {
        Ok(Self {
            kubectl: cluster.bin_dir()?.join("kubectl"),
            kubeconfig: cluster.kubeconfig(),
        })
    }

    /// Runs kubectl with `args`, `stdin` on its standard input.
    pub async fn run(&self, args: &[&str], stdin: &str) -> Result<Output, Error> {
        run(&self.kubectl, &self.kubeconfig, args, stdin).await
    }

    /// Runs the `kubectl-vault` plugin that this workspace built.
    pub async fn vault(&self, args: &[&str]) -> Result<Output, Error> {
        run(&plugin()?, &self.kubeconfig, args, "").await
    }

    /// `kubectl apply` of `stdin`, retried while it meets another suite's unserved webhook
    /// (see [`admit`]); fails with kubectl's message.
    pub async fn apply(
        &self,
        namespace: &str,
        args: &[&str],
        stdin: &str,
    ) -> Result<String, Error> {
        let mut all = vec!["apply", "-n", namespace];
        all.extend_from_slice(args);
        let started = Instant::now();
        loop {
            let applied = self.run(&all, stdin).await?;
            let stderr = String::from_utf8_lossy(&applied.stderr).into_owned();
            if applied.status.success() {
                return Ok(String::from_utf8_lossy(&applied.stdout).into_owned());
            }
            if !is_foreign_failure(&stderr, namespace)
                || started.elapsed() > Duration::from_secs(60)
            {
                return Err(Error::Command {
                    command: format!("kubectl {}", all.join(" ")),
                    reason: stderr.trim().to_string(),
                });
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
}

async fn run(
    program: &Path,
    kubeconfig: &Path,
    args: &[&str],
    stdin: &str,
) -> Result<Output, Error> {
    let what = || format!("running {} {}", program.display(), args.join(" "));
    let mut child = tokio::process::Command::new(program)
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| Error::Io(what(), e))?;
    if let Some(mut input) = child.stdin.take() {
        input
            .write_all(stdin.as_bytes())
            .await
            .map_err(|e| Error::Io(what(), e))?;
    }
    child
        .wait_with_output()
        .await
        .map_err(|e| Error::Io(what(), e))
}

/// The `kubectl-vault` binary beside this test binary (`<target>/debug/deps/..`), which
/// `cargo test --workspace` builds; `cargo build -p kubectl-vault` when running this package
/// alone.
fn plugin() -> Result<PathBuf, Error> {
    let exe =
        std::env::current_exe().map_err(|e| Error::Io("finding the test binary".into(), e))?;
    let beside = exe
        .parent()
        .and_then(Path::parent)
        .map(|debug| debug.join("kubectl-vault"));
    let from_env = std::env::var_os("CARGO_TARGET_DIR")
        .map(|target| PathBuf::from(target).join("debug/kubectl-vault"));
    beside
        .into_iter()
        .chain(from_env)
        .find(|path| path.is_file())
        .ok_or_else(|| Error::Command {
            command: "finding kubectl-vault".into(),
            reason: format!(
                "not beside {}: build it with `cargo build -p kubectl-vault`",
                exe.display()
            ),
        })
}

/// The last `lines` lines of the log of every container of every pod in `namespace` that
/// logged since `since`, as the local cluster's node agent keeps them
/// (`<cluster>/logs/pods/<ns>_<pod>_<container>.log`, deleted pods' too), each under a
/// heading; with `mentioning`, only the lines that contain it.
pub fn pod_logs(
    cluster: &localcluster::Layout,
    namespace: &str,
    lines: usize,
    since: SystemTime,
    mentioning: Option<&str>,
) -> String {
    let folder = cluster.logs_dir().join("pods");
    let prefix = format!("{namespace}_");
    let Ok(entries) = std::fs::read_dir(&folder) else {
        return format!("(no pod logs in {})\n", folder.display());
    };
    let mut names: Vec<String> = entries
        .filter_map(Result::ok)
        .filter(|e| {
            let modified = e.metadata().and_then(|m| m.modified());
            modified.is_ok_and(|modified| modified >= since)
        })
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with(&prefix))
        .collect();
    names.sort();
    let mut out = String::new();
    for name in names {
        let log = std::fs::read_to_string(folder.join(&name)).unwrap_or_default();
        let kept: Vec<&str> = log
            .lines()
            .filter(|line| mentioning.is_none_or(|text| line.contains(text)))
            .collect();
        let tail = kept[kept.len().saturating_sub(lines)..].join("\n");
        let which = mentioning.map_or(String::new(), |text| format!(" naming {text}"));
        out.push_str(&format!("--- {name}, last {lines} lines{which}:\n{tail}\n"));
    }
    out
}

/// What went wrong loading a sample.
#[derive(Debug, thiserror::Error)]
pub enum SampleError {
    /// The file could not be read.
    #[error("reading sample {0}: {1}")]
    Read(PathBuf, std::io::Error),
    /// The file holds no `Vault`, or one that does not parse.
    #[error("sample {0}: {1}")]
    Parse(PathBuf, String),
}

/// The folder of the shared samples: `VAULT_SAMPLES_DIR`, or `shared/samples/bank-vaults`
/// beside the checkout.
pub fn samples_dir() -> PathBuf {
    match std::env::var_os("VAULT_SAMPLES_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/samples/bank-vaults"),
    }
}

/// What each shared sample must give, as the API crate's rules have it: stored (`None`),
/// or refused at the field path (three pods on `file` storage, which cannot be HA).
pub const SAMPLE_OUTCOMES: &[(&str, Option<&str>)] = &[
    ("cr.yaml", None),
    ("cr-aws.yaml", None),
    ("cr-azure.yaml", None),
    ("cr-gcpkms.yaml", None),
    ("cr-kvv2.yaml", None),
    ("cr-podAntiAffinity.yaml", Some("spec.size")),
    ("cr-raft.yaml", None),
    ("cr-vault-kv-unseal.yaml", None),
];

/// The `Vault` of a shared sample, unchanged.
pub fn sample(file: &str) -> Result<Vault, SampleError> {
    let path = samples_dir().join(file);
    let text = std::fs::read_to_string(&path).map_err(|e| SampleError::Read(path.clone(), e))?;
    let documents = vault_api::documents::read_vaults(&text)
        .map_err(|e| SampleError::Parse(path.clone(), e.to_string()))?;
    let first = documents
        .into_iter()
        .next()
        .ok_or_else(|| SampleError::Parse(path.clone(), "it holds no Vault resource".into()))?;
    first.vault.map_err(|e| SampleError::Parse(path, e))
}

/// The `Vault` of a shared sample, moved to `namespace`: every field that names the sample's
/// own namespace (`default`) names `namespace` instead.
pub fn sample_in(file: &str, namespace: &str) -> Result<Vault, SampleError> {
    let vault = sample(file)?;
    let mut object = serde_json::to_value(&vault)
        .map_err(|e| SampleError::Parse(samples_dir().join(file), e.to_string()))?;
    move_to_namespace(&mut object, namespace);
    serde_json::from_value(object)
        .map_err(|e| SampleError::Parse(samples_dir().join(file), e.to_string()))
}

/// Rewrites the namespace-pinned fields of a `Vault` object from `default` to `namespace`.
pub fn move_to_namespace(object: &mut Value, namespace: &str) {
    object["metadata"]["namespace"] = namespace.into();
    let spec = &mut object["spec"];

    if let Some(secret) = spec.pointer_mut("/unsealConfig/kubernetes/secretNamespace")
        && secret == "default"
    {
        *secret = namespace.into();
    }

    // `api_addr: https://vault.default:8200` names the Service by `<service>.<namespace>`.
    if let Some(Value::String(address)) = spec.pointer_mut("/config/api_addr") {
        *address = address.replace(".default:", &format!(".{namespace}:"));
    }

    let auth = spec
        .pointer_mut("/externalConfig/auth")
        .and_then(Value::as_array_mut);
    for method in auth.into_iter().flatten() {
        let roles = method.get_mut("roles").and_then(Value::as_array_mut);
        for role in roles.into_iter().flatten() {
            let bound = role.get_mut("bound_service_account_namespaces");
            for bound in bound.and_then(Value::as_array_mut).into_iter().flatten() {
                if bound == "default" {
                    *bound = namespace.into();
                }
            }
        }
    }
}

/// A pod that logs in to the Vault `vault` of `namespace` with its own service-account token
/// (the namespace's `default` ServiceAccount) through the main Service and the kubernetes
/// auth role `role`, then prints the secret at `path` (such as `secret/data/mysql`) that it
/// reads with the token it was given, or why it could not. It trusts the Vault's CA from
/// `vault-tls`. Its log is `localcluster::agent::pods::log_path(.., "reader", "reader")`.
pub fn reader_pod(
    namespace: &str,
    role: &str,
    path: &str,
) -> serde_json::Result<k8s_openapi::api::core::v1::Pod> {
    let vault = format!("https://vault.{namespace}.svc:8200/v1");
    let script = format!(
        r#"set -e
jwt=$(cat /var/run/secrets/kubernetes.io/serviceaccount/token)
answer=$(curl -sS --cacert /vault-ca/ca.crt -X POST \
  -d "{{\"role\": \"{role}\", \"jwt\": \"$jwt\"}}" {vault}/auth/kubernetes/login)
token=$(echo "$answer" | sed -n 's/.*"client_token":"\([^"]*\)".*/\1/p')
[ -n "$token" ] || {{ echo "login refused: $answer"; exit 1; }}
curl -sS --cacert /vault-ca/ca.crt -H "X-Vault-Token: $token" {vault}/{path}
"#
    );
    serde_json::from_value(serde_json::json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "reader", "namespace": namespace},
        "spec": {
            "restartPolicy": "OnFailure",
            "containers": [{
                "name": "reader",
                "image": "alpine",
                "command": ["sh", "-c", script],
                "volumeMounts": [{"name": "vault-ca", "mountPath": "/vault-ca"}],
            }],
            "volumes": [{"name": "vault-ca", "secret": {
                "secretName": "vault-tls", "items": [{"key": "ca.crt", "path": "ca.crt"}]}}],
        },
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_raft_sample_moves_to_a_namespace_of_its_own() {
        let vault = sample_in("cr-raft.yaml", "e2e-a").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(vault.metadata.namespace.as_deref(), Some("e2e-a"));
        let unseal = vault.spec.unseal_config.clone().unwrap_or_default();
        let secret = unseal.kubernetes.unwrap_or_default();
        assert_eq!(secret.secret_namespace.as_deref(), Some("e2e-a"));
        assert_eq!(vault.spec.config.0["api_addr"], "https://vault.e2e-a:8200");
        let roles = &vault.spec.external_config.0["auth"][0]["roles"][0];
        assert_eq!(
            roles["bound_service_account_namespaces"],
            serde_json::json!(["e2e-a", "vswh"])
        );
        assert_eq!(roles["name"], "default", "only namespaces change");
    }

    #[test]
    fn the_sample_itself_is_unchanged() {
        let vault = sample("cr-raft.yaml").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            vault.spec.config.0["api_addr"],
            "https://vault.default:8200"
        );
        assert!(vault.metadata.namespace.is_none());
    }
}
