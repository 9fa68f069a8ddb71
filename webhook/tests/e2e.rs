//! The real servers on 127.0.0.1, with a generated certificate, answering reviews over TLS:
//! what the API server will see, short of the API server itself.

use std::sync::Arc;
use std::time::Duration;

use axum::http::{StatusCode, Version};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use vault_webhook::certs::KeyedCert;
use vault_webhook::certs::files::CertFiles;
use vault_webhook::fixtures::{
    LocalServer, TEST_DNS_NAME, client_tls, create_body, raft_vault, test_certificates, vault,
};
use vault_webhook::tls::ServingCert;

const MAX_BODY: usize = 64 * 1024;
const TIMEOUT: Duration = Duration::from_millis(800);

async fn start() -> (LocalServer, KeyedCert) {
    let (ca, serving_cert) = test_certificates().unwrap_or_else(|e| panic!("{e}"));
    let serving = Arc::new(ServingCert::new());
    serving
        .install(
            serving_cert.cert.as_bytes(),
            serving_cert.key.as_bytes(),
            "test",
        )
        .unwrap_or_else(|e| panic!("{e}"));
    let server = LocalServer::start(serving, MAX_BODY, TIMEOUT)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    (server, ca)
}

fn client_with(tls: rustls::ClientConfig, server: &LocalServer) -> reqwest::Client {
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .resolve(TEST_DNS_NAME, server.admission)
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap_or_else(|e| panic!("building the client: {e}"))
}

fn client(ca: &KeyedCert, server: &LocalServer) -> reqwest::Client {
    client_with(
        client_tls(&ca.cert, false).unwrap_or_else(|e| panic!("{e}")),
        server,
    )
}

fn url(server: &LocalServer, path: &str) -> String {
    format!("https://{TEST_DNS_NAME}:{}{path}", server.admission.port())
}

async fn post(client: &reqwest::Client, url: &str, body: Vec<u8>) -> (StatusCode, Vec<u8>) {
    let response = client
        .post(url)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap_or_else(|e| panic!("POST {url}: {e:?}"));
    let status = response.status();
    let body = response.bytes().await.unwrap_or_default().to_vec();
    (status, body)
}

fn json_of(body: &[u8]) -> Value {
    serde_json::from_slice(body).unwrap_or_else(|e| panic!("{e}"))
}

