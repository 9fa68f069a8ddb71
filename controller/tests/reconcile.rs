//! The controller against the local cluster: `cr-raft.yaml` becomes its objects; deleted
//! or edited children come back at once; deleting the `Vault` keeps keys and claims; a
//! Bank-Vaults StatefulSet is taken over; the raft sample is initialised and unsealed. The
//! controller runs in the test process, except where it must reach pod addresses: then it
//! runs as its own process inside the cluster's network namespace, as in a pod.
//!
//! Run: `LOCALCLUSTER_NAME=rec cargo test -p vault-controller --test reconcile`, with the
//! `vault-controller` binary built into the target folder the cluster was started from.

use std::future::Future;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Secret, Service, ServiceAccount};
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client, Resource, ResourceExt};
use serde_json::json;
use tokio::task::JoinHandle;
use vault_api::Vault;
use vault_controller::reconcile::{ControllerOptions, run};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Well above every wait here, so a restored object proves the watch, not the requeue.
const REQUEUE: Duration = Duration::from_secs(600);
/// How quickly a deleted child must come back.
const RESTORE_WITHIN: Duration = Duration::from_secs(30);

/// Installs the CRD (server-side apply, so parallel tests agree) and waits until served.
async fn install_crd(client: &Client) -> Result<(), BoxError> {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let params = PatchParams::apply("reconcile-test").force();
    crds.patch(
        "vaults.vault.banzaicloud.com",
        &params,
        &Patch::Apply(vault_api::crd()),
    )
    .await?;
    let vaults: Api<Vault> = Api::all(client.clone());
    wait_for(
        "the Vault CRD to be served",
        Duration::from_secs(30),
        || async { Ok(vaults.list(&ListParams::default().limit(1)).await.is_ok()) },
    )
    .await
}

/// Runs the controller over one namespace on a task of the test.
fn spawn_controller(client: &Client, namespace: &str) -> JoinHandle<()> {
    let options = ControllerOptions {
        namespaces: vec![namespace.to_string()],
        requeue: REQUEUE,
        // The test runs on the host, where pod addresses lead to the default route.
        operate_vault: false,
        ..ControllerOptions::default()
    };
    tokio::spawn(run(client.clone(), options, std::future::pending::<()>()))
}

