//! The build step from YAML fixtures: every shared Bank-Vaults sample, and small resources
//! that each exercise one rule.

use std::path::PathBuf;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{Container, EnvVar, PodSpec, Probe};
use vault_api::documents::read_vaults;
use vault_api::{Vault, default, validate};

use super::*;

/// The shared samples: `../shared/samples/bank-vaults` beside the checkout, or the folder
/// `VAULT_SAMPLES_DIR` names (as the api crate's sample tests find them).
fn samples_dir() -> PathBuf {
    match std::env::var_os("VAULT_SAMPLES_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/samples/bank-vaults"),
    }
}

/// The resource as the controller sees it: read, placed in a namespace, defaulted.
fn prepared(mut vault: Vault) -> Vault {
    vault
        .metadata
        .namespace
        .get_or_insert_with(|| "ns".to_string());
    vault.metadata.uid = Some("0000-uid".to_string());
    default(&vault)
}

fn from_yaml(yaml: &str) -> Vault {
    let documents = read_vaults(yaml).unwrap_or_else(|e| panic!("fixture is not YAML: {e}"));
    let document = documents.into_iter().next().map(|d| d.vault);
    match document {
        Some(Ok(vault)) => prepared(vault),
        other => panic!("fixture is not a Vault: {other:?}"),
    }
}

fn built(yaml: &str) -> Desired {
    build(&from_yaml(yaml), &BuildOptions::default())
        .unwrap_or_else(|e| panic!("building the fixture: {e}"))
}

fn pod_of(set: &StatefulSet) -> PodSpec {
    let template = set.spec.template.clone();
    template.spec.unwrap_or_default()
}

fn container<'a>(pod: &'a PodSpec, name: &str) -> &'a Container {
    pod.containers
        .iter()
        .find(|c| c.name == name)
        .unwrap_or_else(|| panic!("no container {name}"))
}

fn env<'a>(container: &'a Container, name: &str) -> Option<&'a EnvVar> {
    container.env.iter().flatten().find(|e| e.name == name)
}

fn probe_target(probe: &Option<Probe>) -> (String, String, i32) {
    let get = probe.clone().and_then(|p| p.http_get).unwrap_or_default();
    let port = match get.port {
        IntOrString::Int(port) => port,
        IntOrString::String(_) => 0,
    };
    (
        get.scheme.unwrap_or_default(),
        get.path.unwrap_or_default(),
        port,
    )
}

use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

const RAFT: &str = r#"
apiVersion: vault.banzaicloud.com/v1alpha1
kind: Vault
metadata: {name: vault, namespace: ns}
spec:
  size: 3
  image: openbao/openbao:2.7.0
  serviceRegistrationEnabled: true
  config:
    storage: {raft: {path: /vault/file}}
    listener: {tcp: {address: "0.0.0.0:8200"}}
    cluster_addr: "https://${.Env.POD_NAME}:8201"
"#;

#[test]
fn every_shared_sample_builds_valid_objects() {
    let mut files: Vec<PathBuf> = std::fs::read_dir(samples_dir())
        .unwrap_or_else(|e| panic!("reading {}: {e}", samples_dir().display()))
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| {
            path.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("cr"))
        })
        .collect();
    files.sort();
    assert!(files.len() >= 8, "samples found: {files:?}");

    let mut built_count = 0;
    for file in &files {
        let text = std::fs::read_to_string(file)
            .unwrap_or_else(|e| panic!("reading {}: {e}", file.display()));
        let documents =
            read_vaults(&text).unwrap_or_else(|e| panic!("{}: not YAML: {e}", file.display()));
        for document in documents {
            let vault = document
                .vault
                .unwrap_or_else(|e| panic!("{}: not a Vault: {e}", file.display()));
            let vault = prepared(vault);
            if validate(&vault, None).is_err() {
                // Invalid samples are the api crate's to report; the controller never
                // builds them.
                continue;
            }
            built_count += 1;
            let desired = build(&vault, &BuildOptions::default())
                .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
            let name = vault.metadata.name.clone().unwrap_or_default();
            let size = vault.spec.size.unwrap_or(1);
            let set = &desired.stateful_set;
            assert_eq!(set.metadata.name.as_deref(), Some(name.as_str()));
            assert_eq!(set.spec.replicas, Some(size));
            let pod = pod_of(set);
            let vault_container = container(&pod, "vault");
            let args = vault_container.args.clone().unwrap_or_default();
            assert_eq!(
                args,
                ["server", "-config=/vault/config"],
                "{}",
                file.display()
            );
            let init = pod.init_containers.clone().unwrap_or_default();
            assert!(
                init.iter().any(|c| c.name == "vault-config"),
                "{}",
                file.display()
            );
            assert_eq!(
                desired.services.len(),
                2 + size as usize,
                "{}",
                file.display()
            );
            let owner = set.metadata.owner_references.clone().unwrap_or_default();
            assert_eq!(owner[0].kind, "Vault");
            assert_eq!(owner[0].controller, Some(true));
            let config = desired.raw_config.data.clone().unwrap_or_default();
            let config: serde_json::Value = config
                .get(RAW_CONFIG_KEY)
                .map(|bytes| serde_json::from_slice(&bytes.0))
                .unwrap_or_else(|| panic!("no {RAW_CONFIG_KEY} for {}", file.display()))
                .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
            assert!(config.get("listener").is_some(), "{}", file.display());
        }
    }
    // cr-podAntiAffinity.yaml is the one invalid sample.
    assert_eq!(built_count, files.len() - 1, "every valid sample was built");
}

