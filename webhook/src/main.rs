//! `vault-webhook`: serves the admission webhook of `Vault` resources.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Parser, ValueEnum};
use tokio::net::TcpListener;
use tracing::info;
use tracing_subscriber::EnvFilter;
use vault_webhook::certs::cluster::ClusterCerts;
use vault_webhook::certs::files::CertFiles;
use vault_webhook::certs::{self, Lifetimes};
use vault_webhook::metrics::Metrics;
use vault_webhook::review::MAX_BODY_BYTES;
use vault_webhook::server::{self, AdmissionState, ProbeState};
use vault_webhook::tls::{self, ServingCert};

/// Where the serving certificate comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Certificates {
    /// The webhook keeps a CA and a serving certificate in a Secret, renews them, and writes
    /// the CA into the caBundle of its two webhook configurations.
    Secret,
    /// The certificate and key are files (cert-manager's Secret mounted, for instance),
    /// reloaded when they change; the caBundle is someone else's job (cert-manager's CA
    /// injector).
    Files,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

/// Admission webhook that writes the defaults into Vault resources and refuses invalid ones.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Address of the admission server (TLS).
    #[arg(long, env = "WEBHOOK_LISTEN", default_value = "0.0.0.0:8443")]
    listen: String,

    /// Address of /healthz, /readyz and /metrics (plain HTTP).
    #[arg(long, env = "WEBHOOK_PROBE_LISTEN", default_value = "0.0.0.0:8080")]
    probe_listen: String,

    /// Where the serving certificate comes from.
    #[arg(
        long,
        env = "WEBHOOK_CERTIFICATES",
        value_enum,
        default_value = "secret"
    )]
    certificates: Certificates,

    /// The webhook's namespace.
    #[arg(long, env = "POD_NAMESPACE", default_value = "vault-operator")]
    namespace: String,

    /// The Service the API server calls; the certificate names `<service>.<namespace>.svc`.
    #[arg(long, env = "WEBHOOK_SERVICE", default_value = "vault-webhook")]
    service: String,

    /// The Secret holding the CA and serving certificate (`--certificates secret`).
    #[arg(long, env = "WEBHOOK_SECRET", default_value = "vault-webhook-tls")]
    secret: String,

    /// Name of both the Mutating and the Validating webhook configuration.
    #[arg(long, env = "WEBHOOK_CONFIGURATION", default_value = "vault-webhook")]
    configuration: String,

    /// Serving certificate chain (`--certificates files`).
    #[arg(long, env = "WEBHOOK_CERT_FILE", default_value = "/tls/tls.crt")]
    cert_file: PathBuf,

    /// Serving certificate key (`--certificates files`).
    #[arg(long, env = "WEBHOOK_KEY_FILE", default_value = "/tls/tls.key")]
    key_file: PathBuf,

    /// How often certificates are checked for renewal or change.
    #[arg(long, env = "WEBHOOK_CERT_CHECK_INTERVAL", default_value = "60s",
          value_parser = humantime::parse_duration)]
    cert_check_interval: Duration,

    /// Largest request body read, in bytes.
    #[arg(long, env = "WEBHOOK_MAX_BODY_BYTES", default_value_t = MAX_BODY_BYTES)]
    max_body_bytes: usize,

    /// Longest a request may take, body included.
    #[arg(long, env = "WEBHOOK_REQUEST_TIMEOUT", default_value = "5s",
          value_parser = humantime::parse_duration)]
    request_timeout: Duration,

    /// Log format.
    #[arg(long, env = "WEBHOOK_LOG_FORMAT", value_enum, default_value = "text")]
    log_format: LogFormat,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    init_logs(args.log_format);
    // Every TLS client of the process (kube's included) uses ring, whichever providers the
    // dependency tree happens to enable.
    let _ = rustls::crypto::ring::default_provider().install_default();

    let serving = Arc::new(ServingCert::new());
    let metrics = Arc::new(Metrics::new());
    let certificates = start_certificates(&args, serving.clone()).await?;

    let admission = TcpListener::bind(&args.listen)
        .await
        .with_context(|| format!("listening on {}", args.listen))?;
    let probes = TcpListener::bind(&args.probe_listen)
        .await
        .with_context(|| format!("listening on {}", args.probe_listen))?;
    info!(admission = %args.listen, probes = %args.probe_listen, "vault-webhook serving");

    let state = Arc::new(AdmissionState {
        metrics: metrics.clone(),
        max_body_bytes: args.max_body_bytes,
    });
    let router = server::admission_router(state, args.request_timeout);
    let tls = tls::server_config(serving.clone())?;
    let probe_router = server::probe_router(ProbeState { metrics, serving });
    let probe_server = tokio::spawn(server::serve_plain(probes, probe_router, stopped()));

    server::serve_tls(admission, tls, router, stopped()).await;
    certificates.abort();
    probe_server
        .await
        .context("probe server task")?
        .context("probe server")?;
    info!("vault-webhook stopped");
    Ok(())
}

/// Loads the first certificate (so that the server is ready at once) and starts keeping it.
async fn start_certificates(
    args: &Args,
    serving: Arc<ServingCert>,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let interval = args.cert_check_interval;
    match args.certificates {
        Certificates::Files => {
            let files = CertFiles {
                cert: args.cert_file.clone(),
                key: args.key_file.clone(),
            };
            files.load(&serving)?;
            Ok(tokio::spawn(files.watch(serving, interval)))
        }
        Certificates::Secret => {
            let client = kube::Client::try_default()
                .await
                .context("connecting to the Kubernetes API")?;
            let dns_name = certs::service_dns_name(&args.service, &args.namespace);
            let cluster = ClusterCerts::new(
                client,
                &args.namespace,
                &args.secret,
                &args.configuration,
                &dns_name,
                Lifetimes::default(),
            );
            // A first round that fails is retried by the loop; readiness waits for it.
            if let Err(e) = cluster.round(&serving).await {
                tracing::warn!(error = %e, "first round of the webhook certificates");
            }
            Ok(tokio::spawn(cluster.run(serving, interval)))
        }
    }
}

/// Completes on SIGTERM or Ctrl-C.
async fn stopped() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut terminate) => {
                tokio::select! {
                    _ = interrupt => {}
                    _ = terminate.recv() => {}
                }
            }
            Err(_) => {
                let _ = interrupt.await;
            }
        }
    }
    #[cfg(not(unix))]
    let _ = interrupt.await;
}

fn init_logs(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let logs = tracing_subscriber::fmt().with_env_filter(filter);
    match format {
        LogFormat::Text => logs.init(),
        LogFormat::Json => logs.json().init(),
    }
}
