//! A key store in AWS S3, each value encrypted with AWS KMS or by S3 itself.
//!
//! The layout is Bank-Vaults' (`pkg/kv/s3/s3.go`, `pkg/kv/awskms/awskms.go` and
//! `pkg/kv/multi/multi.go` in bank-vaults/bank-vaults), so that either operator reads the
//! keys the other wrote: the object for key `vault-unseal-0` is `<s3Prefix>vault-unseal-0`
//! (the prefix is prepended as it is, with no `/` added), and it holds the raw KMS ciphertext
//! of the value's bytes, encrypted under `kmsKeyId` with `kmsEncryptionContext`. With
//! `s3SSE` set the object holds the value itself and S3 encrypts it at rest. Older Bank-Vaults
//! releases encrypted with the fixed context `Tool=bank-vaults`: set that as
//! `kmsEncryptionContext` to read what they wrote.
//!
//! Comma-separated lists name one location per region. As in Bank-Vaults' multi store, a
//! value is written to every location in order, and read from the first location that
//! answers, a "no such key" included.

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use async_trait::async_trait;
use aws_config::profile::ProfileFileCredentialsProvider;
use aws_config::provider_config::ProviderConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region};
use aws_runtime::env_config::file::{EnvConfigFileKind, EnvConfigFiles};
use aws_sdk_kms::primitives::Blob;
use aws_sdk_s3::config::SharedHttpClient;
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::ServerSideEncryption;
use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode};
use tracing::{debug, warn};
use zeroize::Zeroizing;

use crate::{KeyStore, KeyStoreError, Secret};

/// How long one attempt of an AWS call may take.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);

/// A key store in one or more S3 buckets; see the [module documentation](self) for the
/// layout.
#[derive(Debug)]
pub struct S3KeyStore {
    locations: Vec<Location>,
}

/// One bucket and prefix, with the KMS key that protects what is written there.
#[derive(Debug)]
struct Location {
    region: String,
    bucket: String,
    prefix: String,
    s3: aws_sdk_s3::Client,
    protection: Protection,
}

#[derive(Debug)]
enum Protection {
    /// The object holds KMS ciphertext.
    Kms {
        client: aws_sdk_kms::Client,
        key_id: String,
        context: HashMap<String, String>,
    },
    /// The object holds the value and S3 encrypts it at rest.
    ServerSide {
        algorithm: ServerSideEncryption,
        key_id: Option<String>,
    },
}

impl S3KeyStore {
    /// A store for `spec`, with credentials from the usual AWS chain (environment, profile,
    /// web identity, container or instance metadata) and endpoints from the usual variables
    /// (`AWS_ENDPOINT_URL`, `AWS_ENDPOINT_URL_S3`, `AWS_ENDPOINT_URL_KMS`). With an S3
    /// endpoint set, objects are addressed by path, as S3-compatible servers expect.
    pub async fn from_spec(spec: &vault_api::unseal::AwsKeyStore) -> Result<Self, KeyStoreError> {
        Self::with_credentials_file(spec, None).await
    }

