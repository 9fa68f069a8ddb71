//! The controller's metrics: reconciles, errors by step, and reconcile duration, in the
//! Prometheus text format served at `/metrics`.

use std::sync::Mutex;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::reconcile::ReconcileError;

/// The step a reconcile failed in.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    /// `build`, `apply`, `status` or `finalizer`.
    pub kind: String,
}

/// The controller's counters and histogram, and the registry that encodes them.
pub struct Metrics {
    registry: Mutex<Registry>,
    reconciles: Counter,
    errors: Family<ErrorLabels, Counter>,
    duration: Histogram,
}

impl Default for Metrics {
    fn default() -> Self {
        let reconciles = Counter::default();
        let errors = Family::<ErrorLabels, Counter>::default();
        // 5 ms to about 20 s: an apply is tens of milliseconds, a takeover seconds.
        let duration = Histogram::new(exponential_buckets(0.005, 2.0, 13));
        let mut registry = Registry::with_prefix("vault_controller");
        registry.register("reconciles", "Reconciles run", reconciles.clone());
        registry.register(
            "reconcile_errors",
            "Reconciles failed, by step",
            errors.clone(),
        );
        registry.register(
            "reconcile_duration_seconds",
            "How long reconciles take",
            duration.clone(),
        );
        Metrics {
            registry: Mutex::new(registry),
            reconciles,
            errors,
            duration,
        }
    }
}

impl Metrics {
    /// Counts one reconcile that took `elapsed` and failed with `error`, if any.
    pub fn observe(&self, elapsed: Duration, error: Option<&ReconcileError>) {
        self.reconciles.inc();
        self.duration.observe(elapsed.as_secs_f64());
        if let Some(error) = error {
            let labels = ErrorLabels {
                kind: error.metric_label().to_string(),
            };
            self.errors.get_or_create(&labels).inc();
        }
    }

    /// The metrics in the Prometheus text format.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        let registry = self
            .registry
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &registry);
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_reconciles_and_errors_by_step() {
        let metrics = Metrics::default();
        metrics.observe(Duration::from_millis(20), None);
        let error = ReconcileError::Build(crate::build::BuildError::MissingMetadata {
            name: "v".to_string(),
            field: "uid",
        });
        metrics.observe(Duration::from_millis(20), Some(&error));
        let text = metrics.encode();
        assert!(
            text.contains("vault_controller_reconciles_total 2"),
            "{text}"
        );
        assert!(text.contains("vault_controller_reconcile_errors_total{kind=\"build\"} 1"));
        assert!(text.contains("vault_controller_reconcile_duration_seconds_count 2"));
    }
}
