//! `ringmaster demo` end to end, as a user runs it: no arguments, no files.
//!
//! What it proves: the demo prints where its files are, an Extended Protection verdict of `match`
//! and the `curl` lines to try; it then serves HTTPS on 127.0.0.1:8443 through its re-encrypt
//! service to its own demo servers (this test's client verifies the certificate against the
//! printed cert.pem, with SNI `localhost`, so ringmaster presents the demo certificate); the answer
//! and the demo's stdout both name the demo server that answered; SIGTERM stops it with exit 0,
//! and its temporary directory is gone.
//!
//! How it would fail: a demo config the loader rejects, or a re-encrypt path that cannot verify
//! the demo servers, never answers 200; demo servers that do not log would leave the "answered"
//! line missing; a runtime that ignores SIGTERM (or a demo that maps a clean stop to an error)
//! fails the exit check.
//!
//! The demo listens on 8443 unless told otherwise; this test gives it a port the kernel just
//! handed out (`--port`), so it runs whatever else listens on 8443. The default port's banner is
//! checked by `demo_banner_names_the_default_port` in the demo module's unit tests.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};

/// A loopback address with a port that was free a moment ago.
fn free_addr() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind 127.0.0.1:0")
}

/// Until the banner is printed (certificate generation, two demo servers, one EP probe each).
const BANNER_TIMEOUT: Duration = Duration::from_secs(30);

/// Until 127.0.0.1:8443 accepts after the banner (worker threads and io_uring rings start).
const LISTEN_TIMEOUT: Duration = Duration::from_secs(15);

/// Read/write timeout of the test's HTTPS connection.
const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// Until the demo exits after SIGTERM: its drain timeout is 5s, and this test's connection is
/// already closed.
const EXIT_TIMEOUT: Duration = Duration::from_secs(15);

/// The running demo; killed (by PID) if the test ends while it still runs.
struct Demo {
    child: Child,
    stdout: Receiver<String>,
    seen: Vec<String>,
    stderr: Receiver<String>,
}

impl Demo {
    fn start(addr: SocketAddr) -> Demo {
        let mut child = Command::new(env!("CARGO_BIN_EXE_ringmaster"))
            .arg("demo")
            .args(["--port", &addr.port().to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start ringmaster demo");
        let stdout = lines_of(child.stdout.take().expect("stdout"));
        let stderr = lines_of(child.stderr.take().expect("stderr"));
        Demo {
            child,
            stdout,
            seen: Vec::new(),
            stderr,
        }
    }

    /// Waits for a stdout line for which `wanted` holds, keeping every line read.
    fn wait_line(&mut self, within: Duration, wanted: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.stdout.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if wanted(&line) {
                        return line;
                    }
                }
                Err(_) => panic!(
                    "the expected line did not come within {within:?}\n{}",
                    self.dump()
                ),
            }
        }
    }

    fn dump(&self) -> String {
        let stderr: Vec<String> = self.stderr.try_iter().collect();
        format!(
            "--- stdout so far\n{}\n--- stderr\n{}",
            self.seen.join("\n"),
            stderr.join("\n")
        )
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Forwards the lines of a pipe to a channel, so that every read has a deadline.
fn lines_of(pipe: impl Read + Send + 'static) -> Receiver<String> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(pipe).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// Polls until `addr` accepts a connection, or `within` passes.
fn wait_listening(addr: SocketAddr, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(500)).is_ok() {
            return true;
        }
        thread::sleep(Duration::from_millis(50));
    }
    false
}

