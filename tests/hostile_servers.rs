//! Failing and hostile servers, in every mode: a server that resets mid-answer, ends its TLS
//! session without `close_notify` mid-answer, goes silent, answers a ClientHello with garbage, or
//! presents an expired certificate; and clients that vanish the same ways, seen from the server.
//!
//! What must hold ("honest closes"): the other side never sees a clean close — no `close_notify`,
//! no bare FIN where it would take a cut-short answer for a whole one — but a reset or a TLS
//! session without `close_notify`; the access log names how the connection ended
//! (`server_reset`, `server_truncated`, `timeout`, `server_error`, `client_truncated`,
//! `client_reset`); and the worker lives on and serves the next client.
//!
//! Each test runs one proxy with a passthrough, an offload and a reencrypt service in front of
//! fake servers that misbehave the same way, and fails if any client reads a clean end (`Ok(0)`
//! from its socket or its TLS session) after a partial answer, if the log names another end, or
//! if a healthy service on the same proxy stops answering.

mod common;
mod tls_support;

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use tls_support::*;

/// Bytes a misbehaving server sends before it misbehaves: more than one TLS record, less than a
/// socket buffer, so they all reach the client first.
const PARTIAL: usize = 40_000;
/// How long a test waits for the proxy's log or a close.
const WAIT: Duration = Duration::from_secs(10);

/// How a client (or server) saw its connection end.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Seen {
    /// `Ok(0)`: a FIN, or for TLS a `close_notify`.
    Clean,
    /// A TLS session that ended without `close_notify`.
    Truncated,
    /// A TCP reset.
    Reset,
    /// Nothing within the client's read timeout.
    TimedOut,
    /// Any other error.
    Other(String),
}

/// Reads until the end and says how it ended, with the bytes read.
fn ending(stream: &mut impl Read) -> (usize, Seen) {
    let mut buf = vec![0u8; CHUNK];
    let mut total = 0;
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return (total, Seen::Clean),
            Ok(n) => total += n,
            Err(e) => {
                let seen = match e.kind() {
                    io::ErrorKind::UnexpectedEof => Seen::Truncated,
                    io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe => Seen::Reset,
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => Seen::TimedOut,
                    _ => Seen::Other(e.to_string()),
                };
                return (total, seen);
            }
        }
    }
}

/// An abortive end: a reset, or a TLS session without `close_notify`.
fn abortive(seen: &Seen) -> bool {
    matches!(seen, Seen::Reset | Seen::Truncated)
}

/// Closes a socket with a RST.
fn reset(sock: TcpStream) {
    let sock = socket2::Socket::from(sock);
    let _ = sock.set_linger(Some(Duration::ZERO));
    drop(sock);
}

/// What a misbehaving server does after its partial answer.
#[derive(Debug, Clone, Copy)]
enum Then {
    /// A RST.
    Reset,
    /// A FIN (for TLS: without `close_notify` first).
    Close,
    /// Nothing, until the proxy gives up on it.
    Silence,
}

/// A plain server that reads one line, sends [`PARTIAL`] bytes, then does `then`.
fn plain_server(then: Then) -> Backend {
    Backend::start(move |mut sock| {
        if read_line(&mut sock).is_err() {
            return;
        }
        if sock.write_all(&vec![b'p'; PARTIAL]).is_err() {
            return;
        }
        match then {
            Then::Reset => reset(sock),
            Then::Close => drop(sock),
            Then::Silence => {
                let _ = sock.read(&mut [0u8; 1]);
            }
        }
    })
}

/// A TLS server that reads one line, sends [`PARTIAL`] bytes, then does `then` without ever
/// sending `close_notify`.
fn tls_server(leaf: &Leaf, then: Then) -> TlsServer {
    TlsServer::start(leaf, ServerOpts::default(), move |mut s| {
        if tls_read_line_server(&mut s).is_err() {
            return;
        }
        if s.write_all(&vec![b't'; PARTIAL]).is_err() || s.flush().is_err() {
            return;
        }
        let sock = s.sock;
        match then {
            Then::Reset => reset(sock),
            Then::Close => {
                let _ = sock.shutdown(Shutdown::Both);
            }
            Then::Silence => {
                let _ = (&sock).read(&mut [0u8; 1]);
            }
        }
    })
}

fn tls_read_line_server(s: &mut ServerStream) -> io::Result<()> {
    let mut byte = [0u8; 1];
    loop {
        s.read_exact(&mut byte)?;
        if byte[0] == b'\n' {
            return Ok(());
        }
    }
}

