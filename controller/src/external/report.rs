//! What one pass of [`super::apply`] did, item by item.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

/// The hash of the input last applied, by item path (`auth[userpass].users[admin]`), for
/// the items with fields Vault never returns (passwords, keys): such an item is written
/// again when its input's hash changes, and not otherwise. A hash is SHA-256 over the
/// item's path and its input (and a key, when given); never the input itself.
///
/// [`super::apply`] takes them in [`super::ApplyOptions::applied_hashes`] and returns the
/// new ones in [`ApplyReport::applied_hashes`]; the controller keeps them in the
/// [`AppliedHashes::ANNOTATION`] of the `Vault` resource, as JSON.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct AppliedHashes(pub BTreeMap<String, String>);

impl AppliedHashes {
    /// The annotation of the `Vault` resource that holds them.
    pub const ANNOTATION: &'static str = "vault.banzaicloud.com/applied-config-hashes";

    /// Reads the annotation's JSON; `None` when it is not JSON of this shape (edited by
    /// hand, say): every item is then compared afresh.
    pub fn from_annotation(text: &str) -> Option<Self> {
        serde_json::from_str(text).ok()
    }

    /// The annotation's JSON.
    pub fn to_annotation(&self) -> String {
        // A map of strings always serialises.
        serde_json::to_string(&self.0).unwrap_or_default()
    }

    /// The hash last applied for `item`.
    pub fn get(&self, item: &str) -> Option<&str> {
        self.0.get(item).map(String::as_str)
    }

    /// How many items have one.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether no item has one.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// What became of one item.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Vault already held it: nothing was written.
    Unchanged,
    /// It was written (created, or changed back to the configuration).
    Written,
    /// Vault held it and the configuration does not name it: removed, since
    /// `purgeUnmanagedConfig` is enabled for its section.
    Removed,
    /// It could not be applied. The message names the item's Vault path and carries
    /// Vault's answer, with any secret value of the configuration masked.
    Failed(String),
    /// Not applied on purpose; the message says why (a section not purged because one of
    /// its items did not parse, an audit device OpenBao has not loaded yet, a startup
    /// secret of a type this version does not write).
    Skipped(String),
}

/// One item of the configuration and what became of it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ItemReport {
    /// The item's path in the configuration, such as `auth[kubernetes].roles[default]`.
    pub item: String,
    /// What became of it.
    pub outcome: Outcome,
    /// Requests that changed Vault, sent for this item (failed ones included).
    pub writes: usize,
    /// For an item with fields Vault does not return (passwords, keys), or one just
    /// created: the hash of the input now applied. Keep it (in an annotation, say) and pass
    /// it back in [`super::ApplyOptions::applied_hashes`]; it is never the value itself.
    pub input_hash: Option<String>,
}

impl ItemReport {
    /// Whether the item failed.
    pub fn failed(&self) -> bool {
        matches!(self.outcome, Outcome::Failed(_))
    }
}

/// What one pass did: every item in the order applied, and the writes sent.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ApplyReport {
    /// Every item, in the order applied.
    pub items: Vec<ItemReport>,
}

impl ApplyReport {
    /// Requests that changed Vault, all items together: 0 when Vault already held the
    /// configuration.
    pub fn writes(&self) -> usize {
        self.items.iter().map(|item| item.writes).sum()
    }

    /// The item at `path`, such as `policies[allow_secrets]`.
    pub fn item(&self, path: &str) -> Option<&ItemReport> {
        self.items.iter().find(|item| item.item == path)
    }

    /// The items that failed.
    pub fn failures(&self) -> impl Iterator<Item = &ItemReport> {
        self.items.iter().filter(|item| item.failed())
    }

    /// The items not applied on purpose.
    pub fn skipped(&self) -> impl Iterator<Item = &ItemReport> {
        self.items
            .iter()
            .filter(|item| matches!(item.outcome, Outcome::Skipped(_)))
    }

    /// Whether every item was applied or already held (skipped ones aside).
    pub fn succeeded(&self) -> bool {
        self.failures().next().is_none()
    }

    /// The input hash of each item that has one, by item path: what to keep for the next
    /// pass. Failed items have none, so they are written again next time.
    pub fn applied_hashes(&self) -> AppliedHashes {
        AppliedHashes(
            self.items
                .iter()
                .filter_map(|item| Some((item.item.clone(), item.input_hash.clone()?)))
                .collect(),
        )
    }

    pub(crate) fn push(&mut self, item: ItemReport) {
        self.items.push(item);
    }
}

impl fmt::Display for ApplyReport {
    /// One line: counts, then each failure with its message.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let count = |wanted: fn(&Outcome) -> bool| {
            self.items
                .iter()
                .filter(|item| wanted(&item.outcome))
                .count()
        };
        write!(
            f,
            "{} items: {} written, {} removed, {} unchanged, {} failed, {} skipped ({} writes)",
            self.items.len(),
            count(|o| matches!(o, Outcome::Written)),
            count(|o| matches!(o, Outcome::Removed)),
            count(|o| matches!(o, Outcome::Unchanged)),
            count(|o| matches!(o, Outcome::Failed(_))),
            count(|o| matches!(o, Outcome::Skipped(_))),
            self.writes(),
        )?;
        for item in self.failures() {
            if let Outcome::Failed(message) = &item.outcome {
                write!(f, "; {}: {message}", item.item)?;
            }
        }
        Ok(())
    }
}
