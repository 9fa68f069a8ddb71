//! Names in place of cluster DNS: every pod's `/etc/hosts` maps the Services and the pods
//! behind headless Services to addresses, and is rewritten in place as they change.
//!
//! A headless Service's name maps to each of its endpoints, and each endpoint with a
//! hostname gets `<hostname>.<service>.<ns>.svc`; a ClusterIP Service maps to one of its
//! endpoints (the ClusterIP range is never routed). Ready endpoints count, and not-ready
//! ones when the Service publishes them. This stands in for DNS and kube-proxy only where a
//! Service's `port` equals its `targetPort`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::Api;
use kube::runtime::{WatchStreamExt, reflector, watcher};
use tokio::sync::watch;

/// Host entries by namespace of the Service they come from: `(address, names)`, where the
/// first name is the short one, only for pods of the same namespace.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Names {
    entries: BTreeMap<String, Vec<(String, Vec<String>)>>,
}

impl Names {
    /// The `/etc/hosts` lines for a pod in `namespace`.
    pub fn lines_for(&self, namespace: &str) -> String {
        let mut out = String::new();
        for (ns, entries) in &self.entries {
            for (address, names) in entries {
                let names: Vec<&str> = names
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| *i > 0 || ns == namespace)
                    .map(|(_, n)| n.as_str())
                    .collect();
                out.push_str(&format!("{address}\t{}\n", names.join(" ")));
            }
        }
        out
    }
}

/// Watches Services and EndpointSlices and publishes the names they give.
pub fn watch_names(client: kube::Client) -> watch::Receiver<Arc<Names>> {
    let (sender, receiver) = watch::channel(Arc::new(Names::default()));
    tokio::spawn(async move {
        let (services, service_writer) = reflector::store::<Service>();
        let (slices, slice_writer) = reflector::store::<EndpointSlice>();
        let service_events = reflector(
            service_writer,
            watcher(
                Api::<Service>::all(client.clone()),
                watcher::Config::default(),
            ),
        )
        .default_backoff()
        .touched_objects()
        .map(|_| ())
        .boxed();
        let slice_events = reflector(
            slice_writer,
            watcher(
                Api::<EndpointSlice>::all(client),
                watcher::Config::default(),
            ),
        )
        .default_backoff()
        .touched_objects()
        .map(|_| ())
        .boxed();
        let mut events = futures::stream::select(service_events, slice_events);
        while events.next().await.is_some() {
            // Coalesce a burst of changes into one rewrite.
            tokio::time::sleep(Duration::from_millis(100)).await;
            let names = Arc::new(compute(&services.state(), &slices.state()));
            sender.send_if_modified(|current| {
                let changed = **current != *names;
                if changed {
                    *current = names.clone();
                }
                changed
            });
        }
    });
    receiver
}

fn compute(services: &[Arc<Service>], slices: &[Arc<EndpointSlice>]) -> Names {
    let mut names = Names::default();
    for service in services {
        let (Some(name), Some(ns)) = (&service.metadata.name, &service.metadata.namespace) else {
            continue;
        };
        let spec = service.spec.clone().unwrap_or_default();
        let headless = spec.cluster_ip.as_deref() == Some("None");
        let publish_not_ready = spec.publish_not_ready_addresses.unwrap_or(false);
        let forms = |prefix: &str| {
            vec![
                prefix.to_string(),
                format!("{prefix}.{ns}"),
                format!("{prefix}.{ns}.svc"),
                format!("{prefix}.{ns}.svc.cluster.local"),
            ]
        };

        let mut addresses = Vec::new();
        for slice in slices.iter().filter(|s| {
            s.metadata.namespace.as_deref() == Some(ns)
                && s.metadata
                    .labels
                    .as_ref()
                    .and_then(|l| l.get("kubernetes.io/service-name"))
                    == Some(name)
        }) {
            for endpoint in slice.endpoints.iter().flatten() {
                let ready = endpoint
                    .conditions
                    .as_ref()
                    .and_then(|c| c.ready)
                    .unwrap_or(true);
                if !ready && !publish_not_ready {
                    continue;
                }
                for address in &endpoint.addresses {
                    addresses.push((address.clone(), endpoint.hostname.clone()));
                }
            }
        }
        addresses.sort();
        addresses.dedup();

        let entries = names.entries.entry(ns.clone()).or_default();
        if headless {
            for (address, hostname) in &addresses {
                entries.push((address.clone(), forms(name)));
                if let Some(hostname) = hostname {
                    // `<pod>.<service>` is the short form, like a Service's own name.
                    entries.push((address.clone(), forms(&format!("{hostname}.{name}"))));
                }
            }
        } else if let Some((address, _)) = addresses.first() {
            entries.push((address.clone(), forms(name)));
        }
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service(value: serde_json::Value) -> Arc<Service> {
        Arc::new(serde_json::from_value(value).unwrap_or_else(|e| panic!("{e}")))
    }

    fn slice(value: serde_json::Value) -> Arc<EndpointSlice> {
        Arc::new(serde_json::from_value(value).unwrap_or_else(|e| panic!("{e}")))
    }

    #[test]
    fn headless_services_name_each_pod_and_cluster_ips_one_endpoint() {
        let services = vec![
            service(
                serde_json::json!({"metadata": {"name": "vault-internal", "namespace": "v"},
                                       "spec": {"clusterIP": "None"}}),
            ),
            service(
                serde_json::json!({"metadata": {"name": "vault", "namespace": "v"},
                                       "spec": {"clusterIP": "10.96.0.9"}}),
            ),
        ];
        let endpoints = serde_json::json!([
            {"addresses": ["10.244.1.1"], "hostname": "vault-0", "conditions": {"ready": true}},
            {"addresses": ["10.244.1.2"], "hostname": "vault-1", "conditions": {"ready": false}},
        ]);
        let slices = vec![
            slice(
                serde_json::json!({"metadata": {"name": "a", "namespace": "v",
                "labels": {"kubernetes.io/service-name": "vault-internal"}},
                "addressType": "IPv4", "endpoints": endpoints}),
            ),
            slice(
                serde_json::json!({"metadata": {"name": "b", "namespace": "v",
                "labels": {"kubernetes.io/service-name": "vault"}},
                "addressType": "IPv4", "endpoints": endpoints}),
            ),
        ];
        let names = compute(&services, &slices);
        let same_ns = names.lines_for("v");
        assert!(
            same_ns.contains("10.244.1.1\tvault-internal vault-internal.v"),
            "{same_ns}"
        );
        let pod = "10.244.1.1\tvault-0.vault-internal vault-0.vault-internal.v \
                   vault-0.vault-internal.v.svc";
        assert!(same_ns.contains(pod), "{same_ns}");
        assert!(
            same_ns.contains("10.244.1.1\tvault vault.v vault.v.svc"),
            "{same_ns}"
        );
        assert!(
            !same_ns.contains("10.244.1.2"),
            "not-ready endpoints are left out: {same_ns}"
        );
        let other = names.lines_for("elsewhere");
        assert!(other.contains("10.244.1.1\tvault.v vault.v.svc"), "{other}");
        assert!(
            !other.contains("\tvault "),
            "no short names across namespaces: {other}"
        );
    }
}
