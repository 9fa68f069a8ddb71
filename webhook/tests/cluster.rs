//! The webhook as a pod of the local cluster (`tests/localcluster`), deployed from
//! `manifests/webhook.yaml` into a namespace of the test's own: it makes its certificates,
//! writes its CA into both webhook configurations, and the API server calls it for every
//! `Vault` written there. Each shared Bank-Vaults sample applied with kubectl is stored
//! with its defaults, or refused, as the API crate's table says; broken resources are
//! refused with the path of the field; a CA rollover leaves admission working throughout.
//!
//! Run as root: `LOCALCLUSTER_NAME=wh cargo test -p vault-webhook --test cluster`, against a
//! cluster started from the Cargo target folder this test builds `vault-webhook` into (the
//! pods run that binary). Without LOCALCLUSTER_NAME each test starts a cluster of its own.
//!
//! Other suites write `Vault`s into the same cluster at the same time, and a webhook with
//! `failurePolicy: Fail` that stops answering refuses every one of them. So each test's
//! webhook is installed by `e2e::operator` (as the end-to-end suite installs the whole
//! operator): configurations named after the test's namespace, selecting only it, and
//! deleted when the test ends, passed or not.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use e2e::Kubectl;
use e2e::operator::{self, Component, Operator, READY_WITHIN, Scope};
use k8s_openapi::api::admissionregistration::v1::{
    MutatingWebhookConfiguration, ValidatingWebhookConfiguration,
};
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, DeleteParams, PostParams};
use kube::{Client, ResourceExt};
use localcluster::LocalCluster;
use serde_json::{Value, json};
use time::OffsetDateTime;
use vault_api::Vault;
use vault_webhook::certs::{self, StoredCerts};
use vault_webhook::handlers::denial_message;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The field manager of what the tests apply.
const MANAGER: &str = "vault-webhook-cluster-test";
/// The manifests' names, kept in the test namespace.
const SERVICE: &str = "vault-webhook";
const SECRET: &str = "vault-webhook-tls";
/// The webhooks of the two configurations, as the API server names them in messages.
const VALIDATING_WEBHOOK: &str = "validate.vaults.vault.banzaicloud.com";
/// How often the rollover test's webhook checks its certificates (60 s by default).
const CERT_CHECK_INTERVAL: &str = "2s";

#[tokio::test]
async fn samples_are_stored_with_defaults_and_broken_resources_refused() -> Result<(), BoxError> {
    let (cluster, client, ns) = set_up("webhook").await?;
    let webhook = Webhook::deploy(&cluster, &client, &ns, &[], None).await?;
    let took = webhook.admitting().await?;
    eprintln!(
        "{ns}: admitting {:.1}s after the pods were Ready",
        took.as_secs_f64()
    );

    for (file, refused) in e2e::SAMPLE_OUTCOMES {
        apply_sample(&webhook, &client, file, *refused).await?;
    }

    let vaults = e2e::vault_api(&client, &ns);
    for (case, unseal, path) in [
        (
            "two key stores",
            json!({
                "aws": {"kmsKeyId": "alias/vault", "s3Bucket": "vault-keys"},
                "google": {"kmsKeyRing": "ring", "kmsCryptoKey": "key", "kmsLocation": "global",
                           "kmsProject": "project", "storageBucket": "vault-keys"},
            }),
            "spec.unsealConfig",
        ),
        (
            "threshold above shares",
            json!({"options": {"secretShares": 3, "secretThreshold": 4}}),
            "spec.unsealConfig.options.secretThreshold",
        ),
    ] {
        let vault = e2e::raft_vault(&ns, "broken", unseal);
        let create = PostParams::default();
        let refusal = match e2e::admit(&ns, || vaults.create(&create, &vault)).await {
            Ok(_) => return Err(format!("{case}: stored, not refused").into()),
            Err(kube::Error::Api(status)) => status,
            Err(e) => return Err(format!("{case}: {e}").into()),
        };
        assert_eq!(refusal.code, 422, "{case}: {refusal:?}");
        assert_eq!(refusal.reason, "Invalid", "{case}: {refusal:?}");
        // The message is the webhook's, every problem with its field and fix: here the one
        // the API crate finds.
        let typed: Vault = serde_json::from_value(serde_json::to_value(&vault)?)?;
        let errors = vault_api::validate(&vault_api::default(&typed), None)
            .err()
            .unwrap_or_default();
        assert_eq!(
            errors.iter().map(|e| e.path.as_str()).collect::<Vec<_>>(),
            [path],
            "{case}"
        );
        let message = denial_message(&format!("{ns}/broken"), &errors);
        assert_eq!(
            refusal.message,
            format!("admission webhook \"{VALIDATING_WEBHOOK}\" denied the request: {message}"),
            "{case}"
        );
        let causes = refusal.details.map(|d| d.causes).unwrap_or_default();
        assert!(
            causes.iter().any(|c| c.field == path),
            "{case}: the causes name {path}: {causes:?}"
        );
        assert!(vaults.get_opt("broken").await?.is_none(), "{case}: stored");
    }

    let configuration = webhook.configuration.clone();
    webhook.passed();
    let mutating: Api<MutatingWebhookConfiguration> = Api::all(client.clone());
    let validating: Api<ValidatingWebhookConfiguration> = Api::all(client.clone());
    assert!(mutating.get_opt(&configuration).await?.is_none(), "removed");
    assert!(
        validating.get_opt(&configuration).await?.is_none(),
        "removed"
    );
    Ok(())
}

