//! Every default of the `Vault` resource, and [`default`], which writes them into a resource.
//!
//! The webhook's mutating half, `kubectl vault init` and the controller all call [`default`],
//! so a resource means the same thing whether or not the webhook is installed.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Affinity, PodAffinityTerm, PodAntiAffinity, WeightedPodAffinityTerm,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use serde_json::Value;

use crate::config::VaultConfig;

use crate::spec::Vault;
use crate::unseal::{KubernetesKeyStore, UnsealConfig, UnsealOptions};

/// Pods when `size` is left out.
pub const SIZE: i32 = 1;
/// Vault image when `image` is left out.
pub const IMAGE: &str = "hashicorp/vault:2.0.1";
/// Unseal key shares when `secretShares` is left out.
pub const SECRET_SHARES: i32 = 5;
/// Shares needed to unseal when `secretThreshold` is left out (or `secretShares`, if fewer).
pub const SECRET_THRESHOLD: i32 = 3;
/// How long before expiry a generated certificate is renewed.
pub const TLS_EXPIRY_THRESHOLD: &str = "168h";
/// Folder the TLS certificate is mounted at in the Vault pods.
pub const TLS_MOUNT_PATH: &str = "/vault/tls";
/// The server certificate Vault's listener reads.
pub const TLS_CERT_FILE: &str = "/vault/tls/server.crt";
/// The server key Vault's listener reads.
pub const TLS_KEY_FILE: &str = "/vault/tls/server.key";
/// The CA certificate that clients of Vault trust.
pub const TLS_CA_FILE: &str = "/vault/tls/ca.crt";
/// Listener address when the configuration has no TCP listener.
pub const LISTENER_ADDRESS: &str = "0.0.0.0:8200";
/// Folder of the Vault configuration in the pods.
pub const CONFIG_PATH: &str = "/vault/config";
/// ServiceAccount of the Vault pods when `serviceAccount` is left out.
pub const SERVICE_ACCOUNT: &str = "default";
/// The Service type when `serviceType` is left out.
pub const SERVICE_TYPE: &str = "ClusterIP";
/// Port of Vault's API.
pub const API_PORT: i32 = 8200;
/// Port Vault servers talk to each other on.
pub const CLUSTER_PORT: i32 = 8201;
/// Weight of the preferred anti-affinity that spreads pods over nodes.
pub const HOST_SPREAD_WEIGHT: i32 = 100;
/// Weight of the preferred anti-affinity that spreads pods over zones.
pub const ZONE_SPREAD_WEIGHT: i32 = 50;
/// The node label that names a node.
pub const HOSTNAME_KEY: &str = "kubernetes.io/hostname";
/// The node label that names a zone.
pub const ZONE_KEY: &str = "topology.kubernetes.io/zone";

/// Key of the CA certificate in a TLS Secret.
pub const TLS_CA_KEY: &str = "ca.crt";
/// Key of the server certificate in the Secret the operator generates.
pub const TLS_CERT_KEY: &str = "server.crt";
/// Key of the server key in the Secret the operator generates.
pub const TLS_KEY_KEY: &str = "server.key";
/// Key of the certificate in a `kubernetes.io/tls` Secret (such as cert-manager's).
pub const KUBERNETES_TLS_CERT_KEY: &str = "tls.crt";
/// Key of the private key in a `kubernetes.io/tls` Secret.
pub const KUBERNETES_TLS_KEY_KEY: &str = "tls.key";
/// Name of the API port in `servicePorts`.
pub const API_PORT_NAME: &str = "api-port";
/// Name of the cluster port in `servicePorts`.
pub const CLUSTER_PORT_NAME: &str = "cluster-port";

impl crate::spec::VaultSpec {
    /// The port Vault's API listens on: `servicePorts.api-port`, or 8200.
    pub fn api_port(&self) -> i32 {
        self.service_ports
            .get(API_PORT_NAME)
            .copied()
            .unwrap_or(API_PORT)
    }

    /// The port Vault servers talk to each other on: `servicePorts.cluster-port`, or 8201.
    pub fn cluster_port(&self) -> i32 {
        self.service_ports
            .get(CLUSTER_PORT_NAME)
            .copied()
            .unwrap_or(CLUSTER_PORT)
    }
}

/// Label every object of a `Vault` carries, as Bank-Vaults labels them.
pub const APP_LABEL: &str = "app.kubernetes.io/name";
/// Label naming the `Vault` resource an object belongs to.
pub const CR_LABEL: &str = "vault_cr";

/// The labels that select the pods of the `Vault` named `name`.
pub fn selector_labels(name: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (APP_LABEL.to_string(), "vault".to_string()),
        (CR_LABEL.to_string(), name.to_string()),
    ])
}

