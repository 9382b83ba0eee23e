//! Certificates generated with rcgen: a CA ([`Ca`]), leaves it signs with chosen names and
//! validity, self-signed leaves ([`Leaf`]), and [`Pki`], a temporary directory with a CA and the
//! service's front certificate written out as files for a config.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::sign::CertifiedKey;
use rustls::RootCertStore;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use sha2::{Digest as _, Sha256};

use super::FRONT_NAME;

/// How long a leaf certificate is valid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Validity {
    /// From 1975 to 4096 (rcgen's default): valid now.
    Current,
    /// From 2020-01-01 to 2021-01-01: expired now.
    Expired,
}

/// A certificate authority that signs leaves.
pub struct Ca {
    cert: rcgen::Certificate,
    key: rcgen::KeyPair,
}

impl Ca {
    /// A new CA (ECDSA P-256) whose subject CN is `name`.
    pub fn new(name: &str) -> Ca {
        let key = rcgen::KeyPair::generate().expect("CA key");
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
            rcgen::KeyUsagePurpose::DigitalSignature,
        ];
        let cert = params.self_signed(&key).expect("CA certificate");
        Ca { cert, key }
    }

    /// The CA certificate in PEM.
    pub fn pem(&self) -> String {
        self.cert.pem()
    }

    /// A root store holding only this CA.
    pub fn roots(&self) -> Arc<RootCertStore> {
        let mut roots = RootCertStore::empty();
        roots.add(self.cert.der().clone()).expect("add CA root");
        Arc::new(roots)
    }

    /// A leaf for `names` (DNS names or IP literals), valid now, signed by this CA.
    pub fn leaf(&self, names: &[&str]) -> Leaf {
        self.leaf_with(names, Validity::Current)
    }

    /// A leaf for `names` with the given validity, signed by this CA.
    pub fn leaf_with(&self, names: &[&str], validity: Validity) -> Leaf {
        let key = rcgen::KeyPair::generate().expect("leaf key");
        let cert = leaf_params(names, validity)
            .signed_by(&key, &self.cert, &self.key)
            .expect("sign leaf");
        Leaf::new(cert, key)
    }
}

fn leaf_params(names: &[&str], validity: Validity) -> rcgen::CertificateParams {
    let mut params =
        rcgen::CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
            .expect("leaf params");
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.distinguished_name.push(
        rcgen::DnType::CommonName,
        names.first().copied().unwrap_or("leaf"),
    );
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    params.key_usages = vec![rcgen::KeyUsagePurpose::DigitalSignature];
    if validity == Validity::Expired {
        params.not_before = rcgen::date_time_ymd(2020, 1, 1);
        params.not_after = rcgen::date_time_ymd(2021, 1, 1);
    }
    params
}

/// An end-entity certificate with its key.
#[derive(Clone)]
pub struct Leaf {
    /// The certificate in DER.
    pub der: CertificateDer<'static>,
    /// The certificate in PEM.
    pub cert_pem: String,
    /// The key in PKCS#8 PEM.
    pub key_pem: String,
    key_der: Vec<u8>,
}

impl Leaf {
    fn new(cert: rcgen::Certificate, key: rcgen::KeyPair) -> Leaf {
        Leaf {
            der: cert.der().clone(),
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            key_der: key.serialize_der(),
        }
    }

    /// A self-signed leaf for `names` (trusted by no CA of the tests).
    pub fn self_signed(names: &[&str]) -> Leaf {
        let key = rcgen::KeyPair::generate().expect("leaf key");
        let cert = leaf_params(names, Validity::Current)
            .self_signed(&key)
            .expect("self-signed leaf");
        Leaf::new(cert, key)
    }

    /// Chain (this certificate alone) and signing key, for a rustls server.
    pub fn certified_key(&self) -> Arc<CertifiedKey> {
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key_der.clone()));
        let signer = rustls::crypto::aws_lc_rs::sign::any_supported_type(&key).expect("signer");
        Arc::new(CertifiedKey::new(vec![self.der.clone()], signer))
    }

    /// RFC 5929 `tls-server-end-point` of this certificate in hex, as ringmaster logs it
    /// (`sha256:<hex>`): rcgen signs with ECDSA P-256/SHA-256, so the hash is SHA-256 of the DER.
    pub fn end_point_hash(&self) -> String {
        let digest = Sha256::digest(self.der.as_ref());
        let mut hex = String::from("sha256:");
        for b in digest {
            let _ = write!(hex, "{b:02x}");
        }
        hex
    }
}

/// The two files of a certificate for a config: PEM chain and PEM key.
#[derive(Debug, Clone)]
pub struct CertFiles {
    /// The PEM certificate chain.
    pub cert: PathBuf,
    /// The PEM private key.
    pub key: PathBuf,
}

/// A temporary directory with a CA, the service's front certificate (for [`FRONT_NAME`]) and
/// its CA file written out, where tests write more files.
pub struct Pki {
    dir: tempfile::TempDir,
    /// The CA that signs the test's certificates.
    pub ca: Ca,
    /// The CA certificate's PEM file (for `backend_tls.ca`).
    pub ca_file: PathBuf,
    /// The service's default certificate, for [`FRONT_NAME`].
    pub front: Leaf,
    /// Its files.
    pub front_files: CertFiles,
}

impl Pki {
    /// A CA, a front certificate and their files in a new temporary directory.
    pub fn new() -> Pki {
        let dir = tempfile::tempdir().expect("tempdir");
        let ca = Ca::new("ringmaster test CA");
        let front = ca.leaf(&[FRONT_NAME]);
        let mut pki = Pki {
            ca_file: PathBuf::new(),
            front_files: CertFiles {
                cert: PathBuf::new(),
                key: PathBuf::new(),
            },
            dir,
            ca,
            front,
        };
        pki.ca_file = pki.write("ca.pem", &pki.ca.pem());
        pki.front_files = pki.files(&pki.front.clone(), "front");
        pki
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Writes `contents` to `name` in the directory; its absolute path.
    pub fn write(&self, name: &str, contents: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, contents).unwrap_or_else(|e| panic!("write {path:?}: {e}"));
        path
    }

    /// Writes `leaf` as `<stem>.pem` and `<stem>.key`.
    pub fn files(&self, leaf: &Leaf, stem: &str) -> CertFiles {
        CertFiles {
            cert: self.write(&format!("{stem}.pem"), &leaf.cert_pem),
            key: self.write(&format!("{stem}.key"), &leaf.key_pem),
        }
    }
}
