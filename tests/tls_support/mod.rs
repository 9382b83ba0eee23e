//! TLS helpers for the integration tests, on top of `common`: certificates generated with rcgen
//! (a CA, leaves it signs with chosen names and validity, self-signed ones), TLS fake servers on
//! std threads (rustls `ServerConnection` over the harness' `Backend`), rustls clients with a
//! chosen trust, SNI, ALPN, versions and session store, a full-duplex TLS transfer, and config
//! files for TLS services.
//!
//! Same rules as `common`: every socket has read and write timeouts (client sockets
//! [`IO_TIMEOUT`], fake servers `common::BACKEND_IO_TIMEOUT` through [`Backend`]), nothing
//! sleeps blindly, ports come from the kernel.
//!
//! Include it next to `common` in a test crate: `mod common; mod tls_support;`.

// Each test crate uses a different part of this module.
#![allow(dead_code)]

use std::fmt::Write as _;
use std::fs::File;
use std::io::{self, Read, Write};
use std::net::{IpAddr, Shutdown, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{ClientSessionMemoryCache, ClientSessionStore, Resumption};
use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, NoServerSessionStorage, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{
    ClientConfig, ClientConnection, Connection, ConnectionCommon, DigitallySignedStruct,
    RootCertStore, ServerConfig, ServerConnection, SignatureScheme, StreamOwned,
    SupportedProtocolVersion,
};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use sha2::{Digest as _, Sha256};

use crate::common::{Backend, Digest, Pattern, Received, Report, CHUNK, IO_TIMEOUT};

/// The DNS name of the service's own (front) certificate in most tests.
pub const FRONT_NAME: &str = "front.test";
/// The DNS name of the fake servers' certificates in most tests.
pub const BACKEND_NAME: &str = "backend.test";

/// The crypto provider ringmaster uses (aws-lc-rs), named explicitly so no process default is
/// needed.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

// ---------------------------------------------------------------------------------------------
// Certificates
// ---------------------------------------------------------------------------------------------

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

// ---------------------------------------------------------------------------------------------
// TLS primitives over blocking sockets
// ---------------------------------------------------------------------------------------------

/// Completes a handshake over a blocking socket (client or server side), then writes whatever
/// it left queued (the server's session tickets). Fails on EOF, a socket timeout or a TLS error.
pub fn handshake<D>(conn: &mut ConnectionCommon<D>, sock: &mut TcpStream) -> io::Result<()> {
    while conn.is_handshaking() {
        conn.complete_io(sock)?;
    }
    flush(conn, sock)
}

/// Writes every queued TLS record to the socket.
pub fn flush<D>(conn: &mut ConnectionCommon<D>, sock: &mut TcpStream) -> io::Result<()> {
    while conn.wants_write() {
        conn.write_tls(sock)?;
    }
    sock.flush()
}

/// The TLS half-close: `close_notify`, then `FIN`. Reading keeps working.
pub fn close_write<D>(conn: &mut ConnectionCommon<D>, sock: &mut TcpStream) -> io::Result<()> {
    conn.send_close_notify();
    flush(conn, sock)?;
    sock.shutdown(Shutdown::Write)
}

/// Reads a TLS session until the peer's `close_notify`, hashing the plaintext. A TCP EOF
/// without `close_notify` (truncation), a reset or a timeout is an error with the count so far.
pub fn read_tls_to_close(stream: &mut impl Read) -> io::Result<Received> {
    let mut hasher = Sha256::new();
    let mut bytes = 0u64;
    let mut buf = vec![0u8; CHUNK];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => {
                return Ok(Received {
                    bytes,
                    sha256: Digest(hasher.finalize().into()),
                })
            }
            Ok(n) => {
                hasher.update(&buf[..n]);
                bytes += n as u64;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(io::Error::new(e.kind(), format!("{e} after {bytes} bytes"))),
        }
    }
}

