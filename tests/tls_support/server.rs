//! Fake TLS servers: [`TlsServer`] runs a rustls `ServerConnection` on each connection accepted by
//! the harness' `Backend`, counts completed handshakes, records failed ones and every
//! ClientHello, and runs the behaviour a test asks for (echo, ALPN report, full duplex,
//! half-close from either side, KeyUpdates).

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Mutex};

use rustls::server::{ClientHello, NoServerSessionStorage, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{Connection, ServerConfig, ServerConnection, StreamOwned};

use super::{close_write, handshake, provider, read_tls_to_close, tls_duplex, Leaf};
use crate::common::{Backend, Pattern, Report, CHUNK};

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
