//! `externalConfig` applied to real OpenBao dev servers on loopback (plain HTTP): the raft
//! sample written and read back, a second pass that writes nothing, manual changes put
//! back, a broken item reported by its path while the others apply, and every shared
//! sample applied item by item; groups, aliases, purge, plugins, startup secrets from
//! Kubernetes Secrets and pki bundles, audit devices in OpenBao's configuration.
//!
//! What OpenBao lacks (github, aws, ldap, okta, azure auth; aws and gcp engines; audit
//! devices through the API) goes to a recording server speaking Vault's API
//! (`recording/mod.rs`), and the tests check each request sent.
//!
//! Each test starts its own `bao server -dev` or recording server on a port of the 19400
//! range.

mod common;
#[path = "recording/mod.rs"]
mod recording;

use std::collections::{BTreeMap, HashMap};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use reqwest::Method;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use vault_controller::Secret;
use vault_controller::external::{
    self, AppliedHashes, ApplyOptions, ApplyReport, Outcome, SecretValues,
};
use vault_controller::vault::{AuthedClient, PodEndpoint, Trust, VaultPodClient};

use common::{BoxError, Capture, assert_no_secret, bao};

fn samples_dir() -> PathBuf {
    match std::env::var_os("VAULT_SAMPLES_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/samples/bank-vaults"),
    }
}

/// The `externalConfig` of each `Vault` in a sample file, by the resource's name.
fn sample_configs(file: &str) -> Result<Vec<(String, Value)>, BoxError> {
    let text = std::fs::read_to_string(samples_dir().join(file))?;
    let mut configs = Vec::new();
    for document in vault_api::documents::read_vaults(&text)? {
        let vault = document.vault?;
        let name = vault.metadata.name.clone().unwrap_or_default();
        configs.push((name, serde_json::to_value(&vault.spec.external_config)?));
    }
    Ok(configs)
}

fn raft_config() -> Result<Value, BoxError> {
    sample_configs("cr-raft.yaml")?
        .into_iter()
        .map(|(_, config)| config)
        .next()
        .ok_or_else(|| "cr-raft.yaml holds no Vault".into())
}

/// A `bao server -dev` on 127.0.0.1, killed when dropped.
struct DevServer {
    child: Child,
    port: u16,
    token: Secret,
    log: PathBuf,
    _folder: tempfile::TempDir,
}

impl DevServer {
    fn start(port: u16) -> Result<Self, BoxError> {
        Self::start_with(port, None)
    }

    /// A dev server that also reads `config` (HCL), such as a `plugin_directory`.
    fn start_with(port: u16, config: Option<&str>) -> Result<Self, BoxError> {
        let folder = tempfile::Builder::new().prefix("external").tempdir()?;
        let token = random_token(port);
        let log = folder.path().join("bao.log");
        let output = std::fs::File::create(&log)?;
        let mut command = Command::new(bao()?);
        command.arg("server").arg("-dev");
        if let Some(config) = config {
            let file = folder.path().join("extra.hcl");
            std::fs::write(&file, config)?;
            command.arg(format!("-config={}", file.display()));
        }
        let child = command
            .arg(format!("-dev-root-token-id={}", token.expose()))
            .arg(format!("-dev-listen-address=127.0.0.1:{port}"))
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            // The dev server keeps its token in `~/.vault-token`: not the user's.
            .env("HOME", folder.path())
            .stdin(Stdio::null())
            .stdout(output.try_clone()?)
            .stderr(output)
            .spawn()?;
        let mut server = Self {
            child,
            port,
            token,
            log,
            _folder: folder,
        };
        server.wait_listening()?;
        Ok(server)
    }

