//! The `externalConfig` schema, typed: each item of each section is templated, checked and
//! read on its own, so one item written wrong is reported by its path and the others still
//! apply.
//!
//! Only the structure is typed (names, paths, types, mount settings); what goes to a Vault
//! endpoint (roles, auth and engine configuration) stays free-form, as Bank-Vaults has it.

use std::cell::RefCell;

use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use crate::Secret;
use crate::template::{self, TemplateError};

/// Fields sent to one Vault endpoint, as the user wrote them (after templating).
pub type Fields = Map<String, Value>;

/// The sections of `externalConfig` this version understands; any other key is an error.
const SECTIONS: &[&str] = &[
    "policies",
    "auth",
    "secrets",
    "startupSecrets",
    "audit",
    "plugins",
    "groups",
    "group-aliases",
    "purgeUnmanagedConfig",
];

/// Why one item of `externalConfig` cannot be applied as written. Messages name keys and
/// paths, never a value: values may be passwords.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Problem {
    /// A key the schema does not have.
    #[error("unknown key `{key}`")]
    UnknownKey {
        /// The key, as written.
        key: String,
    },
    /// The item does not have the expected shape (serde's message, values removed).
    #[error("{message}")]
    Shape {
        /// What is wrong.
        message: String,
    },
    /// A `${` with no closing `}`.
    #[error("{at}: `${{` is never closed")]
    Unclosed {
        /// Where in the item.
        at: String,
    },
    /// A template other than `${env "NAME"}` or `${ .Env.NAME }`.
    #[error("{at}: `${{{expression}}}` is not `${{env \"NAME\"}}` or `${{ .Env.NAME }}`")]
    UnsupportedTemplate {
        /// Where in the item.
        at: String,
        /// The text between `${` and `}`, as written in the resource.
        expression: String,
    },
    /// A template names a variable that is not set.
    #[error("{at}: environment variable {name} is not set")]
    Unset {
        /// Where in the item.
        at: String,
        /// The variable.
        name: String,
    },
    /// A name that cannot be part of a Vault API path.
    #[error("{what} `{name}` is not a usable Vault path")]
    BadPath {
        /// Which field.
        what: &'static str,
        /// The name, as written (names and paths are not secrets).
        name: String,
    },
    /// Two items of a section name the same thing.
    #[error("named twice in its section; only the first is applied")]
    Duplicate,
}

/// One item of a section: its path in the report (such as `policies[allow_secrets]`) and
/// the item, or why it cannot be read.
#[derive(Debug)]
pub struct Entry<T> {
    /// The item's path, such as `auth[kubernetes]`.
    pub item: String,
    /// The typed item, or what is wrong with it.
    pub parsed: Result<T, Problem>,
    /// Templates that did not expand inside the item's sub-items (a role, an engine's
    /// configuration item), by their place in the item (`roles[0].password`): those
    /// sub-items fail, the rest of the item applies.
    pub deferred: Vec<(String, Problem)>,
}

impl<T> Entry<T> {
    fn failed(item: impl Into<String>, problem: Problem) -> Self {
        Self {
            item: item.into(),
            parsed: Err(problem),
            deferred: Vec::new(),
        }
    }

    /// The template problem of the sub-item at `place` (such as `roles[0]` or
    /// `configuration.config[1]`), if it has one.
    pub fn deferred_for(&self, place: &str) -> Option<&Problem> {
        self.deferred.iter().find_map(|(at, problem)| {
            let inside = at
                .strip_prefix(place)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with(['.', '[']));
            inside.then_some(problem)
        })
    }
}

/// `policies[]`: an ACL policy.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// The policy's name.
    pub name: String,
    /// The rules: HCL or JSON text, or a JSON document written as YAML.
    pub rules: PolicyRules,
}

/// The rules of a policy, as written.
#[derive(Clone, Debug, Deserialize)]
#[serde(untagged)]
pub enum PolicyRules {
    /// HCL or JSON text.
    Text(String),
    /// A policy document written as a map; sent as JSON.
    Document(Fields),
}

impl PolicyRules {
    /// The text Vault stores.
    pub fn text(&self) -> String {
        match self {
            Self::Text(text) => text.clone(),
            Self::Document(document) => Value::Object(document.clone()).to_string(),
        }
    }
}

