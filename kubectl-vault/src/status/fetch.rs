//! Fills a [`StatusReport`] from the cluster: the resources and the status the controller
//! wrote, their pods, and each pod's live seal and leader state asked through the API
//! server's pod proxy (a laptop cannot reach pod addresses), in parallel, each bounded by
//! a timeout.

use std::collections::BTreeMap;
use std::time::Duration;

use futures::future::join_all;
use k8s_openapi::api::core::v1::{Node, Pod, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, ListParams};
use kube::{Client, ResourceExt};
use serde::Deserialize;
use vault_api::status::RaftRole;
use vault_api::{Vault, VaultPodStatus, defaults};

use super::{PodReport, StatusReport, VaultReport};
use crate::cluster::{Cluster, ClusterError, is_not_found};

/// Which Vaults to report on.
#[derive(Clone, Debug)]
pub struct Query {
    /// One Vault by name, else every one.
    pub name: Option<String>,
    /// Every namespace, else the cluster's namespace.
    pub all_namespaces: bool,
    /// How long each pod may take to answer.
    pub pod_timeout: Duration,
}

/// What `/v1/sys/seal-status` says (it answers without a token, sealed or not).
#[derive(Deserialize)]
struct SealStatus {
    initialized: bool,
    sealed: bool,
    #[serde(default)]
    version: Option<String>,
    #[serde(default)]
    storage_type: Option<String>,
}

/// What `/v1/sys/leader` says (without a token; it fails while the pod is sealed).
#[derive(Deserialize)]
struct Leader {
    #[serde(default)]
    ha_enabled: bool,
    #[serde(default)]
    is_self: bool,
}

/// Reads the Vaults the query names and asks their pods how they are.
pub async fn fetch(cluster: &Cluster, query: &Query) -> Result<StatusReport, ClusterError> {
    let vaults = find_vaults(cluster, query).await?;
    let reports = vaults
        .iter()
        .map(|vault| vault_report(cluster, vault, query));
    let reports = join_all(reports).await;
    Ok(StatusReport {
        vaults: reports,
        namespace: (!query.all_namespaces).then(|| cluster.namespace.clone()),
    })
}

/// The names of the Vaults in the cluster's namespace, for completion.
pub async fn vault_names(cluster: &Cluster) -> Result<Vec<String>, ClusterError> {
    let api: Api<Vault> = Api::namespaced(cluster.client.clone(), &cluster.namespace);
    let list = api.list_metadata(&ListParams::default()).await;
    let list = list.map_err(|e| cluster.explain("listing vaults", e))?;
    Ok(list.items.iter().map(|v| v.name_any()).collect())
}

async fn find_vaults(cluster: &Cluster, query: &Query) -> Result<Vec<Vault>, ClusterError> {
    let namespace = &cluster.namespace;
    let api: Api<Vault> = if query.all_namespaces {
        Api::all(cluster.client.clone())
    } else {
        Api::namespaced(cluster.client.clone(), namespace)
    };

    let name = match &query.name {
        Some(name) if !query.all_namespaces => name,
        // With -A, a name is looked for in every namespace.
        _ => {
            let operation = match query.all_namespaces {
                true => "listing vaults in every namespace".to_string(),
                false => format!("listing vaults in namespace {namespace}"),
            };
            let mut vaults = match api.list(&ListParams::default()).await {
                Ok(list) => list.items,
                Err(e) if is_not_found(&e) => return Err(ClusterError::CrdMissing),
                Err(e) => return Err(cluster.explain(&operation, e)),
            };
            if let Some(name) = &query.name {
                vaults.retain(|v| v.name_any() == *name);
                if vaults.is_empty() {
                    return Err(ClusterError::NotFound {
                        what: format!("vault/{name}"),
                        place: "any namespace".to_string(),
                        kind: "vaults".to_string(),
                    });
                }
            }
            return Ok(vaults);
        }
    };

    match api.get(name).await {
        Ok(vault) => Ok(vec![vault]),
        Err(e) if is_not_found(&e) => {
            // A 404 for a name is either a missing resource or a missing CRD; a list of the
            // kind tells which.
            match api.list(&ListParams::default().limit(1)).await {
                Err(e) if is_not_found(&e) => Err(ClusterError::CrdMissing),
                _ => Err(ClusterError::NotFound {
                    what: format!("vault/{name}"),
                    place: format!("namespace {namespace}"),
                    kind: "vaults".to_string(),
                }),
            }
        }
        Err(e) => Err(cluster.explain(&format!("reading vault/{name} in {namespace}"), e)),
    }
}

