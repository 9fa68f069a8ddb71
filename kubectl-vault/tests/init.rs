//! `init`: golden output for each flag combination, and every output passes `validate`.

mod common;

use common::{INIT_CASES, golden, plugin};

#[test]
fn init_output_matches_golden_files_and_validates() {
    for (name, args) in INIT_CASES {
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
