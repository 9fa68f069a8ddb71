//! `auth`: enable and tune each method, then write its configuration, roles, users,
//! groups and mappings.

use std::collections::BTreeMap;

use serde_json::{Value, json};
use tracing::info;

use super::config::{AuthMethod, Entry, Fields, check_path};
use super::io::{ItemError, VaultIo};
use super::{Applied, ApplyOptions, Desired, Pass, drift, name_of, without};

/// Applies every auth method of the configuration.
pub(super) async fn apply(pass: &mut Pass<'_>, methods: &[Entry<AuthMethod>]) {
    if methods.is_empty() {
        return;
    }
    let mounts = pass
        .io
        .get("sys/auth")
        .await
        .map(|answer| mounts_of(answer.as_ref()));
    for entry in methods {
        let method = match (&entry.parsed, &mounts) {
            (Err(problem), _) => {
                pass.fail(&entry.item, problem.clone().into());
                continue;
            }
            (Ok(_), Err(error)) => {
                let error = ItemError::Prerequisite(format!("listing auth methods: {error}"));
                pass.fail(&entry.item, error);
                continue;
            }
            (Ok(method), Ok(_)) => method,
        };
        let held = mounts
            .as_ref()
            .ok()
            .and_then(|mounts| mounts.get(&format!("{}/", method.path)));

        let before = pass.io.writes();
        let mounted = ensure_mount(pass, &entry.item, method, held).await;
        let mount_failed = mounted.is_err();
        pass.record(&entry.item, before, mounted);

        for item in items(&entry.item, method, pass.options) {
            match item {
                Ok(desired) if mount_failed => {
                    let dependency = entry.item.clone();
                    pass.fail(&desired.item, ItemError::Dependency { dependency });
                }
                Ok(desired) => match entry.deferred_for(&desired.place) {
                    Some(problem) => pass.fail(&desired.item, problem.clone().into()),
                    None => pass.ensure_and_record(&desired).await,
                },
                Err((item, error)) => pass.fail(&item, error),
            }
        }
    }
}

/// The mounts of a `sys/auth` or `sys/mounts` answer, by path with its trailing `/`.
pub(super) fn mounts_of(answer: Option<&Value>) -> Fields {
    match answer.and_then(|answer| answer.get("data")) {
        Some(Value::Object(mounts)) => mounts.clone(),
        _ => Fields::new(),
    }
}

/// The accessor of each auth mount, by path without its trailing `/`.
pub(super) async fn accessors(io: &VaultIo<'_>) -> Result<BTreeMap<String, String>, String> {
    let answer = io
        .get("sys/auth")
        .await
        .map_err(|error| format!("listing auth methods: {error}"))?;
    Ok(mounts_of(answer.as_ref())
        .iter()
        .filter_map(|(path, mount)| {
            let accessor = mount.get("accessor")?.as_str()?;
            Some((path.trim_end_matches('/').to_string(), accessor.to_string()))
        })
        .collect())
}

/// Enables the method when it is not there, tunes it when its settings differ.
async fn ensure_mount(
    pass: &Pass<'_>,
    item: &str,
    method: &AuthMethod,
    held: Option<&Value>,
) -> Result<Applied, ItemError> {
    let input = json!({
        "type": method.kind,
        "description": method.description,
        "options": method.options,
        "local": method.local,
        "seal_wrap": method.seal_wrap,
    });
    let (hash, previous) = pass.hashes(item, &input);

    let Some(held) = held else {
        // Bank-Vaults names every method `<type> backend`; a description given wins.
        let description = method
            .description
            .clone()
            .unwrap_or_else(|| format!("{} backend", method.kind));
        let mut body = json!({
            "type": method.kind,
            "description": description,
            "config": method.options,
        });
        for (key, value) in [("local", method.local), ("seal_wrap", method.seal_wrap)] {
            if let Some(value) = value {
                body[key] = json!(value);
            }
        }
        info!(pod = %pass.io.pod(), item, "enabling auth method");
        pass.io
            .write(&format!("sys/auth/{}", method.path), &body)
            .await?;
        return Ok(Applied::written(Some(hash)));
    };

    check_mount(
        &method.path,
        &method.kind,
        held,
        method.local,
        method.seal_wrap,
    )?;
    let mut wanted = method.options.clone();
    if let Some(description) = &method.description {
        wanted.insert("description".to_string(), json!(description));
    }
    let mut actual = match held.get("config") {
        Some(Value::Object(config)) => config.clone(),
        _ => Fields::new(),
    };
    if let Some(description) = held.get("description") {
        actual.insert("description".to_string(), description.clone());
    }
    let drift = drift(&wanted, &actual);
    let keep_hash = (!drift.write_only.is_empty()).then(|| hash.clone());
    if !drift.needs_write(previous, &hash) {
        return Ok(Applied::unchanged(keep_hash));
    }
    info!(pod = %pass.io.pod(), item, differs = ?drift.differs, "tuning auth method");
    pass.io
        .write(
            &format!("sys/auth/{}/tune", method.path),
            &Value::Object(wanted),
        )
        .await?;
    Ok(Applied::written(keep_hash))
}

