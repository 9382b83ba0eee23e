//! Shared harness for the integration tests: it starts the real `ringmaster` binary against
//! in-process fake backends and gives the tests deterministic data, digests and bounded I/O.
//!
//! Rules every helper here keeps, so that a broken proxy fails a test instead of hanging it:
//! - every socket has a read and a write timeout ([`IO_TIMEOUT`] on the client side,
//!   [`BACKEND_IO_TIMEOUT`] on the backend side, which is longer so that a backend giving up can
//!   never pass for a proxy timeout);
//! - every wait polls against a deadline; nothing sleeps blindly;
//! - ports come from the kernel (bind port 0), never fixed, because tests run in parallel.
//!
//! The proxy's readiness probe ([`Proxy::start`]) opens one connection per `listen` address, and
//! the proxy relays it to a backend: backend accept counters include it, and the backends that
//! report transfers ([`Backend::duplex`] ...) only report connections that carried data.

// Each test crate uses a different part of this module.
#![allow(dead_code)]

use sha2::{Digest as _, Sha256};
use std::collections::HashMap;
use std::fmt;
use std::fs::File;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// Read/write timeout of client sockets in tests: a proxy that stops relaying fails the test
/// after this long instead of hanging it.
pub const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// Read/write timeout of fake backend sockets. Longer than any client-side deadline, so a
/// backend that gives up on an idle connection can never be mistaken for the proxy closing it.
pub const BACKEND_IO_TIMEOUT: Duration = Duration::from_secs(60);

/// How long [`Proxy::start`] waits for every `listen` address to accept.
pub const READY_TIMEOUT: Duration = Duration::from_secs(10);

/// Size of the reads and writes the helpers do: large enough for bulk throughput, small enough
/// that a ping-pong echo of one chunk fits in loopback socket buffers without deadlock.
pub const CHUNK: usize = 64 * 1024;

/// Bytes of the proxy's log shown when a test panics: the tail is where the failure is.
const LOG_TAIL_ON_PANIC: usize = 24 * 1024;

/// One MiB, for sizes in tests.
pub const MIB: u64 = 1024 * 1024;

// ---------------------------------------------------------------------------------------------
// Ports and sockets
// ---------------------------------------------------------------------------------------------

/// A loopback port that was free a moment ago (bind 127.0.0.1:0, read the port, drop).
pub fn free_port() -> u16 {
    free_ports(1)[0]
}

/// `n` distinct loopback ports that were free a moment ago: all are held at once before being
/// released, so they cannot repeat, and no port is handed out twice in one test process (the
/// kernel may give a just-released port again, which made two services share a port).
pub fn free_ports(n: usize) -> Vec<u16> {
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
    let mut held: Vec<TcpListener> = Vec::new();
    let mut ports = Vec::with_capacity(n);
    while ports.len() < n {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let port = listener.local_addr().expect("local_addr").port();
        if !given.contains(&port) {
            given.push(port);
            ports.push(port);
        }
        // Held until all are chosen, so a refused duplicate is not offered again at once.
        held.push(listener);
    }
    ports
}

/// A loopback address with nothing listening on it: connecting there is refused.
pub fn dead_addr() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], free_port()))
}

/// Sets the client-side timeouts and `TCP_NODELAY` on a socket.
fn client_socket(stream: &TcpStream) {
    stream
        .set_read_timeout(Some(IO_TIMEOUT))
        .expect("set_read_timeout");
    stream
        .set_write_timeout(Some(IO_TIMEOUT))
        .expect("set_write_timeout");
    stream.set_nodelay(true).expect("set_nodelay");
}

/// Connects with [`IO_TIMEOUT`] as connect, read and write timeout.
pub fn try_connect(addr: SocketAddr) -> io::Result<TcpStream> {
    let stream = TcpStream::connect_timeout(&addr, IO_TIMEOUT)?;
    client_socket(&stream);
    Ok(stream)
}

