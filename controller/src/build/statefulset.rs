//! The Vault StatefulSet `<name>`: the server container, the init container that renders
//! the configuration per pod, and everything the user adds.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{
    StatefulSet, StatefulSetPersistentVolumeClaimRetentionPolicy, StatefulSetSpec,
};
use k8s_openapi::api::core::v1::{
    Affinity, Capabilities, Container, ContainerPort, EmptyDirVolumeSource, EnvVar, EnvVarSource,
    HTTPGetAction, ObjectFieldSelector, PersistentVolumeClaim, PodAffinityTerm, PodAntiAffinity,
    PodSecurityContext, PodSpec, PodTemplateSpec, Probe, ResourceRequirements, SecretVolumeSource,
    SecurityContext, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use vault_api::defaults;

use super::config::RAW_CONFIG_KEY;
use super::merge::merge_typed;
use super::{BuildError, BuildOptions, Facts, non_empty};

/// Name of the Vault server container, which `vaultContainerSpec` and a `vaultPodSpec`
/// container of the same name merge into.
pub const VAULT_CONTAINER: &str = "vault";
/// Name of the init container that renders the configuration.
pub const CONFIG_CONTAINER: &str = "vault-config";
/// Where the raw configuration Secret is mounted in the init container.
const RAW_CONFIG_PATH: &str = "/vault/raw-config";
/// Annotation on the pod template with a digest of the configuration.
pub const CONFIG_HASH_ANNOTATION: &str = "vault.banzaicloud.com/config-hash";
/// Group of the `vault` user in the Vault and OpenBao images, so it can write the claims.
const VAULT_GROUP: i64 = 1000;

/// Query for the liveness and startup probes: the seal status answers 200 in every state,
/// so a sealed or uninitialised pod, which is waiting for the operator, is never killed.
/// Unlike `sys/health` it reads the seal configuration from storage, so a process whose
/// storage is stuck (seen once with OpenBao after a Raft join raced an unseal: health
/// answered, every other call hung) fails it and is restarted.
const LIVE_QUERY: &str = "/v1/sys/seal-status";
/// Health query for readiness: only an unsealed, initialised active node or standby is
/// ready (sealed answers 503 and uninitialised 501).
const READY_QUERY: &str = "/v1/sys/health?standbyok=true&perfstandbyok=true";

pub(super) fn stateful_set(
    facts: &Facts<'_>,
    options: &BuildOptions,
    config_hash: &str,
) -> Result<StatefulSet, BuildError> {
    let spec = &facts.vault.spec;
    let pod_meta = {
        let mut meta = facts.vault_metadata(String::new());
        meta.name = None;
        meta.namespace = None;
        meta.owner_references = None;
        let annotations = meta.annotations.get_or_insert_with(BTreeMap::new);
        annotations.insert(CONFIG_HASH_ANNOTATION.to_string(), config_hash.to_string());
        meta
    };

    let mut pod = PodSpec {
        containers: containers(facts)?,
        init_containers: Some(init_containers(facts, options)),
        volumes: Some(volumes(facts)),
        affinity: affinity(facts),
        node_selector: non_empty(spec.node_selector.clone()),
        tolerations: (!spec.tolerations.is_empty()).then(|| spec.tolerations.clone()),
        service_account_name: Some(
            spec.service_account
                .clone()
                .unwrap_or_else(|| defaults::SERVICE_ACCOUNT.to_string()),
        ),
        security_context: pod_security_context(facts),
        ..PodSpec::default()
    };
    if let Some(overlay) = &spec.vault_pod_spec {
        pod = merge_typed(&pod, &overlay.0).map_err(facts.serialize_error("vaultPodSpec"))?;
    }

    Ok(StatefulSet {
        metadata: facts.metadata(facts.name.to_string()),
        spec: StatefulSetSpec {
            replicas: Some(facts.size),
            selector: LabelSelector {
                match_labels: Some(facts.labels()),
                ..LabelSelector::default()
            },
            service_name: Some(super::services::headless_name(facts.name)),
            // The controller serialises initialisation and joining itself; waiting for each
            // pod to be Ready (unsealed) before starting the next would deadlock Raft.
            pod_management_policy: Some("Parallel".to_string()),
            persistent_volume_claim_retention_policy: Some(
                StatefulSetPersistentVolumeClaimRetentionPolicy {
                    // A removed Raft peer must not come back on stale data...
                    when_scaled: Some("Delete".to_string()),
                    // ...but deleting the resource must never lose the data.
                    when_deleted: Some("Retain".to_string()),
                },
            ),
            volume_claim_templates: claim_templates(facts),
            template: PodTemplateSpec {
                metadata: Some(pod_meta),
                spec: Some(pod),
            },
            ..StatefulSetSpec::default()
        },
        status: None,
    })
}

/// The Vault container first, then the user's sidecars with `sidecarEnvsConfig`.
fn containers(facts: &Facts<'_>) -> Result<Vec<Container>, BuildError> {
    let spec = &facts.vault.spec;
    let mut vault = vault_container(facts);
    if let Some(overlay) = &spec.vault_container_spec {
        vault =
            merge_typed(&vault, overlay).map_err(facts.serialize_error("vaultContainerSpec"))?;
    }

    let sidecars = spec.vault_containers.iter().map(|sidecar| {
        let mut sidecar = sidecar.clone();
        if !spec.sidecar_envs_config.is_empty() {
            let env = sidecar.env.get_or_insert_with(Vec::new);
            env.extend(spec.sidecar_envs_config.iter().cloned());
        }
        sidecar
    });
    Ok(std::iter::once(vault).chain(sidecars).collect())
}

fn config_path(facts: &Facts<'_>) -> String {
    facts
        .vault
        .spec
        .config_path
        .clone()
        .unwrap_or_else(|| defaults::CONFIG_PATH.to_string())
}

fn vault_container(facts: &Facts<'_>) -> Container {
    let spec = &facts.vault.spec;
    let ports = facts
        .service_ports
        .iter()
        .map(|(name, port)| ContainerPort {
            name: Some(name.clone()),
            container_port: *port,
            protocol: Some("TCP".to_string()),
            ..ContainerPort::default()
        })
        .collect();

    let mut mounts = vec![mount("vault-config", &config_path(facts))];
    if facts.tls {
        mounts.push(mount("vault-tls", defaults::TLS_MOUNT_PATH));
    }
    mounts.extend(spec.volume_mounts.iter().cloned());

    let capabilities = (spec.skip_vault_container_capabilities != Some(true)).then(|| {
        Capabilities {
            // IPC_LOCK lets Vault lock its memory; SETFCAP lets the image's entrypoint give
            // the binary that capability.
            add: Some(vec!["IPC_LOCK".to_string(), "SETFCAP".to_string()]),
            ..Capabilities::default()
        }
    });

    Container {
        name: VAULT_CONTAINER.to_string(),
        image: spec.image.clone(),
        image_pull_policy: Some("IfNotPresent".to_string()),
        // Vault and OpenBao images default to different folders; naming it works for both.
        args: Some(vec![
            "server".to_string(),
            format!("-config={}", config_path(facts)),
        ]),
        ports: Some(ports),
        env: Some(vault_env(facts)),
        startup_probe: Some(Probe {
            failure_threshold: Some(60),
            period_seconds: Some(2),
            ..health_probe(facts, LIVE_QUERY)
        }),
        liveness_probe: Some(Probe {
            failure_threshold: Some(6),
            period_seconds: Some(10),
            ..health_probe(facts, LIVE_QUERY)
        }),
        readiness_probe: Some(Probe {
            failure_threshold: Some(2),
            period_seconds: Some(5),
            ..health_probe(facts, READY_QUERY)
        }),
        resources: Some(
            spec.resources
                .as_ref()
                .and_then(|r| r.vault.clone())
                .unwrap_or_else(default_resources),
        ),
        security_context: capabilities.map(|capabilities| SecurityContext {
            capabilities: Some(capabilities),
            ..SecurityContext::default()
        }),
        volume_mounts: Some(mounts),
        ..Container::default()
    }
}

fn health_probe(facts: &Facts<'_>, path: &str) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.to_string()),
            port: IntOrString::Int(facts.api_port),
            scheme: Some(facts.scheme().to_uppercase()),
            ..HTTPGetAction::default()
        }),
        timeout_seconds: Some(3),
        ..Probe::default()
    }
}

