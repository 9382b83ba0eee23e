//! The peers of the hostile suite: fake servers (plain and TLS, well-behaved and not) on threads,
//! a certificate authority made with rcgen, clients, and the poll loop that times closes.

use std::io::{self, Read, Write};
use std::net::{IpAddr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::{PrivateKeyDer, ServerName};
use rustls::{
    ClientConfig, ClientConnection, RootCertStore, ServerConfig, ServerConnection, StreamOwned,
};

/// The name of every certificate here.
pub const NAME: &str = "hostile.test";
/// Stack of each server thread: thousands of them run at once.
const STACK: usize = 128 * 1024;

/// A CA, a server certificate it signed (and an expired one), as files and rustls configs.
pub struct Pki {
    pub cert_pem: PathBuf,
    pub key_pem: PathBuf,
    pub ca_pem: PathBuf,
    pub server: Arc<ServerConfig>,
    pub expired: Arc<ServerConfig>,
    pub client: Arc<ClientConfig>,
}

impl Pki {
    /// Writes the files into `dir`.
    pub fn new(dir: &Path) -> Pki {
        let ca_key = rcgen::KeyPair::generate().expect("key");
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca = ca_params.self_signed(&ca_key).expect("ca");
        let leaf = |expired: bool| {
            let key = rcgen::KeyPair::generate().expect("key");
            let mut p = rcgen::CertificateParams::new(vec![NAME.to_string()]).expect("params");
            if expired {
                p.not_before = rcgen::date_time_ymd(2020, 1, 1);
                p.not_after = rcgen::date_time_ymd(2021, 1, 1);
            }
            let cert = p.signed_by(&key, &ca, &ca_key).expect("leaf");
            (cert, key)
        };
        let (cert, key) = leaf(false);
        let (old, old_key) = leaf(true);
        std::fs::create_dir_all(dir).expect("dir");
        let pki = |name: &str, text: String| {
            let path = dir.join(name);
            std::fs::write(&path, text).expect("write pem");
            path
        };
        let server_config = |cert: &rcgen::Certificate, key: &rcgen::KeyPair| {
            let der = PrivateKeyDer::try_from(key.serialize_der()).expect("key der");
            Arc::new(
                ServerConfig::builder_with_provider(ringmaster::tls::provider())
                    .with_protocol_versions(ringmaster::tls::PROTOCOL_VERSIONS)
                    .expect("versions")
                    .with_no_client_auth()
                    .with_single_cert(vec![cert.der().clone()], der)
                    .expect("server config"),
            )
        };
        let mut roots = RootCertStore::empty();
        roots.add(ca.der().clone()).expect("root");
        let client = ClientConfig::builder_with_provider(ringmaster::tls::provider())
            .with_protocol_versions(ringmaster::tls::PROTOCOL_VERSIONS)
            .expect("versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        Pki {
            cert_pem: pki("cert.pem", cert.pem()),
            key_pem: pki("key.pem", key.serialize_pem()),
            ca_pem: pki("ca.pem", ca.pem()),
            server: server_config(&cert, &key),
            expired: server_config(&old, &old_key),
            client: Arc::new(client),
        }
    }
}

/// What a fake server does on each connection.
#[derive(Clone)]
pub enum Behaviour {
    /// Echo until EOF.
    Echo,
    /// Answer each line with 1 MiB.
    Big,
    /// Read a line, send 40,000 bytes, then reset.
    ResetMidAnswer,
    /// Read a line, send 40,000 bytes, then close (TLS: without close_notify).
    CloseMidAnswer,
    /// Read a line, send 40,000 bytes, then nothing.
    SilentMidAnswer,
    /// Answer anything with non-TLS bytes.
    Garbage,
}

/// Starts a server on 127.0.0.1 doing `behaviour`, TLS with `tls` when given.
pub fn server(behaviour: Behaviour, tls: Option<Arc<ServerConfig>>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(sock) = conn else { continue };
            let _ = sock.set_nodelay(true);
            let _ = sock.set_read_timeout(Some(Duration::from_secs(120)));
            let behaviour = behaviour.clone();
            let tls = tls.clone();
            let _ = std::thread::Builder::new()
                .stack_size(STACK)
                .spawn(move || match tls {
                    Some(config) if !matches!(behaviour, Behaviour::Garbage) => {
                        let Ok(conn) = ServerConnection::new(config) else {
                            return;
                        };
                        let mut s = StreamOwned::new(conn, sock);
                        while s.conn.is_handshaking() {
                            if s.conn.complete_io(&mut s.sock).is_err() {
                                return;
                            }
                        }
                        serve(&mut s, &behaviour);
                        if matches!(behaviour, Behaviour::Echo | Behaviour::Big) {
                            s.conn.send_close_notify();
                            let _ = s.conn.complete_io(&mut s.sock);
                        }
                        finish(s.sock, &behaviour);
                    }
                    _ => {
                        let mut sock = sock;
                        serve(&mut sock, &behaviour);
                        finish(sock, &behaviour);
                    }
                });
        }
    });
    addr
}

