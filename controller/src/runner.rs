//! The `run` subcommand: logging, the API client, `/metrics` and health, leader election,
//! the controller, and a graceful stop on SIGTERM.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures::FutureExt;
use tracing::{error, info};

use crate::build::BuildOptions;
use crate::leader::{LeaderError, LeaseLock};
use crate::metrics::Metrics;
use crate::operations::{Health, ServeError, serve, shutdown_signal};
use crate::reconcile::{ControllerOptions, run_with_metrics};

/// Log output formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

/// Flags of `vault-controller run`; each may also come from the environment.
#[derive(Clone, Debug, clap::Args)]
pub struct RunArgs {
    /// Namespaces to watch, comma-separated; empty watches all.
    #[arg(
        long,
        env = "WATCH_NAMESPACES",
        value_delimiter = ',',
        default_value = ""
    )]
    pub namespaces: Vec<String>,
    /// Address of `/metrics`, `/healthz` and `/readyz`.
    #[arg(long, env = "METRICS_ADDRESS", default_value = "0.0.0.0:8080")]
    pub metrics_address: SocketAddr,
    /// Log format.
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Log level, or a `tracing` filter such as `info,vault_controller=debug`.
    #[arg(long, env = "LOG_LEVEL", default_value = "info")]
    pub log_level: String,
    /// Turns leader election off (a single replica, or tests).
    #[arg(long, env = "NO_LEADER_ELECTION")]
    pub no_leader_election: bool,
    /// Namespace of the leader election Lease; the controller's own namespace in a pod.
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    pub lease_namespace: String,
    /// Name of the leader election Lease.
    #[arg(long, env = "LEASE_NAME", default_value = "vault-controller")]
    pub lease_name: String,
    /// This replica's name in the Lease; the pod name in a pod.
    #[arg(long, env = "POD_NAME")]
    pub identity: Option<String>,
    /// Image of the init container that renders Vault's configuration.
    #[arg(long, env = "CONTROLLER_IMAGE", default_value = crate::build::CONTROLLER_IMAGE)]
    pub controller_image: String,
    /// Seconds between the safety-net reconciles of every Vault.
    #[arg(long, env = "REQUEUE_SECONDS", default_value_t = 300)]
    pub requeue_seconds: u64,
    /// Initialise, unseal and join the Vault pods at their pod addresses. Set to false
    /// where those addresses cannot be reached (a controller run outside the cluster):
    /// the Kubernetes objects are still managed.
    #[arg(long, env = "OPERATE_VAULT", default_value_t = true, action = clap::ArgAction::Set)]
    pub operate_vault: bool,
    /// Seconds between passes of `externalConfig` when nothing changed, which put back
    /// what was changed in Vault by hand.
    #[arg(long, env = "CONFIG_PERIOD_SECONDS", default_value_t = 300)]
    pub config_period_seconds: u64,
    /// Key algorithm of the CA and server certificates the controller generates.
    #[arg(long, env = "TLS_KEY_ALGORITHM", value_enum, default_value_t)]
    pub tls_key_algorithm: crate::tls::KeyAlgorithm,
    /// How long a generated server certificate is valid, such as `8760h`. Renewal comes
    /// `tlsExpiryThreshold` before it ends, so keep it well above that.
    #[arg(long, env = "TLS_VALIDITY", default_value = "8760h", value_parser = humantime::parse_duration)]
    pub tls_validity: Duration,
    /// How long a generated CA is valid, such as `43800h`.
    #[arg(long, env = "TLS_CA_VALIDITY", default_value = "43800h", value_parser = humantime::parse_duration)]
    pub tls_ca_validity: Duration,
    /// The controller's ServiceAccount token, with which it sets up and uses a Kubernetes
    /// auth role of its own in each Vault. Defaults to the in-cluster token when that
    /// file exists; without one only a stored root token can configure Vault.
    #[arg(long, env = "SERVICE_ACCOUNT_TOKEN_FILE")]
    pub service_account_token_file: Option<PathBuf>,
}