/// Like [`try_connect`], panicking with the address on failure.
pub fn connect(addr: SocketAddr) -> TcpStream {
    try_connect(addr).unwrap_or_else(|e| panic!("connect to {addr}: {e}"))
}

/// Polls until a connect to `addr` is refused, closing any connection that still got through;
/// true if refused before `within` passed.
pub fn wait_refused(addr: SocketAddr, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        match TcpStream::connect_timeout(&addr, Duration::from_millis(500)) {
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => return true,
            Ok(stream) => drop(stream),
            Err(_) => {}
        }
        thread::sleep(Duration::from_millis(20));
    }
    false
}

/// How a read on a connection that should be closed ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Closed {
    /// A FIN: `read` returned 0.
    Eof,
    /// A RST (or the socket was otherwise torn down).
    Reset(io::ErrorKind),
}

/// Reads until the peer closes, discarding data, with `within` as read timeout; returns how it
/// ended, or an error saying what was read instead (timeout, or data when `allow_data` is false).
pub fn wait_closed(
    stream: &mut TcpStream,
    within: Duration,
    allow_data: bool,
) -> Result<Closed, String> {
    let deadline = Instant::now() + within;
    let mut buf = vec![0u8; CHUNK];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(format!("still open after {within:?}"));
        }
        stream
            .set_read_timeout(Some(left))
            .expect("set_read_timeout");
        match stream.read(&mut buf) {
            Ok(0) => return Ok(Closed::Eof),
            Ok(_) if allow_data => {}
            Ok(n) => return Err(format!("got {n} bytes instead of a close")),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return Err(format!("still open after {within:?}"));
            }
            Err(e) => return Ok(Closed::Reset(e.kind())),
        }
    }
}

/// Reads one line (up to and including `\n`, at most 256 bytes) without reading past it.
pub fn read_line(stream: &mut TcpStream) -> io::Result<String> {
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    while line.len() < 256 {
        match stream.read(&mut byte) {
            Ok(0) => {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("EOF after {:?}", String::from_utf8_lossy(&line)),
                ))
            }
            Ok(_) => {
                line.push(byte[0]);
                if byte[0] == b'\n' {
                    return Ok(String::from_utf8_lossy(&line).into_owned());
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Err(io::Error::new(
        io::ErrorKind::InvalidData,
        "line longer than 256 bytes",
    ))
}

/// Writes `msg` and reads back exactly as many bytes: one echo round trip.
pub fn echo_round_trip(stream: &mut TcpStream, msg: &[u8]) -> io::Result<Vec<u8>> {
    stream.write_all(msg)?;
    let mut back = vec![0u8; msg.len()];
    stream.read_exact(&mut back)?;
    Ok(back)
}

// ---------------------------------------------------------------------------------------------
// Deterministic data and digests
// ---------------------------------------------------------------------------------------------

/// A SHA-256 digest, printed in hex.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Digest(pub [u8; 32]);

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in &self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

/// SHA-256 of a byte slice.
pub fn sha256(data: &[u8]) -> Digest {
    Digest(Sha256::digest(data).into())
}

/// What one side of a transfer received: byte count and SHA-256.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Received {
    /// Bytes received.
    pub bytes: u64,
    /// SHA-256 of those bytes, in order.
    pub sha256: Digest,
}

/// Reads until EOF, hashing everything. A reset or timeout is an error (with the count so far).
pub fn read_to_eof(stream: &mut impl Read) -> io::Result<Received> {
    read_to_eof_counting(stream, &mut 0)
}

/// [`read_to_eof`] that also leaves the count of bytes read in `bytes` when it fails.
fn read_to_eof_counting(stream: &mut impl Read, bytes: &mut u64) -> io::Result<Received> {
    let mut hasher = Sha256::new();
    *bytes = 0;
    let mut buf = vec![0u8; CHUNK];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => {
                return Ok(Received {
                    bytes: *bytes,
                    sha256: Digest(hasher.finalize().into()),
                })
            }
            Ok(n) => {
                hasher.update(&buf[..n]);
                *bytes += n as u64;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(io::Error::new(e.kind(), format!("{e} after {bytes} bytes"))),
        }
    }
}

