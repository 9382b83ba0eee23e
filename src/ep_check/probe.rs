//! One blocking TLS handshake with one real server ([`probe()`]), and the verifier that captures
//! the certificate the server presents before the service's own verification judges it.
//!
//! Std sockets and no runtime, so it can run on a plain thread at start-up (`runtime`) as well as
//! in `ep-check`'s waves. A refused certificate is still a result: its hash, plus why it was
//! refused ([`VerifyFailure`]) and in words.

use std::io;
use std::net::{SocketAddr, TcpStream};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::Resumption;
use rustls::{
    CertificateError, ClientConfig, ClientConnection, DigitallySignedStruct, SignatureScheme,
};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::config::Service;
use crate::tls::certs::dns_names;
use crate::tls::channel_binding::{tls_server_end_point, EndPointHash};
use crate::tls::client::Verify;

/// Longest a probe's TLS handshake may take once connected (also each socket read/write
/// timeout). A TLS server answers a ClientHello in one round trip plus one signature; 5 s covers a
/// loaded server, and keeps a start-up probe from holding its thread for long.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

/// What one handshake with a real server showed.
#[derive(Debug, Clone)]
pub struct ProbeResult {
    /// The server probed.
    pub server: SocketAddr,
    /// The SNI sent: `backend_tls.sni`, else the first name of the service's certificate, else the
    /// server's IP address.
    pub sni: String,
    /// The end-entity certificate the server presented (DER), e.g. for `EpMonitor::observe`.
    pub certificate: CertificateDer<'static>,
    /// Its `tls-server-end-point` hash.
    pub server_hash: EndPointHash,
    /// Why the service's `backend_tls` verification refused the certificate (`None`: accepted, or
    /// `verify = "none"`). When set, the handshake was abandoned after the certificate.
    pub verify_error: Option<String>,
    /// What kind of verification failure `verify_error` is, to choose the fix.
    pub verify_failure: Option<VerifyFailure>,
    /// The certificate's subject, as `CN=..., O=...` (empty if it has none).
    pub subject: String,
    /// The certificate's DNS names (subjectAltName, else the CN), lower case.
    pub names: Vec<String>,
}

/// Classes of certificate verification failure, each with its own fix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum VerifyFailure {
    /// Not issued by a trusted CA (the `ca` file, or the system store).
    UnknownIssuer,
    /// Not valid for the SNI that was sent.
    WrongName,
    /// Expired or not yet valid.
    Validity,
    /// A CA certificate (basicConstraints `CA:TRUE`) used as the server's certificate, which
    /// webpki refuses; `openssl req -x509` makes such certificates by default.
    CaAsServerCertificate,
    /// Anything else (bad encoding, wrong key usage, ...).
    Other,
}