fn serve(s: &mut (impl Read + Write), behaviour: &Behaviour) {
    let mut buf = vec![0u8; 64 * 1024];
    match behaviour {
        Behaviour::Echo => loop {
            match s.read(&mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    if s.write_all(&buf[..n]).and_then(|()| s.flush()).is_err() {
                        return;
                    }
                }
            }
        },
        Behaviour::Big => {
            let chunk = vec![b'x'; 64 * 1024];
            loop {
                match s.read(&mut buf) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => {
                        for _ in 0..buf[..n].iter().filter(|&&b| b == b'\n').count() * 16 {
                            if s.write_all(&chunk).is_err() {
                                return;
                            }
                        }
                        let _ = s.flush();
                    }
                }
            }
        }
        Behaviour::ResetMidAnswer | Behaviour::CloseMidAnswer | Behaviour::SilentMidAnswer => {
            let _ = s.read(&mut buf);
            let _ = s.write_all(&[b'p'; 40_000]).and_then(|()| s.flush());
        }
        Behaviour::Garbage => {
            let _ = s.write_all(b"HTTP/1.1 400 Bad Request\r\n\r\nnot TLS");
            let _ = s.flush();
        }
    }
}

fn finish(sock: TcpStream, behaviour: &Behaviour) {
    match behaviour {
        Behaviour::ResetMidAnswer => reset(sock),
        Behaviour::CloseMidAnswer => {
            let _ = sock.shutdown(Shutdown::Both);
        }
        Behaviour::SilentMidAnswer | Behaviour::Garbage => {
            let _ = (&sock).read(&mut [0u8; 1]);
        }
        Behaviour::Echo | Behaviour::Big => {}
    }
}

/// Closes with a RST.
pub fn reset(sock: TcpStream) {
    let sock = socket2::Socket::from(sock);
    let _ = sock.set_linger(Some(Duration::ZERO));
}

/// A TCP connection from `source`.
pub fn connect_from(source: IpAddr, addr: SocketAddr) -> io::Result<TcpStream> {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        Some(socket2::Protocol::TCP),
    )?;
    socket.bind(&SocketAddr::new(source, 0).into())?;
    socket.connect_timeout(&addr.into(), Duration::from_secs(10))?;
    let sock: TcpStream = socket.into();
    sock.set_read_timeout(Some(Duration::from_secs(10)))?;
    sock.set_write_timeout(Some(Duration::from_secs(10)))?;
    sock.set_nodelay(true)?;
    Ok(sock)
}

/// A TLS session through `addr`, from 127.0.0.1, verified against the test CA.
pub fn tls(addr: SocketAddr, pki: &Pki) -> io::Result<StreamOwned<ClientConnection, TcpStream>> {
    let mut sock = connect_from(IpAddr::from([127, 0, 0, 1]), addr)?;
    let mut conn = ClientConnection::new(
        pki.client.clone(),
        ServerName::try_from(NAME).expect("name"),
    )
    .map_err(io::Error::other)?;
    while conn.is_handshaking() {
        conn.complete_io(&mut sock)?;
    }
    Ok(StreamOwned::new(conn, sock))
}

/// One normal client's request: a new TLS connection, a 100-byte echo, a clean close. Its time.
pub fn normal_request(addr: SocketAddr, pki: &Pki) -> io::Result<Duration> {
    let started = Instant::now();
    let mut s = tls(addr, pki)?;
    s.write_all(&[b'n'; 100])?;
    s.flush()?;
    let mut back = [0u8; 100];
    s.read_exact(&mut back)?;
    s.conn.send_close_notify();
    let _ = s.conn.complete_io(&mut s.sock);
    Ok(started.elapsed())
}

/// How a client saw its connection end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    /// FIN, or `close_notify` for TLS.
    Clean,
    /// TLS without `close_notify`, or a reset.
    Abortive,
    /// Nothing before the read timeout.
    Open,
}

/// Reads until the end.
pub fn ending(s: &mut impl Read) -> Seen {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return Seen::Clean,
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return Seen::Open
            }
            Err(_) => return Seen::Abortive,
        }
    }
}

/// Waits until each socket is closed by the peer (readable with EOF or an error), up to
/// `within`: the time each closed after `since`, `None` for those still open.
pub fn close_times(socks: &[TcpStream], since: Instant, within: Duration) -> Vec<Option<Duration>> {
    let mut fds: Vec<libc::pollfd> = socks
        .iter()
        .map(|s| libc::pollfd {
            fd: s.as_raw_fd(),
            events: libc::POLLIN | libc::POLLRDHUP,
            revents: 0,
        })
        .collect();
    let mut times = vec![None; socks.len()];
    let deadline = Instant::now() + within;
    let mut scratch = [0u8; 4096];
    while times.iter().any(Option::is_none) && Instant::now() < deadline {
        // SAFETY: `fds` is a valid array of pollfd for the call's duration.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, 10) };
        if n <= 0 {
            continue;
        }
        let now = since.elapsed();
        for (i, pfd) in fds.iter_mut().enumerate() {
            if pfd.revents == 0 || times[i].is_some() {
                continue;
            }
            pfd.revents = 0;
            // Data (a TLS alert, a server's hello) is drained; EOF or an error is the close.
            // SAFETY: a non-blocking recv into a stack buffer.
            let r = unsafe {
                libc::recv(
                    pfd.fd,
                    scratch.as_mut_ptr().cast(),
                    scratch.len(),
                    libc::MSG_DONTWAIT,
                )
            };
            if r <= 0 && !(r < 0 && io::Error::last_os_error().kind() == io::ErrorKind::WouldBlock)
            {
                times[i] = Some(now);
                pfd.fd = -1;
            }
        }
    }
    times
}

/// The `p`-th percentile (0..=100) of `values`.
pub fn percentile(values: &mut [Duration], p: f64) -> Duration {
    if values.is_empty() {
        return Duration::ZERO;
    }
    values.sort();
    let rank = ((p / 100.0) * (values.len() - 1) as f64).round() as usize;
    values[rank.min(values.len() - 1)]
}

/// Milliseconds with one decimal.
pub fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}
