//! `purgeUnmanagedConfig`: what Vault holds and the configuration does not name is
//! removed, section by section, unless the section is excluded. Beyond Bank-Vaults, the
//! roles, users, groups, mappings and aws cross-account roles under a configured auth
//! method go too when auth is purged, and the roles under a configured secrets engine when
//! secrets are: only under an endpoint whose items the configuration lists, so a method or
//! engine configured without its roles keeps the roles others made.
//!
//! Never removed: the `root` and `default` policies, the `token/` auth method (and its
//! roles), the `sys/`, `identity/` and `cubbyhole/` mounts, and the controller's own
//! login: its Kubernetes auth method, role and policy. A section with an item that
//! did not parse is not purged at all: that item may name what would be removed. For the
//! same reason an endpoint with a template that did not expand keeps everything.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use super::config::{AuthMethod, Entry, ExternalConfig, SecretsEngine};
use super::identity::held_aliases;
use super::io::ItemError;
use super::{Pass, name_of};
use crate::unseal::{CONTROLLER_AUTH_PATH, CONTROLLER_ROLE};

/// Policies Vault makes itself.
const BUILT_IN_POLICIES: &[&str] = &["root", "default"];
/// Secrets engines Vault mounts itself; they cannot be removed.
const BUILT_IN_MOUNTS: &[&str] = &["sys", "identity", "cubbyhole"];

/// Where purged items are reported: `purgeUnmanagedConfig.<section>[<name>]`.
const PREFIX: &str = "purgeUnmanagedConfig";

/// Removes what the configuration does not name, for every section purged.
pub(super) async fn apply(
    pass: &mut Pass<'_>,
    config: &ExternalConfig,
    accessors: &Result<BTreeMap<String, String>, String>,
) {
    let purge = &config.purge;
    // Aliases first: removing a group or an auth method takes its aliases with it.
    if purge.purges("group-aliases") && parsed_whole(pass, "group-aliases", &config.group_aliases) {
        group_aliases(pass, config, accessors).await;
    }
    if purge.purges("groups") && parsed_whole(pass, "groups", &config.groups) {
        let named: BTreeSet<String> = parsed(&config.groups).map(|g| g.name.clone()).collect();
        by_listing(pass, "groups", "identity/group/name", &named, |name| {
            format!("identity/group/name/{name}")
        })
        .await;
    }
    if purge.purges("auth") && parsed_whole(pass, "auth", &config.auth) {
        auth(pass, &config.auth).await;
    }
    if purge.purges("secrets") && parsed_whole(pass, "secrets", &config.secrets) {
        let named: BTreeSet<String> = parsed(&config.secrets).map(|e| e.path.clone()).collect();
        mounts(pass, "secrets", "sys/mounts", &named, BUILT_IN_MOUNTS).await;
        engine_roles(pass, &config.secrets).await;
    }
    if purge.purges("policies") && parsed_whole(pass, "policies", &config.policies) {
        // Vault keeps policy names in lower case.
        let named: BTreeSet<String> = parsed(&config.policies)
            .map(|p| p.name.to_lowercase())
            .chain(BUILT_IN_POLICIES.iter().map(|p| p.to_string()))
            .chain([CONTROLLER_ROLE.to_string()])
            .collect();
        by_listing(pass, "policies", "sys/policies/acl", &named, |name| {
            format!("sys/policies/acl/{name}")
        })
        .await;
    }
    // After the mounts, which may run them.
    if purge.purges("plugins") && parsed_whole(pass, "plugins", &config.plugins) {
        plugins(pass, config).await;
    }
    if purge.purges("audit") && parsed_whole(pass, "audit", &config.audit) {
        let named: BTreeSet<String> = parsed(&config.audit).map(|d| d.path.clone()).collect();
        mounts(pass, "audit", "sys/audit", &named, &[]).await;
    }
}