/// xorshift64: the generator behind [`Pattern`].
fn xorshift64(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

/// Bytes of the pseudo-random pool that [`Pattern`] chunks are cut from.
const POOL_LEN: usize = 1 << 20;

/// 1 MiB of xorshift output, generated once per test binary: cutting chunks from it keeps data
/// generation at memcpy speed in unoptimised test builds (xorshift per byte is ~10x slower).
fn pool() -> &'static [u8] {
    static POOL: OnceLock<Vec<u8>> = OnceLock::new();
    POOL.get_or_init(|| {
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        let mut pool = Vec::with_capacity(POOL_LEN);
        while pool.len() < POOL_LEN {
            pool.extend_from_slice(&xorshift64(&mut state).to_le_bytes());
        }
        pool
    })
}

/// A deterministic pseudo-random byte stream of `len` bytes named by `seed`.
///
/// Chunk `i` (of [`CHUNK`] bytes) is a slice of the xorshift pool at an offset chosen by another
/// xorshift of `(seed, i)`, stamped with `seed` and `i` in its first 16 bytes: so no two chunks
/// are equal and a lost, repeated, reordered or altered chunk changes the stream's SHA-256.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Pattern {
    /// Names the stream; two seeds give unrelated streams.
    pub seed: u64,
    /// Length in bytes.
    pub len: u64,
}

impl Pattern {
    /// The stream `seed` of `len` bytes.
    pub fn new(seed: u64, len: u64) -> Pattern {
        Pattern { seed, len }
    }

    /// Fills `out` with chunk `index` (its length says how many bytes of the chunk to produce).
    fn fill_chunk(&self, index: u64, out: &mut [u8]) {
        let mut state = (self.seed ^ index.wrapping_mul(0xA24B_AED4_963E_E407)) | 1;
        xorshift64(&mut state);
        let offset = (xorshift64(&mut state) % (POOL_LEN - CHUNK) as u64) as usize;
        out.copy_from_slice(&pool()[offset..offset + out.len()]);
        let mut stamp = [0u8; 16];
        stamp[..8].copy_from_slice(&self.seed.to_le_bytes());
        stamp[8..].copy_from_slice(&index.to_le_bytes());
        let n = out.len().min(16);
        out[..n].copy_from_slice(&stamp[..n]);
    }

    /// Calls `f` with each chunk in order, reusing one buffer.
    pub fn for_each_chunk<E>(&self, mut f: impl FnMut(&[u8]) -> Result<(), E>) -> Result<(), E> {
        let mut buf = vec![0u8; CHUNK];
        let mut sent = 0u64;
        let mut index = 0u64;
        while sent < self.len {
            let n = (self.len - sent).min(CHUNK as u64) as usize;
            self.fill_chunk(index, &mut buf[..n]);
            f(&buf[..n])?;
            sent += n as u64;
            index += 1;
        }
        Ok(())
    }

    /// The whole stream in memory (for small patterns).
    pub fn bytes(&self) -> Vec<u8> {
        let mut all = Vec::with_capacity(self.len as usize);
        self.for_each_chunk(|c| {
            all.extend_from_slice(c);
            Ok::<(), ()>(())
        })
        .expect("infallible");
        all
    }