/// Full duplex over an established TLS session: sends `send` (then `close_notify` and `FIN`)
/// from a second thread while this one reads until the peer's `close_notify`. Returns what was
/// received and how sending ended.
///
/// One lock guards the rustls state and is never held across socket I/O, so each direction
/// blocks only on its own socket operation; records reach the socket in the order rustls
/// produced them because only the sending thread writes to the socket.
pub fn tls_duplex(
    sock: TcpStream,
    conn: Connection,
    send: Pattern,
) -> (io::Result<Received>, io::Result<()>) {
    let conn = Arc::new(Mutex::new(conn));
    let mut write_sock = match sock.try_clone() {
        Ok(s) => s,
        Err(e) => return (Err(e), Err(io::Error::other("no writer: try_clone failed"))),
    };
    let writer = {
        let conn = conn.clone();
        thread::spawn(move || send_all(&conn, &mut write_sock, send))
    };
    let mut read_sock = sock;
    let got = receive_all(&conn, &mut read_sock);
    if got.is_err() {
        // Unblocks the writer, which would otherwise wait on a peer that stopped reading.
        let _ = read_sock.shutdown(Shutdown::Both);
    }
    let sent = writer
        .join()
        .unwrap_or_else(|_| Err(io::Error::other("TLS writer thread panicked")));
    (got, sent)
}

fn send_all(conn: &Mutex<Connection>, sock: &mut TcpStream, send: Pattern) -> io::Result<()> {
    let mut out = Vec::with_capacity(2 * CHUNK);
    let mut sent = 0u64;
    let context = |e: io::Error, sent: u64| {
        io::Error::new(
            e.kind(),
            format!("{e} after sending {sent} of {} bytes", send.len),
        )
    };
    send.for_each_chunk(|chunk| {
        let mut off = 0;
        while off < chunk.len() {
            {
                let mut c = conn.lock().expect("TLS state");
                let n = c
                    .writer()
                    .write(&chunk[off..])
                    .map_err(|e| context(e, sent))?;
                if n == 0 && !c.wants_write() {
                    return Err(io::Error::other("rustls accepted no plaintext"));
                }
                off += n;
                sent += n as u64;
                while c.wants_write() {
                    c.write_tls(&mut out)?;
                }
            }
            sock.write_all(&out).map_err(|e| context(e, sent))?;
            out.clear();
        }
        Ok(())
    })?;
    {
        let mut c = conn.lock().expect("TLS state");
        c.send_close_notify();
        while c.wants_write() {
            c.write_tls(&mut out)?;
        }
    }
    sock.write_all(&out).map_err(|e| context(e, sent))?;
    sock.shutdown(Shutdown::Write)
}

fn receive_all(conn: &Mutex<Connection>, sock: &mut TcpStream) -> io::Result<Received> {
    let mut hasher = Sha256::new();
    let mut bytes = 0u64;
    let mut buf = vec![0u8; CHUNK];
    let mut plain = vec![0u8; CHUNK];
    let context = |e: io::Error, bytes: u64| {
        io::Error::new(e.kind(), format!("{e} after receiving {bytes} bytes"))
    };
    loop {
        let n = match sock.read(&mut buf) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(context(e, bytes)),
        };
        let mut c = conn.lock().expect("TLS state");
        let mut input = &buf[..n];
        loop {
            let used = if n == 0 {
                c.read_tls(&mut io::empty())?
            } else {
                c.read_tls(&mut input)?
            };
            c.process_new_packets()
                .map_err(|e| context(io::Error::new(io::ErrorKind::InvalidData, e), bytes))?;
            loop {
                match c.reader().read(&mut plain) {
                    Ok(0) => {
                        return Ok(Received {
                            bytes,
                            sha256: Digest(hasher.finalize().into()),
                        })
                    }
                    Ok(k) => {
                        hasher.update(&plain[..k]);
                        bytes += k as u64;
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) => return Err(context(e, bytes)),
                }
            }
            if n == 0 {
                return Err(context(
                    io::Error::new(io::ErrorKind::UnexpectedEof, "TCP EOF without close_notify"),
                    bytes,
                ));
            }
            if input.is_empty() {
                break;
            }
            if used == 0 {
                return Err(io::Error::other("rustls accepted no ciphertext"));
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Fake TLS servers
// ---------------------------------------------------------------------------------------------

/// A server side TLS session whose handshake is complete.
pub type ServerStream = StreamOwned<ServerConnection, TcpStream>;

/// What a fake TLS server saw in one ClientHello.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HelloSeen {
    /// The SNI, if any (lower case).
    pub sni: Option<String>,
    /// The ALPN protocols offered, in order (empty: no ALPN extension).
    pub alpn: Vec<String>,
}

/// Presents the current certificate and records every ClientHello.
#[derive(Debug)]
struct RecordingResolver {
    key: Mutex<Arc<CertifiedKey>>,
    hellos: Arc<Mutex<Vec<HelloSeen>>>,
}

impl ResolvesServerCert for RecordingResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let seen = HelloSeen {
            sni: hello.server_name().map(str::to_owned),
            alpn: hello
                .alpn()
                .map(|list| {
                    list.map(|p| String::from_utf8_lossy(p).into_owned())
                        .collect()
                })
                .unwrap_or_default(),
        };
        self.hellos.lock().expect("hellos").push(seen);
        Some(self.key.lock().expect("key").clone())
    }
}