    /// The store `spec` describes, with the default profile of `credentials`, the content of
    /// a shared credentials file (`credentialsConfig` names one, as Bank-Vaults mounts it with
    /// `AWS_SHARED_CREDENTIALS_FILE`), in place of the credentials of the environment.
    pub async fn with_credentials_file(
        spec: &vault_api::unseal::AwsKeyStore,
        credentials: Option<&Secret>,
    ) -> Result<Self, KeyStoreError> {
        let plans = plan(spec).map_err(|reason| KeyStoreError::Backend {
            store: "AWS key store".to_string(),
            operation: "configuring",
            key: "unsealConfig.aws".to_string(),
            reason,
        })?;

        let http = https();
        let timeouts = TimeoutConfig::builder()
            .operation_attempt_timeout(ATTEMPT_TIMEOUT)
            .build();
        let path_style = ["AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"]
            .iter()
            .any(|name| std::env::var_os(name).is_some_and(|value| !value.is_empty()));

        // One configuration, so one credentials chain and cache; each client has its region.
        let first_region = plans.first().map(|plan| plan.s3_region.clone());
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .region(first_region.map(Region::new))
            .http_client(http.clone())
            .timeout_config(timeouts);
        if let Some(credentials) = credentials {
            loader = loader.credentials_provider(file_credentials(credentials, http.clone()));
        }
        let shared = loader.load().await;

        let mut locations = Vec::with_capacity(plans.len());
        for plan in plans {
            let s3_config = aws_sdk_s3::config::Builder::from(&shared)
                .region(Region::new(plan.s3_region.clone()))
                .force_path_style(path_style)
                .build();
            let protection = match plan.sse {
                Some(algorithm) => Protection::ServerSide {
                    algorithm,
                    key_id: plan.key_id,
                },
                None => {
                    let kms_config = aws_sdk_kms::config::Builder::from(&shared)
                        .region(Region::new(plan.kms_region))
                        .build();
                    Protection::Kms {
                        client: aws_sdk_kms::Client::from_conf(kms_config),
                        key_id: plan.key_id.unwrap_or_default(),
                        context: plan.context,
                    }
                }
            };
            locations.push(Location {
                region: plan.s3_region,
                bucket: plan.bucket,
                prefix: plan.prefix,
                s3: aws_sdk_s3::Client::from_conf(s3_config),
                protection,
            });
        }
        Ok(Self { locations })
    }
}

/// What one location is made of, read from the spec before any client is built.
#[derive(Debug, PartialEq)]
struct Plan {
    s3_region: String,
    kms_region: String,
    bucket: String,
    prefix: String,
    key_id: Option<String>,
    sse: Option<ServerSideEncryption>,
    context: HashMap<String, String>,
}

/// Splits the spec's comma-separated lists into locations. A list of one value applies to
/// every location; longer lists must all have the same length.
fn plan(spec: &vault_api::unseal::AwsKeyStore) -> Result<Vec<Plan>, String> {
    let split = |value: &Option<String>| -> Vec<String> {
        value
            .as_deref()
            .unwrap_or_default()
            .split(',')
            .map(|part| part.trim().to_string())
            .collect()
    };
    let lists = [
        ("s3Region", split(&spec.s3_region)),
        ("s3Bucket", split(&spec.s3_bucket)),
        ("s3Prefix", split(&spec.s3_prefix)),
        ("kmsRegion", split(&spec.kms_region)),
        ("kmsKeyId", split(&spec.kms_key_id)),
        ("s3SSE", split(&spec.s3_sse)),
    ];
    let (longest, count) = lists
        .iter()
        .map(|(field, list)| (*field, list.len()))
        .max_by_key(|(_, len)| *len)
        .unwrap_or(("s3Region", 1));
    for (field, list) in &lists {
        if list.len() != 1 && list.len() != count {
            return Err(format!(
                "{field} has {} entries and {longest} {count}: give one per region, or one \
                 for all",
                list.len()
            ));
        }
    }
    let nth = |list: &Vec<String>, index: usize| -> String {
        list.get(index)
            .or(list.first())
            .cloned()
            .unwrap_or_default()
    };
    let context = encryption_context(spec.kms_encryption_context.as_deref().unwrap_or(""))?;

    let [s3_regions, buckets, prefixes, kms_regions, key_ids, sses] = lists.map(|(_, l)| l);
    (0..count)
        .map(|index| {
            let s3_region = nth(&s3_regions, index);
            let kms_region = Some(nth(&kms_regions, index))
                .filter(|region| !region.is_empty())
                .unwrap_or_else(|| s3_region.clone());
            let bucket = nth(&buckets, index);
            let key_id = Some(nth(&key_ids, index)).filter(|id| !id.is_empty());
            let sse = server_side_encryption(&nth(&sses, index), key_id.as_deref())?;
            if s3_region.is_empty() {
                return Err("s3Region is required".to_string());
            }
            if bucket.is_empty() {
                return Err("s3Bucket is required".to_string());
            }
            if sse.is_none() && key_id.is_none() {
                return Err("kmsKeyId is required unless s3SSE is set".to_string());
            }
            Ok(Plan {
                s3_region,
                kms_region,
                bucket,
                prefix: nth(&prefixes, index),
                key_id,
                sse,
                context: context.clone(),
            })
        })
        .collect()
}

