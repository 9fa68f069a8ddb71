//! The S3 key store against moto's server, a local S3 and KMS on 127.0.0.1.
//!
//! One moto server serves every test here; the store finds it through `AWS_ENDPOINT_URL`
//! and its credentials through the usual environment variables, as it would in a pod.

#![allow(unsafe_code)]

mod common;

use std::sync::OnceLock;

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_kms::primitives::Blob;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{BucketLocationConstraint, CreateBucketConfiguration};
use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode};
use common::{BoxError, Server, error_message, tool};
use vault_api::unseal::AwsKeyStore;
use vault_keystore::{KeyStore, S3KeyStore, Secret};

const MOTO_PORT: u16 = 19100;

/// Starts moto once and points the AWS environment at it.
fn moto() -> Result<(), String> {
    static STARTED: OnceLock<Result<(), String>> = OnceLock::new();
    STARTED
        .get_or_init(|| {
            let endpoint = format!("http://127.0.0.1:{MOTO_PORT}");
            // SAFETY: the variables are set once, before any test reads them (each first
            // calls this function), and no C code in this process reads the environment.
            unsafe {
                std::env::set_var("AWS_ENDPOINT_URL", &endpoint);
                std::env::set_var("AWS_ACCESS_KEY_ID", "testing");
                std::env::set_var("AWS_SECRET_ACCESS_KEY", "testing");
                std::env::set_var("AWS_EC2_METADATA_DISABLED", "true");
                std::env::set_var("AWS_CONFIG_FILE", "/dev/null");
                std::env::set_var("AWS_SHARED_CREDENTIALS_FILE", "/dev/null");
                std::env::remove_var("AWS_PROFILE");
            }
            let moto = tool("moto").map_err(|error| error.to_string())?;
            let port = MOTO_PORT.to_string();
            Server::start_for_process(&moto, &["-H", "127.0.0.1", "-p", &port], MOTO_PORT)
                .map_err(|error| error.to_string())
        })
        .clone()
}

/// The SDK's configuration for `region`, as a tool that talks to AWS directly (Bank-Vaults,
/// the test's set-up) would have it.
async fn sdk(region: &str) -> SdkConfig {
    let http = aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(CryptoMode::Ring))
        .build_https();
    aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new(region.to_string()))
        .http_client(http)
        .load()
        .await
}

fn s3(config: &SdkConfig) -> aws_sdk_s3::Client {
    let config = aws_sdk_s3::config::Builder::from(config)
        .force_path_style(true)
        .build();
    aws_sdk_s3::Client::from_conf(config)
}

/// A bucket and a KMS key in `region`; returns the key's ID.
async fn bucket_and_key(region: &str, bucket: &str) -> Result<String, BoxError> {
    let config = sdk(region).await;
    let mut create = s3(&config).create_bucket().bucket(bucket);
    if region != "us-east-1" {
        let location = CreateBucketConfiguration::builder()
            .location_constraint(BucketLocationConstraint::from(region))
            .build();
        create = create.create_bucket_configuration(location);
    }
    create.send().await?;
    let key = aws_sdk_kms::Client::new(&config)
        .create_key()
        .send()
        .await?;
    let id = key
        .key_metadata()
        .map(|metadata| metadata.key_id().to_string());
    id.ok_or_else(|| "moto made a key without an ID".into())
}

async fn object(region: &str, bucket: &str, name: &str) -> Result<Vec<u8>, BoxError> {
    let config = sdk(region).await;
    let output = s3(&config)
        .get_object()
        .bucket(bucket)
        .key(name)
        .send()
        .await?;
    Ok(output.body.collect().await?.to_vec())
}

#[tokio::test]
async fn kms_round_trip_stores_ciphertext() -> Result<(), BoxError> {
    moto()?;
    let key_id = bucket_and_key("us-east-1", "kms-round-trip").await?;
    let spec = AwsKeyStore {
        kms_key_id: Some(key_id),
        kms_region: Some("us-east-1".into()),
        kms_encryption_context: Some("Tool=vault-operator,cluster=test".into()),
        s3_bucket: Some("kms-round-trip".into()),
        s3_prefix: Some("vault/".into()),
        s3_region: Some("us-east-1".into()),
        s3_sse: None,
    };
    let store = S3KeyStore::from_spec(&spec).await?;

    assert_eq!(store.get("vault-unseal-0").await?, None);
    let value = Secret::from("unseal-key-share-0");
    store.set("vault-unseal-0", &value).await?;
    store.set("vault-root", &Secret::from("root-token")).await?;
    assert_eq!(store.get("vault-unseal-0").await?, Some(value));
    assert_eq!(store.list().await?, ["vault-root", "vault-unseal-0"]);

    let stored = object("us-east-1", "kms-round-trip", "vault/vault-unseal-0").await?;
    assert!(!stored.is_empty());
    let shown = String::from_utf8_lossy(&stored);
    assert!(
        !shown.contains("unseal-key-share-0"),
        "the object holds the value itself"
    );
    Ok(())
}