/// Options of a fake TLS server.
#[derive(Debug, Clone)]
pub struct ServerOpts {
    /// ALPN protocols it supports, in preference order (empty: it ignores ALPN).
    pub alpn: Vec<String>,
    /// Whether it lets clients resume (session IDs and TLS 1.3 tickets). Off, every handshake
    /// is a full one, with the certificate.
    pub resumption: bool,
}

impl Default for ServerOpts {
    fn default() -> ServerOpts {
        ServerOpts {
            alpn: Vec::new(),
            resumption: true,
        }
    }
}

impl ServerOpts {
    /// Supports exactly `alpn`.
    pub fn alpn(alpn: &[&str]) -> ServerOpts {
        ServerOpts {
            alpn: alpn.iter().map(|s| s.to_string()).collect(),
            ..ServerOpts::default()
        }
    }
}

/// A fake TLS server (TLS 1.2 and 1.3): an accept thread from [`Backend`] and a thread per
/// connection that completes the handshake, counts it, then runs the application handler. A
/// failed handshake is recorded with its error (what the peer's alert said, for instance).
pub struct TlsServer {
    backend: Backend,
    resolver: Arc<RecordingResolver>,
    hellos: Arc<Mutex<Vec<HelloSeen>>>,
    handshakes: Arc<AtomicUsize>,
    failures: Arc<Mutex<Vec<String>>>,
}

impl TlsServer {
    /// Serves `leaf` with `opts`; `app` runs on each session after its handshake.
    pub fn start<F>(leaf: &Leaf, opts: ServerOpts, app: F) -> TlsServer
    where
        F: Fn(ServerStream) + Send + Sync + 'static,
    {
        let hellos = Arc::new(Mutex::new(Vec::new()));
        let resolver = Arc::new(RecordingResolver {
            key: Mutex::new(leaf.certified_key()),
            hellos: hellos.clone(),
        });
        let mut config = ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .expect("server versions")
            .with_no_client_auth()
            .with_cert_resolver(resolver.clone());
        config.alpn_protocols = opts.alpn.iter().map(|p| p.as_bytes().to_vec()).collect();
        if !opts.resumption {
            config.session_storage = Arc::new(NoServerSessionStorage {});
            config.send_tls13_tickets = 0;
        }
        let config = Arc::new(config);
        let handshakes = Arc::new(AtomicUsize::new(0));
        let failures = Arc::new(Mutex::new(Vec::new()));
        let backend = {
            let handshakes = handshakes.clone();
            let failures = failures.clone();
            Backend::start(move |mut sock| {
                let mut conn = match ServerConnection::new(config.clone()) {
                    Ok(conn) => conn,
                    Err(e) => {
                        failures.lock().expect("failures").push(e.to_string());
                        return;
                    }
                };
                match handshake(&mut conn, &mut sock) {
                    Ok(()) => {
                        handshakes.fetch_add(1, Ordering::SeqCst);
                        app(StreamOwned::new(conn, sock));
                    }
                    Err(e) => failures.lock().expect("failures").push(e.to_string()),
                }
            })
        };
        TlsServer {
            backend,
            resolver,
            hellos,
            handshakes,
            failures,
        }
    }

