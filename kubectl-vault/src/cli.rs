//! The command line: every command, flag and value the plugin takes, as clap derives them.
//!
//! Kept apart from the commands themselves so that completion (`completion`, `__complete`)
//! walks the same definition the parser uses.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum, ValueHint};

/// Runs Vault and OpenBao clusters managed by the vault operator: write a `Vault` resource,
/// check one offline, see how a running one is doing, install the operator.
#[derive(Parser, Debug)]
#[command(name = "kubectl-vault", version)]
#[command(disable_version_flag = true, propagate_version = false)]
pub struct Cli {
    /// How to reach the cluster, for the commands that talk to one.
    #[command(flatten)]
    pub cluster: ClusterArgs,

    /// When to colour output: on a terminal only (auto), always, or never.
    #[arg(long, global = true, value_enum, default_value_t = ColorChoice::Auto)]
    pub color: ColorChoice,

    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The standard kubectl flags of every command that talks to a cluster.
#[derive(Args, Debug, Clone, Default, PartialEq, Eq)]
pub struct ClusterArgs {
    /// Path of the kubeconfig file (default: $KUBECONFIG, then ~/.kube/config).
    #[arg(long, global = true, value_name = "FILE", value_hint = ValueHint::FilePath)]
    pub kubeconfig: Option<PathBuf>,

    /// The kubeconfig context to use (default: the current context).
    #[arg(long, global = true, value_name = "NAME")]
    pub context: Option<String>,

    /// The namespace (default: the context's namespace, else `default`).
    #[arg(short, long, global = true, value_name = "NAME")]
    pub namespace: Option<String>,
}

/// The plugin's commands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Write a valid, defaulted Vault resource (prompts on a terminal when given no flags).
    Init(Box<InitArgs>),
    /// Check Vault resources offline with the same rules as the admission webhook.
    Validate(ValidateArgs),
    /// Show the Vault clusters: a summary line and one row per pod.
    Status(StatusArgs),
    /// Print or apply the operator's manifests (CRD, RBAC, controller, webhook).
    Install(InstallArgs),
    /// Print a shell completion script.
    Completion(CompletionArgs),
    /// Print the plugin's version.
    Version,
}

/// Flags of `init`.
#[derive(Args, Debug, Clone, Default)]
pub struct InitArgs {
    /// Name of the Vault resource.
    #[arg(default_value = "vault")]
    pub name: String,

    /// Number of Vault pods (default: 3 with raft storage, 1 otherwise).
    #[arg(long)]
    pub size: Option<i32>,

    /// Vault or OpenBao server image (default: the operator's).
    #[arg(long)]
    pub image: Option<String>,

    /// Storage backend: raft, file, or the name of any other Vault backend.
    #[arg(long, default_value = "raft", value_name = "BACKEND")]
    pub storage: String,

    /// A setting of a backend other than raft and file, as KEY=VALUE; may be repeated.
    #[arg(long = "storage-option", value_name = "KEY=VALUE")]
    pub storage_options: Vec<String>,

    /// Size of each pod's volume for raft or file storage.
    #[arg(long, default_value = "1Gi", value_name = "QUANTITY")]
    pub storage_size: String,

    /// Where the unseal keys and root token are kept.
    #[arg(long, value_enum, default_value_t = KeyStoreChoice::Kubernetes)]
    pub unseal: KeyStoreChoice,

    /// The key store's settings.
    #[command(flatten)]
    pub key_store: KeyStoreArgs,

    /// TLS: a generated certificate (auto), an existing Secret (secret:NAME), or off.
    #[arg(long, default_value = "auto", value_parser = parse_tls)]
    #[arg(value_name = "auto|secret:NAME|off")]
    pub tls: TlsChoice,

    /// How pods are kept apart: required per node (host) or zone, or none. Without it, the
    /// operator prefers to spread several pods over nodes and zones.
    #[arg(long, value_enum)]
    pub anti_affinity: Option<AntiAffinityChoice>,

    /// ServiceAccount the Vault pods run as (with --with-rbac, default: the resource's name).
    #[arg(long, value_name = "NAME")]
    pub service_account: Option<String>,

    /// A YAML file of configuration to apply to the running Vault (policies, auth, secrets).
    #[arg(long, value_name = "FILE", value_hint = ValueHint::FilePath)]
    pub external_config: Option<PathBuf>,

    /// Output format.
    #[arg(short, long, value_enum, default_value_t = ManifestFormat::Yaml)]
    pub output: ManifestFormat,

    /// Create the resource in the cluster (server-side apply) instead of printing it.
    #[arg(long)]
    pub apply: bool,

    /// Also write the ServiceAccount, Role and RoleBinding the Vault pods need.
    #[arg(long)]
    pub with_rbac: bool,
}