async fn wait_for<F, Fut>(what: &str, limit: Duration, mut check: F) -> Result<(), BoxError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<bool, BoxError>>,
{
    let started = Instant::now();
    loop {
        if check().await? {
            return Ok(());
        }
        if started.elapsed() > limit {
            return Err(format!("timed out after {limit:?} waiting for {what}").into());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// `cr-raft.yaml`, moved into `namespace`: its namespace-pinned fields (the keys Secret's
/// namespace, `api_addr`, the auth role's bound namespaces) name it instead.
fn raft_sample(namespace: &str) -> Result<Vault, BoxError> {
    Ok(e2e::sample_in("cr-raft.yaml", namespace)?)
}

async fn uid_of<K>(api: &Api<K>, name: &str) -> Result<Option<String>, BoxError>
where
    K: Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    Ok(api.get_opt(name).await?.and_then(|o| o.meta().uid.clone()))
}

/// The uids of the claims in the namespace of `pvcs`.
async fn claim_uids(pvcs: &Api<PersistentVolumeClaim>) -> Result<Vec<String>, BoxError> {
    let claims = pvcs.list(&ListParams::default()).await?.items;
    Ok(claims
        .iter()
        .filter_map(|c| c.metadata.uid.clone())
        .collect())
}

/// Deletes an object and measures how long until one of the same name is back.
async fn deleted_comes_back<K>(api: &Api<K>, name: &str) -> Result<Duration, BoxError>
where
    K: Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let before = uid_of(api, name)
        .await?
        .ok_or(format!("{name} is not there"))?;
    let started = Instant::now();
    api.delete(name, &DeleteParams::background()).await?;
    wait_for(&format!("{name} to come back"), RESTORE_WITHIN, || async {
        Ok(uid_of(api, name).await?.is_some_and(|uid| uid != before))
    })
    .await?;
    Ok(started.elapsed())
}

/// The cluster (kept for the test's length), its client, and a fresh namespace.
async fn set_up(prefix: &str) -> Result<(localcluster::LocalCluster, Client, String), BoxError> {
    localcluster::install_crypto_provider();
    // The controller's logs, shown when a test fails.
    let _ = tracing_subscriber::fmt()
        .with_env_filter("info,vault_controller=debug")
        .with_test_writer()
        .try_init();
    let cluster = localcluster::LocalCluster::start().await?;
    let client = cluster.client();
    install_crd(&client).await?;
    let ns = localcluster::test_namespace(&client, prefix).await?;
    Ok((cluster, client, ns))
}

#[tokio::test]
async fn raft_sample_objects_are_created_restored_and_released() -> Result<(), BoxError> {
    let (_cluster, client, ns) = set_up("reconcile").await?;
    let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), &ns);
    let account = serde_json::from_value(json!({"metadata": {"name": "vault"}}))?;
    accounts.create(&PostParams::default(), &account).await?;
    // What the key store would have written: not owned by the Vault, so it must survive.
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
    let keys = serde_json::from_value(json!({"metadata": {"name": "vault-unseal-keys"}}))?;
    secrets.create(&PostParams::default(), &keys).await?;

    let controller = spawn_controller(&client, &ns);
    let vaults: Api<Vault> = Api::namespaced(client.clone(), &ns);
    vaults
        .create(&PostParams::default(), &raft_sample(&ns)?)
        .await?;

    let sets: Api<StatefulSet> = Api::namespaced(client.clone(), &ns);
    let services: Api<Service> = Api::namespaced(client.clone(), &ns);
    let budgets: Api<PodDisruptionBudget> = Api::namespaced(client.clone(), &ns);
    // cr-raft.yaml asks for an Ingress, and its kubernetes auth needs token review.
    let ingresses: Api<k8s_openapi::api::networking::v1::Ingress> =
        Api::namespaced(client.clone(), &ns);
    let bindings: Api<k8s_openapi::api::rbac::v1::ClusterRoleBinding> = Api::all(client.clone());
    let binding = vault_controller::build::auth_delegator_name(&ns, "vault");
    wait_for(
        "the objects of cr-raft.yaml",
        Duration::from_secs(60),
        || async {
            let names = ["vault", "vault-headless", "vault-0", "vault-1", "vault-2"];
            for name in names {
                if services.get_opt(name).await?.is_none() {
                    return Ok(false);
                }
            }
            Ok(sets.get_opt("vault").await?.is_some()
                && secrets.get_opt("vault-raw-config").await?.is_some()
                && budgets.get_opt("vault").await?.is_some()
                && ingresses.get_opt("vault").await?.is_some()
                && bindings.get_opt(&binding).await?.is_some())
        },
    )
    .await?;

    let set = sets.get("vault").await?;
    let spec = set.spec.clone();
    assert_eq!(spec.replicas, Some(3));
    assert_eq!(spec.pod_management_policy.as_deref(), Some("Parallel"));
    let pod = spec.template.spec.clone().unwrap_or_default();
    let args = pod.containers[0].args.clone().unwrap_or_default();
    assert_eq!(args, ["server", "-config=/vault/config"]);

    // The pods render their configuration with the controller binary's `template`.
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), &ns);
    wait_for(
        "the claims of the three pods",
        Duration::from_secs(60),
        || async { Ok(pvcs.list(&ListParams::default()).await?.items.len() == 3) },
    )
    .await?;

    // Written through the status subresource: sealed pods are not Ready.
    wait_for("the status", Duration::from_secs(30), || async {
        let status = vaults.get_status("vault").await?.status.unwrap_or_default();
        let ready = status.condition(vault_api::status::READY).cloned();
        Ok(status.nodes.len() == 3
            && ready.is_some_and(|c| c.reason.as_deref() == Some("PodsNotReady")))
    })
    .await?;

    let took = deleted_comes_back(&sets, "vault").await?;
    println!("StatefulSet vault came back in {took:?}");
    let took = deleted_comes_back(&services, "vault-1").await?;
    println!("Service vault-1 came back in {took:?}");
    let took = deleted_comes_back(&secrets, "vault-raw-config").await?;
    println!("Secret vault-raw-config came back in {took:?}");

    let edit = json!({"spec": {"replicas": 1}});
    let started = Instant::now();
    sets.patch("vault", &PatchParams::default(), &Patch::Merge(&edit))
        .await?;
    wait_for(
        "the edited replicas to be reverted",
        RESTORE_WITHIN,
        || async {
            let replicas = sets.get("vault").await?.spec.replicas;
            Ok(replicas == Some(3))
        },
    )
    .await?;
    println!(
        "an edited replicas field was reverted in {:?}",
        started.elapsed()
    );

    // Scaling down removes the Service of the pod that goes, and its claim.
    let smaller = json!({"spec": {"size": 2}});
    vaults
        .patch("vault", &PatchParams::default(), &Patch::Merge(&smaller))
        .await?;
    wait_for("the Service of vault-2 to go", RESTORE_WITHIN, || async {
        let replicas = sets.get("vault").await?.spec.replicas;
        Ok(replicas == Some(2) && services.get_opt("vault-2").await?.is_none())
    })
    .await?;

    // whenScaled: Delete, so the removed peer cannot come back on stale data.
    wait_for(
        "the claim of vault-2 to go",
        Duration::from_secs(60),
        || async { Ok(claim_uids(&pvcs).await?.len() == 2) },
    )
    .await?;
    let claims_before = claim_uids(&pvcs).await?;
    vaults.delete("vault", &DeleteParams::background()).await?;
    wait_for(
        "the owned objects to go",
        Duration::from_secs(60),
        || async {
            Ok(sets.get_opt("vault").await?.is_none()
                && services.get_opt("vault-0").await?.is_none()
                && services.get_opt("vault").await?.is_none()
                && secrets.get_opt("vault-raw-config").await?.is_none()
                && budgets.get_opt("vault").await?.is_none()
                && bindings.get_opt(&binding).await?.is_none())
        },
    )
    .await?;
    assert!(
        secrets.get_opt("vault-unseal-keys").await?.is_some(),
        "unseal keys kept"
    );
    assert_eq!(claims_before, claim_uids(&pvcs).await?, "claims kept");

    controller.abort();
    Ok(())
}