    /// Writes the whole stream to `w`.
    pub fn write_to(&self, w: &mut impl Write) -> io::Result<()> {
        let mut sent = 0u64;
        self.for_each_chunk(|c| {
            w.write_all(c).map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!("{e} after sending {sent} of {} bytes", self.len),
                )
            })?;
            sent += c.len() as u64;
            Ok(())
        })
    }

    /// What a receiver of the whole stream must have: its length and SHA-256 (computed once per
    /// pattern per test binary: hashing is slow in unoptimised builds).
    pub fn expected(&self) -> Received {
        static CACHE: OnceLock<Mutex<HashMap<Pattern, Digest>>> = OnceLock::new();
        let cache = CACHE.get_or_init(|| Mutex::new(HashMap::new()));
        if let Some(d) = cache.lock().expect("digest cache").get(self) {
            return Received {
                bytes: self.len,
                sha256: *d,
            };
        }
        let mut hasher = Sha256::new();
        self.for_each_chunk(|c| {
            hasher.update(c);
            Ok::<(), ()>(())
        })
        .expect("infallible");
        let d = Digest(hasher.finalize().into());
        cache.lock().expect("digest cache").insert(*self, d);
        Received {
            bytes: self.len,
            sha256: d,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The proxy under test
// ---------------------------------------------------------------------------------------------

/// Options of [`passthrough_config`] with the values most tests want.
#[derive(Debug, Clone)]
pub struct Opts {
    /// `[global] workers`.
    pub workers: u32,
    /// `[global] drain_timeout`.
    pub drain_timeout: &'static str,
    /// The service's `connect_timeout`.
    pub connect_timeout: &'static str,
    /// The service's `idle_timeout`.
    pub idle_timeout: &'static str,
}

impl Default for Opts {
    fn default() -> Opts {
        Opts {
            workers: 2,
            drain_timeout: "5s",
            connect_timeout: "1s",
            idle_timeout: "60s",
        }
    }
}

/// A config with one passthrough service on `listen` over `servers` (address, weight).
pub fn passthrough_config(
    listen: SocketAddr,
    servers: &[(SocketAddr, u32)],
    opts: &Opts,
) -> String {
    let mut toml = format!(
        "[global]\n\
         workers = {}\n\
         drain_timeout = \"{}\"\n\
         \n\
         [[service]]\n\
         name = \"test\"\n\
         listen = \"{listen}\"\n\
         mode = \"passthrough\"\n\
         connect_timeout = \"{}\"\n\
         idle_timeout = \"{}\"\n",
        opts.workers, opts.drain_timeout, opts.connect_timeout, opts.idle_timeout
    );
    for (address, weight) in servers {
        toml.push_str(&format!(
            "\n[[service.server]]\naddress = \"{address}\"\nweight = {weight}\n"
        ));
    }
    toml
}

/// A loopback listen address for a proxy service, from [`free_port`].
pub fn listen_addr() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], free_port()))
}

/// The `listen = "..."` addresses of a config, in order.
fn listen_addrs(config: &str) -> Vec<SocketAddr> {
    config
        .lines()
        .filter_map(|line| {
            let (key, value) = line.split_once('=')?;
            if key.trim() != "listen" {
                return None;
            }
            let value = value.trim().trim_matches('"');
            Some(
                value
                    .parse()
                    .unwrap_or_else(|e| panic!("listen address {value:?} in test config: {e}")),
            )
        })
        .collect()
}

/// A running `ringmaster run` process. Dropping it kills it (SIGKILL) and reaps it; if the test
/// is panicking, the tail of the proxy's log is printed first.
pub struct Proxy {
    child: Child,
    exit: Option<ExitStatus>,
    listen: Vec<SocketAddr>,
    log_path: PathBuf,
    // Kept for its Drop: removes the config and log.
    _dir: tempfile::TempDir,
}