/// Bank-Vaults' default resources of the Vault container.
fn default_resources() -> ResourceRequirements {
    let quantities = |cpu: &str, memory: &str| {
        BTreeMap::from([
            ("cpu".to_string(), Quantity(cpu.to_string())),
            ("memory".to_string(), Quantity(memory.to_string())),
        ])
    };
    ResourceRequirements {
        limits: Some(quantities("500m", "512Mi")),
        requests: Some(quantities("250m", "256Mi")),
        ..ResourceRequirements::default()
    }
}

fn field_env(name: &str, path: &str) -> EnvVar {
    EnvVar {
        name: name.to_string(),
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                field_path: path.to_string(),
                ..ObjectFieldSelector::default()
            }),
            ..EnvVarSource::default()
        }),
        ..EnvVar::default()
    }
}

fn value_env(name: &str, value: String) -> EnvVar {
    EnvVar {
        name: name.to_string(),
        value: Some(value),
        ..EnvVar::default()
    }
}

/// The Vault container's environment; the config init container gets it too, so that the
/// variables the configuration names are the ones Vault sees.
fn vault_env(facts: &Facts<'_>) -> Vec<EnvVar> {
    let spec = &facts.vault.spec;
    let cluster_port = facts
        .service_ports
        .get("cluster-port")
        .copied()
        .unwrap_or(defaults::CLUSTER_PORT);
    let mut env = vec![field_env("POD_NAME", "metadata.name")];
    if spec.service_registration_enabled == Some(true) {
        // Vault refuses to start kubernetes service registration without these.
        for prefix in ["VAULT", "BAO"] {
            env.push(field_env(
                &format!("{prefix}_K8S_POD_NAME"),
                "metadata.name",
            ));
            env.push(field_env(
                &format!("{prefix}_K8S_NAMESPACE"),
                "metadata.namespace",
            ));
        }
    }
    // Each pod's own `<name>-<i>` Service: a standby forwards clients to the leader there,
    // and it answers before the pod is Ready.
    env.push(value_env(
        "VAULT_API_ADDR",
        format!(
            "{}://$(POD_NAME).{}.svc:{}",
            facts.scheme(),
            facts.namespace,
            facts.api_port
        ),
    ));
    // The cluster port is always TLS, with Vault's own certificates.
    env.push(value_env(
        "VAULT_CLUSTER_ADDR",
        format!("https://$(POD_NAME).{}.svc:{cluster_port}", facts.namespace),
    ));
    env.extend(spec.vault_envs_config.iter().cloned());
    env
}