#[tokio::test]
async fn a_bank_vaults_stateful_set_is_taken_over() -> Result<(), BoxError> {
    let (_cluster, client, ns) = set_up("takeover").await?;

    let vaults: Api<Vault> = Api::namespaced(client.clone(), &ns);
    let vault: Vault = serde_json::from_value(json!({
        "apiVersion": "vault.banzaicloud.com/v1alpha1",
        "kind": "Vault",
        "metadata": {"name": "vault", "namespace": ns},
        "spec": {
            "size": 1,
            "image": "openbao/openbao:2.7.0",
            "config": {
                "storage": {"raft": {"path": "/vault/file"}},
                "listener": {"tcp": {"address": "0.0.0.0:8200", "tls_disable": true}},
            },
            "volumeClaimTemplates": [{"metadata": {"name": "vault-raft"}, "spec": {
                "accessModes": ["ReadWriteOnce"],
                "resources": {"requests": {"storage": "1Gi"}}}}],
            "volumeMounts": [{"name": "vault-raft", "mountPath": "/vault/file"}],
        },
    }))?;
    let vault = vaults.create(&PostParams::default(), &vault).await?;

    // The StatefulSet Bank-Vaults made, owned by the Vault as Bank-Vaults owns it.
    let fixture = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/bank-vaults-statefulset.yaml");
    let mut old: StatefulSet = serde_saphyr::from_str(&std::fs::read_to_string(fixture)?)?;
    old.metadata.owner_references = vault.controller_owner_ref(&()).map(|o| vec![o]);
    let sets: Api<StatefulSet> = Api::namespaced(client.clone(), &ns);
    let old = sets.create(&PostParams::default(), &old).await?;
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), &ns);
    wait_for("the Bank-Vaults claim", Duration::from_secs(60), || async {
        Ok(pvcs.get_opt("vault-raft-vault-0").await?.is_some())
    })
    .await?;
    let claim = uid_of(&pvcs, "vault-raft-vault-0").await?;

    let started = Instant::now();
    let controller = spawn_controller(&client, &ns);
    wait_for(
        "the StatefulSet to be recreated",
        Duration::from_secs(60),
        || async {
            let Some(set) = sets.get_opt("vault").await? else {
                return Ok(false);
            };
            let spec = set.spec.clone();
            Ok(set.uid() != old.uid() && spec.service_name.as_deref() == Some("vault-headless"))
        },
    )
    .await?;
    println!("taken over in {:?}", started.elapsed());

    let set = sets.get("vault").await?;
    let spec = set.spec;
    assert_eq!(spec.pod_management_policy.as_deref(), Some("Parallel"));
    assert_eq!(
        uid_of(&pvcs, "vault-raft-vault-0").await?,
        claim,
        "the claim survives"
    );

    let events: Api<Event> = Api::namespaced(client.clone(), &ns);
    wait_for("the takeover Event", Duration::from_secs(10), || async {
        let events = events.list(&ListParams::default()).await?;
        Ok(events
            .items
            .iter()
            .any(|e| e.reason.as_deref() == Some("TakingOverStatefulSet")))
    })
    .await?;

    controller.abort();
    Ok(())
}

#[tokio::test]
async fn an_invalid_vault_is_reported_and_not_acted_on() -> Result<(), BoxError> {
    let (_cluster, client, ns) = set_up("invalid").await?;
    let controller = spawn_controller(&client, &ns);
    let vaults: Api<Vault> = Api::namespaced(client.clone(), &ns);
    // Three pods on storage without HA, which the api crate refuses.
    let vault: Vault = serde_json::from_value(json!({
        "apiVersion": "vault.banzaicloud.com/v1alpha1",
        "kind": "Vault",
        "metadata": {"name": "broken", "namespace": ns},
        "spec": {"size": 3, "config": {"storage": {"file": {"path": "/vault/file"}}}},
    }))?;
    vaults.create(&PostParams::default(), &vault).await?;

    wait_for(
        "Ready=False with reason Invalid",
        Duration::from_secs(30),
        || async {
            let status = vaults
                .get_status("broken")
                .await?
                .status
                .unwrap_or_default();
            let ready = status.condition(vault_api::status::READY).cloned();
            let invalid = |c: &vault_api::status::Condition| {
                c.status == "False" && c.reason.as_deref() == Some("Invalid")
            };
            Ok(ready.as_ref().is_some_and(invalid))
        },
    )
    .await?;
    let events: Api<Event> = Api::namespaced(client.clone(), &ns);
    let events = events.list(&ListParams::default()).await?;
    let note = events
        .items
        .iter()
        .find(|e| e.reason.as_deref() == Some("Invalid"))
        .and_then(|e| e.note.clone())
        .ok_or("no Invalid Event")?;
    assert!(
        note.contains("spec.size"),
        "the Event names the field: {note}"
    );
    let sets: Api<StatefulSet> = Api::namespaced(client.clone(), &ns);
    assert!(sets.get_opt("broken").await?.is_none(), "nothing built");

    controller.abort();
    Ok(())
}