/// Handshakes once with server `server_index` of `service` and hashes the certificate it presents.
///
/// Blocking: connect within `service.connect_timeout`, then the handshake within
/// [`HANDSHAKE_TIMEOUT`]; ends with a `close_notify` and sends no application data. Verification
/// follows the service's `[service.backend_tls]` (no verification when it has none), but the
/// certificate is captured first: a refused certificate is `Ok` with `verify_error` set. `Err` means
/// no certificate was seen (connect refused, timeout, not TLS, handshake failure), with the reason.
pub fn probe(service: &Service, server_index: usize) -> Result<ProbeResult, String> {
    let server = service
        .servers
        .get(server_index)
        .ok_or_else(|| format!("service {} has no server #{server_index}", service.name))?;
    let address = server.address;
    let verify = service
        .backend_tls
        .as_ref()
        .map_or(&Verify::None, |b| &b.verify);
    let capture = Arc::new(Capture::new(verify)?);
    let config = probe_config(capture.clone())?;
    let sni = probe_sni(service, address);
    let sni_text = sni.to_str().into_owned();

    let mut tcp = TcpStream::connect_timeout(&address, service.connect_timeout)
        .map_err(|e| connect_reason(&e, service.connect_timeout))?;
    tcp.set_read_timeout(Some(HANDSHAKE_TIMEOUT))
        .map_err(|e| e.to_string())?;
    tcp.set_write_timeout(Some(HANDSHAKE_TIMEOUT))
        .map_err(|e| e.to_string())?;
    let _ = tcp.set_nodelay(true);
    let mut conn = ClientConnection::new(config, sni)
        .map_err(|e| format!("cannot start a TLS session: {e}"))?;
    let handshake = handshake(&mut conn, &mut tcp);

    let Some(certificate) = capture.certificate.get().cloned() else {
        return Err(match handshake {
            Err(e) => handshake_reason(&e),
            Ok(()) => "the server completed the handshake without a certificate".into(),
        });
    };
    let verify_error = capture.verify_error.get();
    if let (Err(e), None) = (&handshake, verify_error) {
        // The certificate was accepted (or not checked) but the handshake failed later.
        return Err(handshake_reason(e));
    }
    if handshake.is_ok() {
        conn.send_close_notify();
        let _ = conn.complete_io(&mut tcp);
    }
    let server_hash = tls_server_end_point(certificate.as_ref())
        .map_err(|e| format!("the server's certificate cannot be read: {e}"))?;
    let (subject, names) = describe_certificate(&certificate);
    Ok(ProbeResult {
        server: address,
        sni: sni_text,
        server_hash,
        verify_error: verify_error.map(|e| verify_reason(e, verify)),
        verify_failure: verify_error.map(classify),
        certificate,
        subject,
        names,
    })
}

/// Drives the handshake to completion over a blocking socket, within [`HANDSHAKE_TIMEOUT`].
fn handshake(conn: &mut ClientConnection, tcp: &mut TcpStream) -> io::Result<()> {
    let deadline = Instant::now() + HANDSHAKE_TIMEOUT;
    while conn.is_handshaking() {
        if Instant::now() >= deadline {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "handshake deadline",
            ));
        }
        let (read, written) = conn.complete_io(tcp)?;
        if read == 0 && written == 0 && conn.is_handshaking() {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
    }
    Ok(())
}

/// Why the TCP connect failed, in words for the report.
fn connect_reason(e: &io::Error, timeout: Duration) -> String {
    match e.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => {
            format!("connect timed out after {timeout:?}")
        }
        io::ErrorKind::ConnectionRefused => "connection refused".into(),
        _ => format!("connect failed: {}", without_os_code(e)),
    }
}

/// An OS error's message without the ` (os error N)` suffix, for narrow table cells.
fn without_os_code(e: &io::Error) -> String {
    let text = e.to_string();
    match text.find(" (os error ") {
        Some(at) => text[..at].to_string(),
        None => text,
    }
}

/// Why the TLS handshake failed, in words for the report (a plain-text answer means not TLS).
fn handshake_reason(e: &io::Error) -> String {
    match e.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => {
            format!("no TLS answer within {HANDSHAKE_TIMEOUT:?} (is it a TLS port?)")
        }
        io::ErrorKind::UnexpectedEof => {
            "the server closed the connection during the TLS handshake".into()
        }
        _ => match e
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        {
            Some(rustls::Error::InvalidMessage(_)) => {
                "TLS handshake failed: the server did not answer in TLS (is it a TLS port?)".into()
            }
            Some(tls) => format!("TLS handshake failed: {tls}"),
            None => format!("TLS handshake failed: {}", without_os_code(e)),
        },
    }
}

/// The SNI of a probe: `backend_tls.sni`, else the first usable name of the service's default
/// certificate (the name its clients use), else the server's IP address.
fn probe_sni(service: &Service, address: SocketAddr) -> ServerName<'static> {
    if let Some(sni) = service.backend_tls.as_ref().and_then(|b| b.sni.clone()) {
        return sni;
    }
    service
        .tls
        .iter()
        .flat_map(|tls| tls.certificates.first())
        .flat_map(|cert| cert.names.iter())
        .filter(|name| !name.starts_with("*."))
        .find_map(|name| ServerName::try_from(name.clone()).ok())
        .unwrap_or_else(|| ServerName::IpAddress(address.ip().into()))
}

