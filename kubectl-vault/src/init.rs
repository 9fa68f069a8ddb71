//! `kubectl vault init`: builds a `Vault` resource from the user's choices, defaulted and
//! validated by the `api` crate, and the ServiceAccount and RBAC its pods need.
//!
//! [`build`] is pure, so every flag combination is tested without a cluster; [`ask`] fills
//! the same choices from prompts on a terminal.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Affinity, PersistentVolumeClaimSpec, ServiceAccount, VolumeMount, VolumeResourceRequirements,
};
use k8s_openapi::api::rbac::v1::{
    ClusterRoleBinding, PolicyRule, Role, RoleBinding, RoleRef, Subject,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde_json::{Map, Value, json};
use vault_api::schema::FreeForm;
use vault_api::spec::{EmbeddedObjectMetadata, EmbeddedPersistentVolumeClaim};
use vault_api::unseal::{
    AlibabaKeyStore, AwsKeyStore, AzureKeyStore, GoogleKeyStore, HsmKeyStore, KubernetesKeyStore,
    OciKeyStore, UnsealConfig, VaultKeyStore,
};
use vault_api::{FieldError, Vault, VaultSpec, Warning, defaults};

use crate::cli::{AntiAffinityChoice, InitArgs, KeyStoreArgs, KeyStoreChoice, TlsChoice};

/// Where raft and file storage keep their data in the pods.
const DATA_PATH: &str = "/vault/file";

/// Why `init` wrote nothing.
#[derive(Debug, thiserror::Error)]
pub enum InitError {
    /// A key store setting was given for another key store.
    #[error("--{flag} is a setting of --unseal {store}, not of --unseal {chosen}")]
    ForeignStoreFlag {
        /// The flag given.
        flag: &'static str,
        /// The key store it belongs to.
        store: String,
        /// The key store chosen.
        chosen: String,
    },
    /// A `--storage-option` without `=`.
    #[error("--storage-option {0:?} is not KEY=VALUE")]
    StorageOption(String),
    /// The external configuration file could not be read.
    #[error("reading --external-config {path}: {source}")]
    ReadExternalConfig {
        /// The file.
        path: String,
        /// Why it could not be read.
        source: std::io::Error,
    },
    /// The external configuration file is not a YAML mapping.
    #[error(
        "--external-config {path} is not a YAML mapping of policies, auth, secrets...: {problem}"
    )]
    ParseExternalConfig {
        /// The file.
        path: String,
        /// What is wrong with it.
        problem: String,
    },
    /// The choices make a resource that the rules refuse.
    #[error("these choices make an invalid Vault resource:\n{}", list(.0))]
    Invalid(Vec<FieldError>),
    /// A prompt was cancelled or could not be shown.
    #[error("prompt: {0}")]
    Prompt(#[from] inquire::InquireError),
}

fn list(errors: &[FieldError]) -> String {
    let lines: Vec<String> = errors.iter().map(|e| format!("  {e}")).collect();
    lines.join("\n")
}

/// What `init` writes: the resource, and the RBAC objects when asked for, in apply order.
#[derive(Debug, Clone)]
pub struct InitOutput {
    /// With `--with-rbac`, the ServiceAccount, its Role and bindings; then the Vault.
    pub objects: Vec<Value>,
    /// What `validate` says the user should know about the resource.
    pub warnings: Vec<Warning>,
}

