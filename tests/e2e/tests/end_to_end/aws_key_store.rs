//! The `aws` key store end to end: `cr-raft.yaml` with the unseal keys in S3, encrypted
//! with KMS, as `cr-aws.yaml` keeps them (OpenBao has no S3 storage, so Vault's own data
//! stays on Raft). moto stands in for AWS, in the cluster's network namespace on the
//! gateway address, where pods reach it; a controller of this scenario's own is pointed at
//! it through the standard AWS environment, with the metadata server switched off.

use std::process::Stdio;
use std::time::Instant;

use e2e::inside::curl;
use e2e::operator::set_env;
use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::api::Api;
use serde_json::{Value, json};

use crate::BoxError;
use crate::harness::{Case, RECOVERY_WITHIN, VAULT, measured};

/// Where moto listens, inside the cluster's network namespace.
const MOTO_PORT: u16 = 5000;
const BUCKET: &str = "vault-keys";
const PREFIX: &str = "vault-operator/";
const REGION: &str = "us-east-1";

pub async fn run(case: &Case) -> Result<(), BoxError> {
    let moto = Moto::start(case).await?;
    let key_id = moto.create_key().await?;
    moto.create_bucket().await?;

    let endpoint = moto.endpoint();
    let controller = case
        .own_controller("e2e-aws", |deployment| {
            for (name, value) in [
                ("AWS_ENDPOINT_URL", endpoint.as_str()),
                ("AWS_ACCESS_KEY_ID", "testing"),
                ("AWS_SECRET_ACCESS_KEY", "testing"),
                ("AWS_EC2_METADATA_DISABLED", "true"),
                ("AWS_CONFIG_FILE", "/dev/null"),
                ("AWS_SHARED_CREDENTIALS_FILE", "/dev/null"),
            ] {
                set_env(deployment, name, value)?;
            }
            Ok(())
        })
        .await?;
    let outcome = keys_in_s3(case, &moto, &key_id).await;
    case.remove_own_controller(controller, outcome).await
}

async fn keys_in_s3(case: &Case, moto: &Moto, key_id: &str) -> Result<(), BoxError> {
    let ns = case.namespace.as_str();
    let took = case
        .start_changed_sample(|vault| {
            vault["spec"]["unsealConfig"] = json!({"aws": {
                "kmsKeyId": key_id,
                "kmsRegion": REGION,
                "kmsEncryptionContext": "Service=Vault",
                "s3Bucket": BUCKET,
                "s3Prefix": PREFIX,
                "s3Region": REGION,
            }});
        })
        .await?;
    measured(ns, "three unsealed voters, the keys in S3", took);

    let objects = moto.objects().await?;
    for index in 0..5 {
        let wanted = format!("{PREFIX}vault-unseal-{index}");
        if !objects.contains(&wanted) {
            return Err(format!("{wanted} is not in bucket {BUCKET}: {objects:?}").into());
        }
    }
    if !objects.contains(&format!("{PREFIX}vault-root")) {
        return Err(format!("no root token in bucket {BUCKET}: {objects:?}").into());
    }
    let secrets: Api<Secret> = case.api();
    if secrets
        .get_opt(&format!("{VAULT}-unseal-keys"))
        .await?
        .is_some()
    {
        return Err("the keys went to a Secret as well as to S3".into());
    }

    // A restarted pod comes back sealed and is unsealed with the keys read from S3.
    let restarted = Instant::now();
    let pods: Api<Pod> = case.api();
    pods.delete(&format!("{VAULT}-1"), &Default::default())
        .await?;
    e2e::wait_for("vault-1 made again", RECOVERY_WITHIN, || async {
        let pod = pods.get_opt(&format!("{VAULT}-1")).await?;
        Ok::<_, BoxError>(
            pod.filter(|p| p.metadata.deletion_timestamp.is_none())
                .map(drop),
        )
    })
    .await?;
    case.converged(3, RECOVERY_WITHIN).await?;
    measured(
        ns,
        "a deleted pod unsealed again with the keys from S3",
        restarted.elapsed(),
    );
    case.status_agrees("with the keys in S3").await
}

/// moto's server, run in the cluster's network namespace; stopped when dropped.
struct Moto {
    netns: String,
    _process: tokio::process::Child,
}

impl Moto {
    async fn start(case: &Case) -> Result<Self, BoxError> {
        let script =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/tools.sh");
        let installed = tokio::process::Command::new("bash")
            .arg(script)
            .arg("moto")
            .output()
            .await?;
        if !installed.status.success() {
            let said = String::from_utf8_lossy(&installed.stderr);
            return Err(format!("scripts/tools.sh moto: {said}").into());
        }
        let program = String::from_utf8(installed.stdout)?.trim().to_string();
        let netns = case.suite.cluster.layout().netns();
        let port = MOTO_PORT.to_string();
        let process = tokio::process::Command::new("ip")
            .args([
                "netns",
                "exec",
                &netns,
                &program,
                "-H",
                localcluster::GATEWAY,
                "-p",
            ])
            .arg(&port)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()?;
        let moto = Self {
            netns,
            _process: process,
        };
        e2e::wait_for("moto to answer", RECOVERY_WITHIN, || async {
            let answered = curl(&moto.netns, &[&moto.endpoint()]).await;
            Ok::<_, BoxError>(answered.ok().map(drop))
        })
        .await?;
        Ok(moto)
    }

    fn endpoint(&self) -> String {
        format!("http://{}:{MOTO_PORT}", localcluster::GATEWAY)
    }

    /// A KMS key; its id. moto checks no signature, but tells services apart by the
    /// credential scope of the Authorization header.
    async fn create_key(&self) -> Result<String, BoxError> {
        let url = self.endpoint();
        let (code, body) = curl(
            &self.netns,
            &[
                "-X",
                "POST",
                "-H",
                "Authorization: AWS4-HMAC-SHA256 \
                 Credential=testing/20260101/us-east-1/kms/aws4_request, \
                 SignedHeaders=host, Signature=0",
                "-H",
                "X-Amz-Target: TrentService.CreateKey",
                "-H",
                "Content-Type: application/x-amz-json-1.1",
                "--data-raw",
                "{}",
                &url,
            ],
        )
        .await?;
        let answer: Value = serde_json::from_str(&body).unwrap_or_default();
        match answer["KeyMetadata"]["KeyId"].as_str() {
            Some(id) if code == 200 => Ok(id.to_string()),
            _ => Err(format!("KMS CreateKey answered {code}: {body}").into()),
        }
    }

    async fn create_bucket(&self) -> Result<(), BoxError> {
        let url = format!("{}/{BUCKET}", self.endpoint());
        let (code, body) = curl(&self.netns, &["-X", "PUT", &url]).await?;
        if code != 200 {
            return Err(format!("S3 CreateBucket answered {code}: {body}").into());
        }
        Ok(())
    }

    /// The names of the objects in the bucket.
    async fn objects(&self) -> Result<Vec<String>, BoxError> {
        let url = format!("{}/{BUCKET}?list-type=2", self.endpoint());
        let (code, body) = curl(&self.netns, &[&url]).await?;
        if code != 200 {
            return Err(format!("S3 ListObjectsV2 answered {code}: {body}").into());
        }
        Ok(body
            .split("<Key>")
            .skip(1)
            .filter_map(|rest| rest.split_once("</Key>"))
            .map(|(key, _)| key.to_string())
            .collect())
    }
}
