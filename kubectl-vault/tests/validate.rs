//! `validate`: the shared Bank-Vaults samples pass, broken resources fail with the right
//! file, document and field, and warnings alone do not fail.

mod common;

use common::plugin;

/// The shared Bank-Vaults samples (`VAULT_SAMPLES_DIR`, else `../shared` beside the
/// checkout); their absence fails the test rather than passing it unchecked.
fn samples() -> String {
    let dir = e2e::samples_dir();
    assert!(
        dir.is_dir(),
        "no shared samples at {}: check out `shared` beside this repository, or set \
         VAULT_SAMPLES_DIR to a folder of the Bank-Vaults samples",
        dir.display()
    );
    dir.display().to_string()
}

#[test]
fn every_shared_sample_passes_but_the_one_with_file_storage_and_three_pods() {
    let samples = samples();
    let run = plugin(&["validate", "-f", &samples], "");
    let errors: Vec<&str> = run
        .stdout
        .lines()
        .filter(|l| l.contains(": error: "))
        .collect();
    assert_eq!(errors.len(), 1, "{}", run.stdout);
    assert!(
        errors[0].ends_with(
            "cr-podAntiAffinity.yaml: document 0 (vault/vault): error: spec.size: 3 pods need \
             storage that supports high availability, and file does not; set size to 1, or use \
             raft storage (`spec.config.storage.raft`)"
        ),
        "{}",
        errors[0]
    );
    assert!(
        run.stdout
            .ends_with("8 Vault resources in 11 files: 7 valid, 1 invalid\n")
    );
    assert_eq!(run.code, Some(1));

    // Each of the others on its own passes.
    let stored = e2e::SAMPLE_OUTCOMES
        .iter()
        .filter(|(_, refused)| refused.is_none());
    for (sample, _) in stored {
        let path = format!("{samples}/{sample}");
        let run = plugin(&["validate", "-f", &path], "");
        assert_eq!(run.code, Some(0), "{sample}: {}", run.stdout);
    }
}

#[test]
fn broken_resources_name_file_document_and_field() {
    let run = plugin(&["validate", "-f", "tests/fixtures/broken.yaml"], "");
    assert_eq!(run.code, Some(1));
    let file = "tests/fixtures/broken.yaml";
    let expected_starts = [
        format!("{file}: document 1: error: spec.size: invalid type"),
        format!("{file}: document 2 (vault/keys): error: spec.unsealConfig: 2 key stores are set"),
        format!(
            "{file}: document 2 (vault/keys): error: spec.unsealConfig.options.secretThreshold: \
             4 is not between 1 and secretShares (3)"
        ),
        format!("{file}: document 3 (vault/listener): error: spec.config.listener.tcp.address: "),
        format!("{file}: document 3 (vault/listener): error: spec.tlsExpiryThreshold: "),
        format!("{file}: document 3 (vault/listener): error: spec.caNamespaces[1]: "),
        format!("{file}: document 3 (vault/listener): error: spec.servicePorts.api-port: "),
        format!("{file}: document 4 (vault/no-storage): error: spec.config.storage: "),
        format!(
            "{file}: document 5: error: spec.volumeClaimTemplates[0].spec.accessModes: \
             invalid type"
        ),
    ];
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(lines.len(), expected_starts.len() + 1, "{}", run.stdout);
    for (line, start) in lines.iter().zip(&expected_starts) {
        assert!(
            line.starts_with(start.as_str()),
            "{line}\ndoes not start with\n{start}"
        );
    }
    assert_eq!(
        lines.last().copied(),
        Some("5 Vault resources in 1 files: 0 valid, 5 invalid")
    );
}

#[test]
fn warnings_alone_pass() {
    let run = plugin(&["validate", "-f", "tests/fixtures/warnings-only.yaml"], "");
    assert_eq!(run.code, Some(0), "{}", run.stdout);
    let warnings = run
        .stdout
        .lines()
        .filter(|l| l.contains(": warning: "))
        .count();
    assert_eq!(warnings, 2, "{}", run.stdout);
    assert!(
        run.stdout
            .contains("(vault/vault): warning: spec.bankVaultsImage: ")
    );
    assert!(
        run.stdout
            .contains("(vault/vault): warning: spec.config.storage.raft.path: ")
    );
}

#[test]
fn text_that_is_not_yaml_and_standard_input() {
    let run = plugin(&["validate", "-f", "tests/fixtures/not-yaml.yaml"], "");
    assert_eq!(run.code, Some(1));
    assert!(
        run.stdout
            .starts_with("tests/fixtures/not-yaml.yaml: error: not YAML: ")
    );

    let stdin = "apiVersion: vault.banzaicloud.com/v1alpha1\nkind: Vault\nmetadata: {name: v}\n\
                 spec: {config: {storage: {raft: {path: /data}}}, volumeMounts: \
                 [{name: d, mountPath: /data}]}\n";
    let run = plugin(&["validate", "-f", "-"], stdin);
    assert_eq!(run.code, Some(0), "{}", run.stdout);
    assert_eq!(
        run.stdout,
        "1 Vault resources in 1 files: 1 valid, 0 invalid\n"
    );
}

#[test]
fn a_missing_file_is_an_error_that_names_it() {
    let run = plugin(&["validate", "-f", "tests/fixtures/none.yaml"], "");
    assert_eq!(run.code, Some(1));
    assert!(
        run.stderr
            .starts_with("error: reading tests/fixtures/none.yaml: ")
    );
}