impl Proxy {
    /// Writes `config` to a temporary directory, starts `ringmaster run -c FILE --log-level debug`
    /// with stdout and stderr in a log file there, and waits until every `listen` address of the
    /// config accepts (polling, up to [`READY_TIMEOUT`]). Panics with the log if the process exits
    /// or does not listen in time.
    pub fn start(config: &str) -> Proxy {
        let listen = listen_addrs(config);
        assert!(
            !listen.is_empty(),
            "test config has no listen address:\n{config}"
        );
        let dir = tempfile::tempdir().expect("tempdir");
        let config_path = dir.path().join("ringmaster.toml");
        std::fs::write(&config_path, config).expect("write config");
        let log_path = dir.path().join("ringmaster.log");
        let log = File::create(&log_path).expect("create log file");
        let child = Command::new(env!("CARGO_BIN_EXE_ringmaster"))
            .arg("run")
            .arg("-c")
            .arg(&config_path)
            .args(["--log-level", "debug"])
            .env("RUST_BACKTRACE", "1")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone log file"))
            .stderr(log)
            .spawn()
            .expect("spawn ringmaster");
        let mut proxy = Proxy {
            child,
            exit: None,
            listen,
            log_path,
            _dir: dir,
        };
        proxy.wait_ready(config);
        proxy
    }