/// A fresh client config around `capture`: no resumption, so every probe is a full handshake that
/// shows the certificate.
fn probe_config(capture: Arc<Capture>) -> Result<Arc<ClientConfig>, String> {
    let mut config = ClientConfig::builder_with_provider(crate::tls::provider())
        .with_protocol_versions(crate::tls::PROTOCOL_VERSIONS)
        .map_err(|e| format!("cannot build a TLS client: {e}"))?
        .dangerous()
        .with_custom_certificate_verifier(capture)
        .with_no_client_auth();
    config.resumption = Resumption::disabled();
    Ok(Arc::new(config))
}

/// A verifier that keeps the server's end-entity certificate, then delegates to the service's
/// real verification (or accepts it, for `verify = "none"`) and keeps its error.
#[derive(Debug)]
struct Capture {
    /// The real verifier, the one re-encrypt uses (accepting anything for `verify = "none"`).
    inner: Arc<dyn ServerCertVerifier>,
    certificate: OnceLock<CertificateDer<'static>>,
    verify_error: OnceLock<rustls::Error>,
}

impl Capture {
    fn new(verify: &Verify) -> Result<Self, String> {
        let provider = crate::tls::provider();
        let inner = crate::tls::client::verifier(verify, &provider)
            .map_err(|e| format!("cannot build the certificate verifier: {e}"))?
            .unwrap_or_else(|| crate::tls::client::accept_any(&provider));
        Ok(Self {
            inner,
            certificate: OnceLock::new(),
            verify_error: OnceLock::new(),
        })
    }
}

impl ServerCertVerifier for Capture {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let _ = self.certificate.set(end_entity.clone().into_owned());
        self.inner
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
            .inspect_err(|e| {
                let _ = self.verify_error.set(e.clone());
            })
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// The [`VerifyFailure`] class of a verifier error, which picks the fix.
fn classify(e: &rustls::Error) -> VerifyFailure {
    match e {
        rustls::Error::InvalidCertificate(c) => match c {
            CertificateError::UnknownIssuer => VerifyFailure::UnknownIssuer,
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
                VerifyFailure::WrongName
            }
            CertificateError::Expired
            | CertificateError::ExpiredContext { .. }
            | CertificateError::NotValidYet
            | CertificateError::NotValidYetContext { .. } => VerifyFailure::Validity,
            CertificateError::Other(other) if other.to_string() == "CaUsedAsEndEntity" => {
                VerifyFailure::CaAsServerCertificate
            }
            _ => VerifyFailure::Other,
        },
        _ => VerifyFailure::Other,
    }
}

/// Why the verifier refused the certificate, in words for the report.
fn verify_reason(e: &rustls::Error, verify: &Verify) -> String {
    match e {
        rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer) => match verify {
            Verify::System(_) => "issuer not in the system trust store".into(),
            _ => "issuer not in the ca file".into(),
        },
        rustls::Error::InvalidCertificate(CertificateError::Other(other)) => {
            match other.to_string() {
                name if name == "CaUsedAsEndEntity" => {
                    "a CA certificate (CA:TRUE) used as server certificate".into()
                }
                // webpki's error names (`UnsupportedCertVersion`, ...) are the most precise words.
                name => format!("refused by the certificate verifier: {name}"),
            }
        }
        rustls::Error::InvalidCertificate(c) => c.to_string(),
        other => other.to_string(),
    }
}

/// Subject (`CN=..., O=...`) and DNS names of a certificate, for the report.
fn describe_certificate(cert: &CertificateDer<'_>) -> (String, Vec<String>) {
    let subject = X509Certificate::from_der(cert.as_ref())
        .map(|(_, c)| c.subject().to_string())
        .unwrap_or_default();
    (subject, dns_names(cert))
}