/// Parses `k=v,k2=v2`.
fn encryption_context(text: &str) -> Result<HashMap<String, String>, String> {
    text.split(',')
        .map(str::trim)
        .filter(|pair| !pair.is_empty())
        .map(|pair| match pair.split_once('=') {
            Some((key, value)) if !key.trim().is_empty() => {
                Ok((key.trim().to_string(), value.trim().to_string()))
            }
            _ => Err(format!(
                "kmsEncryptionContext entry {pair:?} is not key=value"
            )),
        })
        .collect()
}

/// The S3 encryption for `s3SSE`, checked as Bank-Vaults checks it: `aws:kms` needs the KMS
/// key, `AES256` takes none.
fn server_side_encryption(
    algorithm: &str,
    key_id: Option<&str>,
) -> Result<Option<ServerSideEncryption>, String> {
    match (algorithm, key_id) {
        ("", _) => Ok(None),
        ("aws:kms", Some(_)) => Ok(Some(ServerSideEncryption::AwsKms)),
        ("aws:kms", None) => Err("s3SSE aws:kms needs kmsKeyId".to_string()),
        ("AES256", None) => Ok(Some(ServerSideEncryption::Aes256)),
        ("AES256", Some(_)) => {
            Err("s3SSE AES256 takes no kmsKeyId: leave it out, or use aws:kms".to_string())
        }
        (other, _) => Err(format!("s3SSE {other:?} is neither aws:kms nor AES256")),
    }
}

/// The error code and message of an AWS call, or the chain of causes when no service
/// answered. Neither holds a request body, so no value can show through.
fn aws_reason<E, R>(error: &SdkError<E, R>) -> String
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    match error.as_service_error() {
        Some(service) => format!(
            "{}: {}",
            service.code().unwrap_or("unknown error code"),
            service.message().unwrap_or("no message")
        ),
        None => DisplayErrorContext(error).to_string(),
    }
}

impl Location {
    fn describe(&self) -> String {
        format!(
            "S3 bucket {} (prefix {:?}, region {})",
            self.bucket, self.prefix, self.region
        )
    }

    fn error(&self, operation: &'static str, key: &str, reason: String) -> KeyStoreError {
        KeyStoreError::Backend {
            store: self.describe(),
            operation,
            key: format!("{}{key}", self.prefix),
            reason,
        }
    }

    async fn get(&self, key: &str) -> Result<Option<Secret>, KeyStoreError> {
        let object = format!("{}{key}", self.prefix);
        let answer = self
            .s3
            .get_object()
            .bucket(&self.bucket)
            .key(&object)
            .send()
            .await;
        let body = match answer {
            Ok(output) => output.body,
            Err(error) if error.as_service_error().is_some_and(|e| e.is_no_such_key()) => {
                return Ok(None);
            }
            Err(error) => return Err(self.error("reading", key, aws_reason(&error))),
        };
        let bytes = body
            .collect()
            .await
            .map_err(|error| self.error("reading", key, error.to_string()))?;
        let stored = Zeroizing::new(bytes.to_vec());

        let plain = match &self.protection {
            Protection::ServerSide { .. } => stored,
            Protection::Kms {
                client, context, ..
            } => {
                let output = client
                    .decrypt()
                    .ciphertext_blob(Blob::new(stored.to_vec()))
                    .set_encryption_context(Some(context.clone()))
                    .send()
                    .await
                    .map_err(|error| self.error("decrypting with KMS", key, aws_reason(&error)))?;
                Zeroizing::new(output.plaintext.map(Blob::into_inner).unwrap_or_default())
            }
        };
        Secret::from_bytes(plain.to_vec())
            .map(Some)
            .ok_or_else(|| self.error("reading", key, "the value is not UTF-8".to_string()))
    }

