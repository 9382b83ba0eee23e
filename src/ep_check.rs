//! `ringmaster ep-check`: the Extended Protection report. For every re-encrypt service with
//! `extended_protection = true`, each real server is handshaken once and the `tls-server-end-point`
//! hash (RFC 5929) of the certificate it presents is compared with the hash of the service's own
//! (default) certificate. Exchange binds NTLM/Kerberos to that hash: any server whose hash differs
//! fails every Extended Protection login that the balancer sends to it.
//!
//! [`probe`] is one blocking handshake with one server (std sockets, no runtime), cheap enough to
//! call from a plain thread at start-up; [`run`] probes every server of every checked service in
//! parallel and returns a [`Report`] whose [`Report::render`] is what the command prints.
//!
//! The server's certificate is captured *before* it is verified, so a certificate that the
//! service's `[service.backend_tls]` would refuse is still hashed and reported (as `untrusted`),
//! with the reason and what to change.

use std::fmt::Write as _;
use std::io;
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::Resumption;
use rustls::crypto::CryptoProvider;
use rustls::{
    CertificateError, ClientConfig, ClientConnection, DigitallySignedStruct, SignatureScheme,
};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::config::{Config, Mode, Service};
use crate::tls::certs::dns_names;
use crate::tls::channel_binding::{tls_server_end_point, EndPointHash};
use crate::tls::client::Verify;

/// Longest a probe's TLS handshake may take once connected (also each socket read/write
/// timeout). A TLS server answers a ClientHello in one round trip plus one signature; 5 s covers a
/// loaded server, and keeps a start-up probe from holding its thread for long.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

/// Servers probed at the same time by [`run`]: each probe is one thread and one socket, and a dead
/// server costs a whole `connect_timeout`, so a large pool is probed in waves of this many.
const MAX_PARALLEL_PROBES: usize = 32;

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
    let provider = capture.provider.clone();
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
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
    /// The real verifier (the one re-encrypt uses); `None` for `verify = "none"`.
    inner: Option<Arc<dyn ServerCertVerifier>>,
    provider: Arc<CryptoProvider>,
    certificate: OnceLock<CertificateDer<'static>>,
    verify_error: OnceLock<rustls::Error>,
}