/// The text of one key of a Secret.
fn secret_text(secret: &Secret, key: &str) -> Option<String> {
    let value = secret.data.as_ref()?.get(key)?;
    String::from_utf8(value.0.clone()).ok()
}

/// The DNS and IP names of a PEM certificate.
fn certificate_names(pem: &str) -> Result<Vec<String>, BoxError> {
    let (_, block) = x509_parser::pem::parse_x509_pem(pem.as_bytes())?;
    let cert = block.parse_x509()?;
    let mut names = Vec::new();
    if let Some(san) = cert.subject_alternative_name()? {
        for name in &san.value.general_names {
            match name {
                x509_parser::extensions::GeneralName::DNSName(dns) => names.push(dns.to_string()),
                x509_parser::extensions::GeneralName::IPAddress(bytes) => {
                    if let Ok(octets) = <[u8; 4]>::try_from(*bytes) {
                        names.push(std::net::Ipv4Addr::from(octets).to_string());
                    }
                }
                _ => {}
            }
        }
    }
    Ok(names)
}

/// `GET /v1/sys/seal-status` of a pod from inside the cluster's network namespace, as a
/// client that trusts only `ca_file` and dials `host` at `ip`; the body, or why it failed.
fn seal_status_as(
    cluster: &localcluster::LocalCluster,
    ca_file: &std::path::Path,
    host: &str,
    ip: &str,
) -> Result<serde_json::Value, String> {
    vault_get(cluster, ca_file, host, ip, "sys/seal-status", None)
}