#[test]
fn probes_use_the_listener_scheme_and_never_kill_a_sealed_pod() {
    let desired = built(RAFT);
    let pod = pod_of(&desired.stateful_set);
    let vault = container(&pod, "vault");

    let (scheme, live, port) = probe_target(&vault.liveness_probe);
    assert_eq!((scheme.as_str(), port), ("HTTPS", 8200));
    // Answered with 200 sealed and uninitialised alike (the unseal tests read it from
    // such pods), and only by a process whose storage answers.
    assert_eq!(live, "/v1/sys/seal-status");
    let (_, startup, _) = probe_target(&vault.startup_probe);
    assert_eq!(startup, live);
    let (_, ready, _) = probe_target(&vault.readiness_probe);
    assert!(
        !ready.contains("sealedcode") && !ready.contains("uninitcode"),
        "{ready}"
    );

    let plain = built(
        r#"
apiVersion: vault.banzaicloud.com/v1alpha1
kind: Vault
metadata: {name: v}
spec:
  config:
    storage: {raft: {path: /vault/file}}
    listener: {tcp: {address: "0.0.0.0:8300", tls_disable: true}}
"#,
    );
    let pod = pod_of(&plain.stateful_set);
    let vault = container(&pod, "vault");
    let (scheme, _, port) = probe_target(&vault.readiness_probe);
    assert_eq!((scheme.as_str(), port), ("HTTP", 8300));
    let volumes = pod.volumes.clone().unwrap_or_default();
    assert!(
        !volumes.iter().any(|v| v.name == "vault-tls"),
        "no TLS volume without TLS"
    );
}

#[test]
fn ports_env_and_config_of_a_raft_cluster() {
    let desired = built(RAFT);
    let pod = pod_of(&desired.stateful_set);
    let vault = container(&pod, "vault");

    let ports: Vec<(String, i32)> = vault
        .ports
        .iter()
        .flatten()
        .map(|p| (p.name.clone().unwrap_or_default(), p.container_port))
        .collect();
    assert_eq!(
        ports,
        [
            ("api-port".to_string(), 8200),
            ("cluster-port".to_string(), 8201)
        ]
    );

    for name in [
        "POD_NAME",
        "VAULT_K8S_POD_NAME",
        "VAULT_K8S_NAMESPACE",
        "BAO_K8S_POD_NAME",
        "BAO_K8S_NAMESPACE",
    ] {
        let var = env(vault, name).unwrap_or_else(|| panic!("no {name}"));
        assert!(var.value_from.is_some(), "{name} comes from the pod");
    }
    let api = env(vault, "VAULT_API_ADDR").and_then(|e| e.value.clone());
    assert_eq!(api.as_deref(), Some("https://$(POD_NAME).ns.svc:8200"));
    assert!(env(vault, "VAULT_CLUSTER_ADDR").is_some());

    let spec = desired.stateful_set.spec.clone();
    assert_eq!(spec.pod_management_policy.as_deref(), Some("Parallel"));
    assert_eq!(spec.service_name.as_deref(), Some("vault-headless"));
    let retention = spec
        .persistent_volume_claim_retention_policy
        .unwrap_or_default();
    assert_eq!(retention.when_scaled.as_deref(), Some("Delete"));
    assert_eq!(retention.when_deleted.as_deref(), Some("Retain"));

    let config = render_config(&from_yaml(RAFT)).unwrap_or_default();
    let joins: Vec<&str> = config["storage"]["raft"]["retry_join"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|j| j["leader_api_addr"].as_str())
        .collect();
    assert_eq!(
        joins,
        [
            "https://vault-0.ns.svc:8200",
            "https://vault-1.ns.svc:8200",
            "https://vault-2.ns.svc:8200"
        ]
    );
    assert_eq!(
        config["service_registration"],
        serde_json::json!({"kubernetes": {}})
    );
    assert_eq!(
        config["cluster_addr"], "https://${.Env.POD_NAME}:8201",
        "left to the pod"
    );

    let budget = desired
        .disruption_budget
        .and_then(|b| b.spec)
        .unwrap_or_default();
    assert_eq!(budget.max_unavailable, Some(IntOrString::Int(1)));
}

