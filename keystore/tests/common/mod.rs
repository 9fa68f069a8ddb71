//! What the cloud stand-ins of these tests share: starting one, reading a request, and the
//! round trip every store must pass.

use axum::body::{Body, to_bytes};
use axum::extract::Request;
use axum::http::HeaderMap;
use axum::http::request::Parts;
use reqwest::Url;
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