/// The webhook rolls its CA over with admission working all along: the new CA is trusted
/// beside the old one before a certificate it signed is served, and the old one leaves the
/// bundle when it expires.
///
/// The webhook's Secret starts with a CA that falls due for renewal shortly after the
/// webhook is up, made by the webhook's own functions with a short life; the webhook checks
/// its certificates every 2 s. The rest (the new CA, the trust delay, the switch, the
/// clean-up) is the webhook's own doing. Takes about three and a half minutes, most of it
/// the trust delay and the old CA's remaining life.
#[tokio::test]
async fn a_ca_rollover_keeps_admission_working() -> Result<(), BoxError> {
    let (cluster, client, ns) = set_up("webhook-ca").await?;
    let dns_name = certs::service_dns_name(SERVICE, &ns);
    let start = OffsetDateTime::now_utc();
    let old = soon_due_certificates(&dns_name, start)?;
    let old_ca = old.ca.clone().ok_or("no CA made")?;
    let old_ca_end = certs::cert_facts(&old_ca.cert)?.not_after;

    let interval = [("WEBHOOK_CERT_CHECK_INTERVAL", CERT_CHECK_INTERVAL)];
    let webhook = Webhook::deploy(&cluster, &client, &ns, &interval, Some(&old)).await?;
    webhook.admitting().await?;
    let bundles = webhook.bundles(&client).await?;
    let only_old = bundles
        .iter()
        .all(|b| certificates_in(b) == 1 && certs::bundle_trusts(b, &old_ca.cert));
    if !only_old {
        return Err(format!(
            "the webhook was not admitting with the first CA alone before it fell due \
             ({ROLLOVER_DUE:?} after the test began): too slow a start?"
        )
        .into());
    }
    let begun = Instant::now();
    eprintln!(
        "{ns}: admitting with the first CA; it is due in {:.0}s",
        (start + ROLLOVER_DUE - OffsetDateTime::now_utc()).as_seconds_f64()
    );

    let probe = Probe::start(&client, &ns);
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
    let stored = || async {
        let secret = secrets.get(SECRET).await?;
        Ok::<_, BoxError>(StoredCerts::from_secret_data(
            &secret.data.unwrap_or_default(),
        ))
    };

    // The rollover: a new CA, the old one kept as previous, the old serving certificate
    // still in service, and both trusted by both configurations.
    let limit = ROLLOVER_DUE + Duration::from_secs(30);
    let (new_ca, rolled) = wait_for_value("the CA rollover", limit, || async {
        let certs = stored().await?;
        let Some(ca) = certs.ca.filter(|ca| ca.cert != old_ca.cert) else {
            return Ok(None);
        };
        assert_eq!(certs.previous_ca.as_deref(), Some(old_ca.cert.as_str()));
        let serving = certs.serving.ok_or("no serving certificate")?;
        assert!(
            certs::is_signed_by(&serving.cert, &old_ca.cert),
            "the serving certificate was swapped with the CA, before the new CA was trusted"
        );
        Ok(Some((ca, begun.elapsed())))
    })
    .await?;
    let trusted = wait_for_value("both CAs in the bundles", limit, || async {
        let bundles = webhook.bundles(&client).await?;
        let both = bundles.iter().all(|b| {
            certificates_in(b) == 2
                && certs::bundle_trusts(b, &new_ca.cert)
                && certs::bundle_trusts(b, &old_ca.cert)
        });
        Ok(both.then(|| begun.elapsed()))
    })
    .await?;
    eprintln!(
        "{ns}: CA rolled over at {:.0}s, both trusted at {:.0}s",
        rolled.as_secs_f64(),
        trusted.as_secs_f64()
    );

    // A certificate of the new CA is served no sooner than the trust delay after it was
    // made, while the old CA is still valid.
    let limit = certs::TRUST_DELAY.unsigned_abs() + Duration::from_secs(30);
    let serving = wait_for_value("a serving certificate of the new CA", limit, || async {
        let serving = stored().await?.serving.ok_or("no serving certificate")?;
        Ok(certs::is_signed_by(&serving.cert, &new_ca.cert).then_some(serving))
    })
    .await?;
    let switched = begun.elapsed();
    let ca_made = certs::cert_facts(&new_ca.cert)?.not_before;
    let issued = certs::cert_facts(&serving.cert)?.not_before;
    let delay = issued - ca_made;
    assert!(
        delay >= certs::TRUST_DELAY,
        "served {delay} after the CA was made, sooner than the trust delay"
    );
    assert!(
        OffsetDateTime::now_utc() < old_ca_end,
        "the old CA expired first"
    );
    eprintln!(
        "{ns}: new serving certificate at {:.0}s, {:.0}s after its CA",
        switched.as_secs_f64(),
        delay.as_seconds_f64()
    );

    // The old CA leaves the bundles once expired: from then on only the new CA's
    // certificate can be served to the API server.
    let expires_in = (old_ca_end - OffsetDateTime::now_utc()).unsigned_abs();
    let limit = expires_in + Duration::from_secs(30);
    let dropped = wait_for_value("the old CA out of the bundles", limit, || async {
        let bundles = webhook.bundles(&client).await?;
        let only_new = bundles
            .iter()
            .all(|b| certificates_in(b) == 1 && certs::bundle_trusts(b, &new_ca.cert));
        Ok(only_new.then(|| begun.elapsed()))
    })
    .await?;
    assert!(
        OffsetDateTime::now_utc() >= old_ca_end,
        "dropped before expiry"
    );
    // Long enough for the API server to load the new bundle and dial again.
    tokio::time::sleep(Duration::from_secs(10)).await;

    let report = probe.stop().await?;
    eprintln!(
        "{ns}: old CA out of the bundles at {:.0}s; {} admissions and {} refusals as expected, \
         {} failures, {} calls to other suites' webhooks skipped",
        dropped.as_secs_f64(),
        report.admitted,
        report.refused,
        report.failures.len(),
        report.foreign
    );
    assert!(
        report.failures.is_empty(),
        "admission failed during the rollover:\n{}",
        report.failures.join("\n")
    );
    assert!(report.admitted >= 100, "too few probes: {report:?}");
    webhook.passed();
    Ok(())
}