/// The name of the Secret that keeps the keys of the `Vault` named `name`.
pub fn unseal_keys_secret_name(name: &str) -> String {
    format!("{name}-unseal-keys")
}

/// The name of the headless Service that gives the pods of the `Vault` named `name` their
/// host names.
pub fn headless_service_name(name: &str) -> String {
    format!("{name}-headless")
}

/// The name of the Service of pod `index` of the `Vault` named `name`, which is also the pod's
/// name, as Bank-Vaults names them.
pub fn pod_service_name(name: &str, index: i32) -> String {
    format!("{name}-{index}")
}

/// The name of the Secret that holds the generated certificate of the `Vault` named `name`.
pub fn tls_secret_name(name: &str) -> String {
    format!("{name}-tls")
}

/// Returns the resource with every default a user may leave out written in. Applying it
/// twice gives the same result as applying it once.
pub fn default(vault: &Vault) -> Vault {
    let mut vault = vault.clone();
    let name = vault.metadata.name.clone();
    let namespace = vault.metadata.namespace.clone();
    let spec = &mut vault.spec;

    spec.size.get_or_insert(SIZE);
    spec.image.get_or_insert_with(|| IMAGE.to_string());

    let spreads = spec.size.unwrap_or(SIZE) > 1;
    let placement_unset = spec.pod_anti_affinity.is_none() && spec.affinity.is_none();
    if let (true, true, Some(name)) = (spreads, placement_unset, name.as_deref()) {
        spec.affinity = Some(spread_affinity(name, spec.node_affinity.clone()));
    }

    if spec.config.tls_enabled() {
        default_tls_listener(&mut spec.config);
        spec.tls_expiry_threshold
            .get_or_insert_with(|| TLS_EXPIRY_THRESHOLD.to_string());
    }

    let unseal = spec.unseal_config.get_or_insert_with(UnsealConfig::default);
    default_unseal_options(unseal.options.get_or_insert_with(UnsealOptions::default));
    if unseal.key_stores().is_empty() {
        unseal.kubernetes = Some(KubernetesKeyStore::default());
    }
    if let Some(secret) = unseal.kubernetes.as_mut() {
        if let (None, Some(name)) = (&secret.secret_name, name.as_deref()) {
            secret.secret_name = Some(unseal_keys_secret_name(name));
        }
        if secret.secret_namespace.is_none() {
            secret.secret_namespace = namespace;
        }
    }

    vault
}

/// Spreads pods over nodes, then zones, where it can, and still schedules them all on a
/// single node: a preferred rule, unlike `podAntiAffinity`'s required one.
fn spread_affinity(
    name: &str,
    node_affinity: Option<k8s_openapi::api::core::v1::NodeAffinity>,
) -> Affinity {
    let term = |weight: i32, topology_key: &str| WeightedPodAffinityTerm {
        weight,
        pod_affinity_term: PodAffinityTerm {
            label_selector: Some(LabelSelector {
                match_labels: Some(selector_labels(name)),
                ..LabelSelector::default()
            }),
            topology_key: topology_key.to_string(),
            ..PodAffinityTerm::default()
        },
    };
    Affinity {
        node_affinity,
        pod_anti_affinity: Some(PodAntiAffinity {
            preferred_during_scheduling_ignored_during_execution: Some(vec![
                term(HOST_SPREAD_WEIGHT, HOSTNAME_KEY),
                term(ZONE_SPREAD_WEIGHT, ZONE_KEY),
            ]),
            ..PodAntiAffinity::default()
        }),
        ..Affinity::default()
    }
}

/// Points the TCP listener at the certificate the operator mounts, adding a listener when
/// the configuration has none (Vault cannot serve without one).
fn default_tls_listener(config: &mut VaultConfig) {
    if config.tcp_listener().is_none() {
        let listener = serde_json::json!({"tcp": {"address": LISTENER_ADDRESS}});
        match config.0.get_mut("listener") {
            Some(Value::Array(listeners)) => listeners.push(listener),
            _ => {
                config.0.insert("listener".to_string(), listener);
            }
        }
    }

    if let Some(tcp) = config.tcp_listener_mut() {
        tcp.entry("tls_cert_file")
            .or_insert_with(|| TLS_CERT_FILE.into());
        tcp.entry("tls_key_file")
            .or_insert_with(|| TLS_KEY_FILE.into());
    }
}