    /// Echoes every byte until the client's `close_notify`, then half-closes the same way.
    pub fn echo(leaf: &Leaf, opts: ServerOpts) -> TlsServer {
        TlsServer::start(leaf, opts, |mut s| {
            let _ = echo_until_close(&mut s);
        })
    }

    /// Writes `"alpn=<protocol>\n"` (`alpn=-` if none was negotiated) on each session, then
    /// echoes: a client learns what the server negotiated on its side of the proxy.
    pub fn alpn_reporter(leaf: &Leaf, opts: ServerOpts) -> TlsServer {
        TlsServer::start(leaf, opts, |mut s| {
            let alpn = s
                .conn
                .alpn_protocol()
                .map(|p| String::from_utf8_lossy(p).into_owned())
                .unwrap_or_else(|| "-".into());
            if s.write_all(format!("alpn={alpn}\n").as_bytes()).is_ok() && s.flush().is_ok() {
                let _ = echo_until_close(&mut s);
            }
        })
    }

    /// Full duplex: sends `send` while it reads everything until `close_notify`; reports what it
    /// read. Sessions that carried nothing in are not reported.
    pub fn duplex(leaf: &Leaf, send: Pattern) -> (TlsServer, Receiver<Report>) {
        let (tx, rx) = mpsc::channel::<Report>();
        let tx = Mutex::new(tx);
        let server = TlsServer::start(leaf, ServerOpts::default(), move |s| {
            let StreamOwned { conn, sock } = s;
            let (got, sent) = tls_duplex(sock, Connection::Server(conn), send);
            let result = match (got, sent) {
                (Ok(got), _) if got.bytes == 0 => return,
                (Ok(got), Ok(())) => Ok(got),
                (Ok(got), Err(e)) => {
                    Err(format!("TLS server send failed: {e} (it received {got:?})"))
                }
                (Err(e), _) => Err(format!("TLS server receive failed: {e}")),
            };
            let _ = tx.lock().expect("report channel").send(result);
        });
        (server, rx)
    }

    /// Client half-close: reads the request until `close_notify`, then sends `reply`, then
    /// `close_notify` and `FIN`; reports the request it read.
    pub fn reply_after_close(leaf: &Leaf, reply: Pattern) -> (TlsServer, Receiver<Report>) {
        let (tx, rx) = mpsc::channel::<Report>();
        let tx = Mutex::new(tx);
        let server = TlsServer::start(leaf, ServerOpts::default(), move |mut s| {
            let result = match read_tls_to_close(&mut s) {
                Err(e) => Err(format!("TLS server reading the request: {e}")),
                Ok(request) => reply
                    .write_to(&mut s)
                    .and_then(|()| s.flush())
                    .and_then(|()| close_write(&mut s.conn, &mut s.sock))
                    .map(|()| request)
                    .map_err(|e| format!("TLS server sending the reply: {e}")),
            };
            let _ = tx.lock().expect("report channel").send(result);
        });
        (server, rx)
    }

    /// Server half-close: sends `first`, then `close_notify` and `FIN`, then keeps reading the
    /// client's upload until its `close_notify`; reports the upload.
    pub fn half_close_first(leaf: &Leaf, first: Pattern) -> (TlsServer, Receiver<Report>) {
        let (tx, rx) = mpsc::channel::<Report>();
        let tx = Mutex::new(tx);
        let server = TlsServer::start(leaf, ServerOpts::default(), move |mut s| {
            let result = first
                .write_to(&mut s)
                .and_then(|()| s.flush())
                .and_then(|()| close_write(&mut s.conn, &mut s.sock))
                .map_err(|e| format!("TLS server sending before its half-close: {e}"))
                .and_then(|()| {
                    read_tls_to_close(&mut s)
                        .map_err(|e| format!("TLS server reading after its half-close: {e}"))
                });
            let _ = tx.lock().expect("report channel").send(result);
        });
        (server, rx)
    }