/// One `GET /` over HTTPS to the demo, trusting only `ca`; returns the status line and body.
fn https_get(addr: SocketAddr, ca: &PathBuf) -> io::Result<(String, String)> {
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).map_err(io::Error::other)? {
        roots
            .add(cert.map_err(io::Error::other)?)
            .map_err(io::Error::other)?;
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(io::Error::other)?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = ServerName::try_from("localhost").map_err(io::Error::other)?;
    let conn = ClientConnection::new(Arc::new(config), name).map_err(io::Error::other)?;
    let tcp = TcpStream::connect_timeout(&addr, IO_TIMEOUT)?;
    tcp.set_read_timeout(Some(IO_TIMEOUT))?;
    tcp.set_write_timeout(Some(IO_TIMEOUT))?;
    let mut tls = StreamOwned::new(conn, tcp);
    let request = format!(
        "GET / HTTP/1.1\r\nHost: localhost:{}\r\nConnection: close\r\n\r\n",
        addr.port()
    );
    tls.write_all(request.as_bytes())?;
    tls.flush()?;

    // Read the head, then exactly Content-Length bytes of body.
    let mut received = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = received.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = tls.read(&mut chunk)?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "closed before the response head",
            ));
        }
        received.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&received[..head_end]).into_owned();
    let length: usize = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length:")
                .map(|v| v.trim().to_string())
        })
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| io::Error::other(format!("no Content-Length in {head:?}")))?;
    while received.len() < head_end + length {
        let n = tls.read(&mut chunk)?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "closed before the whole body",
            ));
        }
        received.extend_from_slice(&chunk[..n]);
    }
    let status = head.lines().next().unwrap_or_default().to_string();
    let body = String::from_utf8_lossy(&received[head_end..head_end + length]).into_owned();
    Ok((status, body))
}

#[test]
fn demo_serves_https_through_a_reencrypt_service_and_stops_on_sigterm() {
    let addr = free_addr();
    let mut demo = Demo::start(addr);

    let cacert = demo.wait_line(BANNER_TIMEOUT, |l| l.contains("curl --cacert "));
    let ca = PathBuf::from(
        cacert
            .split_whitespace()
            .skip_while(|w| *w != "--cacert")
            .nth(1)
            .unwrap_or_else(|| panic!("no path after --cacert in {cacert:?}")),
    );
    demo.wait_line(BANNER_TIMEOUT, |l| l.contains("Ctrl-C to stop"));
    let banner = demo.seen.join("\n");
    assert!(
        banner.contains(&format!("curl -k https://{addr}/")),
        "{}",
        demo.dump()
    );
    assert!(
        banner.contains(&ca.parent().expect("dir").display().to_string()),
        "{}",
        demo.dump()
    );
    assert!(
        banner.contains("  match  "),
        "the EP verdict should be `match`\n{}",
        demo.dump()
    );
    assert!(!banner.contains("MISMATCH"), "{}", demo.dump());
    assert!(
        ca.is_file(),
        "{} does not exist\n{}",
        ca.display(),
        demo.dump()
    );

    assert!(
        wait_listening(addr, LISTEN_TIMEOUT),
        "{addr} never accepted\n{}",
        demo.dump()
    );
    let (status, body) = https_get(addr, &ca)
        .unwrap_or_else(|e| panic!("HTTPS GET through the demo: {e}\n{}", demo.dump()));
    assert!(
        status.starts_with("HTTP/1.1 200"),
        "{status}\n{}",
        demo.dump()
    );
    assert!(
        body.starts_with("hello from demo server "),
        "{body:?}\n{}",
        demo.dump()
    );
    let server = body["hello from demo server ".len()..]
        .split_whitespace()
        .next()
        .expect("server number")
        .to_string();
    let answered = format!("demo server {server} answered GET / from 127.0.0.1:");
    demo.wait_line(IO_TIMEOUT, |l| l.starts_with(&answered));

    // SAFETY: kill(2) on the PID of our own child, which is still running (not yet reaped).
    let rc = unsafe { libc::kill(demo.child.id() as libc::pid_t, libc::SIGTERM) };
    assert_eq!(rc, 0, "kill(SIGTERM)");
    let deadline = Instant::now() + EXIT_TIMEOUT;
    let status = loop {
        if let Some(status) = demo.child.try_wait().expect("try_wait") {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "the demo did not exit within {EXIT_TIMEOUT:?} of SIGTERM\n{}",
            demo.dump()
        );
        thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(status.code(), Some(0), "{}", demo.dump());
    assert!(
        !ca.exists(),
        "the demo directory was left behind: {}",
        ca.display()
    );
}
