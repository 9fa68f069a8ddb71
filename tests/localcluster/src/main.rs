//! `localcluster`: starts, inspects and stops a local Kubernetes cluster made of processes.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use localcluster::{Layout, LocalCluster, UpOptions};

/// A real Kubernetes control plane run as local processes, in a network namespace.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Builds what is missing, starts the cluster (or reuses it) and prints its kubeconfig.
    Up {
        #[command(flatten)]
        cluster: ClusterArgs,
    },
    /// Stops every process of the cluster and removes its network namespace.
    Down {
        #[command(flatten)]
        cluster: ClusterArgs,
    },
    /// Says what runs, with each component's resident memory.
    Status {
        #[command(flatten)]
        cluster: ClusterArgs,
    },
    /// Runs a command inside the cluster's network namespace.
    Exec {
        #[command(flatten)]
        cluster: ClusterArgs,
        /// The command and its arguments.
        #[arg(last = true, required = true)]
        command: Vec<String>,
    },
    /// Starts one container process from a spec file (run by the node agent).
    #[command(hide = true)]
    RunContainer {
        #[arg(long)]
        spec: PathBuf,
    },
    /// Forwards a loopback port to an address inside a namespace (run by `up`).
    #[command(hide = true)]
    Forward {
        #[arg(long)]
        netns: String,
        #[arg(long)]
        to: SocketAddr,
        #[arg(long)]
        port_file: PathBuf,
    },
}

#[derive(clap::Args)]
struct ClusterArgs {
    /// Name of the cluster; clusters with different names run side by side.
    #[arg(long, default_value = "local", env = "LOCALCLUSTER_NAME")]
    name: String,
    /// Folder of the cluster's files.
    #[arg(long)]
    dir: Option<PathBuf>,
}

impl ClusterArgs {
    fn layout(&self) -> anyhow::Result<Layout> {
        Ok(Layout::new(&self.name, self.dir.clone())?)
    }
}

fn main() -> ExitCode {
    match run(Cli::parse().command) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("localcluster: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Up { cluster } => {
            let options = UpOptions {
                name: cluster.name.clone(),
                dir: cluster.dir.clone(),
                localcluster_bin: std::env::current_exe().context("finding this program")?,
            };
            let runtime = tokio::runtime::Runtime::new().context("starting a runtime")?;
            let up = runtime.block_on(LocalCluster::up(&options))?;
            if let Some(took) = up.figures().ready_after {
                eprintln!(
                    "cluster {} ready in {:.1}s",
                    cluster.name,
                    took.as_secs_f64()
                );
            } else {
                eprintln!("cluster {} was already running", cluster.name);
            }
            println!("{}", up.kubeconfig().display());
            eprintln!("export KUBECONFIG={}", up.kubeconfig().display());
        }
        Command::Down { cluster } => {
            let layout = cluster.layout()?;
            let stopped = localcluster::down(&layout)?;
            eprintln!(
                "cluster {}: stopped {} process(es){}; removed network namespace {}",
                layout.name(),
                stopped.len(),
                if stopped.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", stopped.join(", "))
                },
                layout.netns(),
            );
        }
        Command::Status { cluster } => {
            let layout = cluster.layout()?;
            let components = localcluster::status(&layout);
            if components.is_empty() {
                println!("cluster {}: not running", layout.name());
                return Ok(ExitCode::from(3));
            }
            println!("{:<26} {:>8} {:>10}", "COMPONENT", "PID", "RSS");
            for (name, pid, rss) in components {
                let pid = pid.map_or("stopped".to_string(), |p| p.to_string());
                let rss = rss.map_or("-".to_string(), |k| format!("{} MiB", k / 1024));
                println!("{name:<26} {pid:>8} {rss:>10}");
            }
        }
        Command::Exec { cluster, command } => {
            let layout = cluster.layout()?;
            let status = std::process::Command::new("ip")
                .args(["netns", "exec", &layout.netns()])
                .args(&command)
                .status()
                .context("running ip netns exec")?;
            return Ok(ExitCode::from(status.code().unwrap_or(1) as u8));
        }
        Command::RunContainer { spec } => {
            let text = std::fs::read_to_string(&spec)
                .with_context(|| format!("reading {}", spec.display()))?;
            let spec: localcluster::agent::container::ContainerSpec =
                serde_json::from_str(&text)
                    .with_context(|| format!("parsing {}", spec.display()))?;
            match localcluster::agent::shim::exec(&spec)? {}
        }
        Command::Forward {
            netns,
            to,
            port_file,
        } => {
            localcluster::forward::run(&netns, to, &port_file)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
