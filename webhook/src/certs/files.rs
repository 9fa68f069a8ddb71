//! Certificates on disk (a mounted cert-manager Secret, or any other source), reloaded
//! when their contents change: Kubernetes swaps a mounted Secret's files through a symlink,
//! so the contents, not the modification times, are compared.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tracing::{info, warn};

use crate::error::Error;
use crate::tls::ServingCert;

/// The serving certificate and key files.
#[derive(Clone, Debug)]
pub struct CertFiles {
    /// The certificate chain, PEM, serving certificate first.
    pub cert: PathBuf,
    /// The private key, PEM.
    pub key: PathBuf,
}

impl CertFiles {
    /// Reads both files and installs them when they differ from what is served. Returns
    /// true when a new certificate was installed.
    pub fn load(&self, serving: &ServingCert) -> Result<bool, Error> {
        let cert = read(&self.cert)?;
        let key = read(&self.key)?;
        let what = format!("{} and {}", self.cert.display(), self.key.display());
        serving.install(&cert, &key, &what)
    }

    /// Reloads the files every `interval` until the task is dropped.
    pub async fn watch(self, serving: Arc<ServingCert>, interval: Duration) {
        loop {
            match self.load(&serving) {
                Ok(true) => info!(cert = %self.cert.display(), "serving certificate loaded"),
                Ok(false) => {}
                Err(e) => warn!(error = %e, kind = e.label(), "reloading the serving certificate"),
            }
            tokio::time::sleep(interval).await;
        }
    }
}

fn read(path: &Path) -> Result<Vec<u8>, Error> {
    std::fs::read(path).map_err(|source| Error::ReadFile {
        path: path.to_path_buf(),
        source,
    })
}
