//! The demo HTTPS servers: each listens on an ephemeral loopback port, presents the demo
//! certificate, answers `GET`/`HEAD` with a line naming itself, and prints one line per request, so
//! the user sees which server got each request. A minimal HTTP/1.1 with keep-alive; bounded in
//! connections, request head size and discarded body size, since it faces whatever reaches it.

use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use rustls::{ServerConfig, ServerConnection, StreamOwned};
use rustls_pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};

use super::pki::CertFiles;
use super::DemoError;

/// Connections one demo server handles at once (one thread each). Demo traffic is a few `curl`s
/// through ringmaster's per-core backend connections; the bound keeps a flood from spawning
/// unbounded threads. Connections over it are closed at once.
const MAX_CONNECTIONS_PER_SERVER: usize = 64;

/// Largest request head (request line and headers) a demo server reads; larger is answered 431.
const MAX_REQUEST_HEAD: usize = 16 * 1024;

/// Size of each socket read of a demo server: a typical request head fits in one.
const READ_CHUNK: usize = 4096;

/// A demo server closes a keep-alive connection idle this long, and gives up on a peer that does
/// not take a response for this long.
const IO_TIMEOUT: Duration = Duration::from_secs(60);

/// Longest request body a demo server reads and discards; a longer one ends the connection after
/// the response.
const MAX_DISCARDED_BODY: u64 = 1024 * 1024;

/// The demo servers' TLS: the demo certificate, HTTP/1.1 by ALPN.
pub(super) fn demo_server_config(files: &CertFiles) -> Result<Arc<ServerConfig>, DemoError> {
    let provider = crate::tls::provider();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(files.key_der.clone()));
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(crate::tls::PROTOCOL_VERSIONS)
        .and_then(|b| {
            b.with_no_client_auth()
                .with_single_cert(vec![files.cert_der.clone()], key)
        })
        .map_err(DemoError::Tls)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Binds demo server `index` on an ephemeral loopback port and serves it from a detached thread
/// (the demo ends with the process).
pub(super) fn start_demo_server(
    index: usize,
    tls: Arc<ServerConfig>,
) -> Result<SocketAddr, DemoError> {
    let fail = |source| DemoError::DemoServer { index, source };
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).map_err(fail)?;
    let own = listener.local_addr().map_err(fail)?;
    thread::Builder::new()
        .name(format!("demo-server-{index}"))
        .spawn(move || accept_loop(index, own, &listener, &tls))
        .map_err(fail)?;
    Ok(own)
}