/// Builds the objects for the choices in `args`, in `namespace` when one is given.
/// `external_config` is the content of `--external-config`, already read.
pub fn build(
    args: &InitArgs,
    namespace: Option<&str>,
    external_config: Option<FreeForm>,
) -> Result<InitOutput, InitError> {
    let service_account = args
        .service_account
        .clone()
        .or_else(|| args.with_rbac.then(|| args.name.clone()));

    let spec = VaultSpec {
        size: Some(
            args.size
                .unwrap_or(if args.storage == "raft" { 3 } else { 1 }),
        ),
        image: args.image.clone(),
        config: vault_config(args, namespace)?,
        unseal_config: Some(unseal_config(args.unseal, &args.key_store)?),
        existing_tls_secret_name: match &args.tls {
            TlsChoice::Secret(name) => Some(name.clone()),
            TlsChoice::Auto | TlsChoice::Off => None,
        },
        pod_anti_affinity: match args.anti_affinity {
            Some(AntiAffinityChoice::Host) => Some(defaults::HOSTNAME_KEY.to_string()),
            Some(AntiAffinityChoice::Zone) => Some(defaults::ZONE_KEY.to_string()),
            Some(AntiAffinityChoice::None) | None => None,
        },
        // An empty affinity is a placement of the user's own: the operator adds no spread.
        affinity: (args.anti_affinity == Some(AntiAffinityChoice::None)).then(Affinity::default),
        service_account: service_account.clone(),
        external_config: external_config.unwrap_or_default(),
        ..VaultSpec::default()
    };
    let spec = with_data_volume(spec, &args.storage, &args.storage_size);

    let mut vault = Vault::new(&args.name, spec);
    vault.metadata.namespace = namespace.map(str::to_string);
    let vault = vault_api::default(&vault);
    let mut warnings = vault_api::validate(&vault, None).map_err(InitError::Invalid)?;

    let mut objects = Vec::new();
    if args.with_rbac {
        let account = service_account.unwrap_or_else(|| args.name.clone());
        let kubernetes_auth = has_kubernetes_auth(&vault.spec.external_config);
        if kubernetes_auth && namespace.is_none() {
            warnings.push(Warning {
                path: "--with-rbac".to_string(),
                message: "Kubernetes auth needs the ServiceAccount to review tokens; give \
                          -n NAMESPACE to add its system:auth-delegator binding"
                    .to_string(),
            });
        }
        objects.extend(rbac(&account, namespace, kubernetes_auth));
    }
    objects.push(to_value(&vault));
    Ok(InitOutput { objects, warnings })
}

/// The Vault server configuration: one storage backend, a TCP listener and addresses.
fn vault_config(
    args: &InitArgs,
    namespace: Option<&str>,
) -> Result<vault_api::config::VaultConfig, InitError> {
    let mut settings = Map::new();
    if matches!(args.storage.as_str(), "raft" | "file") {
        settings.insert("path".into(), DATA_PATH.into());
    }
    for option in &args.storage_options {
        let (key, value) = option
            .split_once('=')
            .ok_or_else(|| InitError::StorageOption(option.clone()))?;
        settings.insert(key.to_string(), value.into());
    }

    let tls = args.tls != TlsChoice::Off;
    let scheme = if tls { "https" } else { "http" };
    let mut listener = json!({"address": defaults::LISTENER_ADDRESS});
    if !tls {
        listener["tls_disable"] = true.into();
    }
    let host = match namespace {
        Some(namespace) => format!("{}.{namespace}", args.name),
        None => args.name.clone(),
    };

    let mut config = Map::new();
    config.insert("storage".into(), json!({ args.storage.clone(): settings }));
    config.insert("listener".into(), json!({ "tcp": listener }));
    config.insert(
        "api_addr".into(),
        format!("{scheme}://{host}:{}", defaults::API_PORT).into(),
    );
    if args.storage == "raft" {
        // Each pod announces itself by name; the operator renders the template per pod.
        let cluster_addr = format!("{scheme}://${{.Env.POD_NAME}}:{}", defaults::CLUSTER_PORT);
        config.insert("cluster_addr".into(), cluster_addr.into());
        // Vault 2 refuses mlock with integrated storage.
        config.insert("disable_mlock".into(), true.into());
    }
    config.insert("ui".into(), true.into());
    Ok(vault_api::config::VaultConfig(config))
}

/// Gives raft and file storage a volume per pod, so data outlives a restarted pod.
fn with_data_volume(mut spec: VaultSpec, storage: &str, size: &str) -> VaultSpec {
    if !matches!(storage, "raft" | "file") {
        return spec;
    }
    let name = format!("vault-{storage}");
    spec.volume_claim_templates = vec![EmbeddedPersistentVolumeClaim {
        metadata: EmbeddedObjectMetadata {
            name: Some(name.clone()),
            ..EmbeddedObjectMetadata::default()
        },
        spec: Some(PersistentVolumeClaimSpec {
            access_modes: Some(vec!["ReadWriteOnce".to_string()]),
            resources: Some(VolumeResourceRequirements {
                requests: Some(BTreeMap::from([(
                    "storage".to_string(),
                    Quantity(size.to_string()),
                )])),
                ..VolumeResourceRequirements::default()
            }),
            ..PersistentVolumeClaimSpec::default()
        }),
        ..EmbeddedPersistentVolumeClaim::default()
    }];
    spec.volume_mounts = vec![VolumeMount {
        name,
        mount_path: DATA_PATH.to_string(),
        ..VolumeMount::default()
    }];
    spec
}