/// Plugins registered by hand (not built in) that no `plugins` item names.
async fn plugins(pass: &mut Pass<'_>, config: &ExternalConfig) {
    let section = format!("{PREFIX}.plugins");
    let listing = match pass.io.get("sys/plugins/catalog").await {
        Ok(listing) => listing,
        Err(error) => return pass.fail(&section, error),
    };
    let named: BTreeSet<(&str, &str)> = parsed(&config.plugins)
        .map(|p| (p.kind.as_str(), p.plugin_name.as_str()))
        .collect();
    let detailed = listing
        .as_ref()
        .and_then(|answer| answer.pointer("/data/detailed"))
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    for plugin in detailed {
        let text = |key: &str| plugin.get(key).and_then(Value::as_str).unwrap_or_default();
        let builtin = plugin
            .get("builtin")
            .and_then(Value::as_bool)
            .unwrap_or(true);
        let (kind, name, version) = (text("type"), text("name"), text("version"));
        if builtin || named.contains(&(kind, name)) {
            continue;
        }
        let mut path = format!("sys/plugins/catalog/{kind}/{name}");
        if !version.is_empty() {
            path.push_str(&format!("?version={version}"));
        }
        pass.remove(&format!("{section}[{kind}/{name}]"), &path)
            .await;
    }
}

/// The items of a section that parsed.
fn parsed<T>(entries: &[Entry<T>]) -> impl Iterator<Item = &T> {
    entries
        .iter()
        .filter_map(|entry| entry.parsed.as_ref().ok())
}

/// Whether every item of the section parsed; reports the section skipped otherwise.
fn parsed_whole<T>(pass: &mut Pass<'_>, section: &str, entries: &[Entry<T>]) -> bool {
    let Some(broken) = entries.iter().find(|entry| entry.parsed.is_err()) else {
        return true;
    };
    let reason = format!(
        "not purged: {} did not parse, and may name what would be removed",
        broken.item
    );
    pass.skip(&format!("{PREFIX}.{section}"), reason);
    false
}

/// Removes each listed name at `list_path` not in `named` (compared in lower case).
async fn by_listing(
    pass: &mut Pass<'_>,
    section: &str,
    list_path: &str,
    named: &BTreeSet<String>,
    path: impl Fn(&str) -> String,
) {
    let names = match pass.io.list_keys(list_path).await {
        Ok(names) => names,
        Err(error) => return pass.fail(&format!("{PREFIX}.{section}"), error),
    };
    let named: BTreeSet<String> = named.iter().map(|name| name.to_lowercase()).collect();
    for name in names {
        if !named.contains(&name.to_lowercase()) {
            pass.remove(&format!("{PREFIX}.{section}[{name}]"), &path(&name))
                .await;
        }
    }
}

/// Removes the mounts of `sys/auth` or `sys/mounts` that are not in `named` or `kept`.
async fn mounts(
    pass: &mut Pass<'_>,
    section: &str,
    list_path: &str,
    named: &BTreeSet<String>,
    kept: &[&str],
) {
    let held = match pass.io.get(list_path).await {
        Ok(answer) => super::auth::mounts_of(answer.as_ref()),
        Err(error) => return pass.fail(&format!("{PREFIX}.{section}"), error),
    };
    for path in held.keys() {
        let path = path.trim_end_matches('/');
        if named.contains(path) || kept.contains(&path) {
            continue;
        }
        pass.remove(
            &format!("{PREFIX}.{section}[{path}]"),
            &format!("{list_path}/{path}"),
        )
        .await;
    }
}

/// Auth methods not named, then the sub-items named methods no longer have.
async fn auth(pass: &mut Pass<'_>, methods: &[Entry<AuthMethod>]) {
    let named: BTreeSet<String> = parsed(methods).map(|m| m.path.clone()).collect();
    mounts(
        pass,
        "auth",
        "sys/auth",
        &named,
        &["token", CONTROLLER_AUTH_PATH],
    )
    .await;

    for entry in methods {
        let Ok(method) = &entry.parsed else { continue };
        if method.kind == "token" {
            continue;
        }
        for (endpoint, names) in sub_items(method) {
            let section = format!("{}.{endpoint}", entry.item);
            let names = names_if_expanded(entry, endpoint, names);
            let path = format!("auth/{}/{}", method.path, endpoint_path(method, endpoint));
            let controllers = method.path == CONTROLLER_AUTH_PATH && endpoint == "roles";
            let kept = controllers.then_some(CONTROLLER_ROLE);
            unnamed_under(pass, &section, &path, names, kept).await;
        }
    }
}