    /// Echoes like [`TlsServer::echo`], but sends a TLS 1.3 KeyUpdate (asking the peer to
    /// update too) before each answer.
    pub fn echo_with_key_updates(leaf: &Leaf) -> TlsServer {
        TlsServer::start(leaf, ServerOpts::default(), |mut s| {
            let mut buf = vec![0u8; CHUNK];
            loop {
                match s.read(&mut buf) {
                    Ok(0) => {
                        let _ = close_write(&mut s.conn, &mut s.sock);
                        return;
                    }
                    Ok(n) => {
                        if s.conn.refresh_traffic_keys().is_err()
                            || s.write_all(&buf[..n]).is_err()
                            || s.flush().is_err()
                        {
                            return;
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(_) => return,
                }
            }
        })
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.backend.addr()
    }

    /// TCP connections accepted so far.
    pub fn accepted(&self) -> usize {
        self.backend.accepted()
    }

    /// Handshakes completed so far.
    pub fn handshakes(&self) -> usize {
        self.handshakes.load(Ordering::SeqCst)
    }

    /// Errors of the handshakes that failed so far.
    pub fn failures(&self) -> Vec<String> {
        self.failures.lock().expect("failures").clone()
    }

    /// Every ClientHello that asked for a certificate so far.
    pub fn hellos(&self) -> Vec<HelloSeen> {
        self.hellos.lock().expect("hellos").clone()
    }

    /// Presents `leaf` from now on (a certificate renewed on a running server).
    pub fn set_certificate(&self, leaf: &Leaf) {
        *self.resolver.key.lock().expect("key") = leaf.certified_key();
    }
}

/// Echoes plaintext until the peer's `close_notify`, then sends its own and `FIN`.
fn echo_until_close(s: &mut ServerStream) -> io::Result<()> {
    let mut buf = vec![0u8; CHUNK];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return close_write(&mut s.conn, &mut s.sock),
            Ok(n) => {
                s.write_all(&buf[..n])?;
                s.flush()?;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// TLS clients
// ---------------------------------------------------------------------------------------------

/// A client side TLS session.
pub type ClientStream = StreamOwned<ClientConnection, TcpStream>;

/// How a test client checks the server's certificate.
#[derive(Clone)]
pub enum Trust {
    /// Against these roots, for the name it asked for (a real client).
    Roots(Arc<RootCertStore>),
    /// Not at all (handshake signatures are still checked): to look at whatever certificate a
    /// server presents.
    Any,
}

/// What a test client offers. Build with [`ClientSetup::new`] and the methods below.
#[derive(Clone)]
pub struct ClientSetup {
    trust: Trust,
    alpn: Vec<String>,
    versions: Vec<&'static SupportedProtocolVersion>,
    sessions: Option<Arc<dyn ClientSessionStore>>,
}

impl ClientSetup {
    /// TLS 1.3 and 1.2, no ALPN, no resumption.
    pub fn new(trust: Trust) -> ClientSetup {
        ClientSetup {
            trust,
            alpn: Vec::new(),
            versions: vec![&rustls::version::TLS13, &rustls::version::TLS12],
            sessions: None,
        }
    }

    /// Offers `alpn`, in this order.
    pub fn alpn(mut self, alpn: &[&str]) -> ClientSetup {
        self.alpn = alpn.iter().map(|s| s.to_string()).collect();
        self
    }

    /// Offers only `versions`.
    pub fn versions(mut self, versions: &[&'static SupportedProtocolVersion]) -> ClientSetup {
        self.versions = versions.to_vec();
        self
    }

    /// Keeps sessions in `store` and resumes from it: clients built with the same store share
    /// their tickets.
    pub fn sessions(mut self, store: Arc<dyn ClientSessionStore>) -> ClientSetup {
        self.sessions = Some(store);
        self
    }

    /// The rustls client config.
    pub fn build(&self) -> Arc<ClientConfig> {
        let builder = ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(&self.versions)
            .expect("client versions");
        let mut config = match &self.trust {
            Trust::Roots(roots) => builder
                .with_root_certificates(roots.clone())
                .with_no_client_auth(),
            Trust::Any => builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate(provider())))
                .with_no_client_auth(),
        };
        config.alpn_protocols = self.alpn.iter().map(|p| p.as_bytes().to_vec()).collect();
        config.resumption = match &self.sessions {
            Some(store) => Resumption::store(store.clone()),
            None => Resumption::disabled(),
        };
        Arc::new(config)
    }
}

/// A client session store for [`ClientSetup::sessions`].
pub fn session_store() -> Arc<ClientSessionMemoryCache> {
    Arc::new(ClientSessionMemoryCache::new(64))
}

/// `sni` as a rustls server name; an IP literal makes the client send no SNI at all.
pub fn server_name(sni: &str) -> ServerName<'static> {
    match sni.parse::<IpAddr>() {
        Ok(ip) => ServerName::IpAddress(ip.into()),
        Err(_) => ServerName::try_from(sni.to_owned()).expect("valid DNS name"),
    }
}

/// Connects from 127.0.0.1 and completes a handshake asking for `sni`.
pub fn tls_connect(
    addr: SocketAddr,
    config: &Arc<ClientConfig>,
    sni: &str,
) -> io::Result<ClientStream> {
    tls_connect_from(IpAddr::from([127, 0, 0, 1]), addr, config, sni)
}

/// Connects from `source` (any port) and completes a handshake asking for `sni`.
pub fn tls_connect_from(
    source: IpAddr,
    addr: SocketAddr,
    config: &Arc<ClientConfig>,
    sni: &str,
) -> io::Result<ClientStream> {
    let mut sock = connect_from(source, addr)?;
    let mut conn = ClientConnection::new(config.clone(), server_name(sni))
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    handshake(&mut conn, &mut sock)?;
    Ok(StreamOwned::new(conn, sock))
}

/// A TCP connection from `source` (kernel-chosen port) to `addr`, with the client timeouts.
pub fn connect_from(source: IpAddr, addr: SocketAddr) -> io::Result<TcpStream> {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        Some(socket2::Protocol::TCP),
    )?;
    socket.bind(&SocketAddr::new(source, 0).into())?;
    socket.connect_timeout(&addr.into(), IO_TIMEOUT)?;
    let sock: TcpStream = socket.into();
    sock.set_read_timeout(Some(IO_TIMEOUT))?;
    sock.set_write_timeout(Some(IO_TIMEOUT))?;
    sock.set_nodelay(true)?;
    Ok(sock)
}

/// Writes `msg` and reads back exactly as many bytes over a TLS session.
pub fn tls_round_trip(s: &mut ClientStream, msg: &[u8]) -> io::Result<Vec<u8>> {
    s.write_all(msg)?;
    s.flush()?;
    let mut back = vec![0u8; msg.len()];
    s.read_exact(&mut back)?;
    Ok(back)
}

/// Reads one line (at most 256 bytes) from a TLS session.
pub fn tls_read_line(s: &mut ClientStream) -> io::Result<String> {
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    while line.len() < 256 {
        s.read_exact(&mut byte)?;
        line.push(byte[0]);
        if byte[0] == b'\n' {
            return Ok(String::from_utf8_lossy(&line).into_owned());
        }
    }
    Err(io::Error::new(io::ErrorKind::InvalidData, "line too long"))
}

/// `verify = "none"` for test clients: any certificate, signatures still verified.
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

// ---------------------------------------------------------------------------------------------
// Config files for TLS services
// ---------------------------------------------------------------------------------------------

/// `[service.backend_tls]` of a reencrypt service.
#[derive(Debug, Clone)]
pub struct BackendTls {
    /// `verify`: "ca", "system" or "none".
    pub verify: &'static str,
    /// `ca`, if any.
    pub ca: Option<PathBuf>,
    /// `sni`, if any.
    pub sni: Option<String>,
}

/// One `[[service]]` that terminates TLS.
#[derive(Debug, Clone)]
pub struct TlsService {
    /// `name`.
    pub name: String,
    /// `listen`.
    pub listen: SocketAddr,
    /// `mode`: "offload" or "reencrypt".
    pub mode: &'static str,
    /// `connect_timeout` (default "2s").
    pub connect_timeout: &'static str,
    /// `idle_timeout` (default "60s", longer than any test waits).
    pub idle_timeout: &'static str,
    /// `certificate` and `key`.
    pub cert: CertFiles,
    /// Each `[[service.sni_certificate]]`.
    pub sni_certs: Vec<CertFiles>,
    /// `extended_protection`, if written.
    pub extended_protection: Option<bool>,
    /// `[service.backend_tls]`, if written.
    pub backend_tls: Option<BackendTls>,
    /// Each `[[service.server]]` address.
    pub servers: Vec<SocketAddr>,
}

impl TlsService {
    /// An offload service presenting `cert`, on a fresh loopback port.
    pub fn offload(name: &str, cert: &CertFiles, servers: &[SocketAddr]) -> TlsService {
        TlsService {
            name: name.to_owned(),
            listen: crate::common::listen_addr(),
            mode: "offload",
            connect_timeout: "2s",
            idle_timeout: "60s",
            cert: cert.clone(),
            sni_certs: Vec::new(),
            extended_protection: None,
            backend_tls: None,
            servers: servers.to_vec(),
        }
    }