/// The chosen key store with its settings; refuses settings of another store.
fn unseal_config(chosen: KeyStoreChoice, s: &KeyStoreArgs) -> Result<UnsealConfig, InitError> {
    // hsm keeps its encrypted keys in a Secret, so it takes the Secret's settings too.
    let belongs = |store: KeyStoreChoice| {
        store == chosen || (store == KeyStoreChoice::Kubernetes && chosen == KeyStoreChoice::Hsm)
    };
    if let Some((flag, store)) = s.given().into_iter().find(|(_, store)| !belongs(*store)) {
        return Err(InitError::ForeignStoreFlag {
            flag,
            store: store_name(store),
            chosen: store_name(chosen),
        });
    }

    let mut unseal = UnsealConfig::default();
    match chosen {
        KeyStoreChoice::Kubernetes => {
            // Left empty, the defaults name the Secret after the resource.
            if s.secret_name.is_some() || s.secret_namespace.is_some() {
                unseal.kubernetes = Some(KubernetesKeyStore {
                    secret_name: s.secret_name.clone(),
                    secret_namespace: s.secret_namespace.clone(),
                });
            }
        }
        KeyStoreChoice::Aws => {
            unseal.aws = Some(AwsKeyStore {
                kms_key_id: s.aws_kms_key_id.clone(),
                kms_region: s.aws_kms_region.clone(),
                s3_bucket: s.aws_s3_bucket.clone(),
                s3_prefix: s.aws_s3_prefix.clone(),
                s3_region: s.aws_s3_region.clone(),
                ..AwsKeyStore::default()
            })
        }
        KeyStoreChoice::Gcp => {
            unseal.google = Some(GoogleKeyStore {
                kms_key_ring: s.gcp_kms_key_ring.clone(),
                kms_crypto_key: s.gcp_kms_crypto_key.clone(),
                kms_location: s.gcp_kms_location.clone(),
                kms_project: s.gcp_kms_project.clone(),
                storage_bucket: s.gcp_storage_bucket.clone(),
            })
        }
        KeyStoreChoice::Azure => {
            unseal.azure = Some(AzureKeyStore {
                key_vault_name: s.azure_key_vault_name.clone(),
                key_prefix: s.azure_key_prefix.clone(),
            })
        }
        KeyStoreChoice::Alibaba => {
            unseal.alibaba = Some(AlibabaKeyStore {
                kms_region: s.alibaba_kms_region.clone(),
                kms_key_id: s.alibaba_kms_key_id.clone(),
                oss_endpoint: s.alibaba_oss_endpoint.clone(),
                oss_bucket: s.alibaba_oss_bucket.clone(),
                oss_prefix: s.alibaba_oss_prefix.clone(),
            })
        }
        KeyStoreChoice::Oci => {
            unseal.oci = Some(OciKeyStore {
                key_ocid: s.oci_key_ocid.clone(),
                cryptographic_endpoint: s.oci_cryptographic_endpoint.clone(),
                bucket_name: s.oci_bucket_name.clone(),
                bucket_namespace: s.oci_bucket_namespace.clone(),
                bucket_prefix: s.oci_bucket_prefix.clone(),
            })
        }
        KeyStoreChoice::Vault => {
            unseal.vault = Some(VaultKeyStore {
                address: s.vault_address.clone(),
                unseal_keys_path: s.vault_unseal_keys_path.clone(),
                role: s.vault_role.clone(),
                auth_path: s.vault_auth_path.clone(),
                token_path: s.vault_token_path.clone(),
                token: None,
            })
        }
        KeyStoreChoice::Hsm => {
            // Keys encrypted by the HSM and kept in a Secret: the one pairing allowed.
            unseal.hsm = Some(HsmKeyStore {
                daemon: s.hsm_daemon.then_some(true),
                module_path: s.hsm_module_path.clone(),
                slot_id: s.hsm_slot_id,
                token_label: s.hsm_token_label.clone(),
                pin: None,
                key_label: s.hsm_key_label.clone(),
            });
            unseal.kubernetes = Some(KubernetesKeyStore {
                secret_name: s.secret_name.clone(),
                secret_namespace: s.secret_namespace.clone(),
            });
        }
    }
    Ok(unseal)
}