    fn wait_listening(&mut self) -> Result<(), BoxError> {
        let address = SocketAddr::from((Ipv4Addr::LOCALHOST, self.port));
        let start = Instant::now();
        while TcpStream::connect_timeout(&address, Duration::from_millis(200)).is_err() {
            if let Some(status) = self.child.try_wait()? {
                let log = std::fs::read_to_string(&self.log).unwrap_or_default();
                return Err(format!("bao exited with {status}: {log}").into());
            }
            if start.elapsed() > Duration::from_secs(30) {
                return Err(format!("bao did not listen on {address}").into());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }

    fn client(&self) -> Result<VaultPodClient, BoxError> {
        let endpoint = PodEndpoint {
            pod: format!("bao-dev-{}", self.port),
            address: SocketAddr::from((Ipv4Addr::LOCALHOST, self.port)),
            server_name: "bao-dev.test".to_string(),
        };
        Ok(VaultPodClient::with_trust(
            endpoint,
            &Trust::Plain,
            Duration::from_secs(10),
        )?)
    }

    /// A logged-in client once the dev server is unsealed and active.
    async fn authed(&self) -> Result<AuthedClient, BoxError> {
        let pod = self.client()?;
        let start = Instant::now();
        loop {
            match pod.health().await {
                Ok(health) if !health.sealed && !health.standby => break,
                _ if start.elapsed() > Duration::from_secs(30) => {
                    return Err("the dev server did not become active".into());
                }
                _ => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
        Ok(pod.authed(&self.token)?)
    }
}

impl Drop for DevServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn random_token(port: u16) -> Secret {
    let mut hasher = Sha256::new();
    hasher.update(format!("{:?}{}{port}", Instant::now(), std::process::id()));
    hasher.update(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos()
            .to_be_bytes(),
    );
    let hex: String = hasher
        .finalize()
        .iter()
        .take(16)
        .map(|b| format!("{b:02x}"))
        .collect();
    Secret::new(hex)
}

/// A CA certificate for the Kubernetes auth config: OpenBao refuses one without a CA when
/// it runs outside a pod.
fn kubernetes_ca() -> Result<String, BoxError> {
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new())?;
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    Ok(params.self_signed(&rcgen::KeyPair::generate()?)?.pem())
}

fn options(ca: &str, extra: &[(&str, &str)], applied_hashes: AppliedHashes) -> ApplyOptions {
    let mut environment = BTreeMap::from([
        (
            "KUBERNETES_SERVICE_HOST".to_string(),
            "10.96.0.1".to_string(),
        ),
        ("KUBERNETES_SERVICE_PORT".to_string(), "443".to_string()),
    ]);
    for (name, value) in extra {
        environment.insert(name.to_string(), value.to_string());
    }
    ApplyOptions {
        environment: Some(environment),
        applied_hashes,
        hash_key: Some(Secret::from("test hash key")),
        kubernetes_ca_cert: Some(ca.to_string()),
        secret_values: None,
    }
}

/// The options of a first pass: no hashes from a previous one.
fn fresh(ca: &str) -> ApplyOptions {
    options(ca, &[], AppliedHashes::default())
}

/// The items of a report with the given outcome kind.
fn items_where(report: &ApplyReport, wanted: fn(&Outcome) -> bool) -> Vec<&str> {
    report
        .items
        .iter()
        .filter(|item| wanted(&item.outcome))
        .map(|item| item.item.as_str())
        .collect()
}

/// `path`'s `data`, read with the raw client.
async fn read(vault: &AuthedClient, path: &str) -> Result<Value, BoxError> {
    let answer = vault.request("reading", Method::GET, path, None).await?;
    Ok(answer.get("data").cloned().unwrap_or(Value::Null))
}

#[tokio::test]
async fn raft_sample_is_applied_read_back_and_kept() -> Result<(), BoxError> {
    let server = DevServer::start(19400)?;
    let vault = server.authed().await?;
    let config = raft_config()?;
    let ca = kubernetes_ca()?;

    let first = external::apply(&vault, &config, &fresh(&ca)).await;
    assert!(first.succeeded(), "{first}");
    let written = items_where(&first, |o| matches!(o, Outcome::Written));
    assert_eq!(
        written,
        [
            "auth[kubernetes]",
            "auth[kubernetes].config",
            "auth[kubernetes].roles[default]",
            "policies[allow_secrets]",
            // The dev server mounts `secret/` as kv version 2: only its description differs.
            "secrets[secret]",
            "startupSecrets[secret/data/accounts/aws]",
            "startupSecrets[secret/data/dockerrepo]",
            "startupSecrets[secret/data/mysql]",
        ],
        "{first}"
    );

    // Read back with vaultrs, a client that shares nothing with the code under test.
    let client = vault.client();
    let policy = vaultrs::sys::policy::read(client, "allow_secrets").await?;
    assert!(
        policy
            .rules
            .starts_with(r#"path "secret/*" { capabilities = ["create", "read""#),
        "{}",
        policy.rules
    );
    let role = vaultrs::auth::kubernetes::role::read(client, "kubernetes", "default").await?;
    assert_eq!(
        role.bound_service_account_names,
        ["default", "secrets-webhook"]
    );
    assert_eq!(role.bound_service_account_namespaces, ["default", "vswh"]);
    assert_eq!(role.token_policies, ["allow_secrets"]);
    assert_eq!(role.token_ttl, 3600);
    let config = vaultrs::auth::kubernetes::read_config(client, "kubernetes").await?;
    assert_eq!(config.kubernetes_host, "https://10.96.0.1:443");
    let mounts = vaultrs::sys::mount::list(client).await?;
    let kv = mounts.get("secret/").ok_or("no secret/ mount")?;
    assert_eq!(kv.mount_type, "kv");
    assert_eq!(kv.description, "General secrets.");
    assert_eq!(
        kv.options
            .as_ref()
            .and_then(|o| o.get("version"))
            .map(String::as_str),
        Some("2")
    );
    let aws: HashMap<String, String> = vaultrs::kv2::read(client, "secret", "accounts/aws").await?;
    assert_eq!(aws["AWS_ACCESS_KEY_ID"], "secretId");
    assert_eq!(aws["AWS_SECRET_ACCESS_KEY"], "s3cr3t");
    let mysql: HashMap<String, String> = vaultrs::kv2::read(client, "secret", "mysql").await?;
    assert_eq!(mysql["MYSQL_ROOT_PASSWORD"], "s3cr3t");

    // Vault holds the configuration: the next pass writes nothing.
    let steady = options(&ca, &[], first.applied_hashes());
    let second = external::apply(&vault, &raft_config()?, &steady).await;
    assert_eq!(second.writes(), 0, "{second}");
    assert_eq!(
        items_where(&second, |o| *o != Outcome::Unchanged).len(),
        0,
        "{second}"
    );

    // Someone edits the policy, deletes the role and changes a startup secret.
    let edited = json!({"policy": "path \"secret/*\" { capabilities = [\"deny\"] }"});
    vault
        .request(
            "editing",
            Method::POST,
            "sys/policies/acl/allow_secrets",
            Some(&edited),
        )
        .await?;
    vault
        .request(
            "deleting",
            Method::DELETE,
            "auth/kubernetes/role/default",
            None,
        )
        .await?;
    let changed = json!({"data": {"AWS_ACCESS_KEY_ID": "someone-else"}});
    vault
        .request(
            "changing",
            Method::POST,
            "secret/data/accounts/aws",
            Some(&changed),
        )
        .await?;

    let third = external::apply(&vault, &raft_config()?, &steady).await;
    assert!(third.succeeded(), "{third}");
    assert_eq!(
        items_where(&third, |o| matches!(o, Outcome::Written)),
        [
            "auth[kubernetes].roles[default]",
            "policies[allow_secrets]",
            "startupSecrets[secret/data/accounts/aws]",
        ],
        "{third}"
    );
    assert_eq!(third.writes(), 3, "{third}");
    let policy = vaultrs::sys::policy::read(client, "allow_secrets").await?;
    assert!(
        policy
            .rules
            .contains(r#""create", "read", "update", "delete", "list""#)
    );
    let role = vaultrs::auth::kubernetes::role::read(client, "kubernetes", "default").await?;
    assert_eq!(role.bound_service_account_namespaces, ["default", "vswh"]);
    let aws: HashMap<String, String> = vaultrs::kv2::read(client, "secret", "accounts/aws").await?;
    assert_eq!(aws["AWS_ACCESS_KEY_ID"], "secretId");

    let fourth = external::apply(&vault, &raft_config()?, &steady).await;
    assert_eq!(fourth.writes(), 0, "{fourth}");
    Ok(())
}

/// A configuration with broken items among good ones.
fn mixed_config() -> Value {
    json!({
        "policies": [
            {"name": "good", "rules": "path \"secret/*\" { capabilities = [\"read\"] }"},
            {"name": "broken", "rules": "path \"secret/*\" { capabilities = "},
            {"name": "typo", "rules": "path \"a\" {}", "rulez": "x"},
        ],
        "auth": [
            {"type": "github", "map": {"teams": {"dev": "good"}}},
            {"type": "userpass", "users": [
                {"username": "admin", "password": "${env \"ADMIN_PASSWORD\"}",
                 "token_policies": "good"},
            ]},
            {"type": "approle", "roles": [
                {"name": "app", "token_policies": "good", "secret_id_ttl": "10m"},
                {"name": "bad", "token_ttl": "not-a-duration"},
            ]},
        ],
        "secrets": [
            {"type": "plugin", "plugin_name": "ethereum-plugin", "path": "ethereum-gateway",
             "configuration": {"config": [{"name": "wallet"}]}},
            {"type": "kv", "path": "kv1", "options": {"version": 1}},
            {"type": "pki", "config": {"max_lease_ttl": "720h"}, "configuration": {
                "root/generate": [{"name": "exported", "common_name": "vault.test",
                                   "create_only": true, "save_to": "secret/data/pki/ca"}],
                "roles": [{"name": "default", "allowed_domains": "localhost,pod",
                           "allow_subdomains": true, "ttl": "30m"}],
            }},
        ],
        "startupSecrets": [
            {"type": "kv", "path": "kv1/app",
             "data": {"data": {"password": "${env \"ADMIN_PASSWORD\"}"}}},
            {"type": "kv", "path": "nowhere/data/x", "data": {"data": {"a": "b"}}},
        ],
        "groups": [{"name": "admin", "policies": ["good"]}],
    })
}

#[tokio::test]
async fn broken_items_are_named_and_the_others_apply() -> Result<(), BoxError> {
    let capture = Capture::default();
    let _guard = capture.install();
    let server = DevServer::start(19402)?;
    let vault = server.authed().await?;
    let password = "first-Passw0rd-from-env";
    let ca = kubernetes_ca()?;

    let first = external::apply(
        &vault,
        &mixed_config(),
        &options(
            &ca,
            &[("ADMIN_PASSWORD", password)],
            AppliedHashes::default(),
        ),
    )
    .await;
    let failed = items_where(&first, |o| matches!(o, Outcome::Failed(_)));
    assert_eq!(
        failed,
        [
            "auth[github]",
            "auth[github].map.teams[dev]",
            "auth[approle].roles[bad]",
            "policies[broken]",
            "policies[typo]",
            "secrets[ethereum-gateway]",
            "secrets[ethereum-gateway].configuration.config[wallet]",
            "startupSecrets[nowhere/data/x]",
        ],
        "{first}"
    );
    let message = |item: &str| match first.item(item).map(|i| &i.outcome) {
        Some(Outcome::Failed(message)) => message.clone(),
        other => format!("{other:?}"),
    };
    assert_eq!(
        message("auth[github]"),
        "writing sys/auth/github: Vault answered 400: plugin not found in the catalog: github"
    );
    assert_eq!(
        message("auth[github].map.teams[dev]"),
        "not applied: auth[github] failed"
    );
    assert!(
        message("policies[broken]")
            .starts_with("writing sys/policies/acl/broken: Vault answered 400"),
        "{}",
        message("policies[broken]")
    );
    assert!(message("policies[typo]").starts_with("unknown field `rulez`"));
    assert_eq!(
        message("startupSecrets[nowhere/data/x]"),
        "no kv secrets engine is mounted above nowhere/data/x"
    );
    assert_eq!(
        items_where(&first, |o| matches!(o, Outcome::Skipped(_))).len(),
        0,
        "{first}"
    );

    // The good items are there.
    let client = vault.client();
    let login = vaultrs::auth::userpass::login(client, "userpass", "admin", password).await?;
    assert!(login.policies.contains(&"good".to_string()));
    let stored = read(&vault, "kv1/app").await?;
    assert_eq!(stored["password"], password);
    let saved = read(&vault, "secret/data/pki/ca").await?;
    assert!(
        saved.pointer("/data/private_key").is_some(),
        "save_to kept the key"
    );
    let role = read(&vault, "pki/roles/default").await?;
    assert_eq!(role["allowed_domains"], json!(["localhost", "pod"]));
    assert_eq!(
        read(&vault, "auth/approle/role/app").await?["secret_id_ttl"],
        600
    );

    // Nothing names the password: not the report, not the logs.
    let secrets = [password.to_string()];
    assert_no_secret(&format!("{first:?}"), &secrets, "the report")?;
    assert_no_secret(&capture.text(), &secrets, "the logs")?;

    // Next pass: what applied stays as it is; what failed is tried again.
    let second = external::apply(
        &vault,
        &mixed_config(),
        &options(&ca, &[("ADMIN_PASSWORD", password)], first.applied_hashes()),
    )
    .await;
    assert_eq!(
        items_where(&second, |o| matches!(o, Outcome::Written)).len(),
        0
    );
    assert_eq!(
        items_where(&second, |o| matches!(o, Outcome::Failed(_))),
        failed,
        "{second}"
    );
    let retried: usize = second.failures().map(|item| item.writes).sum();
    assert_eq!(second.writes(), retried, "{second}");

    // A new password is a new input: written, though Vault never shows it.
    let changed = "second-Passw0rd-from-env";
    let third = external::apply(
        &vault,
        &mixed_config(),
        &options(&ca, &[("ADMIN_PASSWORD", changed)], second.applied_hashes()),
    )
    .await;
    assert_eq!(
        items_where(&third, |o| matches!(o, Outcome::Written)),
        ["auth[userpass].users[admin]", "startupSecrets[kv1/app]"],
        "{third}"
    );
    vaultrs::auth::userpass::login(client, "userpass", "admin", changed).await?;
    let secrets = [password.to_string(), changed.to_string()];
    assert_no_secret(&format!("{third:?}"), &secrets, "the report")?;
    assert_no_secret(&capture.text(), &secrets, "the logs")?;
    Ok(())
}

/// What each shared sample is expected to fail on with OpenBao and none of the
/// environment variables its templates name, item by item.
fn expected_failures(sample: &str) -> Vec<&'static str> {
    match sample {
        // `${ gcpkms ... }` decrypts with Google Cloud KMS: not a template this operator
        // expands. The engine and its role apply; the connection does not.
        "cr-gcpkms.yaml/vault" => vec!["secrets[database].configuration.config[mysql]"],
        "external-config-reference.yml" => vec![
            // The dev server has no plugin directory.
            "plugins[ethereum-plugin]",
            // OpenBao has no github, aws, ldap, okta or azure auth.
            "auth[github]",
            "auth[github].config",
            "auth[github].map.teams[dev]",
            "auth[github].map.users[bonifaido]",
            "auth[aws]",
            "auth[aws].config",
            "auth[aws].roles[dev-role-iam]",
            "auth[aws].roles[cross-account-role]",
            "auth[aws].crossaccountrole[12345671234]",
            "auth[ldap]",
            "auth[ldap].config",
            "auth[ldap].users[bonifaido]",
            "auth[ldap].groups[developers]",
            "auth[okta]",
            "auth[okta].config",
            // `(...)` where the certificate should be.
            "auth[cert].roles[jenkins]",
            "auth[azure]",
            "auth[azure].config",
            "auth[azure].roles[dev-mi]",
            // No plugin registered.
            "secrets[ethereum-gateway]",
            // ROOT_USERNAME and ROOT_PASSWORD are not set.
            "secrets[database].configuration.config[my-mysql]",
            // No aws secrets engine in OpenBao.
            "secrets[aws]",
            "secrets[aws].configuration.config/root[0]",
            "secrets[aws].configuration.roles[simple-user]",
            // VAULT_GCP_SA_CREDENTIALS is not set, in the mount's own config.
            "secrets[gcp]",
        ],
        _ => vec![],
    }
}

#[tokio::test]
async fn every_shared_sample_applies_item_by_item() -> Result<(), BoxError> {
    let mut samples: Vec<(String, Value)> = Vec::new();
    let mut files: Vec<String> = std::fs::read_dir(samples_dir())?
        .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
        .filter(|name| name.starts_with("cr") && name.ends_with(".yaml"))
        .collect();
    files.sort();
    for file in files {
        for (name, config) in sample_configs(&file)? {
            samples.push((format!("{file}/{name}"), config));
        }
    }
    let reference = std::fs::read_to_string(samples_dir().join("external-config-reference.yml"))?;
    samples.push((
        "external-config-reference.yml".to_string(),
        serde_saphyr::from_str(&reference)?,
    ));
    assert!(samples.len() >= 9, "{} samples", samples.len());

    let ca = kubernetes_ca()?;
    let mut unexpected = Vec::new();
    for (index, (sample, config)) in samples.iter().enumerate() {
        let server = DevServer::start(19410 + 2 * index as u16)?;
        let vault = server.authed().await?;
        let first = external::apply(&vault, config, &fresh(&ca)).await;
        println!("{sample}: {first}");
        for item in &first.items {
            println!("  {}: {:?}", item.item, item.outcome);
        }
        let failed = items_where(&first, |o| matches!(o, Outcome::Failed(_)));
        if failed != expected_failures(sample) {
            unexpected.push(format!("{sample}: failed {failed:?}"));
        }
        for item in first.failures() {
            assert!(
                matches!(&item.outcome, Outcome::Failed(m) if !m.is_empty()),
                "{sample}: {} has no message",
                item.item
            );
        }

        // What applied holds still: a second pass writes only to retry failures.
        let second =
            external::apply(&vault, config, &options(&ca, &[], first.applied_hashes())).await;
        let rewritten: Vec<&str> = second
            .items
            .iter()
            .filter(|item| item.writes > 0 && !item.failed())
            .map(|item| item.item.as_str())
            .collect();
        if !rewritten.is_empty() {
            unexpected.push(format!("{sample}: written again {rewritten:?}"));
        }

        // A controller that lost the hashes writes again only what it cannot read back,
        // and never replaces a CA or a signing key.
        let restarted = external::apply(&vault, config, &fresh(&ca)).await;
        let rewritten: Vec<&str> = restarted
            .items
            .iter()
            .filter(|item| item.writes > 0 && !item.failed())
            .map(|item| item.item.as_str())
            .collect();
        let expected: &[&str] = match sample.as_str() {
            "external-config-reference.yml" => &["auth[userpass].users[admin]"],
            _ => &[],
        };
        if rewritten != expected {
            unexpected.push(format!(
                "{sample}: without hashes, written again {rewritten:?}"
            ));
        }
    }
    assert!(unexpected.is_empty(), "{unexpected:#?}");
    Ok(())
}

/// Groups, an alias on the userpass mount, and purge of everything else but secrets
/// engines.
fn identity_config(alias: &str, extra_policy: Option<Value>) -> Value {
    let mut policies = vec![json!({"name": "reader",
        "rules": "path \"secret/*\" { capabilities = [\"read\"] }"})];
    policies.extend(extra_policy);
    json!({
        "policies": policies,
        "auth": [
            {"type": "userpass", "users": [
                {"username": "keep", "password": "keep-Passw0rd", "token_policies": "reader"},
            ]},
            {"type": "approle", "roles": [{"name": "app", "token_policies": "reader"}]},
        ],
        "groups": [
            {"name": "admins", "type": "external", "policies": ["reader"],
             "metadata": {"team": "ops", "privileged": true}},
            {"name": "devs", "policies": "reader"},
        ],
        "group-aliases": [{"name": alias, "mountpath": "userpass", "group": "admins"}],
        "purgeUnmanagedConfig": {"enabled": true, "exclude": {"secrets": true}},
    })
}

async fn send(
    vault: &AuthedClient,
    method: Method,
    path: &str,
    body: Value,
) -> Result<(), BoxError> {
    let body = (method != Method::DELETE).then_some(body);
    vault
        .request("test set-up", method, path, body.as_ref())
        .await?;
    Ok(())
}

/// The group aliases Vault holds, as (name, mount accessor, group id).
async fn group_aliases(vault: &AuthedClient) -> Result<Vec<(String, String, String)>, BoxError> {
    let listing = vault
        .request(
            "listing",
            Method::GET,
            "identity/group-alias/id?list=true",
            None,
        )
        .await;
    let listing = match listing {
        Ok(listing) => listing,
        Err(error) if error.status() == Some(404) => return Ok(Vec::new()),
        Err(error) => return Err(error.into()),
    };
    let text = |v: &Value, key: &str| v[key].as_str().unwrap_or_default().to_string();
    Ok(listing["data"]["key_info"]
        .as_object()
        .map(|info| {
            info.values()
                .map(|a| {
                    (
                        text(a, "name"),
                        text(a, "mount_accessor"),
                        text(a, "canonical_id"),
                    )
                })
                .collect()
        })
        .unwrap_or_default())
}

#[tokio::test]
async fn groups_aliases_and_purge_of_what_is_not_named() -> Result<(), BoxError> {
    let server = DevServer::start(19440)?;
    let vault = server.authed().await?;
    let ca = kubernetes_ca()?;

    // What someone made by hand: all of it but the kv mount is to go.
    let by_hand = [
        ("sys/auth/userpass", json!({"type": "userpass"})),
        ("auth/userpass/users/stray", json!({"password": "x"})),
        ("sys/auth/stray-approle", json!({"type": "approle"})),
        ("sys/policies/acl/stray", json!({"policy": "path \"a\" {}"})),
        ("identity/group/name/stray-group", json!({})),
        ("sys/mounts/kept-kv", json!({"type": "kv"})),
        // The controller's own login, which purging must leave alone.
        ("sys/auth/kubernetes", json!({"type": "kubernetes"})),
        (
            "auth/kubernetes/role/vault-controller",
            json!({"bound_service_account_names": ["c"], "bound_service_account_namespaces": ["n"]}),
        ),
        (
            "sys/policies/acl/vault-controller",
            json!({"policy": "path \"a\" {}"}),
        ),
    ];
    for (path, body) in by_hand {
        send(&vault, Method::POST, path, body).await?;
    }

    let config = identity_config("ldap-admins", None);
    let first = external::apply(&vault, &config, &fresh(&ca)).await;
    assert!(first.succeeded(), "{first}");
    assert_eq!(
        items_where(&first, |o| matches!(o, Outcome::Written)),
        [
            "auth[userpass].users[keep]",
            "auth[approle]",
            "auth[approle].roles[app]",
            "groups[admins]",
            "groups[devs]",
            "group-aliases[ldap-admins]",
            "policies[reader]",
        ],
        "{first}"
    );
    assert_eq!(
        items_where(&first, |o| matches!(o, Outcome::Removed)),
        [
            "purgeUnmanagedConfig.groups[stray-group]",
            "purgeUnmanagedConfig.auth[stray-approle]",
            "purgeUnmanagedConfig.auth[userpass].users[stray]",
            "purgeUnmanagedConfig.policies[stray]",
        ],
        "{first}"
    );

    // Read back: the groups as configured, the alias on the userpass mount, the built-in
    // and excluded items still there.
    let admins = read(&vault, "identity/group/name/admins").await?;
    assert_eq!(admins["type"], "external");
    assert_eq!(admins["policies"], json!(["reader"]));
    assert_eq!(admins["metadata"]["team"], "ops");
    let accessor = read(&vault, "sys/auth/userpass").await?["accessor"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let admins_id = admins["id"].as_str().unwrap_or_default().to_string();
    assert_eq!(
        group_aliases(&vault).await?,
        [(
            "ldap-admins".to_string(),
            accessor.clone(),
            admins_id.clone()
        )]
    );
    let client = vault.client();
    let mounts = vaultrs::sys::mount::list(client).await?;
    for kept in ["kept-kv/", "secret/", "sys/", "identity/", "cubbyhole/"] {
        assert!(mounts.contains_key(kept), "{kept} was removed");
    }
    let auths = vaultrs::sys::auth::list(client).await?;
    let mut auth_paths: Vec<&String> = auths.keys().collect();
    auth_paths.sort();
    assert_eq!(
        auth_paths,
        ["approle/", "kubernetes/", "token/", "userpass/"]
    );
    let mut policies = vaultrs::sys::policy::list(client).await?.policies;
    policies.sort();
    assert_eq!(policies, ["default", "reader", "root", "vault-controller"]);
    assert!(
        read(&vault, "auth/kubernetes/role/vault-controller")
            .await
            .is_ok()
    );
    assert!(read(&vault, "auth/userpass/users/stray").await.is_err());

    // Vault holds it all: nothing written, nothing removed.
    let steady = options(&ca, &[], first.applied_hashes());
    let second = external::apply(&vault, &config, &steady).await;
    assert_eq!(second.writes(), 0, "{second}");

    // Hand edits: the group's policies, the alias gone, a new policy and approle role.
    send(
        &vault,
        Method::POST,
        "identity/group/name/admins",
        json!({"policies": ["x"]}),
    )
    .await?;
    let alias_id = vault
        .request(
            "listing",
            Method::GET,
            "identity/group-alias/id?list=true",
            None,
        )
        .await?["data"]["keys"][0]
        .as_str()
        .unwrap_or_default()
        .to_string();
    send(
        &vault,
        Method::DELETE,
        &format!("identity/group-alias/id/{alias_id}"),
        json!({}),
    )
    .await?;
    send(
        &vault,
        Method::POST,
        "sys/policies/acl/stray2",
        json!({"policy": "path \"b\" {}"}),
    )
    .await?;
    send(&vault, Method::POST, "auth/approle/role/old", json!({})).await?;
    let third = external::apply(&vault, &config, &steady).await;
    assert!(third.succeeded(), "{third}");
    assert_eq!(
        items_where(&third, |o| matches!(o, Outcome::Written | Outcome::Removed)),
        [
            "groups[admins]",
            "group-aliases[ldap-admins]",
            "purgeUnmanagedConfig.auth[approle].roles[old]",
            "purgeUnmanagedConfig.policies[stray2]",
        ],
        "{third}"
    );
    assert_eq!(third.writes(), 4, "{third}");
    assert_eq!(
        read(&vault, "identity/group/name/admins").await?["policies"],
        json!(["reader"])
    );

    // The alias renamed in the configuration: the group keeps one alias, renamed.
    let renamed = identity_config("ldap-admins-2", None);
    let fourth = external::apply(&vault, &renamed, &steady).await;
    assert!(fourth.succeeded(), "{fourth}");
    assert_eq!(
        group_aliases(&vault).await?,
        [("ldap-admins-2".to_string(), accessor.clone(), admins_id)]
    );
    assert_eq!(fourth.writes(), 1, "{fourth}");

    // A policy item that does not parse might name what a purge would remove: policies
    // are not purged, the rest is.
    send(
        &vault,
        Method::POST,
        "sys/policies/acl/stray3",
        json!({"policy": "path \"c\" {}"}),
    )
    .await?;
    let broken = identity_config("ldap-admins-2", Some(json!({"name": "x", "rulez": "y"})));
    let fifth = external::apply(&vault, &broken, &steady).await;
    assert_eq!(
        items_where(&fifth, |o| matches!(o, Outcome::Skipped(_))),
        ["purgeUnmanagedConfig.policies"],
        "{fifth}"
    );
    let policies = vaultrs::sys::policy::list(client).await?.policies;
    assert!(policies.contains(&"stray3".to_string()));

    // Excluded, policies stay; included again, the stray one goes.
    let mut excluded = identity_config("ldap-admins-2", None);
    excluded["purgeUnmanagedConfig"]["exclude"]["policies"] = json!(true);
    let sixth = external::apply(&vault, &excluded, &steady).await;
    assert_eq!(sixth.writes(), 0, "{sixth}");
    let seventh = external::apply(&vault, &renamed, &steady).await;
    assert_eq!(
        items_where(&seventh, |o| matches!(o, Outcome::Removed)),
        ["purgeUnmanagedConfig.policies[stray3]"],
        "{seventh}"
    );

    // An external group with an alias made by hand: both go, the alias first.
    send(
        &vault,
        Method::POST,
        "identity/group/name/hand",
        json!({"type": "external"}),
    )
    .await?;
    let hand_id = read(&vault, "identity/group/name/hand").await?["id"].clone();
    let alias = json!({"name": "hand-alias", "mount_accessor": accessor, "canonical_id": hand_id});
    send(&vault, Method::POST, "identity/group-alias", alias).await?;
    let eighth = external::apply(&vault, &renamed, &steady).await;
    assert_eq!(
        items_where(&eighth, |o| matches!(o, Outcome::Removed)),
        [
            "purgeUnmanagedConfig.group-aliases[hand-alias]",
            "purgeUnmanagedConfig.groups[hand]",
        ],
        "{eighth}"
    );
    assert_eq!(group_aliases(&vault).await?.len(), 1);

    // Secrets engines purged too: all but Vault's own go, the dev server's `secret/` too.
    let mut everything = renamed.clone();
    everything["purgeUnmanagedConfig"]["exclude"] = json!({});
    let ninth = external::apply(&vault, &everything, &steady).await;
    assert_eq!(
        items_where(&ninth, |o| matches!(o, Outcome::Removed)),
        [
            "purgeUnmanagedConfig.secrets[kept-kv]",
            "purgeUnmanagedConfig.secrets[secret]",
        ],
        "{ninth}"
    );
    let mut mounts: Vec<String> = vaultrs::sys::mount::list(client)
        .await?
        .into_keys()
        .collect();
    mounts.sort();
    assert_eq!(mounts, ["cubbyhole/", "identity/", "sys/"]);
    Ok(())
}

/// Purge removes the roles under a configured engine that its configuration lists roles for
/// and does not name; nothing under an engine that lists none, or whose paths may hold
/// secrets, or whose role names are not known because a template did not expand.
#[tokio::test]
async fn purge_removes_engine_roles_the_configuration_does_not_name() -> Result<(), BoxError> {
    let server = DevServer::start(19490)?;
    let vault = server.authed().await?;
    let ca = kubernetes_ca()?;
    let config = json!({
        "secrets": [
            {"type": "pki", "configuration": {"roles": [
                {"name": "web", "allowed_domains": "example.com", "allow_subdomains": true}]}},
            {"type": "ssh", "configuration": {"roles": []}},
            {"type": "pki", "path": "pki-hand"},
            {"type": "kv", "options": {"version": 1}},
        ],
        "purgeUnmanagedConfig": {"enabled": true, "exclude": {"policies": true}},
    });
    let first = external::apply(&vault, &config, &fresh(&ca)).await;
    assert!(first.succeeded(), "{first}");

    // Made by hand: a role on each engine, and a kv secret where a role would be.
    let by_hand = [
        ("pki/roles/stray", json!({"allowed_domains": "example.org"})),
        (
            "ssh/roles/stray",
            json!({"key_type": "otp", "default_user": "ops"}),
        ),
        (
            "pki-hand/roles/stray",
            json!({"allowed_domains": "example.net"}),
        ),
        ("kv/roles/stray", json!({"value": "someone's data"})),
    ];
    for (path, body) in by_hand {
        send(&vault, Method::POST, path, body).await?;
    }
    let steady = options(&ca, &[], first.applied_hashes());
    let second = external::apply(&vault, &config, &steady).await;
    assert!(second.succeeded(), "{second}");
    assert_eq!(
        items_where(&second, |o| matches!(o, Outcome::Removed)),
        [
            "purgeUnmanagedConfig.secrets[pki].roles[stray]",
            "purgeUnmanagedConfig.secrets[ssh].roles[stray]",
        ],
        "{second}"
    );
    assert_eq!(second.writes(), 2, "{second}");
    assert!(read(&vault, "pki/roles/web").await.is_ok());
    assert!(read(&vault, "pki/roles/stray").await.is_err());
    assert!(read(&vault, "ssh/roles/stray").await.is_err());
    assert!(read(&vault, "pki-hand/roles/stray").await.is_ok());
    assert_eq!(
        read(&vault, "kv/roles/stray").await?["value"],
        "someone's data"
    );

    // With secrets excluded, a hand-made role stays.
    send(&vault, Method::POST, "pki/roles/stray", json!({})).await?;
    let mut excluded = config.clone();
    excluded["purgeUnmanagedConfig"]["exclude"]["secrets"] = json!(true);
    let third = external::apply(&vault, &excluded, &steady).await;
    assert_eq!(third.writes(), 0, "{third}");
    assert!(read(&vault, "pki/roles/stray").await.is_ok());

    // A role whose name comes from a variable that is not set: its name is unknown, so
    // the stray role may be it and stays.
    let mut templated = config.clone();
    templated["secrets"][0]["configuration"]["roles"]
        .as_array_mut()
        .unwrap_or_else(|| panic!("pki roles"))
        .push(json!({"name": "${env \"ROLE_NAME\"}", "allowed_domains": "example.com"}));
    let fourth = external::apply(&vault, &templated, &steady).await;
    assert!(!fourth.succeeded(), "{fourth}");
    assert_eq!(
        items_where(&fourth, |o| matches!(o, Outcome::Skipped(_))),
        ["purgeUnmanagedConfig.secrets[pki].roles"],
        "{fourth}"
    );
    assert!(read(&vault, "pki/roles/stray").await.is_ok());
    Ok(())
}

/// Kubernetes Secrets in memory, by Secret name and key.
#[derive(Default)]
struct MemorySecrets(Mutex<BTreeMap<(String, String), String>>);

impl MemorySecrets {
    fn set(&self, name: &str, key: &str, value: &str) {
        let mut values = self.0.lock().unwrap_or_else(|e| e.into_inner());
        values.insert((name.to_string(), key.to_string()), value.to_string());
    }
}

#[async_trait]
impl SecretValues for MemorySecrets {
    async fn value(&self, name: &str, key: &str) -> Result<Option<Secret>, String> {
        let values = self.0.lock().unwrap_or_else(|e| e.into_inner());
        Ok(values
            .get(&(name.to_string(), key.to_string()))
            .map(|value| Secret::new(value.clone())))
    }
}

/// A self-signed CA: its certificate and its key, PEM.
fn ca_bundle(name: &str) -> Result<(String, String), BoxError> {
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new())?;
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, name);
    let key = rcgen::KeyPair::generate()?;
    Ok((params.self_signed(&key)?.pem(), key.serialize_pem()))
}

/// The pki engine's default CA certificate, trimmed.
async fn default_ca(vault: &AuthedClient) -> Result<String, BoxError> {
    let held = read(vault, "pki/cert/ca").await?;
    Ok(held["certificate"]
        .as_str()
        .unwrap_or_default()
        .trim()
        .to_string())
}

#[tokio::test]
async fn startup_secrets_from_kubernetes_secrets_and_a_pki_bundle() -> Result<(), BoxError> {
    let capture = Capture::default();
    let _guard = capture.install();
    let server = DevServer::start(19450)?;
    let vault = server.authed().await?;
    let ca = kubernetes_ca()?;
    let (pki_ca, pki_key) = ca_bundle("startup CA")?;
    let password = "k8s-Passw0rd-value";
    let secrets = Arc::new(MemorySecrets::default());
    secrets.set("app-creds", "user", "svc-user-1");
    secrets.set("app-creds", "password", password);
    secrets.set("vault-ca", "ca.crt", &pki_ca);
    secrets.set("vault-ca", "ca.key", &pki_key);
    let with_secrets = |hashes: AppliedHashes| ApplyOptions {
        secret_values: Some(secrets.clone()),
        ..options(&ca, &[], hashes)
    };
    let config = json!({
        "secrets": [{"type": "pki", "config": {"max_lease_ttl": "720h"}}],
        "startupSecrets": [
            {"type": "kv", "path": "secret/data/app", "data": {
                "data": {"static": "x"},
                "secretKeyRef": [{"name": "app-creds", "key": "user"},
                                 {"name": "app-creds", "key": "password"}]}},
            {"type": "kv", "path": "secret/data/missing", "data": {
                "secretKeyRef": [{"name": "app-creds", "key": "nope"}]}},
            {"type": "pki", "path": "pki/config/ca", "data": {
                "secretKeyRef": [{"name": "vault-ca", "key": "ca.crt"},
                                 {"name": "vault-ca", "key": "ca.key"}]}},
        ],
    });

    let first = external::apply(&vault, &config, &with_secrets(AppliedHashes::default())).await;
    assert_eq!(
        items_where(&first, |o| matches!(o, Outcome::Written)),
        [
            "secrets[pki]",
            "startupSecrets[secret/data/app]",
            "startupSecrets[pki/config/ca]",
        ],
        "{first}"
    );
    assert_eq!(
        first
            .item("startupSecrets[secret/data/missing]")
            .map(|item| &item.outcome),
        Some(&Outcome::Failed(
            "secretKeyRef[0]: Secret `app-creds` has no key `nope`".to_string()
        ))
    );
    let app = read(&vault, "secret/data/app").await?;
    assert_eq!(
        app["data"],
        json!({"static": "x", "user": "svc-user-1", "password": password})
    );
    assert_eq!(default_ca(&vault).await?, pki_ca.trim());

    // Held: the next pass writes nothing (the missing key fails before any write).
    let second = external::apply(&vault, &config, &with_secrets(first.applied_hashes())).await;
    assert_eq!(second.writes(), 0, "{second}");

    // The Kubernetes Secret changes: so does Vault's copy.
    let changed = "k8s-Passw0rd-changed";
    secrets.set("app-creds", "password", changed);
    let third = external::apply(&vault, &config, &with_secrets(second.applied_hashes())).await;
    assert_eq!(
        items_where(&third, |o| matches!(o, Outcome::Written)),
        ["startupSecrets[secret/data/app]"],
        "{third}"
    );
    assert_eq!(
        read(&vault, "secret/data/app").await?["data"]["password"],
        changed
    );

    // Someone makes another CA the default issuer: ours is made the default again.
    let (other_ca, other_key) = ca_bundle("other CA")?;
    let bundle = json!({"pem_bundle": format!("{other_ca}\n{other_key}")});
    let imported = vault
        .request("importing", Method::POST, "pki/config/ca", Some(&bundle))
        .await?;
    let other_issuer = imported["data"]["imported_issuers"][0]
        .as_str()
        .unwrap_or_default()
        .to_string();
    send(
        &vault,
        Method::POST,
        "pki/config/issuers",
        json!({"default": other_issuer}),
    )
    .await?;
    assert_eq!(default_ca(&vault).await?, other_ca.trim());
    let fourth = external::apply(&vault, &config, &with_secrets(third.applied_hashes())).await;
    assert_eq!(
        items_where(&fourth, |o| matches!(o, Outcome::Written)),
        ["startupSecrets[pki/config/ca]"],
        "{fourth}"
    );
    assert_eq!(default_ca(&vault).await?, pki_ca.trim());
    // The import, and the default issuer set back.
    assert_eq!(fourth.writes(), 2, "{fourth}");
    let fifth = external::apply(&vault, &config, &with_secrets(fourth.applied_hashes())).await;
    assert_eq!(fifth.writes(), 0, "{fifth}");

    // No value read from a Secret is in a report or the logs.
    let values = [
        password.to_string(),
        changed.to_string(),
        pki_key.lines().nth(1).unwrap_or("x").to_string(),
    ];
    for report in [&first, &second, &third, &fourth] {
        assert_no_secret(&format!("{report:?}"), &values, "the report")?;
    }
    assert_no_secret(&capture.text(), &values, "the logs")?;
    Ok(())
}

#[tokio::test]
async fn plugins_are_registered_in_the_catalog_and_kept() -> Result<(), BoxError> {
    use std::os::unix::fs::PermissionsExt;

    // A dummy executable: registering does not run it.
    let plugins = tempfile::Builder::new().prefix("plugins").tempdir()?;
    let binary = b"#!/bin/sh\nexit 1\n";
    let path = plugins.path().join("dummy-plugin");
    std::fs::write(&path, binary)?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))?;
    let sha256: String = Sha256::digest(binary)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let directory = format!("plugin_directory = \"{}\"\n", plugins.path().display());
    let server = DevServer::start_with(19460, Some(&directory))?;
    let vault = server.authed().await?;
    let ca = kubernetes_ca()?;

    let stray = json!({"command": "dummy-plugin", "sha256": sha256});
    send(
        &vault,
        Method::POST,
        "sys/plugins/catalog/auth/stray",
        stray,
    )
    .await?;
    let config = |env: &str| {
        json!({
            "plugins": [{"plugin_name": "dummy", "type": "secret", "sha256": sha256,
                         "command": "dummy-plugin --flag=1", "env": [env]}],
            "purgeUnmanagedConfig": {"enabled": true,
                "exclude": {"auth": true, "secrets": true, "policies": true}},
        })
    };

    let first = external::apply(&vault, &config("MODE=a"), &fresh(&ca)).await;
    assert!(first.succeeded(), "{first}");
    assert_eq!(
        items_where(&first, |o| matches!(o, Outcome::Written | Outcome::Removed)),
        ["plugins[dummy]", "purgeUnmanagedConfig.plugins[auth/stray]"],
        "{first}"
    );
    let held = read(&vault, "sys/plugins/catalog/secret/dummy").await?;
    assert_eq!(held["command"], "dummy-plugin");
    assert_eq!(held["args"], json!(["--flag=1"]));
    assert_eq!(held["sha256"], sha256.as_str());
    assert!(
        read(&vault, "sys/plugins/catalog/auth/stray")
            .await
            .is_err()
    );

    let steady = options(&ca, &[], first.applied_hashes());
    let second = external::apply(&vault, &config("MODE=a"), &steady).await;
    assert_eq!(second.writes(), 0, "{second}");

    // Registered again by hand without its arguments: put back.
    let by_hand = json!({"command": "dummy-plugin", "sha256": sha256});
    send(
        &vault,
        Method::POST,
        "sys/plugins/catalog/secret/dummy",
        by_hand,
    )
    .await?;
    let third = external::apply(&vault, &config("MODE=a"), &steady).await;
    assert_eq!(third.writes(), 1, "{third}");
    let held = read(&vault, "sys/plugins/catalog/secret/dummy").await?;
    assert_eq!(held["args"], json!(["--flag=1"]));

    // The catalog does not show `env`: a new one is told by the input's hash.
    let fourth = external::apply(&vault, &config("MODE=b"), &steady).await;
    assert_eq!(
        items_where(&fourth, |o| matches!(o, Outcome::Written)),
        ["plugins[dummy]"],
        "{fourth}"
    );
    let fifth = external::apply(
        &vault,
        &config("MODE=b"),
        &options(&ca, &[], fourth.applied_hashes()),
    )
    .await;
    assert_eq!(fifth.writes(), 0, "{fifth}");
    Ok(())
}

#[tokio::test]
async fn openbao_runs_the_audit_devices_rendered_into_its_configuration() -> Result<(), BoxError> {
    let logs = tempfile::Builder::new().prefix("audit").tempdir()?;
    let log = logs.path().join("audit.log");
    let config = json!({
        "audit": [
            {"type": "file", "path": "to-file", "description": "File based audit logging",
             "options": {"file_path": log.display().to_string(), "log_raw": false}},
            {"type": "file", "path": "not-declared", "options": {"file_path": "discard"}},
        ],
        "purgeUnmanagedConfig": {"enabled": true,
            "exclude": {"auth": true, "secrets": true, "policies": true, "audit": true}},
    });
    // The server configuration the controller renders for an OpenBao image, but for the
    // second device, left out to see it reported.
    let mut declared = config.clone();
    if let Some(devices) = declared["audit"].as_array_mut() {
        devices.truncate(1);
    }
    let stanzas = external::audit::server_config_stanzas(&declared).ok_or("no stanza")?;
    let server_config = json!({ "audit": stanzas }).to_string();
    let server = DevServer::start_with(19470, Some(&server_config))?;
    let vault = server.authed().await?;
    let ca = kubernetes_ca()?;

    let held = vault
        .request("listing", Method::GET, "sys/audit", None)
        .await?;
    assert_eq!(held["data"]["to-file/"]["type"], "file", "{held}");
    assert_eq!(
        held["data"]["to-file/"]["description"],
        "File based audit logging"
    );

    let first = external::apply(&vault, &config, &fresh(&ca)).await;
    assert!(first.succeeded(), "{first}");
    assert_eq!(
        first.item("audit[to-file]").map(|item| &item.outcome),
        Some(&Outcome::Unchanged),
        "{first}"
    );
    match first.item("audit[not-declared]").map(|item| &item.outcome) {
        Some(Outcome::Skipped(reason)) => assert!(
            reason.starts_with("OpenBao takes audit devices from its server configuration"),
            "{reason}"
        ),
        other => panic!("{other:?}"),
    }
    assert_eq!(first.writes(), 0, "{first}");
    // The device runs: the requests of the pass are in its log.
    assert!(std::fs::metadata(&log)?.len() > 0);
    Ok(())
}

/// A client of the recording server.
fn recording_client(server: &recording::RecordingVault) -> Result<AuthedClient, BoxError> {
    let endpoint = PodEndpoint {
        pod: "recording".to_string(),
        address: server.address,
        server_name: "recording.test".to_string(),
    };
    let pod = VaultPodClient::with_trust(endpoint, &Trust::Plain, Duration::from_secs(10))?;
    Ok(pod.authed(&Secret::from("recording-token"))?)
}

/// The reference sample's items of the types OpenBao lacks.
fn types_openbao_lacks() -> Result<Value, BoxError> {
    let text = std::fs::read_to_string(samples_dir().join("external-config-reference.yml"))?;
    let reference: Value = serde_saphyr::from_str(&text)?;
    let of_types = |section: &str, types: &[&str]| -> Vec<Value> {
        reference[section]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|item| item["type"].as_str().is_some_and(|t| types.contains(&t)))
            .cloned()
            .collect()
    };
    Ok(json!({
        "auth": of_types("auth", &["github", "aws", "ldap", "okta", "azure"]),
        "secrets": of_types("secrets", &["aws", "gcp"]),
    }))
}