/// The report of one Vault; what cannot be found out becomes a problem, not an error.
async fn vault_report(cluster: &Cluster, vault: &Vault, query: &Query) -> VaultReport {
    let vault = vault_api::default(vault);
    let name = vault.name_any();
    let namespace = vault
        .namespace()
        .unwrap_or_else(|| cluster.namespace.clone());
    let status = vault.status.clone().unwrap_or_default();
    let mut report = VaultReport {
        name: name.clone(),
        namespace: namespace.clone(),
        size: vault.spec.size.unwrap_or(defaults::SIZE),
        key_store: key_store(&vault),
        conditions: status.conditions.clone(),
        ..VaultReport::default()
    };

    let pods: Api<Pod> = Api::namespaced(cluster.client.clone(), &namespace);
    let selector = defaults::selector_labels(&name)
        .into_iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",");
    let mut pods = match pods.list(&ListParams::default().labels(&selector)).await {
        Ok(list) => list.items,
        Err(e) => {
            let operation = format!("listing the pods of vault/{name}");
            report
                .problems
                .push(cluster.explain(&operation, e).to_string());
            return report.summarise(&status.leader);
        }
    };
    pods.sort_by_key(|pod| pod.name_any());

    let certificate_expiry = match certificate_expiry(cluster, &vault, &namespace).await {
        Ok(expiry) => expiry,
        Err(problem) => {
            report.problems.push(problem);
            None
        }
    };
    let zones = zones(&cluster.client, &pods).await;
    let endpoint = Endpoint {
        client: &cluster.client,
        namespace: &namespace,
        scheme: if vault.spec.config.tls_enabled() {
            "https"
        } else {
            "http"
        },
        port: api_port(&vault),
        timeout: query.pod_timeout,
    };

    let probes = pods.iter().map(|pod| {
        let recorded = status.pods.iter().find(|p| p.name == pod.name_any());
        pod_report(&endpoint, pod, recorded, &zones)
    });
    let (pods, refusals): (Vec<PodReport>, Vec<Option<String>>) =
        join_all(probes).await.into_iter().unzip();
    report.pods = pods;
    // RBAC refuses the pod proxy for every pod alike: said once, with what to ask for.
    if let Some(message) = refusals.into_iter().flatten().next() {
        let refused = ClusterError::Forbidden {
            operation: format!("asking the pods of vault/{name} through the pod proxy"),
            message: format!("{message} (the live seal state needs get on pods/proxy)"),
        };
        report.problems.push(refused.to_string());
    }
    for pod in &mut report.pods {
        pod.certificate_expiry = certificate_expiry.clone();
    }
    report.summarise(&status.leader)
}

/// How to reach Vault's API on the pods of one Vault.
struct Endpoint<'a> {
    client: &'a Client,
    namespace: &'a str,
    scheme: &'static str,
    port: i32,
    timeout: Duration,
}

impl Endpoint<'_> {
    /// `GET` of a Vault API path on a pod, through the API server's pod proxy.
    async fn get<T: serde::de::DeserializeOwned>(
        &self,
        pod: &str,
        path: &str,
    ) -> Result<T, PodError> {
        // The scheme prefix makes the API server speak TLS to the pod.
        let target = match self.scheme {
            "https" => format!("https:{pod}:{}", self.port),
            _ => format!("{pod}:{}", self.port),
        };
        let uri = format!(
            "/api/v1/namespaces/{}/pods/{target}/proxy{path}",
            self.namespace
        );
        let request = http::Request::get(uri)
            .body(Vec::new())
            .map_err(|e| PodError::Other(e.to_string()))?;
        self.client
            .request::<T>(request)
            .await
            .map_err(|e| match e {
                kube::Error::Api(status) if status.is_forbidden() => {
                    PodError::Forbidden(status.message)
                }
                kube::Error::Api(status) => {
                    PodError::Other(format!("{} ({})", status.message, status.code))
                }
                other => PodError::Other(other.to_string()),
            })
    }
}

/// Why a pod's Vault did not answer.
enum PodError {
    /// RBAC refused the pod proxy; the API server's message.
    Forbidden(String),
    /// Anything else, as the row shows it.
    Other(String),
}

/// One pod's row, and the API server's message when RBAC refused the pod proxy.
type PodAnswer = (PodReport, Option<String>);

/// One pod's row: the pod's own state, then Vault's live answer, else what the controller
/// last recorded.
async fn pod_report(
    endpoint: &Endpoint<'_>,
    pod: &Pod,
    recorded: Option<&VaultPodStatus>,
    zones: &BTreeMap<String, String>,
) -> PodAnswer {
    let name = pod.name_any();
    let node = pod.spec.as_ref().and_then(|s| s.node_name.clone());
    let status = pod.status.clone().unwrap_or_default();
    let ready = status
        .conditions
        .iter()
        .flatten()
        .any(|c| c.type_ == "Ready" && c.status == "True");
    let restarts = status
        .container_statuses
        .iter()
        .flatten()
        .map(|c| c.restart_count)
        .sum();
    let mut report = PodReport {
        vault: VaultPodStatus {
            name: name.clone(),
            // Voter comes from the controller's status: the controller reads it from the
            // Raft configuration with its Vault token. Vault tells it to no client without
            // one (Raft configuration, autopilot state), and the plugin holds none.
            voter: recorded.and_then(|r| r.voter),
            ..VaultPodStatus::default()
        },
        zone: node.as_ref().and_then(|n| zones.get(n).cloned()),
        node,
        ready,
        restarts,
        ..PodReport::default()
    };

    let phase = status.phase.unwrap_or_default();
    if phase != "Running" {
        report.unreachable = Some(format!("the pod is {}", phase.to_lowercase()));
        return (report, None);
    }
    let live = tokio::time::timeout(endpoint.timeout, ask_pod(endpoint, &name)).await;
    let mut refused = None;
    match live {
        Ok(Ok(vault)) => {
            report.vault = VaultPodStatus {
                voter: report.vault.voter,
                ..vault
            }
        }
        Ok(Err(PodError::Forbidden(message))) => {
            report.unreachable = Some("the cluster refused the pod proxy".to_string());
            refused = Some(message);
        }
        Ok(Err(PodError::Other(why))) => report.unreachable = Some(why),
        Err(_) => {
            let seconds = endpoint.timeout.as_secs_f32();
            report.unreachable = Some(format!("no answer within {seconds}s"));
        }
    }
    (report, refused)
}