/// `GET /v1/<path>` of a pod from inside the cluster's network namespace, as a client that
/// trusts only `ca_file`, dials `host` at `ip` and sends `token`; the body, or why it
/// failed.
fn vault_get(
    cluster: &localcluster::LocalCluster,
    ca_file: &std::path::Path,
    host: &str,
    ip: &str,
    path: &str,
    token: Option<&str>,
) -> Result<serde_json::Value, String> {
    let netns = cluster.layout().netns();
    let mut command = std::process::Command::new("ip");
    command
        .args([
            "netns",
            "exec",
            &netns,
            "curl",
            "-sS",
            "--fail",
            "--max-time",
            "5",
        ])
        .arg("--cacert")
        .arg(ca_file)
        .args(["--resolve", &format!("{host}:8200:{ip}")]);
    if token.is_some() {
        // From stdin, so the token is in no process's arguments.
        command.args(["-H", "@-"]);
        command.stdin(std::process::Stdio::piped());
    }
    command
        .arg(format!("https://{host}:8200/v1/{path}"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = command
        .spawn()
        .map_err(|e| format!("running curl in {netns}: {e}"))?;
    if let (Some(token), Some(mut stdin)) = (token, child.stdin.take()) {
        use std::io::Write;
        writeln!(stdin, "X-Vault-Token: {token}").map_err(|e| e.to_string())?;
    }
    let output = child.wait_with_output().map_err(|e| e.to_string())?;
    if !output.status.success() {
        return Err(String::from_utf8_lossy(&output.stderr).trim().to_string());
    }
    serde_json::from_slice(&output.stdout).map_err(|e| e.to_string())
}

/// The certificate a pod serves on 8200, PEM, read from inside the cluster's network
/// namespace; `None` when the pod does not answer.
fn served_certificate(cluster: &localcluster::LocalCluster, ip: &str) -> Option<String> {
    let output = std::process::Command::new("ip")
        .args(["netns", "exec", &cluster.layout().netns()])
        .args(["openssl", "s_client", "-connect", &format!("{ip}:8200")])
        .stdin(std::process::Stdio::null())
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&output.stdout);
    let begin = text.find("-----BEGIN CERTIFICATE-----")?;
    let end_marker = "-----END CERTIFICATE-----";
    let end = text[begin..].find(end_marker)? + begin + end_marker.len();
    Some(text[begin..end].to_string())
}

#[tokio::test]
async fn generated_certificates_are_served_renewed_and_their_ca_copied() -> Result<(), BoxError> {
    let (cluster, client, ns) = set_up("tls").await?;
    let other = localcluster::test_namespace(&client, "tls-ca").await?;
    let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), &ns);
    let account = serde_json::from_value(json!({"metadata": {"name": "vault"}}))?;
    accounts.create(&PostParams::default(), &account).await?;

    let controller = spawn_controller(&client, &ns);
    let vaults: Api<Vault> = Api::namespaced(client.clone(), &ns);
    let mut vault = raft_sample(&ns)?;
    vault.spec.ca_namespaces = vec![other.clone(), "no-such-namespace".to_string()];
    vaults.create(&PostParams::default(), &vault).await?;

    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
    wait_for("Secret vault-tls", Duration::from_secs(60), || async {
        let Some(secret) = secrets.get_opt("vault-tls").await? else {
            return Ok(false);
        };
        let keys = ["ca.crt", "ca.key", "server.crt", "server.key"];
        Ok(keys.iter().all(|key| secret_text(&secret, key).is_some()))
    })
    .await?;
    let first = secrets.get("vault-tls").await?;
    let ca = secret_text(&first, "ca.crt").ok_or("no ca.crt")?;
    let server = secret_text(&first, "server.crt").ok_or("no server.crt")?;
    let names = certificate_names(&server)?;
    for wanted in [
        "vault".to_string(),
        format!("vault.{ns}.svc.cluster.local"),
        format!("vault-2.{ns}.svc"),
        format!("vault-1.vault-headless.{ns}.svc"),
        "localhost".to_string(),
    ] {
        assert!(names.contains(&wanted), "{wanted} missing from {names:?}");
    }

    // Every pod serves that certificate, and it verifies under each of the pod's names.
    let folder = tempfile::tempdir()?;
    let ca_file = folder.path().join("ca.crt");
    std::fs::write(&ca_file, &ca)?;
    let pods: Api<k8s_openapi::api::core::v1::Pod> = Api::namespaced(client.clone(), &ns);
    for i in 0..3 {
        let pod = format!("vault-{i}");
        let address = |pod: Option<k8s_openapi::api::core::v1::Pod>| {
            pod.and_then(|p| p.status).and_then(|s| s.pod_ip)
        };
        wait_for(
            &format!("{pod} to have an address"),
            Duration::from_secs(90),
            || async { Ok(address(pods.get_opt(&pod).await?).is_some()) },
        )
        .await?;
        let ip = address(pods.get_opt(&pod).await?).unwrap_or_default();
        let hosts = [
            pod.clone(),
            format!("{pod}.{ns}"),
            format!("{pod}.{ns}.svc"),
            format!("{pod}.{ns}.svc.cluster.local"),
            format!("{pod}.vault-headless.{ns}.svc"),
        ];
        for host in hosts {
            let mut last = String::new();
            let verified = wait_for(&format!("{host} to serve"), Duration::from_secs(60), || {
                let answer = seal_status_as(&cluster, &ca_file, &host, &ip);
                if let Err(error) = &answer {
                    last = error.clone();
                }
                async move { Ok(answer.is_ok_and(|body| body["sealed"].is_boolean())) }
            })
            .await;
            verified.map_err(|e| format!("{e}; curl said: {last}"))?;
        }
    }

    // Only `ca.crt` is copied into caNamespaces; a missing namespace is an Event, no error.
    let copies: Api<Secret> = Api::namespaced(client.clone(), &other);
    wait_for("the CA copy", RESTORE_WITHIN, || async {
        Ok(copies.get_opt("vault-tls").await?.is_some())
    })
    .await?;
    let copy = copies.get("vault-tls").await?;
    let copied_keys: Vec<&String> = copy
        .data
        .as_ref()
        .map(|d| d.keys().collect())
        .unwrap_or_default();
    assert_eq!(copied_keys, ["ca.crt"]);
    assert_eq!(secret_text(&copy, "ca.crt").as_deref(), Some(ca.as_str()));
    assert!(
        copy.metadata.annotations.is_none(),
        "no annotations are copied"
    );
    let events: Api<Event> = Api::namespaced(client.clone(), &ns);
    wait_for("the missing namespace Event", RESTORE_WITHIN, || async {
        let events = events.list(&ListParams::default()).await?;
        Ok(events
            .items
            .iter()
            .any(|e| e.reason.as_deref() == Some("CaNamespaceMissing")))
    })
    .await?;

    // A new name renews the server certificate under the same CA and marks the pod
    // template, so the StatefulSet rolls the pods onto it.
    let sets: Api<StatefulSet> = Api::namespaced(client.clone(), &ns);
    let digest = |set: &StatefulSet| {
        let meta = set.spec.template.metadata.clone().unwrap_or_default();
        meta.annotations
            .unwrap_or_default()
            .get(vault_controller::reconcile::TLS_DIGEST_ANNOTATION)
            .cloned()
    };
    let digest_before = digest(&sets.get("vault").await?);
    assert!(
        digest_before.is_some(),
        "the pod template names the certificate"
    );
    let hosts = json!({"spec": {"tlsAdditionalHosts": ["vault.example.test", "192.0.2.10"]}});
    vaults
        .patch("vault", &PatchParams::default(), &Patch::Merge(&hosts))
        .await?;
    wait_for("a renewed server certificate", RESTORE_WITHIN, || async {
        let secret = secrets.get("vault-tls").await?;
        Ok(secret_text(&secret, "server.crt").is_some_and(|cert| cert != server))
    })
    .await?;
    let renewed = secrets.get("vault-tls").await?;
    assert_eq!(
        secret_text(&renewed, "ca.crt").as_deref(),
        Some(ca.as_str()),
        "CA kept"
    );
    let names = certificate_names(&secret_text(&renewed, "server.crt").unwrap_or_default())?;
    assert!(names.iter().any(|n| n == "vault.example.test"), "{names:?}");
    assert!(names.iter().any(|n| n == "192.0.2.10"), "{names:?}");
    wait_for("the pod template to change", RESTORE_WITHIN, || async {
        Ok(digest(&sets.get("vault").await?).is_some_and(|d| Some(d) != digest_before))
    })
    .await?;
    // That the rolled pods serve it, unsealed, is shown where the controller unseals them
    // (raft_sample_is_unsealed_and_stays_so_through_restart_renewal_and_scaling).

    // The finalizer removes the copy, which no owner reference could.
    vaults.delete("vault", &DeleteParams::background()).await?;
    wait_for("the CA copy to go", Duration::from_secs(60), || async {
        Ok(
            copies.get_opt("vault-tls").await?.is_none()
                && vaults.get_opt("vault").await?.is_none(),
        )
    })
    .await?;

    controller.abort();
    Ok(())
}