#[test]
fn services_main_headless_and_one_per_pod() {
    let desired = built(RAFT);
    let names: Vec<String> = desired
        .services
        .iter()
        .filter_map(|s| s.metadata.name.clone())
        .collect();
    assert_eq!(
        names,
        ["vault", "vault-headless", "vault-0", "vault-1", "vault-2"]
    );

    let spec = |i: usize| desired.services[i].spec.clone().unwrap_or_default();
    let main_selector = spec(0).selector.unwrap_or_default();
    assert_eq!(
        main_selector.get("vault-active").map(String::as_str),
        Some("true")
    );
    assert_eq!(spec(0).type_.as_deref(), Some("ClusterIP"));
    assert_eq!(spec(1).cluster_ip.as_deref(), Some("None"));
    let pod_1 = spec(3);
    assert_eq!(pod_1.publish_not_ready_addresses, Some(true));
    let selector = pod_1.selector.unwrap_or_default();
    assert_eq!(
        selector
            .get("statefulset.kubernetes.io/pod-name")
            .map(String::as_str),
        Some("vault-1")
    );
    assert_eq!(selector.get("vault_cr").map(String::as_str), Some("vault"));

    assert_eq!(per_pod_service_index("vault", "vault-12"), Some(12));
    assert_eq!(per_pod_service_index("vault", "vault-headless"), None);
    assert_eq!(per_pod_service_index("vault", "vault-01"), None);
    assert_eq!(per_pod_service_index("vault", "vaultx-1"), None);
}

#[test]
fn pod_anti_affinity_is_a_required_rule_over_the_vault_pods() {
    let path = samples_dir().join("cr-podAntiAffinity.yaml");
    let text = std::fs::read_to_string(&path).unwrap_or_default();
    let desired = built(&text);
    let affinity = pod_of(&desired.stateful_set).affinity.unwrap_or_default();
    let terms = affinity
        .pod_anti_affinity
        .and_then(|a| a.required_during_scheduling_ignored_during_execution)
        .unwrap_or_default();
    assert_eq!(terms.len(), 1);
    assert_eq!(
        terms[0].topology_key,
        "failure-domain.beta.kubernetes.io/zone"
    );
    let selector = terms[0].label_selector.clone().unwrap_or_default();
    assert_eq!(
        selector.match_labels,
        Some(vault_api::defaults::selector_labels("vault"))
    );

    // Several pods and no placement: the api crate's preferred spread, used as is.
    let spread = pod_of(&built(RAFT).stateful_set)
        .affinity
        .unwrap_or_default();
    let preferred = spread
        .pod_anti_affinity
        .and_then(|a| a.preferred_during_scheduling_ignored_during_execution)
        .unwrap_or_default();
    assert_eq!(preferred.len(), 2);

    let node_only = built(
        r#"
apiVersion: vault.banzaicloud.com/v1alpha1
kind: Vault
metadata: {name: v}
spec:
  nodeAffinity:
    requiredDuringSchedulingIgnoredDuringExecution:
      nodeSelectorTerms: [{matchExpressions: [{key: disk, operator: In, values: [ssd]}]}]
  config: {storage: {raft: {path: /vault/file}}}
"#,
    );
    let affinity = pod_of(&node_only.stateful_set).affinity.unwrap_or_default();
    assert!(affinity.node_affinity.is_some() && affinity.pod_anti_affinity.is_none());
}