impl Capture {
    fn new(verify: &Verify) -> Result<Self, String> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let inner = crate::tls::client::verifier(verify, &provider)
            .map_err(|e| format!("cannot build the certificate verifier: {e}"))?;
        Ok(Self {
            inner,
            provider,
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
        let Some(inner) = &self.inner else {
            return Ok(ServerCertVerified::assertion());
        };
        inner
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
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
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
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

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

// ---------------------------------------------------------------------------------------------
// The report
// ---------------------------------------------------------------------------------------------

/// The outcome for one server.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Status {
    /// The server presents the service's certificate: Extended Protection works through it.
    Match,
    /// The server presents another certificate: Extended Protection logins through it fail.
    Mismatch,
    /// The service's backend verification refuses the server's certificate (the reason): the
    /// balancer cannot reach it at all.
    Untrusted(String),
    /// No certificate could be obtained (the reason).
    Unreachable(String),
}

/// One server of one checked service.
#[derive(Debug, Clone)]
pub struct ServerCheck {
    /// The service's name.
    pub service: String,
    /// The real server.
    pub server: SocketAddr,
    /// Hash of the service's default certificate (what clients see).
    pub front: EndPointHash,
    /// The file the service's certificate comes from.
    pub front_file: PathBuf,
    /// What the handshake showed, when a certificate was seen.
    pub probe: Option<ProbeResult>,
    /// The verdict.
    pub status: Status,
    /// What to do about it (empty for [`Status::Match`]).
    pub fix: String,
}

/// The whole `ep-check` result.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// The configuration file checked.
    pub config: PathBuf,
    /// One entry per server of each re-encrypt service with Extended Protection.
    pub checks: Vec<ServerCheck>,
    /// Services with Extended Protection that have nothing to compare (passthrough).
    pub passthrough: Vec<String>,
    /// Services with Extended Protection that cannot be checked or cannot work, with the reason
    /// and the fix (each makes [`Report::all_good`] false).
    pub problems: Vec<String>,
    /// Services without `extended_protection` (not checked).
    pub skipped: Vec<String>,
}

/// Checks every service of `config` that has `extended_protection = true`: each server of a
/// re-encrypt service is probed (in parallel) and compared with the service's certificate.
pub fn run(config: &Config) -> Report {
    let mut report = Report {
        config: config.path.clone(),
        ..Report::default()
    };
    let mut jobs: Vec<(&Service, usize, EndPointHash, PathBuf)> = Vec::new();
    for service in &config.services {
        if !service.extended_protection {
            report.skipped.push(service.name.clone());
            continue;
        }
        match service.mode {
            Mode::Passthrough => report.passthrough.push(service.name.clone()),
            Mode::Offload => report.problems.push(format!(
                "{}: offload ends TLS at the balancer, so Extended Protection cannot work; use mode = \"reencrypt\" or \"passthrough\"",
                service.name
            )),
            Mode::Reencrypt => {
                let Some(cert) = service.tls.as_ref().and_then(|tls| tls.certificates.first()) else {
                    report.problems.push(format!("{}: reencrypt service without a certificate; add certificate and key", service.name));
                    continue;
                };
                match tls_server_end_point(cert.end_entity().as_ref()) {
                    Ok(front) => {
                        for index in 0..service.servers.len() {
                            jobs.push((service, index, front.clone(), cert.certificate.clone()));
                        }
                    }
                    Err(e) => report.problems.push(format!(
                        "{}: the service's certificate {} cannot be hashed ({e}); replace it",
                        service.name,
                        cert.certificate.display()
                    )),
                }
            }
        }
    }
    for wave in jobs.chunks(MAX_PARALLEL_PROBES) {
        let probes: Vec<Result<ProbeResult, String>> = std::thread::scope(|scope| {
            let handles: Vec<_> = wave
                .iter()
                .map(|(service, index, _, _)| scope.spawn(move || probe(service, *index)))
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join()
                        .unwrap_or_else(|_| Err("the probe panicked".into()))
                })
                .collect()
        });
        for ((service, index, front, front_file), outcome) in wave.iter().zip(probes) {
            report.checks.push(judge(
                service,
                *index,
                front.clone(),
                front_file.clone(),
                outcome,
            ));
        }
    }
    report
}

/// The verdict and fix for one probe.
fn judge(
    service: &Service,
    index: usize,
    front: EndPointHash,
    front_file: PathBuf,
    outcome: Result<ProbeResult, String>,
) -> ServerCheck {
    let server = service.servers[index].address;
    let (status, fix, probe) = match outcome {
        Err(reason) => (
            Status::Unreachable(reason),
            "check the server is up".to_string(),
            None,
        ),
        Ok(p) => {
            let (status, fix) = match (&p.verify_error, p.verify_failure) {
                (Some(reason), kind) => (Status::Untrusted(reason.clone()), untrusted_fix(service, &p, kind)),
                (None, _) if p.server_hash == front => (Status::Match, String::new()),
                (None, _) => (
                    Status::Mismatch,
                    format!(
                        "install the service's certificate ({}) on this server, or the server's on the service",
                        front_file.display()
                    ),
                ),
            };
            (status, fix, Some(p))
        }
    };
    ServerCheck {
        service: service.name.clone(),
        server,
        front,
        front_file,
        probe,
        status,
        fix,
    }
}

fn untrusted_fix(service: &Service, probe: &ProbeResult, kind: Option<VerifyFailure>) -> String {
    let names = if probe.names.is_empty() {
        "none".to_string()
    } else {
        probe.names.join(", ")
    };
    let ca = service.backend_tls.as_ref().and_then(|b| b.ca.as_ref());
    match (kind, ca) {
        (Some(VerifyFailure::WrongName), _) => {
            format!("set sni in [service.backend_tls] to a name of the server's certificate ({names})")
        }
        (Some(VerifyFailure::UnknownIssuer), Some(ca)) => format!(
            "set ca in [service.backend_tls] to the CA that issued the server's certificate (now {})",
            ca.display()
        ),
        (Some(VerifyFailure::UnknownIssuer), None) => {
            "set verify = \"ca\" and ca = the CA that issued the server's certificate in [service.backend_tls]".into()
        }
        (Some(VerifyFailure::CaAsServerCertificate), _) => "give the server (and the service) a certificate \
             without basicConstraints CA:TRUE (openssl req -x509 adds it unless -addext \
             basicConstraints=critical,CA:FALSE), or set verify = \"none\""
            .into(),
        (Some(VerifyFailure::Validity), _) => "renew the server's certificate (and install the same one on the service)".into(),
        _ => format!("check ca and sni in [service.backend_tls] against the server's certificate (names: {names})"),
    }
}