/// The `vault-controller` binary, run inside the cluster's network namespace with the admin
/// kubeconfig: where a controller pod runs, so pod addresses are reachable. Stopped on drop.
struct ControllerProcess {
    child: std::process::Child,
    log: PathBuf,
    _folder: tempfile::TempDir,
}

impl ControllerProcess {
    fn start(cluster: &localcluster::LocalCluster, namespace: &str) -> Result<Self, BoxError> {
        let folder = tempfile::tempdir()?;
        let log = folder.path().join("controller.log");
        let output = std::fs::File::create(&log)?;
        let child = std::process::Command::new("ip")
            .args(["netns", "exec", &cluster.layout().netns()])
            .arg(env!("CARGO_BIN_EXE_vault-controller"))
            .args(["run", "--no-leader-election", "--namespaces", namespace])
            .args([
                "--metrics-address",
                "127.0.0.1:0",
                "--requeue-seconds",
                "600",
            ])
            .args(["--log-level", "info,vault_controller=debug"])
            .env("KUBECONFIG", cluster.layout().inside_kubeconfig())
            // What a pod is given: where Vault's Kubernetes auth finds the API server.
            .env("KUBERNETES_SERVICE_HOST", localcluster::GATEWAY)
            .env("KUBERNETES_SERVICE_PORT", "443")
            .stdin(std::process::Stdio::null())
            .stdout(output.try_clone()?)
            .stderr(output)
            .spawn()?;
        Ok(Self {
            child,
            log,
            _folder: folder,
        })
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for ControllerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("controller log:\n{}", self.log());
        }
    }
}

/// Whether the status says every one of `size` pods is unsealed and Ready, with a leader.
fn unsealed_with_leader(vault: &Vault, size: usize) -> bool {
    let status = vault.status.clone().unwrap_or_default();
    status.pods.len() == size
        && status.pods.iter().all(|pod| pod.sealed == Some(false))
        && !status.leader.is_empty()
        && status.is_true(vault_api::status::UNSEALED)
        && status.is_true(vault_api::status::READY)
}