/// The endpoints of a secrets engine type that hold roles and nothing else. Only these
/// are purged: the same path under a kv engine would hold someone's secrets.
fn role_endpoints(kind: &str) -> &'static [&'static str] {
    match kind {
        "database" => &["roles", "static-roles"],
        "pki" | "ssh" | "aws" | "azure" | "kubernetes" | "consul" => &["roles"],
        _ => &[],
    }
}

/// The roles under each configured secrets engine that its `configuration` lists roles for
/// and no longer names.
async fn engine_roles(pass: &mut Pass<'_>, engines: &[Entry<SecretsEngine>]) {
    for entry in engines {
        let Ok(engine) = &entry.parsed else { continue };
        for endpoint in role_endpoints(&engine.kind) {
            let names = match engine.configuration.get(*endpoint) {
                None | Some(Value::Null) => continue,
                Some(Value::Array(items)) => items
                    .iter()
                    .map(|item| name_of(item.get("name")).map(|name| name.to_lowercase()))
                    .collect(),
                Some(_) => None,
            };
            let place = format!("configuration.{endpoint}");
            let names = names_if_expanded(entry, &place, names);
            let section = format!("{}.{endpoint}", entry.item);
            let path = format!("{}/{endpoint}", engine.path);
            unnamed_under(pass, &section, &path, names, None).await;
        }
    }
}

/// `names`, unless a template under `place` of the item did not expand: the name it would
/// give is unknown, so nothing there can be told apart.
fn names_if_expanded<T>(
    entry: &Entry<T>,
    place: &str,
    names: Option<BTreeSet<String>>,
) -> Option<BTreeSet<String>> {
    entry.deferred_for(place).is_none().then_some(names?)
}

/// Removes each item listed at `path` that is not in `names` (lower case) and is not
/// `kept`; with `names` unknown (an item has no name, or a template did not expand),
/// reports `section` not purged.
async fn unnamed_under(
    pass: &mut Pass<'_>,
    section: &str,
    path: &str,
    names: Option<BTreeSet<String>>,
    kept: Option<&str>,
) {
    let Some(names) = names else {
        let reason = format!("not purged: an item of {section} has no name it can be told by");
        return pass.skip(&format!("{PREFIX}.{section}"), reason);
    };
    let held = match pass.io.list_keys(path).await {
        Ok(held) => held,
        // Mounts of this type have no such endpoint.
        Err(error) if matches!(error.status(), Some(400 | 405)) => return,
        Err(error) => return pass.fail(&format!("{PREFIX}.{section}"), error),
    };
    for name in held {
        if kept == Some(name.as_str()) || names.contains(&name.to_lowercase()) {
            continue;
        }
        let item = format!("{PREFIX}.{section}[{name}]");
        pass.remove(&item, &format!("{path}/{name}")).await;
    }
}

/// The endpoints under an auth method whose items the configuration lists, each with the
/// names it gives (in lower case: Vault lower-cases most of them), or `None` when an item
/// has no name, so nothing can be told apart. An endpoint left out (or empty) is not
/// listed: the method's roles or users may then be managed elsewhere.
fn sub_items(method: &AuthMethod) -> Vec<(&'static str, Option<BTreeSet<String>>)> {
    let lower = |names: Vec<Option<String>>| -> Option<BTreeSet<String>> {
        names
            .into_iter()
            .map(|n| n.map(|n| n.to_lowercase()))
            .collect()
    };
    let keys = |map: &serde_json::Map<String, Value>| -> Option<BTreeSet<String>> {
        Some(map.keys().map(|k| k.to_lowercase()).collect())
    };
    let mut endpoints = Vec::new();

    if !method.roles.is_empty() {
        let names = method
            .roles
            .iter()
            .map(|r| name_of(r.get("name")))
            .collect();
        endpoints.push(("roles", lower(names)));
    }
    match &method.users {
        None | Some(Value::Null) => {}
        Some(Value::Array(users)) => {
            let names = users.iter().map(|u| name_of(u.get("username"))).collect();
            endpoints.push(("users", lower(names)));
        }
        Some(Value::Object(users)) => endpoints.push(("users", keys(users))),
        Some(_) => endpoints.push(("users", None)),
    }
    if !method.groups.is_empty() {
        endpoints.push(("groups", keys(&method.groups)));
    }
    if method.kind == "aws" && !method.crossaccountrole.is_empty() {
        let accounts = method
            .crossaccountrole
            .iter()
            .map(|role| name_of(role.get("sts_account")))
            .collect();
        endpoints.push(("crossaccountrole", lower(accounts)));
    }
    if method.kind == "github" {
        for (endpoint, key) in [("map.teams", "teams"), ("map.users", "users")] {
            match method.map.get(key) {
                None | Some(Value::Null) => {}
                Some(Value::Object(map)) => endpoints.push((endpoint, keys(map))),
                Some(_) => endpoints.push((endpoint, None)),
            }
        }
    }
    endpoints
}

