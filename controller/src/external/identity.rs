//! `groups` and `group-aliases`: identity groups, written by name, and the aliases that
//! tie external groups to a group of an auth method (an LDAP group, a GitHub team).

use std::collections::BTreeMap;

use serde_json::{Value, json};
use tracing::info;

use super::config::{Entry, Group, GroupAlias};
use super::io::ItemError;
use super::{Applied, Desired, Pass};

/// The group `identity/group/name/<name>` holds: written there, it is created or updated.
pub(super) fn group(item: &str, group: &Group) -> Desired {
    Desired {
        item: item.to_string(),
        place: String::new(),
        api_path: format!("identity/group/name/{}", group.name),
        body: group.fields.clone(),
    }
}

/// One group alias as Vault holds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct HeldAlias {
    pub id: String,
    pub name: String,
    pub mount_accessor: String,
    pub canonical_id: String,
}

/// Every group alias Vault holds (`LIST identity/group-alias/id`).
pub(super) async fn held_aliases(pass: &Pass<'_>) -> Result<Vec<HeldAlias>, ItemError> {
    let listing = pass.io.list("identity/group-alias/id").await?;
    let Some(Value::Object(info)) = listing.get("key_info") else {
        return Ok(Vec::new());
    };
    let text = |fields: &Value, key: &str| {
        fields
            .get(key)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    Ok(info
        .iter()
        .map(|(id, fields)| HeldAlias {
            id: id.clone(),
            name: text(fields, "name"),
            mount_accessor: text(fields, "mount_accessor"),
            canonical_id: text(fields, "canonical_id"),
        })
        .collect())
}

/// Applies every group alias of the configuration; `accessors` are the auth mounts'.
pub(super) async fn apply_aliases(
    pass: &mut Pass<'_>,
    aliases: &[Entry<GroupAlias>],
    accessors: &Result<BTreeMap<String, String>, String>,
) {
    if aliases.is_empty() {
        return;
    }
    let held = held_aliases(pass).await;
    for entry in aliases {
        let before = pass.io.writes();
        let result = match (&entry.parsed, &held, accessors) {
            (Err(problem), _, _) => Err(problem.clone().into()),
            (Ok(_), Err(error), _) => Err(ItemError::Prerequisite(format!(
                "listing group aliases: {error}"
            ))),
            (Ok(_), _, Err(error)) => Err(ItemError::Prerequisite(error.clone())),
            (Ok(alias), Ok(held), Ok(accessors)) => {
                ensure_alias(pass, &entry.item, alias, held, accessors).await
            }
        };
        pass.record(&entry.item, before, result);
    }
}

async fn ensure_alias(
    pass: &Pass<'_>,
    item: &str,
    alias: &GroupAlias,
    held: &[HeldAlias],
    accessors: &BTreeMap<String, String>,
) -> Result<Applied, ItemError> {
    let accessor = accessors
        .get(&alias.mountpath)
        .ok_or_else(|| ItemError::NoAuthMount {
            path: alias.mountpath.clone(),
        })?;
    let group = pass
        .io
        .get(&format!("identity/group/name/{}", alias.group))
        .await?;
    let group = group.as_ref().and_then(|answer| answer.get("data"));
    let Some(group_id) = group.and_then(|g| g.get("id")).and_then(Value::as_str) else {
        return Err(ItemError::NoGroup {
            group: alias.group.clone(),
        });
    };
    let body = json!({
        "name": alias.name,
        "mount_accessor": accessor,
        "canonical_id": group_id,
    });

    // The alias is known by its name and mount; an external group has one alias at most,
    // so one the group has under another name is renamed rather than added to.
    let same_alias = held
        .iter()
        .find(|h| h.name == alias.name && &h.mount_accessor == accessor);
    let groups_alias = group
        .and_then(|g| g.pointer("/alias/id"))
        .and_then(Value::as_str)
        .filter(|id| !id.is_empty());
    let path = match (same_alias, groups_alias) {
        (Some(same), _) if same.canonical_id == group_id => {
            return Ok(Applied::unchanged(None));
        }
        (Some(same), _) => format!("identity/group-alias/id/{}", same.id),
        (None, Some(id)) => format!("identity/group-alias/id/{id}"),
        (None, None) => "identity/group-alias".to_string(),
    };
    info!(pod = %pass.io.pod(), item, "writing group alias");
    pass.io.write(&path, &body).await?;
    Ok(Applied::written(None))
}
