//! The certificates of the `https` checks: [`Pki`] is a test CA that issues certificates for
//! `NAME` and the rustls server configs that present them.

use std::sync::Arc;

use rustls::{RootCertStore, ServerConfig};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

use super::NAME;

/// A test CA and certificates it issues for [`NAME`].
pub struct Pki {
    ca: rcgen::Certificate,
    ca_key: rcgen::KeyPair,
}

impl Pki {
    /// A new CA whose subject CN is `cn`.
    pub fn new(cn: &str) -> Pki {
        let ca_key = rcgen::KeyPair::generate().expect("CA key");
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
        ];
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, cn);
        let ca = params.self_signed(&ca_key).expect("CA cert");
        Pki { ca, ca_key }
    }

    /// Roots that trust this CA only.
    pub fn roots(&self) -> Arc<RootCertStore> {
        let mut roots = RootCertStore::empty();
        roots.add(self.ca.der().clone()).expect("add CA");
        Arc::new(roots)
    }

    /// A new certificate for [`NAME`] and a server config presenting it.
    pub fn server(&self) -> (CertificateDer<'static>, Arc<ServerConfig>) {
        let key = rcgen::KeyPair::generate().expect("key");
        let params = rcgen::CertificateParams::new(vec![NAME.to_string()]).expect("params");
        let cert = params
            .signed_by(&key, &self.ca, &self.ca_key)
            .expect("issue");
        let der = cert.der().clone();
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_no_client_auth()
            .with_single_cert(vec![der.clone()], key)
            .expect("server config");
        (der, Arc::new(config))
    }
}
