//! `kubectl vault validate`: checks `Vault` resources in files, offline, with the rules the
//! admission webhook applies: the resource is defaulted, then validated, by the `api` crate.

use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};

use serde_json::Value;
use vault_api::documents::read_vaults;

/// Why the files could not be read (problems in what they hold are [`Finding`]s).
#[derive(Debug, thiserror::Error)]
pub enum ValidateError {
    /// A file or folder could not be read.
    #[error("reading {path}: {source}")]
    Read {
        /// The file or folder.
        path: String,
        /// Why.
        source: std::io::Error,
    },
}

/// How serious a finding is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Severity {
    /// The resource would be refused.
    Error,
    /// Accepted, but the user should know.
    Warning,
}

/// One problem, located by file, document and field.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    /// The file, or `-` for standard input.
    pub file: String,
    /// Position of the document in the file, from 0; none when the file is not YAML.
    pub document: Option<usize>,
    /// Position of the resource among the items of a `List` document, from 0.
    pub item: Option<usize>,
    /// Name of the Vault resource, when it has one.
    pub vault: Option<String>,
    /// Error or warning.
    pub severity: Severity,
    /// What is wrong, starting with the field's path.
    pub message: String,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if let Some(index) = self.document {
            write!(f, ": document {index}")?;
        }
        if let Some(item) = self.item {
            write!(f, ", item {item}")?;
        }
        if let Some(name) = &self.vault {
            write!(f, " (vault/{name})")?;
        }
        let severity = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        write!(f, ": {severity}: {}", self.message)
    }
}

/// What `validate` found in every file.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Report {
    /// Every error and warning, in file and document order.
    pub findings: Vec<Finding>,
    /// Number of Vault documents checked.
    pub vaults: usize,
    /// Number of them that would be refused.
    pub invalid: usize,
    /// Files read.
    pub files: usize,
}

impl Report {
    /// True when any resource would be refused.
    pub fn has_errors(&self) -> bool {
        self.findings.iter().any(|f| f.severity == Severity::Error)
    }

    /// The findings, one a line, and a closing count.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for finding in &self.findings {
            out.push_str(&finding.to_string());
            out.push('\n');
        }
        let valid = self.vaults - self.invalid;
        out.push_str(&format!(
            "{} Vault resources in {} files: {valid} valid, {} invalid\n",
            self.vaults, self.files, self.invalid
        ));
        out
    }
}

/// Checks every Vault document of one file's text, and every Vault item of a `List`
/// document, as `kubectl apply` reads them; `file` names the text in the findings.
pub fn check_text(file: &str, text: &str, report: &mut Report) {
    report.files += 1;
    let documents: Vec<Option<Value>> = match serde_saphyr::from_multiple(text) {
        Ok(documents) => documents,
        Err(e) => {
            report.findings.push(Finding {
                file: file.to_string(),
                document: None,
                vault: None,
                severity: Severity::Error,
                item: None,
                message: format!("not YAML: {e}"),
            });
            return;
        }
    };

    for (index, document) in documents.into_iter().enumerate() {
        let place = Place {
            file,
            index,
            item: None,
        };
        match document {
            Some(Value::Object(list)) if list.get("kind").is_some_and(|k| k == "List") => {
                let items = list.get("items").and_then(Value::as_array);
                for (item, value) in items.into_iter().flatten().enumerate() {
                    let place = Place {
                        item: Some(item),
                        ..place
                    };
                    check_document(place, value, report);
                }
            }
            Some(document) => check_document(place, &document, report),
            None => {}
        }
    }
}

/// Where a document is: its file, its position, and its position in a `List`.
#[derive(Clone, Copy)]
struct Place<'a> {
    file: &'a str,
    index: usize,
    item: Option<usize>,
}