/// The GCP roleset's bindings in the reference sample.
const BINDINGS: &str = "resource \"//cloudresourcemanager.googleapis.com/projects/my-project\" {
  roles = [ \"roles/container.admin\" ]
}
";

#[tokio::test]
async fn types_openbao_lacks_send_the_requests_vault_expects() -> Result<(), BoxError> {
    let capture = Capture::default();
    let _guard = capture.install();
    let server = recording::RecordingVault::start(19480).await?;
    let vault = recording_client(&server)?;
    let ca = kubernetes_ca()?;
    let secret_key = "aws-Secret-example-key";
    let environment = [
        ("AWS_ACCESS_KEY_ID", "AKIAEXAMPLE"),
        ("AWS_SECRET_ACCESS_KEY", secret_key),
        ("VAULT_GCP_SA_CREDENTIALS", r#"{"type": "service_account"}"#),
    ];
    let config = types_openbao_lacks()?;

    let first = external::apply(
        &vault,
        &config,
        &options(&ca, &environment, AppliedHashes::default()),
    )
    .await;
    assert!(first.succeeded(), "{first}");
    // What Vault's API documents for each: the mount, then its configuration and items.
    let expected = [
        (
            "POST",
            "sys/auth/github",
            json!({
                "config": {"listing_visibility": "unauth"},
                "description": "github backend",
                "type": "github",
            }),
        ),
        (
            "POST",
            "auth/github/config",
            json!({
                "organization": "bank-vaults",
            }),
        ),
        (
            "POST",
            "auth/github/map/teams/dev",
            json!({
                "value": "dev",
            }),
        ),
        (
            "POST",
            "auth/github/map/users/bonifaido",
            json!({
                "value": "allow_secrets",
            }),
        ),
        (
            "POST",
            "sys/auth/aws",
            json!({
                "config": {"listing_visibility": "unauth"},
                "description": "aws backend",
                "type": "aws",
            }),
        ),
        (
            "POST",
            "auth/aws/config/client",
            json!({
                "access_key": "AKIAEXAMPLE",
                "iam_server_id_header_value": "vault-dev.example.com",
                "secret_key": "aws-Secret-example-key",
            }),
        ),
        (
            "POST",
            "auth/aws/role/dev-role-iam",
            json!({
                "bound_iam_principal_arn": "arn:aws:iam::123456789012:role/dev-vault",
                "period": "1h",
                "policies": "allow_secrets",
            }),
        ),
        (
            "POST",
            "auth/aws/role/cross-account-role",
            json!({
                "bound_iam_principal_arn": "arn:aws:iam::12345671234:role/crossaccountrole",
                "period": "1h",
                "policies": "allow_secrets",
            }),
        ),
        (
            "POST",
            "auth/aws/config/sts/12345671234",
            json!({
                "sts_role": "arn:aws:iam::12345671234:role/crossaccountrole",
            }),
        ),
        (
            "POST",
            "sys/auth/ldap",
            json!({
                "config": {"listing_visibility": "unauth"},
                "description": "LDAP directory auth.",
                "type": "ldap",
            }),
        ),
        (
            "POST",
            "auth/ldap/config",
            json!({
                "binddn": "cn=admin,dc=example,dc=org",
                "bindpass": "admin",
                "groupdn": "ou=groups,dc=example,dc=org",
                "url": "ldap://localhost",
                "userattr": "uid",
                "userdn": "ou=users,dc=example,dc=org",
            }),
        ),
        (
            "POST",
            "auth/ldap/users/bonifaido",
            json!({
                "groups": "developers",
                "policies": "allow_secrets",
            }),
        ),
        (
            "POST",
            "auth/ldap/groups/developers",
            json!({
                "policies": "allow_secrets",
            }),
        ),
        (
            "POST",
            "sys/auth/okta",
            json!({
                "config": {"listing_visibility": "unauth"},
                "description": "okta backend",
                "type": "okta",
            }),
        ),
        (
            "POST",
            "auth/okta/config",
            json!({
                "base_url": "okta.com",
                "organization": "bank-vaults",
            }),
        ),
        (
            "POST",
            "sys/auth/azure",
            json!({
                "config": {},
                "description": "azure backend",
                "type": "azure",
            }),
        ),
        (
            "POST",
            "auth/azure/config",
            json!({
                "client_id": "00000000-0000-0000-0000-000000000000",
                "client_secret": "00000000-0000-0000-0000-000000000000",
                "resource": "https://vault-dev.example.com",
                "tenant_id": "00000000-0000-0000-0000-000000000000",
            }),
        ),
        (
            "POST",
            "auth/azure/role/dev-mi",
            json!({
                "bound_service_principal_ids": ["00000000-0000-0000-0000-000000000000"],
                "bound_subscription_ids": ["00000000-0000-0000-0000-000000000000"],
                "policies": "allow_secrets",
            }),
        ),
        (
            "POST",
            "sys/mounts/aws",
            json!({
                "config": {},
                "description": "AWS secret engine.",
                "options": {},
                "type": "aws",
            }),
        ),
        (
            "POST",
            "aws/config/root",
            json!({
                "access_key": "AKIAEXAMPLE",
                "secret_key": "aws-Secret-example-key",
            }),
        ),
        (
            "POST",
            "aws/roles/simple-user",
            json!({
                "credential_type": "iam_user",
                "policy_arns": ["arn:aws:iam::123456789012:policy/UsersManageOwnCredentials"],
            }),
        ),
        (
            "POST",
            "sys/mounts/gcp",
            json!({
                "config": {"credentials": "{\"type\": \"service_account\"}"},
                "description": "GCP secret engine.",
                "options": {},
                "type": "gcp",
            }),
        ),
        (
            "POST",
            "gcp/roleset/kubernetes-engine-admin",
            json!({
                "bindings": BINDINGS,
                "project": "my-project",
                "secret_type": "access_token",
                "token_scopes": "https://www.googleapis.com/auth/cloud-platform",
            }),
        ),
    ];
    let writes = server.take_writes();
    let expected: Vec<(String, String, Value)> = expected
        .into_iter()
        .map(|(method, path, body)| (method.to_string(), path.to_string(), body))
        .collect();
    assert_eq!(writes, expected);
    assert_eq!(writes.len(), first.writes(), "{first}");

    let steady = options(&ca, &environment, first.applied_hashes());
    let second = external::apply(&vault, &config, &steady).await;
    assert_eq!(second.writes(), 0, "{second}");
    assert!(server.take_writes().is_empty());

    // A mapping changed by hand and an auth method disabled: both put back.
    {
        let mut held = server.held();
        held.paths.insert(
            "auth/github/map/teams/dev".to_string(),
            json!({"value": "root"}),
        );
        held.tables.entry("sys/auth").or_default().remove("okta/");
    }
    let third = external::apply(&vault, &config, &steady).await;
    assert!(third.succeeded(), "{third}");
    let sent: Vec<(String, String)> = server
        .take_writes()
        .into_iter()
        .map(|(method, path, _)| (method, path))
        .collect();
    let put_back = [
        ("POST", "auth/github/map/teams/dev"),
        ("POST", "sys/auth/okta"),
    ];
    assert_eq!(
        sent,
        put_back.map(|(method, path)| (method.to_string(), path.to_string()))
    );

    // Made by hand under configured methods, and purged: only those go.
    let by_hand = [
        "auth/aws/role/stray",
        "auth/aws/config/sts/999",
        "auth/github/map/teams/stray",
        "auth/ldap/users/stray",
        "auth/azure/role/stray",
    ];
    for path in by_hand {
        server.held().paths.insert(path.to_string(), json!({}));
    }
    let mut purged = config.clone();
    purged["purgeUnmanagedConfig"] = json!({"enabled": true});
    let fourth = external::apply(&vault, &purged, &steady).await;
    assert!(fourth.succeeded(), "{fourth}");
    let mut removed: Vec<String> = server
        .take_writes()
        .into_iter()
        .map(|(method, path, _)| format!("{method} {path}"))
        .collect();
    removed.sort();
    let mut expected: Vec<String> = by_hand.iter().map(|p| format!("DELETE {p}")).collect();
    expected.sort();
    assert_eq!(removed, expected, "{fourth}");

    let secrets = [secret_key.to_string()];
    assert_no_secret(&format!("{first:?}"), &secrets, "the report")?;
    assert_no_secret(&capture.text(), &secrets, "the logs")?;
    Ok(())
}

#[tokio::test]
async fn hashicorp_vault_takes_audit_devices_through_its_api() -> Result<(), BoxError> {
    let server = recording::RecordingVault::start(19482).await?;
    let vault = recording_client(&server)?;
    let ca = kubernetes_ca()?;
    server.held().tables.entry("sys/audit").or_default().insert(
        "stray/".to_string(),
        json!({"type": "syslog", "options": {}}),
    );
    let config = |file_path: &str| {
        json!({
            "audit": [{"type": "file", "description": "File based audit logging device",
                       "options": {"file_path": file_path}}],
            "purgeUnmanagedConfig": {"enabled": true,
                "exclude": {"auth": true, "secrets": true, "policies": true}},
        })
    };
    let sent = |server: &recording::RecordingVault| -> Vec<String> {
        server
            .take_writes()
            .into_iter()
            .map(|(method, path, body)| format!("{method} {path} {body}"))
            .collect()
    };
    let enable = |file_path: &str| {
        let body = json!({"description": "File based audit logging device",
                          "options": {"file_path": file_path}, "type": "file"});
        format!("POST sys/audit/file {body}")
    };

    let first = external::apply(&vault, &config("/tmp/vault.log"), &fresh(&ca)).await;
    assert!(first.succeeded(), "{first}");
    assert_eq!(
        sent(&server),
        [
            enable("/tmp/vault.log"),
            "DELETE sys/audit/stray null".to_string(),
        ]
    );
    let steady = options(&ca, &[], first.applied_hashes());
    let second = external::apply(&vault, &config("/tmp/vault.log"), &steady).await;
    assert_eq!(second.writes(), 0, "{second}");

    // A device cannot be changed in place: disabled, then enabled as configured.
    let third = external::apply(&vault, &config("/var/log/vault.log"), &steady).await;
    assert!(third.succeeded(), "{third}");
    assert_eq!(
        sent(&server),
        [
            "DELETE sys/audit/file null".to_string(),
            enable("/var/log/vault.log"),
        ]
    );
    Ok(())
}

#[tokio::test]
async fn gcp_oci_auth_and_the_azure_engine_write_where_vault_reads() -> Result<(), BoxError> {
    let server = recording::RecordingVault::start(19484).await?;
    let vault = recording_client(&server)?;
    let ca = kubernetes_ca()?;
    let config = json!({
        "auth": [
            {"type": "gcp", "config": {"credentials": "{\"type\": \"service_account\"}"},
             "roles": [{"name": "dev", "type": "iam", "bound_service_accounts": ["a@b"],
                        "policies": "allow_secrets"}]},
            {"type": "oci", "config": {"home_tenancy_id": "ocid1.tenancy.oc1..a"},
             "roles": [{"name": "ops", "ocid_list": "ocid1.group.oc1..b"}]},
        ],
        "secrets": [
            {"type": "azure", "configuration": {
                "config": [{"subscription_id": "s", "tenant_id": "t", "client_id": "c",
                            "client_secret": "azure-Secret-value"}],
                "roles": [{"name": "reader", "ttl": "1h",
                           "azure_roles": "[{\"role_name\": \"Reader\"}]"}]}},
        ],
    });

    let first = external::apply(&vault, &config, &fresh(&ca)).await;
    assert!(first.succeeded(), "{first}");
    let sent: Vec<(String, String)> = server
        .take_writes()
        .into_iter()
        .map(|(method, path, _)| (method, path))
        .collect();
    let expected = [
        "sys/auth/gcp",
        "auth/gcp/config",
        "auth/gcp/role/dev",
        "sys/auth/oci",
        "auth/oci/config",
        "auth/oci/role/ops",
        "sys/mounts/azure",
        "azure/config",
        "azure/roles/reader",
    ];
    assert_eq!(
        sent,
        expected.map(|path| ("POST".to_string(), path.to_string()))
    );
    {
        let held = server.held();
        assert_eq!(held.paths["auth/gcp/role/dev"]["type"], "iam");
        let config = &held.paths["azure/config"];
        assert_eq!(config["client_secret"], "azure-Secret-value");
    }

    let second = external::apply(&vault, &config, &options(&ca, &[], first.applied_hashes())).await;
    assert_eq!(second.writes(), 0, "{second}");
    Ok(())
}