#[tokio::test]
async fn raft_sample_is_unsealed_and_stays_so_through_restart_renewal_and_scaling()
-> Result<(), BoxError> {
    let (cluster, client, ns) = set_up("unseal").await?;
    let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), &ns);
    let account = serde_json::from_value(json!({"metadata": {"name": "vault"}}))?;
    accounts.create(&PostParams::default(), &account).await?;
    let controller = ControllerProcess::start(&cluster, &ns)?;

    let vaults: Api<Vault> = Api::namespaced(client.clone(), &ns);
    let started = Instant::now();
    vaults
        .create(&PostParams::default(), &raft_sample(&ns)?)
        .await?;
    let converged = wait_for(
        "three pods unsealed and Ready, with a leader",
        Duration::from_secs(240),
        || async { Ok(unsealed_with_leader(&vaults.get_status("vault").await?, 3)) },
    )
    .await;
    if let Err(error) = converged {
        let status = vaults.get_status("vault").await?.status;
        eprintln!("status: {}", serde_json::to_string_pretty(&status)?);
        eprintln!("controller log:\n{}", controller.log());
        return Err(error);
    }
    println!(
        "cr-raft.yaml: three sealed, uninitialised pods to all unsealed and Ready with a \
         leader in {:?}",
        started.elapsed()
    );
    let status = vaults.get_status("vault").await?.status.unwrap_or_default();
    assert!(status.is_true(vault_api::status::INITIALIZED));
    let tls = status.condition(vault_api::status::TLS).cloned();
    assert_eq!(
        tls.and_then(|c| c.reason).as_deref(),
        Some("GeneratedCA"),
        "the TLS condition says the pods are checked against the generated CA"
    );
    let leaders = status
        .pods
        .iter()
        .filter(|pod| pod.raft_role == Some(vault_api::status::RaftRole::Leader))
        .count();
    assert_eq!(leaders, 1, "one Raft leader among {:?}", status.pods);

    // Every share and the root token are in the Secret, which the Vault does not own.
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
    let keys = secrets.get("vault-unseal-keys").await?;
    assert!(keys.owner_references().is_empty());
    let mut values = Vec::new();
    for name in (0..5)
        .map(|i| format!("vault-unseal-{i}"))
        .chain(["vault-root".to_string()])
    {
        let value = secret_text(&keys, &name).ok_or(format!("{name} is not stored"))?;
        assert!(value.len() >= 20, "{name} looks like a real key or token");
        values.push(value);
    }

    // externalConfig is applied: the policy, the kv engine and the startup secrets.
    let configured = wait_for(
        "externalConfig applied",
        Duration::from_secs(60),
        || async {
            let status = vaults.get_status("vault").await?.status.unwrap_or_default();
            Ok(status.is_true(vault_api::status::CONFIGURED))
        },
    )
    .await;
    if let Err(error) = configured {
        let status = vaults.get_status("vault").await?.status;
        eprintln!("status: {}", serde_json::to_string_pretty(&status)?);
        return Err(error);
    }
    println!(
        "cr-raft.yaml: unsealed and configured {:?} after it was applied",
        started.elapsed()
    );
    let ca_file = controller._folder.path().join("ca.crt");
    std::fs::write(
        &ca_file,
        secret_text(&secrets.get("vault-tls").await?, "ca.crt").unwrap_or_default(),
    )?;
    let root = values.last().cloned().unwrap_or_default();
    let pods: Api<k8s_openapi::api::core::v1::Pod> = Api::namespaced(client.clone(), &ns);
    let read = |path: &'static str| {
        let (pods, cluster, ca_file, root, ns) = (&pods, &cluster, &ca_file, &root, &ns);
        async move {
            let pod = pods.get("vault-0").await?;
            let ip = pod.status.and_then(|s| s.pod_ip).unwrap_or_default();
            let host = format!("vault-0.{ns}.svc");
            vault_get(cluster, ca_file, &host, &ip, path, Some(root)).map_err(BoxError::from)
        }
    };
    let policy = read("sys/policies/acl/allow_secrets").await?;
    assert!(
        policy["data"]["policy"]
            .as_str()
            .is_some_and(|rules| rules.contains("secret/*")),
        "{policy}"
    );
    let role = read("auth/kubernetes/role/default").await?;
    assert_eq!(role["data"]["bound_service_account_names"][0], "default");
    let secret = read("secret/data/accounts/aws").await?;
    assert_eq!(secret["data"]["data"]["AWS_SECRET_ACCESS_KEY"], "s3cr3t");

    // A pod of the namespace logs in with its service-account token through the
    // kubernetes auth role, and reads a startup secret with the token it is given.
    let started_login = Instant::now();
    let login = e2e::reader_pod(&ns, "default", "secret/data/mysql")?;
    pods.create(&PostParams::default(), &login).await?;
    let log = localcluster::agent::pods::log_path(cluster.layout(), &ns, "reader", "reader");
    let read_in_pod = wait_for(
        "a pod to read a startup secret",
        Duration::from_secs(60),
        || async {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            Ok(text.contains("MYSQL_ROOT_PASSWORD"))
        },
    )
    .await;
    if let Err(error) = read_in_pod {
        eprintln!(
            "reader log:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        return Err(error);
    }
    println!(
        "a pod logged in with kubernetes auth and read a startup secret in {:?}",
        started_login.elapsed()
    );

    // A pod that restarts comes back sealed; the pod watch has it unsealed again.
    let old = uid_of(&pods, "vault-1").await?;
    let restarted = Instant::now();
    pods.delete("vault-1", &DeleteParams::default()).await?;
    wait_for(
        "vault-1 to be made again",
        Duration::from_secs(60),
        || async {
            Ok(uid_of(&pods, "vault-1")
                .await?
                .is_some_and(|uid| Some(uid) != old))
        },
    )
    .await?;
    wait_for(
        "vault-1 to be unsealed again",
        Duration::from_secs(120),
        || async {
            let vault = vaults.get_status("vault").await?;
            let ready = pods
                .get("vault-1")
                .await?
                .status
                .and_then(|s| s.conditions)
                .unwrap_or_default()
                .iter()
                .any(|c| c.type_ == "Ready" && c.status == "True");
            Ok(ready && unsealed_with_leader(&vault, 3))
        },
    )
    .await?;
    println!(
        "a deleted pod was back, unsealed and Ready in {:?}",
        restarted.elapsed()
    );

    // A renewed certificate reaches the pods: the StatefulSet rolls them onto it one at a
    // time, each is unsealed again, and each serves the new certificate.
    let served_before = secret_text(&secrets.get("vault-tls").await?, "server.crt")
        .ok_or("vault-tls has no server.crt")?;
    let hosts = json!({"spec": {"tlsAdditionalHosts": ["vault.example.test"]}});
    let rolled = Instant::now();
    vaults
        .patch("vault", &PatchParams::default(), &Patch::Merge(&hosts))
        .await?;
    let sets: Api<StatefulSet> = Api::namespaced(client.clone(), &ns);
    wait_for(
        "every pod to serve the renewed certificate, unsealed",
        Duration::from_secs(300),
        || async {
            let renewed = secret_text(&secrets.get("vault-tls").await?, "server.crt");
            let Some(renewed) = renewed.filter(|cert| *cert != served_before) else {
                return Ok(false);
            };
            let status = sets.get("vault").await?.status.unwrap_or_default();
            if status.update_revision != status.current_revision
                || status.updated_replicas != Some(3)
                || !unsealed_with_leader(&vaults.get_status("vault").await?, 3)
            {
                return Ok(false);
            }
            for pod in pods
                .list(&ListParams::default().labels("vault_cr=vault"))
                .await?
            {
                let ip = pod.status.and_then(|s| s.pod_ip).unwrap_or_default();
                if served_certificate(&cluster, &ip).as_deref() != Some(renewed.trim()) {
                    return Ok(false);
                }
            }
            Ok(true)
        },
    )
    .await?;
    println!(
        "a renewed certificate was served by every pod, all unsealed, in {:?}",
        rolled.elapsed()
    );

    // Scaling up, new peers join and are unsealed; scaling back down, the departed peers
    // leave the Raft configuration, so they no longer count towards the quorum.
    let peers = || async {
        let pod = pods.get("vault-0").await?;
        let ip = pod.status.and_then(|s| s.pod_ip).unwrap_or_default();
        let host = format!("vault-0.{ns}.svc");
        let answer = vault_get(
            &cluster,
            &ca_file,
            &host,
            &ip,
            "sys/storage/raft/configuration",
            Some(&root),
        )?;
        let servers = answer["data"]["config"]["servers"].as_array().cloned();
        Ok::<_, BoxError>(servers.unwrap_or_default().len())
    };
    let scaled = Instant::now();
    let bigger = json!({"spec": {"size": 5}});
    vaults
        .patch("vault", &PatchParams::default(), &Patch::Merge(&bigger))
        .await?;
    wait_for(
        "five pods unsealed and Raft peers",
        Duration::from_secs(240),
        || async {
            Ok(unsealed_with_leader(&vaults.get_status("vault").await?, 5) && peers().await? == 5)
        },
    )
    .await?;
    println!(
        "scaled 3 to 5, all unsealed peers, in {:?}",
        scaled.elapsed()
    );
    let scaled = Instant::now();
    let smaller = json!({"spec": {"size": 3}});
    vaults
        .patch("vault", &PatchParams::default(), &Patch::Merge(&smaller))
        .await?;
    wait_for(
        "three pods and three Raft peers",
        Duration::from_secs(180),
        || async {
            Ok(unsealed_with_leader(&vaults.get_status("vault").await?, 3) && peers().await? == 3)
        },
    )
    .await?;
    println!(
        "scaled 5 to 3, departed peers removed, in {:?}",
        scaled.elapsed()
    );

    // No key or token in the controller's log, the Events or the status.
    let events: Api<Event> = Api::namespaced(client.clone(), &ns);
    let notes: Vec<String> = events
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .filter_map(|event| event.note)
        .collect();
    assert!(
        notes.iter().any(|note| note.starts_with("initialised")),
        "an Event says Vault was initialised: {notes:?}"
    );
    let status = serde_json::to_string(&vaults.get_status("vault").await?.status)?;
    let log = controller.log();
    for value in &values {
        assert!(
            !log.contains(value.as_str()),
            "a secret is in the controller's log"
        );
        assert!(
            !status.contains(value.as_str()),
            "a secret is in the status"
        );
        assert!(
            notes.iter().all(|note| !note.contains(value.as_str())),
            "a secret is in an Event"
        );
    }
    Ok(())
}

