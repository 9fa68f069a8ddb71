//! A Vault API on loopback that records every request changing it, for what OpenBao lacks
//! (github, aws, ldap, okta, azure auth; aws, gcp secrets; audit devices through the API).
//! It answers as HashiCorp Vault: `sys/seal-status` carries a `build_date`.
//!
//! Mount tables (`sys/auth`, `sys/mounts`, `sys/audit`) behave as Vault's: enabling,
//! tuning, disabling. Any other path keeps what was last written to it and reads it back
//! as `data`, and lists the names written under it: enough for a pass to compare and to
//! find nothing to do the second time.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

/// One request that changes the server: method, path under `/v1/`, and body.
pub type Write = (String, String, Value);

/// What the server holds and was sent.
#[derive(Default)]
pub struct Held {
    /// Every request that changes the server, in order.
    pub writes: Vec<Write>,
    /// `sys/auth`, `sys/mounts`, `sys/audit`: by mount path with its `/`.
    pub tables: BTreeMap<&'static str, Map<String, Value>>,
    /// Everything else, by path: the body last written.
    pub paths: BTreeMap<String, Value>,
    accessors: usize,
}

/// The server, serving until dropped.
pub struct RecordingVault {
    /// Its address on 127.0.0.1.
    pub address: SocketAddr,
    held: Arc<Mutex<Held>>,
    task: tokio::task::JoinHandle<()>,
}

impl RecordingVault {
    /// Serves on 127.0.0.1:`port`, with the mounts a new Vault has.
    pub async fn start(port: u16) -> std::io::Result<Self> {
        let mut held = Held::default();
        let token = json!({"type": "token", "description": "token based credentials",
                           "accessor": "auth_token_0", "config": {}, "local": false});
        held.tables
            .insert("sys/auth", Map::from_iter([("token/".to_string(), token)]));
        let mut mounts = Map::new();
        for kind in ["sys", "identity", "cubbyhole"] {
            mounts.insert(format!("{kind}/"), json!({"type": kind, "config": {}}));
        }
        held.tables.insert("sys/mounts", mounts);
        held.tables.insert("sys/audit", Map::new());

        let held = Arc::new(Mutex::new(held));
        let app = Router::new().fallback(answer).with_state(held.clone());
        let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, port)).await?;
        let address = listener.local_addr()?;
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self {
            address,
            held,
            task,
        })
    }

    /// What it holds and was sent.
    pub fn held(&self) -> MutexGuard<'_, Held> {
        self.held.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The writes recorded so far, and forgets them.
    pub fn take_writes(&self) -> Vec<Write> {
        std::mem::take(&mut self.held().writes)
    }
}

impl Drop for RecordingVault {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn ok(body: Value) -> Response {
    (StatusCode::OK, axum::Json(body)).into_response()
}

fn not_found() -> Response {
    (StatusCode::NOT_FOUND, axum::Json(json!({"errors": []}))).into_response()
}

/// Which mount table `path` is in, and the mount path with its `/` and whether it is a
/// `tune`.
fn in_table(path: &str) -> Option<(&'static str, String, bool)> {
    for table in ["sys/auth", "sys/mounts", "sys/audit"] {
        if let Some(mount) = path.strip_prefix(table).and_then(|p| p.strip_prefix('/')) {
            return Some(match mount.strip_suffix("/tune") {
                Some(mount) => (table, format!("{mount}/"), true),
                None => (table, format!("{mount}/"), false),
            });
        }
    }
    None
}

async fn answer(
    State(held): State<Arc<Mutex<Held>>>,
    method: Method,
    uri: Uri,
    body: Bytes,
) -> Response {
    let path = uri.path().trim_start_matches("/v1/").to_string();
    let listing = uri.query().is_some_and(|q| q.contains("list=true"));
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let mut held = held.lock().unwrap_or_else(PoisonError::into_inner);

    match (method.as_str(), path.as_str()) {
        ("GET", "sys/seal-status") => {
            return ok(
                json!({"type": "shamir", "initialized": true, "sealed": false,
                "t": 1, "n": 1, "progress": 0, "version": "1.19.0",
                "build_date": "2025-03-04T12:36:40Z", "storage_type": "raft"}),
            );
        }
        ("GET", "sys/health") => {
            return ok(
                json!({"initialized": true, "sealed": false, "standby": false,
                "version": "1.19.0", "enterprise": false}),
            );
        }
        ("GET", table @ ("sys/auth" | "sys/mounts" | "sys/audit")) => {
            return ok(json!({ "data": held.tables[table] }));
        }
        _ => {}
    }
    if method != Method::GET {
        held.writes
            .push((method.to_string(), path.clone(), body.clone()));
    }

    if let Some((table, mount, tune)) = in_table(&path) {
        let accessor = held.accessors;
        held.accessors += 1;
        let entries = held.tables.entry(table).or_default();
        match (method.as_str(), tune) {
            ("DELETE", false) => {
                entries.remove(&mount);
            }
            ("POST" | "PUT", false) => {
                let mut entry = body.as_object().cloned().unwrap_or_default();
                entry.entry("config").or_insert_with(|| json!({}));
                if table == "sys/auth" {
                    let kind = entry.get("type").and_then(Value::as_str).unwrap_or("x");
                    let accessor = format!("auth_{kind}_{accessor}");
                    entry.insert("accessor".to_string(), json!(accessor));
                }
                entries.insert(mount, Value::Object(entry));
            }
            ("POST" | "PUT", true) => {
                let Some(Value::Object(entry)) = entries.get_mut(&mount) else {
                    return not_found();
                };
                for (key, value) in body.as_object().cloned().unwrap_or_default() {
                    if matches!(key.as_str(), "description" | "options") {
                        entry.insert(key, value);
                    } else if let Some(Value::Object(config)) = entry.get_mut("config") {
                        config.insert(key, value);
                    }
                }
            }
            _ => return not_found(),
        }
        return ok(Value::Null);
    }

    match method.as_str() {
        "GET" if listing => {
            let prefix = format!("{}/", path.trim_end_matches('/'));
            let mut keys: Vec<String> = held
                .paths
                .keys()
                .filter_map(|key| key.strip_prefix(&prefix))
                .map(|rest| match rest.split_once('/') {
                    Some((first, _)) => format!("{first}/"),
                    None => rest.to_string(),
                })
                .collect();
            keys.dedup();
            match keys.is_empty() {
                true => not_found(),
                false => ok(json!({"data": {"keys": keys}})),
            }
        }
        "GET" => match held.paths.get(&path) {
            Some(data) => ok(json!({ "data": data })),
            None => not_found(),
        },
        "DELETE" => {
            held.paths.remove(&path);
            ok(Value::Null)
        }
        _ => {
            held.paths.insert(path, body);
            ok(Value::Null)
        }
    }
}
