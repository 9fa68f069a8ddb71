//! After every scenario: no unseal key, recovery key or root token the suite's Vaults keep
//! in Secrets appears in an Event, a `Vault`'s status, or the log of the operator or of any
//! pod in the scenarios' namespaces.

use k8s_openapi::api::core::v1::{Event, Secret};
use kube::api::{Api, ListParams};

use crate::BoxError;
use crate::harness::{OPERATOR_NAMESPACE, Suite};

/// Shorter values could turn up by chance in a long log.
const SHORTEST_CHECKED: usize = 16;

/// Checks what the suite left in `namespaces`; says how much it looked through.
pub async fn nothing_shows_a_key(suite: &Suite, namespaces: &[String]) -> Result<String, BoxError> {
    let mut secrets = Vec::new();
    for namespace in namespaces {
        let api: Api<Secret> = Api::namespaced(suite.client.clone(), namespace);
        for secret in api.list(&ListParams::default()).await?.items {
            let data = secret.data.unwrap_or_default();
            for (key, value) in data
                .into_iter()
                .filter(|(key, _)| vault_keystore::is_vault_key(key))
            {
                let Ok(value) = String::from_utf8(value.0) else {
                    continue;
                };
                if value.len() >= SHORTEST_CHECKED {
                    let secret_name = secret.metadata.name.clone().unwrap_or_default();
                    secrets.push((format!("{namespace}/{secret_name}[{key}]"), value));
                }
            }
        }
    }
    // The scenarios themselves check that their keys are stored; some keep them elsewhere.
    if secrets.is_empty() {
        return Ok("no keys in Secrets in these scenarios: nothing to look for".to_string());
    }

    let mut places: Vec<(String, String)> = Vec::new();
    let events: Api<Event> = Api::all(suite.client.clone());
    for event in events.list(&ListParams::default()).await?.items {
        let name = event.metadata.name.clone().unwrap_or_default();
        let ns = event.metadata.namespace.clone().unwrap_or_default();
        places.push((format!("Event {ns}/{name}"), serde_json::to_string(&event)?));
    }
    for namespace in namespaces {
        for vault in e2e::vault_api(&suite.client, namespace)
            .list(&ListParams::default())
            .await?
            .items
        {
            let name = vault.metadata.name.clone().unwrap_or_default();
            let status = vault.data.get("status").cloned().unwrap_or_default();
            places.push((
                format!("Vault {namespace}/{name} status"),
                status.to_string(),
            ));
        }
    }
    let layout = suite.cluster.layout();
    for namespace in namespaces
        .iter()
        .map(String::as_str)
        .chain([OPERATOR_NAMESPACE])
    {
        let logs = e2e::pod_logs(layout, namespace, usize::MAX, suite.began, None);
        places.push((format!("pod logs in {namespace}"), logs));
    }

    // Names where a key showed, never the key.
    let shown: Vec<String> = places
        .iter()
        .flat_map(|(place, text)| {
            secrets
                .iter()
                .filter(|(_, value)| text.contains(value.as_str()))
                .map(move |(which, _)| format!("{which} in {place}"))
        })
        .collect();
    if !shown.is_empty() {
        return Err(format!("key material shown: {}", shown.join("; ")).into());
    }
    let bytes: usize = places.iter().map(|(_, text)| text.len()).sum();
    Ok(format!(
        "{} keys and root tokens found in none of {} places ({} KiB)",
        secrets.len(),
        places.len(),
        bytes / 1024
    ))
}
