//! The fake real server of the balancing tests: [`IdServer`] tells each client which server it
//! reached and answers an HTTP health check whose status the test switches; its port can be
//! reserved (bound but refusing connections) and closed while the test runs.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};

use super::HEALTH_PATH;
use crate::common::BACKEND_IO_TIMEOUT;

/// Stored in [`IdServer`]'s health switch: alternate 200 and 503 on every health request.
const FLAP: u16 = 0;

/// Longest request line or head the fake server reads before giving up on a connection.
const MAX_HEAD: usize = 4096;

/// State shared by an [`IdServer`]'s threads and the test.
struct Shared {
    id: String,
    /// Status of the next health answer, or [`FLAP`].
    health: AtomicU16,
    /// Health requests answered so far.
    checks: AtomicUsize,
    /// Health requests answered with something other than 200.
    failed_checks: AtomicUsize,
    /// Client connections that were told the id.
    greeted: AtomicUsize,
    stop: AtomicBool,
}

/// A fake real server on 127.0.0.1 with a kernel-chosen port. On each connection it reads the
/// first line: `GET /health ...` gets an HTTP answer whose status the test sets
/// ([`IdServer::set_health`], or [`IdServer::flap`]); any other line gets `"{id}\n"` and then an
/// echo of everything until EOF. A connection closed before its first line (the harness'
/// readiness probe, a `tcp` health check) is just closed.
///
/// It can be made *reserved*: the port is bound (so no one else gets it) but not listening, so
/// connections to it are refused until [`IdServer::listen`]. [`IdServer::close`] stops it and
/// closes the port; connections already open carry on.
pub struct IdServer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    reserved: Option<Socket>,
    thread: Option<JoinHandle<()>>,
}

impl IdServer {
    /// A server named `id`, listening, answering health checks with 200.
    pub fn start(id: &str) -> IdServer {
        let mut server = IdServer::reserve(id);
        server.listen();
        server
    }

    /// A server named `id` whose port is bound but refuses connections until
    /// [`IdServer::listen`].
    pub fn reserve(id: &str) -> IdServer {
        let socket = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP)).expect("socket");
        socket.set_reuse_address(true).expect("SO_REUSEADDR");
        let any = SocketAddr::from(([127, 0, 0, 1], 0));
        socket.bind(&any.into()).expect("bind 127.0.0.1:0");
        let addr = socket
            .local_addr()
            .expect("local_addr")
            .as_socket()
            .expect("an IP address");
        IdServer {
            addr,
            shared: Arc::new(Shared {
                id: id.to_owned(),
                health: AtomicU16::new(200),
                checks: AtomicUsize::new(0),
                failed_checks: AtomicUsize::new(0),
                greeted: AtomicUsize::new(0),
                stop: AtomicBool::new(false),
            }),
            reserved: Some(socket),
            thread: None,
        }
    }

    /// Starts accepting on the reserved port (no-op if it already does).
    pub fn listen(&mut self) {
        let Some(socket) = self.reserved.take() else {
            return;
        };
        socket.listen(128).expect("listen");
        let listener: TcpListener = socket.into();
        let shared = self.shared.clone();
        let thread = thread::Builder::new()
            .name(format!("id-server-{}", self.addr.port()))
            .spawn(move || {
                for conn in listener.incoming() {
                    if shared.stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(stream) = conn else { continue };
                    let shared = shared.clone();
                    thread::spawn(move || serve(&shared, stream));
                }
            })
            .expect("spawn id server thread");
        self.thread = Some(thread);
    }

    /// Stops accepting and closes the port: new connections are refused from when it returns.
    pub fn close(&mut self) {
        self.reserved = None;
        if let Some(thread) = self.thread.take() {
            self.shared.stop.store(true, Ordering::SeqCst);
            // Wake the blocking accept so that it sees the flag.
            let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
            let _ = thread.join();
        }
    }

    /// Its address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Its id, what clients read.
    pub fn id(&self) -> &str {
        &self.shared.id
    }

    /// The status of the following health answers.
    pub fn set_health(&self, status: u16) {
        self.shared.health.store(status, Ordering::SeqCst);
    }

    /// From now on health answers alternate 503, 200, 503, ... (one per request).
    pub fn flap(&self) {
        self.shared.health.store(FLAP, Ordering::SeqCst);
    }

    /// Health requests answered so far.
    pub fn checks(&self) -> usize {
        self.shared.checks.load(Ordering::SeqCst)
    }

    /// Health requests answered with a status other than 200 so far.
    pub fn failed_checks(&self) -> usize {
        self.shared.failed_checks.load(Ordering::SeqCst)
    }

    /// Client connections that were told the id so far.
    pub fn greeted(&self) -> usize {
        self.shared.greeted.load(Ordering::SeqCst)
    }
}

