//! Time from three sealed, uninitialised OpenBao servers (Raft, TLS, loopback) to all
//! unsealed with a leader: through the controller's functions, and by hand with curl (the
//! floor). Run with `cargo bench -p vault-controller --bench unseal`.

#[path = "../tests/common/mod.rs"]
mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{BoxError, TestCluster};
use vault_controller::keystore::MemoryKeyStore;
use vault_controller::unseal::{self, UnsealOptions};

const ROUNDS: u16 = 3;

async fn controller_round(round: u16) -> Result<Duration, BoxError> {
    let servers = TestCluster::start("bench-controller", 3, 29000 + 10 * round)?;
    let cluster = servers.cluster()?;
    let store = MemoryKeyStore::default();
    let options = UnsealOptions::default();

    let start = Instant::now();
    let report = unseal::converge(&cluster, &store, &options, Duration::from_secs(120)).await?;
    let took = start.elapsed();
    if !report.converged(true) {
        return Err(format!("not converged: {}", report.summary()).into());
    }
    Ok(took)
}

fn curl_round(round: u16) -> Result<Duration, BoxError> {
    let servers = TestCluster::start("bench-curl", 3, 29100 + 10 * round)?;
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/curl_unseal.sh");
    let ports = servers.api_ports();

    let start = Instant::now();
    let output = Command::new("bash")
        .arg(script)
        .arg(&servers.ca_path)
        .args(ports.iter().map(u16::to_string))
        .output()?;
    let took = start.elapsed();
    if std::env::var_os("CURL_UNSEAL_TRACE").is_some() {
        eprintln!("{}", String::from_utf8_lossy(&output.stderr));
    }
    if !output.status.success() {
        return Err(format!(
            "curl_unseal.sh failed: {}",
            String::from_utf8_lossy(&output.stderr)
        )
        .into());
    }
    Ok(took)
}

fn summary(label: &str, times: &[Duration]) {
    let ms: Vec<String> = times.iter().map(|t| format!("{}", t.as_millis())).collect();
    let best = times.iter().min().copied().unwrap_or_default();
    let mean = times.iter().sum::<Duration>() / times.len().max(1) as u32;
    println!(
        "{label:<11} best {:>5} ms   mean {:>5} ms   runs [{}] ms",
        best.as_millis(),
        mean.as_millis(),
        ms.join(", ")
    );
}

fn main() -> Result<(), BoxError> {
    // `cargo test --benches` runs benches with `--bench` absent: do nothing then.
    if !std::env::args().any(|arg| arg == "--bench") {
        return Ok(());
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;

    let mut controller = Vec::new();
    let mut curl = Vec::new();
    for round in 0..ROUNDS {
        controller.push(runtime.block_on(controller_round(round))?);
        curl.push(curl_round(round)?);
    }
    println!("three sealed, uninitialised OpenBao servers to all unsealed with a leader:");
    summary("controller", &controller);
    summary("curl floor", &curl);
    Ok(())
}