    fn wait_ready(&mut self, config: &str) {
        let deadline = Instant::now() + READY_TIMEOUT;
        for addr in self.listen.clone() {
            loop {
                if let Some(status) = self.try_exit() {
                    panic!(
                        "ringmaster exited ({status}) before listening on {addr}\n\
                         --- config ---\n{config}\n--- log ---\n{}",
                        self.logs()
                    );
                }
                if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                    break;
                }
                if Instant::now() >= deadline {
                    panic!(
                        "ringmaster not accepting on {addr} after {READY_TIMEOUT:?}\n\
                         --- config ---\n{config}\n--- log ---\n{}",
                        self.logs()
                    );
                }
                thread::sleep(Duration::from_millis(10));
            }
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The first `listen` address of the config.
    pub fn addr(&self) -> SocketAddr {
        self.listen[0]
    }

    /// All `listen` addresses of the config, in order.
    pub fn addrs(&self) -> &[SocketAddr] {
        &self.listen
    }

    /// Sends `signal` to the process (no-op once it has been reaped).
    pub fn signal(&self, signal: libc::c_int) {
        if self.exit.is_some() {
            return;
        }
        let pid = libc::pid_t::try_from(self.pid()).expect("pid fits pid_t");
        // SAFETY: kill(2) has no memory effects; the pid is our own unreaped child, so it cannot
        // name another process.
        let rc = unsafe { libc::kill(pid, signal) };
        assert_eq!(
            rc,
            0,
            "kill({pid}, {signal}): {}",
            io::Error::last_os_error()
        );
    }

    /// Sends SIGTERM.
    pub fn sigterm(&self) {
        self.signal(libc::SIGTERM);
    }

    /// Sends SIGINT.
    pub fn sigint(&self) {
        self.signal(libc::SIGINT);
    }

    fn try_exit(&mut self) -> Option<ExitStatus> {
        if self.exit.is_none() {
            self.exit = self.child.try_wait().expect("try_wait");
        }
        self.exit
    }

    /// Waits up to `timeout` for the process to exit (polling); its status, or None if it is
    /// still running.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.try_exit() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// True while the process has not exited.
    pub fn is_running(&mut self) -> bool {
        self.try_exit().is_none()
    }

    /// Everything the process wrote to stdout and stderr so far.
    pub fn logs(&self) -> String {
        match std::fs::read(&self.log_path) {
            Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
            Err(e) => format!("(cannot read {}: {e})", self.log_path.display()),
        }
    }

    /// The last [`LOG_TAIL_ON_PANIC`] bytes of [`Proxy::logs`].
    pub fn logs_tail(&self) -> String {
        let logs = self.logs();
        let mut start = logs.len().saturating_sub(LOG_TAIL_ON_PANIC);
        while !logs.is_char_boundary(start) {
            start += 1;
        }
        logs[start..].to_owned()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        if self.try_exit().is_none() {
            self.signal(libc::SIGKILL);
            let _ = self.child.wait();
        }
        if thread::panicking() {
            eprintln!(
                "--- ringmaster log (pid {}, last {} KiB) ---\n{}\n--- end of ringmaster log ---",
                self.pid(),
                LOG_TAIL_ON_PANIC / 1024,
                self.logs_tail()
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Fake backends
// ---------------------------------------------------------------------------------------------

/// What a reporting backend saw on one connection that carried data, or why it failed.
pub type Report = Result<Received, String>;

/// A fake server: an accept thread on a loopback port that runs `handler` for each connection in
/// a thread of its own, counting accepted connections. Stopped (and its accept thread joined) by
/// [`Backend::stop`] or drop; connection threads finish on their own (EOF or
/// [`BACKEND_IO_TIMEOUT`]).
pub struct Backend {
    addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Backend {
    /// A backend on 127.0.0.1 with a kernel-chosen port.
    pub fn start<F>(handler: F) -> Backend
    where
        F: Fn(TcpStream) + Send + Sync + 'static,
    {
        Backend::start_on(SocketAddr::from(([127, 0, 0, 1], 0)), handler)
    }

    /// A backend on `addr`.
    pub fn start_on<F>(addr: SocketAddr, handler: F) -> Backend
    where
        F: Fn(TcpStream) + Send + Sync + 'static,
    {
        let listener = TcpListener::bind(addr).unwrap_or_else(|e| panic!("bind {addr}: {e}"));
        let addr = listener.local_addr().expect("local_addr");
        let accepted = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let handler = Arc::new(handler);
        let thread = {
            let accepted = accepted.clone();
            let stop = stop.clone();
            thread::Builder::new()
                .name(format!("backend-{}", addr.port()))
                .spawn(move || {
                    for conn in listener.incoming() {
                        if stop.load(Ordering::SeqCst) {
                            break;
                        }
                        let Ok(stream) = conn else { continue };
                        accepted.fetch_add(1, Ordering::SeqCst);
                        let _ = stream.set_read_timeout(Some(BACKEND_IO_TIMEOUT));
                        let _ = stream.set_write_timeout(Some(BACKEND_IO_TIMEOUT));
                        let _ = stream.set_nodelay(true);
                        let handler = handler.clone();
                        thread::spawn(move || handler(stream));
                    }
                })
                .expect("spawn backend thread")
        };
        Backend {
            addr,
            accepted,
            stop,
            thread: Some(thread),
        }
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Connections accepted so far (including the proxy's readiness probe, if it landed here).
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    /// The accept counter itself.
    pub fn accepted_counter(&self) -> Arc<AtomicUsize> {
        self.accepted.clone()
    }

    /// Stops accepting and closes the listening socket; established connections carry on.
    pub fn stop(&mut self) {
        if let Some(thread) = self.thread.take() {
            self.stop.store(true, Ordering::SeqCst);
            // Wake the blocking accept so it sees the flag.
            let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
            let _ = thread.join();
        }
    }

    /// Echoes everything until EOF, then shuts down its write side.
    pub fn echo() -> Backend {
        Backend::start(|mut stream| {
            let _ = echo_until_eof(&mut stream);
        })
    }

    /// Writes `"{id}\n"` on accept, then echoes like [`Backend::echo`]. A client that reads the
    /// first line learns which server it reached.
    pub fn id(id: &str) -> Backend {
        let greeting = format!("{id}\n").into_bytes();
        Backend::start(move |mut stream| {
            if stream.write_all(&greeting).is_ok() {
                let _ = echo_until_eof(&mut stream);
            }
        })
    }

    /// Full duplex: on each connection, sends `send` (then shuts down its write side) while it
    /// reads everything the client sends until EOF, both at the same time, and reports what it
    /// read.
    pub fn duplex(send: Pattern) -> (Backend, Receiver<Report>) {
        let (tx, rx) = mpsc::channel::<Report>();
        let backend = Backend::start(move |mut stream| {
            let writer = match stream.try_clone() {
                Ok(mut w) => thread::spawn(move || {
                    send.write_to(&mut w)?;
                    w.shutdown(Shutdown::Write)
                }),
                Err(e) => return report(&tx, Err(format!("backend try_clone: {e}"))),
            };
            let mut bytes_in = 0;
            let got = read_to_eof_counting(&mut stream, &mut bytes_in);
            let sent = writer.join().expect("backend writer thread panicked");
            // A connection that carried nothing in is the proxy's readiness probe: the proxy
            // may well have reset it while this side was still sending.
            if bytes_in == 0 {
                return;
            }
            let result = match (got, sent) {
                (Ok(got), Ok(())) => Ok(got),
                (Ok(got), Err(e)) => Err(format!("backend send failed: {e} (it received {got:?})")),
                (Err(e), _) => Err(format!("backend receive failed: {e}")),
            };
            report(&tx, result);
        });
        (backend, rx)
    }

    /// Client half-close: reads the request until EOF, then sends `reply`, then closes; reports
    /// the request it read. Connections with an empty request are ignored (readiness probe).
    pub fn reply_after_eof(reply: Pattern) -> (Backend, Receiver<Report>) {
        let (tx, rx) = mpsc::channel::<Report>();
        let backend = Backend::start(move |mut stream| {
            let mut bytes_in = 0;
            let request = match read_to_eof_counting(&mut stream, &mut bytes_in) {
                // Nothing came in: the proxy's readiness probe.
                _ if bytes_in == 0 => return,
                Ok(r) => r,
                Err(e) => return report(&tx, Err(format!("backend reading request: {e}"))),
            };
            let result = reply
                .write_to(&mut stream)
                .and_then(|()| stream.shutdown(Shutdown::Write))
                .map(|()| request)
                .map_err(|e| format!("backend sending reply: {e}"));
            report(&tx, result);
        });
        (backend, rx)
    }

    /// Backend half-close: sends `first`, shuts down its write side, then keeps reading the
    /// client's upload until EOF; reports the upload, then closes. Connections with an empty
    /// upload are ignored (readiness probe).
    pub fn half_close_first(first: Pattern) -> (Backend, Receiver<Report>) {
        let (tx, rx) = mpsc::channel::<Report>();
        let backend = Backend::start(move |mut stream| {
            let sent = first
                .write_to(&mut stream)
                .and_then(|()| stream.shutdown(Shutdown::Write));
            let mut bytes_in = 0;
            let got = read_to_eof_counting(&mut stream, &mut bytes_in);
            // A connection that carried nothing in is the proxy's readiness probe.
            if bytes_in == 0 {
                return;
            }
            let result = match (sent, got) {
                (Ok(()), Ok(got)) => Ok(got),
                (Err(e), _) => Err(format!("backend sending before half-close: {e}")),
                (Ok(()), Err(e)) => Err(format!("backend reading upload after half-close: {e}")),
            };
            report(&tx, result);
        });
        (backend, rx)
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.stop();
    }
}

fn report(tx: &Sender<Report>, result: Report) {
    // The test may have given up already; nothing to do then.
    let _ = tx.send(result);
}

/// Echoes until EOF, then shuts down the write side.
fn echo_until_eof(stream: &mut TcpStream) -> io::Result<()> {
    let mut buf = vec![0u8; CHUNK];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return stream.shutdown(Shutdown::Write),
            Ok(n) => stream.write_all(&buf[..n])?,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// Waits up to `within` for the next report of a reporting backend.
pub fn next_report(rx: &Receiver<Report>, within: Duration) -> Report {
    rx.recv_timeout(within)
        .unwrap_or_else(|e| Err(format!("no report from the backend within {within:?}: {e}")))
}

/// Joins a test thread, turning its panic into a panic here with the thread's message.
pub fn join<T>(handle: JoinHandle<T>, what: &str) -> T {
    match handle.join() {
        Ok(v) => v,
        Err(panic) => {
            let msg = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            panic!("{what} panicked: {msg}");
        }
    }
}
