//! What the key stores' tests share: cloud stand-ins served in the test (starting one,
//! reading a request), tools from `scripts/tools.sh` run as processes on loopback that end
//! with the test, and the round trip every store must pass.

#![allow(dead_code)]

use axum::body::{Body, to_bytes};
use axum::extract::Request;
use axum::http::HeaderMap;
use axum::http::request::Parts;
use reqwest::Url;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use vault_keystore::{KeyStore, Retry, Secret, write_verified};

pub type Failure = Box<dyn std::error::Error>;

/// Serves `app` on a free loopback port and returns its URL.
pub async fn start(app: axum::Router) -> Result<String, Failure> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(format!("http://{address}"))
}

/// A request's head, body and URL (on a made-up host), or `None` when it cannot be read.
pub async fn read(request: Request<Body>) -> Option<(Parts, Vec<u8>, Url)> {
    let (parts, body) = request.into_parts();
    let body = to_bytes(body, 1 << 20).await.ok()?;
    let url = Url::parse(&format!("http://loopback{}", parts.uri)).ok()?;
    Some((parts, body.to_vec(), url))
}

/// A header's value, when it is text.
pub fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|value| value.to_str().ok())
}

/// `text` with its `%XY` escapes decoded.
pub fn percent_decode(text: &str) -> String {
    Url::parse(&format!("http://x/?v={text}"))
        .ok()
        .and_then(|url| url.query_pairs().next().map(|(_, v)| v.into_owned()))
        .unwrap_or_default()
}

/// Writes `<key>-<tag>` under each of `keys`, reads every one back, and checks that the
/// store lists exactly those keys.
pub async fn round_trip(store: &dyn KeyStore, keys: &[&str], tag: &str) -> Result<(), Failure> {
    for key in keys {
        let value = Secret::new(format!("{key}-{tag}"));
        write_verified(store, key, &value, Retry::default()).await?;
    }
    for key in keys {
        let value = store.get(key).await?.map(|v| v.expose().to_string());
        assert_eq!(value, Some(format!("{key}-{tag}")));
    }
    let mut expected: Vec<String> = keys.iter().map(|key| key.to_string()).collect();
    expected.sort();
    assert_eq!(store.list().await?, expected);
    Ok(())
}

/// Any error, for test set-up.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The path `scripts/tools.sh <tool>` prints, installing the tool when missing.
pub fn tool(name: &str) -> Result<PathBuf, BoxError> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/tools.sh");
    let output = Command::new("bash").arg(script).arg(name).output()?;
    if !output.status.success() {
        return Err(format!(
            "scripts/tools.sh {name} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        )
        .into());
    }
    Ok(PathBuf::from(String::from_utf8(output.stdout)?.trim()))
}

/// A server process, killed when dropped.
pub struct Server {
    child: Child,
}

impl Server {
    /// Runs `command` and waits until 127.0.0.1:`port` takes connections. Its output goes
    /// to `server-<port>.log` in Cargo's temporary folder, for when a test fails.
    pub fn start(mut command: Command, port: u16) -> Result<Self, BoxError> {
        let log = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("server-{port}.log"));
        let log = std::fs::File::create(log)?;
        let child = command
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()?;
        let server = Self { child };
        wait_for_port(port, Duration::from_secs(60))?;
        Ok(server)
    }

    /// Keeps the process for the rest of the test binary's life: it exits when the binary
    /// does, since a shell in between kills it when its standard input (our pipe) closes.
    pub fn start_for_process(program: &Path, args: &[&str], port: u16) -> Result<(), BoxError> {
        let mut command = Command::new("sh");
        command
            .arg("-c")
            .arg(r#""$@" </dev/null >/dev/null 2>&1 & server=$!; cat >/dev/null; kill $server"#)
            .arg("sh")
            .arg(program)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let child = command.spawn()?;
        // The pipe's write end stays open in this process until it exits.
        std::mem::forget(child);
        wait_for_port(port, Duration::from_secs(60))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits until something listens on 127.0.0.1:`port`.
pub fn wait_for_port(port: u16, limit: Duration) -> Result<(), BoxError> {
    let start = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        if start.elapsed() > limit {
            return Err(format!("nothing listens on 127.0.0.1:{port} after {limit:?}").into());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(())
}

/// The message of a failure, or nothing when `result` succeeded (which the test's
/// assertions on the message then report).
pub fn error_message<T, E: std::fmt::Display>(result: Result<T, E>) -> String {
    result
        .err()
        .map(|error| error.to_string())
        .unwrap_or_default()
}
