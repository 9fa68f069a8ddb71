//! Helpers shared by the integration tests: running the built plugin, and golden files.

#![allow(dead_code)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// What a run of the plugin printed, and how it ended.
pub struct Run {
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
    /// The exit code.
    pub code: Option<i32>,
}

/// Runs the built `kubectl-vault` with `args`, `stdin` as its input (never a terminal, so
/// `init` does not prompt), without a kubeconfig.
pub fn plugin(args: &[&str], stdin: &str) -> Run {
    let child = Command::new(env!("CARGO_BIN_EXE_kubectl-vault"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("KUBECONFIG", "/nonexistent/kubeconfig")
        .env_remove("NO_COLOR")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let Ok(mut child) = child else {
        panic!("cannot start {}", env!("CARGO_BIN_EXE_kubectl-vault"));
    };
    if let Some(mut input) = child.stdin.take() {
        let _ = input.write_all(stdin.as_bytes());
    }
    let Ok(Output {
        stdout,
        stderr,
        status,
    }) = child.wait_with_output()
    else {
        panic!("kubectl-vault {args:?} did not finish");
    };
    Run {
        stdout: String::from_utf8_lossy(&stdout).into_owned(),
        stderr: String::from_utf8_lossy(&stderr).into_owned(),
        code: status.code(),
    }
}

/// A path under the crate's folder.
pub fn crate_path(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(relative)
}

/// Compares `actual` with the golden file `tests/golden/NAME`; with `UPDATE_GOLDEN=1` in the
/// environment, writes it instead.
pub fn golden(name: &str, actual: &str) {
    let path = crate_path("tests/golden").join(name);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        if let Some(folder) = path.parent() {
            let _ = std::fs::create_dir_all(folder);
        }
        if let Err(e) = std::fs::write(&path, actual) {
            panic!("writing {}: {e}", path.display());
        }
        return;
    }
    let Ok(expected) = std::fs::read_to_string(&path) else {
        panic!(
            "no golden file {}; write it with UPDATE_GOLDEN=1 cargo test -p kubectl-vault",
            path.display()
        );
    };
    assert!(
        expected == actual,
        "{} differs from the output (rewrite it with UPDATE_GOLDEN=1):\n--- expected\n{expected}\n\
         --- actual\n{actual}",
        path.display()
    );
}

/// The flag combinations of `init` with golden files: the golden file's name, and the
/// arguments after `init`. The cluster tests apply the same output with a server dry run.
pub const INIT_CASES: &[(&str, &str)] = &[
    ("default.yaml", ""),
    ("file-no-tls.yaml", "dev --storage file --tls off"),
    (
        "aws-zone.yaml",
        "prod -n vault --size 5 --unseal aws --aws-kms-key-id alias/vault \
         --aws-kms-region eu-west-1 --aws-s3-bucket vault-keys --aws-s3-region eu-west-1 \
         --anti-affinity zone --storage-size 10Gi",
    ),
    (
        "gcp-existing-tls-host.yaml",
        "--unseal gcp --gcp-kms-project p --gcp-kms-location global --gcp-kms-key-ring ring \
         --gcp-kms-crypto-key key --gcp-storage-bucket keys --tls secret:vault-tls \
         --anti-affinity host --image openbao/openbao:2.4.1",
    ),
    (
        "azure-no-anti-affinity.yaml",
        "--unseal azure --azure-key-vault-name kv --azure-key-prefix v --anti-affinity none",
    ),
    (
        "alibaba.yaml",
        "--unseal alibaba --alibaba-kms-region eu-central-1 --alibaba-kms-key-id k \
         --alibaba-oss-endpoint oss.example.com --alibaba-oss-bucket b",
    ),
    (
        "oci.yaml",
        "--unseal oci --oci-key-ocid ocid1.key \
         --oci-cryptographic-endpoint https://crypto.example.com \
         --oci-bucket-name b --oci-bucket-namespace ns",
    ),
    (
        "vault-kv.yaml",
        "--unseal vault --vault-address https://central.vault:8200 \
         --vault-unseal-keys-path secret/unseal --vault-role vault",
    ),
    (
        "hsm.yaml",
        "--unseal hsm --hsm-module-path /usr/lib/softhsm/libsofthsm2.so \
         --hsm-token-label vault --hsm-key-label unseal --secret-name vault-hsm-keys",
    ),
    (
        "kubernetes-secret-rbac.yaml",
        "-n vault --with-rbac --service-account vault-sa --secret-name keys \
         --secret-namespace vault-keys",
    ),
    (
        "postgresql-external-config.yaml",
        "--storage postgresql --storage-option connection_url=postgres://vault@db:5432/vault \
         --storage-option ha_enabled=true --size 2 \
         --external-config tests/fixtures/external-config.yaml",
    ),
    (
        "rbac-kubernetes-auth.yaml",
        "-n vault --with-rbac --external-config tests/fixtures/external-config.yaml",
    ),
    ("rbac.json", "-n vault --with-rbac -o json"),
    ("single.json", "-o json --size 1"),
];