/// Key store settings of `init`; each applies to one `--unseal` choice.
#[derive(Args, Debug, Clone, Default)]
#[command(next_help_heading = "Key store settings")]
pub struct KeyStoreArgs {
    /// kubernetes: name of the Secret (default: NAME-unseal-keys).
    #[arg(long, value_name = "NAME")]
    pub secret_name: Option<String>,
    /// kubernetes: namespace of the Secret (default: the resource's).
    #[arg(long, value_name = "NAME")]
    pub secret_namespace: Option<String>,

    /// aws: KMS key ID or ARN.
    #[arg(long, value_name = "ID")]
    pub aws_kms_key_id: Option<String>,
    /// aws: KMS region.
    #[arg(long, value_name = "REGION")]
    pub aws_kms_region: Option<String>,
    /// aws: S3 bucket.
    #[arg(long, value_name = "BUCKET")]
    pub aws_s3_bucket: Option<String>,
    /// aws: S3 object name prefix.
    #[arg(long, value_name = "PREFIX")]
    pub aws_s3_prefix: Option<String>,
    /// aws: S3 region.
    #[arg(long, value_name = "REGION")]
    pub aws_s3_region: Option<String>,

    /// gcp: KMS key ring.
    #[arg(long, value_name = "NAME")]
    pub gcp_kms_key_ring: Option<String>,
    /// gcp: KMS key.
    #[arg(long, value_name = "NAME")]
    pub gcp_kms_crypto_key: Option<String>,
    /// gcp: location of the key ring.
    #[arg(long, value_name = "LOCATION")]
    pub gcp_kms_location: Option<String>,
    /// gcp: project of the key ring.
    #[arg(long, value_name = "PROJECT")]
    pub gcp_kms_project: Option<String>,
    /// gcp: Cloud Storage bucket.
    #[arg(long, value_name = "BUCKET")]
    pub gcp_storage_bucket: Option<String>,

    /// azure: name of the Key Vault.
    #[arg(long, value_name = "NAME")]
    pub azure_key_vault_name: Option<String>,
    /// azure: prefix of the secret names.
    #[arg(long, value_name = "PREFIX")]
    pub azure_key_prefix: Option<String>,

    /// alibaba: KMS region.
    #[arg(long, value_name = "REGION")]
    pub alibaba_kms_region: Option<String>,
    /// alibaba: KMS key ID.
    #[arg(long, value_name = "ID")]
    pub alibaba_kms_key_id: Option<String>,
    /// alibaba: OSS endpoint.
    #[arg(long, value_name = "URL")]
    pub alibaba_oss_endpoint: Option<String>,
    /// alibaba: OSS bucket.
    #[arg(long, value_name = "BUCKET")]
    pub alibaba_oss_bucket: Option<String>,
    /// alibaba: OSS object name prefix.
    #[arg(long, value_name = "PREFIX")]
    pub alibaba_oss_prefix: Option<String>,

    /// oci: OCID of the encryption key.
    #[arg(long, value_name = "OCID")]
    pub oci_key_ocid: Option<String>,
    /// oci: cryptographic endpoint of the OCI Vault.
    #[arg(long, value_name = "URL")]
    pub oci_cryptographic_endpoint: Option<String>,
    /// oci: Object Storage bucket.
    #[arg(long, value_name = "BUCKET")]
    pub oci_bucket_name: Option<String>,
    /// oci: Object Storage namespace.
    #[arg(long, value_name = "NAMESPACE")]
    pub oci_bucket_namespace: Option<String>,
    /// oci: object name prefix.
    #[arg(long, value_name = "PREFIX")]
    pub oci_bucket_prefix: Option<String>,

    /// vault: address of the other Vault.
    #[arg(long, value_name = "URL")]
    pub vault_address: Option<String>,
    /// vault: KV v2 path the keys are written under.
    #[arg(long, value_name = "PATH")]
    pub vault_unseal_keys_path: Option<String>,
    /// vault: Kubernetes auth role.
    #[arg(long, value_name = "ROLE")]
    pub vault_role: Option<String>,
    /// vault: mount path of the Kubernetes auth method.
    #[arg(long, value_name = "PATH")]
    pub vault_auth_path: Option<String>,
    /// vault: file holding a token, instead of logging in.
    #[arg(long, value_name = "FILE")]
    pub vault_token_path: Option<String>,

    /// hsm: path of the PKCS#11 module.
    #[arg(long, value_name = "FILE")]
    pub hsm_module_path: Option<String>,
    /// hsm: slot of the token.
    #[arg(long, value_name = "ID")]
    pub hsm_slot_id: Option<i64>,
    /// hsm: label of the token.
    #[arg(long, value_name = "LABEL")]
    pub hsm_token_label: Option<String>,
    /// hsm: label of the key that encrypts the unseal keys.
    #[arg(long, value_name = "LABEL")]
    pub hsm_key_label: Option<String>,
    /// hsm: run the HSM daemon in a sidecar (USB devices).
    #[arg(long)]
    pub hsm_daemon: bool,
}