    /// A reencrypt service presenting `cert` that verifies its servers with `verify = "ca"`
    /// against `ca`, on a fresh loopback port.
    pub fn reencrypt(
        name: &str,
        cert: &CertFiles,
        ca: &Path,
        servers: &[SocketAddr],
    ) -> TlsService {
        TlsService {
            backend_tls: Some(BackendTls {
                verify: "ca",
                ca: Some(ca.to_path_buf()),
                sni: None,
            }),
            mode: "reencrypt",
            ..TlsService::offload(name, cert, servers)
        }
    }

    /// Sets `[service.backend_tls] sni`.
    pub fn backend_sni(mut self, sni: &str) -> TlsService {
        if let Some(b) = self.backend_tls.as_mut() {
            b.sni = Some(sni.to_owned());
        }
        self
    }

    /// The `[[service]]` table and its sub-tables.
    pub fn toml(&self) -> String {
        let mut t = String::new();
        let _ = writeln!(t, "[[service]]");
        let _ = writeln!(t, "name = \"{}\"", self.name);
        let _ = writeln!(t, "listen = \"{}\"", self.listen);
        let _ = writeln!(t, "mode = \"{}\"", self.mode);
        let _ = writeln!(t, "connect_timeout = \"{}\"", self.connect_timeout);
        let _ = writeln!(t, "idle_timeout = \"{}\"", self.idle_timeout);
        let _ = writeln!(t, "certificate = {}", toml_path(&self.cert.cert));
        let _ = writeln!(t, "key = {}", toml_path(&self.cert.key));
        if let Some(ep) = self.extended_protection {
            let _ = writeln!(t, "extended_protection = {ep}");
        }
        for extra in &self.sni_certs {
            let _ = writeln!(t, "\n[[service.sni_certificate]]");
            let _ = writeln!(t, "certificate = {}", toml_path(&extra.cert));
            let _ = writeln!(t, "key = {}", toml_path(&extra.key));
        }
        if let Some(b) = &self.backend_tls {
            let _ = writeln!(t, "\n[service.backend_tls]");
            let _ = writeln!(t, "verify = \"{}\"", b.verify);
            if let Some(ca) = &b.ca {
                let _ = writeln!(t, "ca = {}", toml_path(ca));
            }
            if let Some(sni) = &b.sni {
                let _ = writeln!(t, "sni = \"{sni}\"");
            }
        }
        for server in &self.servers {
            let _ = writeln!(t, "\n[[service.server]]\naddress = \"{server}\"");
        }
        t
    }
}

/// A whole config file: `[global]` with `workers`, then `services`.
pub fn tls_config(workers: u32, services: &[TlsService]) -> String {
    let mut t = format!("[global]\nworkers = {workers}\ndrain_timeout = \"2s\"\n");
    for s in services {
        t.push('\n');
        t.push_str(&s.toml());
    }
    t
}

/// A path as a TOML basic string (test paths need no escaping; checked).
fn toml_path(path: &Path) -> String {
    let s = path.to_str().expect("UTF-8 path");
    assert!(
        !s.contains(['"', '\\']) && !s.chars().any(char::is_control),
        "test path needs escaping in TOML: {s:?}"
    );
    format!("\"{s}\"")
}

// ---------------------------------------------------------------------------------------------
// Running the binary for a verdict
// ---------------------------------------------------------------------------------------------

/// How a `ringmaster` command that should exit by itself ended.
#[derive(Debug)]
pub struct Finished {
    /// The exit status.
    pub status: ExitStatus,
    /// Its stdout and stderr, interleaved.
    pub output: String,
}

/// Runs `ringmaster ARGS...` with stdout and stderr in a file in `dir`, and waits up to
/// `within` for it to exit. If it is still running then, it is killed and the test fails with
/// its output (a `run` that should have refused its config and started serving instead).
pub fn run_to_exit(dir: &Path, args: &[&str], within: Duration) -> Finished {
    let log_path = dir.join(format!(
        "ringmaster-{}.out",
        args.join("_").replace('/', "_")
    ));
    let log = File::create(&log_path).expect("create output file");
    let mut child = Command::new(env!("CARGO_BIN_EXE_ringmaster"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("clone output file"))
        .stderr(log)
        .spawn()
        .expect("spawn ringmaster");
    let deadline = Instant::now() + within;
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break Some(status);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        thread::sleep(Duration::from_millis(10));
    };
    let output =
        String::from_utf8_lossy(&std::fs::read(&log_path).unwrap_or_default()).into_owned();
    match status {
        Some(status) => Finished { status, output },
        None => panic!("ringmaster {args:?} still running after {within:?}; output:\n{output}"),
    }
}

/// Runs `openssl s_client` against `addr` asking for [`FRONT_NAME`] and trusting `ca`, with
/// `args` added and an empty stdin (so it closes right after the handshake); whether it exited
/// 0, and its stdout and stderr. None when openssl is not installed.
pub fn s_client(addr: SocketAddr, ca: &Path, args: &[&str]) -> Option<(bool, String)> {
    let ca = ca.to_str().expect("UTF-8 path");
    let connect = addr.to_string();
    let child = Command::new("openssl")
        .args(["s_client", "-connect", &connect, "-servername", FRONT_NAME])
        .args(["-CAfile", ca])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let child = match child {
        Ok(child) => child,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return None,
        Err(e) => panic!("openssl s_client: {e}"),
    };
    let within = Duration::from_secs(20);
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let out = rx
        .recv_timeout(within)
        .unwrap_or_else(|_| panic!("openssl s_client {args:?} did not finish within {within:?}"))
        .expect("openssl s_client output");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Some((out.status.success(), text))
}

/// Polls `cond` until it holds or `within` has passed; whether it held.
pub fn wait_until(within: Duration, cond: impl Fn() -> bool) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(10));
    }
}

/// Waits up to `within` until `pred(logs)` holds, polling `logs`; true if it did.
pub fn wait_for_log(
    logs: impl Fn() -> String,
    within: Duration,
    pred: impl Fn(&str) -> bool,
) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if pred(&logs()) {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(20));
    }
}
