//! The Azure Key Vault store against a Key Vault and token endpoint served in this process,
//! written to the published REST reference (Key Vault's secrets API, versions 7.4 to
//! 2025-07-01, and the Microsoft identity platform's client-credentials flow):
//! - `POST /{tenant}/oauth2/v2.0/token` takes `client_id`, `client_secret`, `grant_type` and
//!   `scope` as a form and answers `{"token_type", "expires_in", "access_token"}`, or
//!   `{"error", "error_description", "error_codes"}`;
//! - `PUT /secrets/{name}` with `{"value"}` and `GET /secrets/{name}` answer a SecretBundle,
//!   `GET /secrets` pages of `{"value": [{"id", "attributes"}], "nextLink"}`; each needs
//!   `api-version` and a bearer token, refuses a request without one with a 401 whose
//!   `WWW-Authenticate` challenge names the resource, and errors are
//!   `{"error": {"code", "message", "innererror"}}`.
//!
//! The store goes through Microsoft's SDK, which sends tokens only over https and checks the
//! vault's host against the challenge's resource: the fake serves TLS with a certificate for
//! `prod-vault.vault.azure.net` and `login.microsoftonline.com`, and the store's HTTP client
//! resolves both names to the fake on loopback, so the store runs with its default URLs.
//! Nothing leaves loopback: no name is looked up. Ports 19230-19249.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::error::Error;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::{Form, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use rustls::pki_types::PrivateKeyDer;
use serde_json::{Value, json};
use tokio_rustls::TlsAcceptor;
use vault_api::unseal::AzureKeyStore;
use vault_keystore::{AzureConfig, AzureCredentials, AzureKeyVaultStore, KeyStore, Secret};

use common::error_message;

type TestResult = Result<(), Box<dyn Error>>;

const TENANT: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";
const CLIENT_ID: &str = "0b1f2c3d-4e5f-6a7b-8c9d-0e1f2a3b4c5d";
const CLIENT_SECRET: &str = "client-secret-that-must-not-leak";
const ACCESS_TOKEN: &str = "eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9.test-access-token";
const VAULT: &str = "prod-vault";
/// The vault's URL, as the store builds it from [`VAULT`].
const VAULT_URL: &str = "https://prod-vault.vault.azure.net";
/// The identity platform's host.
const LOGIN_HOST: &str = "login.microsoftonline.com";
/// API versions of Key Vault's published reference that the fake answers.
const API_VERSIONS: [&str; 4] = ["7.4", "7.5", "7.6", "2025-07-01"];
/// Secrets per page of the fake's listing: small, so that a few secrets take several pages.
const PAGE_SIZE: usize = 2;

/// The fake vault's secrets and what it saw.
struct Fake {
    base: String,
    secrets: Mutex<BTreeMap<String, String>>,
    forbidden: AtomicBool,
    token_requests: AtomicUsize,
    list_requests: AtomicUsize,
}

fn vault_error(status: StatusCode, code: &str, inner: Option<&str>, message: &str) -> Response {
    let mut error = json!({ "code": code, "message": message });
    if let Some(inner) = inner {
        error["innererror"] = json!({ "code": inner });
    }
    (status, Json(json!({ "error": error }))).into_response()
}

/// Checks what every Key Vault call needs: the API version and the bearer token.
fn check_request(
    fake: &Fake,
    headers: &HeaderMap,
    query: &HashMap<String, String>,
) -> Option<Response> {
    match query.get("api-version").map(String::as_str) {
        Some(version) if API_VERSIONS.contains(&version) => {}
        Some(other) => {
            let message = format!("The specified version ({other}) is not recognized.");
            return Some(vault_error(
                StatusCode::BAD_REQUEST,
                "BadParameter",
                None,
                &message,
            ));
        }
        None => {
            let message = "The api-version query parameter (?api-version=) is required.";
            return Some(vault_error(
                StatusCode::BAD_REQUEST,
                "BadParameter",
                None,
                message,
            ));
        }
    }
    let bearer = headers
        .get("authorization")
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default();
    if bearer != format!("Bearer {ACCESS_TOKEN}") {
        let challenge = format!(
            "Bearer authorization=\"https://login.microsoftonline.com/{TENANT}\", \
             resource=\"https://vault.azure.net\""
        );
        let mut response = vault_error(
            StatusCode::UNAUTHORIZED,
            "Unauthorized",
            None,
            "AKV10000: Request is missing a Bearer or PoP token.",
        );
        if let Ok(value) = challenge.parse() {
            response.headers_mut().insert("www-authenticate", value);
        }
        return Some(response);
    }
    if fake.forbidden.load(Ordering::SeqCst) {
        let message = "Caller is not authorized to perform action on resource.\r\n\
                       If role assignments, deny assignments or role definitions were changed \
                       recently, please observe propagation time.";
        return Some(vault_error(
            StatusCode::FORBIDDEN,
            "Forbidden",
            Some("ForbiddenByRbac"),
            message,
        ));
    }
    None
}

