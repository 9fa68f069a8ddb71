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