/// Flags of `vault-controller template`.
#[derive(Clone, Debug, clap::Args)]
pub struct TemplateArgs {
    /// The configuration with `${.Env.NAME}` expressions.
    #[arg(long)]
    pub input: PathBuf,
    /// Where to write it rendered.
    #[arg(long)]
    pub output: PathBuf,
}

/// Why the controller stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// No API client could be made.
    #[error("connecting to the API server: {0}")]
    Client(#[from] kube::Error),
    /// The log filter does not parse.
    #[error("log level {level:?}: {reason}")]
    LogLevel {
        /// The filter given.
        level: String,
        /// Why it does not parse.
        reason: String,
    },
    /// Leader election failed or the Lease was lost.
    #[error(transparent)]
    Leader(#[from] Box<LeaderError>),
    /// The HTTP endpoints failed.
    #[error(transparent)]
    Serve(#[from] ServeError),
}

/// Sets up logging as the flags say.
pub fn init_logging(args: &RunArgs) -> Result<(), RunError> {
    let filter = tracing_subscriber::EnvFilter::try_new(&args.log_level).map_err(|e| {
        RunError::LogLevel {
            level: args.log_level.clone(),
            reason: e.to_string(),
        }
    })?;
    // Colour only on a terminal: a log file or collector gets plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stdout());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi);
    // A second initialisation (in tests) keeps the first subscriber.
    let _ = match args.log_format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder.try_init(),
    };
    Ok(())
}

/// Runs the controller until SIGTERM, or until leadership is lost.
pub async fn run(args: RunArgs) -> Result<(), RunError> {
    let client = kube::Client::try_default().await?;
    let metrics = Arc::new(Metrics::default());
    let ready = Arc::new(AtomicBool::new(false));
    let shutdown = shutdown_signal().shared();

    let health = Health {
        metrics: metrics.clone(),
        ready: ready.clone(),
    };
    let server = tokio::spawn(serve(args.metrics_address, health, shutdown.clone()));

    client.apiserver_version().await?;
    ready.store(true, Ordering::Relaxed);

    let identity = args
        .identity
        .clone()
        .unwrap_or_else(|| format!("vault-controller-{}", std::process::id()));
    let lease = (!args.no_leader_election).then(|| {
        LeaseLock::new(
            client.clone(),
            &args.lease_namespace,
            &args.lease_name,
            &identity,
        )
    });
    if let Some(lease) = &lease {
        info!(lease = %args.lease_name, %identity, "waiting to lead");
        tokio::select! {
            acquired = lease.acquire() => acquired.map_err(Box::new)?,
            _ = shutdown.clone() => return Ok(()),
        }
    }

    let options = ControllerOptions {
        namespaces: args
            .namespaces
            .iter()
            .filter(|n| !n.is_empty())
            .cloned()
            .collect(),
        build: BuildOptions {
            controller_image: args.controller_image.clone(),
        },
        requeue: Duration::from_secs(args.requeue_seconds),
        operate_vault: args.operate_vault,
        config_period: Duration::from_secs(args.config_period_seconds),
        issuance: crate::tls::Issuance {
            key: args.tls_key_algorithm,
            server_validity: args.tls_validity,
            ca_validity: args.tls_ca_validity,
        },
        service_account_token: args
            .service_account_token_file
            .clone()
            .or_else(|| {
                let in_cluster = PathBuf::from(crate::unseal::IN_CLUSTER_TOKEN);
                in_cluster.exists().then_some(in_cluster)
            })
            .map(crate::unseal::ServiceAccountToken::at),
    };
    let controller = run_with_metrics(client, options, metrics, shutdown.clone());
    let lost = async {
        match &lease {
            Some(lease) => lease.hold().await,
            None => std::future::pending().await,
        }
    };
    let outcome = tokio::select! {
        () = controller => Ok(()),
        lost = lost => Err(RunError::Leader(Box::new(lost))),
    };
    if let Err(error) = &outcome {
        error!(%error, "stopping");
    }

    if let Some(lease) = &lease
        && let Err(error) = lease.release().await
    {
        error!(%error, "releasing the Lease failed; a standby takes over when it expires");
    }
    info!("stopped");
    match server.await {
        Ok(Err(error)) => Err(error.into()),
        _ => outcome,
    }
}
