//! `unsealConfig`: how Vault is initialised, and the key store that keeps its unseal keys and
//! root token.

use std::fmt;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// How Vault is initialised, and where its unseal keys and root token are kept. Exactly one
/// key store may be set, except `hsm` together with `kubernetes`, which means keys encrypted
/// by the HSM and kept in a Secret. With none set, keys go to a Kubernetes Secret.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct UnsealConfig {
    /// Key shares, threshold and what is checked and stored at initialisation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub options: Option<UnsealOptions>,

    /// Keys kept in a Kubernetes Secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kubernetes: Option<KubernetesKeyStore>,

    /// Keys encrypted with Google Cloud KMS and kept in Cloud Storage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub google: Option<GoogleKeyStore>,

    /// Keys kept as Azure Key Vault secrets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub azure: Option<AzureKeyStore>,

    /// Keys encrypted with AWS KMS (or S3 server-side encryption) and kept in S3.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aws: Option<AwsKeyStore>,

    /// Keys encrypted with Alibaba Cloud KMS and kept in OSS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alibaba: Option<AlibabaKeyStore>,

    /// Keys encrypted with an Oracle Cloud Vault key and kept in Object Storage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oci: Option<OciKeyStore>,

    /// Keys kept in the KV v2 engine of another Vault.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vault: Option<VaultKeyStore>,

    /// Keys on, or encrypted by, a PKCS#11 hardware security module.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hsm: Option<HsmKeyStore>,
}

/// Initialisation options.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct UnsealOptions {
    /// Before initialising, write and read back a test value in the key store, so that a
    /// store that cannot be written is found before keys exist that it would lose. Defaults
    /// to true.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pre_flight_checks: Option<bool>,

    /// Keep the root token in the key store. When false the operator revokes the root token
    /// once it has set up its own access, and never stores it. Defaults to true.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub store_root_token: Option<bool>,

    /// Number of unseal key shares (recovery key shares with an auto-unseal `seal`). Defaults
    /// to 5.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_shares: Option<i32>,

    /// Number of shares needed to unseal, from 1 to `secretShares`. Defaults to 3, or to
    /// `secretShares` when that is smaller.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_threshold: Option<i32>,
}

/// A Kubernetes Secret as key store. It has no owner, so it outlives the `Vault` resource.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct KubernetesKeyStore {
    /// Name of the Secret. Defaults to `<name>-unseal-keys`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_name: Option<String>,

    /// Namespace of the Secret. Defaults to the resource's namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_namespace: Option<String>,
}

/// Google Cloud KMS and Cloud Storage as key store.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GoogleKeyStore {
    /// Key ring of the KMS key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kms_key_ring: Option<String>,

    /// Name of the KMS key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kms_crypto_key: Option<String>,

    /// Location of the key ring, such as `global`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kms_location: Option<String>,

    /// Project of the key ring.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kms_project: Option<String>,

    /// Bucket the encrypted keys are written to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_bucket: Option<String>,
}

/// Azure Key Vault as key store.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AzureKeyStore {
    /// Name of the Key Vault.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_vault_name: Option<String>,

    /// Prefix of the secret names.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_prefix: Option<String>,
}

/// AWS KMS and S3 as key store. Comma-separated lists name several regions: keys are written
/// to all of them and read from the first that answers.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AwsKeyStore {
    /// KMS key ID or ARN (comma-separated, one per region).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kms_key_id: Option<String>,

    /// KMS region (comma-separated list).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kms_region: Option<String>,

    /// KMS encryption context, as `key=value` pairs separated by commas.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kms_encryption_context: Option<String>,

    /// S3 bucket (comma-separated, one per region).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub s3_bucket: Option<String>,

    /// Prefix of the object names (comma-separated, one per region).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub s3_prefix: Option<String>,

    /// S3 region (comma-separated list).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub s3_region: Option<String>,

    /// S3 server-side encryption (`aws:kms` or `AES256`) instead of client-side KMS.
    #[serde(default, rename = "s3SSE", skip_serializing_if = "Option::is_none")]
    pub s3_sse: Option<String>,
}