#[tokio::test]
async fn server_side_encryption_stores_with_the_header() -> Result<(), BoxError> {
    moto()?;
    let key_id = bucket_and_key("us-east-1", "sse-kms").await?;
    bucket_and_key("us-east-1", "sse-aes").await?;
    let config = sdk("us-east-1").await;

    for (bucket, algorithm, kms_key) in [
        ("sse-kms", "aws:kms", Some(key_id.clone())),
        ("sse-aes", "AES256", None),
    ] {
        let spec = AwsKeyStore {
            kms_key_id: kms_key.clone(),
            s3_bucket: Some(bucket.into()),
            s3_region: Some("us-east-1".into()),
            s3_sse: Some(algorithm.into()),
            ..AwsKeyStore::default()
        };
        let store = S3KeyStore::from_spec(&spec).await?;
        let value = Secret::from("root-token-value");
        store.set("vault-root", &value).await?;
        assert_eq!(store.get("vault-root").await?, Some(value));

        let head = s3(&config)
            .head_object()
            .bucket(bucket)
            .key("vault-root")
            .send()
            .await?;
        let used = head
            .server_side_encryption()
            .map(|sse| sse.as_str().to_string());
        assert_eq!(used.as_deref(), Some(algorithm), "bucket {bucket}");
        assert_eq!(
            head.ssekms_key_id().map(|id| id.contains(&key_id)),
            kms_key.map(|_| true)
        );
    }
    Ok(())
}

#[tokio::test]
async fn two_regions_are_written_and_listed() -> Result<(), BoxError> {
    moto()?;
    let east = bucket_and_key("us-east-1", "two-regions-east").await?;
    let west = bucket_and_key("eu-west-1", "two-regions-west").await?;
    let spec = AwsKeyStore {
        kms_key_id: Some(format!("{east},{west}")),
        s3_bucket: Some("two-regions-east,two-regions-west".into()),
        s3_region: Some("us-east-1,eu-west-1".into()),
        ..AwsKeyStore::default()
    };
    let store = S3KeyStore::from_spec(&spec).await?;
    store.set("vault-unseal-0", &Secret::from("k0")).await?;

    // A key written in the second region only (by an earlier, partial write) is listed too.
    let west_only = AwsKeyStore {
        kms_key_id: Some(west),
        s3_bucket: Some("two-regions-west".into()),
        s3_region: Some("eu-west-1".into()),
        ..AwsKeyStore::default()
    };
    let west_store = S3KeyStore::from_spec(&west_only).await?;
    assert_eq!(
        west_store.get("vault-unseal-0").await?,
        Some(Secret::from("k0"))
    );
    west_store
        .set("vault-unseal-1", &Secret::from("k1"))
        .await?;
    assert_eq!(store.list().await?, ["vault-unseal-0", "vault-unseal-1"]);
    Ok(())
}

#[tokio::test]
async fn a_missing_bucket_is_named() -> Result<(), BoxError> {
    moto()?;
    let spec = AwsKeyStore {
        s3_bucket: Some("no-such-bucket".into()),
        s3_region: Some("us-east-1".into()),
        s3_sse: Some("AES256".into()),
        ..AwsKeyStore::default()
    };
    let store = S3KeyStore::from_spec(&spec).await?;
    let value = Secret::from("never-shown");
    let written = store.set("vault-root", &value).await;
    let message = error_message(written);
    assert!(message.contains("no-such-bucket"), "{message}");
    assert!(message.contains("NoSuchBucket"), "{message}");
    assert!(!message.contains("never-shown"), "{message}");

    let read = store.get("vault-root").await;
    let message = error_message(read);
    assert!(
        message.starts_with("reading vault-root in S3 bucket no-such-bucket"),
        "{message}"
    );
    Ok(())
}

#[tokio::test]
async fn reads_what_bank_vaults_wrote() -> Result<(), BoxError> {
    moto()?;
    let key_id = bucket_and_key("us-east-1", "bank-vaults").await?;
    let config = sdk("us-east-1").await;

    // As Bank-Vaults' awskms and s3 stores write: the KMS ciphertext of the value's bytes,
    // with the encryption context, at prefix + name.
    let encrypted = aws_sdk_kms::Client::new(&config)
        .encrypt()
        .key_id(&key_id)
        .plaintext(Blob::new("bank-vaults-share".as_bytes()))
        .encryption_context("Tool", "bank-vaults")
        .send()
        .await?;
    let ciphertext = encrypted
        .ciphertext_blob()
        .map(|blob| blob.as_ref().to_vec());
    s3(&config)
        .put_object()
        .bucket("bank-vaults")
        .key("keys/vault-unseal-3")
        .body(ByteStream::from(ciphertext.unwrap_or_default()))
        .send()
        .await?;

    let spec = AwsKeyStore {
        kms_key_id: Some(key_id),
        kms_encryption_context: Some("Tool=bank-vaults".into()),
        s3_bucket: Some("bank-vaults".into()),
        s3_prefix: Some("keys/".into()),
        s3_region: Some("us-east-1".into()),
        ..AwsKeyStore::default()
    };
    let store = S3KeyStore::from_spec(&spec).await?;
    assert_eq!(
        store.get("vault-unseal-3").await?,
        Some(Secret::from("bank-vaults-share"))
    );
    Ok(())
}
