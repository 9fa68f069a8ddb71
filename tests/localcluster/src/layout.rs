use std::path::{Path, PathBuf};

use crate::Error;

/// Where a cluster keeps its files, and the names of what it makes on the host.
#[derive(Clone, Debug)]
pub struct Layout {
    name: String,
    dir: PathBuf,
}

impl Layout {
    /// The cluster `name`, kept in `dir`, or by default in
    /// `$LOCALCLUSTER_HOME/<name>` (`~/.cache/localcluster/clusters/<name>`).
    pub fn new(name: &str, dir: Option<PathBuf>) -> Result<Self, Error> {
        let valid = !name.is_empty()
            && name.len() <= 20
            && name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            && !looks_like_a_pod_netns(name);
        if !valid {
            return Err(Error::BadName(name.to_string()));
        }
        let dir = dir.unwrap_or_else(|| clusters_home().join(name));
        Ok(Self {
            name: name.to_string(),
            dir,
        })
    }

    /// The cluster's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The cluster's folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The network namespace the cluster runs in.
    pub fn netns(&self) -> String {
        format!("lc-{}", self.name)
    }

    /// The admin kubeconfig for use on the host, through the loopback forward.
    pub fn kubeconfig(&self) -> PathBuf {
        self.dir.join("kubeconfig")
    }

    /// The admin kubeconfig for use inside the cluster's network namespace.
    pub fn inside_kubeconfig(&self) -> PathBuf {
        self.dir.join("kubeconfig.inside")
    }

    /// The folder of the cluster's certificates.
    pub fn pki_dir(&self) -> PathBuf {
        self.dir.join("pki")
    }

    /// The folder of component logs.
    pub fn logs_dir(&self) -> PathBuf {
        self.dir.join("logs")
    }

    /// The log of one component.
    pub fn log(&self, component: &str) -> PathBuf {
        self.logs_dir().join(format!("{component}.log"))
    }

    /// The folder of pid files, one for every process the cluster started.
    pub fn pids_dir(&self) -> PathBuf {
        self.dir.join("pids")
    }

    /// The file the loopback forward writes its port to.
    pub fn forward_port_file(&self) -> PathBuf {
        self.dir.join("forward.port")
    }
}

/// Whether `lc-<name>` would be a pod namespace of another cluster: cluster `a`'s pods
/// live in `lc-a-p-<n>-<n>`, so a cluster named `a-p-1-2` would share one.
fn looks_like_a_pod_netns(name: &str) -> bool {
    let parts: Vec<&str> = name.split('-').collect();
    let number = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    matches!(parts.as_slice(), [.., first, "p", a, b] if !first.is_empty() && number(a) && number(b))
}

/// The folder that holds every cluster's folder.
pub fn clusters_home() -> PathBuf {
    if let Some(home) = std::env::var_os("LOCALCLUSTER_HOME") {
        return PathBuf::from(home);
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| "/root".into());
    home.join(".cache/localcluster/clusters")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_may_not_be_another_clusters_pod_namespace() {
        for good in ["dev", "lc", "test-1", "a-p", "a-p-1", "p-1-2", "a-p-1-2x"] {
            assert!(Layout::new(good, None).is_ok(), "{good}");
        }
        for bad in [
            "",
            "A",
            "a_b",
            "a-p-1-2",
            "x-y-p-10-200",
            "a-much-too-long-name-here",
        ] {
            assert!(Layout::new(bad, None).is_err(), "{bad}");
        }
    }
}
