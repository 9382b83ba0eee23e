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

/// A client config for connections from one worker to one server.
pub fn for_server(verify: &Verify) -> Result<Arc<ClientConfig>, TlsSetupError> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?;
    let mut config = match verify {
        Verify::Ca(roots) | Verify::System(roots) => {
            let verifier = WebPkiServerVerifier::builder_with_provider(roots.clone(), provider)
                .build()
                .map_err(|e| rustls::Error::General(e.to_string()))?;
            builder.with_webpki_verifier(verifier).with_no_client_auth()
        }
        Verify::None => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate(provider)))
            .with_no_client_auth(),
    };
    config.resumption = Resumption::in_memory_sessions(CLIENT_SESSIONS_PER_SERVER);
    Ok(Arc::new(config))
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