impl KeyStoreArgs {
    /// Every key store setting given, with the key store it belongs to.
    fn given(&self) -> Vec<(&'static str, KeyStoreChoice)> {
        use KeyStoreChoice::*;
        let flags = [
            ("aws-kms-key-id", Aws, self.aws_kms_key_id.is_some()),
            ("aws-kms-region", Aws, self.aws_kms_region.is_some()),
            ("aws-s3-bucket", Aws, self.aws_s3_bucket.is_some()),
            ("aws-s3-prefix", Aws, self.aws_s3_prefix.is_some()),
            ("aws-s3-region", Aws, self.aws_s3_region.is_some()),
            ("gcp-kms-key-ring", Gcp, self.gcp_kms_key_ring.is_some()),
            ("gcp-kms-crypto-key", Gcp, self.gcp_kms_crypto_key.is_some()),
            ("gcp-kms-location", Gcp, self.gcp_kms_location.is_some()),
            ("gcp-kms-project", Gcp, self.gcp_kms_project.is_some()),
            ("gcp-storage-bucket", Gcp, self.gcp_storage_bucket.is_some()),
            (
                "azure-key-vault-name",
                Azure,
                self.azure_key_vault_name.is_some(),
            ),
            ("azure-key-prefix", Azure, self.azure_key_prefix.is_some()),
            (
                "alibaba-kms-region",
                Alibaba,
                self.alibaba_kms_region.is_some(),
            ),
            (
                "alibaba-kms-key-id",
                Alibaba,
                self.alibaba_kms_key_id.is_some(),
            ),
            (
                "alibaba-oss-endpoint",
                Alibaba,
                self.alibaba_oss_endpoint.is_some(),
            ),
            (
                "alibaba-oss-bucket",
                Alibaba,
                self.alibaba_oss_bucket.is_some(),
            ),
            (
                "alibaba-oss-prefix",
                Alibaba,
                self.alibaba_oss_prefix.is_some(),
            ),
            ("oci-key-ocid", Oci, self.oci_key_ocid.is_some()),
            (
                "oci-cryptographic-endpoint",
                Oci,
                self.oci_cryptographic_endpoint.is_some(),
            ),
            ("oci-bucket-name", Oci, self.oci_bucket_name.is_some()),
            (
                "oci-bucket-namespace",
                Oci,
                self.oci_bucket_namespace.is_some(),
            ),
            ("oci-bucket-prefix", Oci, self.oci_bucket_prefix.is_some()),
            ("vault-address", Vault, self.vault_address.is_some()),
            (
                "vault-unseal-keys-path",
                Vault,
                self.vault_unseal_keys_path.is_some(),
            ),
            ("vault-role", Vault, self.vault_role.is_some()),
            ("vault-auth-path", Vault, self.vault_auth_path.is_some()),
            ("vault-token-path", Vault, self.vault_token_path.is_some()),
            ("hsm-module-path", Hsm, self.hsm_module_path.is_some()),
            ("hsm-slot-id", Hsm, self.hsm_slot_id.is_some()),
            ("hsm-token-label", Hsm, self.hsm_token_label.is_some()),
            ("hsm-key-label", Hsm, self.hsm_key_label.is_some()),
            ("hsm-daemon", Hsm, self.hsm_daemon),
        ];
        let mut given: Vec<_> = flags
            .into_iter()
            .filter(|(_, _, set)| *set)
            .map(|(flag, store, _)| (flag, store))
            .collect();
        if self.secret_name.is_some() || self.secret_namespace.is_some() {
            let flag = if self.secret_name.is_some() {
                "secret-name"
            } else {
                "secret-namespace"
            };
            given.push((flag, Kubernetes));
        }
        given
    }
}

/// The user's name of a key store choice, as `--unseal` takes it.
fn store_name(store: KeyStoreChoice) -> String {
    use clap::ValueEnum;
    store
        .to_possible_value()
        .map(|value| value.get_name().to_string())
        .unwrap_or_default()
}