#[test]
fn pod_and_container_specs_merge_by_container_name() {
    let desired = built(
        r#"
apiVersion: vault.banzaicloud.com/v1alpha1
kind: Vault
metadata: {name: v}
spec:
  config: {storage: {raft: {path: /vault/file}}}
  vaultEnvsConfig: [{name: VAULT_LOG_LEVEL, value: debug}]
  sidecarEnvsConfig: [{name: VAULT_ADDR, value: "https://127.0.0.1:8200"}]
  vaultContainers: [{name: exporter, image: busybox}]
  vaultInitContainers: [{name: chown, image: busybox}]
  volumes: [{name: extra, emptyDir: {}}]
  volumeMounts: [{name: extra, mountPath: /extra}]
  vaultContainerSpec:
    name: vault
    lifecycle: {preStop: {exec: {command: [sleep, "1"]}}}
  vaultPodSpec:
    hostAliases: [{ip: 127.0.0.1, hostnames: [vault.local]}]
    containers:
      - name: vault
        workingDir: /tmp
      - name: exporter
        args: [--verbose]
"#,
    );
    let pod = pod_of(&desired.stateful_set);
    let names: Vec<&str> = pod.containers.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["vault", "exporter"]);

    let vault = container(&pod, "vault");
    assert!(vault.lifecycle.is_some(), "vaultContainerSpec merged");
    assert_eq!(
        vault.working_dir.as_deref(),
        Some("/tmp"),
        "vaultPodSpec container merged"
    );
    assert_eq!(
        vault.args.clone().unwrap_or_default()[0],
        "server",
        "the rest is kept"
    );
    assert!(env(vault, "VAULT_LOG_LEVEL").is_some());
    assert!(env(vault, "POD_NAME").is_some());
    let mounts: Vec<&str> = vault
        .volume_mounts
        .iter()
        .flatten()
        .map(|m| m.mount_path.as_str())
        .collect();
    assert_eq!(mounts, ["/vault/config", "/vault/tls", "/extra"]);

    let exporter = container(&pod, "exporter");
    assert_eq!(exporter.image.as_deref(), Some("busybox"));
    assert_eq!(exporter.args.clone().unwrap_or_default(), ["--verbose"]);
    assert!(env(exporter, "VAULT_ADDR").is_some());

    let init: Vec<String> = pod
        .init_containers
        .iter()
        .flatten()
        .map(|c| c.name.clone())
        .collect();
    assert_eq!(init, ["chown", "vault-config"]);
    assert!(pod.host_aliases.is_some());
    let volumes: Vec<&str> = pod
        .volumes
        .iter()
        .flatten()
        .map(|v| v.name.as_str())
        .collect();
    assert_eq!(
        volumes,
        ["vault-raw-config", "vault-config", "vault-tls", "extra"]
    );
}

#[test]
fn raft_sample_claims_resources_tls_secret_and_auth_delegator() {
    let path = samples_dir().join("cr-raft.yaml");
    let desired = built(&std::fs::read_to_string(&path).unwrap_or_default());
    let set = desired.stateful_set.spec.clone();
    let claims = set.volume_claim_templates.unwrap_or_default();
    assert_eq!(claims[0].metadata.name.as_deref(), Some("vault-raft"));

    let pod = pod_of(&desired.stateful_set);
    let vault = container(&pod, "vault");
    let limits = vault
        .resources
        .clone()
        .and_then(|r| r.limits)
        .unwrap_or_default();
    assert_eq!(limits.get("cpu").map(|q| q.0.as_str()), Some("200m"));
    let tls = pod
        .volumes
        .iter()
        .flatten()
        .find(|v| v.name == "vault-tls")
        .cloned();
    let secret = tls.and_then(|v| v.secret).unwrap_or_default();
    assert_eq!(secret.secret_name.as_deref(), Some("vault-tls"));

    let binding = desired.auth_delegator.unwrap_or_default();
    assert_eq!(binding.role_ref.name, "system:auth-delegator");
    let subject = binding.subjects.unwrap_or_default();
    assert_eq!(subject[0].name, "vault");
    assert_eq!(subject[0].namespace.as_deref(), Some("ns"));

    let labels = desired.services[0]
        .metadata
        .labels
        .clone()
        .unwrap_or_default();
    assert_eq!(
        labels.get("example.com/log-format").map(String::as_str),
        Some("json")
    );
    assert!(desired.ingress.is_some());
}

#[test]
fn a_service_monitor_scrapes_each_pod_once_through_the_headless_service() {
    assert!(built(RAFT).service_monitor.is_none(), "only when asked for");

    let desired = built(&format!("{RAFT}  serviceMonitorEnabled: true\n"));
    let monitor = desired.service_monitor.unwrap_or_default();
    assert_eq!(monitor["kind"], "ServiceMonitor");
    assert_eq!(monitor["metadata"]["ownerReferences"][0]["kind"], "Vault");
    let selector = &monitor["spec"]["selector"]["matchLabels"];
    assert_eq!(selector[SCRAPE_LABEL], "true");
    let endpoint = &monitor["spec"]["endpoints"][0];
    assert_eq!(endpoint["path"], "/v1/sys/metrics");
    assert_eq!(endpoint["params"]["format"][0], "prometheus");
    assert_eq!(
        endpoint["scheme"], "https",
        "TLS is on unless the listener disables it"
    );
    assert_eq!(endpoint["tlsConfig"]["insecureSkipVerify"], true);

    let selected: Vec<String> = desired
        .services
        .iter()
        .filter(|service| {
            let labels = service.metadata.labels.clone().unwrap_or_default();
            selector
                .as_object()
                .into_iter()
                .flatten()
                .all(|(key, value)| labels.get(key).map(String::as_str) == value.as_str())
        })
        .filter_map(|service| service.metadata.name.clone())
        .collect();
    assert_eq!(selected, ["vault-headless"]);
}