fn mount(name: &str, path: &str) -> VolumeMount {
    VolumeMount {
        name: name.to_string(),
        mount_path: path.to_string(),
        ..VolumeMount::default()
    }
}

/// The user's init containers, then the one that renders the configuration.
fn init_containers(facts: &Facts<'_>, options: &BuildOptions) -> Vec<Container> {
    let spec = &facts.vault.spec;
    let output = format!("{}/{}", config_path(facts), RAW_CONFIG_KEY);
    let mut env = vault_env(facts);
    // Bank-Vaults exposes `secretInitsConfig` to the configuration's variables (its sample
    // names the file storage path there), so the renderer sees them too; Vault does not.
    env.extend(spec.secret_inits_config.iter().cloned());

    let render = Container {
        name: CONFIG_CONTAINER.to_string(),
        image: Some(options.controller_image.clone()),
        image_pull_policy: Some("IfNotPresent".to_string()),
        args: Some(vec![
            "template".to_string(),
            format!("--input={RAW_CONFIG_PATH}/{RAW_CONFIG_KEY}"),
            format!("--output={output}"),
        ]),
        env: Some(env),
        volume_mounts: Some(vec![
            mount("vault-raw-config", RAW_CONFIG_PATH),
            mount("vault-config", &config_path(facts)),
        ]),
        ..Container::default()
    };
    let mut containers = spec.vault_init_containers.clone();
    containers.push(render);
    containers
}