#[tokio::test]
async fn a_service_monitor_is_made_where_its_crd_is_installed() -> Result<(), BoxError> {
    let (_cluster, client, ns) = set_up("monitor").await?;
    // The Prometheus Operator's CRD, reduced to what the API server needs to serve it.
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let crd: CustomResourceDefinition = serde_json::from_value(json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "servicemonitors.monitoring.coreos.com"},
        "spec": {
            "group": "monitoring.coreos.com",
            "scope": "Namespaced",
            "names": {"kind": "ServiceMonitor", "plural": "servicemonitors",
                      "singular": "servicemonitor", "listKind": "ServiceMonitorList"},
            "versions": [{"name": "v1", "served": true, "storage": true, "schema": {
                "openAPIV3Schema": {"type": "object",
                                    "x-kubernetes-preserve-unknown-fields": true}}}],
        },
    }))?;
    let params = PatchParams::apply("reconcile-test").force();
    crds.patch(&crd.name_any(), &params, &Patch::Apply(&crd))
        .await?;
    let resource = kube::api::ApiResource {
        group: "monitoring.coreos.com".into(),
        version: "v1".into(),
        api_version: "monitoring.coreos.com/v1".into(),
        kind: "ServiceMonitor".into(),
        plural: "servicemonitors".into(),
    };
    let monitors: Api<kube::api::DynamicObject> =
        Api::namespaced_with(client.clone(), &ns, &resource);
    wait_for("ServiceMonitors served", RESTORE_WITHIN, || async {
        Ok(monitors.list(&ListParams::default()).await.is_ok())
    })
    .await?;

    let controller = spawn_controller(&client, &ns);
    let mut vault = raft_sample(&ns)?;
    vault.spec.service_monitor_enabled = Some(true);
    let vaults: Api<Vault> = Api::namespaced(client.clone(), &ns);
    vaults.create(&PostParams::default(), &vault).await?;
    wait_for("the ServiceMonitor", RESTORE_WITHIN, || async {
        Ok(monitors.get_opt("vault").await?.is_some())
    })
    .await?;
    let monitor = monitors.get("vault").await?;
    assert_eq!(
        monitor.data["spec"]["endpoints"][0]["path"],
        "/v1/sys/metrics"
    );

    let off = json!({"spec": {"serviceMonitorEnabled": false}});
    vaults
        .patch("vault", &PatchParams::default(), &Patch::Merge(&off))
        .await?;
    wait_for("the ServiceMonitor to go", RESTORE_WITHIN, || async {
        Ok(monitors.get_opt("vault").await?.is_none())
    })
    .await?;
    controller.abort();
    Ok(())
}