fn valid_name(name: &str) -> bool {
    (1..=127).contains(&name.len()) && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

fn bundle(fake: &Fake, name: &str, value: &str) -> Value {
    json!({
        "value": value,
        "id": format!("{}/secrets/{name}/4387e9f3d6e14c459867679a90fd0f79", fake.base),
        "attributes": {
            "enabled": true,
            "created": 1_700_000_000,
            "updated": 1_700_000_000,
            "recoveryLevel": "Recoverable+Purgeable",
            "recoverableDays": 90,
        },
    })
}

async fn set_secret(
    State(fake): State<Arc<Fake>>,
    Path(name): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    // Checked before the body is read: the SDK's first try, which gets the challenge, has
    // none.
    if let Some(refused) = check_request(&fake, &headers, &query) {
        return refused;
    }
    let body: Value = serde_json::from_slice(&body).unwrap_or_default();
    if !valid_name(&name) {
        let message = format!("The request URI contains an invalid name: {name}");
        return vault_error(StatusCode::BAD_REQUEST, "BadParameter", None, &message);
    }
    let Some(value) = body["value"].as_str() else {
        let message = "Property value is required but was not provided.";
        return vault_error(StatusCode::BAD_REQUEST, "BadParameter", None, message);
    };
    if let Ok(mut secrets) = fake.secrets.lock() {
        secrets.insert(name.clone(), value.to_string());
    }
    Json(bundle(&fake, &name, value)).into_response()
}

async fn get_secret(
    State(fake): State<Arc<Fake>>,
    Path(name): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    if let Some(refused) = check_request(&fake, &headers, &query) {
        return refused;
    }
    let value = fake
        .secrets
        .lock()
        .ok()
        .and_then(|secrets| secrets.get(&name).cloned());
    match value {
        Some(value) => Json(bundle(&fake, &name, &value)).into_response(),
        None => {
            let message = format!(
                "A secret with (name/id) {name} was not found in this key vault. If you \
                 recently deleted this secret you may be able to recover it using the correct \
                 recovery command."
            );
            vault_error(StatusCode::NOT_FOUND, "SecretNotFound", None, &message)
        }
    }
}

async fn list_secrets(
    State(fake): State<Arc<Fake>>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    fake.list_requests.fetch_add(1, Ordering::SeqCst);
    if let Some(refused) = check_request(&fake, &headers, &query) {
        return refused;
    }
    let skip: usize = query
        .get("$skiptoken")
        .and_then(|t| t.parse().ok())
        .unwrap_or(0);
    let names: Vec<String> = fake
        .secrets
        .lock()
        .map(|secrets| secrets.keys().cloned().collect())
        .unwrap_or_default();
    let page: Vec<Value> = names
        .iter()
        .skip(skip)
        .take(PAGE_SIZE)
        .map(|name| {
            json!({
                "id": format!("{}/secrets/{name}", fake.base),
                "attributes": { "enabled": true, "recoveryLevel": "Recoverable+Purgeable" },
            })
        })
        .collect();
    let next = skip + PAGE_SIZE;
    let next_link = (next < names.len()).then(|| {
        format!(
            "{}/secrets?api-version=7.4&$skiptoken={next}&maxresults={PAGE_SIZE}",
            fake.base
        )
    });
    Json(json!({ "value": page, "nextLink": next_link })).into_response()
}

/// The client-credentials token endpoint of the Microsoft identity platform.
async fn token(
    State(fake): State<Arc<Fake>>,
    Path(tenant): Path<String>,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    fake.token_requests.fetch_add(1, Ordering::SeqCst);
    let field = |name: &str| form.get(name).map(String::as_str).unwrap_or_default();
    let refuse = |error: &str, code: u32, description: &str| {
        let body = json!({
            "error": error,
            "error_description": format!("AADSTS{code}: {description}"),
            "error_codes": [code],
        });
        (StatusCode::BAD_REQUEST, Json(body)).into_response()
    };
    if tenant != TENANT {
        return refuse("invalid_tenant", 90002, "Tenant not found.");
    }
    if field("grant_type") != "client_credentials"
        || field("scope") != "https://vault.azure.net/.default"
    {
        return refuse(
            "invalid_request",
            900144,
            "The request body must contain grant_type and scope.",
        );
    }
    if field("client_id") != CLIENT_ID || field("client_secret") != CLIENT_SECRET {
        let body = json!({
            "error": "invalid_client",
            "error_description": "AADSTS7000215: Invalid client secret provided.",
            "error_codes": [7000215],
        });
        return (StatusCode::UNAUTHORIZED, Json(body)).into_response();
    }
    let body = json!({
        "token_type": "Bearer",
        "expires_in": 3599,
        "ext_expires_in": 3599,
        "access_token": ACCESS_TOKEN,
    });
    Json(body).into_response()
}

/// The fake on `port`, over TLS, and a client that trusts it and finds it under the
/// vault's and the identity platform's names.
async fn start_fake(port: u16) -> Result<(Arc<Fake>, reqwest::Client), Box<dyn Error>> {
    let fake = Arc::new(Fake {
        base: VAULT_URL.to_string(),
        secrets: Mutex::default(),
        forbidden: AtomicBool::new(false),
        token_requests: AtomicUsize::new(0),
        list_requests: AtomicUsize::new(0),
    });
    let app = Router::new()
        .route("/{tenant}/oauth2/v2.0/token", post(token))
        .route("/secrets", get(list_secrets))
        .route("/secrets/{name}", get(get_secret).put(set_secret))
        .route("/secrets/{name}/", get(get_secret))
        .with_state(fake.clone());

    let _ = rustls::crypto::ring::default_provider().install_default();
    let names = vec![format!("{VAULT}.vault.azure.net"), LOGIN_HOST.to_string()];
    let certified = rcgen::generate_simple_self_signed(names)?;
    let cert = certified.cert.der().clone();
    let key = PrivateKeyDer::Pkcs8(certified.signing_key.serialize_der().into());
    let server = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(vec![cert.clone()], key)?;
    let acceptor = TlsAcceptor::from(Arc::new(server));
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            let service = TowerToHyperService::new(app.clone());
            tokio::spawn(async move {
                if let Ok(tls) = acceptor.accept(tcp).await {
                    let builder = auto::Builder::new(TokioExecutor::new());
                    let _ = builder.serve_connection(TokioIo::new(tls), service).await;
                }
            });
        }
    });

    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert)?;
    let tls = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let address = SocketAddr::from(([127, 0, 0, 1], port));
    let client = reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .resolve(&format!("{VAULT}.vault.azure.net"), address)
        .resolve(LOGIN_HOST, address)
        .no_proxy()
        .build()?;
    Ok((fake, client))
}