/// Vault's seal state, version and role, from one pod.
async fn ask_pod(endpoint: &Endpoint<'_>, pod: &str) -> Result<VaultPodStatus, PodError> {
    let seal: SealStatus = endpoint.get(pod, "/v1/sys/seal-status").await?;

    // A sealed or uninitialised Vault cannot say who leads; that is not a failure.
    let leader = if seal.sealed {
        None
    } else {
        endpoint.get::<Leader>(pod, "/v1/sys/leader").await.ok()
    };
    let raft = seal.storage_type.as_deref() == Some("raft");
    let raft_role = leader.and_then(|l| match (l.is_self, l.ha_enabled, raft) {
        (true, _, _) => Some(RaftRole::Leader),
        (false, true, true) => Some(RaftRole::Follower),
        (false, true, false) => Some(RaftRole::Standby),
        (false, false, _) => None,
    });
    Ok(VaultPodStatus {
        name: pod.to_string(),
        initialized: Some(seal.initialized),
        sealed: Some(seal.sealed),
        raft_role,
        voter: None,
        version: seal.version,
    })
}

/// The zone of each node the pods run on; nodes the user may not read are left out.
async fn zones(client: &Client, pods: &[Pod]) -> BTreeMap<String, String> {
    let nodes: Api<Node> = Api::all(client.clone());
    let mut names: Vec<String> = pods
        .iter()
        .filter_map(|p| p.spec.as_ref()?.node_name.clone())
        .collect();
    names.sort();
    names.dedup();
    let found = join_all(names.iter().map(|name| nodes.get(name))).await;
    found
        .into_iter()
        .flatten()
        .filter_map(|node| {
            let zone = node.labels().get(defaults::ZONE_KEY)?.clone();
            Some((node.name_any(), zone))
        })
        .collect()
}

/// When the certificate in the Vault's TLS Secret expires; none with TLS off or before the
/// operator wrote the Secret.
async fn certificate_expiry(
    cluster: &Cluster,
    vault: &Vault,
    namespace: &str,
) -> Result<Option<Time>, String> {
    if !vault.spec.config.tls_enabled() {
        return Ok(None);
    }
    let secret_name = vault
        .spec
        .existing_tls_secret_name
        .clone()
        .unwrap_or_else(|| defaults::tls_secret_name(&vault.name_any()));
    let secrets: Api<Secret> = Api::namespaced(cluster.client.clone(), namespace);
    let secret = match secrets.get(&secret_name).await {
        Ok(secret) => secret,
        Err(e) if is_not_found(&e) => return Ok(None),
        Err(e) => {
            let operation = format!("reading the certificate in secret/{secret_name}");
            return Err(cluster.explain(&operation, e).to_string());
        }
    };
    let data = secret.data.unwrap_or_default();
    let Some(pem) = data.get("tls.crt").or_else(|| data.get("server.crt")) else {
        return Ok(None);
    };
    not_after(&pem.0)
        .map(Some)
        .map_err(|e| format!("secret/{secret_name}: {e}"))
}

/// The expiry of the first certificate of a PEM bundle.
pub fn not_after(pem: &[u8]) -> Result<Time, String> {
    let (_, pem) = x509_parser::pem::parse_x509_pem(pem)
        .map_err(|e| format!("the certificate is not PEM: {e}"))?;
    let certificate = pem
        .parse_x509()
        .map_err(|e| format!("the certificate does not parse: {e}"))?;
    let seconds = certificate.validity().not_after.timestamp();
    k8s_openapi::jiff::Timestamp::from_second(seconds)
        .map(Time)
        .map_err(|e| format!("the certificate's expiry is out of range: {e}"))
}

/// The port Vault's API listens on.
fn api_port(vault: &Vault) -> i32 {
    vault
        .spec
        .service_ports
        .get("api-port")
        .copied()
        .unwrap_or(defaults::API_PORT)
}

/// Where the unseal keys are kept, as the resource names it.
fn key_store(vault: &Vault) -> String {
    let store = vault
        .spec
        .unseal_config
        .as_ref()
        .and_then(|u| u.key_store());
    match store {
        Some(store) => store.to_string(),
        None => "several (invalid)".to_string(),
    }
}
