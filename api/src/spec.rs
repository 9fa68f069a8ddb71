//! The `Vault` custom resource, field for field compatible with the Bank-Vaults operator's.
//!
//! Field names and meanings follow `vault.banzaicloud.com/v1alpha1` as Bank-Vaults defines it,
//! so that its users can apply existing resources unchanged. Fields that only configure
//! Bank-Vaults' own images (its sidecar, statsd exporter and fluentd) are accepted and
//! documented as having no effect here.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Affinity, Container, EnvVar, NodeAffinity, PersistentVolumeClaimSpec, PodSecurityContext,
    ResourceRequirements, Toleration, Volume, VolumeMount,
};
use k8s_openapi::api::networking::v1::IngressSpec;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::config::VaultConfig;
use crate::schema::{EmbeddedPodSpec, FreeForm};
use crate::status::VaultStatus;
use crate::unseal::UnsealConfig;

/// The desired state of a Vault (or OpenBao) cluster: its pods, storage, TLS, where its unseal
/// keys are kept, and the configuration applied to it once it runs.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "vault.banzaicloud.com",
    version = "v1alpha1",
    kind = "Vault",
    plural = "vaults",
    singular = "vault",
    namespaced,
    status = "VaultStatus",
    derive = "PartialEq",
    derive = "Default",
    doc = "A Vault or OpenBao cluster run and unsealed by the operator.",
    printcolumn = r#"{"name":"Size","type":"integer","jsonPath":".spec.size"}"#,
    printcolumn = r#"{"name":"Ready","type":"integer","jsonPath":".status.readyPods"}"#,
    printcolumn = r#"{"name":"Sealed","type":"integer","jsonPath":".status.sealedPods"}"#,
    printcolumn = r#"{"name":"Leader","type":"string","jsonPath":".status.leader"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct VaultSpec {
    /// Number of Vault pods. More than one needs storage that supports high availability,
    /// such as `raft`. Defaults to 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<i32>,

    /// Container image of the Vault server: a `hashicorp/vault` or `openbao/openbao` image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,

    /// Image of the Bank-Vaults sidecar. Accepted for compatibility; this operator runs no
    /// sidecar, so it has no effect.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bank_vaults_image: Option<String>,

    /// Volume mounts of the Bank-Vaults sidecar. Accepted for compatibility; no effect.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub bank_vaults_volume_mounts: Vec<VolumeMount>,

    /// Image of the statsd exporter sidecar. Accepted for compatibility; no effect.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub statsd_image: Option<String>,

    /// Disables the statsd exporter sidecar. Accepted for compatibility; this operator runs
    /// none, so Vault's own `/v1/sys/metrics` endpoint is the place to scrape.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub statsd_disabled: Option<bool>,

    /// Mapping configuration of the statsd exporter. Accepted for compatibility; no effect.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub statsd_config: Option<String>,

    /// Runs a fluentd sidecar for Vault's audit log. Accepted for compatibility; no effect.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fluentd_enabled: Option<bool>,

    /// Image of the fluentd sidecar. Accepted for compatibility; no effect.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fluentd_image: Option<String>,

    /// Folder of the fluentd configuration. Accepted for compatibility; no effect.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fluentd_conf_location: Option<String>,

    /// File name of the fluentd configuration. Accepted for compatibility; no effect.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fluentd_conf_file: Option<String>,

    /// The fluentd configuration itself. Accepted for compatibility; no effect.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fluentd_config: Option<String>,

    /// Adds a Velero fsfreeze sidecar and the backup hook annotations to the Vault pods, so
    /// that volume snapshots of Raft data are consistent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub velero_enabled: Option<bool>,

    /// Image of the Velero fsfreeze sidecar.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub velero_fsfreeze_image: Option<String>,

    /// Annotations added to every object the operator creates for this resource.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,

    /// Annotations added to the Vault pods, Services and TLS Secret.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub vault_annotations: BTreeMap<String, String>,

    /// Labels added to the Vault pods, Services and TLS Secret.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub vault_labels: BTreeMap<String, String>,

    /// Bank-Vaults runs a separate configurer pod with these annotations. This operator
    /// applies `externalConfig` itself, so it has no effect.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub vault_configurer_annotations: BTreeMap<String, String>,

    /// Labels of Bank-Vaults' configurer pod. Accepted for compatibility; no effect.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub vault_configurer_labels: BTreeMap<String, String>,

    /// Pod spec fields merged into the Vault pods (containers are merged by name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vault_pod_spec: Option<EmbeddedPodSpec>,

    /// Container fields merged into the Vault server container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vault_container_spec: Option<Container>,

    /// Pod spec of Bank-Vaults' configurer pod. Accepted for compatibility; no effect.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vault_configurer_pod_spec: Option<EmbeddedPodSpec>,

    /// The Vault server configuration, as YAML or JSON that maps one to one onto Vault's
    /// configuration file: `storage`, `listener`, `seal`, `api_addr`, `cluster_addr` and so on.
    /// String values may use `${.Env.NAME}` or `${env "NAME"}`, expanded in each pod before
    /// Vault starts (for example `cluster_addr: "https://${.Env.POD_NAME}:8201"`).
    #[serde(default)]
    pub config: VaultConfig,

    /// Configuration applied to the running Vault through its API, and applied again
    /// whenever Vault drifts from it: `policies`, `auth`, `secrets`, `audit`, `plugins`,
    /// `groups`, `group-aliases`, `startupSecrets`, `purgeUnmanagedConfig`.
    #[serde(default, skip_serializing_if = "FreeForm::is_empty")]
    pub external_config: FreeForm,

    /// Where the unseal keys and root token are kept, and how Vault is initialised.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unseal_config: Option<UnsealConfig>,

    /// Credentials for a cloud key store, read from a Secret and exposed to the Vault pods
    /// as a file at `path` named by the variable `env`. The controller reads the same file
    /// for the key store: an AWS shared credentials file (its default profile), a Google
    /// service account key or an Azure SDK auth file. Without it, a store's credentials
    /// come from the controller's own environment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_config: Option<CredentialsConfig>,

    /// Environment variables of the Bank-Vaults sidecar. Here, with `vaultEnvsConfig`, what
    /// `${env "NAME"}` in `externalConfig` reads (literal values only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub envs_config: Vec<EnvVar>,

    /// Environment variables added to the Vault server container.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub vault_envs_config: Vec<EnvVar>,

    /// Environment variables added to the user's sidecar containers (`vaultContainers`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sidecar_envs_config: Vec<EnvVar>,

    /// Environment variables for Bank-Vaults' secret-init. Accepted for compatibility; no
    /// effect.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secret_inits_config: Vec<EnvVar>,

    /// Resources of the Vault container, and of Bank-Vaults' sidecars (no effect here).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<Resources>,

    /// Type of the main Service: ClusterIP (default), NodePort, LoadBalancer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_type: Option<String>,

    /// Address requested for a LoadBalancer Service; also added to the TLS certificate.
    #[serde(
        default,
        rename = "loadBalancerIP",
        skip_serializing_if = "Option::is_none"
    )]
    pub load_balancer_ip: Option<String>,

    /// Ports of the Services and the container, by name. Defaults to `api-port: 8200` and
    /// `cluster-port: 8201`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub service_ports: BTreeMap<String, i32>,

    /// Creates a Prometheus Operator ServiceMonitor for Vault's metrics when that CRD exists.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_monitor_enabled: Option<bool>,

    /// Adds a `service_registration "kubernetes"` stanza, so Vault labels its pods with
    /// their role, and the main Service selects the active pod only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_registration_enabled: Option<bool>,

    /// An Ingress in front of the main Service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ingress: Option<Ingress>,

    /// Topology key of a *required* pod anti-affinity rule over the Vault pods, for example
    /// `kubernetes.io/hostname` or `topology.kubernetes.io/zone`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_anti_affinity: Option<String>,

    /// Node affinity of the Vault pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_affinity: Option<NodeAffinity>,

    /// Affinity of the Vault pods. When set it is used as is; `podAntiAffinity` and
    /// `nodeAffinity` are ignored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity: Option<Affinity>,

    /// Node selector of the Vault pods.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_selector: BTreeMap<String, String>,

    /// Tolerations of the Vault pods.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tolerations: Vec<Toleration>,

    /// ServiceAccount the Vault pods run as. Defaults to `default`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account: Option<String>,

    /// Volumes added to the Vault pods.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volumes: Vec<Volume>,

    /// Volume mounts added to the Vault container.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volume_mounts: Vec<VolumeMount>,

    /// Claim templates of the Vault StatefulSet, for Raft or file storage that outlives pods.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volume_claim_templates: Vec<EmbeddedPersistentVolumeClaim>,

    /// Labels of Secrets whose change restarts the Vault pods.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub watched_secrets_labels: Vec<BTreeMap<String, String>>,

    /// Annotations of Secrets whose change restarts the Vault pods.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub watched_secrets_annotations: Vec<BTreeMap<String, String>>,

    /// Pod security context of the Vault pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub security_context: Option<PodSecurityContext>,

    /// Leaves the pod security context to the platform (for example OpenShift's SCCs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform_managed_security_context: Option<bool>,

    /// Name of an existing Secret with the TLS certificate (`tls.crt` or `server.crt`, the
    /// key, and optionally `ca.crt`). The operator uses it as is and never rewrites it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub existing_tls_secret_name: Option<String>,

    /// How long before a generated certificate expires it is renewed, as a duration such as
    /// `168h`. Defaults to `168h` when TLS is on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_expiry_threshold: Option<String>,

    /// Extra host names and IP addresses for the generated certificate.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tls_additional_hosts: Vec<String>,

    /// Namespaces that get a copy of the CA certificate (`ca.crt` only); `*` means all.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ca_namespaces: Vec<String>,

    /// Adds Istio's annotations and port names to the Vault pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub istio_enabled: Option<bool>,

    /// Extra sidecar containers of the Vault pods.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub vault_containers: Vec<Container>,

    /// Extra init containers of the Vault pods, run before the configuration is rendered.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub vault_init_containers: Vec<Container>,

    /// Folder of the Vault configuration inside the pod. Defaults to `/vault/config`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_path: Option<String>,

    /// Skips Vault's image entrypoint. Accepted for compatibility: this operator always
    /// starts the server with an explicit `server -config=...`, so it has no effect.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skip_entrypoint_setup: Option<bool>,

    /// Leaves out the `IPC_LOCK` and `SETFCAP` capabilities of the Vault container, for
    /// platforms that refuse them (Vault then needs `disable_mlock`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skip_vault_container_capabilities: Option<bool>,

    /// Address of an existing Raft leader to join, for a cluster that spans several
    /// Kubernetes clusters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raft_leader_address: Option<String>,

    /// Scheme (`http` or `https`) used to reach `raftLeaderAddress`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raft_leader_api_scheme_override: Option<String>,
}

