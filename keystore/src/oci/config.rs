//! The OCI configuration file of the CLI and SDKs: an INI file whose profile names the user,
//! the API key's fingerprint and PEM file, the tenancy and the region
//! (<https://docs.oracle.com/en-us/iaas/Content/API/Concepts/sdkconfig.htm>).

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use rsa::PrivateKey;
use rsa::pkcs1::DecodeRsaPrivateKey;
use rsa::pkcs8::DecodePrivateKey;
use zeroize::Zeroizing;

/// One profile of an OCI configuration file, with its API key read.
pub struct OciConfig {
    /// OCID of the user.
    pub user: String,
    /// Fingerprint of the API key, as the console shows it.
    pub fingerprint: String,
    /// OCID of the tenancy.
    pub tenancy: String,
    /// Region, such as `us-ashburn-1`.
    pub region: String,
    pub(crate) key: PrivateKey,
}

impl fmt::Debug for OciConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OciConfig")
            .field("user", &self.user)
            .field("fingerprint", &self.fingerprint)
            .field("tenancy", &self.tenancy)
            .field("region", &self.region)
            .finish_non_exhaustive()
    }
}

impl OciConfig {
    /// Where the SDKs look: `OCI_CONFIG_FILE`, else `OCI_CLI_CONFIG_FILE`, else
    /// `~/.oci/config`.
    pub fn default_path() -> PathBuf {
        ["OCI_CONFIG_FILE", "OCI_CLI_CONFIG_FILE"]
            .iter()
            .filter_map(|name| std::env::var(name).ok())
            .find(|value| !value.is_empty())
            .map(|path| expand_home(&path))
            .unwrap_or_else(|| expand_home("~/.oci/config"))
    }

    /// `profile` (such as `DEFAULT`) of the file at `path`, and the key its `key_file` names.
    /// Errors name the file and the setting, never a value of the key.
    pub fn load(path: &Path, profile: &str) -> Result<Self, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|error| format!("reading {}: {error}", path.display()))?;
        let profiles = parse_ini(&text);
        let Some(settings) = profiles.get(profile) else {
            return Err(format!("{} has no profile [{profile}]", path.display()));
        };
        let setting = |name: &str| {
            settings
                .get(name)
                .filter(|value| !value.is_empty())
                .cloned()
                .ok_or_else(|| format!("{} [{profile}] has no {name}", path.display()))
        };
        if settings.contains_key("pass_phrase") {
            // TODO(encrypted API keys): decrypt a PKCS#8 key with pass_phrase (rsa's pkcs5).
            return Err(format!(
                "{} [{profile}]: keys with a pass_phrase are not supported yet",
                path.display()
            ));
        }

        let key_file = expand_home(&setting("key_file")?);
        Ok(Self {
            user: setting("user")?,
            fingerprint: setting("fingerprint")?,
            tenancy: setting("tenancy")?,
            region: setting("region")?,
            key: read_key(&key_file)?,
        })
    }
}

/// The RSA key in a PEM file, PKCS#8 (`BEGIN PRIVATE KEY`, as the console makes) or PKCS#1
/// (`BEGIN RSA PRIVATE KEY`, as `oci setup keys` makes).
fn read_key(path: &Path) -> Result<PrivateKey, String> {
    let pem = std::fs::read_to_string(path)
        .map(Zeroizing::new)
        .map_err(|error| format!("reading the API key {}: {error}", path.display()))?;
    PrivateKey::from_pkcs8_pem(&pem)
        .or_else(|_| PrivateKey::from_pkcs1_pem(&pem))
        .map_err(|_| {
            format!(
                "the API key {} is not an unencrypted RSA key in PEM (PKCS#8 or PKCS#1)",
                path.display()
            )
        })
}

fn expand_home(path: &str) -> PathBuf {
    match (path.strip_prefix("~/"), std::env::var_os("HOME")) {
        (Some(rest), Some(home)) => Path::new(&home).join(rest),
        _ => PathBuf::from(path),
    }
}

/// The sections of an INI text and their `name=value` settings. Comments start with `#` or
/// `;`; as in the SDKs, settings of `[DEFAULT]` are inherited by every other profile.
fn parse_ini(text: &str) -> BTreeMap<String, BTreeMap<String, String>> {
    let mut sections: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    let mut current = String::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            current = name.trim().to_string();
            sections.entry(current.clone()).or_default();
        } else if let Some((name, value)) = line.split_once('=') {
            sections
                .entry(current.clone())
                .or_default()
                .insert(name.trim().to_string(), value.trim().to_string());
        }
    }

    let defaults = sections.get("DEFAULT").cloned().unwrap_or_default();
    for (name, settings) in sections.iter_mut() {
        if name != "DEFAULT" {
            for (key, value) in &defaults {
                settings.entry(key.clone()).or_insert_with(|| value.clone());
            }
        }
    }
    sections
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profiles_inherit_the_default_one() {
        let text = "# made by oci setup config\n[DEFAULT]\nuser=ocid1.user.oc1..a\n\
                    region = us-ashburn-1\n\n[OTHER]\n; a comment\nregion=eu-frankfurt-1\n";
        let profiles = parse_ini(text);
        let get = |profile: &str, name: &str| {
            profiles
                .get(profile)
                .and_then(|settings| settings.get(name))
                .cloned()
        };
        assert_eq!(get("DEFAULT", "region").as_deref(), Some("us-ashburn-1"));
        assert_eq!(get("OTHER", "region").as_deref(), Some("eu-frankfurt-1"));
        assert_eq!(get("OTHER", "user").as_deref(), Some("ocid1.user.oc1..a"));
    }

    #[test]
    fn a_missing_setting_is_named() -> Result<(), Box<dyn std::error::Error>> {
        let folder = tempfile::tempdir()?;
        let path = folder.path().join("config");
        std::fs::write(
            &path,
            "[DEFAULT]\nuser=u\nfingerprint=f\ntenancy=t\nregion=r\n",
        )?;
        let error = OciConfig::load(&path, "DEFAULT").err().unwrap_or_default();
        assert_eq!(
            error,
            format!("{} [DEFAULT] has no key_file", path.display())
        );
        let error = OciConfig::load(&path, "PROD").err().unwrap_or_default();
        assert_eq!(error, format!("{} has no profile [PROD]", path.display()));
        Ok(())
    }
}