/// `auth[]`: an auth method, its configuration and its roles.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthMethod {
    /// The method's type, such as `kubernetes`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Where it is mounted under `auth/`; the type when left out.
    #[serde(default)]
    pub path: String,
    /// The mount's description.
    #[serde(default)]
    pub description: Option<String>,
    /// Mount settings (`listing_visibility`, lease TTLs, ...), applied by tuning.
    #[serde(default)]
    pub options: Fields,
    /// Written to `auth/<path>/config` (`config/client` for aws).
    #[serde(default)]
    pub config: Option<Fields>,
    /// Roles, each with a `name`.
    #[serde(default)]
    pub roles: Vec<Fields>,
    /// userpass: a list of users with `username`; ldap and okta: a map of name to fields.
    #[serde(default)]
    pub users: Option<Value>,
    /// ldap and okta: a map of group name to fields.
    #[serde(default)]
    pub groups: Fields,
    /// github: `teams` and `users`, each a map of name to policies.
    #[serde(default)]
    pub map: Fields,
    /// aws: cross-account roles, each with `sts_account`.
    #[serde(default)]
    pub crossaccountrole: Vec<Fields>,
    /// Whether the mount is local to this cluster (set when enabling only).
    #[serde(default)]
    pub local: Option<bool>,
    /// Whether the mount is seal-wrapped (set when enabling only).
    #[serde(default)]
    pub seal_wrap: Option<bool>,
}

impl std::fmt::Debug for AuthMethod {
    // Configuration and users may hold passwords: only names are shown.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthMethod")
            .field("kind", &self.kind)
            .field("path", &self.path)
            .field("roles", &self.roles.len())
            .finish_non_exhaustive()
    }
}

/// `secrets[]`: a secrets engine and the configuration written under it.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretsEngine {
    /// The engine's type, such as `kv`; `plugin` with `plugin_name` for a registered plugin.
    #[serde(rename = "type")]
    pub kind: String,
    /// Where it is mounted; the type when left out.
    #[serde(default)]
    pub path: String,
    /// The mount's description.
    #[serde(default)]
    pub description: Option<String>,
    /// Engine options, such as `version` for kv.
    #[serde(default)]
    pub options: Fields,
    /// Mount settings such as `default_lease_ttl`.
    #[serde(default)]
    pub config: Fields,
    /// Per endpoint (such as `config` or `roles`), the items written under it.
    #[serde(default)]
    pub configuration: Map<String, Value>,
    /// The plugin's name for `type: plugin`.
    #[serde(default)]
    pub plugin_name: Option<String>,
    /// Whether the mount is local to this cluster (set when mounting only).
    #[serde(default)]
    pub local: Option<bool>,
    /// Whether the mount is seal-wrapped (set when mounting only).
    #[serde(default)]
    pub seal_wrap: Option<bool>,
}

impl SecretsEngine {
    /// The type Vault is asked to mount.
    pub fn mount_type(&self) -> &str {
        match (self.kind.as_str(), &self.plugin_name) {
            ("plugin", Some(plugin)) => plugin,
            (kind, _) => kind,
        }
    }
}

impl std::fmt::Debug for SecretsEngine {
    // Configuration items may hold passwords: only names are shown.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretsEngine")
            .field("kind", &self.kind)
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

/// `startupSecrets[]`: a secret written once the engines are mounted.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StartupSecret {
    /// `kv`, or `pki` for a CA bundle (certificate and key) imported at `path`, such as
    /// `pki/config/ca`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The API path, such as `secret/data/accounts/aws` for kv version 2.
    pub path: String,
    /// The secret's data and write options.
    #[serde(default)]
    pub data: StartupData,
    /// kv version 2: how many versions the secret keeps.
    #[serde(default)]
    pub max_versions: Option<u64>,
}

impl std::fmt::Debug for StartupSecret {
    // The data is the secret itself.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StartupSecret")
            .field("kind", &self.kind)
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for StartupData {
    // The values are the secret: only the keys are shown.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StartupData")
            .field("data", &self.data.keys().collect::<Vec<_>>())
            .field("secret_key_ref", &self.secret_key_ref.len())
            .finish_non_exhaustive()
    }
}

/// The `data` of a startup secret.
#[derive(Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StartupData {
    /// The key/value pairs.
    #[serde(default)]
    pub data: Fields,
    /// kv version 2 write options, such as `cas: 0`.
    #[serde(default)]
    pub options: Fields,
    /// Keys read from Kubernetes Secrets of the `Vault`'s namespace, each `{name, key}`:
    /// kept under `key`, beside those of `data`.
    #[serde(default, rename = "secretKeyRef")]
    pub secret_key_ref: Vec<Value>,
}

/// `groups[]`: an identity group. Besides `name`, the fields go to
/// `identity/group/name/<name>` as written (`type`, `policies`, `metadata`, ...).
#[derive(Clone, Debug, Deserialize)]
pub struct Group {
    /// The group's name.
    pub name: String,
    /// The other fields, such as `type`, `policies` and `metadata`.
    #[serde(flatten)]
    pub fields: Fields,
}

