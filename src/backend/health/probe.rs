//! One health check of one server over blocking std sockets: connect, then (for `http` and
//! `https`) one request and the status line of the answer.
//!
//! Everything is bounded by one [`Deadline`]: the connect gets what is left of the check's
//! `timeout`, and every later socket read or write gets what is left at that moment, so a server
//! that trickles bytes cannot stretch a check past its timeout by more than the one read in
//! progress. At most [`MAX_ANSWER_HEAD`] bytes of the answer are read. TLS is driven by hand
//! (`write_tls` / `read_tls` / `process_new_packets`) rather than with `complete_io`, whose
//! internal loop would hide the deadline.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::{ClientConfig, ClientConnection};
use rustls_pki_types::ServerName;

use super::status_line::{parse_status, StatusLine};

/// Most bytes of an answer read while looking for its final status line. The status line is
/// under 100 bytes; 4 KiB also covers interim `1xx` answers with a few headers in front of it.
pub const MAX_ANSWER_HEAD: usize = 4096;

/// Bytes of a non-HTTP answer quoted in the failure reason: enough to recognise an SSH banner or
/// a TLS alert, short enough for one log line.
const QUOTED_BYTES: usize = 24;

/// Why a health check failed. Its `Display` is the reason logged and kept in
/// [`CheckSummary::reason`](crate::backend::state::CheckSummary::reason).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum CheckFailure {
    /// The server's host answered the connect with a reset (nothing listens on the port).
    #[error("connect refused")]
    Refused,
    /// The check's `timeout` ran out.
    #[error("timeout after {after:?} ({during})")]
    Timeout {
        /// The check's timeout.
        after: Duration,
        /// What the check was doing: `connecting`, `TLS handshake`, `sending the request`,
        /// `waiting for the HTTP status`.
        during: &'static str,
    },
    /// The connect failed otherwise (unreachable network, ...).
    #[error("connect failed: {0}")]
    Connect(String),
    /// A read or write failed after the connect.
    #[error("{0}")]
    Io(String),
    /// The server closed the connection before a complete status line.
    #[error("connection closed before the HTTP status line ({received} bytes received)")]
    Closed {
        /// Bytes of the answer received.
        received: usize,
    },
    /// The answer is not HTTP/1.x.
    #[error("not an HTTP answer: {why}: \"{start}\"")]
    NotHttp {
        /// What is wrong with it.
        why: &'static str,
        /// Its first bytes, escaped.
        start: String,
    },
    /// No final status line in the first [`MAX_ANSWER_HEAD`] bytes.
    #[error("no HTTP status line in the first {MAX_ANSWER_HEAD} bytes")]
    TooLong,
    /// The status is not one of those expected.
    #[error("HTTP {status} not in expect {expect:?}")]
    Status {
        /// The status received.
        status: u16,
        /// The statuses that pass.
        expect: Vec<u16>,
    },
    /// The TLS handshake failed: refused certificate, not a TLS port, protocol error.
    #[error("TLS: {}", tls_words(.0))]
    Tls(rustls::Error),
    /// The server closed the connection during the TLS handshake.
    #[error("TLS: the server closed the connection during the handshake")]
    TlsClosed,
    /// A bug in the checker (it panicked); the check counts as failed.
    #[error("internal error: {0}")]
    Internal(String),
}

/// A rustls error in words, with the likely cause when the server did not speak TLS.
fn tls_words(e: &rustls::Error) -> String {
    match e {
        rustls::Error::InvalidMessage(_) => {
            format!("the server did not answer in TLS (is it a TLS port?): {e}")
        }
        other => other.to_string(),
    }
}

/// What one probe showed.
#[derive(Debug)]
pub struct ProbeOutcome {
    /// What passed (`connected`, `HTTP 200`), or why it failed.
    pub result: Result<String, CheckFailure>,
    /// The end-entity certificate (DER) of a completed TLS handshake, whatever the HTTP answer.
    pub certificate: Option<Vec<u8>>,
}

impl ProbeOutcome {
    fn plain(result: Result<String, CheckFailure>) -> Self {
        Self {
            result,
            certificate: None,
        }
    }
}

