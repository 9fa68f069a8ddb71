//! The krew packaging tested with krew itself, on the plugin this test run built:
//! `krew/test.sh` packages it, installs it from the archive into a temporary KREW_ROOT, and
//! runs it through kubectl's plugin discovery. It builds nothing with Cargo (the target
//! folder is locked while tests run), so it takes seconds once krew is built.
//!
//! Needs Go with krew in its module cache (or the module proxy) the first time, and the
//! kubectl of `tests/localcluster/k8s/build.sh`.

mod common;

use std::process::Command;
use std::time::Instant;

#[test]
fn krew_installs_the_packaged_plugin() {
    let script = common::crate_path("../krew/test.sh");
    let started = Instant::now();
    let output = Command::new("bash")
        .arg(&script)
        .env("BINARY", env!("CARGO_BIN_EXE_kubectl-vault"))
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", script.display()));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "krew/test.sh failed:\n{stdout}\n{stderr}"
    );
    eprintln!(
        "{stdout}krew/test.sh took {:.1}s",
        started.elapsed().as_secs_f64()
    );
}