/// `group-aliases[]`: the alias of an external group, tied to an auth method.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupAlias {
    /// The alias's name: the group's name in the auth method (an LDAP group, a team).
    pub name: String,
    /// The path of the auth method (without `auth/`).
    pub mountpath: String,
    /// The name of the group it is an alias of.
    pub group: String,
}

/// `audit[]`: an audit device. HashiCorp Vault takes them through its API; OpenBao only
/// from its server configuration, where the controller renders them.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditDevice {
    /// `file`, `socket` or `syslog`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Where it is enabled; the type when left out.
    #[serde(default)]
    pub path: String,
    /// The device's description.
    #[serde(default)]
    pub description: Option<String>,
    /// The device's options, such as `file_path`.
    #[serde(default)]
    pub options: Fields,
    /// Whether the device is local to this cluster.
    #[serde(default)]
    pub local: Option<bool>,
}

/// `plugins[]`: a plugin registered in the catalog, before the auth methods and engines
/// that run it are enabled.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Plugin {
    /// The plugin's name in the catalog.
    pub plugin_name: String,
    /// `auth`, `database` or `secret`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The executable in the server's `plugin_directory`; words after the first are its
    /// arguments when `args` is left out, as older Vault versions took them.
    pub command: String,
    /// The SHA-256 of the executable, hex.
    pub sha256: String,
    /// Arguments to the executable.
    #[serde(default)]
    pub args: Option<Vec<String>>,
    /// `NAME=value` environment variables of the plugin process.
    #[serde(default)]
    pub env: Option<Vec<String>>,
    /// The plugin's version, for versioned plugins.
    #[serde(default)]
    pub version: Option<String>,
}

/// `purgeUnmanagedConfig`: whether what the configuration does not name is removed.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Purge {
    /// Removes what the configuration does not name, in every section not excluded.
    #[serde(default)]
    pub enabled: bool,
    /// Sections (`policies`, `auth`, `secrets`, `audit`, `groups`, `group-aliases`,
    /// `plugins`) left alone when `true`.
    #[serde(default)]
    pub exclude: std::collections::BTreeMap<String, bool>,
}

impl Purge {
    /// Whether what `section` does not name is removed.
    pub fn purges(&self, section: &str) -> bool {
        self.enabled && !self.exclude.get(section).copied().unwrap_or(false)
    }
}

/// `externalConfig`, read section by section.
#[derive(Debug, Default)]
pub struct ExternalConfig {
    /// `policies`.
    pub policies: Vec<Entry<Policy>>,
    /// `auth`.
    pub auth: Vec<Entry<AuthMethod>>,
    /// `secrets`.
    pub secrets: Vec<Entry<SecretsEngine>>,
    /// `startupSecrets`.
    pub startup_secrets: Vec<Entry<StartupSecret>>,
    /// `plugins`.
    pub plugins: Vec<Entry<Plugin>>,
    /// `audit`.
    pub audit: Vec<Entry<AuditDevice>>,
    /// `groups`.
    pub groups: Vec<Entry<Group>>,
    /// `group-aliases`.
    pub group_aliases: Vec<Entry<GroupAlias>>,
    /// `purgeUnmanagedConfig`: off when left out, or when it does not parse (reported in
    /// `other`).
    pub purge: Purge,
    /// Items of sections not applied yet, and problems with the sections themselves (an
    /// unknown key, a section that is not a list).
    pub other: Vec<Entry<()>>,
    /// Values that must never appear in a message: those from templates, those under
    /// secret-like keys and the data of startup secrets.
    pub(crate) redactor: Redactor,
}

impl ExternalConfig {
    /// Every problem found, with the item it is in.
    pub fn problems(&self) -> Vec<(String, Problem)> {
        fn collect<T>(entries: &[Entry<T>], into: &mut Vec<(String, Problem)>) {
            for entry in entries {
                if let Err(problem) = &entry.parsed {
                    into.push((entry.item.clone(), problem.clone()));
                }
                for (_, problem) in &entry.deferred {
                    into.push((entry.item.clone(), problem.clone()));
                }
            }
        }
        let mut problems = Vec::new();
        collect(&self.policies, &mut problems);
        collect(&self.auth, &mut problems);
        collect(&self.secrets, &mut problems);
        collect(&self.startup_secrets, &mut problems);
        collect(&self.plugins, &mut problems);
        collect(&self.audit, &mut problems);
        collect(&self.groups, &mut problems);
        collect(&self.group_aliases, &mut problems);
        collect(&self.other, &mut problems);
        problems
    }

    /// `text` with every secret value of this configuration replaced by `***`.
    pub fn redact(&self, text: &str) -> String {
        self.redactor.redact(text)
    }
}

