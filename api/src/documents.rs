//! Reading `Vault` resources out of YAML files that may hold several documents of any kind,
//! as `kubectl apply -f` files do.

use serde_json::Value;

use crate::spec::Vault;

/// The API group of `Vault`.
pub const GROUP: &str = "vault.banzaicloud.com";

/// A `Vault` document read from a YAML stream.
#[derive(Debug)]
pub struct VaultDocument {
    /// Position of the document in the stream, from 0.
    pub index: usize,
    /// Position in the document's `items` when the document is a `List`.
    pub item: Option<usize>,
    /// The resource, or why it is not one (with the path of the field that did not parse).
    pub vault: Result<Vault, String>,
}

/// Reads every `Vault` document of a YAML stream, skipping documents of other kinds and
/// empty ones. Fails only when the text is not YAML.
pub fn read_vaults(yaml: &str) -> Result<Vec<VaultDocument>, serde_saphyr::Error> {
    let documents: Vec<Option<Value>> = serde_saphyr::from_multiple(yaml)?;
    let mut vaults = Vec::new();
    for (index, document) in documents.into_iter().enumerate() {
        let Some(document) = document else { continue };
        if document["kind"] == "List" {
            let items = document["items"].as_array().cloned().unwrap_or_default();
            for (item, object) in items.into_iter().enumerate().filter(|(_, o)| is_vault(o)) {
                vaults.push(VaultDocument {
                    index,
                    item: Some(item),
                    vault: parse(&object),
                });
            }
        } else if is_vault(&document) {
            vaults.push(VaultDocument {
                index,
                item: None,
                vault: parse(&document),
            });
        }
    }
    Ok(vaults)
}

/// Reads one `Vault`, naming the path of a field that does not parse.
fn parse(document: &Value) -> Result<Vault, String> {
    serde_path_to_error::deserialize(document).map_err(|e| {
        let path = e.path().to_string();
        let path = if path == "." {
            String::new()
        } else {
            format!("{path}: ")
        };
        format!("{path}{}", e.inner())
    })
}

fn is_vault(document: &Value) -> bool {
    let group = document["apiVersion"]
        .as_str()
        .and_then(|v| v.split('/').next());
    document["kind"] == "Vault" && group == Some(GROUP)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_vaults_among_other_kinds() {
        let yaml = "\
apiVersion: v1
kind: ServiceAccount
metadata: {name: vault}
---
apiVersion: vault.banzaicloud.com/v1alpha1
kind: Vault
metadata: {name: a}
spec: {size: 3}
---
---
apiVersion: vault.banzaicloud.com/v1alpha1
kind: Vault
metadata: {name: b}
spec: {size: three}
";
        let vaults = read_vaults(yaml).unwrap_or_default();
        assert_eq!(vaults.len(), 2);
        assert_eq!(vaults[0].index, 1);
        assert_eq!(
            vaults[0].vault.as_ref().map(|v| v.spec.size).ok(),
            Some(Some(3))
        );
        let error = vaults[1].vault.as_ref().err().cloned().unwrap_or_default();
        assert!(error.starts_with("spec.size: invalid type"), "{error}");
    }

    #[test]
    fn reads_the_items_of_a_list() {
        let yaml = "\
apiVersion: v1
kind: List
items:
- {apiVersion: v1, kind: ConfigMap, metadata: {name: c}}
- {apiVersion: vault.banzaicloud.com/v1alpha1, kind: Vault, metadata: {name: v}, spec: {}}
";
        let vaults = read_vaults(yaml).unwrap_or_default();
        assert_eq!(vaults.len(), 1);
        assert_eq!((vaults[0].index, vaults[0].item), (0, Some(1)));
    }

    #[test]
    fn text_that_is_not_yaml_is_an_error() {
        assert!(read_vaults("a: [b").is_err());
    }
}
