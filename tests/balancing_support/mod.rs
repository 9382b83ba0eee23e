//! Helpers for the balancing and health-check integration tests, on top of `common`: a fake
//! server that says who it is and also answers an HTTP health check whose status the test
//! switches ([`IdServer`]), clients that connect from a chosen source address (127.0.0.x) so that
//! one test acts as many client IPs, service configs with the balancing keys, and readers of the
//! proxy's log (health transitions, check results, connection closes).
//!
//! Same rules as `common`: every socket has read and write timeouts, waits poll against a
//! deadline, ports come from the kernel.
//!
//! Include it next to `common` in a test crate: `mod common; mod balancing_support;`.

// Each test crate uses a different part of this module.
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, Socket, Type};

use crate::common::{Proxy, BACKEND_IO_TIMEOUT, IO_TIMEOUT};

/// Longest any awaited event may take (a health transition, a log line). Checks in these tests
/// run every 100 ms, so this is dozens of intervals: only a proxy that never gets there fails.
pub const DEADLINE: Duration = Duration::from_secs(10);

/// How often waits poll.
pub const POLL: Duration = Duration::from_millis(10);

/// What a client sends first: the fake server answers a line that is not an HTTP request with
/// its id (so a client learns which server it reached), and a `GET` with an HTTP answer.
pub const HELLO: &[u8] = b"id?\n";

/// Path of the fake servers' health endpoint.
pub const HEALTH_PATH: &str = "/health";

/// Stored in [`IdServer`]'s health switch: alternate 200 and 503 on every health request.
const FLAP: u16 = 0;

/// Longest request line or head the fake server reads before giving up on a connection.
const MAX_HEAD: usize = 4096;

/// The client address 127.0.0.`n` (n in 2..=254; 127.0.0.1 is left to the harness' probes).
pub fn client_ip(n: u8) -> Ipv4Addr {
    assert!((2..=254).contains(&n), "client address 127.0.0.{n}");
    Ipv4Addr::new(127, 0, 0, n)
}

/// The client addresses 127.0.0.2 ..= 127.0.0.(count + 1).
pub fn client_ips(count: u8) -> Vec<Ipv4Addr> {
    (2..count + 2).map(client_ip).collect()
}

// ---------------------------------------------------------------------------------------------
// The fake server
// ---------------------------------------------------------------------------------------------

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

// ---------------------------------------------------------------------------------------------
// Clients from chosen source addresses
// ---------------------------------------------------------------------------------------------