/// Reads `externalConfig`: templates expanded with `env`, each item checked and typed.
/// Never fails as a whole: what is wrong is kept in the item it concerns.
pub fn parse(config: &Value, env: &dyn Fn(&str) -> Option<String>) -> ExternalConfig {
    let mut parsed = ExternalConfig::default();
    let Some(sections) = config.as_object() else {
        if !config.is_null() {
            let message = "expected a map of sections".to_string();
            parsed
                .other
                .push(Entry::failed("externalConfig", Problem::Shape { message }));
        }
        return parsed;
    };
    let mut reader = Reader {
        env,
        redactor: &mut parsed.redactor,
    };

    for key in sections.keys().filter(|k| !SECTIONS.contains(&k.as_str())) {
        let problem = Problem::UnknownKey { key: key.clone() };
        parsed.other.push(Entry::failed(key.clone(), problem));
    }
    let section = |name: &str| sections.get(name).filter(|v| !v.is_null());

    if let Some(items) = section("policies") {
        let naming = Naming::new(&["name"], &[]);
        parsed.policies = reader.section("policies", items, naming, |policy: &mut Policy| {
            check_path("name", &policy.name)
        });
    }
    if let Some(items) = section("auth") {
        let sub_items = [
            "config",
            "roles",
            "users",
            "groups",
            "map",
            "crossaccountrole",
        ];
        let naming = Naming::new(&["path", "type"], &sub_items);
        parsed.auth = reader.section("auth", items, naming, normalise_auth);
    }
    if let Some(items) = section("secrets") {
        let naming = Naming::new(&["path", "type"], &["configuration"]);
        parsed.secrets = reader.section("secrets", items, naming, normalise_engine);
    }
    if let Some(items) = section("startupSecrets") {
        let naming = Naming::new(&["path"], &[]);
        parsed.startup_secrets = reader.section("startupSecrets", items, naming, normalise_startup);
    }

    if let Some(items) = section("plugins") {
        let naming = Naming::new(&["plugin_name"], &[]);
        parsed.plugins = reader.section("plugins", items, naming, normalise_plugin);
    }
    if let Some(items) = section("groups") {
        let naming = Naming::new(&["name"], &[]);
        parsed.groups = reader.section("groups", items, naming, |group: &mut Group| {
            check_path("name", &group.name)
        });
    }
    if let Some(items) = section("group-aliases") {
        let naming = Naming::new(&["name"], &[]);
        parsed.group_aliases =
            reader.section("group-aliases", items, naming, |alias: &mut GroupAlias| {
                alias.mountpath = alias.mountpath.trim_matches('/').to_string();
                check_path("mountpath", &alias.mountpath)?;
                check_path("group", &alias.group)
            });
    }
    if let Some(purge) = section("purgeUnmanagedConfig") {
        match Purge::deserialize(purge) {
            Ok(read) => parsed.purge = read,
            Err(error) => {
                let message = without_values(&error.to_string());
                let problem = Problem::Shape { message };
                parsed
                    .other
                    .push(Entry::failed("purgeUnmanagedConfig", problem));
            }
        }
    }

    if let Some(items) = section("audit") {
        let naming = Naming::new(&["path", "type"], &[]);
        parsed.audit = reader.section("audit", items, naming, |device: &mut AuditDevice| {
            device.path = path_or(&device.path, &device.kind);
            check_path("type", &device.kind)?;
            check_path("path", &device.path)
        });
    }
    parsed
}

/// How the items of a section are named and split.
#[derive(Clone, Copy)]
struct Naming<'a> {
    /// Keys naming an item, the first present wins (`policies[allow_secrets]`); its
    /// position otherwise.
    by: &'a [&'a str],
    /// Keys holding sub-items, whose template problems fail the sub-item only.
    sub_items: &'a [&'a str],
}

impl<'a> Naming<'a> {
    fn new(by: &'a [&'a str], sub_items: &'a [&'a str]) -> Self {
        Self { by, sub_items }
    }
}

/// Reads sections, collecting the values to redact on the way.
struct Reader<'a> {
    env: &'a dyn Fn(&str) -> Option<String>,
    redactor: &'a mut Redactor,
}