/// What a probe does after the connect.
#[derive(Debug)]
pub enum Probe<'a> {
    /// Nothing: the connect is the check.
    Tcp,
    /// Send `request` and judge the status against `expect`.
    Http {
        /// The whole request, head and blank line.
        request: &'a [u8],
        /// Statuses that pass.
        expect: &'a [u16],
    },
    /// The same over TLS.
    Https {
        /// The whole request, head and blank line.
        request: &'a [u8],
        /// Statuses that pass.
        expect: &'a [u16],
        /// Client configuration: verification, no resumption.
        tls: &'a Arc<ClientConfig>,
        /// The name sent as SNI (none for an IP address) and verified.
        sni: &'a ServerName<'static>,
    },
}

/// The end of a check: the socket calls get what is left before it.
#[derive(Debug, Clone, Copy)]
struct Deadline {
    end: Instant,
    timeout: Duration,
}

impl Deadline {
    /// Time left, or a timeout failure naming what was being done.
    fn left(&self, during: &'static str) -> Result<Duration, CheckFailure> {
        let left = self.end.saturating_duration_since(Instant::now());
        if left.is_zero() {
            Err(self.expired(during))
        } else {
            Ok(left)
        }
    }

    fn expired(&self, during: &'static str) -> CheckFailure {
        CheckFailure::Timeout {
            after: self.timeout,
            during,
        }
    }

    /// Maps a socket error: a timeout as such, anything else as `what failed: error`.
    fn io_error(&self, e: &io::Error, during: &'static str, what: &str) -> CheckFailure {
        match e.kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => self.expired(during),
            _ => CheckFailure::Io(format!("{what} failed: {}", without_os_code(e))),
        }
    }
}

/// Runs one probe of `address` within `timeout`.
pub fn run(address: SocketAddr, timeout: Duration, probe: &Probe<'_>) -> ProbeOutcome {
    let deadline = Deadline {
        end: Instant::now() + timeout,
        timeout,
    };
    let mut tcp = match connect(address, &deadline) {
        Ok(tcp) => tcp,
        Err(e) => return ProbeOutcome::plain(Err(e)),
    };
    let _ = tcp.set_nodelay(true);
    match *probe {
        Probe::Tcp => ProbeOutcome::plain(Ok("connected".into())),
        Probe::Http { request, expect } => {
            ProbeOutcome::plain(http(&mut tcp, request, expect, &deadline))
        }
        Probe::Https {
            request,
            expect,
            tls,
            sni,
        } => https(&mut tcp, request, expect, tls, sni, &deadline),
    }
}

fn connect(address: SocketAddr, deadline: &Deadline) -> Result<TcpStream, CheckFailure> {
    const DURING: &str = "connecting";
    TcpStream::connect_timeout(&address, deadline.left(DURING)?).map_err(|e| match e.kind() {
        io::ErrorKind::ConnectionRefused => CheckFailure::Refused,
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => deadline.expired(DURING),
        _ => CheckFailure::Connect(without_os_code(&e)),
    })
}

/// Plain HTTP: write the request, read up to the status line.
fn http(
    tcp: &mut TcpStream,
    request: &[u8],
    expect: &[u16],
    deadline: &Deadline,
) -> Result<String, CheckFailure> {
    const SENDING: &str = "sending the request";
    const WAITING: &str = "waiting for the HTTP status";
    tcp.set_write_timeout(Some(deadline.left(SENDING)?))
        .map_err(|e| deadline.io_error(&e, SENDING, "setting a socket timeout"))?;
    tcp.write_all(request)
        .map_err(|e| deadline.io_error(&e, SENDING, "sending the request"))?;
    let status = read_status(|buf| {
        tcp.set_read_timeout(Some(deadline.left(WAITING)?))
            .map_err(|e| deadline.io_error(&e, WAITING, "setting a socket timeout"))?;
        loop {
            match tcp.read(buf) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(deadline.io_error(&e, WAITING, "reading the answer")),
                Ok(n) => return Ok(n),
            }
        }
    })?;
    judge(status, expect)
}