/// A store for the fake, with `prefix` and client secret `secret`, at its default URLs.
fn store(
    client: &reqwest::Client,
    prefix: Option<&str>,
    secret: &str,
) -> Result<AzureKeyVaultStore, Box<dyn Error>> {
    let spec = AzureKeyStore {
        key_vault_name: Some(VAULT.to_string()),
        key_prefix: prefix.map(str::to_string),
    };
    let config = AzureConfig {
        vault_url: None,
        credentials: AzureCredentials::ClientSecret {
            tenant_id: TENANT.to_string(),
            client_id: CLIENT_ID.to_string(),
            client_secret: Secret::from(secret),
        },
        http_client: Some(client.clone()),
    };
    Ok(AzureKeyVaultStore::new(&spec, config)?)
}

#[tokio::test]
async fn keys_round_trip_and_are_listed_across_pages() -> TestResult {
    let (fake, client) = start_fake(19230).await?;
    let store = store(&client, None, CLIENT_SECRET)?;

    let keys = [
        "vault-unseal-0",
        "vault-unseal-1",
        "vault-unseal-2",
        "vault-root",
        "vault-test",
    ];
    for (index, key) in keys.iter().enumerate() {
        store
            .set(key, &Secret::new(format!("value-{index}")))
            .await?;
    }
    for (index, key) in keys.iter().enumerate() {
        assert_eq!(
            store.get(key).await?,
            Some(Secret::new(format!("value-{index}")))
        );
    }
    assert_eq!(
        store.get("vault-unseal-3").await?,
        None,
        "a 404 is no value"
    );

    let mut listed = store.list().await?;
    listed.sort();
    let mut expected = keys.to_vec();
    expected.sort();
    assert_eq!(listed, expected);
    assert_eq!(
        fake.list_requests.load(Ordering::SeqCst),
        3,
        "five secrets, pages of two"
    );
    assert_eq!(
        fake.token_requests.load(Ordering::SeqCst),
        1,
        "the token is reused"
    );
    Ok(())
}