/// Where an endpoint of [`sub_items`] is under the mount.
fn endpoint_path(method: &AuthMethod, endpoint: &str) -> &'static str {
    match (method.kind.as_str(), endpoint) {
        ("cert", "roles") => "certs",
        (_, "roles") => "role",
        (_, "users") => "users",
        (_, "groups") => "groups",
        (_, "map.teams") => "map/teams",
        (_, "crossaccountrole") => "config/sts",
        _ => "map/users",
    }
}

/// Group aliases that no `group-aliases` item names (by name and auth mount).
async fn group_aliases(
    pass: &mut Pass<'_>,
    config: &ExternalConfig,
    accessors: &Result<BTreeMap<String, String>, String>,
) {
    let section = format!("{PREFIX}.group-aliases");
    let accessors = match accessors {
        Ok(accessors) => accessors,
        Err(error) => return pass.fail(&section, ItemError::Prerequisite(error.clone())),
    };
    let held = match held_aliases(pass).await {
        Ok(held) => held,
        Err(error) => return pass.fail(&section, error),
    };
    let named: BTreeSet<(String, &String)> = parsed(&config.group_aliases)
        .filter_map(|alias| Some((alias.name.clone(), accessors.get(&alias.mountpath)?)))
        .collect();
    for alias in held {
        if !named.contains(&(alias.name.clone(), &alias.mount_accessor)) {
            let item = format!("{section}[{}]", alias.name);
            let path = format!("identity/group-alias/id/{}", alias.id);
            pass.remove(&item, &path).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::external::config::tests::method;

    fn shown(method: &AuthMethod) -> Vec<String> {
        sub_items(method)
            .into_iter()
            .map(|(endpoint, names)| format!("{} {names:?}", endpoint_path(method, endpoint)))
            .collect()
    }

    #[test]
    fn only_the_endpoints_the_configuration_lists_are_purged() {
        let kubernetes = method(json!({"type": "kubernetes", "roles": [{"name": "Default"}]}));
        assert_eq!(shown(&kubernetes), [r#"role Some({"default"})"#]);
        let bare = method(json!({"type": "kubernetes"}));
        assert!(shown(&bare).is_empty(), "roles made elsewhere stay");
        let userpass = method(json!({"type": "userpass", "users": [{"username": "admin"}]}));
        assert_eq!(shown(&userpass), [r#"users Some({"admin"})"#]);
        let ldap = method(json!({"type": "ldap", "groups": {"dev": {}}}));
        assert_eq!(shown(&ldap), [r#"groups Some({"dev"})"#]);
        let github = method(json!({"type": "github", "map": {"teams": {"dev": "p"}}}));
        assert_eq!(shown(&github), [r#"map/teams Some({"dev"})"#]);
        let aws = method(json!({"type": "aws", "crossaccountrole": [{"sts_account": 123}]}));
        assert_eq!(shown(&aws), [r#"config/sts Some({"123"})"#]);
        let cert = method(json!({"type": "cert", "roles": [{"policies": "x"}]}));
        assert_eq!(
            shown(&cert),
            ["certs None"],
            "a role without a name stops the purge"
        );
    }
}
