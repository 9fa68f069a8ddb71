//! Leader election on a `coordination.k8s.io/v1` Lease, written here rather than taken
//! from a crate: it is one object read and replaced with its resource version, so two
//! replicas can never both believe they hold it. A replica that cannot renew in time
//! stops acting before another may take over.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::PostParams;
use kube::{Api, Client};
use tracing::{debug, info};

/// Why the Lease could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum LeaderError {
    /// The API server refused a Lease operation.
    #[error("{operation} Lease {namespace}/{name}: {source}")]
    Lease {
        /// Reading, creating or updating.
        operation: &'static str,
        /// Namespace of the Lease.
        namespace: String,
        /// Its name.
        name: String,
        /// The cause.
        source: kube::Error,
    },
    /// Renewals failed for as long as the Lease lasts: another replica may lead now.
    #[error("lost Lease {namespace}/{name}: not renewed within {seconds} s")]
    Lost {
        /// Namespace of the Lease.
        namespace: String,
        /// Its name.
        name: String,
        /// The Lease duration.
        seconds: i32,
    },
}

/// One replica's claim on a Lease.
pub struct LeaseLock {
    api: Api<Lease>,
    namespace: String,
    name: String,
    identity: String,
    duration_seconds: i32,
}

impl LeaseLock {
    /// A claim by `identity` (the pod name) on the Lease `namespace/name`.
    pub fn new(client: Client, namespace: &str, name: &str, identity: &str) -> Self {
        LeaseLock {
            api: Api::namespaced(client, namespace),
            namespace: namespace.to_string(),
            name: name.to_string(),
            identity: identity.to_string(),
            duration_seconds: 15,
        }
    }

    fn error(&self, operation: &'static str) -> impl FnOnce(kube::Error) -> LeaderError + '_ {
        move |source| LeaderError::Lease {
            operation,
            namespace: self.namespace.clone(),
            name: self.name.clone(),
            source,
        }
    }

    /// Takes the Lease if it is free, expired or already ours; true when we hold it.
    pub async fn try_acquire(&self) -> Result<bool, LeaderError> {
        let now = Timestamp::now();
        let Some(lease) = self
            .api
            .get_opt(&self.name)
            .await
            .map_err(self.error("reading"))?
        else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.name.clone()),
                    ..ObjectMeta::default()
                },
                spec: Some(self.spec(now, None)),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(true),
                // Another replica created it first.
                Err(kube::Error::Api(status)) if status.code == 409 => Ok(false),
                Err(source) => Err(self.error("creating")(source)),
            };
        };

        let spec = lease.spec.clone().unwrap_or_default();
        let holder = spec.holder_identity.clone().unwrap_or_default();
        let ours = holder == self.identity;
        if !ours && !holder.is_empty() && !expired(&spec, now) {
            debug!(%holder, "another replica leads");
            return Ok(false);
        }
        let replaced = Lease {
            metadata: lease.metadata.clone(),
            spec: Some(self.spec(now, Some(&spec))),
        };
        match self
            .api
            .replace(&self.name, &PostParams::default(), &replaced)
            .await
        {
            Ok(_) => {
                if !ours {
                    info!(lease = %self.name, "became the leader");
                }
                Ok(true)
            }
            // Someone wrote it since we read it: they win this round.
            Err(kube::Error::Api(status)) if status.code == 409 => Ok(false),
            Err(source) => Err(self.error("updating")(source)),
        }
    }

    fn spec(&self, now: Timestamp, previous: Option<&LeaseSpec>) -> LeaseSpec {
        let ours = previous.and_then(|p| p.holder_identity.as_deref()) == Some(&self.identity);
        let transitions = previous.and_then(|p| p.lease_transitions).unwrap_or(0);
        LeaseSpec {
            holder_identity: Some(self.identity.clone()),
            lease_duration_seconds: Some(self.duration_seconds),
            acquire_time: match previous {
                Some(p) if ours => p.acquire_time.clone(),
                _ => Some(MicroTime(now)),
            },
            renew_time: Some(MicroTime(now)),
            lease_transitions: Some(if ours { transitions } else { transitions + 1 }),
            ..LeaseSpec::default()
        }
    }

    /// Waits until this replica holds the Lease.
    pub async fn acquire(&self) -> Result<(), LeaderError> {
        loop {
            if self.try_acquire().await? {
                return Ok(());
            }
            tokio::time::sleep(self.retry_period()).await;
        }
    }

    fn retry_period(&self) -> Duration {
        Duration::from_secs((self.duration_seconds / 3).max(1) as u64)
    }

    /// Renews the Lease until a renewal has not succeeded for most of its duration;
    /// returns then, so the caller stops acting before another replica may start.
    pub async fn hold(&self) -> LeaderError {
        let deadline = Duration::from_secs((self.duration_seconds as u64) * 2 / 3);
        let mut last_renewal = tokio::time::Instant::now();
        loop {
            tokio::time::sleep(self.retry_period()).await;
            match self.try_acquire().await {
                Ok(true) => last_renewal = tokio::time::Instant::now(),
                Ok(false) => break,
                Err(error) => debug!(%error, "renewing the Lease failed; retrying"),
            }
            if last_renewal.elapsed() > deadline {
                break;
            }
        }
        LeaderError::Lost {
            namespace: self.namespace.clone(),
            name: self.name.clone(),
            seconds: self.duration_seconds,
        }
    }

    /// Gives the Lease up on shutdown, so a standby takes over without waiting for it to
    /// expire.
    pub async fn release(&self) -> Result<(), LeaderError> {
        let Some(mut lease) = self
            .api
            .get_opt(&self.name)
            .await
            .map_err(self.error("reading"))?
        else {
            return Ok(());
        };
        let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
        if spec.holder_identity.as_deref() != Some(&self.identity) {
            return Ok(());
        }
        spec.holder_identity = None;
        spec.renew_time = None;
        self.api
            .replace(&self.name, &PostParams::default(), &lease)
            .await
            .map(drop)
            .map_err(self.error("releasing"))
    }
}

fn expired(spec: &LeaseSpec, now: Timestamp) -> bool {
    let Some(renewed) = spec.renew_time.as_ref().map(|t| t.0) else {
        return true;
    };
    let seconds = i64::from(spec.lease_duration_seconds.unwrap_or(15));
    renewed
        .checked_add(SignedDuration::from_secs(seconds))
        .map_or(true, |expiry| expiry < now)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lease_expires_after_its_duration() {
        let now = Timestamp::now();
        let renewed = |ago: i64| LeaseSpec {
            renew_time: now
                .checked_sub(SignedDuration::from_secs(ago))
                .ok()
                .map(MicroTime),
            lease_duration_seconds: Some(15),
            ..LeaseSpec::default()
        };
        assert!(!expired(&renewed(5), now));
        assert!(expired(&renewed(16), now));
        assert!(expired(&LeaseSpec::default(), now));
    }
}