/// The key stores `init` can write, named as users know them.
#[derive(ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum KeyStoreChoice {
    /// A Kubernetes Secret.
    #[default]
    Kubernetes,
    /// AWS KMS and S3.
    Aws,
    /// Google Cloud KMS and Cloud Storage.
    Gcp,
    /// Azure Key Vault.
    Azure,
    /// Alibaba Cloud KMS and OSS.
    Alibaba,
    /// Oracle Cloud Vault and Object Storage.
    Oci,
    /// The KV v2 engine of another Vault.
    Vault,
    /// A PKCS#11 hardware security module, keys kept in a Secret.
    Hsm,
}

/// How the Vault listener gets its certificate.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum TlsChoice {
    /// The operator generates and renews one.
    #[default]
    Auto,
    /// An existing Secret, used as is.
    Secret(String),
    /// No TLS.
    Off,
}

/// Reads `--tls`.
fn parse_tls(value: &str) -> Result<TlsChoice, String> {
    match value {
        "auto" => Ok(TlsChoice::Auto),
        "off" => Ok(TlsChoice::Off),
        other => match other.strip_prefix("secret:") {
            Some(name) if !name.is_empty() => Ok(TlsChoice::Secret(name.to_string())),
            _ => Err("use auto, off, or secret:NAME".to_string()),
        },
    }
}

/// Placement rules `init` can write.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum AntiAffinityChoice {
    /// At most one pod per node.
    Host,
    /// At most one pod per zone.
    Zone,
    /// No anti-affinity at all.
    None,
}

/// How `init` writes what it builds.
#[derive(ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ManifestFormat {
    /// YAML documents.
    #[default]
    Yaml,
    /// JSON (a `List` when there are several objects).
    Json,
}

/// Flags of `validate`.
#[derive(Args, Debug, Clone)]
pub struct ValidateArgs {
    /// A file, a folder of .yaml, .yml and .json files, or - for standard input.
    #[arg(
        short = 'f',
        long = "filename",
        required = true,
        value_name = "FILE|DIR|-"
    )]
    #[arg(value_hint = ValueHint::AnyPath)]
    pub files: Vec<PathBuf>,

    /// Also read the folders inside the given folders.
    #[arg(short = 'R', long)]
    pub recursive: bool,
}

/// Flags of `status`.
#[derive(Args, Debug, Clone)]
pub struct StatusArgs {
    /// Name of the Vault resource (default: every one in the namespace).
    pub name: Option<String>,

    /// Every namespace.
    #[arg(short = 'A', long)]
    pub all_namespaces: bool,

    /// Output format.
    #[arg(short, long, value_enum, default_value_t = StatusFormat::Table)]
    pub output: StatusFormat,

    /// Refresh until interrupted.
    #[arg(short, long)]
    pub watch: bool,

    /// Seconds between refreshes with --watch.
    #[arg(long, default_value_t = 2, value_name = "SECONDS")]
    pub interval: u64,

    /// Seconds to wait for each pod's answer.
    #[arg(long, default_value_t = 3, value_name = "SECONDS")]
    pub pod_timeout: u64,
}

/// How `status` writes its report.
#[derive(ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum StatusFormat {
    /// A summary line and a table per Vault.
    #[default]
    Table,
    /// JSON.
    Json,
    /// YAML.
    Yaml,
}

/// When to colour output.
#[derive(ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ColorChoice {
    /// When standard output is a terminal.
    #[default]
    Auto,
    /// Always.
    Always,
    /// Never.
    Never,
}

/// Flags of `install`.
#[derive(Args, Debug, Clone)]
pub struct InstallArgs {
    /// Print the manifests instead of applying them.
    #[arg(long)]
    pub dry_run: bool,

    /// Image override: CONTAINER=IMAGE for one container, or IMAGE for every container of
    /// the operator's workloads; may be repeated.
    #[arg(long = "image", value_name = "[CONTAINER=]IMAGE")]
    pub images: Vec<String>,

    /// Take over fields another manager owns when applying.
    #[arg(long)]
    pub force_conflicts: bool,
}

/// Flags of `completion`.
#[derive(Args, Debug, Clone)]
pub struct CompletionArgs {
    /// The shell.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn tls_values() {
        assert_eq!(parse_tls("auto"), Ok(TlsChoice::Auto));
        assert_eq!(parse_tls("off"), Ok(TlsChoice::Off));
        assert_eq!(parse_tls("secret:t"), Ok(TlsChoice::Secret("t".into())));
        assert!(parse_tls("secret:").is_err());
        assert!(parse_tls("on").is_err());
    }
}