/// One proxy with a passthrough, an offload and a reencrypt service, and an access log.
struct Bench {
    proxy: Proxy,
    passthrough: SocketAddr,
    offload: SocketAddr,
    reencrypt: SocketAddr,
    log: std::path::PathBuf,
    client: Arc<rustls::ClientConfig>,
    _dir: tempfile::TempDir,
}

impl Bench {
    /// Services in front of `plain` (passthrough and offload) and `tls` (reencrypt), each with
    /// `idle_timeout = idle`.
    fn start(pki: &Pki, plain: SocketAddr, tls: SocketAddr, idle: &'static str) -> Bench {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = dir.path().join("access.log");
        let mut offload = TlsService::offload("off", &pki.front_files, &[plain]);
        offload.idle_timeout = idle;
        let mut reencrypt = TlsService::reencrypt_to("re", pki, &[tls]);
        reencrypt.idle_timeout = idle;
        let passthrough = listen_addr();
        let mut config = tls_config(1, &[offload.clone(), reencrypt.clone()]).replacen(
            "[global]\n",
            &format!(
                "[global]\naccess_log = {{ path = \"{}\" }}\n",
                log.display()
            ),
            1,
        );
        config.push_str(&format!(
            "\n[[service]]\nname = \"pt\"\nlisten = \"{passthrough}\"\nmode = \"passthrough\"\n\
             idle_timeout = \"{idle}\"\n[[service.server]]\naddress = \"{plain}\"\n"
        ));
        let proxy = Proxy::start(&config);
        Bench {
            proxy,
            passthrough,
            offload: offload.listen,
            reencrypt: reencrypt.listen,
            log,
            client: ca_client(pki).build(),
            _dir: dir,
        }
    }

    /// A plain client of the passthrough service: sends a line, then reads until the end.
    fn plain_request(&self) -> (usize, Seen) {
        let mut sock = connect(self.passthrough);
        sock.write_all(b"GET\n").expect("send the request");
        ending(&mut sock)
    }

    /// A TLS client of `addr`: sends a line, then reads until the end; after a clean end it
    /// closes cleanly too (`close_notify`).
    fn tls_request(&self, addr: SocketAddr) -> (usize, Seen) {
        let mut s = tls_connect(addr, &self.client, FRONT_NAME).expect("handshake");
        s.write_all(b"GET\n")
            .and_then(|()| s.flush())
            .expect("send");
        let end = ending(&mut s);
        if end.1 == Seen::Clean {
            let _ = close_write(&mut s.conn, &mut s.sock);
        }
        end
    }