impl Reader<'_> {
    /// Reads the list `items` of section `name`.
    fn section<T: DeserializeOwned>(
        &mut self,
        name: &str,
        items: &Value,
        naming: Naming<'_>,
        normalise: impl Fn(&mut T) -> Result<(), Problem>,
    ) -> Vec<Entry<T>> {
        let Some(items) = items.as_array() else {
            let message = "expected a list".to_string();
            return vec![Entry::failed(name, Problem::Shape { message })];
        };
        let mut entries: Vec<Entry<T>> = Vec::new();
        for (index, raw) in items.iter().enumerate() {
            let label = naming
                .by
                .iter()
                .find_map(|key| raw.get(key).and_then(label_of))
                .unwrap_or_else(|| index.to_string());
            let item = format!("{name}[{}]", label.trim_matches('/'));
            let (mut parsed, deferred) = match self.item::<T>(raw, naming.sub_items) {
                Ok((value, deferred)) => (Ok(value), deferred),
                Err(problem) => (Err(problem), Vec::new()),
            };
            if let Ok(value) = &mut parsed
                && let Err(problem) = normalise(value)
            {
                parsed = Err(problem);
            }
            if entries.iter().any(|e| e.item == item) {
                parsed = Err(Problem::Duplicate);
            }
            entries.push(Entry {
                item,
                parsed,
                deferred,
            });
        }
        entries
    }

    /// Expands the templates of one item, notes its secret values, then types it. A
    /// template that does not expand fails the item, unless it is under one of
    /// `sub_items`: then it is returned with its place, and left as written.
    fn item<T: DeserializeOwned>(
        &mut self,
        raw: &Value,
        sub_items: &[&str],
    ) -> Result<(T, Vec<(String, Problem)>), Problem> {
        let expanded = RefCell::new(Vec::new());
        let lookup = |name: &str| {
            let value = (self.env)(name);
            if let Some(value) = &value {
                expanded.borrow_mut().push(value.clone());
            }
            value
        };
        let mut problems = Vec::new();
        let rendered = render(raw, &mut String::new(), &lookup, &mut problems);
        for value in expanded.into_inner() {
            self.redactor.add(value);
        }
        self.redactor.add_secret_fields(&rendered, false);

        let (deferred, fatal): (Vec<_>, Vec<_>) = problems.into_iter().partition(|(at, _)| {
            let top = at.split(['.', '[']).next().unwrap_or_default();
            sub_items.contains(&top)
        });
        if let Some((_, problem)) = fatal.into_iter().next() {
            return Err(problem);
        }
        let typed = T::deserialize(&rendered).map_err(|error| Problem::Shape {
            message: without_values(&error.to_string()),
        })?;
        Ok((typed, deferred))
    }
}

/// The label of an item: a name, path or type, as text.
fn label_of(value: &Value) -> Option<String> {
    match value {
        Value::String(text) if !text.trim_matches('/').is_empty() => Some(text.clone()),
        Value::Number(number) => Some(number.to_string()),
        _ => None,
    }
}

/// Expands every `${...}` in the strings of `value`. A string that does not expand is
/// kept as written and its problem added to `problems`, with `at`, its place in the item.
fn render(
    value: &Value,
    at: &mut String,
    lookup: &dyn Fn(&str) -> Option<String>,
    problems: &mut Vec<(String, Problem)>,
) -> Value {
    match value {
        Value::String(text) if text.contains("${") => match template::expand(text, lookup) {
            Ok(expanded) => Value::String(expanded),
            Err(error) => {
                let place = if at.is_empty() { "." } else { at.as_str() }.to_string();
                let problem = match error {
                    TemplateError::Unclosed { .. } => Problem::Unclosed { at: place.clone() },
                    TemplateError::Unset { name } => Problem::Unset {
                        at: place.clone(),
                        name,
                    },
                    TemplateError::Unsupported { expression } => Problem::UnsupportedTemplate {
                        at: place.clone(),
                        expression,
                    },
                    // `expand` reads no file; kept for the enum's sake.
                    TemplateError::Io { .. } => Problem::Shape {
                        message: format!("{place}: unreadable template"),
                    },
                };
                problems.push((place, problem));
                value.clone()
            }
        },
        Value::Array(items) => {
            let mut rendered = Vec::with_capacity(items.len());
            for (index, item) in items.iter().enumerate() {
                let length = at.len();
                at.push_str(&format!("[{index}]"));
                rendered.push(render(item, at, lookup, problems));
                at.truncate(length);
            }
            Value::Array(rendered)
        }
        Value::Object(fields) => {
            let mut rendered = Map::new();
            for (key, field) in fields {
                let length = at.len();
                if !at.is_empty() {
                    at.push('.');
                }
                at.push_str(key);
                rendered.insert(key.clone(), render(field, at, lookup, problems));
                at.truncate(length);
            }
            Value::Object(rendered)
        }
        other => other.clone(),
    }
}

/// serde's message without the value it quotes (`invalid type: string "s3cr3t", expected
/// a map` becomes `invalid type: string, expected a map`): the value may be a password.
pub(crate) fn without_values(message: &str) -> String {
    for prefix in ["invalid type: ", "invalid value: "] {
        if let Some(rest) = message.strip_prefix(prefix)
            && let Some((found, expected)) = rest.split_once(", expected")
        {
            let kind = found.split([' ', '`', '"']).next().unwrap_or(found);
            return format!("{prefix}{kind}, expected{expected}");
        }
    }
    message.to_string()
}

