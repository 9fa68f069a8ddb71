//! The TLS side of the server: rustls with TLS 1.2 and 1.3 only, and a serving certificate
//! that can be swapped while connections are open, without a restart.

use std::sync::Arc;

use arc_swap::ArcSwapOption;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{ServerConfig, version};

use crate::error::Error;

/// The crypto provider every TLS object of the webhook uses (ring), named explicitly so
/// that a second provider in the dependency tree cannot make the choice ambiguous.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The certificate the server presents: read at every handshake, replaced by [`install`]
/// whenever it is renewed or its files change.
///
/// [`install`]: ServingCert::install
#[derive(Debug, Default)]
pub struct ServingCert {
    current: ArcSwapOption<CertifiedKey>,
    /// The PEM last installed, to tell a change from a reload of the same certificate.
    installed_pem: ArcSwapOption<(Vec<u8>, Vec<u8>)>,
}

impl ServingCert {
    /// A resolver with no certificate yet: handshakes fail until one is installed.
    pub fn new() -> Self {
        Self::default()
    }

    /// True once a certificate is installed: the readiness probe's answer.
    pub fn is_loaded(&self) -> bool {
        self.current.load().is_some()
    }

    /// Installs a certificate chain (leaf first) and its private key, both PEM. Returns
    /// false when they are the ones already installed. `what` names their origin in errors.
    pub fn install(&self, chain_pem: &[u8], key_pem: &[u8], what: &str) -> Result<bool, Error> {
        let same = self
            .installed_pem
            .load()
            .as_deref()
            .is_some_and(|(chain, key)| chain == chain_pem && key == key_pem);
        if same {
            return Ok(false);
        }

        let certified = certified_key(chain_pem, key_pem, what)?;
        self.current.store(Some(Arc::new(certified)));
        self.installed_pem
            .store(Some(Arc::new((chain_pem.to_vec(), key_pem.to_vec()))));
        Ok(true)
    }
}

impl ResolvesServerCert for ServingCert {
    fn resolve(&self, _client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.current.load_full()
    }
}

/// Reads a PEM chain and key into the form rustls serves, checking that they match.
pub fn certified_key(chain_pem: &[u8], key_pem: &[u8], what: &str) -> Result<CertifiedKey, Error> {
    let invalid = |reason: String| Error::Certificate {
        what: what.to_string(),
        reason,
    };
    let chain = CertificateDer::pem_slice_iter(chain_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| invalid(format!("certificate chain: {e}")))?;
    if chain.is_empty() {
        return Err(invalid("no certificate in the PEM".into()));
    }
    let key =
        PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| invalid(format!("private key: {e}")))?;
    CertifiedKey::from_der(chain, key, &provider()).map_err(|e| invalid(e.to_string()))
}

/// The server's TLS configuration: TLS 1.3 and 1.2 only, HTTP/2 and HTTP/1.1 offered,
/// the certificate taken from `serving` at each handshake.
pub fn server_config(serving: Arc<ServingCert>) -> Result<Arc<ServerConfig>, Error> {
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&version::TLS13, &version::TLS12])
        .map_err(Error::Tls)?
        .with_no_client_auth()
        .with_cert_resolver(serving);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}
