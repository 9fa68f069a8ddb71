//! `plugins`: registrations in the plugin catalog, compared with what the catalog holds.

use serde_json::json;

use super::Desired;
use super::config::{Fields, Plugin};

/// The catalog entry of `plugin`: `sys/plugins/catalog/<type>/<name>`. The catalog does
/// not return `env`, so a change of it is told by the input's hash.
pub(super) fn desired(item: &str, plugin: &Plugin) -> Desired {
    let mut body = Fields::new();
    body.insert("command".to_string(), json!(plugin.command));
    body.insert(
        "args".to_string(),
        json!(plugin.args.clone().unwrap_or_default()),
    );
    body.insert("sha256".to_string(), json!(plugin.sha256));
    if let Some(env) = &plugin.env {
        body.insert("env".to_string(), json!(env));
    }
    if let Some(version) = &plugin.version {
        body.insert("version".to_string(), json!(version));
    }
    Desired {
        item: item.to_string(),
        place: String::new(),
        api_path: format!("sys/plugins/catalog/{}/{}", plugin.kind, plugin.plugin_name),
        body,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;
    use crate::external::config::parse;

    #[test]
    fn a_command_with_words_is_split_into_arguments_as_bank_vaults_writes_it() {
        let config = json!({"plugins": [
            {"plugin_name": "ethereum-plugin", "type": "secret", "sha256": "62fb",
             "command": "ethereum-vault-plugin --ca-cert=/vault/tls/ca.crt  --x"},
            {"plugin_name": "kept", "type": "auth", "sha256": "ab", "command": "a b",
             "args": ["--y"], "env": ["A=1"]},
            {"plugin_name": "odd", "type": "widget", "sha256": "ab", "command": "a"},
        ]});
        let parsed = parse(&config, &|_| None);
        let shown: Vec<String> = parsed
            .plugins
            .iter()
            .map(|entry| match &entry.parsed {
                Ok(plugin) => {
                    let desired = desired(&entry.item, plugin);
                    format!("{} {}", desired.api_path, Value::Object(desired.body))
                }
                Err(problem) => format!("{}: {problem}", entry.item),
            })
            .collect();
        let ethereum = json!({"args": ["--ca-cert=/vault/tls/ca.crt", "--x"],
            "command": "ethereum-vault-plugin", "sha256": "62fb"});
        let kept = json!({"args": ["--y"], "command": "a b", "env": ["A=1"], "sha256": "ab"});
        assert_eq!(
            shown,
            [
                format!("sys/plugins/catalog/secret/ethereum-plugin {ethereum}"),
                format!("sys/plugins/catalog/auth/kept {kept}"),
                "plugins[odd]: type: expected `auth`, `database` or `secret`".to_string(),
            ]
        );
    }
}
