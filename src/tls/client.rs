//! The server-facing TLS configuration of a re-encrypt service: how the server's certificate is
//! verified, and one client session cache per worker *and* server, so backend handshakes resume
//! (a ticket from one server is never offered to another).

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{Resumption, WebPkiServerVerifier};
use rustls::crypto::CryptoProvider;
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

use super::server::TlsSetupError;

/// Backend sessions each worker keeps per server.
pub const CLIENT_SESSIONS_PER_SERVER: usize = 64;

/// How the server's certificate is checked.
#[derive(Debug, Clone)]
pub enum Verify {
    /// Against the trust anchors of a CA file.
    Ca(Arc<RootCertStore>),
    /// Against the operating system's trust store.
    System(Arc<RootCertStore>),
    /// Not at all (written explicitly in the config, logged as a warning at start). Handshake
    /// signatures are still checked, so the session is encrypted to whoever holds the key.
    None,
}

/// Loads the system trust store (what `verify = "system"` means).
pub fn system_roots() -> Result<RootCertStore, String> {
    let loaded = rustls_native_certs::load_native_certs();
    let mut roots = RootCertStore::empty();
    let (added, _) = roots.add_parsable_certificates(loaded.certs);
    if added == 0 {
        let why = loaded
            .errors
            .first()
            .map(|e| e.to_string())
            .unwrap_or_else(|| "no certificates found".into());
        return Err(format!(
            "the system trust store is empty or unreadable: {why}"
        ));
    }
    Ok(roots)
}

/// The certificate verifier `verify` stands for; `None` for `verify = "none"`.
pub fn verifier(
    verify: &Verify,
    provider: &Arc<CryptoProvider>,
) -> Result<Option<Arc<dyn ServerCertVerifier>>, TlsSetupError> {
    let webpki = |roots: &Arc<RootCertStore>| {
        WebPkiServerVerifier::builder_with_provider(roots.clone(), provider.clone())
            .build()
            .map_err(|e| TlsSetupError::Rustls(rustls::Error::General(e.to_string())))
    };
    Ok(match verify {
        Verify::Ca(roots) => Some(Arc::new(CaOrPinned {
            webpki: webpki(roots)?,
            roots: roots.clone(),
        })),
        Verify::System(roots) => Some(webpki(roots)?),
        Verify::None => None,
    })
}

/// A client config for connections from one worker to one server.
pub fn for_server(verify: &Verify) -> Result<Arc<ClientConfig>, TlsSetupError> {
    let provider = super::provider();
    let verifier = verifier(verify, &provider)?.unwrap_or_else(|| accept_any(&provider));
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(super::PROTOCOL_VERSIONS)?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    config.resumption = Resumption::in_memory_sessions(CLIENT_SESSIONS_PER_SERVER);
    Ok(Arc::new(config))
}

/// `verify = "ca"`: the server's chain must lead to a certificate of the `ca` file (WebPKI rules:
/// name, validity, key usage) — or the server's own certificate must *be* one of them (same
/// subject and key). The second rule is certificate pinning: it lets a self-signed server
/// certificate made with `openssl req -x509` (which marks it as a CA, refused as a server
/// certificate by WebPKI) be trusted by listing it in `ca`, as Exchange admins do.
#[derive(Debug)]
struct CaOrPinned {
    webpki: Arc<WebPkiServerVerifier>,
    roots: Arc<RootCertStore>,
}

impl CaOrPinned {
    fn is_pinned(&self, end_entity: &CertificateDer<'_>) -> bool {
        use x509_parser::prelude::*;
        let Ok((_, cert)) = X509Certificate::from_der(end_entity.as_ref()) else {
            return false;
        };
        let spki = cert.tbs_certificate.subject_pki.raw;
        let subject = cert.tbs_certificate.subject.as_raw();
        // Trust anchors keep the contents of the SEQUENCEs; the parsed raw values include the
        // tag and length in front.
        let same = |raw: &[u8], contents: &[u8]| {
            raw.ends_with(contents) && raw.len() - contents.len() <= 6
        };
        self.roots.roots.iter().any(|anchor| {
            same(spki, anchor.subject_public_key_info.as_ref())
                && same(subject, anchor.subject.as_ref())
        })
    }
}

impl ServerCertVerifier for CaOrPinned {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self.webpki.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        ) {
            Ok(ok) => Ok(ok),
            Err(e) if self.is_pinned(end_entity) => {
                tracing::trace!(error = %e, "server certificate accepted: it is listed in the ca file itself");
                Ok(ServerCertVerified::assertion())
            }
            Err(e) => Err(e),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.webpki.supported_verify_schemes()
    }
}

/// The verifier of `verify = "none"`.
pub fn accept_any(provider: &Arc<CryptoProvider>) -> Arc<dyn ServerCertVerifier> {
    Arc::new(AcceptAnyCertificate(provider.clone()))
}

/// `verify = "none"`: any certificate is accepted, handshake signatures are still verified.
#[derive(Debug)]
struct AcceptAnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