/// The ServiceAccount the Vault pods run as, and a Role that lets Vault label its own pod
/// (service registration). Unlike Bank-Vaults' sidecar, the pods never touch the unseal
/// keys (the operator does), so they get no access to Secrets. When Vault's Kubernetes auth
/// is configured, the account may also review tokens (`system:auth-delegator`), which needs
/// the namespace to name the account in a cluster-wide binding.
fn rbac(account: &str, namespace: Option<&str>, kubernetes_auth: bool) -> Vec<Value> {
    let metadata = ObjectMeta {
        name: Some(account.to_string()),
        namespace: namespace.map(str::to_string),
        ..ObjectMeta::default()
    };
    let subject = Subject {
        kind: "ServiceAccount".to_string(),
        name: account.to_string(),
        namespace: namespace.map(str::to_string),
        ..Subject::default()
    };
    let role_ref = |kind: &str, name: &str| RoleRef {
        api_group: Some("rbac.authorization.k8s.io".to_string()),
        kind: kind.to_string(),
        name: name.to_string(),
    };

    let service_account = ServiceAccount {
        metadata: metadata.clone(),
        ..ServiceAccount::default()
    };
    let role = Role {
        metadata: metadata.clone(),
        rules: Some(vec![PolicyRule {
            api_groups: Some(vec![String::new()]),
            resources: Some(vec!["pods".to_string()]),
            verbs: ["get", "update", "patch"].map(String::from).to_vec(),
            ..PolicyRule::default()
        }]),
    };
    let binding = RoleBinding {
        metadata,
        role_ref: role_ref("Role", account),
        subjects: Some(vec![subject.clone()]),
    };
    let mut objects = vec![
        to_value(&service_account),
        to_value(&role),
        to_value(&binding),
    ];

    if let (true, Some(namespace)) = (kubernetes_auth, namespace) {
        let token_review = ClusterRoleBinding {
            metadata: ObjectMeta {
                name: Some(format!("{namespace}-{account}-auth-delegator")),
                ..ObjectMeta::default()
            },
            role_ref: role_ref("ClusterRole", "system:auth-delegator"),
            subjects: Some(vec![subject]),
        };
        objects.push(to_value(&token_review));
    }
    objects
}

/// True when `externalConfig` sets up Vault's Kubernetes auth method.
fn has_kubernetes_auth(external_config: &FreeForm) -> bool {
    let methods = external_config.0.get("auth").and_then(Value::as_array);
    methods
        .into_iter()
        .flatten()
        .any(|method| method["type"] == "kubernetes")
}

/// Our own types always serialise; a failure would be a bug, shown as null in the output.
fn to_value(object: &impl serde::Serialize) -> Value {
    serde_json::to_value(object).unwrap_or(Value::Null)
}

/// Reads `--external-config`: a YAML mapping, as Bank-Vaults' `vault-config.yml` holds it.
pub fn read_external_config(path: &std::path::Path) -> Result<FreeForm, InitError> {
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| InitError::ReadExternalConfig {
        path: shown.clone(),
        source,
    })?;
    serde_saphyr::from_str::<FreeForm>(&text).map_err(|e| InitError::ParseExternalConfig {
        path: shown,
        problem: e.to_string(),
    })
}

/// Asks for the common choices on the terminal, starting from `args`.
pub fn ask(mut args: InitArgs) -> Result<InitArgs, InitError> {
    use inquire::{Confirm, CustomType, Select, Text};

    args.name = Text::new("Name of the Vault resource:")
        .with_default(&args.name)
        .prompt()?;
    let storage = Select::new("Storage:", vec!["raft", "file"])
        .with_help_message("raft runs several pods; file runs one")
        .prompt()?;
    args.storage = storage.to_string();
    let size = if storage == "raft" { 3 } else { 1 };
    args.size = Some(
        CustomType::<i32>::new("Number of pods:")
            .with_default(size)
            .prompt()?,
    );
    args.storage_size = Text::new("Volume size per pod:")
        .with_default(&args.storage_size)
        .prompt()?;

    let stores = KeyStoreChoice::all();
    let names: Vec<String> = stores.iter().map(|s| store_name(*s)).collect();
    let chosen = Select::new("Where to keep the unseal keys:", names).prompt()?;
    args.unseal = stores
        .into_iter()
        .find(|s| store_name(*s) == chosen)
        .unwrap_or_default();
    ask_store_settings(&mut args)?;

    let tls = Select::new(
        "TLS:",
        vec!["generated certificate", "existing Secret", "off"],
    )
    .prompt()?;
    args.tls = match tls {
        "existing Secret" => TlsChoice::Secret(Text::new("Name of the TLS Secret:").prompt()?),
        "off" => TlsChoice::Off,
        _ => TlsChoice::Auto,
    };
    args.with_rbac = Confirm::new("Also write a ServiceAccount and its RBAC?")
        .with_default(true)
        .prompt()?;
    Ok(args)
}