#[tokio::test]
async fn validate_over_tls_refuses_with_every_problem() {
    let (server, ca) = start().await;
    let client = client(&ca, &server);

    let mut object = vault(json!({"size": 3, "config": {"storage": {"file": {}}}}));
    object["spec"]["serviceType"] = json!("Ingress");
    let (status, body) = post(&client, &url(&server, "/validate"), create_body(object)).await;
    assert_eq!(status, StatusCode::OK);
    let review = json_of(&body);
    let response = &review["response"];
    assert_eq!(response["allowed"], false, "{review}");
    assert_eq!(response["status"]["code"], 422);
    let message = response["status"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("- spec.size: "), "{message}");
    assert!(message.contains("- spec.serviceType: "), "{message}");

    let (status, body) = post(
        &client,
        &url(&server, "/validate"),
        create_body(raft_vault()),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(json_of(&body)["response"]["allowed"], true);
}

#[tokio::test]
async fn mutate_over_tls_returns_a_json_patch() {
    let (server, ca) = start().await;
    let client = client(&ca, &server);
    let (status, body) = post(&client, &url(&server, "/mutate"), create_body(raft_vault())).await;
    assert_eq!(status, StatusCode::OK);
    let review = json_of(&body);
    assert_eq!(review["response"]["allowed"], true);
    assert_eq!(review["response"]["patchType"], "JSONPatch");
    assert_eq!(
        review["response"]["uid"],
        "705ab4f5-6393-11e8-b7cc-42010a800002"
    );
}

#[tokio::test]
async fn bad_bodies_get_400_with_a_reason() {
    let (server, ca) = start().await;
    let client = client(&ca, &server);
    for path in ["/mutate", "/validate"] {
        let (status, body) = post(&client, &url(&server, path), b"not json".to_vec()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(String::from_utf8_lossy(&body).contains("not JSON"));

        let huge = vec![b' '; MAX_BODY + 1];
        let (status, body) = post(&client, &url(&server, path), huge).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        let text = String::from_utf8_lossy(&body);
        assert!(text.contains(&format!("within {MAX_BODY} bytes")), "{text}");
    }
    let response = client.get(url(&server, "/validate")).send().await;
    let status = response.map(|r| r.status()).ok();
    assert_eq!(status, Some(StatusCode::METHOD_NOT_ALLOWED));
}

#[tokio::test]
async fn tls_1_2_and_http_2_are_served() {
    let (server, ca) = start().await;

    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls::pki_types::pem::PemObject::pem_slice_iter(ca.cert.as_bytes()) {
        let cert: rustls::pki_types::CertificateDer = cert.unwrap_or_else(|e| panic!("{e}"));
        roots.add(cert).unwrap_or_else(|e| panic!("{e}"));
    }
    let tls12 = rustls::ClientConfig::builder_with_provider(vault_webhook::tls::provider())
        .with_protocol_versions(&[&rustls::version::TLS12])
        .unwrap_or_else(|e| panic!("{e}"))
        .with_root_certificates(roots)
        .with_no_client_auth();
    let (status, _) = post(
        &client_with(tls12, &server),
        &url(&server, "/validate"),
        create_body(raft_vault()),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "TLS 1.2");

    let h2 = client_with(
        client_tls(&ca.cert, true).unwrap_or_else(|e| panic!("{e}")),
        &server,
    );
    let response = h2
        .post(url(&server, "/validate"))
        .body(create_body(raft_vault()))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e:?}"));
    assert_eq!(response.version(), Version::HTTP_2);
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_client_that_does_not_trust_the_ca_is_refused() {
    let (server, _) = start().await;
    let (other_ca, _) = test_certificates().unwrap_or_else(|e| panic!("{e}"));
    let result = client(&other_ca, &server)
        .post(url(&server, "/validate"))
        .body(create_body(raft_vault()))
        .send()
        .await;
    assert!(result.is_err(), "the handshake must fail");
}

#[tokio::test]
async fn a_new_certificate_is_served_without_a_restart() {
    let (server, old_ca) = start().await;
    let (new_ca, new_serving) = test_certificates().unwrap_or_else(|e| panic!("{e}"));
    let installed = server.serving.install(
        new_serving.cert.as_bytes(),
        new_serving.key.as_bytes(),
        "test",
    );
    assert!(matches!(installed, Ok(true)));

    let (status, _) = post(
        &client(&new_ca, &server),
        &url(&server, "/validate"),
        create_body(raft_vault()),
    )
    .await;
    assert_eq!(
        status,
        StatusCode::OK,
        "new connections get the new certificate"
    );
    let old = client(&old_ca, &server)
        .post(url(&server, "/validate"))
        .body(create_body(raft_vault()))
        .send()
        .await;
    assert!(old.is_err(), "the old CA no longer verifies it");
}

#[tokio::test]
async fn certificate_files_are_reloaded_when_they_change() {
    let folder = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let files = CertFiles {
        cert: folder.path().join("tls.crt"),
        key: folder.path().join("tls.key"),
    };
    let write = |cert: &KeyedCert| {
        std::fs::write(&files.cert, &cert.cert).unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(&files.key, &cert.key).unwrap_or_else(|e| panic!("{e}"));
    };
    let serving = Arc::new(ServingCert::new());
    assert!(files.load(&serving).is_err(), "no files yet");
    assert!(!serving.is_loaded());

    let (first_ca, first) = test_certificates().unwrap_or_else(|e| panic!("{e}"));
    write(&first);
    assert!(matches!(files.load(&serving), Ok(true)));
    assert!(matches!(files.load(&serving), Ok(false)), "unchanged files");

    let server = LocalServer::start(serving.clone(), MAX_BODY, TIMEOUT)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let watcher = tokio::spawn(files.clone().watch(serving, Duration::from_millis(50)));
    let (status, _) = post(
        &client(&first_ca, &server),
        &url(&server, "/validate"),
        create_body(raft_vault()),
    )
    .await;
    assert_eq!(status, StatusCode::OK);

    let (second_ca, second) = test_certificates().unwrap_or_else(|e| panic!("{e}"));
    write(&second);
    let mut reloaded = false;
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let attempt = client(&second_ca, &server)
            .post(url(&server, "/validate"))
            .body(create_body(raft_vault()))
            .send()
            .await;
        if attempt.is_ok() {
            reloaded = true;
            break;
        }
    }
    watcher.abort();
    assert!(reloaded, "the new files were not served within 5 s");
}

#[tokio::test]
async fn probes_and_metrics_answer_in_plain_http() {
    let serving = Arc::new(ServingCert::new());
    let server = LocalServer::start(serving.clone(), MAX_BODY, TIMEOUT)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    // A plain client still builds reqwest's TLS side, from the process-wide provider.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let plain = reqwest::Client::builder()
        .no_proxy()
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    let probe = |path: &str| format!("http://{}{path}", server.probes);
    let get = |path: String| {
        let plain = plain.clone();
        async move {
            let response = plain.get(&path).send().await;
            let response = response.unwrap_or_else(|e| panic!("GET {path}: {e:?}"));
            (response.status(), response.text().await.unwrap_or_default())
        }
    };

    assert_eq!(get(probe("/healthz")).await.0, StatusCode::OK);
    assert_eq!(
        get(probe("/readyz")).await.0,
        StatusCode::SERVICE_UNAVAILABLE,
        "not ready without a certificate"
    );

    let (ca, cert) = test_certificates().unwrap_or_else(|e| panic!("{e}"));
    let _ = serving.install(cert.cert.as_bytes(), cert.key.as_bytes(), "test");
    assert_eq!(get(probe("/readyz")).await.0, StatusCode::OK);

    let client = client(&ca, &server);
    let invalid = vault(json!({"size": 2, "config": {"storage": {"file": {}}}}));
    post(&client, &url(&server, "/validate"), create_body(invalid)).await;
    post(&client, &url(&server, "/mutate"), create_body(raft_vault())).await;
    post(&client, &url(&server, "/mutate"), b"{}".to_vec()).await;

    let (status, text) = get(probe("/metrics")).await;
    assert_eq!(status, StatusCode::OK);
    for line in [
        r#"vault_webhook_admission_requests_total{endpoint="validate",outcome="denied"} 1"#,
        r#"vault_webhook_admission_requests_total{endpoint="mutate",outcome="patched"} 1"#,
        r#"vault_webhook_admission_requests_total{endpoint="mutate",outcome="bad_request"} 1"#,
        r#"vault_webhook_admission_denials_total{endpoint="validate"} 1"#,
        r#"vault_webhook_admission_duration_seconds_count{endpoint="mutate"} 2"#,
    ] {
        assert!(text.contains(line), "{line} missing from\n{text}");
    }
}

#[tokio::test]
async fn a_body_that_never_arrives_is_cut_off() {
    let (server, ca) = start().await;
    let connector = tokio_rustls::TlsConnector::from(Arc::new(
        client_tls(&ca.cert, false).unwrap_or_else(|e| panic!("{e}")),
    ));
    let tcp = tokio::net::TcpStream::connect(server.admission)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let name =
        rustls::pki_types::ServerName::try_from(TEST_DNS_NAME).unwrap_or_else(|e| panic!("{e}"));
    let mut tls = connector
        .connect(name, tcp)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let head = format!(
        "POST /validate HTTP/1.1\r\nhost: {TEST_DNS_NAME}\r\ncontent-length: 1000\r\n\r\n{{"
    );
    tls.write_all(head.as_bytes())
        .await
        .unwrap_or_else(|e| panic!("{e}"));

    let mut answer = vec![0; 1024];
    let read = tokio::time::timeout(Duration::from_secs(5), tls.read(&mut answer)).await;
    let read = read
        .unwrap_or_else(|_| panic!("no answer within 5 s"))
        .unwrap_or(0);
    let answer = String::from_utf8_lossy(&answer[..read]);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
}