/// Connects to `to` from `src`:0 (a kernel-chosen port of that address), with [`IO_TIMEOUT`] as
/// connect, read and write timeout.
pub fn connect_from(src: Ipv4Addr, to: SocketAddr) -> io::Result<TcpStream> {
    let socket = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP))?;
    socket.bind(&SocketAddr::from((src, 0)).into())?;
    socket.connect_timeout(&to.into(), IO_TIMEOUT)?;
    let stream: TcpStream = socket.into();
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// Sends [`HELLO`] and reads the server's id line (without reading past it).
fn ask_id(stream: &mut TcpStream) -> io::Result<String> {
    stream.write_all(HELLO)?;
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    while line.len() < 256 {
        match stream.read(&mut byte) {
            Ok(0) => {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!(
                        "closed before the server's id (after {:?})",
                        String::from_utf8_lossy(&line)
                    ),
                ))
            }
            Ok(_) if byte[0] == b'\n' => return Ok(String::from_utf8_lossy(&line).into_owned()),
            Ok(_) => line.push(byte[0]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Err(io::Error::new(
        io::ErrorKind::InvalidData,
        "id line too long",
    ))
}

/// One connection from `src` through `proxy`: the id of the server it reached. The client then
/// closes its side and waits for the proxy to close, so the connection is over on return.
pub fn which_server(proxy: SocketAddr, src: Ipv4Addr) -> Result<String, String> {
    let held = hold(proxy, src)?;
    let id = held.server.clone();
    held.close()?;
    Ok(id)
}

/// [`which_server`], panicking with the client address and `what` on failure.
pub fn server_for(proxy: SocketAddr, src: Ipv4Addr, what: &str) -> String {
    which_server(proxy, src).unwrap_or_else(|e| panic!("{what}: client {src} via {proxy}: {e}"))
}

/// An open connection through the proxy, and the server it reached.
pub struct Held {
    /// The client's stream.
    pub stream: TcpStream,
    /// The id of the server it reached.
    pub server: String,
    /// The client address it came from.
    pub src: Ipv4Addr,
}

impl Held {
    /// Closes the client's write side and waits (up to [`IO_TIMEOUT`]) for the proxy to close
    /// the other: the server echoed nothing more, so the connection has ended at the proxy once
    /// this returns Ok.
    pub fn close(mut self) -> Result<(), String> {
        self.stream
            .shutdown(Shutdown::Write)
            .map_err(|e| format!("shutdown: {e}"))?;
        let mut buf = [0u8; 256];
        loop {
            match self.stream.read(&mut buf) {
                Ok(0) => return Ok(()),
                Ok(n) => return Err(format!("{n} unexpected bytes after the id")),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(format!("waiting for the close: {e}")),
            }
        }
    }
}

/// Opens a connection from `src` through `proxy`, learns its server and keeps it open.
pub fn hold(proxy: SocketAddr, src: Ipv4Addr) -> Result<Held, String> {
    let mut stream = connect_from(src, proxy).map_err(|e| format!("connect: {e}"))?;
    let server = ask_id(&mut stream).map_err(|e| format!("reading the server's id: {e}"))?;
    Ok(Held {
        stream,
        server,
        src,
    })
}

/// The servers each client reached, for messages: `{client: [servers in order]}`.
pub type Seen = BTreeMap<Ipv4Addr, Vec<String>>;

/// The distinct servers in `seen`.
pub fn servers_used(seen: &Seen) -> BTreeSet<String> {
    seen.values().flatten().cloned().collect()
}

/// The clients of `seen` that reached more than one server.
pub fn unsteady(seen: &Seen) -> Vec<(Ipv4Addr, Vec<String>)> {
    seen.iter()
        .filter(|(_, servers)| servers.iter().collect::<BTreeSet<_>>().len() > 1)
        .map(|(ip, servers)| (*ip, servers.clone()))
        .collect()
}

/// Each client of `ips` makes `per_client` connections to `proxy` one after another, all clients
/// at once (a thread each); returns the servers each reached, in order.
///
/// One client's connections never overlap, so its first connection has recorded its
/// persistence entry (if any) before its second is balanced.
pub fn connections_per_client(proxy: SocketAddr, ips: &[Ipv4Addr], per_client: usize) -> Seen {
    let handles: Vec<_> = ips
        .iter()
        .map(|&ip| {
            thread::spawn(move || {
                let servers: Result<Vec<String>, String> = (0..per_client)
                    .map(|i| which_server(proxy, ip).map_err(|e| format!("connection {i}: {e}")))
                    .collect();
                (ip, servers)
            })
        })
        .collect();
    let mut seen = Seen::new();
    for handle in handles {
        let (ip, servers) = crate::common::join(handle, "client thread");
        let servers = servers.unwrap_or_else(|e| panic!("client {ip} via {proxy}: {e}"));
        seen.insert(ip, servers);
    }
    seen
}

// ---------------------------------------------------------------------------------------------
// Configs
// ---------------------------------------------------------------------------------------------

/// One passthrough service for [`config`].
pub struct ServiceSpec<'a> {
    /// Its name.
    pub name: &'a str,
    /// Its listen address.
    pub listen: SocketAddr,
    /// `schedule`.
    pub schedule: &'a str,
    /// `persistence` timeout, if any (`mode = "source-ip"`).
    pub persistence: Option<&'a str>,
    /// `steer = "client-ip"` when true.
    pub steer: bool,
    /// The `[service.health]` table's body (key = value lines), if any.
    pub health: Option<String>,
    /// Its servers, in order (weight 1 each).
    pub servers: Vec<SocketAddr>,
}