fn default_unseal_options(options: &mut UnsealOptions) {
    let shares = *options.secret_shares.get_or_insert(SECRET_SHARES);
    let threshold = if shares >= 1 {
        SECRET_THRESHOLD.min(shares)
    } else {
        SECRET_THRESHOLD
    };
    options.secret_threshold.get_or_insert(threshold);
    options.pre_flight_checks.get_or_insert(true);
    options.store_root_token.get_or_insert(true);
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn vault(spec: Value) -> Vault {
        let object = json!({
            "apiVersion": "vault.banzaicloud.com/v1alpha1",
            "kind": "Vault",
            "metadata": {"name": "vault", "namespace": "ns"},
            "spec": spec,
        });
        serde_json::from_value(object).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn fills_size_image_unseal_options_and_key_store() {
        let v = default(&vault(json!({"config": {"storage": {"file": {}}}})));
        assert_eq!(v.spec.size, Some(1));
        assert_eq!(v.spec.image.as_deref(), Some(IMAGE));
        let unseal = v.spec.unseal_config.unwrap_or_default();
        let options = unseal.options.unwrap_or_default();
        assert_eq!(options.secret_shares, Some(5));
        assert_eq!(options.secret_threshold, Some(3));
        assert_eq!(options.pre_flight_checks, Some(true));
        assert_eq!(options.store_root_token, Some(true));
        let secret = unseal.kubernetes.unwrap_or_default();
        assert_eq!(secret.secret_name.as_deref(), Some("vault-unseal-keys"));
        assert_eq!(secret.secret_namespace.as_deref(), Some("ns"));
    }

    #[test]
    fn threshold_never_exceeds_fewer_shares() {
        let v = vault(json!({"unsealConfig": {"options": {"secretShares": 1}}}));
        let options = default(&v)
            .spec
            .unseal_config
            .and_then(|u| u.options)
            .unwrap_or_default();
        assert_eq!(options.secret_threshold, Some(1));
    }

    #[test]
    fn another_key_store_gets_no_secret() {
        let v = vault(json!({"unsealConfig": {"aws": {"s3Bucket": "b"}}}));
        let unseal = default(&v).spec.unseal_config.unwrap_or_default();
        assert!(unseal.kubernetes.is_none());
    }

    #[test]
    fn several_pods_get_a_preferred_spread_with_node_affinity_folded_in() {
        let node_affinity = json!({"requiredDuringSchedulingIgnoredDuringExecution":
            {"nodeSelectorTerms": [{"matchExpressions":
                [{"key": "disk", "operator": "In", "values": ["ssd"]}]}]}});
        let v = default(&vault(json!({"size": 3, "nodeAffinity": node_affinity})));
        let affinity = v.spec.affinity.unwrap_or_default();
        assert!(affinity.node_affinity.is_some());
        let anti = affinity.pod_anti_affinity.unwrap_or_default();
        assert!(
            anti.required_during_scheduling_ignored_during_execution
                .is_none()
        );
        let terms = anti
            .preferred_during_scheduling_ignored_during_execution
            .unwrap_or_default();
        let keys: Vec<_> = terms
            .iter()
            .map(|t| (t.weight, t.pod_affinity_term.topology_key.as_str()))
            .collect();
        assert_eq!(keys, [(100, HOSTNAME_KEY), (50, ZONE_KEY)]);
        let selector = terms[0]
            .pod_affinity_term
            .label_selector
            .clone()
            .unwrap_or_default();
        assert_eq!(selector.match_labels, Some(selector_labels("vault")));
    }

    #[test]
    fn a_users_placement_is_kept() {
        let own = default(&vault(json!({"size": 3, "podAntiAffinity": ZONE_KEY})));
        assert!(own.spec.affinity.is_none());
        assert_eq!(own.spec.pod_anti_affinity.as_deref(), Some(ZONE_KEY));

        let single = default(&vault(json!({"size": 1})));
        assert!(single.spec.affinity.is_none());
    }

    #[test]
    fn tls_points_the_listener_at_the_mounted_certificate() {
        let v = default(&vault(
            json!({"config": {"listener": {"tcp": {"address": ":8200"}}}}),
        ));
        let tcp = v.spec.config.tcp_listener().cloned().unwrap_or_default();
        assert_eq!(tcp["tls_cert_file"], TLS_CERT_FILE);
        assert_eq!(tcp["tls_key_file"], TLS_KEY_FILE);
        assert_eq!(tcp["address"], ":8200");
        assert_eq!(v.spec.tls_expiry_threshold.as_deref(), Some("168h"));
    }

    #[test]
    fn a_config_without_listener_gets_a_tls_one() {
        let v = default(&vault(json!({"config": {"storage": {"raft": {}}}})));
        assert_eq!(v.spec.config.listener_address(), Some(LISTENER_ADDRESS));
        assert!(v.spec.config.tls_enabled());
    }

    #[test]
    fn tls_off_adds_no_tls_fields() {
        let config = json!({"listener": {"tcp": {"address": ":8200", "tls_disable": true}}});
        let v = default(&vault(json!({"config": config})));
        let tcp = v.spec.config.tcp_listener().cloned().unwrap_or_default();
        assert!(!tcp.contains_key("tls_cert_file"));
        assert!(v.spec.tls_expiry_threshold.is_none());
    }
}
