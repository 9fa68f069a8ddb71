//! Completion: the scripts `completion` prints, and kubectl's `__complete` protocol.

mod common;

use common::plugin;

#[test]
fn completion_scripts_name_the_binary_and_its_commands() {
    for shell in ["bash", "zsh", "fish"] {
        let run = plugin(&["completion", shell], "");
        assert_eq!(run.code, Some(0), "{shell}: {}", run.stderr);
        assert!(run.stdout.contains("kubectl-vault"), "{shell}");
        for command in ["init", "validate", "status", "install"] {
            assert!(run.stdout.contains(command), "{shell} lacks {command}");
        }
        assert!(
            !run.stdout.contains("__complete"),
            "{shell} offers the hidden command"
        );
    }
}

#[test]
fn bash_completes_commands_flags_and_values() {
    let script = plugin(&["completion", "bash"], "").stdout;
    let cases = [
        ("kubectl-vault st", "status"),
        ("kubectl-vault init --unseal a", "aws azure alibaba"),
        ("kubectl-vault status --w", "--watch"),
    ];
    for (line, expected) in cases {
        let words: Vec<&str> = line.split(' ').collect();
        let program = format!(
            "{script}\nCOMP_WORDS=({line}); COMP_CWORD={}; _kubectl_vault kubectl-vault {} {}; \
             echo \"${{COMPREPLY[*]}}\"",
            words.len() - 1,
            words[words.len() - 1],
            words[words.len() - 2],
        );
        let output = std::process::Command::new("bash")
            .arg("-c")
            .arg(&program)
            .output();
        let Ok(output) = output else {
            eprintln!("skipped: no bash");
            return;
        };
        let answer = String::from_utf8_lossy(&output.stdout);
        assert_eq!(answer.trim(), expected, "{line}");
    }
}

#[test]
fn kubectl_plugin_completion_protocol() {
    let run = plugin(&["__complete", "st"], "");
    assert_eq!(
        run.stdout,
        "status\tShow the Vault clusters: a summary line and one row per pod\n:4\n"
    );
    let run = plugin(&["__complete", "init", "--tls", ""], "");
    assert_eq!(run.stdout, ":4\n");
    let run = plugin(&["__complete", "status", "-o", ""], "");
    assert!(run.stdout.starts_with("table\t"), "{}", run.stdout);
    assert!(run.stdout.ends_with(":4\n"));
}

#[test]
fn the_kubectl_complete_script_calls_the_protocol() {
    let script = common::crate_path("kubectl_complete-vault");
    let text = std::fs::read_to_string(&script).unwrap_or_default();
    assert!(text.starts_with("#!/usr/bin/env sh\n"));
    assert!(text.contains("kubectl-vault __complete \"$@\""));
}

#[test]
fn version() {
    let run = plugin(&["version"], "");
    assert_eq!(
        run.stdout,
        format!("kubectl-vault {}\n", env!("CARGO_PKG_VERSION"))
    );
}