/// Where the operator reads cloud credentials from.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CredentialsConfig {
    /// Environment variable the credentials are exposed in, such as
    /// `GOOGLE_APPLICATION_CREDENTIALS`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<String>,

    /// Path of the credentials file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,

    /// Secret that holds the credentials.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_name: Option<String>,
}

/// Resource requirements of each container of the Vault pods.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Resources {
    /// Resources of the Vault server container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vault: Option<ResourceRequirements>,

    /// Resources of the Bank-Vaults sidecar. Accepted for compatibility; no effect.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bank_vaults: Option<ResourceRequirements>,

    /// Resources of the HSM daemon container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hsm_daemon: Option<ResourceRequirements>,

    /// Resources of the statsd exporter. Accepted for compatibility; no effect.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prometheus_exporter: Option<ResourceRequirements>,

    /// Resources of the fluentd sidecar. Accepted for compatibility; no effect.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fluentd: Option<ResourceRequirements>,
}

/// An Ingress in front of the main Vault Service.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Ingress {
    /// Annotations of the Ingress. With TLS on, the operator adds the backend-protocol
    /// annotations of the common ingress controllers.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,

    /// Overrides the default Ingress spec.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spec: Option<IngressSpec>,
}

/// A claim template of the Vault StatefulSet.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EmbeddedPersistentVolumeClaim {
    /// API version of the claim; may be left out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_version: Option<String>,

    /// Kind of the claim; may be left out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,

    /// Name, labels and annotations of the claim. The name is what `volumeMounts` refer to.
    #[serde(default)]
    pub metadata: EmbeddedObjectMetadata,

    /// The claim's spec: access modes, storage class and requested size.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spec: Option<PersistentVolumeClaimSpec>,
}

/// The part of object metadata that an embedded object may set.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EmbeddedObjectMetadata {
    /// Name of the object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,

    /// Labels of the object.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,

    /// Annotations of the object.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}