/// Refuses a mount of another type, or one whose fixed settings differ.
pub(super) fn check_mount(
    path: &str,
    kind: &str,
    held: &Value,
    local: Option<bool>,
    seal_wrap: Option<bool>,
) -> Result<(), ItemError> {
    let held_kind = held.get("type").and_then(Value::as_str).unwrap_or_default();
    if held_kind != kind {
        return Err(ItemError::TypeMismatch {
            path: path.to_string(),
            actual: held_kind.to_string(),
            desired: kind.to_string(),
        });
    }
    for (setting, wanted) in [("local", local), ("seal_wrap", seal_wrap)] {
        let held = held.get(setting).and_then(Value::as_bool).unwrap_or(false);
        if wanted.is_some_and(|wanted| wanted != held) {
            return Err(ItemError::Immutable {
                path: path.to_string(),
                setting,
                held,
            });
        }
    }
    Ok(())
}

/// A sub-item that could not be made, with its path in the configuration.
type Refused = (String, ItemError);

/// Everything written under an auth method, in order: its configuration, then roles,
/// users, groups, mappings and cross-account roles.
pub(super) fn items(
    item: &str,
    method: &AuthMethod,
    options: &ApplyOptions,
) -> Vec<Result<Desired, Refused>> {
    let mount = format!("auth/{}", method.path);
    let mut items = Vec::new();

    if let Some(config) = config_item(item, method, options) {
        items.push(config);
    }

    // The token method keeps roles under `roles/`, cert under `certs/`.
    let role_endpoint = match method.kind.as_str() {
        "token" => "roles",
        "cert" => "certs",
        _ => "role",
    };
    for (index, role) in method.roles.iter().enumerate() {
        items.push(named(
            (&format!("{item}.roles"), &format!("roles[{index}]")),
            index,
            role,
            "name",
            |name| format!("{mount}/{role_endpoint}/{name}"),
        ));
    }

    match &method.users {
        // userpass: a list of users, each with `username`.
        Some(Value::Array(users)) => {
            for (index, user) in users.iter().enumerate() {
                let at = format!("{item}.users");
                let place = format!("users[{index}]");
                match user {
                    Value::Object(user) => {
                        items.push(named((&at, &place), index, user, "username", |n| {
                            format!("{mount}/users/{n}")
                        }))
                    }
                    _ => items.push(Err(shape(format!("{at}[{index}]"), "a map"))),
                }
            }
        }
        // ldap, okta: a map of user name to fields.
        Some(Value::Object(users)) => {
            items.extend(mapped((&format!("{item}.users"), "users"), users, |name| {
                format!("{mount}/users/{name}")
            }));
        }
        Some(Value::Null) | None => {}
        Some(_) => items.push(Err(shape(format!("{item}.users"), "a list or a map"))),
    }

    let groups = (format!("{item}.groups"), "groups");
    items.extend(mapped((&groups.0, groups.1), &method.groups, |name| {
        format!("{mount}/groups/{name}")
    }));

    // github: `map.teams` and `map.users`, each a map of name to policies.
    for (kind, mapping) in &method.map {
        let at = format!("{item}.map.{kind}");
        let Value::Object(mapping) = mapping else {
            items.push(Err(shape(at, "a map of names to policies")));
            continue;
        };
        for (name, policies) in mapping {
            let path = format!("{mount}/map/{kind}/{name}");
            let item = format!("{at}[{name}]");
            let desired = check_path("name", name)
                .and_then(|()| check_path("map", kind))
                .map(|()| Desired {
                    item: item.clone(),
                    place: format!("map.{kind}.{name}"),
                    api_path: path,
                    body: Fields::from_iter([("value".to_string(), policies.clone())]),
                })
                .map_err(|problem| (item, problem.into()));
            items.push(desired);
        }
    }

    for (index, role) in method.crossaccountrole.iter().enumerate() {
        items.push(named(
            (
                &format!("{item}.crossaccountrole"),
                &format!("crossaccountrole[{index}]"),
            ),
            index,
            role,
            "sts_account",
            |account| format!("{mount}/config/sts/{account}"),
        ));
    }
    items
}

