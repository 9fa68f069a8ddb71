//! Load benchmark of the real `vault-webhook` binary over TLS on loopback.
//!
//! Run it with:
//!
//!     cargo bench -p vault-webhook --bench load
//!
//! (`BENCH_SECONDS`, default 5, sets the time per endpoint; `BENCH_CONNECTIONS`, default 8,
//! the keep-alive connections.) It starts the binary with a generated certificate in files
//! mode, loads `/validate` and `/mutate` with AdmissionReviews from as many HTTP/1.1
//! keep-alive connections, and prints requests per second, p50 and p99 latency, and the
//! webhook process's resident memory under load. The load generator runs in this process,
//! on the same cores, so the figures are a floor, not a ceiling.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::process::Command;
use vault_webhook::fixtures::{
    TEST_DNS_NAME, client_tls, create_body, raft_vault, test_certificates, vault,
};

type Failure = Box<dyn std::error::Error + Send + Sync>;

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn free_port() -> Result<u16, Failure> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Resident and peak resident memory of a process, in KiB, from /proc.
fn memory_kib(pid: u32) -> Option<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))?
            .split_whitespace()
            .nth(1)?
            .parse()
            .ok()
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

struct Figures {
    requests: usize,
    errors: usize,
    elapsed: Duration,
    p50: Duration,
    p99: Duration,
    rss_kib: u64,
}

async fn load(
    url: &str,
    body: Vec<u8>,
    clients: &[reqwest::Client],
    seconds: u64,
    pid: u32,
) -> Figures {
    let started = Instant::now();
    let deadline = started + Duration::from_secs(seconds);
    let workers: Vec<_> = clients
        .iter()
        .map(|client| {
            let (client, url, body) = (client.clone(), url.to_string(), body.clone());
            tokio::spawn(async move {
                let (mut latencies, mut errors) = (Vec::new(), 0usize);
                while Instant::now() < deadline {
                    let sent = Instant::now();
                    let response = client.post(&url).body(body.clone()).send().await;
                    let ok = match response {
                        Ok(r) if r.status().is_success() => r.bytes().await.is_ok(),
                        _ => false,
                    };
                    if ok {
                        latencies.push(sent.elapsed());
                    } else {
                        errors += 1;
                    }
                }
                (latencies, errors)
            })
        })
        .collect();

    // Memory is sampled while the load runs.
    let mut rss_kib = 0;
    while Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(250)).await;
        if let Some((rss, _)) = memory_kib(pid) {
            rss_kib = rss_kib.max(rss);
        }
    }

    let (mut latencies, mut errors) = (Vec::new(), 0);
    for worker in workers {
        if let Ok((l, e)) = worker.await {
            latencies.extend(l);
            errors += e;
        }
    }
    let elapsed = started.elapsed();
    latencies.sort_unstable();
    let at = |q: f64| {
        let index = ((latencies.len() as f64 - 1.0) * q).round() as usize;
        latencies.get(index).copied().unwrap_or_default()
    };
    Figures {
        requests: latencies.len(),
        errors,
        elapsed,
        p50: at(0.50),
        p99: at(0.99),
        rss_kib,
    }
}

#[tokio::main]
async fn main() -> Result<(), Failure> {
    let seconds = env_number("BENCH_SECONDS", 5);
    let connections = env_number("BENCH_CONNECTIONS", 8) as usize;

    let folder = tempfile::tempdir()?;
    let (ca, serving) = test_certificates()?;
    let (cert_file, key_file) = (folder.path().join("tls.crt"), folder.path().join("tls.key"));
    std::fs::write(&cert_file, &serving.cert)?;
    std::fs::write(&key_file, &serving.key)?;
    let (port, probe_port) = (free_port()?, free_port()?);

    let mut webhook = Command::new(env!("CARGO_BIN_EXE_vault-webhook"))
        .args(["--certificates", "files"])
        .arg("--cert-file")
        .arg(&cert_file)
        .arg("--key-file")
        .arg(&key_file)
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .args(["--probe-listen", &format!("127.0.0.1:{probe_port}")])
        .env("RUST_LOG", "warn")
        .kill_on_drop(true)
        .spawn()?;
    let pid = webhook.id().ok_or("the webhook exited at once")?;

    // A plain client still builds reqwest's TLS side, from the process-wide provider.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let plain = reqwest::Client::builder().no_proxy().build()?;
    let ready = format!("http://127.0.0.1:{probe_port}/readyz");
    let mut is_ready = false;
    for _ in 0..100 {
        if plain
            .get(&ready)
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            is_ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    if !is_ready {
        return Err("the webhook did not become ready within 10 s".into());
    }
    let idle = memory_kib(pid).map(|(rss, _)| rss).unwrap_or_default();

    let address: SocketAddr = format!("127.0.0.1:{port}").parse()?;
    let clients = (0..connections)
        .map(|_| {
            reqwest::Client::builder()
                .tls_backend_preconfigured(client_tls(&ca.cert, false)?)
                .resolve(TEST_DNS_NAME, address)
                .no_proxy()
                .pool_max_idle_per_host(1)
                .build()
                .map_err(Failure::from)
        })
        .collect::<Result<Vec<_>, Failure>>()?;

    let invalid = vault(serde_json::json!({"size": 3, "config": {"storage": {"file": {}}}}));
    let cases = [
        ("/validate", "valid Raft Vault", create_body(raft_vault())),
        ("/validate", "invalid Vault (denied)", create_body(invalid)),
        ("/mutate", "Raft Vault (patched)", create_body(raft_vault())),
    ];

    println!(
        "vault-webhook over TLS on loopback: {connections} keep-alive connections, {seconds} s \
         per case, {} cores shared with the load generator",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!("resident memory when idle: {:.1} MiB", idle as f64 / 1024.0);
    println!(
        "{:<10} {:<24} {:>10} {:>10} {:>10} {:>8} {:>12}",
        "endpoint", "body", "req/s", "p50 ms", "p99 ms", "errors", "RSS MiB"
    );
    for (path, what, body) in cases {
        let url = format!("https://{TEST_DNS_NAME}:{port}{path}");
        // A short warm-up opens the connections and fills the caches.
        load(&url, body.clone(), &clients, 1, pid).await;
        let figures = load(&url, body, &clients, seconds, pid).await;
        println!(
            "{:<10} {:<24} {:>10.0} {:>10.3} {:>10.3} {:>8} {:>12.1}",
            path,
            what,
            figures.requests as f64 / figures.elapsed.as_secs_f64(),
            figures.p50.as_secs_f64() * 1000.0,
            figures.p99.as_secs_f64() * 1000.0,
            figures.errors,
            figures.rss_kib as f64 / 1024.0,
        );
    }
    if let Some((rss, peak)) = memory_kib(pid) {
        println!(
            "resident memory after the load: {:.1} MiB (peak {:.1} MiB)",
            rss as f64 / 1024.0,
            peak as f64 / 1024.0
        );
    }

    webhook.kill().await?;
    Ok(())
}