#[tokio::test]
async fn secrets_are_named_as_bank_vaults_names_them() -> TestResult {
    let (fake, client) = start_fake(19231).await?;
    // As Bank-Vaults' azurekv writes them: the key as the name, the text as the value.
    if let Ok(mut secrets) = fake.secrets.lock() {
        secrets.insert(
            "vault-unseal-0".to_string(),
            "bank-vaults-share".to_string(),
        );
        secrets.insert("unrelated-secret".to_string(), "x".to_string());
    }
    let plain = store(&client, None, CLIENT_SECRET)?;
    assert_eq!(
        plain.get("vault-unseal-0").await?,
        Some(Secret::from("bank-vaults-share"))
    );

    // A prefix goes before the key, and the listing keeps only the prefixed secrets.
    let prefixed = store(&client, Some("team-a-"), CLIENT_SECRET)?;
    prefixed.set("vault-root", &Secret::from("root")).await?;
    let stored = fake
        .secrets
        .lock()
        .ok()
        .and_then(|s| s.get("team-a-vault-root").cloned());
    assert_eq!(stored.as_deref(), Some("root"));
    assert_eq!(prefixed.list().await?, ["vault-root"]);
    assert_eq!(prefixed.get("vault-unseal-0").await?, None);
    Ok(())
}

#[tokio::test]
async fn a_refusal_names_the_vault_and_azures_code() -> TestResult {
    let (fake, client) = start_fake(19232).await?;
    let store = store(&client, None, CLIENT_SECRET)?;
    fake.forbidden.store(true, Ordering::SeqCst);

    let error = error_message(store.get("vault-root").await);
    assert!(
        error.starts_with(
            "reading vault-root in Azure Key Vault prod-vault: 403 Forbidden Forbidden \
             (ForbiddenByRbac): Caller is not authorized to perform action on resource."
        ),
        "{error}"
    );
    let error = error_message(store.set("vault-root", &Secret::from("hvs.root")).await);
    assert!(
        error.contains("403 Forbidden Forbidden (ForbiddenByRbac)"),
        "{error}"
    );
    assert!(!error.contains("hvs.root"), "{error}");
    Ok(())
}

#[tokio::test]
async fn a_refused_client_secret_is_reported_without_it() -> TestResult {
    let (fake, client) = start_fake(19233).await?;
    let store = store(&client, None, "wrong-secret-value")?;

    let error = error_message(store.get("vault-unseal-0").await);
    let prefix = "reading vault-unseal-0 in Azure Key Vault prod-vault: ";
    assert!(error.starts_with(prefix), "{error}");
    let refusal = "ClientSecretCredential authentication failed. AADSTS7000215: Invalid client \
                   secret provided.";
    assert!(error.contains(refusal), "{error}");
    assert_eq!(fake.token_requests.load(Ordering::SeqCst), 1);
    assert!(!error.contains("wrong-secret-value"), "{error}");
    Ok(())
}

#[tokio::test]
async fn a_key_key_vault_cannot_name_is_refused_before_any_call() -> TestResult {
    let (fake, client) = start_fake(19234).await?;
    let store = store(&client, None, CLIENT_SECRET)?;

    let error = error_message(store.set("vault_unseal.0", &Secret::from("x")).await);
    assert_eq!(
        error,
        "writing vault_unseal.0 in Azure Key Vault prod-vault: Key Vault secret names have only \
         letters, digits and dashes"
    );
    assert_eq!(fake.token_requests.load(Ordering::SeqCst), 0);
    Ok(())
}