    /// Waits until the access log has a line for service `service` with `end=END`.
    fn wait_end(&self, service: &str, end: &str) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            let text = std::fs::read_to_string(&self.log).unwrap_or_default();
            if let Some(line) = text.lines().find(|l| {
                l.contains(&format!("service={service} ")) && l.contains(&format!("end={end}"))
            }) {
                return line.to_owned();
            }
            assert!(
                Instant::now() < deadline,
                "no end={end} line for service {service} in the access log:\n{text}\n--- proxy ---\n{}",
                self.proxy.logs_tail()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// Proves: a server reset mid-answer reaches every client as an abortive close after the bytes
/// sent before it (a RST for the plain client; a TLS session cut without `close_notify` for the
/// TLS ones), logged `end=server_reset`.
///
/// Fails if the reset is passed on as a FIN or a `close_notify` (`Seen::Clean`), if bytes sent
/// before the reset are lost, or if the log says anything else.
#[test]
fn a_server_reset_mid_answer_is_passed_on_as_an_abort() {
    let pki = Pki::new();
    let plain = plain_server(Then::Reset);
    let tls = tls_server(&pki.ca.leaf(&[BACKEND_NAME]), Then::Reset);
    let bench = Bench::start(&pki, plain.addr(), tls.addr(), "60s");

    let (n, seen) = bench.plain_request();
    assert!(abortive(&seen), "passthrough client saw {seen:?}");
    assert!(n <= PARTIAL, "passthrough: {n} bytes");
    bench.wait_end("pt", "server_reset");
    for (service, addr) in [("off", bench.offload), ("re", bench.reencrypt)] {
        let (n, seen) = bench.tls_request(addr);
        assert!(
            abortive(&seen),
            "{service}: client saw {seen:?} after {n} bytes"
        );
        assert_eq!(n, PARTIAL, "{service}: the bytes before the reset arrive");
        bench.wait_end(service, "server_reset");
    }
}

/// Proves: a TLS server that closes its TCP connection without `close_notify` mid-answer (a
/// crashed IIS worker) is passed on as an abortive close, logged `end=server_truncated`; the
/// same FIN from a plain server (offload) is a clean end and stays one (`server_close`).
///
/// Fails if the reencrypt client gets a `close_notify` (it would take the 40,000 bytes for the
/// whole answer), or if the offload client's clean close became an abort.
#[test]
fn a_tls_server_closing_without_close_notify_is_a_truncation() {
    let pki = Pki::new();
    let plain = plain_server(Then::Close);
    let tls = tls_server(&pki.ca.leaf(&[BACKEND_NAME]), Then::Close);
    let bench = Bench::start(&pki, plain.addr(), tls.addr(), "60s");

    let (n, seen) = bench.tls_request(bench.reencrypt);
    assert!(abortive(&seen), "reencrypt client saw {seen:?}");
    assert_eq!(n, PARTIAL);
    let line = bench.wait_end("re", "server_truncated");
    assert!(line.contains("close_notify"), "{line}");

    let (n, seen) = bench.tls_request(bench.offload);
    assert_eq!(
        (n, seen),
        (PARTIAL, Seen::Clean),
        "a plain FIN is a clean end"
    );
    bench.wait_end("off", "server_close");
    let (n, seen) = bench.plain_request();
    assert_eq!(
        (n, seen),
        (PARTIAL, Seen::Clean),
        "passthrough passes the FIN on"
    );
}

/// Proves: a server that goes silent mid-answer is given up after `idle_timeout` (1 s here) and
/// the client gets a reset, logged `end=timeout`.
///
/// Fails if the client hangs until its own read timeout, or sees a clean close.
#[test]
fn a_silent_server_is_cut_at_the_idle_timeout_with_a_reset() {
    let pki = Pki::new();
    let plain = plain_server(Then::Silence);
    let tls = tls_server(&pki.ca.leaf(&[BACKEND_NAME]), Then::Silence);
    let bench = Bench::start(&pki, plain.addr(), tls.addr(), "1s");
    let clients = [bench.offload, bench.reencrypt].map(|addr| {
        let client = bench.client.clone();
        std::thread::spawn(move || {
            let mut s = tls_connect(addr, &client, FRONT_NAME).expect("handshake");
            s.write_all(b"GET\n")
                .and_then(|()| s.flush())
                .expect("send");
            ending(&mut s)
        })
    });
    let started = Instant::now();
    let (n, seen) = bench.plain_request();
    assert_eq!((n, &seen), (PARTIAL, &Seen::Reset), "passthrough");
    for (i, client) in clients.into_iter().enumerate() {
        let (n, seen) = join(client, "client");
        assert_eq!(n, PARTIAL, "client {i}");
        assert!(abortive(&seen), "client {i} saw {seen:?}");
    }
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "closed by the proxy's 1 s idle timeout, not the client's read timeout"
    );
    for service in ["pt", "off", "re"] {
        bench.wait_end(service, "timeout");
    }
}

/// Proves: a reencrypt server that answers the ClientHello with garbage, or presents an expired
/// certificate, fails the client's connection with a reset before any TLS answer (no session,
/// no clean close), logged `end=server_error`; the worker lives and the next client of a good
/// server is served.
#[test]
fn garbage_or_an_expired_certificate_from_the_server_resets_the_client() {
    let pki = Pki::new();
    let garbage = Backend::start(|mut sock| {
        let _ = sock.write_all(b"HTTP/1.1 400 Bad Request\r\n\r\nnot TLS at all");
        let _ = sock.read(&mut [0u8; 1]);
    });
    let expired = TlsServer::echo(
        &pki.ca.leaf_with(&[BACKEND_NAME], Validity::Expired),
        ServerOpts::default(),
    );
    let good = TlsServer::echo(&pki.ca.leaf(&[BACKEND_NAME]), ServerOpts::default());
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("access.log");
    let services = [
        TlsService::reencrypt_to("garbage", &pki, &[garbage.addr()]),
        TlsService::reencrypt_to("expired", &pki, &[expired.addr()]),
        TlsService::reencrypt_to("good", &pki, &[good.addr()]),
    ];
    let config = tls_config(1, &services).replacen(
        "[global]\n",
        &format!(
            "[global]\naccess_log = {{ path = \"{}\" }}\n",
            log.display()
        ),
        1,
    );
    let proxy = Proxy::start(&config);
    let client = ca_client(&pki).build();
    for service in &services[..2] {
        let err = tls_connect(service.listen, &client, FRONT_NAME)
            .err()
            .unwrap_or_else(|| panic!("{}: a session was established", service.name));
        assert!(
            matches!(
                err.kind(),
                io::ErrorKind::ConnectionReset | io::ErrorKind::UnexpectedEof
            ),
            "{}: {err}",
            service.name
        );
    }
    let deadline = Instant::now() + WAIT;
    loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let ok = ["garbage", "expired"].iter().all(|s| {
            text.lines()
                .any(|l| l.contains(&format!("service={s} ")) && l.contains("end=server_error"))
        });
        if ok {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "log:\n{text}\n{}",
            proxy.logs_tail()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut s = tls_connect(services[2].listen, &client, FRONT_NAME).expect("good service");
    assert_eq!(
        tls_round_trip(&mut s, b"still here\n").expect("echo"),
        b"still here\n"
    );
}

/// Bytes a client uploads before it vanishes.
const UPLOAD: usize = 10_000;

/// Reads the [`UPLOAD`], answers `k` so the client knows it arrived, then reports how the
/// connection ended.
fn report_upload(stream: &mut (impl Read + Write), tx: &Mutex<Sender<Seen>>) {
    let mut upload = vec![0u8; UPLOAD];
    if stream.read_exact(&mut upload).is_err() || stream.write_all(b"k").is_err() {
        return;
    }
    let _ = stream.flush();
    let (_, seen) = ending(stream);
    let _ = tx.lock().expect("tx").send(seen);
}

fn reporting_plain_server() -> (Backend, Receiver<Seen>) {
    let (tx, rx) = mpsc::channel::<Seen>();
    let tx = Mutex::new(tx);
    let backend = Backend::start(move |mut sock| report_upload(&mut sock, &tx));
    (backend, rx)
}

fn reporting_tls_server(leaf: &Leaf) -> (TlsServer, Receiver<Seen>) {
    let (tx, rx) = mpsc::channel::<Seen>();
    let tx = Mutex::new(tx);
    let server = TlsServer::start(leaf, ServerOpts::default(), move |mut s| {
        report_upload(&mut s, &tx)
    });
    (server, rx)
}

/// Uploads [`UPLOAD`] bytes and waits for the server's `k`.
fn upload(stream: &mut (impl Read + Write)) {
    stream.write_all(&[b'u'; UPLOAD]).expect("upload");
    stream.flush().expect("flush");
    let mut k = [0u8; 1];
    stream
        .read_exact(&mut k)
        .expect("the server's acknowledgement");
}

/// Proves the other direction: a TLS client that vanishes without `close_notify` mid-upload
/// reaches the server as an abortive close (`client_truncated`), and a client's reset as a
/// reset (`client_reset`), in offload and reencrypt; a passthrough client's reset reaches its
/// server as a reset too.
///
/// Fails if a server sees a clean end (FIN or `close_notify`) of an upload that was cut short.
#[test]
fn a_client_vanishing_mid_upload_reaches_the_server_as_an_abort() {
    let pki = Pki::new();
    let (plain, plain_seen) = reporting_plain_server();
    let (tls, tls_seen) = reporting_tls_server(&pki.ca.leaf(&[BACKEND_NAME]));
    let bench = Bench::start(&pki, plain.addr(), tls.addr(), "60s");
    let next = |rx: &Receiver<Seen>| rx.recv_timeout(WAIT).expect("the server saw the end");

    for (service, addr, rx) in [
        ("off", bench.offload, &plain_seen),
        ("re", bench.reencrypt, &tls_seen),
    ] {
        // Without close_notify: the TCP connection is closed under the TLS session.
        let mut s = tls_connect(addr, &bench.client, FRONT_NAME).expect("handshake");
        upload(&mut s);
        s.sock.shutdown(Shutdown::Both).expect("shutdown");
        let seen = next(rx);
        assert!(
            abortive(&seen),
            "{service}: server saw {seen:?} after a truncation"
        );
        bench.wait_end(service, "client_truncated");

        let mut s = tls_connect(addr, &bench.client, FRONT_NAME).expect("handshake");
        upload(&mut s);
        reset(s.sock);
        let seen = next(rx);
        assert!(
            abortive(&seen),
            "{service}: server saw {seen:?} after a reset"
        );
        bench.wait_end(service, "client_reset");
    }
    let mut sock = connect(bench.passthrough);
    upload(&mut sock);
    reset(sock);
    assert_eq!(next(&plain_seen), Seen::Reset, "passthrough server");
    bench.wait_end("pt", "client_reset");
}
