//! Loading certificates and keys from PEM files, with errors that name the file and the fix.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::sign::CertifiedKey;
use rustls::RootCertStore;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// A certificate chain with its private key, checked to belong together.
#[derive(Debug, Clone)]
pub struct TlsCert {
    /// The PEM chain file it came from (end-entity certificate first).
    pub certificate: PathBuf,
    /// The PEM key file it came from.
    pub key: PathBuf,
    /// Chain and signing key, ready for rustls.
    pub certified: Arc<CertifiedKey>,
    /// DNS names of the end-entity certificate (subjectAltName, else the CN), lower case; used to
    /// select it by SNI. Wildcards keep their `*.` prefix.
    pub names: Vec<String>,
}

impl TlsCert {
    /// The DER bytes of the end-entity certificate.
    pub fn end_entity(&self) -> &CertificateDer<'static> {
        &self.certified.cert[0]
    }
}

/// Why a certificate, key or CA file could not be used. Each message names the file.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CertError {
    /// The file could not be read or holds no PEM object of the wanted kind.
    #[error("{path}: {reason}")]
    File {
        /// The file.
        path: PathBuf,
        /// What was wrong with it.
        reason: String,
    },
    /// The key is of a type or format rustls cannot sign with.
    #[error("{path}: unsupported private key: {reason}")]
    Key {
        /// The key file.
        path: PathBuf,
        /// What rustls said.
        reason: String,
    },
    /// The key is valid but belongs to another certificate.
    #[error("the key in {key} does not match the certificate in {certificate}")]
    Mismatch {
        /// The certificate file.
        certificate: PathBuf,
        /// The key file.
        key: PathBuf,
    },
}

/// Reads every certificate of a PEM file, in order.
pub fn load_chain(path: &Path) -> Result<Vec<CertificateDer<'static>>, CertError> {
    let file_err = |reason: String| CertError::File {
        path: path.to_path_buf(),
        reason,
    };
    let iter = CertificateDer::pem_file_iter(path).map_err(|e| file_err(pem_reason(&e)))?;
    let chain = iter
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| file_err(pem_reason(&e)))?;
    if chain.is_empty() {
        return Err(file_err("no \"BEGIN CERTIFICATE\" block found; expected a PEM certificate chain, end-entity first".into()));
    }
    Ok(chain)
}

/// Loads a chain and its key (PKCS#8, PKCS#1 RSA or SEC1 EC) and checks that they match.
pub fn load_cert(certificate: &Path, key: &Path) -> Result<TlsCert, CertError> {
    let chain = load_chain(certificate)?;
    let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| CertError::File {
        path: key.to_path_buf(),
        reason: pem_reason(&e).replace("no items found", "no private key found (expected BEGIN PRIVATE KEY, BEGIN RSA PRIVATE KEY or BEGIN EC PRIVATE KEY)"),
    })?;
    let signer = rustls::crypto::aws_lc_rs::sign::any_supported_type(&key_der).map_err(|e| {
        CertError::Key {
            path: key.to_path_buf(),
            reason: e.to_string(),
        }
    })?;
    let certified = CertifiedKey::new(chain, signer);
    match certified.keys_match() {
        Ok(()) => {}
        // Key types whose public key rustls cannot derive cannot be checked; accept them.
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {}
        Err(_) => {
            return Err(CertError::Mismatch {
                certificate: certificate.to_path_buf(),
                key: key.to_path_buf(),
            })
        }
    }
    let names = dns_names(&certified.cert[0]);
    Ok(TlsCert {
        certificate: certificate.to_path_buf(),
        key: key.to_path_buf(),
        certified: Arc::new(certified),
        names,
    })
}

/// Loads the trust anchors of a PEM CA file.
pub fn load_roots(path: &Path) -> Result<RootCertStore, CertError> {
    let chain = load_chain(path)?;
    let mut roots = RootCertStore::empty();
    let (added, ignored) = roots.add_parsable_certificates(chain);
    if added == 0 {
        return Err(CertError::File {
            path: path.to_path_buf(),
            reason: format!("none of its {ignored} certificate(s) can be used as a trust anchor"),
        });
    }
    Ok(roots)
}

fn pem_reason(e: &rustls_pki_types::pem::Error) -> String {
    match e {
        rustls_pki_types::pem::Error::Io(io) => format!("cannot read: {io}"),
        rustls_pki_types::pem::Error::NoItemsFound => "no items found".into(),
        other => format!("not valid PEM: {other:?}"),
    }
}

/// DNS names of a certificate: subjectAltName dNSName entries, else the subject CN.
pub fn dns_names(cert: &CertificateDer<'_>) -> Vec<String> {
    use x509_parser::prelude::*;
    let Ok((_, parsed)) = X509Certificate::from_der(cert.as_ref()) else {
        return Vec::new();
    };
    let mut names: Vec<String> = Vec::new();
    if let Ok(Some(san)) = parsed.subject_alternative_name() {
        for name in &san.value.general_names {
            if let GeneralName::DNSName(dns) = name {
                names.push(dns.to_ascii_lowercase());
            }
        }
    }
    if names.is_empty() {
        names.extend(
            parsed
                .subject()
                .iter_common_name()
                .filter_map(|cn| cn.as_str().ok())
                .map(str::to_ascii_lowercase),
        );
    }
    names
}