/// When the first CA falls due, counted from the start of the rollover test: time for the
/// webhook to start and the test to see it admit with that CA alone.
const ROLLOVER_DUE: Duration = Duration::from_secs(30);
/// How long the first CA lives on after it falls due: past the trust delay and the switch
/// to the new CA's serving certificate, with room to spare.
const ROLLOVER_OVERLAP: Duration = Duration::from_secs(150);

/// Certificates for the webhook's Secret whose CA falls due [`ROLLOVER_DUE`] after `now`
/// and expires [`ROLLOVER_OVERLAP`] later, and whose serving certificate does not fall due
/// before its CA does.
fn soon_due_certificates(dns_name: &str, now: OffsetDateTime) -> Result<StoredCerts, BoxError> {
    // generate_ca(t, l) is valid from t - 5 min (clock skew) to t + l, and due at two thirds
    // of that. Solved for due and expiry:
    let due = now + ROLLOVER_DUE;
    let expiry = due + ROLLOVER_OVERLAP;
    let skew = time::Duration::minutes(5);
    let life = (expiry - due) * 3 - skew;
    let ca = certs::generate_ca(expiry - life, life)?;
    // The serving certificate ends with its CA; it starts late enough not to fall due first.
    let serving = certs::issue_serving_cert(&ca, dns_name, due + time::Duration::minutes(2), life)?;

    let ca_facts = certs::cert_facts(&ca.cert)?;
    let serving_facts = certs::cert_facts(&serving.cert)?;
    let second = time::Duration::seconds(1);
    let planned = !ca_facts.renewal_due(due - second)
        && ca_facts.renewal_due(due + second)
        && (ca_facts.not_after - expiry).abs() <= second
        && !serving_facts.renewal_due(due + second * 30);
    if !planned {
        return Err(format!("certificates not as planned: {ca_facts:?}, {serving_facts:?}").into());
    }
    Ok(StoredCerts {
        ca: Some(ca),
        previous_ca: None,
        serving: Some(serving),
    })
}