/// The method's configuration item, if it has one. Kubernetes always has one: the
/// controller's environment gives the API server's address when the config does not.
fn config_item(
    item: &str,
    method: &AuthMethod,
    options: &ApplyOptions,
) -> Option<Result<Desired, Refused>> {
    let item = format!("{item}.config");
    // aws keeps its client settings under `config/client`.
    let endpoint = match method.kind.as_str() {
        "aws" => "config/client",
        _ => "config",
    };
    let api_path = format!("auth/{}/{endpoint}", method.path);
    if method.kind != "kubernetes" {
        let body = method.config.clone()?;
        return Some(Ok(Desired {
            item,
            place: "config".to_string(),
            api_path,
            body,
        }));
    }

    let mut body = method.config.clone().unwrap_or_default();
    if !body.contains_key("kubernetes_host") {
        let host = options.variable("KUBERNETES_SERVICE_HOST");
        let port = options.variable("KUBERNETES_SERVICE_PORT");
        let (Some(host), Some(port)) = (host, port) else {
            return Some(Err((item, ItemError::NoKubernetesHost)));
        };
        let host = if host.contains(':') {
            format!("[{host}]")
        } else {
            host
        };
        body.insert(
            "kubernetes_host".to_string(),
            json!(format!("https://{host}:{port}")),
        );
    }
    if !body.contains_key("kubernetes_ca_cert")
        && let Some(ca) = &options.kubernetes_ca_cert
    {
        body.insert("kubernetes_ca_cert".to_string(), json!(ca));
    }
    Some(Ok(Desired {
        item,
        place: "config".to_string(),
        api_path,
        body,
    }))
}

/// An item of a list, named by its `key` (which goes into the path, not the body); `at`
/// is the list's path in the report and the item's place in its top-level item.
fn named(
    (at, place): (&str, &str),
    index: usize,
    fields: &Fields,
    key: &'static str,
    path: impl Fn(&str) -> String,
) -> Result<Desired, Refused> {
    let Some(name) = name_of(fields.get(key)) else {
        return Err((format!("{at}[{index}]"), ItemError::Missing { key }));
    };
    let item = format!("{at}[{name}]");
    if let Err(problem) = check_path(key, &name) {
        return Err((item, problem.into()));
    }
    Ok(Desired {
        item,
        place: place.to_string(),
        api_path: path(&name),
        body: without(fields, &[key]),
    })
}

/// The items of a map of name to fields; `at` is the map's path in the report and its
/// place in its top-level item.
fn mapped(
    (at, place): (&str, &str),
    entries: &Fields,
    path: impl Fn(&str) -> String,
) -> Vec<Result<Desired, Refused>> {
    entries
        .iter()
        .map(|(name, fields)| {
            let item = format!("{at}[{name}]");
            check_path("name", name).map_err(|problem| (item.clone(), problem.into()))?;
            match fields {
                Value::Object(fields) => Ok(Desired {
                    item,
                    place: format!("{place}.{name}"),
                    api_path: path(name),
                    body: fields.clone(),
                }),
                _ => Err(shape(item, "a map")),
            }
        })
        .collect()
}

