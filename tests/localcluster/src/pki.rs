//! The cluster's certificates: one CA, the API server's serving certificate, client
//! certificates for each component, and the service-account signing key.
//!
//! They are made once per cluster folder and kept, so that a restarted cluster keeps
//! accepting the kubeconfigs it printed before.

use std::fs;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};

use crate::Error;

/// A client identity: the certificate's common name is the user, its organisation the group.
#[derive(Clone, Copy, Debug)]
pub struct Identity {
    /// File stem of the certificate and key, such as `admin`.
    pub file: &'static str,
    /// User name, such as `system:kube-scheduler`.
    pub user: &'static str,
    /// Group, if any, such as `system:masters`.
    pub group: Option<&'static str>,
}

/// The identities the cluster's clients use.
pub const IDENTITIES: &[Identity] = &[
    Identity {
        file: "admin",
        user: "localcluster:admin",
        group: Some("system:masters"),
    },
    Identity {
        file: "controller-manager",
        user: "system:kube-controller-manager",
        group: None,
    },
    Identity {
        file: "scheduler",
        user: "system:kube-scheduler",
        group: None,
    },
    Identity {
        file: "node-agent",
        user: "localcluster:node-agent",
        group: None,
    },
    Identity {
        file: "apiserver-kubelet-client",
        user: "kube-apiserver",
        group: None,
    },
    Identity {
        file: "front-proxy-client",
        user: "front-proxy-client",
        group: None,
    },
];

/// Paths of the certificates in a cluster's `pki` folder.
#[derive(Clone, Debug)]
pub struct Pki {
    dir: PathBuf,
}

impl Pki {
    /// The PKI kept in `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// A file of the PKI folder, such as `ca.crt`.
    pub fn path(&self, file: &str) -> PathBuf {
        self.dir.join(file)
    }

    /// The CA certificate every component and client trusts.
    pub fn ca_cert(&self) -> PathBuf {
        self.path("ca.crt")
    }

    /// Makes whatever is missing. The API server's certificate names `api_hosts`.
    pub fn ensure(&self, api_hosts: &[String]) -> Result<(), Error> {
        fs::create_dir_all(&self.dir).map_err(|e| Error::io("creating", &self.dir, e))?;
        if !self.ca_cert().exists() || !self.path("ca.key").exists() {
            self.make_ca()?;
        }
        let issuer = self.issuer()?;

        if !self.path("apiserver.crt").exists() {
            self.issue(
                "apiserver",
                "kube-apiserver",
                None,
                api_hosts,
                true,
                &issuer,
            )?;
        }
        for id in IDENTITIES {
            if !self.path(&format!("{}.crt", id.file)).exists() {
                self.issue(id.file, id.user, id.group, &[], false, &issuer)?;
            }
        }
        if !self.path("sa.key").exists() {
            let key = KeyPair::generate().map_err(|e| Error::Pki("service-account key", e))?;
            write_private(&self.path("sa.key"), &key.serialize_pem())?;
            write(&self.path("sa.pub"), &key.public_key_pem())?;
        }
        Ok(())
    }

    fn make_ca(&self) -> Result<(), Error> {
        let key = KeyPair::generate().map_err(|e| Error::Pki("CA key", e))?;
        let params = ca_params()?;
        let cert = params
            .self_signed(&key)
            .map_err(|e| Error::Pki("CA certificate", e))?;
        write_private(&self.path("ca.key"), &key.serialize_pem())?;
        write(&self.ca_cert(), &cert.pem())
    }

    fn issuer(&self) -> Result<Issuer<'static, KeyPair>, Error> {
        let key_pem = read(&self.path("ca.key"))?;
        let key = KeyPair::from_pem(&key_pem).map_err(|e| Error::Pki("reading the CA key", e))?;
        Ok(Issuer::new(ca_params()?, key))
    }

    fn issue(
        &self,
        file: &str,
        user: &str,
        group: Option<&str>,
        hosts: &[String],
        server: bool,
        issuer: &Issuer<'_, KeyPair>,
    ) -> Result<(), Error> {
        let context = "issuing a certificate";
        let mut params =
            CertificateParams::new(Vec::<String>::new()).map_err(|e| Error::Pki(context, e))?;
        params.distinguished_name.push(DnType::CommonName, user);
        if let Some(group) = group {
            params
                .distinguished_name
                .push(DnType::OrganizationName, group);
        }
        params.subject_alt_names = hosts.iter().map(|h| san(h)).collect::<Result<_, _>>()?;
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![if server {
            ExtendedKeyUsagePurpose::ServerAuth
        } else {
            ExtendedKeyUsagePurpose::ClientAuth
        }];

        let key = KeyPair::generate().map_err(|e| Error::Pki(context, e))?;
        let cert = params
            .signed_by(&key, issuer)
            .map_err(|e| Error::Pki(context, e))?;
        write_private(&self.path(&format!("{file}.key")), &key.serialize_pem())?;
        write(&self.path(&format!("{file}.crt")), &cert.pem())
    }
}

/// Issues a serving certificate for `hosts` from the CA in `pki`, for test servers the
/// cluster calls (webhooks). Returns the certificate and key in PEM.
pub fn issue_serving_cert(pki: &Pki, hosts: &[String]) -> Result<(String, String), Error> {
    let context = "issuing a serving certificate";
    let issuer = pki.issuer()?;
    let mut params =
        CertificateParams::new(Vec::<String>::new()).map_err(|e| Error::Pki(context, e))?;
    params.subject_alt_names = hosts.iter().map(|h| san(h)).collect::<Result<_, _>>()?;
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let key = KeyPair::generate().map_err(|e| Error::Pki(context, e))?;
    let cert = params
        .signed_by(&key, &issuer)
        .map_err(|e| Error::Pki(context, e))?;
    Ok((cert.pem(), key.serialize_pem()))
}

fn ca_params() -> Result<CertificateParams, Error> {
    let mut params =
        CertificateParams::new(Vec::<String>::new()).map_err(|e| Error::Pki("CA", e))?;
    params
        .distinguished_name
        .push(DnType::CommonName, "localcluster-ca");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    Ok(params)
}

fn san(host: &str) -> Result<SanType, Error> {
    match host.parse::<IpAddr>() {
        Ok(ip) => Ok(SanType::IpAddress(ip)),
        Err(_) => host
            .to_string()
            .try_into()
            .map(SanType::DnsName)
            .map_err(|e| Error::Pki("naming a host in a certificate", e)),
    }
}

pub(crate) fn read(path: &Path) -> Result<String, Error> {
    fs::read_to_string(path).map_err(|e| Error::io("reading", path, e))
}

fn write(path: &Path, text: &str) -> Result<(), Error> {
    fs::write(path, text).map_err(|e| Error::io("writing", path, e))
}

fn write_private(path: &Path, text: &str) -> Result<(), Error> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| Error::io("writing", path, e))?;
    std::io::Write::write_all(&mut file, text.as_bytes()).map_err(|e| Error::io("writing", path, e))
}