impl<'a> ServiceSpec<'a> {
    /// A round-robin service named "test" on `listen` over `servers`, nothing else set.
    pub fn new(listen: SocketAddr, servers: Vec<SocketAddr>) -> ServiceSpec<'a> {
        ServiceSpec {
            name: "test",
            listen,
            schedule: "round-robin",
            persistence: None,
            steer: false,
            health: None,
            servers,
        }
    }
}

/// A config with `[global] workers = {workers}` and the given passthrough services.
pub fn config(workers: u32, services: &[ServiceSpec<'_>]) -> String {
    let mut toml = format!("[global]\nworkers = {workers}\ndrain_timeout = \"1s\"\n");
    for s in services {
        toml.push_str(&format!(
            "\n[[service]]\nname = \"{}\"\nlisten = \"{}\"\nmode = \"passthrough\"\n\
             connect_timeout = \"1s\"\nidle_timeout = \"60s\"\nschedule = \"{}\"\n",
            s.name, s.listen, s.schedule
        ));
        if let Some(timeout) = s.persistence {
            toml.push_str(&format!(
                "persistence = {{ mode = \"source-ip\", timeout = \"{timeout}\" }}\n"
            ));
        }
        if s.steer {
            toml.push_str("steer = \"client-ip\"\n");
        }
        if let Some(health) = &s.health {
            toml.push_str(&format!("\n[service.health]\n{health}\n"));
        }
        for server in &s.servers {
            toml.push_str(&format!(
                "\n[[service.server]]\naddress = \"{server}\"\nweight = 1\n"
            ));
        }
    }
    toml
}

/// The body of an `http` `[service.health]` table checking [`HEALTH_PATH`] every 100 ms.
///
/// The timeout is 90 ms rather than a tighter one: a loaded test machine can stall a checker or a
/// fake server for tens of milliseconds, and a spurious timeout is a failed check that would
/// disturb the exact rise/fall counts the tests look at.
pub fn http_health(rise: u32, fall: u32) -> String {
    format!(
        "check = \"http\"\npath = \"{HEALTH_PATH}\"\nexpect = [200]\ninterval = \"100ms\"\n\
         timeout = \"90ms\"\nrise = {rise}\nfall = {fall}"
    )
}

/// The body of a `tcp` `[service.health]` table, every 100 ms.
pub fn tcp_health(rise: u32, fall: u32) -> String {
    format!(
        "check = \"tcp\"\ninterval = \"100ms\"\ntimeout = \"90ms\"\nrise = {rise}\nfall = {fall}"
    )
}

// ---------------------------------------------------------------------------------------------
// The proxy's log
// ---------------------------------------------------------------------------------------------
//
// These read lines that ringmaster writes (tracing's fmt layer, no ANSI when stderr is a file):
//   WARN health: server up -> down service="test" server=127.0.0.1:PORT from=up to=down reason=...
//   INFO health: server down -> up ...
//   DEBUG health check service="test" server=127.0.0.1:PORT ok=false reason=... progress=1/3
//   DEBUG connection closed service=test client=127.0.0.5:PORT server=127.0.0.1:PORT ...
//   WARN connect to server failed; trying the next one service=test server=127.0.0.1:PORT ...
// Fields are matched as whole `key=value` tokens, so a port is never a prefix of another.

/// True if `line` has the whitespace-separated token `key=value`.
pub fn has_field(line: &str, key: &str, value: &str) -> bool {
    let token = format!("{key}={value}");
    line.split_whitespace().any(|t| t == token)
}

/// The health transitions of `server` in `logs`, in order: `(line number, "down" | "up")`.
pub fn transitions(logs: &str, server: SocketAddr) -> Vec<(usize, &'static str)> {
    let server = server.to_string();
    logs.lines()
        .enumerate()
        .filter(|(_, l)| l.contains("health: server") && has_field(l, "server", &server))
        .filter_map(|(i, l)| {
            if l.contains("-> down") {
                Some((i, "down"))
            } else if l.contains("-> up") {
                Some((i, "up"))
            } else {
                None
            }
        })
        .collect()
}

/// Lines `from..to` (line numbers) of `logs` that are results of a health check of `server`
/// with `ok=` `ok` that did not change its state.
pub fn check_lines(logs: &str, server: SocketAddr, ok: bool, from: usize, to: usize) -> usize {
    let server = server.to_string();
    let ok = ok.to_string();
    logs.lines()
        .enumerate()
        .skip(from)
        .take(to.saturating_sub(from))
        .filter(|(_, l)| {
            l.contains(" health check ")
                && has_field(l, "server", &server)
                && has_field(l, "ok", &ok)
        })
        .count()
}

/// Lines of `logs` that contain `text` and the field `server=<server>`.
pub fn lines_about(logs: &str, text: &str, server: SocketAddr) -> Vec<(usize, String)> {
    let server = server.to_string();
    logs.lines()
        .enumerate()
        .filter(|(_, l)| l.contains(text) && has_field(l, "server", &server))
        .map(|(i, l)| (i, l.to_owned()))
        .collect()
}

/// Number of lines in `logs`.
pub fn line_count(logs: &str) -> usize {
    logs.lines().count()
}

/// Polls the proxy's log until `found` returns Some (its value is returned) or [`DEADLINE`]
/// passes; then panics with `what` and `hint`.
pub fn wait_log<T>(
    proxy: &Proxy,
    what: &str,
    hint: impl Fn(&str) -> String,
    mut found: impl FnMut(&str) -> Option<T>,
) -> T {
    let end = Instant::now() + DEADLINE;
    loop {
        let logs = proxy.logs();
        if let Some(v) = found(&logs) {
            return v;
        }
        if Instant::now() >= end {
            panic!(
                "no {what} in the proxy's log within {DEADLINE:?}; {}",
                hint(&logs)
            );
        }
        thread::sleep(POLL);
    }
}

/// Waits for `server`'s `nth` health transition (0-based) to be `to`; returns its line number.
/// The panic message says whether health checks were started at all, since a runtime that never
/// runs them fails every health test here.
pub fn wait_transition(proxy: &Proxy, server: &IdServer, nth: usize, to: &'static str) -> usize {
    let what = format!(
        "health transition #{} of {} ({}) to {to}",
        nth + 1,
        server.id(),
        server.addr()
    );
    let checks = server.checks();
    wait_log(
        proxy,
        &what,
        |logs| {
            format!(
                "health checks started: {}; the fake server answered {} health requests ({} of \
                 them during the wait, {} failed in all); transitions so far: {:?}",
                if logs.contains("health checks started") {
                    "yes"
                } else {
                    "NO (the runtime never started the checkers?)"
                },
                server.checks(),
                server.checks() - checks,
                server.failed_checks(),
                transitions(logs, server.addr()),
            )
        },
        |logs| {
            let all = transitions(logs, server.addr());
            all.get(nth).map(|&(line, state)| {
                assert_eq!(
                    state,
                    to,
                    "{what}: the log has {all:?} for {} instead",
                    server.addr()
                );
                line
            })
        },
    )
}

/// Polls until `cond` is true or [`DEADLINE`] passes (then panics with `what`).
pub fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let end = Instant::now() + DEADLINE;
    while !cond() {
        assert!(
            Instant::now() < end,
            "timed out after {DEADLINE:?} waiting for {what}"
        );
        thread::sleep(POLL);
    }
}