impl Status {
    /// The verdict as printed: `match`, `MISMATCH`, `untrusted: <reason>`, `unreachable: <reason>`.
    pub fn label(&self) -> String {
        match self {
            Status::Match => "match".into(),
            Status::Mismatch => "MISMATCH".into(),
            Status::Untrusted(reason) => format!("untrusted: {reason}"),
            Status::Unreachable(reason) => format!("unreachable: {reason}"),
        }
    }
}

impl Report {
    /// True when every checked server presents its service's certificate and no Extended Protection
    /// service has a problem: the exit status of `ep-check` is 0 exactly then.
    pub fn all_good(&self) -> bool {
        self.problems.is_empty() && self.checks.iter().all(|c| c.status == Status::Match)
    }

    /// The report as printed by `ringmaster ep-check`: an aligned table, notes, the full hashes of
    /// every server whose certificate differs, and a one-line result.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "Extended Protection check of {}",
            self.config.display()
        );
        let _ = writeln!(out);
        if self.checks.is_empty() && self.passthrough.is_empty() && self.problems.is_empty() {
            let _ = writeln!(
                out,
                "No service has extended_protection = true: nothing to check."
            );
            return out;
        }
        if !self.checks.is_empty() {
            out.push_str(&self.table());
        }
        for name in &self.passthrough {
            let _ = writeln!(out, "{name}: passthrough: EP preserved, nothing to compare");
        }
        for problem in &self.problems {
            let _ = writeln!(out, "PROBLEM {problem}");
        }
        if !self.skipped.is_empty() {
            let _ = writeln!(
                out,
                "Not checked (extended_protection is off): {}",
                self.skipped.join(", ")
            );
        }
        self.full_hashes(&mut out);
        let _ = writeln!(out);
        let bad = self
            .checks
            .iter()
            .filter(|c| c.status != Status::Match)
            .count();
        if self.all_good() {
            let _ = writeln!(
                out,
                "Result: OK: all {} checked server(s) present their service's certificate; Extended Protection works.",
                self.checks.len()
            );
        } else if bad > 0 {
            let _ = writeln!(
                out,
                "Result: {bad} of {} server(s) need attention: Extended Protection logins through them fail.",
                self.checks.len()
            );
        } else {
            let _ = writeln!(
                out,
                "Result: {} service problem(s) above.",
                self.problems.len()
            );
        }
        out
    }

    fn table(&self) -> String {
        let header = [
            "SERVICE",
            "SERVER",
            "SERVICE CERT",
            "SERVER CERT",
            "VERDICT",
            "FIX",
        ];
        let rows: Vec<[String; 6]> = self
            .checks
            .iter()
            .map(|c| {
                [
                    c.service.clone(),
                    c.server.to_string(),
                    c.front.short(),
                    c.probe
                        .as_ref()
                        .map_or_else(|| "-".into(), |p| p.server_hash.short()),
                    c.status.label(),
                    if c.fix.is_empty() {
                        "-".into()
                    } else {
                        c.fix.clone()
                    },
                ]
            })
            .collect();
        let mut widths = header.map(|h| h.chars().count());
        for row in &rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let mut out = String::new();
        let line = |out: &mut String, cells: [&str; 6]| {
            let mut text = String::new();
            for (i, cell) in cells.iter().enumerate() {
                if i + 1 == cells.len() {
                    text.push_str(cell);
                } else {
                    let pad = widths[i] - cell.chars().count();
                    text.push_str(cell);
                    text.extend(std::iter::repeat_n(' ', pad + 2));
                }
            }
            out.push_str(text.trim_end());
            out.push('\n');
        };
        line(&mut out, header);
        for row in &rows {
            line(
                &mut out,
                [&row[0], &row[1], &row[2], &row[3], &row[4], &row[5]].map(String::as_str),
            );
        }
        out
    }

    /// Full hashes of every server whose certificate is not the service's.
    fn full_hashes(&self, out: &mut String) {
        let differing: Vec<(&ServerCheck, &ProbeResult)> = self
            .checks
            .iter()
            .filter_map(|c| c.probe.as_ref().map(|p| (c, p)))
            .filter(|(c, p)| p.server_hash != c.front)
            .collect();
        if differing.is_empty() {
            return;
        }
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "Certificates that differ (full tls-server-end-point hashes):"
        );
        for (c, p) in differing {
            let _ = writeln!(out, "  {} / {}", c.service, c.server);
            let _ = writeln!(
                out,
                "    service  {}  ({})",
                c.front,
                c.front_file.display()
            );
            let subject = if p.subject.is_empty() {
                "no subject".to_string()
            } else {
                p.subject.clone()
            };
            let names = if p.names.is_empty() {
                String::new()
            } else {
                format!("; names {}", p.names.join(", "))
            };
            let _ = writeln!(out, "    server   {}  ({subject}{names})", p.server_hash);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hash(byte: u8) -> EndPointHash {
        EndPointHash {
            algorithm: crate::tls::channel_binding::HashAlg::Sha256,
            digest: vec![byte; 32],
        }
    }

    fn check(status: Status, probe_hash: Option<EndPointHash>) -> ServerCheck {
        let probe = probe_hash.map(|server_hash| ProbeResult {
            server: "127.0.0.1:9443".parse().expect("addr"),
            sni: "mail.example.test".into(),
            certificate: CertificateDer::from(vec![0u8]),
            server_hash,
            verify_error: None,
            verify_failure: None,
            subject: "CN=mail.example.test".into(),
            names: vec!["mail.example.test".into()],
        });
        let fix = if status == Status::Match {
            String::new()
        } else {
            "do something".into()
        };
        ServerCheck {
            service: "exchange".into(),
            server: "127.0.0.1:9443".parse().expect("addr"),
            front: hash(1),
            front_file: PathBuf::from("certs/mail.pem"),
            probe,
            status,
            fix,
        }
    }

    #[test]
    fn an_empty_report_says_nothing_to_check_and_is_good() {
        let report = Report {
            config: "r.toml".into(),
            ..Report::default()
        };
        assert!(report.all_good());
        assert!(
            report.render().contains("nothing to check"),
            "{}",
            report.render()
        );
    }

    #[test]
    fn a_mismatch_is_not_good_and_prints_both_full_hashes() {
        let report = Report {
            config: "r.toml".into(),
            checks: vec![
                check(Status::Match, Some(hash(1))),
                check(Status::Mismatch, Some(hash(2))),
            ],
            ..Report::default()
        };
        assert!(!report.all_good());
        let text = report.render();
        assert!(text.contains("MISMATCH"), "{text}");
        assert!(text.contains(&hash(1).to_string()), "{text}");
        assert!(text.contains(&hash(2).to_string()), "{text}");
        assert!(text.contains("1 of 2 server(s) need attention"), "{text}");
    }

    #[test]
    fn table_columns_are_aligned() {
        let report = Report {
            config: "r.toml".into(),
            checks: vec![
                check(Status::Match, Some(hash(1))),
                check(Status::Unreachable("connect failed: refused".into()), None),
            ],
            ..Report::default()
        };
        let text = report.render();
        let table: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with("SERVICE") || l.starts_with("exchange"))
            .collect();
        assert_eq!(table.len(), 3, "{text}");
        // The character (not byte) column where the verdict starts: short hashes contain '…'.
        let verdict_column = |l: &str| {
            let at = ["VERDICT", "match", "unreachable"]
                .iter()
                .find_map(|word| l.find(word))
                .expect("a verdict");
            l[..at].chars().count()
        };
        let columns: Vec<usize> = table.iter().map(|l| verdict_column(l)).collect();
        assert!(columns.windows(2).all(|w| w[0] == w[1]), "{text}");
    }

    #[test]
    fn passthrough_and_problems_are_reported() {
        let report = Report {
            config: "r.toml".into(),
            passthrough: vec!["owa".into()],
            problems: vec!["web: offload".into()],
            ..Report::default()
        };
        let text = report.render();
        assert!(
            text.contains("owa: passthrough: EP preserved, nothing to compare"),
            "{text}"
        );
        assert!(!report.all_good());
        let only_passthrough = Report {
            config: "r.toml".into(),
            passthrough: vec!["owa".into()],
            ..Report::default()
        };
        assert!(only_passthrough.all_good());
    }
}
