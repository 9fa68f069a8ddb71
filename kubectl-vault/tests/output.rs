//! Standard output whose reader goes away early (`kubectl vault install --dry-run | head`):
//! the command ends quietly and successfully, as kubectl does, rather than panicking.

use std::io::Read;
use std::process::{Command, Stdio};

#[test]
fn a_reader_that_goes_away_is_no_error() {
    let child = Command::new(env!("CARGO_BIN_EXE_kubectl-vault"))
        .args(["install", "--dry-run"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let Ok(mut child) = child else {
        panic!("cannot start {}", env!("CARGO_BIN_EXE_kubectl-vault"));
    };
    // The manifests are larger than a pipe holds, so the plugin is still writing when the
    // reader leaves.
    let Some(mut stdout) = child.stdout.take() else {
        panic!("no standard output to read");
    };
    let mut start = [0u8; 4];
    if let Err(e) = stdout.read_exact(&mut start) {
        panic!("reading the first bytes: {e}");
    }
    assert_eq!(&start, b"---\n");
    drop(stdout);

    let Ok(output) = child.wait_with_output() else {
        panic!("install --dry-run did not finish");
    };
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}