impl Drop for IdServer {
    fn drop(&mut self) {
        self.close();
    }
}

/// One connection of an [`IdServer`].
fn serve(shared: &Shared, mut stream: TcpStream) {
    let _ = stream.set_read_timeout(Some(BACKEND_IO_TIMEOUT));
    let _ = stream.set_write_timeout(Some(BACKEND_IO_TIMEOUT));
    let _ = stream.set_nodelay(true);
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    // The first line (or, for HTTP, the whole head), bounded.
    loop {
        let is_http = head.starts_with(b"GET ");
        let done = if is_http {
            head.windows(4).any(|w| w == b"\r\n\r\n")
        } else {
            head.contains(&b'\n')
        };
        if done {
            break;
        }
        if head.len() > MAX_HEAD {
            return;
        }
        match stream.read(&mut buf) {
            Ok(0) => return, // closed before its first line: a probe
            Ok(n) => head.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return,
        }
    }
    if head.starts_with(b"GET ") {
        answer_http(shared, &mut stream, &head);
        return;
    }
    shared.greeted.fetch_add(1, Ordering::SeqCst);
    let newline = head.iter().position(|&b| b == b'\n').unwrap_or(head.len());
    let greeting = format!("{}\n", shared.id);
    if stream.write_all(greeting.as_bytes()).is_err() {
        return;
    }
    // Bytes after the first line are echoed like the rest.
    let rest = &head[(newline + 1).min(head.len())..];
    if !rest.is_empty() && stream.write_all(rest).is_err() {
        return;
    }
    loop {
        match stream.read(&mut buf) {
            Ok(0) => {
                let _ = stream.shutdown(Shutdown::Write);
                return;
            }
            Ok(n) => {
                if stream.write_all(&buf[..n]).is_err() {
                    return;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return,
        }
    }
}

/// Answers an HTTP request head: the health switch for [`HEALTH_PATH`], 404 for anything else.
fn answer_http(shared: &Shared, stream: &mut TcpStream, head: &[u8]) {
    let path = head
        .split(|&b| b == b' ')
        .nth(1)
        .map(|p| String::from_utf8_lossy(p).into_owned())
        .unwrap_or_default();
    let status = if path == HEALTH_PATH {
        let n = shared.checks.fetch_add(1, Ordering::SeqCst);
        let status = match shared.health.load(Ordering::SeqCst) {
            FLAP if n % 2 == 0 => 503,
            FLAP => 200,
            status => status,
        };
        if status != 200 {
            shared.failed_checks.fetch_add(1, Ordering::SeqCst);
        }
        status
    } else {
        404
    };
    let reason = match status {
        200 => "OK",
        404 => "Not Found",
        503 => "Service Unavailable",
        _ => "Status",
    };
    let answer =
        format!("HTTP/1.1 {status} {reason}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
    // The checker may close as soon as it has the status line: errors here do not matter.
    let _ = stream.write_all(answer.as_bytes());
    let _ = stream.shutdown(Shutdown::Write);
}
