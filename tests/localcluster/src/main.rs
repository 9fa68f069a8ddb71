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
        /// How many nodes, one per zone.
        #[arg(long, default_value_t = 3)]
        nodes: usize,
        /// A YAML image table laid over the built-in one (how images run as programs).
        #[arg(long)]
        images: Option<PathBuf>,
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
    /// Prints a container's log.
    Logs {
        #[command(flatten)]
        cluster: ClusterArgs,
        /// The pod.
        pod: String,
        /// The container; the pod's only one when left out.
        #[arg(short = 'c', long)]
        container: Option<String>,
        /// The pod's namespace.
        #[arg(short = 'n', long, default_value = "default")]
        namespace: String,
    },
    /// Runs a command inside the cluster's network namespace.
    Exec {
        #[command(flatten)]
        cluster: ClusterArgs,
        /// The command and its arguments.
        #[arg(last = true, required = true)]
        command: Vec<String>,
    },
    /// Plays the kubelet for the cluster's nodes (run by `up`).
    #[command(hide = true)]
    Agent {
        #[command(flatten)]
        cluster: ClusterArgs,
        #[arg(long, default_value_t = 3)]
        nodes: usize,
        #[arg(long)]
        bao: PathBuf,
        #[arg(long)]
        images: Option<PathBuf>,
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
        Command::Up {
            cluster,
            nodes,
            images,
        } => {
            let binary = std::env::current_exe().context("finding this program")?;
            let options = UpOptions {
                dir: cluster.dir.clone(),
                nodes,
                images,
                ..UpOptions::new(&cluster.name, binary)
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
        Command::Logs {
            cluster,
            pod,
            container,
            namespace,
        } => {
            let layout = cluster.layout()?;
            let folder = layout.logs_dir().join("pods");
            let prefix = format!("{namespace}_{pod}_");
            let mut logs: Vec<PathBuf> = std::fs::read_dir(&folder)
                .with_context(|| format!("no pod logs in {}", folder.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| {
                    p.file_name()
                        .and_then(|f| f.to_str())
                        .is_some_and(|f| f.starts_with(&prefix) && f.ends_with(".log"))
                })
                .collect();
            if let Some(container) = container {
                logs.retain(|p| p.ends_with(format!("{prefix}{container}.log")));
            }
            match logs.as_slice() {
                [one] => {
                    let text =
                        std::fs::read(one).with_context(|| format!("reading {}", one.display()))?;
                    std::io::Write::write_all(&mut std::io::stdout(), &text)?;
                }
                [] => anyhow::bail!("no log of {namespace}/{pod} in {}", folder.display()),
                _ => {
                    anyhow::bail!("pod {namespace}/{pod} has several containers: name one with -c")
                }
            }
        }
        Command::Agent {
            cluster,
            nodes,
            bao,
            images,
        } => {
            let layout = cluster.layout()?;
            let binary = std::env::current_exe().context("finding this program")?;
            let target = binary.parent().map(PathBuf::from).unwrap_or_default();
            let runtime = tokio::runtime::Runtime::new().context("starting a runtime")?;
            runtime.block_on(async {
                let kubeconfig = layout.dir().join("node-agent.host.kubeconfig");
                let client = localcluster::client_for(&kubeconfig).await?;
                let agent = localcluster::agent::Agent {
                    client,
                    layout: layout.clone(),
                    addresses: Default::default(),
                    images: localcluster::agent::images::ImageTable::load(
                        images.as_deref(),
                        &target,
                    )?,
                    bao,
                    localcluster_bin: binary,
                    nodes: localcluster::agent::nodes::nodes(nodes.max(1)),
                };
                localcluster::agent::run(agent).await
            })?;
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
