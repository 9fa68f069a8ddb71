//! The `template` step of the Vault pods: expands `${.Env.NAME}` and `${env "NAME"}` in the
//! configuration, in each pod, before Vault starts. Bank-Vaults users write these forms in
//! `spec.config` (for example `cluster_addr: "https://${.Env.POD_NAME}:8201"`), so the
//! configuration differs per pod and cannot be rendered once by the controller.

use std::path::{Path, PathBuf};

/// Why the configuration could not be rendered.
#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    /// A `${` with no closing `}`.
    #[error("rendering the Vault configuration: `${{` at byte {at} is never closed")]
    Unclosed {
        /// Byte offset of the `${`.
        at: usize,
    },
    /// An expression that is neither `.Env.NAME` nor `env "NAME"`.
    #[error(
        "rendering the Vault configuration: `${{{expression}}}` is not `${{.Env.NAME}}` or \
         `${{env \"NAME\"}}`"
    )]
    Unsupported {
        /// The text between `${` and `}`.
        expression: String,
    },
    /// The variable named is not set in the pod.
    #[error(
        "rendering the Vault configuration: environment variable {name} is not set in the pod; \
         add it to vaultEnvsConfig"
    )]
    Unset {
        /// The variable's name.
        name: String,
    },
    /// Reading the input or writing the output failed.
    #[error("{operation} {path}: {source}")]
    Io {
        /// What was being done.
        operation: &'static str,
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
}

/// Expands every `${...}` of `text`, looking variables up with `lookup`. A variable that is
/// not set is an error: Vault would otherwise start with an empty address or path and fail
/// far from the cause.
pub fn expand(
    text: &str,
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<String, TemplateError> {
    let mut rendered = String::with_capacity(text.len());
    let mut rest = text;
    let mut offset = 0;
    while let Some(start) = rest.find("${") {
        rendered.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after
            .find('}')
            .ok_or(TemplateError::Unclosed { at: offset + start })?;
        let name = variable_name(&after[..end])?;
        let value = lookup(name).ok_or_else(|| TemplateError::Unset {
            name: name.to_string(),
        })?;
        rendered.push_str(&value);
        offset += start + 2 + end + 1;
        rest = &after[end + 1..];
    }
    rendered.push_str(rest);
    Ok(rendered)
}

/// The variable an expression names: `.Env.NAME` or `env "NAME"`, spaces allowed around.
fn variable_name(expression: &str) -> Result<&str, TemplateError> {
    let trimmed = expression.trim();
    let name = if let Some(name) = trimmed.strip_prefix(".Env.") {
        Some(name)
    } else if let Some(quoted) = trimmed.strip_prefix("env") {
        // Go templates quote with `"` or, as a raw string, with backticks; Bank-Vaults'
        // own reference configuration writes both.
        let quoted = quoted.trim_start();
        ['"', '`'].into_iter().find_map(|quote| {
            quoted
                .strip_prefix(quote)
                .and_then(|q| q.strip_suffix(quote))
        })
    } else {
        None
    };
    match name {
        Some(name) if is_variable_name(name) => Ok(name),
        _ => Err(TemplateError::Unsupported {
            expression: expression.to_string(),
        }),
    }
}

fn is_variable_name(name: &str) -> bool {
    !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Renders the file `input` into `output` with the process's environment: what the init
/// container of each Vault pod runs.
pub fn render_file(input: &Path, output: &Path) -> Result<(), TemplateError> {
    let io = |operation, path: &Path| {
        let path = path.to_path_buf();
        move |source| TemplateError::Io {
            operation,
            path,
            source,
        }
    };
    let text = std::fs::read_to_string(input).map_err(io("reading", input))?;
    let rendered = expand(&text, |name| std::env::var(name).ok())?;
    if let Some(folder) = output.parent() {
        std::fs::create_dir_all(folder).map_err(io("creating the folder of", output))?;
    }
    std::fs::write(output, rendered).map_err(io("writing", output))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "POD_NAME" => Some("vault-1".to_string()),
            "VAULT_STORAGE_FILE" => Some("/vault/file".to_string()),
            _ => None,
        }
    }

    #[test]
    fn expands_both_forms_with_spaces() {
        let text = r#"{"a": "https://${.Env.POD_NAME}:8201", "b": "${ .Env.VAULT_STORAGE_FILE }",
            "c": "${env "POD_NAME"}", "d": "${ env  "POD_NAME" }", "e": "${env `POD_NAME`}"}"#;
        let rendered = expand(text, env).unwrap_or_default();
        assert_eq!(
            rendered,
            r#"{"a": "https://vault-1:8201", "b": "/vault/file",
            "c": "vault-1", "d": "vault-1", "e": "vault-1"}"#
        );
    }

    #[test]
    fn text_without_expressions_is_unchanged() {
        let text = "{\"ui\": true, \"dollar\": \"$5 {x}\"}";
        assert_eq!(expand(text, env).ok().as_deref(), Some(text));
    }

    #[test]
    fn problems_are_reported() {
        assert!(matches!(
            expand("x ${.Env.POD_NAME", env),
            Err(TemplateError::Unclosed { at: 2 })
        ));
        assert!(matches!(
            expand("${.Values.x}", env),
            Err(TemplateError::Unsupported { .. })
        ));
        let unset = expand("${.Env.NOPE}", env);
        assert!(matches!(unset, Err(TemplateError::Unset { ref name }) if name == "NOPE"));
    }
}