/// Asks for the settings of the chosen key store; an empty answer leaves a setting out.
fn ask_store_settings(args: &mut InitArgs) -> Result<(), InitError> {
    let ask = |label: &str| -> Result<Option<String>, InitError> {
        let answer = inquire::Text::new(label).prompt()?;
        Ok(Some(answer).filter(|a| !a.trim().is_empty()))
    };
    let s = &mut args.key_store;
    match args.unseal {
        KeyStoreChoice::Kubernetes => {}
        KeyStoreChoice::Aws => {
            s.aws_kms_key_id = ask("KMS key ID:")?;
            s.aws_kms_region = ask("KMS region:")?;
            s.aws_s3_bucket = ask("S3 bucket:")?;
            s.aws_s3_region = ask("S3 region:")?;
        }
        KeyStoreChoice::Gcp => {
            s.gcp_kms_project = ask("KMS project:")?;
            s.gcp_kms_location = ask("KMS location:")?;
            s.gcp_kms_key_ring = ask("KMS key ring:")?;
            s.gcp_kms_crypto_key = ask("KMS key:")?;
            s.gcp_storage_bucket = ask("Cloud Storage bucket:")?;
        }
        KeyStoreChoice::Azure => {
            s.azure_key_vault_name = ask("Key Vault name:")?;
        }
        KeyStoreChoice::Alibaba => {
            s.alibaba_kms_region = ask("KMS region:")?;
            s.alibaba_kms_key_id = ask("KMS key ID:")?;
            s.alibaba_oss_endpoint = ask("OSS endpoint:")?;
            s.alibaba_oss_bucket = ask("OSS bucket:")?;
        }
        KeyStoreChoice::Oci => {
            s.oci_key_ocid = ask("Key OCID:")?;
            s.oci_cryptographic_endpoint = ask("Cryptographic endpoint:")?;
            s.oci_bucket_name = ask("Bucket:")?;
            s.oci_bucket_namespace = ask("Bucket namespace:")?;
        }
        KeyStoreChoice::Vault => {
            s.vault_address = ask("Address of the other Vault:")?;
            s.vault_unseal_keys_path = ask("KV v2 path for the keys:")?;
            s.vault_role = ask("Kubernetes auth role:")?;
        }
        KeyStoreChoice::Hsm => {
            s.hsm_module_path = ask("PKCS#11 module path:")?;
            s.hsm_token_label = ask("Token label:")?;
            s.hsm_key_label = ask("Key label:")?;
        }
    }
    Ok(())
}

impl KeyStoreChoice {
    /// Every choice, in the order prompts list them.
    fn all() -> Vec<Self> {
        use clap::ValueEnum;
        Self::value_variants().to_vec()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args() -> InitArgs {
        InitArgs {
            name: "vault".to_string(),
            storage: "raft".to_string(),
            storage_size: "1Gi".to_string(),
            ..InitArgs::default()
        }
    }

    #[test]
    fn raft_defaults_to_three_spread_pods() {
        let output = build(&args(), Some("ns"), None);
        let objects = output.map(|o| o.objects).unwrap_or_default();
        assert_eq!(objects.len(), 1);
        assert_eq!(objects[0]["spec"]["size"], 3);
        assert!(objects[0]["spec"]["affinity"]["podAntiAffinity"].is_object());
    }

    #[test]
    fn a_foreign_store_setting_is_refused() {
        let mut args = args();
        args.key_store.aws_s3_bucket = Some("b".to_string());
        let error = build(&args, None, None).err().map(|e| e.to_string());
        assert_eq!(
            error.as_deref(),
            Some("--aws-s3-bucket is a setting of --unseal aws, not of --unseal kubernetes")
        );
    }

    #[test]
    fn several_pods_on_file_storage_are_refused_by_the_api_rules() {
        let mut args = args();
        args.storage = "file".to_string();
        args.size = Some(2);
        let Err(InitError::Invalid(errors)) = build(&args, None, None) else {
            panic!("file storage with 2 pods was accepted");
        };
        assert_eq!(errors[0].path, "spec.size");
    }

    #[test]
    fn no_anti_affinity_means_no_spread() {
        let mut args = args();
        args.anti_affinity = Some(AntiAffinityChoice::None);
        let objects = build(&args, None, None)
            .map(|o| o.objects)
            .unwrap_or_default();
        assert_eq!(objects[0]["spec"]["affinity"], json!({}));
    }
}
