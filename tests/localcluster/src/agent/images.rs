//! The image table: how each container image runs on the local cluster, as a host program.
//!
//! Vault and OpenBao images run OpenBao's `bao` the way their image entrypoint would; this
//! project's images run the binaries `cargo build` made; small utility images run their
//! command with the host's tools. `localcluster up --images FILE` adds or overrides entries.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::Error;

/// The built-in table. `${TARGET}` is Cargo's target folder (debug profile).
pub const DEFAULT_TABLE: &str = r#"
images:
  - names: [hashicorp/vault, vault, openbao/openbao, openbao, quay.io/openbao/openbao,
            ghcr.io/openbao/openbao, docker.io/hashicorp/vault]
    run: vault
  - names: [busybox, alpine, debian, ubuntu, docker.io/library/busybox]
    run: host
  - names: [vault-operator/vault-controller, ghcr.io/vault-operator/vault-controller]
    run: {program: "${TARGET}/vault-controller"}
  - names: [vault-operator/vault-webhook, ghcr.io/vault-operator/vault-webhook]
    run: {program: "${TARGET}/vault-webhook"}
"#;

/// The image table.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct ImageTable {
    /// Entries; a later entry naming the same image wins.
    pub images: Vec<ImageEntry>,
}

/// Images that run the same way.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ImageEntry {
    /// Image names without tag or digest.
    pub names: Vec<String>,
    /// How they run.
    pub run: Run,
}

/// How an image runs.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Run {
    /// OpenBao's `bao`, entered the way the Vault image's entrypoint does.
    Vault,
    /// The container's command, found on the host's PATH.
    Host,
    /// A host program; the container's `command`, if any, is ignored, its `args` passed on.
    Program(String),
}

impl ImageTable {
    /// The built-in table, with `extra` (a YAML file of the same shape) laid over it.
    pub fn load(extra: Option<&Path>, target_dir: &Path) -> Result<Self, Error> {
        let parse = |text: &str, what: &str| -> Result<ImageTable, Error> {
            serde_saphyr::from_str(text).map_err(|e| Error::Command {
                command: format!("reading the image table {what}"),
                reason: e.to_string(),
            })
        };
        let mut table = parse(DEFAULT_TABLE, "built in")?;
        if let Some(path) = extra {
            let text = std::fs::read_to_string(path).map_err(|e| Error::io("reading", path, e))?;
            table
                .images
                .extend(parse(&text, &path.display().to_string())?.images);
        }
        let target = target_dir.display().to_string();
        for entry in &mut table.images {
            if let Run::Program(program) = &mut entry.run {
                *program = program.replace("${TARGET}", &target);
            }
        }
        Ok(table)
    }

    /// How `image` runs, if the table knows it.
    pub fn lookup(&self, image: &str) -> Option<&Run> {
        let name = image_name(image);
        self.images
            .iter()
            .rev()
            .find(|e| e.names.iter().any(|n| n == name))
            .map(|e| &e.run)
    }
}

/// An image reference without its tag or digest: `hashicorp/vault:1.2` gives
/// `hashicorp/vault`; a registry port (`host:5000/x`) is kept.
pub fn image_name(image: &str) -> &str {
    let image = image.split('@').next().unwrap_or(image);
    match image.rsplit_once(':') {
        Some((name, tag)) if !tag.contains('/') => name,
        _ => image,
    }
}

/// The program and arguments a container runs, from its image's entry and its spec.
pub fn argv(
    run: &Run,
    command: &[String],
    args: &[String],
    bao: &Path,
) -> Result<Vec<String>, String> {
    match run {
        Run::Vault => Ok(vault_argv(command, args, bao)),
        Run::Program(program) => {
            let mut argv = vec![program.clone()];
            argv.extend(args.iter().cloned());
            Ok(argv)
        }
        Run::Host => {
            let mut words: Vec<String> = command.iter().chain(args).cloned().collect();
            if words.is_empty() {
                words.push("sh".into());
            }
            let program = find_on_host(&words[0])
                .ok_or_else(|| format!("{} is not a program on this machine", words[0]))?;
            words[0] = program.display().to_string();
            Ok(words)
        }
    }
}

