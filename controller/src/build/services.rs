//! Services, the PodDisruptionBudget, the Ingress and the token-review binding of a `Vault`.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::api::networking::v1::{
    Ingress, IngressBackend, IngressServiceBackend, IngressSpec, ServiceBackendPort,
};
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::api::rbac::v1::{ClusterRoleBinding, RoleRef, Subject};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde_json::Value;
use vault_api::defaults;

use super::{Facts, NAMESPACE_LABEL};

/// Label Vault's service registration puts on the active pod, and the main Service selects
/// with it; the controller keeps it too, since OpenBao names it `openbao-active`.
pub const ACTIVE_LABEL: &str = "vault-active";
/// The StatefulSet label naming each pod.
const POD_NAME_LABEL: &str = "statefulset.kubernetes.io/pod-name";
/// Label of the one Service a ServiceMonitor selects: the headless one, which lists every
/// pod once (selecting all the Vault's Services would scrape each pod three times).
pub const SCRAPE_LABEL: &str = "vault.banzaicloud.com/scrape";

/// Name of the headless Service that gives the StatefulSet's pods their host names.
pub fn headless_name(name: &str) -> String {
    format!("{name}-headless")
}

/// The pod index of a per-pod Service `<name>-<i>` of the `Vault` named `name`.
pub fn per_pod_service_index(name: &str, service: &str) -> Option<i32> {
    let index = service.strip_prefix(name)?.strip_prefix('-')?;
    // `-0`, `-1`... but not `-01` or `-headless`.
    let canonical = index == "0" || !index.starts_with('0');
    index.parse().ok().filter(|_| canonical)
}

/// Name of the ClusterRoleBinding of a `Vault`, unique across namespaces.
pub fn auth_delegator_name(namespace: &str, name: &str) -> String {
    format!("vault-{namespace}-{name}-auth-delegator")
}

fn ports(facts: &Facts<'_>) -> Vec<ServicePort> {
    facts
        .service_ports
        .iter()
        .map(|(name, port)| ServicePort {
            name: Some(name.clone()),
            port: *port,
            target_port: Some(IntOrString::Int(*port)),
            protocol: Some("TCP".to_string()),
            ..ServicePort::default()
        })
        .collect()
}

pub(super) fn services(facts: &Facts<'_>) -> Vec<Service> {
    let spec = &facts.vault.spec;
    let mut main_selector = facts.labels();
    if spec.service_registration_enabled == Some(true) {
        // Vault labels the active pod itself, so clients always reach the leader.
        main_selector.insert(ACTIVE_LABEL.to_string(), "true".to_string());
    }
    let main = Service {
        metadata: facts.vault_metadata(facts.name.to_string()),
        spec: Some(ServiceSpec {
            type_: Some(
                spec.service_type
                    .clone()
                    .unwrap_or_else(|| defaults::SERVICE_TYPE.to_string()),
            ),
            load_balancer_ip: spec.load_balancer_ip.clone(),
            selector: Some(main_selector),
            ports: Some(ports(facts)),
            ..ServiceSpec::default()
        }),
        status: None,
    };

    let mut headless_metadata = facts.vault_metadata(headless_name(facts.name));
    if spec.service_monitor_enabled == Some(true) {
        headless_metadata
            .labels
            .get_or_insert_with(BTreeMap::new)
            .insert(SCRAPE_LABEL.to_string(), "true".to_string());
    }
    let headless = Service {
        metadata: headless_metadata,
        spec: Some(ServiceSpec {
            cluster_ip: Some("None".to_string()),
            // Pods must find each other before they are Ready (unsealed), to join Raft.
            publish_not_ready_addresses: Some(true),
            selector: Some(facts.labels()),
            ports: Some(ports(facts)),
            ..ServiceSpec::default()
        }),
        status: None,
    };

    let per_pod = (0..facts.size).map(|index| {
        let pod = format!("{}-{index}", facts.name);
        let mut selector = facts.labels();
        selector.insert(POD_NAME_LABEL.to_string(), pod.clone());
        Service {
            metadata: facts.vault_metadata(pod),
            spec: Some(ServiceSpec {
                // The operator initialises and unseals pods through these, sealed or not.
                publish_not_ready_addresses: Some(true),
                selector: Some(selector),
                ports: Some(ports(facts)),
                ..ServiceSpec::default()
            }),
            status: None,
        }
    });

    [main, headless].into_iter().chain(per_pod).collect()
}