fn certificates_in(bundle: &[u8]) -> usize {
    String::from_utf8_lossy(bundle)
        .matches("-----BEGIN CERTIFICATE-----")
        .count()
}

/// The cluster (kept for the test's length), its client, the CRD, and a fresh namespace.
async fn set_up(prefix: &str) -> Result<(LocalCluster, Client, String), BoxError> {
    localcluster::install_crypto_provider();
    let cluster = LocalCluster::start().await?;
    let client = cluster.client();
    e2e::install_crd(&client, MANAGER).await?;
    let ns = localcluster::test_namespace(&client, prefix).await?;
    Ok((cluster, client, ns))
}

/// Polls `check` until it gives a value, failing after `limit`.
async fn wait_for_value<T, F, Fut>(what: &str, limit: Duration, check: F) -> Result<T, BoxError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Option<T>, BoxError>>,
{
    e2e::wait_for(what, limit, check).await
}

/// The webhook installed in a test namespace by `e2e::operator`, with configurations named
/// after the namespace and selecting only it. Dropping it removes the configurations first,
/// then the rest and the namespace; the pods' logs are printed unless the test said it
/// passed.
struct Webhook {
    operator: Operator,
    kubectl: Kubectl,
    namespace: String,
    /// The name of both webhook configurations, and of the ClusterRole and its binding.
    configuration: String,
}

impl Webhook {
    /// Installs `manifests/webhook.yaml` into `namespace`, with `env` added to the container
    /// and the Secret holding `certs` when given, and waits until it is rolled out and both
    /// configurations carry a CA bundle.
    async fn deploy(
        cluster: &LocalCluster,
        client: &Client,
        namespace: &str,
        env: &[(&str, &str)],
        certs: Option<&StoredCerts>,
    ) -> Result<Self, BoxError> {
        let scope = Scope {
            namespace: namespace.to_string(),
            suffix: namespace.to_string(),
            serves: vec![namespace.to_string()],
        };
        let mut objects = scope.manifests(&[Component::Webhook])?;
        for object in &mut objects {
            match object["kind"].as_str() {
                Some("Deployment") => {
                    for (name, value) in env {
                        operator::set_env(object, name, value)?;
                    }
                }
                Some("Secret") => {
                    if let Some(certs) = certs {
                        object["data"] = serde_json::to_value(certs.to_secret_data())?;
                    }
                }
                _ => {}
            }
        }

        let started = Instant::now();
        let webhook = Webhook {
            kubectl: Kubectl::new(cluster)?,
            namespace: namespace.to_string(),
            configuration: scope.webhook_configuration(),
            operator: Operator::install(cluster, scope, objects).await?,
        };
        e2e::wait_for("the CA bundles written", READY_WITHIN, || async {
            let bundles = webhook.bundles(client).await?;
            let written = bundles.len() == 2 && bundles.iter().all(|b| !b.is_empty());
            Ok::<_, BoxError>(written.then_some(()))
        })
        .await?;
        eprintln!(
            "{namespace}: webhook rolled out and CA bundles written {:.1}s after apply",
            started.elapsed().as_secs_f64()
        );
        Ok(webhook)
    }

    /// The `caBundle` of every webhook of both configurations (empty when not written).
    async fn bundles(&self, client: &Client) -> Result<Vec<Vec<u8>>, BoxError> {
        let mutating: Api<MutatingWebhookConfiguration> = Api::all(client.clone());
        let validating: Api<ValidatingWebhookConfiguration> = Api::all(client.clone());
        let name = &self.configuration;
        let bundle = |b: &Option<k8s_openapi::ByteString>| {
            b.as_ref().map(|b| b.0.clone()).unwrap_or_default()
        };
        let mut bundles: Vec<Vec<u8>> = Vec::new();
        let webhooks = mutating.get(name).await?.webhooks.unwrap_or_default();
        bundles.extend(webhooks.iter().map(|w| bundle(&w.client_config.ca_bundle)));
        let webhooks = validating.get(name).await?.webhooks.unwrap_or_default();
        bundles.extend(webhooks.iter().map(|w| bundle(&w.client_config.ca_bundle)));
        Ok(bundles)
    }