/// Alibaba Cloud KMS and OSS as key store.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AlibabaKeyStore {
    /// KMS region.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kms_region: Option<String>,

    /// KMS key ID.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kms_key_id: Option<String>,

    /// OSS endpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oss_endpoint: Option<String>,

    /// OSS bucket.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oss_bucket: Option<String>,

    /// Prefix of the object names.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oss_prefix: Option<String>,
}

/// Oracle Cloud Vault and Object Storage as key store.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct OciKeyStore {
    /// OCID of the encryption key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[serde(rename = "keyOCID")]
    pub key_ocid: Option<String>,

    /// Cryptographic endpoint of the OCI Vault.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cryptographic_endpoint: Option<String>,

    /// Bucket the encrypted keys are written to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bucket_name: Option<String>,

    /// Object Storage namespace of the bucket.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bucket_namespace: Option<String>,

    /// Prefix of the object names.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bucket_prefix: Option<String>,
}

/// The KV v2 engine of another Vault as key store.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VaultKeyStore {
    /// Address of the other Vault, such as `https://vault.vault:8200`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,

    /// KV v2 path under which the keys are written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unseal_keys_path: Option<String>,

    /// Kubernetes auth role to log in with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,

    /// Mount path of the Kubernetes auth method.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_path: Option<String>,

    /// File that holds a token to use instead of logging in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_path: Option<String>,

    /// A token to use instead of logging in. Prefer `tokenPath`: a token in the resource is
    /// readable by everyone who can read the resource.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
}

/// A PKCS#11 hardware security module as key store.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HsmKeyStore {
    /// Runs the HSM daemon in a sidecar (for USB devices).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub daemon: Option<bool>,

    /// Path of the PKCS#11 module library.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub module_path: Option<String>,

    /// Slot of the token; `tokenLabel` may name it instead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slot_id: Option<i64>,

    /// Label of the token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_label: Option<String>,

    /// User PIN of the token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pin: Option<String>,

    /// Label of the key that encrypts the unseal keys.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_label: Option<String>,
}

/// The kinds of key store, named as their `unsealConfig` fields are.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum KeyStoreKind {
    /// `unsealConfig.kubernetes`
    Kubernetes,
    /// `unsealConfig.google`
    Google,
    /// `unsealConfig.azure`
    Azure,
    /// `unsealConfig.aws`
    Aws,
    /// `unsealConfig.alibaba`
    Alibaba,
    /// `unsealConfig.oci`
    Oci,
    /// `unsealConfig.vault`
    Vault,
    /// `unsealConfig.hsm`
    Hsm,
}

impl KeyStoreKind {
    /// The field name under `unsealConfig`.
    pub fn field(self) -> &'static str {
        match self {
            Self::Kubernetes => "kubernetes",
            Self::Google => "google",
            Self::Azure => "azure",
            Self::Aws => "aws",
            Self::Alibaba => "alibaba",
            Self::Oci => "oci",
            Self::Vault => "vault",
            Self::Hsm => "hsm",
        }
    }
}

impl fmt::Display for KeyStoreKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.field())
    }
}

impl UnsealConfig {
    /// Every key store that is set, in field order.
    pub fn key_stores(&self) -> Vec<KeyStoreKind> {
        let set = [
            (KeyStoreKind::Kubernetes, self.kubernetes.is_some()),
            (KeyStoreKind::Google, self.google.is_some()),
            (KeyStoreKind::Azure, self.azure.is_some()),
            (KeyStoreKind::Aws, self.aws.is_some()),
            (KeyStoreKind::Alibaba, self.alibaba.is_some()),
            (KeyStoreKind::Oci, self.oci.is_some()),
            (KeyStoreKind::Vault, self.vault.is_some()),
            (KeyStoreKind::Hsm, self.hsm.is_some()),
        ];
        set.into_iter()
            .filter(|(_, on)| *on)
            .map(|(kind, _)| kind)
            .collect()
    }

    /// The key store that holds the keys: the one that is set, the HSM when it is paired
    /// with a Secret, or the Kubernetes Secret when none is. `None` when several are set,
    /// which validation refuses.
    pub fn key_store(&self) -> Option<KeyStoreKind> {
        match self.key_stores().as_slice() {
            [] => Some(KeyStoreKind::Kubernetes),
            [one] => Some(*one),
            [KeyStoreKind::Kubernetes, KeyStoreKind::Hsm] => Some(KeyStoreKind::Hsm),
            _ => None,
        }
    }
}