fn volumes(facts: &Facts<'_>) -> Vec<Volume> {
    let spec = &facts.vault.spec;
    let secret = |volume: &str, secret: String, optional: bool| Volume {
        name: volume.to_string(),
        secret: Some(SecretVolumeSource {
            secret_name: Some(secret),
            optional: optional.then_some(true),
            ..SecretVolumeSource::default()
        }),
        ..Volume::default()
    };
    let mut volumes = vec![
        secret(
            "vault-raw-config",
            format!("{}-raw-config", facts.name),
            false,
        ),
        Volume {
            name: "vault-config".to_string(),
            empty_dir: Some(EmptyDirVolumeSource::default()),
            ..Volume::default()
        },
    ];
    if facts.tls {
        volumes.push(match &spec.existing_tls_secret_name {
            Some(existing) => secret("vault-tls", existing.clone(), false),
            // The controller writes this Secret before the StatefulSet. Optional, so that
            // a pod started while someone had deleted it takes it up when it comes back.
            None => secret("vault-tls", defaults::tls_secret_name(facts.name), true),
        });
    }
    volumes.extend(spec.volumes.iter().cloned());
    volumes
}

fn claim_templates(facts: &Facts<'_>) -> Option<Vec<PersistentVolumeClaim>> {
    let claims: Vec<PersistentVolumeClaim> = facts
        .vault
        .spec
        .volume_claim_templates
        .iter()
        .map(|claim| PersistentVolumeClaim {
            metadata: ObjectMeta {
                name: claim.metadata.name.clone(),
                labels: non_empty(claim.metadata.labels.clone()),
                annotations: non_empty(claim.metadata.annotations.clone()),
                ..ObjectMeta::default()
            },
            spec: claim.spec.clone(),
            status: None,
        })
        .collect();
    (!claims.is_empty()).then_some(claims)
}

/// `affinity` as given (the defaults put a preferred spread there for several pods);
/// otherwise `podAntiAffinity` as a required rule on that key, with `nodeAffinity`.
fn affinity(facts: &Facts<'_>) -> Option<Affinity> {
    let spec = &facts.vault.spec;
    if let Some(affinity) = &spec.affinity {
        return Some(affinity.clone());
    }
    let pod_anti_affinity = spec.pod_anti_affinity.as_ref().map(|key| PodAntiAffinity {
        required_during_scheduling_ignored_during_execution: Some(vec![PodAffinityTerm {
            label_selector: Some(LabelSelector {
                match_labels: Some(facts.labels()),
                ..LabelSelector::default()
            }),
            topology_key: key.clone(),
            ..PodAffinityTerm::default()
        }]),
        ..PodAntiAffinity::default()
    });
    (pod_anti_affinity.is_some() || spec.node_affinity.is_some()).then(|| Affinity {
        node_affinity: spec.node_affinity.clone(),
        pod_anti_affinity,
        ..Affinity::default()
    })
}

fn pod_security_context(facts: &Facts<'_>) -> Option<PodSecurityContext> {
    let spec = &facts.vault.spec;
    if spec.platform_managed_security_context == Some(true) {
        return None;
    }
    Some(spec.security_context.clone().unwrap_or(PodSecurityContext {
        fs_group: Some(VAULT_GROUP),
        ..PodSecurityContext::default()
    }))
}