/// Whether `path` can be put into a Vault API path as it is: no empty, `.` or `..`
/// segment, nothing a URL would read as a query, fragment or escape.
pub(crate) fn usable_path(path: &str) -> bool {
    !path.is_empty()
        && path.split('/').all(|segment| {
            !segment.is_empty()
                && segment != "."
                && segment != ".."
                && segment
                    .chars()
                    .all(|c| !c.is_control() && !c.is_whitespace() && !"?#%\\".contains(c))
        })
}

/// Checks a name that becomes part of an API path.
pub(crate) fn check_path(what: &'static str, name: &str) -> Result<(), Problem> {
    if usable_path(name) {
        Ok(())
    } else {
        Err(Problem::BadPath {
            what,
            name: name.to_string(),
        })
    }
}

fn normalise_auth(method: &mut AuthMethod) -> Result<(), Problem> {
    // The token method lives at `auth/token` and cannot be moved.
    method.path = if method.kind == "token" {
        "token".to_string()
    } else {
        path_or(&method.path, &method.kind)
    };
    check_path("type", &method.kind)?;
    check_path("path", &method.path)
}

/// `path` without its outer `/`, or `kind` when that leaves nothing: mounts are at their
/// type's name unless told otherwise.
fn path_or(path: &str, kind: &str) -> String {
    match path.trim_matches('/') {
        "" => kind.to_string(),
        path => path.to_string(),
    }
}

fn normalise_engine(engine: &mut SecretsEngine) -> Result<(), Problem> {
    engine.path = path_or(&engine.path, &engine.kind);
    check_path("type", engine.mount_type())?;
    check_path("path", &engine.path)
}

fn normalise_plugin(plugin: &mut Plugin) -> Result<(), Problem> {
    if plugin.args.is_none() {
        let mut words = plugin.command.split_whitespace().map(str::to_string);
        let command = words.next().unwrap_or_default();
        plugin.args = Some(words.collect());
        plugin.command = command;
    }
    if !matches!(plugin.kind.as_str(), "auth" | "database" | "secret") {
        return Err(Problem::Shape {
            message: "type: expected `auth`, `database` or `secret`".to_string(),
        });
    }
    check_path("plugin_name", &plugin.plugin_name)
}

fn normalise_startup(secret: &mut StartupSecret) -> Result<(), Problem> {
    secret.path = secret.path.trim_matches('/').to_string();
    check_path("path", &secret.path)
}

/// Whether a key's value is a credential: passwords, secret keys, tokens, private keys.
/// `token_*` settings of roles (`token_ttl`, `token_policies`) are not.
pub(crate) fn is_secret_key(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    if key.starts_with("token_") && key != "token_reviewer_jwt" {
        return false;
    }
    [
        "password",
        "secret",
        "credential",
        "bindpass",
        "private",
        "pem_bundle",
        "jwt",
        "access_key",
        "api_key",
        "apikey",
        "token",
    ]
    .iter()
    .any(|word| key.contains(word))
}

/// Values that must not appear in messages, replaced by `***` where they do.
#[derive(Clone, Default)]
pub(crate) struct Redactor {
    values: Vec<Secret>,
}

impl std::fmt::Debug for Redactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Redactor({} values)", self.values.len())
    }
}

impl Redactor {
    /// Shorter values would mask ordinary words of a message.
    const SHORTEST: usize = 3;

    /// Adds one value.
    pub(crate) fn add(&mut self, value: String) {
        if value.len() >= Self::SHORTEST && !self.values.iter().any(|v| v.expose() == value) {
            self.values.push(Secret::new(value));
            // Longest first, so a value containing another is masked whole.
            self.values
                .sort_by_key(|value| std::cmp::Reverse(value.expose().len()));
        }
    }

    /// Adds the string values under secret-like keys of `value`, or all of its strings when
    /// `everything` (the data of a startup secret).
    pub(crate) fn add_secret_fields(&mut self, value: &Value, everything: bool) {
        match value {
            // A template left unexpanded is the resource's text, not a value.
            Value::String(text) if everything && !text.contains("${") => self.add(text.clone()),
            Value::Array(items) => {
                for item in items {
                    self.add_secret_fields(item, everything);
                }
            }
            Value::Object(fields) => {
                for (key, field) in fields {
                    // A startup secret's `data` is the secret as a whole, but for the
                    // names of the Kubernetes Secrets its `secretKeyRef` reads.
                    let secret = key != "secretKeyRef"
                        && (everything || is_secret_key(key) || key == "data");
                    self.add_secret_fields(field, secret);
                }
            }
            _ => {}
        }
    }