    async fn set(&self, key: &str, value: &Secret) -> Result<(), KeyStoreError> {
        let object = format!("{}{key}", self.prefix);
        let request = self.s3.put_object().bucket(&self.bucket).key(&object);
        let request = match &self.protection {
            Protection::ServerSide { algorithm, key_id } => request
                .server_side_encryption(algorithm.clone())
                .set_ssekms_key_id(key_id.clone())
                .body(ByteStream::from(value.expose().as_bytes().to_vec())),
            Protection::Kms {
                client,
                key_id,
                context,
            } => {
                let output = client
                    .encrypt()
                    .key_id(key_id)
                    .plaintext(Blob::new(value.expose().as_bytes()))
                    .set_encryption_context(Some(context.clone()))
                    .send()
                    .await
                    .map_err(|error| self.error("encrypting with KMS", key, aws_reason(&error)))?;
                let ciphertext = output.ciphertext_blob.map(Blob::into_inner);
                let ciphertext = ciphertext.ok_or_else(|| {
                    self.error("encrypting with KMS", key, "no ciphertext".to_string())
                })?;
                request.body(ByteStream::from(ciphertext))
            }
        };
        request
            .send()
            .await
            .map_err(|error| self.error("writing", key, aws_reason(&error)))?;
        Ok(())
    }

    async fn list(&self) -> Result<Vec<String>, KeyStoreError> {
        let mut names = Vec::new();
        let mut pages = self
            .s3
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(&self.prefix)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|error| self.error("listing", "", aws_reason(&error)))?;
            let keys = page.contents().iter().filter_map(|object| object.key());
            // Only names directly under the prefix: a deeper "folder" is someone else's.
            names.extend(
                keys.filter_map(|key| key.strip_prefix(self.prefix.as_str()))
                    .filter(|name| !name.is_empty() && !name.contains('/'))
                    .map(str::to_string),
            );
        }
        Ok(names)
    }
}

#[async_trait]
impl KeyStore for S3KeyStore {
    fn describe(&self) -> String {
        let locations: Vec<String> = self.locations.iter().map(Location::describe).collect();
        locations.join(", ")
    }

    async fn get(&self, key: &str) -> Result<Option<Secret>, KeyStoreError> {
        let mut failures = Vec::new();
        for location in &self.locations {
            match location.get(key).await {
                Ok(value) => return Ok(value),
                Err(error) => {
                    warn!(store = %location.describe(), key, %error, "reading a key failed, \
                          trying the next location");
                    failures.push(error);
                }
            }
        }
        Err(combined("reading", key, failures))
    }

    async fn set(&self, key: &str, value: &Secret) -> Result<(), KeyStoreError> {
        for location in &self.locations {
            debug!(store = %location.describe(), key, "writing a key");
            location.set(key, value).await?;
        }
        Ok(())
    }

    async fn list(&self) -> Result<Vec<String>, KeyStoreError> {
        let mut names = BTreeSet::new();
        let mut failures = Vec::new();
        for location in &self.locations {
            match location.list().await {
                Ok(found) => names.extend(found),
                Err(error) => {
                    warn!(store = %location.describe(), %error, "listing keys failed");
                    failures.push(error);
                }
            }
        }
        if failures.len() == self.locations.len() {
            return Err(combined("listing", "", failures));
        }
        Ok(names.into_iter().collect())
    }
}

/// One error for a read that failed in every location: the only one, or all of them.
fn combined(operation: &'static str, key: &str, mut failures: Vec<KeyStoreError>) -> KeyStoreError {
    if failures.len() == 1
        && let Some(only) = failures.pop()
    {
        return only;
    }
    KeyStoreError::Backend {
        store: "every S3 location".to_string(),
        operation,
        key: key.to_string(),
        reason: failures
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; "),
    }
}