    /// Waits until the API server calls both webhooks; returns the time it took.
    async fn admitting(&self) -> Result<Duration, BoxError> {
        Ok(self.operator.admitting(&self.namespace).await?)
    }

    /// Marks the test passed and removes the webhook.
    fn passed(mut self) {
        self.operator.passed();
    }
}

/// The `Vault` of a sample as its YAML has it, moved into `namespace`.
fn sample(file: &str, namespace: &str) -> Result<Value, BoxError> {
    let path = e2e::samples_dir().join(file);
    let text = std::fs::read_to_string(&path)
        .map_err(|e| format!("reading the sample {}: {e}", path.display()))?;
    let documents: Vec<Option<Value>> = serde_saphyr::from_multiple(&text)?;
    let mut vault = documents
        .into_iter()
        .flatten()
        .find(|d| d["kind"] == "Vault")
        .ok_or_else(|| format!("{file} holds no Vault"))?;
    e2e::move_to_namespace(&mut vault, namespace);
    Ok(vault)
}

/// `kubectl apply` of a sample: stored as `vault_api::default` makes it, or refused at
/// `refused`; a stored one is deleted again, as every sample is named `vault`.
async fn apply_sample(
    webhook: &Webhook,
    client: &Client,
    file: &str,
    refused: Option<&str>,
) -> Result<(), BoxError> {
    let ns = &webhook.namespace;
    let written = sample(file, ns)?;
    let args = ["apply", "-n", ns, "-f", "-"];
    let started = Instant::now();
    let applied = loop {
        let applied = webhook.kubectl.run(&args, &written.to_string()).await?;
        let stderr = text(&applied.stderr);
        if !e2e::is_foreign_failure(&stderr, ns) || started.elapsed() > Duration::from_secs(60) {
            break applied;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let (stdout, stderr) = (text(&applied.stdout), text(&applied.stderr));
    let vaults = e2e::vault_api(client, ns);
    let name = written["metadata"]["name"].as_str().unwrap_or("vault");

    let sent: Vault = serde_json::from_value(written.clone())?;
    let expected = vault_api::default(&sent);
    let judged = vault_api::validate(&expected, None);

    if let Some(path) = refused {
        assert!(!applied.status.success(), "{file}: applied: {stdout}");
        // kubectl lists the causes of the webhook's 422 (field, problem and fix) rather
        // than its message.
        let errors = judged.err().unwrap_or_default();
        assert!(errors.iter().any(|e| e.path == path), "{file}: {errors:?}");
        for error in &errors {
            assert!(
                stderr.contains(&error.to_string()),
                "{file}: kubectl does not show `{error}`: {stderr}"
            );
        }
        assert!(vaults.get_opt(name).await?.is_none(), "{file}: stored");
        eprintln!("{ns}: {file} refused: {}", stderr.trim());
        return Ok(());
    }

    assert!(applied.status.success(), "{file}: {stderr}");
    let stored = vaults.get(name).await?;
    let stored_json = serde_json::to_value(&stored)?;
    let stored_vault: Vault = serde_json::from_value(stored_json.clone())?;
    assert_eq!(stored_vault.spec, expected.spec, "{file}: stored spec");
    assert_ne!(stored_vault.spec, sent.spec, "{file}: no default written");
    // The validating webhook's warnings reach the user.
    let warnings = judged.map_err(|e| format!("{file}: refused by the API crate: {e:?}"))?;
    for warning in &warnings {
        let shown = format!("Warning: {warning}");
        assert!(
            stderr.contains(&shown),
            "{file}: kubectl does not show `{shown}`: {stderr}"
        );
    }

    // The defaults the README names, as they read in the stored object.
    let spec = &stored_json["spec"];
    let options = &spec["unsealConfig"]["options"];
    let sent_options = &written["spec"]["unsealConfig"]["options"];
    if sent_options.get("secretShares").is_none() {
        assert_eq!(options["secretShares"], 5, "{file}");
    }
    if sent_options.get("secretThreshold").is_none() {
        assert_eq!(options["secretThreshold"], 3, "{file}");
    }
    if expected.spec.config.tls_enabled() && written["spec"].get("tlsExpiryThreshold").is_none() {
        assert_eq!(spec["tlsExpiryThreshold"], "168h", "{file}");
        let listener = &spec["config"]["listener"]["tcp"];
        assert_eq!(listener["tls_cert_file"], "/vault/tls/server.crt", "{file}");
        assert_eq!(listener["tls_key_file"], "/vault/tls/server.key", "{file}");
    }
    let size = spec["size"].as_i64().unwrap_or_default();
    let placed = ["podAntiAffinity", "affinity"]
        .iter()
        .any(|f| written["spec"].get(*f).is_some());
    if size > 1 && !placed {
        let spread =
            &spec["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"];
        let weights: Vec<i64> = spread
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|term| term["weight"].as_i64())
            .collect();
        assert_eq!(weights, [100, 50], "{file}: spread over nodes, then zones");
    }
    // No controller runs in the namespace: nothing but the webhook changed the object.
    assert!(stored_json.get("status").is_none(), "{file}: has a status");
    assert!(stored.finalizers().is_empty(), "{file}: has finalizers");
    eprintln!(
        "{ns}: {file} stored with defaults, {} warnings shown",
        warnings.len()
    );

    vaults.delete(name, &DeleteParams::default()).await?;
    wait_for_value("the sample deleted", Duration::from_secs(30), || async {
        Ok(vaults.get_opt(name).await?.is_none().then_some(()))
    })
    .await?;
    Ok(())
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Admission requests sent all along a test, each with its expected outcome: a valid
/// `Vault` comes back with its defaults, one with its threshold above its shares is
/// refused by the webhook.
struct Probe {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<ProbeReport>,
}

#[derive(Debug, Default)]
struct ProbeReport {
    admitted: usize,
    refused: usize,
    /// Each unexpected outcome, with the time since the start.
    failures: Vec<String>,
    /// Requests that met another suite's webhook configuration instead.
    foreign: usize,
}

impl Probe {
    fn start(client: &Client, namespace: &str) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let vaults = e2e::vault_api(client, namespace);
        let namespace = namespace.to_string();
        let stopped = stop.clone();
        let task = tokio::spawn(async move {
            let mut report = ProbeReport::default();
            let started = Instant::now();
            let dry_run = PostParams {
                dry_run: true,
                ..PostParams::default()
            };
            let valid = e2e::raft_vault(&namespace, "probe", json!({}));
            let unseal = json!({"options": {"secretShares": 3, "secretThreshold": 4}});
            let invalid = e2e::raft_vault(&namespace, "probe", unseal);
            while !stopped.load(Ordering::SeqCst) {
                let at = started.elapsed().as_secs_f64();
                match vaults.create(&dry_run, &valid).await {
                    Ok(vault)
                        if vault.data["spec"]["unsealConfig"]["options"]["secretShares"] == 5 =>
                    {
                        report.admitted += 1
                    }
                    Ok(vault) => report
                        .failures
                        .push(format!("{at:.1}s: no defaults: {vault:?}")),
                    Err(kube::Error::Api(s)) if e2e::is_foreign_failure(&s.message, &namespace) => {
                        report.foreign += 1
                    }
                    Err(e) => report.failures.push(format!("{at:.1}s: valid: {e}")),
                }
                match vaults.create(&dry_run, &invalid).await {
                    Err(kube::Error::Api(s))
                        if s.code == 422
                            && s.message
                                .contains("spec.unsealConfig.options.secretThreshold") =>
                    {
                        report.refused += 1
                    }
                    Err(kube::Error::Api(s)) if e2e::is_foreign_failure(&s.message, &namespace) => {
                        report.foreign += 1
                    }
                    Ok(_) => report
                        .failures
                        .push(format!("{at:.1}s: invalid one admitted")),
                    Err(e) => report.failures.push(format!("{at:.1}s: invalid: {e}")),
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            report
        });
        Probe { stop, task }
    }

    async fn stop(self) -> Result<ProbeReport, BoxError> {
        self.stop.store(true, Ordering::SeqCst);
        Ok(self.task.await?)
    }
}