/// HTTPS: full handshake (the certificate is kept), then the request and its status line.
fn https(
    tcp: &mut TcpStream,
    request: &[u8],
    expect: &[u16],
    tls: &Arc<ClientConfig>,
    sni: &ServerName<'static>,
    deadline: &Deadline,
) -> ProbeOutcome {
    let mut conn = match ClientConnection::new(tls.clone(), sni.clone()) {
        Ok(conn) => conn,
        Err(e) => return ProbeOutcome::plain(Err(CheckFailure::Tls(e))),
    };
    if let Err(e) = handshake(&mut conn, tcp, deadline) {
        return ProbeOutcome::plain(Err(e));
    }
    let certificate = conn
        .peer_certificates()
        .and_then(|chain| chain.first())
        .map(|der| der.as_ref().to_vec());
    let result = tls_request(&mut conn, tcp, request, deadline).and_then(|s| judge(s, expect));
    // Polite close; the verdict is already known, so errors here do not matter.
    conn.send_close_notify();
    let _ = flush_tls(&mut conn, tcp, deadline, "closing");
    ProbeOutcome {
        result,
        certificate,
    }
}

/// Drives the TLS handshake to its end within the deadline.
fn handshake(
    conn: &mut ClientConnection,
    tcp: &mut TcpStream,
    deadline: &Deadline,
) -> Result<(), CheckFailure> {
    const DURING: &str = "TLS handshake";
    while conn.is_handshaking() {
        flush_tls(conn, tcp, deadline, DURING)?;
        if !conn.is_handshaking() {
            break;
        }
        if read_tls(conn, tcp, deadline, DURING)? == 0 {
            return Err(CheckFailure::TlsClosed);
        }
    }
    Ok(())
}

/// Sends the request over TLS and reads up to the status line.
fn tls_request(
    conn: &mut ClientConnection,
    tcp: &mut TcpStream,
    request: &[u8],
    deadline: &Deadline,
) -> Result<u16, CheckFailure> {
    const SENDING: &str = "sending the request";
    const WAITING: &str = "waiting for the HTTP status";
    conn.writer()
        .write_all(request)
        .map_err(|e| CheckFailure::Io(format!("sending the request failed: {e}")))?;
    flush_tls(conn, tcp, deadline, SENDING)?;
    let mut closed = false;
    read_status(|buf| loop {
        match conn.reader().read(buf) {
            Ok(n) => return Ok(n),
            // Closed without close_notify: common with `Connection: close`; an end like any other.
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(0),
            // Nothing more will come: do not read a closed socket again.
            Err(e) if e.kind() == io::ErrorKind::WouldBlock && closed => return Ok(0),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(CheckFailure::Io(format!("reading the answer failed: {e}"))),
        }
        // Key updates and alerts the server's records may call for.
        flush_tls(conn, tcp, deadline, WAITING)?;
        closed = read_tls(conn, tcp, deadline, WAITING)? == 0;
    })
}

/// Writes every TLS record rustls has queued.
fn flush_tls(
    conn: &mut ClientConnection,
    tcp: &mut TcpStream,
    deadline: &Deadline,
    during: &'static str,
) -> Result<(), CheckFailure> {
    while conn.wants_write() {
        tcp.set_write_timeout(Some(deadline.left(during)?))
            .map_err(|e| deadline.io_error(&e, during, "setting a socket timeout"))?;
        match conn.write_tls(tcp) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(deadline.io_error(&e, during, "sending")),
        }
    }
    Ok(())
}

/// One socket read into rustls, then processing; returns the bytes read (0: the server closed).
/// On a TLS error, the alert rustls queued is sent (best effort) before the error is returned.
fn read_tls(
    conn: &mut ClientConnection,
    tcp: &mut TcpStream,
    deadline: &Deadline,
    during: &'static str,
) -> Result<usize, CheckFailure> {
    tcp.set_read_timeout(Some(deadline.left(during)?))
        .map_err(|e| deadline.io_error(&e, during, "setting a socket timeout"))?;
    let read = loop {
        match conn.read_tls(tcp) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(deadline.io_error(&e, during, "receiving")),
            Ok(n) => break n,
        }
    };
    if let Err(e) = conn.process_new_packets() {
        let _ = flush_tls(conn, tcp, deadline, during);
        return Err(CheckFailure::Tls(e));
    }
    Ok(read)
}

