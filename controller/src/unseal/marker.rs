//! The init-intent marker: written before `sys/init`, completed once every key is stored.

use serde::{Deserialize, Serialize};

use crate::Secret;
use crate::keystore::{self, ROOT_TOKEN};

/// Whether the initialisation the marker stands for has stored all its keys.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MarkerState {
    /// `sys/init` may have been called; its keys may not all be stored.
    Pending,
    /// Every key was stored and read back.
    Complete,
}

/// What the marker records: enough to know which keys a finished initialisation stores.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InitMarker {
    /// Pending or complete.
    pub state: MarkerState,
    /// Key shares asked for.
    pub shares: u32,
    /// Recovery shares rather than unseal shares.
    pub recovery: bool,
    /// Whether the root token is stored.
    pub root_token: bool,
}

impl InitMarker {
    /// The marker as stored (JSON; it holds no secret).
    pub fn to_secret(&self) -> Secret {
        Secret::new(serde_json::to_string(self).unwrap_or_default())
    }

    /// Reads a stored marker.
    pub fn parse(value: &Secret) -> Option<Self> {
        serde_json::from_str(value.expose()).ok()
    }

    /// Every key an initialisation with this marker stores.
    pub fn keys(&self) -> Vec<String> {
        let mut keys: Vec<String> = (0..self.shares)
            .map(|i| {
                if self.recovery {
                    keystore::recovery_key(i)
                } else {
                    keystore::unseal_key(i)
                }
            })
            .collect();
        if self.root_token {
            keys.push(ROOT_TOKEN.to_string());
        }
        keys
    }

    /// The keys of [`Self::keys`] that are not among `names`.
    pub fn missing(&self, names: &[String]) -> Vec<String> {
        self.keys()
            .into_iter()
            .filter(|key| !names.contains(key))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marker_round_trips_and_names_its_keys() {
        let marker = InitMarker {
            state: MarkerState::Pending,
            shares: 2,
            recovery: false,
            root_token: true,
        };
        assert_eq!(InitMarker::parse(&marker.to_secret()), Some(marker));
        assert_eq!(
            marker.keys(),
            ["vault-unseal-0", "vault-unseal-1", "vault-root"]
        );
        let stored = vec!["vault-unseal-0".to_string(), "vault-test".to_string()];
        assert_eq!(marker.missing(&stored), ["vault-unseal-1", "vault-root"]);
        assert_eq!(InitMarker::parse(&Secret::from("junk")), None);
    }
}
