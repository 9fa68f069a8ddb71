//! Embeds every manifest of `manifests/` in the binary for `kubectl vault install`.
//!
//! The folder is read when the plugin is built, so manifests added there later are embedded
//! with no change here; one that does not exist yet is simply not embedded.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// The apply order of the manifests we know; any others follow in name order.
const ORDER: &[&str] = &["crd.yaml", "rbac.yaml", "controller.yaml", "webhook.yaml"];

fn main() {
    let manifest_dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default());
    let folder = manifest_dir.join("..").join("manifests");
    println!("cargo::rerun-if-changed={}", folder.display());

    let mut files: Vec<PathBuf> = std::fs::read_dir(&folder)
        .map(|entries| entries.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    files.retain(|f| f.extension().is_some_and(|e| e == "yaml" || e == "yml"));
    files.sort_by_key(|f| {
        let name = file_name(f);
        let rank = ORDER.iter().position(|o| *o == name).unwrap_or(ORDER.len());
        (rank, name)
    });

    let mut code = String::from(
        "/// The manifests of `manifests/`, by file name, in apply order.\n\
         pub const MANIFESTS: &[(&str, &str)] = &[\n",
    );
    for file in &files {
        let path = file.canonicalize().unwrap_or_else(|_| file.clone());
        let _ = writeln!(
            code,
            "    ({:?}, include_str!({:?})),",
            file_name(file),
            path
        );
    }
    code.push_str("];\n");

    let out = PathBuf::from(std::env::var_os("OUT_DIR").unwrap_or_default());
    if let Err(e) = std::fs::write(out.join("manifests.rs"), code) {
        println!("cargo::error=writing manifests.rs: {e}");
    }
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}