/// Checks one document when it is a Vault; other kinds are skipped.
fn check_document(place: Place<'_>, document: &Value, report: &mut Report) {
    // `read_vaults` tells Vaults from other kinds and names the field of a type error; JSON
    // text is YAML, so the document goes through it on its own.
    let text = serde_json::to_string(document).unwrap_or_default();
    let Ok(vaults) = read_vaults(&text) else {
        return;
    };
    for vault in vaults {
        report.vaults += 1;
        let finding = |vault: Option<String>, severity, message| Finding {
            file: place.file.to_string(),
            document: Some(place.index),
            item: place.item,
            vault,
            severity,
            message,
        };
        let vault = match vault.vault {
            Ok(vault) => vault,
            Err(problem) => {
                report.invalid += 1;
                report
                    .findings
                    .push(finding(None, Severity::Error, problem));
                continue;
            }
        };

        // The webhook defaults before it validates; so does the controller.
        let name = vault.metadata.name.clone();
        match vault_api::validate(&vault_api::default(&vault), None) {
            Ok(warnings) => report.findings.extend(
                warnings
                    .into_iter()
                    .map(|w| finding(name.clone(), Severity::Warning, w.to_string())),
            ),
            Err(errors) => {
                report.invalid += 1;
                report.findings.extend(
                    errors
                        .into_iter()
                        .map(|e| finding(name.clone(), Severity::Error, e.to_string())),
                );
            }
        }
    }
}

/// Reads and checks every file given: files, folders of `.yaml`, `.yml` and `.json` files
/// (their subfolders too with `recursive`), and `-` for standard input.
pub fn check_paths(paths: &[PathBuf], recursive: bool) -> Result<Report, ValidateError> {
    let mut report = Report::default();
    for path in paths {
        if path.as_os_str() == "-" {
            let mut text = String::new();
            std::io::stdin()
                .read_to_string(&mut text)
                .map_err(|source| read_error(path, source))?;
            check_text("-", &text, &mut report);
            continue;
        }
        for file in files_of(path, recursive, true)? {
            let text = std::fs::read_to_string(&file).map_err(|e| read_error(&file, e))?;
            check_text(&file.display().to_string(), &text, &mut report);
        }
    }
    Ok(report)
}

/// The file itself, or the manifest files of a folder in name order.
fn files_of(path: &Path, recursive: bool, top: bool) -> Result<Vec<PathBuf>, ValidateError> {
    if !path.is_dir() {
        return Ok(vec![path.to_path_buf()]);
    }
    if !top && !recursive {
        return Ok(Vec::new());
    }
    let entries = std::fs::read_dir(path).map_err(|e| read_error(path, e))?;
    let mut entries: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    entries.sort();

    let mut files = Vec::new();
    for entry in entries {
        if entry.is_dir() {
            files.extend(files_of(&entry, recursive, false)?);
        } else if entry
            .extension()
            .is_some_and(|e| e == "yaml" || e == "yml" || e == "json")
        {
            files.push(entry);
        }
    }
    Ok(files)
}

fn read_error(path: &Path, source: std::io::Error) -> ValidateError {
    ValidateError::Read {
        path: path.display().to_string(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_problem_names_file_document_and_field() {
        let text = "\
apiVersion: v1
kind: ConfigMap
metadata: {name: c}
---
apiVersion: vault.banzaicloud.com/v1alpha1
kind: Vault
metadata: {name: v}
spec:
  size: 2
  config: {storage: {file: {path: /data}}}
  unsealConfig: {options: {secretShares: 2, secretThreshold: 3}}
";
        let mut report = Report::default();
        check_text("v.yaml", text, &mut report);
        let lines: Vec<String> = report.findings.iter().map(|f| f.to_string()).collect();
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert!(lines[0].starts_with("v.yaml: document 1 (vault/v): error: spec.size: "));
        assert!(lines[1].starts_with(
            "v.yaml: document 1 (vault/v): error: spec.unsealConfig.options.secretThreshold: "
        ));
        assert_eq!((report.vaults, report.invalid), (1, 1));
    }

    #[test]
    fn items_of_a_list_are_checked() {
        let text = r#"{"apiVersion": "v1", "kind": "List", "items": [
            {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "v"}},
            {"apiVersion": "vault.banzaicloud.com/v1alpha1", "kind": "Vault",
             "metadata": {"name": "v"}, "spec": {"size": -1}}]}"#;
        let mut report = Report::default();
        check_text("list.json", text, &mut report);
        let first = report.findings.first().map(|f| f.to_string());
        assert_eq!(
            first.as_deref(),
            Some(
                "list.json: document 0, item 1 (vault/v): error: spec.size: -1 is negative; \
                 set 0 or more pods"
            )
        );
    }
}