/// The Vault image's entrypoint: `server` runs the server with the image's config folder,
/// `vault ...` (or `bao ...`) runs the CLI, and anything else runs as given.
fn vault_argv(command: &[String], args: &[String], bao: &Path) -> Vec<String> {
    let bao = bao.display().to_string();
    let words: Vec<String> = command.iter().chain(args).cloned().collect();
    let Some(first) = words.first() else {
        return vec![bao, "server".into(), "-dev".into()];
    };
    let rest = &words[1..];

    let is_cli = |w: &str| {
        matches!(
            Path::new(w).file_name().and_then(|f| f.to_str()),
            Some("vault" | "bao")
        )
    };
    if is_cli(first) {
        return std::iter::once(bao).chain(rest.iter().cloned()).collect();
    }
    if first == "server" {
        let mut argv = vec![bao, "server".into()];
        let dev = rest.iter().any(|a| a == "-dev");
        let has_config = rest.iter().any(|a| a.starts_with("-config"));
        let has_listen = rest.iter().any(|a| a.starts_with("-dev-listen-address"));
        if dev && !has_listen {
            argv.push("-dev-listen-address=0.0.0.0:8200".into());
        }
        if !dev && !has_config {
            argv.push("-config=/vault/config".into());
        }
        argv.extend(rest.iter().cloned());
        return argv;
    }
    if first.starts_with('-') {
        return std::iter::once(bao).chain(words).collect();
    }
    // A shell or another program of the image: run it from the host.
    match find_on_host(first) {
        Some(program) => std::iter::once(program.display().to_string())
            .chain(rest.iter().cloned())
            .collect(),
        None => words,
    }
}

/// Finds a program on the host's PATH (an absolute path is taken as it is).
pub fn find_on_host(program: &str) -> Option<PathBuf> {
    if program.starts_with('/') {
        return Some(PathBuf::from(program));
    }
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/local/bin:/usr/bin:/bin".into());
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn names_without_tags() {
        assert_eq!(image_name("hashicorp/vault:2.0.1"), "hashicorp/vault");
        assert_eq!(image_name("busybox"), "busybox");
        assert_eq!(image_name("registry:5000/x/y:1"), "registry:5000/x/y");
        assert_eq!(image_name("registry:5000/x/y"), "registry:5000/x/y");
        assert_eq!(image_name("a/b@sha256:abc"), "a/b");
    }

    #[test]
    fn vault_images_run_bao_as_their_entrypoint_would() {
        let bao = Path::new("/opt/bao");
        let server = vault_argv(&[], &words(&["server", "-config=/etc/v"]), bao);
        assert_eq!(server, words(&["/opt/bao", "server", "-config=/etc/v"]));
        let default_config = vault_argv(&[], &words(&["server"]), bao);
        assert_eq!(
            default_config,
            words(&["/opt/bao", "server", "-config=/vault/config"])
        );
        let dev = vault_argv(&[], &words(&["server", "-dev"]), bao);
        assert_eq!(
            dev,
            words(&[
                "/opt/bao",
                "server",
                "-dev-listen-address=0.0.0.0:8200",
                "-dev"
            ])
        );
        let cli = vault_argv(&words(&["vault"]), &words(&["status"]), bao);
        assert_eq!(cli, words(&["/opt/bao", "status"]));
    }

    #[test]
    fn the_table_maps_images_and_takes_overrides() {
        let table = ImageTable::load(None, Path::new("/t")).unwrap_or_default();
        assert!(matches!(
            table.lookup("hashicorp/vault:2.0.1"),
            Some(Run::Vault)
        ));
        assert!(matches!(table.lookup("openbao/openbao"), Some(Run::Vault)));
        assert!(matches!(table.lookup("busybox:1.36"), Some(Run::Host)));
        assert!(table.lookup("nginx").is_none());
        let controller = table.lookup("vault-operator/vault-controller:dev");
        assert!(matches!(controller, Some(Run::Program(p)) if p == "/t/vault-controller"));
    }
}
