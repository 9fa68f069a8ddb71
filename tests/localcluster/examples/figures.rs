//! Prints the local cluster's figures: the Kubernetes build time recorded when it was built,
//! the time from `up` to ready for a fresh cluster, and each component's resident memory.
//!
//!     cargo run --release -p localcluster --example figures   (as root)

use std::path::PathBuf;

use localcluster::{LocalCluster, UpOptions};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let bin_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("k8s/build.sh");
    let output = std::process::Command::new(&bin_dir).output()?;
    let bin = PathBuf::from(String::from_utf8_lossy(&output.stdout).trim());
    let recorded = bin.parent().map(|dir| dir.join("build-seconds"));
    let build = recorded.and_then(|f| std::fs::read_to_string(f).ok());
    println!(
        "kubernetes cold build: {}s",
        build.as_deref().map_or("not recorded", str::trim)
    );

    let localcluster_bin = std::env::current_exe()?
        .parent()
        .and_then(|examples| examples.parent())
        .map(|dir| dir.join("localcluster"))
        .filter(|path| path.is_file())
        .ok_or_else(|| anyhow::anyhow!("build the binary first: cargo build -p localcluster"))?;
    let options = UpOptions::new("figures", localcluster_bin);
    let cluster = LocalCluster::up(&options).await?.stop_on_drop();
    let figures = cluster.figures();
    let ready = figures.ready_after.unwrap_or_default();
    println!("start-up to ready: {:.1}s", ready.as_secs_f64());
    for (component, kib) in figures.resident_kib {
        println!("resident memory of {component}: {} MiB", kib / 1024);
    }
    Ok(())
}