/// Reads with `read_some` (0 = end of stream) until the bytes decide the final status, at most
/// [`MAX_ANSWER_HEAD`] of them.
fn read_status(
    mut read_some: impl FnMut(&mut [u8]) -> Result<usize, CheckFailure>,
) -> Result<u16, CheckFailure> {
    let mut buf = [0u8; MAX_ANSWER_HEAD];
    let mut filled = 0;
    loop {
        if filled == buf.len() {
            return Err(CheckFailure::TooLong);
        }
        let n = read_some(&mut buf[filled..])?;
        if n == 0 {
            return Err(CheckFailure::Closed { received: filled });
        }
        // A reader never returns more than the slice it was given; `min` keeps that an
        // invariant here rather than a trust.
        filled = (filled + n).min(buf.len());
        match parse_status(&buf[..filled]) {
            StatusLine::Incomplete => {}
            StatusLine::Status(status) => return Ok(status),
            StatusLine::Invalid(why) => {
                let shown = &buf[..filled.min(QUOTED_BYTES)];
                return Err(CheckFailure::NotHttp {
                    why,
                    start: shown.escape_ascii().to_string(),
                });
            }
        }
    }
}

/// Passes a status in `expect`.
fn judge(status: u16, expect: &[u16]) -> Result<String, CheckFailure> {
    if expect.contains(&status) {
        Ok(format!("HTTP {status}"))
    } else {
        Err(CheckFailure::Status {
            status,
            expect: expect.to_vec(),
        })
    }
}

/// An OS error's message without the ` (os error N)` suffix, for one-line reasons.
fn without_os_code(e: &io::Error) -> String {
    let text = e.to_string();
    match text.find(" (os error ") {
        Some(at) => text[..at].to_string(),
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reader that hands out `data` in pieces of `step` bytes, then end of stream.
    fn pieces(
        data: &[u8],
        step: usize,
    ) -> impl FnMut(&mut [u8]) -> Result<usize, CheckFailure> + '_ {
        let mut at = 0;
        move |buf| {
            let n = step.min(buf.len()).min(data.len() - at);
            buf[..n].copy_from_slice(&data[at..at + n]);
            at += n;
            Ok(n)
        }
    }

    #[test]
    fn status_is_read_in_any_piece_size() {
        let answer = b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\n\r\n";
        for step in 1..answer.len() {
            assert_eq!(read_status(pieces(answer, step)), Ok(503), "step {step}");
        }
    }

    #[test]
    fn short_garbage_and_endless_answers_fail_with_reasons() {
        assert_eq!(
            read_status(pieces(b"HTTP/1.1 20", 4)),
            Err(CheckFailure::Closed { received: 11 })
        );
        let e = read_status(pieces(b"SSH-2.0-OpenSSH_9.2p1\r\n", 64)).unwrap_err();
        assert_eq!(
            e.to_string(),
            "not an HTTP answer: not an HTTP response: \"SSH-2.0-OpenSSH_9.2p1\\r\\n\""
        );
        // An interim answer whose headers never end: stopped at the limit.
        let mut endless = b"HTTP/1.1 100 Continue\r\n".to_vec();
        endless.resize(3 * MAX_ANSWER_HEAD, b'x');
        assert_eq!(
            read_status(pieces(&endless, 1000)),
            Err(CheckFailure::TooLong)
        );
    }

    #[test]
    fn reasons_read_well() {
        assert_eq!(
            judge(503, &[200]).unwrap_err().to_string(),
            "HTTP 503 not in expect [200]"
        );
        assert_eq!(judge(204, &[200, 204]), Ok("HTTP 204".into()));
        let timeout = CheckFailure::Timeout {
            after: Duration::from_secs(2),
            during: "connecting",
        };
        assert_eq!(timeout.to_string(), "timeout after 2s (connecting)");
        assert_eq!(CheckFailure::Refused.to_string(), "connect refused");
        let tls = CheckFailure::Tls(rustls::Error::InvalidCertificate(
            rustls::CertificateError::UnknownIssuer,
        ));
        assert_eq!(
            tls.to_string(),
            "TLS: invalid peer certificate: UnknownIssuer"
        );
    }
}