/// Accepts forever, one thread per connection up to [`MAX_CONNECTIONS_PER_SERVER`].
fn accept_loop(index: usize, own: SocketAddr, listener: &TcpListener, tls: &Arc<ServerConfig>) {
    let active = Arc::new(AtomicUsize::new(0));
    loop {
        let tcp = match listener.accept() {
            Ok((tcp, _)) => tcp,
            Err(e) => {
                // EMFILE and friends pass; an accept error never stops the server.
                eprintln!("demo server {index}: accept failed: {e}");
                thread::sleep(Duration::from_millis(100));
                continue;
            }
        };
        if active.fetch_add(1, Ordering::AcqRel) >= MAX_CONNECTIONS_PER_SERVER {
            active.fetch_sub(1, Ordering::AcqRel);
            continue; // dropping `tcp` closes it
        }
        let (tls, done) = (tls.clone(), active.clone());
        let spawned = thread::Builder::new()
            .name(format!("demo-server-{index}-conn"))
            .spawn(move || {
                if let Err(e) = serve_connection(index, own, tcp, tls) {
                    eprintln!("demo server {index}: connection ended with an error: {e}");
                }
                done.fetch_sub(1, Ordering::AcqRel);
            });
        if spawned.is_err() {
            active.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

/// One parsed request head.
struct Request {
    method: String,
    target: String,
    close: bool,
    content_length: u64,
    chunked: bool,
}

/// Serves HTTP/1.1 requests on one TLS connection until the peer closes, asks to, or idles.
fn serve_connection(
    index: usize,
    own: SocketAddr,
    tcp: TcpStream,
    tls: Arc<ServerConfig>,
) -> io::Result<()> {
    let peer = tcp.peer_addr()?;
    tcp.set_read_timeout(Some(IO_TIMEOUT))?;
    tcp.set_write_timeout(Some(IO_TIMEOUT))?;
    let _ = tcp.set_nodelay(true);
    let conn = ServerConnection::new(tls).map_err(io::Error::other)?;
    let mut stream = StreamOwned::new(conn, tcp);
    let mut buf: Vec<u8> = Vec::with_capacity(READ_CHUNK);
    loop {
        let head_len = loop {
            if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break end + 4;
            }
            if buf.len() > MAX_REQUEST_HEAD {
                respond(
                    &mut stream,
                    431,
                    "Request Header Fields Too Large",
                    true,
                    "request head too large\n",
                    false,
                )?;
                return Ok(());
            }
            if !read_more(&mut stream, &mut buf)? {
                return Ok(());
            }
        };
        let Some(request) = parse_head(&buf[..head_len]) else {
            respond(
                &mut stream,
                400,
                "Bad Request",
                true,
                "bad request\n",
                false,
            )?;
            return Ok(());
        };
        buf.drain(..head_len);
        // Bodies are read and dropped; chunked or oversized ones end the connection instead.
        let mut close =
            request.close || request.chunked || request.content_length > MAX_DISCARDED_BODY;
        if !close {
            let mut left = request.content_length;
            while left > 0 {
                if buf.is_empty() && !read_more(&mut stream, &mut buf)? {
                    return Ok(());
                }
                let take = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
                buf.drain(..take);
                left -= take as u64;
            }
        }
        let (status, reason, body) = match request.method.as_str() {
            "GET" | "HEAD" => (
                200,
                "OK",
                format!("hello from demo server {index} ({own})\n"),
            ),
            _ => {
                close = true;
                (
                    405,
                    "Method Not Allowed",
                    "only GET and HEAD are served here\n".to_string(),
                )
            }
        };
        let with = if status == 200 {
            String::new()
        } else {
            format!(" with {status}")
        };
        println!(
            "demo server {index} answered {} {} from {peer}{with}",
            printable(&request.method),
            printable(&request.target)
        );
        respond(
            &mut stream,
            status,
            reason,
            close,
            &body,
            request.method == "HEAD",
        )?;
        if close {
            return Ok(());
        }
    }
}

/// Reads more bytes into `buf`; false when the peer has closed (or reset, or idled out).
fn read_more(
    stream: &mut StreamOwned<ServerConnection, TcpStream>,
    buf: &mut Vec<u8>,
) -> io::Result<bool> {
    let mut chunk = [0u8; READ_CHUNK];
    loop {
        match stream.read(&mut chunk) {
            Ok(0) => return Ok(false),
            Ok(n) => {
                buf.extend_from_slice(&chunk[..n]);
                return Ok(true);
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::UnexpectedEof
                        | io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::ConnectionReset
                        | io::ErrorKind::ConnectionAborted
                        | io::ErrorKind::BrokenPipe
                ) =>
            {
                return Ok(false)
            }
            Err(e) => return Err(e),
        }
    }
}

/// Writes one plain-text response (headers only for `HEAD`); `close` also sends `close_notify`.
fn respond(
    stream: &mut StreamOwned<ServerConnection, TcpStream>,
    status: u16,
    reason: &str,
    close: bool,
    body: &str,
    head_only: bool,
) -> io::Result<()> {
    let connection = if close { "close" } else { "keep-alive" };
    let mut response = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nConnection: {connection}\r\n",
        body.len()
    );
    if status == 405 {
        response.push_str("Allow: GET, HEAD\r\n");
    }
    response.push_str("\r\n");
    if !head_only {
        response.push_str(body);
    }
    stream.write_all(response.as_bytes())?;
    if close {
        stream.conn.send_close_notify();
    }
    stream.flush()
}

/// Parses a request head (request line and headers, ending with the blank line); `None` if the
/// request line is not `METHOD TARGET HTTP/1.x`.
fn parse_head(head: &[u8]) -> Option<Request> {
    let text = std::str::from_utf8(head).ok()?;
    let mut lines = text.split("\r\n");
    let mut parts = lines.next()?.split(' ');
    let (method, target, version) = (parts.next()?, parts.next()?, parts.next()?);
    if method.is_empty()
        || target.is_empty()
        || parts.next().is_some()
        || !version.starts_with("HTTP/1.")
    {
        return None;
    }
    let mut request = Request {
        method: method.to_string(),
        target: target.to_string(),
        // HTTP/1.0 closes unless it asks for keep-alive.
        close: version == "HTTP/1.0",
        content_length: 0,
        chunked: false,
    };
    for line in lines.filter(|l| !l.is_empty()) {
        let (name, value) = line.split_once(':')?;
        let value = value.trim();
        if name.eq_ignore_ascii_case("connection") {
            for token in value.split(',').map(str::trim) {
                if token.eq_ignore_ascii_case("close") {
                    request.close = true;
                } else if token.eq_ignore_ascii_case("keep-alive") {
                    request.close = false;
                }
            }
        } else if name.eq_ignore_ascii_case("content-length") {
            request.content_length = value.parse().ok()?;
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            request.chunked = true;
        }
    }
    Some(request)
}

/// Network text made safe for a terminal: control characters become `?`, long text is cut.
fn printable(text: &str) -> String {
    const MAX: usize = 100;
    let mut out: String = text
        .chars()
        .take(MAX)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect();
    if text.chars().count() > MAX {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_heads_are_parsed() {
        let r =
            parse_head(b"GET /x HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n").expect("parsed");
        assert_eq!(
            (r.method.as_str(), r.target.as_str(), r.close),
            ("GET", "/x", true)
        );
        let r = parse_head(b"POST / HTTP/1.1\r\ncontent-length: 12\r\n\r\n").expect("parsed");
        assert_eq!((r.content_length, r.close, r.chunked), (12, false, false));
        let r = parse_head(b"GET / HTTP/1.0\r\n\r\n").expect("parsed");
        assert!(r.close);
        let r = parse_head(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n").expect("parsed");
        assert!(!r.close);
        assert!(parse_head(b"GET /\r\n\r\n").is_none());
        assert!(parse_head(b"GET / SPDY/3\r\n\r\n").is_none());
        assert!(parse_head(b"GET / HTTP/1.1\r\nContent-Length: many\r\n\r\n").is_none());
    }

    #[test]
    fn printable_hides_control_characters() {
        assert_eq!(printable("/a\x1b[2Jb"), "/a?[2Jb");
        assert!(printable(&"x".repeat(500)).ends_with('…'));
    }
}