/// Allows as many pods down as Raft can lose and keep quorum: 1 of 3, 2 of 5. A single
/// pod gets none, since any budget would block node drains for good.
pub(super) fn disruption_budget(facts: &Facts<'_>) -> Option<PodDisruptionBudget> {
    if facts.size < 2 {
        return None;
    }
    let tolerated = if facts.is_raft() {
        (facts.size - 1) / 2
    } else {
        // One active node and standbys: losing one at a time is always safe.
        1
    };
    Some(PodDisruptionBudget {
        metadata: facts.metadata(facts.name.to_string()),
        spec: Some(PodDisruptionBudgetSpec {
            max_unavailable: Some(IntOrString::Int(tolerated.max(1))),
            selector: Some(LabelSelector {
                match_labels: Some(facts.labels()),
                ..LabelSelector::default()
            }),
            ..PodDisruptionBudgetSpec::default()
        }),
        status: None,
    })
}

/// The Prometheus Operator's ServiceMonitor, when `serviceMonitorEnabled`: every pod's
/// `/v1/sys/metrics` through the headless Service. Vault answers it without a token only
/// when the listener allows it (`telemetry.unauthenticated_metrics_access`); this operator
/// runs no statsd exporter sidecar as Bank-Vaults does.
pub(super) fn service_monitor(facts: &Facts<'_>) -> Option<Value> {
    if facts.vault.spec.service_monitor_enabled != Some(true) {
        return None;
    }
    let mut selector = facts.labels();
    selector.insert(SCRAPE_LABEL.to_string(), "true".to_string());
    let mut endpoint = serde_json::json!({
        "port": defaults::API_PORT_NAME,
        "path": "/v1/sys/metrics",
        "params": {"format": ["prometheus"]},
        "scheme": facts.scheme(),
        "interval": "30s",
    });
    if facts.tls {
        // Prometheus does not have the Vault's CA; the names are checked by the pods' peers.
        endpoint["tlsConfig"] = serde_json::json!({"insecureSkipVerify": true});
    }
    Some(serde_json::json!({
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "ServiceMonitor",
        "metadata": facts.metadata(facts.name.to_string()),
        "spec": {
            "selector": {"matchLabels": selector},
            "namespaceSelector": {"matchNames": [facts.namespace]},
            "endpoints": [endpoint],
        },
    }))
}

pub(super) fn ingress(facts: &Facts<'_>) -> Option<Ingress> {
    let wanted = facts.vault.spec.ingress.as_ref()?;
    let mut annotations: BTreeMap<String, String> = facts.vault.spec.annotations.clone();
    if facts.tls {
        // The backend protocol of the ingress controllers Bank-Vaults supports.
        for (key, value) in [
            ("nginx.ingress.kubernetes.io/backend-protocol", "HTTPS"),
            (
                "traefik.ingress.kubernetes.io/service.serversscheme",
                "https",
            ),
            ("haproxy.org/server-ssl", "true"),
        ] {
            annotations.insert(key.to_string(), value.to_string());
        }
    }
    annotations.extend(wanted.annotations.clone());

    let spec = wanted
        .spec
        .clone()
        .filter(|spec| *spec != IngressSpec::default())
        .unwrap_or_else(|| IngressSpec {
            default_backend: Some(IngressBackend {
                service: Some(IngressServiceBackend {
                    name: facts.name.to_string(),
                    port: Some(ServiceBackendPort {
                        number: Some(facts.api_port),
                        ..ServiceBackendPort::default()
                    }),
                }),
                ..IngressBackend::default()
            }),
            ..IngressSpec::default()
        });
    Some(Ingress {
        metadata: ObjectMeta {
            annotations: super::non_empty(annotations),
            ..facts.metadata(facts.name.to_string())
        },
        spec: Some(spec),
        status: None,
    })
}

/// Binds the Vault ServiceAccount to `system:auth-delegator`, so kubernetes auth can
/// review tokens: those of `externalConfig`'s roles, and the controller's own, which it
/// logs in with whether or not `externalConfig` names kubernetes auth. Cluster-scoped, so
/// it carries labels instead of an owner reference and the controller removes it when the
/// `Vault` goes.
pub(super) fn auth_delegator(facts: &Facts<'_>) -> Option<ClusterRoleBinding> {
    let mut labels = facts.labels();
    labels.insert(NAMESPACE_LABEL.to_string(), facts.namespace.to_string());
    let service_account = facts
        .vault
        .spec
        .service_account
        .clone()
        .unwrap_or_else(|| defaults::SERVICE_ACCOUNT.to_string());
    Some(ClusterRoleBinding {
        metadata: ObjectMeta {
            name: Some(auth_delegator_name(facts.namespace, facts.name)),
            labels: Some(labels),
            ..ObjectMeta::default()
        },
        role_ref: RoleRef {
            api_group: Some("rbac.authorization.k8s.io".to_string()),
            kind: "ClusterRole".to_string(),
            name: "system:auth-delegator".to_string(),
        },
        subjects: Some(vec![Subject {
            kind: "ServiceAccount".to_string(),
            name: service_account,
            namespace: Some(facts.namespace.to_string()),
            ..Subject::default()
        }]),
    })
}
