//! A key store in memory, for tests.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;

use super::{KeyStore, KeyStoreError};
use crate::Secret;

/// A key store in memory. Clones share the same values, so a test can keep a handle on
/// what the code under test wrote.
#[derive(Clone, Debug, Default)]
pub struct MemoryKeyStore {
    values: Arc<Mutex<BTreeMap<String, Secret>>>,
    failing_writes: Arc<AtomicU32>,
}

impl MemoryKeyStore {
    /// Makes the next `count` writes fail, to test retries.
    pub fn fail_next_writes(&self, count: u32) {
        self.failing_writes.store(count, Ordering::SeqCst);
    }

    fn values(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Secret>> {
        self.values.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[async_trait]
impl KeyStore for MemoryKeyStore {
    fn describe(&self) -> String {
        "memory".to_string()
    }

    async fn get(&self, key: &str) -> Result<Option<Secret>, KeyStoreError> {
        Ok(self.values().get(key).cloned())
    }

    async fn set(&self, key: &str, value: &Secret) -> Result<(), KeyStoreError> {
        let failing = self
            .failing_writes
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1));
        if failing.is_ok() {
            return Err(KeyStoreError::Backend {
                store: self.describe(),
                operation: "writing",
                key: key.to_string(),
                reason: "injected failure".to_string(),
            });
        }
        self.values().insert(key.to_string(), value.clone());
        Ok(())
    }

    async fn list(&self) -> Result<Vec<String>, KeyStoreError> {
        Ok(self.values().keys().cloned().collect())
    }
}