fn shape(item: String, expected: &'static str) -> Refused {
    (item, ItemError::Shape { expected })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::external::config::tests::method;

    fn paths(items: &[Result<Desired, Refused>]) -> Vec<String> {
        items
            .iter()
            .map(|item| match item {
                Ok(desired) => format!("{} -> {}", desired.item, desired.api_path),
                Err((item, error)) => format!("{item}: {error}"),
            })
            .collect()
    }

    fn options() -> ApplyOptions {
        ApplyOptions {
            environment: Some(BTreeMap::from([
                (
                    "KUBERNETES_SERVICE_HOST".to_string(),
                    "10.96.0.1".to_string(),
                ),
                ("KUBERNETES_SERVICE_PORT".to_string(), "443".to_string()),
            ])),
            kubernetes_ca_cert: Some("PEM".to_string()),
            ..ApplyOptions::default()
        }
    }

    #[test]
    fn kubernetes_config_defaults_to_the_api_server_of_the_environment() {
        let kubernetes = method(json!({"type": "kubernetes", "roles": [
            {"name": "default", "policies": "allow_secrets", "ttl": "1h"},
            {"policies": "x"},
        ]}));
        let written = items("auth[kubernetes]", &kubernetes, &options());
        assert_eq!(
            paths(&written),
            [
                "auth[kubernetes].config -> auth/kubernetes/config",
                "auth[kubernetes].roles[default] -> auth/kubernetes/role/default",
                "auth[kubernetes].roles[1]: missing `name`",
            ]
        );
        let Some(Ok(config)) = written.first() else {
            panic!("{:?}", paths(&written));
        };
        assert_eq!(config.body["kubernetes_host"], "https://10.96.0.1:443");
        assert_eq!(config.body["kubernetes_ca_cert"], "PEM");
        let Some(Ok(role)) = written.get(1) else {
            panic!("{:?}", paths(&written));
        };
        assert!(!role.body.contains_key("name"));

        let given = method(json!({"type": "kubernetes",
            "config": {"kubernetes_host": "https://k:6443"}}));
        let written = items("auth[kubernetes]", &given, &ApplyOptions::default());
        let Some(Ok(config)) = written.first() else {
            panic!("{:?}", paths(&written));
        };
        assert_eq!(config.body["kubernetes_host"], "https://k:6443");
        assert!(!config.body.contains_key("kubernetes_ca_cert"));

        let bare = method(json!({"type": "kubernetes"}));
        let none = ApplyOptions {
            environment: Some(BTreeMap::new()),
            ..ApplyOptions::default()
        };
        assert!(
            paths(&items("auth[kubernetes]", &bare, &none))[0]
                .starts_with("auth[kubernetes].config: config.kubernetes_host is not set")
        );
    }

    #[test]
    fn each_type_writes_where_vault_expects_it() {
        let cases = [
            (
                json!({"type": "userpass", "users": [{"username": "admin", "password": "p"}]}),
                vec!["auth[userpass].users[admin] -> auth/userpass/users/admin"],
            ),
            (
                json!({"type": "token", "roles": [{"name": "metrics", "orphan": true}]}),
                vec!["auth[token].roles[metrics] -> auth/token/roles/metrics"],
            ),
            (
                json!({"type": "cert", "config": {"disable_binding": true},
                       "roles": [{"name": "jenkins"}]}),
                vec![
                    "auth[cert].config -> auth/cert/config",
                    "auth[cert].roles[jenkins] -> auth/cert/certs/jenkins",
                ],
            ),
            (
                json!({"type": "jwt", "path": "gitlab", "config": {"bound_issuer": "x"},
                       "roles": [{"name": "ci"}]}),
                vec![
                    "auth[gitlab].config -> auth/gitlab/config",
                    "auth[gitlab].roles[ci] -> auth/gitlab/role/ci",
                ],
            ),
            (
                json!({"type": "approle", "roles": [{"name": "app"}]}),
                vec!["auth[approle].roles[app] -> auth/approle/role/app"],
            ),
            (
                json!({"type": "github", "config": {"organization": "o"},
                       "map": {"teams": {"dev": "dev"}, "users": {"me": "root"}}}),
                vec![
                    "auth[github].config -> auth/github/config",
                    "auth[github].map.teams[dev] -> auth/github/map/teams/dev",
                    "auth[github].map.users[me] -> auth/github/map/users/me",
                ],
            ),
            (
                json!({"type": "ldap", "groups": {"developers": {"policies": "a"}},
                       "users": {"bonifaido": {"groups": "developers"}}}),
                vec![
                    "auth[ldap].users[bonifaido] -> auth/ldap/users/bonifaido",
                    "auth[ldap].groups[developers] -> auth/ldap/groups/developers",
                ],
            ),
            (
                json!({"type": "aws", "config": {"access_key": "a"},
                       "crossaccountrole": [{"sts_account": 12345671234_u64, "sts_role": "r"}],
                       "roles": [{"name": "dev-role-iam"}]}),
                vec![
                    "auth[aws].config -> auth/aws/config/client",
                    "auth[aws].roles[dev-role-iam] -> auth/aws/role/dev-role-iam",
                    "auth[aws].crossaccountrole[12345671234] -> \
                     auth/aws/config/sts/12345671234",
                ],
            ),
        ];
        for (value, expected) in cases {
            let parsed = method(value);
            let item = format!("auth[{}]", parsed.path);
            assert_eq!(paths(&items(&item, &parsed, &options())), expected);
        }
    }

    #[test]
    fn mounts_of_another_type_or_fixed_settings_are_refused() {
        let held = json!({"type": "kubernetes", "local": false});
        assert!(check_mount("k", "kubernetes", &held, None, Some(false)).is_ok());
        let error = check_mount("k", "jwt", &held, None, None).map_err(|e| e.to_string());
        assert_eq!(
            error,
            Err("k is mounted as `kubernetes`, not `jwt`; unmount it to change its type".into())
        );
        assert!(check_mount("k", "kubernetes", &held, Some(true), None).is_err());
    }
}