    /// `text` with every value replaced by `***`.
    pub(crate) fn redact(&self, text: &str) -> String {
        let mut redacted = text.to_string();
        for value in &self.values {
            if redacted.contains(value.expose()) {
                redacted = redacted.replace(value.expose(), "***");
            }
        }
        redacted
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use serde_json::json;

    use super::*;

    /// The auth method of one `auth` item, which must parse.
    pub(crate) fn method(value: Value) -> AuthMethod {
        let parsed = parse(&json!({ "auth": [value] }), &|_| None);
        match parsed.auth.into_iter().next().map(|entry| entry.parsed) {
            Some(Ok(method)) => method,
            other => panic!("{other:?}"),
        }
    }

    fn env(name: &str) -> Option<String> {
        match name {
            "ROOT_PASSWORD" => Some("hunter2-from-env".to_string()),
            "POD_NAME" => Some("vault-0".to_string()),
            _ => None,
        }
    }

    #[test]
    fn reads_every_section_and_names_items() {
        let config = json!({
            "policies": [{"name": "allow_secrets", "rules": "path \"secret/*\" {}"}],
            "auth": [{"type": "kubernetes", "roles": [{"name": "default"}]},
                     {"type": "token"},
                     {"type": "userpass", "path": "/people/"}],
            "secrets": [{"type": "kv", "options": {"version": 2}},
                        {"type": "plugin", "plugin_name": "eth", "path": "eth-gw"}],
            "startupSecrets": [{"type": "kv", "path": "secret/data/a", "data": {"data": {}}}],
        });
        let parsed = parse(&config, &env);
        assert!(parsed.problems().is_empty(), "{:?}", parsed.problems());
        let items: Vec<_> = parsed.auth.iter().map(|e| e.item.as_str()).collect();
        assert_eq!(items, ["auth[kubernetes]", "auth[token]", "auth[people]"]);
        let paths: Vec<_> = parsed
            .auth
            .iter()
            .filter_map(|e| e.parsed.as_ref().ok())
            .map(|m| m.path.as_str())
            .collect();
        assert_eq!(paths, ["kubernetes", "token", "people"]);
        let engines: Vec<_> = parsed
            .secrets
            .iter()
            .filter_map(|e| e.parsed.as_ref().ok())
            .map(|e| (e.path.as_str(), e.mount_type()))
            .collect();
        assert_eq!(engines, [("kv", "kv"), ("eth-gw", "eth")]);
        assert_eq!(parsed.policies[0].item, "policies[allow_secrets]");
        assert_eq!(
            parsed.startup_secrets[0].item,
            "startupSecrets[secret/data/a]"
        );
    }

    #[test]
    fn unknown_keys_are_named_with_their_item() {
        let config = json!({
            "policies": [{"name": "p", "rules": "x", "rulez": "y"}],
            "auth": [{"type": "kubernetes", "role": []}],
            "startupSecrets": [{"type": "kv", "path": "s/a", "data": {"dta": {}}}],
            "secretz": [],
        });
        let parsed = parse(&config, &env);
        let problems: Vec<String> = parsed
            .problems()
            .iter()
            .map(|(item, problem)| format!("{item}: {problem}"))
            .collect();
        assert_eq!(problems.len(), 4, "{problems:?}");
        assert!(problems[0].starts_with("policies[p]: unknown field `rulez`"));
        assert!(problems[1].starts_with("auth[kubernetes]: unknown field `role`"));
        assert!(problems[2].starts_with("startupSecrets[s/a]: unknown field `dta`"));
        assert_eq!(problems[3], "secretz: unknown key `secretz`");
    }

    #[test]
    fn templates_expand_in_values_and_unset_variables_name_their_path() {
        let config = json!({
            "secrets": [{"type": "database", "configuration": {"config": [
                {"name": "db", "password": "${env \"ROOT_PASSWORD\"}",
                 "username": "${ .Env.POD_NAME }", "plain": "$5 {x}"}
            ]}}],
            "auth": [{"type": "kubernetes", "config": {"issuer": "${env `NOPE`}"}}],
            "policies": [{"name": "p", "rules": "${ gcpkms (env `X`) }"}],
        });
        let parsed = parse(&config, &env);
        let Some(Ok(engine)) = parsed.secrets.first().map(|e| e.parsed.as_ref()) else {
            panic!("{:?}", parsed.problems());
        };
        let item = &engine.configuration["config"][0];
        assert_eq!(item["password"], "hunter2-from-env");
        assert_eq!(item["username"], "vault-0");
        assert_eq!(item["plain"], "$5 {x}");

        let messages: Vec<String> = parsed
            .problems()
            .iter()
            .map(|(item, problem)| format!("{item}: {problem}"))
            .collect();
        assert_eq!(
            messages,
            [
                "policies[p]: rules: `${ gcpkms (env `X`) }` is not `${env \"NAME\"}` or \
                 `${ .Env.NAME }`",
                "auth[kubernetes]: config.issuer: environment variable NOPE is not set",
            ]
        );
        // The value from the environment is masked wherever it appears.
        assert_eq!(
            parsed.redact("error: hunter2-from-env refused"),
            "error: *** refused"
        );
    }

    #[test]
    fn a_template_problem_in_a_sub_item_fails_that_sub_item_only() {
        let config = json!({
            "auth": [{"type": "userpass", "users": [
                {"username": "a", "password": "${env \"NOPE\"}"},
                {"username": "b", "password": "${env \"ROOT_PASSWORD\"}"},
            ]}],
            "secrets": [{"type": "database", "description": "${env \"NOPE\"}"}],
        });
        let parsed = parse(&config, &env);
        let Some(userpass) = parsed.auth.first() else {
            panic!("no auth item");
        };
        assert!(userpass.parsed.is_ok());
        let unset = Problem::Unset {
            at: "users[0].password".to_string(),
            name: "NOPE".to_string(),
        };
        assert_eq!(userpass.deferred_for("users[0]"), Some(&unset));
        assert_eq!(userpass.deferred_for("users"), Some(&unset));
        assert_eq!(userpass.deferred_for("users[1]"), None);
        assert_eq!(userpass.deferred_for("users[0"), None);
        // Outside a sub-item, the whole item fails.
        assert!(matches!(
            parsed.secrets.first().map(|e| &e.parsed),
            Some(Err(Problem::Unset { .. }))
        ));
    }

    #[test]
    fn policy_rules_may_be_a_document() {
        let config = json!({"policies": [{"name": "p", "rules": {"path": {"a/*": {}}}}]});
        let parsed = parse(&config, &env);
        let Some(Ok(policy)) = parsed.policies.first().map(|e| e.parsed.as_ref()) else {
            panic!("{:?}", parsed.problems());
        };
        assert_eq!(policy.rules.text(), r#"{"path":{"a/*":{}}}"#);
    }

    #[test]
    fn bad_paths_duplicates_and_bad_sections_are_problems() {
        let config = json!({
            "policies": [{"name": "a", "rules": ""}, {"name": "a", "rules": ""},
                         {"name": "../sys", "rules": ""}],
            "auth": [{"type": "userpass", "path": "a b"}],
            "groups": [{"name": "admin"}, {"name": "a/../b"}],
            "group-aliases": [{"name": "admin", "mountpath": "/ldap/", "group": "admin"}],
            "audit": [{"type": "file", "options": {"file_path": "stdout"}, "opts": {}}],
            "purgeUnmanagedConfig": {"enabled": "yes"},
        });
        let parsed = parse(&config, &env);
        let problems: Vec<String> = parsed
            .problems()
            .iter()
            .map(|(item, problem)| format!("{item}: {problem}"))
            .collect();
        assert_eq!(
            problems,
            [
                "policies[a]: named twice in its section; only the first is applied",
                "policies[../sys]: name `../sys` is not a usable Vault path",
                "auth[a b]: path `a b` is not a usable Vault path",
                "audit[file]: unknown field `opts`, expected one of `type`, `path`, \
                 `description`, `options`, `local`",
                "groups[a/../b]: name `a/../b` is not a usable Vault path",
                "purgeUnmanagedConfig: invalid type: string, expected a boolean",
            ]
            .iter()
            .map(|s| s.to_string())
            .collect::<Vec<_>>()
        );
        // A name with `..` is refused by Vault's path rules, checked when it is applied.
        assert!(!usable_path("../sys"));
        assert!(!usable_path("a//b"));
        assert!(usable_path("secret/data/accounts/aws"));
    }

    #[test]
    fn type_errors_do_not_show_the_value() {
        let config = json!({"startupSecrets": [{"type": "kv", "path": "s/a",
            "data": {"data": "s3cr3t-value"}}]});
        let parsed = parse(&config, &env);
        let problems = parsed.problems();
        let message = problems[0].1.to_string();
        assert!(!message.contains("s3cr3t-value"), "{message}");
        assert!(
            message.starts_with("invalid type: string, expected"),
            "{message}"
        );
        assert_eq!(parsed.redact("x s3cr3t-value y"), "x *** y");
    }

    #[test]
    fn secret_keys_are_told_from_token_settings() {
        for key in [
            "password",
            "bindpass",
            "client_secret",
            "secret_key",
            "token_reviewer_jwt",
        ] {
            assert!(is_secret_key(key), "{key}");
        }
        for key in [
            "token_ttl",
            "token_policies",
            "ttl",
            "name",
            "kubernetes_host",
        ] {
            assert!(!is_secret_key(key), "{key}");
        }
    }
}
