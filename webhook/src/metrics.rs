//! The webhook's Prometheus metrics: reviews answered, denials, and how long answers take.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Labels of a request counter: which endpoint, and what came of it.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// `mutate` or `validate`.
    pub endpoint: &'static str,
    /// `allowed`, `patched`, `denied` or `bad_request`.
    pub outcome: &'static str,
}

/// Labels naming an endpoint.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EndpointLabels {
    /// `mutate` or `validate`.
    pub endpoint: &'static str,
}

/// The metrics, registered once and shared by every request.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    denials: Family<EndpointLabels, Counter>,
    latency: Family<EndpointLabels, Histogram>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Registers every metric under the `vault_webhook` prefix.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("vault_webhook");
        let requests = Family::<RequestLabels, Counter>::default();
        let denials = Family::<EndpointLabels, Counter>::default();
        // 0.1 ms to about 3 s: an answer takes well under a millisecond; the API server
        // gives up after timeoutSeconds.
        let latency = Family::<EndpointLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.0001, 2.0, 16))
        });
        registry.register(
            "admission_requests",
            "Admission reviews answered, by endpoint and outcome",
            requests.clone(),
        );
        registry.register(
            "admission_denials",
            "Admission reviews refused because the Vault resource is invalid",
            denials.clone(),
        );
        registry.register(
            "admission_duration_seconds",
            "Time from reading a review's body to answering it",
            latency.clone(),
        );
        Metrics {
            registry,
            requests,
            denials,
            latency,
        }
    }

    /// Counts one answered review.
    pub fn observe(&self, endpoint: &'static str, outcome: &'static str, elapsed: Duration) {
        self.requests
            .get_or_create(&RequestLabels { endpoint, outcome })
            .inc();
        let labels = EndpointLabels { endpoint };
        if outcome == "denied" {
            self.denials.get_or_create(&labels).inc();
        }
        self.latency
            .get_or_create(&labels)
            .observe(elapsed.as_secs_f64());
    }

    /// The metrics in the OpenMetrics text format.
    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)?;
        Ok(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_requests_denials_and_latency() {
        let metrics = Metrics::new();
        metrics.observe("validate", "denied", Duration::from_millis(2));
        metrics.observe("validate", "allowed", Duration::from_millis(1));
        metrics.observe("mutate", "bad_request", Duration::from_micros(50));
        let text = metrics.encode().unwrap_or_default();
        assert!(text.contains(
            r#"vault_webhook_admission_requests_total{endpoint="validate",outcome="denied"} 1"#
        ));
        assert!(text.contains(r#"vault_webhook_admission_denials_total{endpoint="validate"} 1"#));
        assert!(
            text.contains(
                r#"vault_webhook_admission_duration_seconds_count{endpoint="validate"} 2"#
            )
        );
        assert!(!text.contains(r#"admission_denials_total{endpoint="mutate"}"#));
    }
}
