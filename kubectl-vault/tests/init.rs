//! `init`: golden output for each flag combination, and every output passes `validate`.

mod common;

use common::{golden, plugin};

/// Name of the golden file, and the arguments after `init`.
const CASES: &[(&str, &str)] = &[
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

#[test]
fn init_output_matches_golden_files_and_validates() {
    for (name, args) in CASES {
        let mut command = vec!["init"];
        command.extend(args.split_whitespace());
        let run = plugin(&command, "");
        assert_eq!(run.code, Some(0), "init {args:?} failed: {}", run.stderr);
        golden(&format!("init/{name}"), &run.stdout);

        // JSON is YAML too, so `validate` reads both.
        let check = plugin(&["validate", "-f", "-"], &run.stdout);
        assert_eq!(check.code, Some(0), "init {args:?}: {}", check.stdout);
        assert!(
            check
                .stdout
                .ends_with("1 Vault resources in 1 files: 1 valid, 0 invalid\n"),
            "init {args:?}: {}",
            check.stdout
        );
    }
}

#[test]
fn kubernetes_auth_without_a_namespace_is_a_warning() {
    let args = [
        "init",
        "--with-rbac",
        "--external-config",
        "tests/fixtures/external-config.yaml",
    ];
    let run = plugin(&args, "");
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert!(
        run.stderr
            .starts_with("warning: --with-rbac: Kubernetes auth needs the ServiceAccount"),
        "{}",
        run.stderr
    );
    assert!(!run.stdout.contains("ClusterRoleBinding"));
}

#[test]
fn init_refuses_what_the_rules_refuse() {
    let run = plugin(&["init", "--storage", "file", "--size", "3"], "");
    assert_eq!(run.code, Some(1));
    assert!(
        run.stderr.contains("spec.size: 3 pods need storage"),
        "{}",
        run.stderr
    );
    assert!(run.stdout.is_empty());

    let run = plugin(&["init", "--unseal", "gcp", "--aws-s3-bucket", "b"], "");
    assert_eq!(run.code, Some(1));
    assert_eq!(
        run.stderr,
        "error: --aws-s3-bucket is a setting of --unseal aws, not of --unseal gcp\n"
    );
}