/// An HTTPS client for the SDK: its own is built on aws-lc; this one is rustls on ring.
fn https() -> SharedHttpClient {
    aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(CryptoMode::Ring))
        .build_https()
}

/// The default profile of a shared credentials file's content, and nothing else: not the
/// environment's keys, nor the files in the home folder.
fn file_credentials(content: &Secret, http: SharedHttpClient) -> ProfileFileCredentialsProvider {
    let files = EnvConfigFiles::builder()
        .include_default_config_file(false)
        .include_default_credentials_file(false)
        .with_contents(EnvConfigFileKind::Credentials, content.expose())
        .build();
    // The client serves a profile that assumes a role; a plain key pair needs none.
    let provider = ProviderConfig::without_region().with_http_client(http);
    ProfileFileCredentialsProvider::builder()
        .configure(&provider)
        .profile_files(files)
        .profile_name("default")
        .build()
}

#[cfg(test)]
mod tests {
    use aws_sdk_s3::config::ProvideCredentials;
    use vault_api::unseal::AwsKeyStore;

    use super::*;

    #[tokio::test]
    async fn a_credentials_file_gives_the_keys_of_its_default_profile() {
        let file = Secret::from(
            "[other]\naws_access_key_id = AKIAOTHER\naws_secret_access_key = other\n\n\
             [default]\naws_access_key_id = AKIAFROMFILE\naws_secret_access_key = file-secret\n",
        );
        let credentials = file_credentials(&file, https())
            .provide_credentials()
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(credentials.access_key_id(), "AKIAFROMFILE");
        assert_eq!(credentials.secret_access_key(), "file-secret");

        let other_only = Secret::from("[other]\naws_access_key_id = x\n");
        let empty = file_credentials(&other_only, https());
        assert!(
            empty.provide_credentials().await.is_err(),
            "no default profile"
        );
    }

    fn spec() -> AwsKeyStore {
        AwsKeyStore {
            kms_key_id: Some("k-east,k-west".to_string()),
            kms_region: None,
            kms_encryption_context: Some("Tool=vault-operator, cluster = a".to_string()),
            s3_bucket: Some("b-east,b-west".to_string()),
            s3_prefix: Some("vault/".to_string()),
            s3_region: Some("us-east-1,us-west-2".to_string()),
            s3_sse: None,
        }
    }

    #[test]
    fn lists_name_one_location_per_region() -> Result<(), String> {
        let plans = plan(&spec())?;
        assert_eq!(plans.len(), 2);
        assert_eq!(plans[1].s3_region, "us-west-2");
        assert_eq!(
            plans[1].kms_region, "us-west-2",
            "KMS region defaults to S3's"
        );
        assert_eq!(plans[1].bucket, "b-west");
        assert_eq!(plans[1].prefix, "vault/", "one prefix serves every region");
        assert_eq!(plans[1].key_id.as_deref(), Some("k-west"));
        assert_eq!(
            plans[0].context.get("cluster").map(String::as_str),
            Some("a")
        );
        Ok(())
    }

    #[test]
    fn uneven_lists_and_bad_settings_are_refused() {
        let uneven = AwsKeyStore {
            s3_bucket: Some("a,b,c".to_string()),
            ..spec()
        };
        let error = plan(&uneven).err().unwrap_or_default();
        assert_eq!(
            error,
            "s3Region has 2 entries and s3Bucket 3: give one per region, or one for all"
        );

        let aes_with_key = AwsKeyStore {
            s3_sse: Some("AES256".to_string()),
            ..spec()
        };
        assert!(plan(&aes_with_key).is_err());

        let no_key = AwsKeyStore {
            kms_key_id: None,
            ..spec()
        };
        assert_eq!(
            plan(&no_key).err().as_deref(),
            Some("kmsKeyId is required unless s3SSE is set")
        );

        let bad_context = AwsKeyStore {
            kms_encryption_context: Some("a=b,c".to_string()),
            ..spec()
        };
        assert!(plan(&bad_context).is_err());
    }
}
