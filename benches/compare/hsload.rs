//! hsload: the full-handshake load generator of the HAProxy comparison (`benches/compare/run.sh`).
//!
//! wrk and h2load (OpenSSL 3.0) resume TLS sessions on reconnect and spend ~0.6 ms of client CPU
//! per full handshake, so on a 2-core machine they saturate the load core before the proxy. hsload
//! is a rustls client (aws-lc-rs) with resumption disabled: every connection is a fresh
//! `ClientConnection`, so every handshake is full (ECDHE + certificate verify), and it counts the
//! handshake kinds it saw to prove it.
//!
//! Two modes:
//! - load (default): `--connections C` threads, each looping until `--duration S`: connect (from
//!   the `--sources` addresses, round robin), handshake, `GET PATH` with `Connection: close`, read
//!   the whole response, close. Prints one `key=value` line: requests, errors, rate, handshake
//!   kinds, and its own CPU time (getrusage), so the client CPU per request is known.
//! - idle (`--idle N`): opens N connections (handshake, then one keep-alive `GET PATH` unless
//!   `--no-request`), prints `ready ...`, holds them until stdin closes, SIGTERM/SIGINT, or
//!   `--hold-max` seconds, then closes them and prints `closed ...`.
//!
//! ```sh
//! cargo build --release --example hsload
//! target/release/examples/hsload --target 127.0.0.1:8443 --ca cert.pem -c 32 -d 5 \
//!     --sources 127.0.0.2-127.0.0.6
//! ```

use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use rustls::client::Resumption;
use rustls::{ClientConfig, ClientConnection, HandshakeKind, RootCertStore, StreamOwned};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};

/// Bytes read from the socket at a time; a 1 KiB response with headers fits in one read.
const READ_CHUNK: usize = 16 * 1024;
/// Largest response header accepted; the benchmark backend sends a few hundred bytes.
const MAX_HEADER: usize = 16 * 1024;
/// Distinct error messages printed to stderr at the end (the count covers all of them).
const ERROR_SAMPLES: usize = 5;
/// How often the idle mode looks at its stop conditions.
const HOLD_POLL: Duration = Duration::from_millis(50);

#[derive(Parser, Debug)]
#[command(
    name = "hsload",
    about = "Full TLS handshakes (no resumption), one request per connection, or N idle connections"
)]
struct Args {
    /// Address to connect to (ip:port).
    #[arg(long)]
    target: SocketAddr,
    /// Server name: TLS SNI, certificate name checked, and Host header.
    #[arg(long, default_value = "localhost")]
    host: String,
    /// Path requested.
    #[arg(long, default_value = "/1k")]
    path: String,
    /// Concurrent connections (one thread each).
    #[arg(short = 'c', long, default_value_t = 32)]
    connections: usize,
    /// Seconds to run the load mode.
    #[arg(short = 'd', long, default_value_t = 5.0)]
    duration: f64,
    /// Local source addresses, round robin: `127.0.0.2-127.0.0.6`, `a,b,c` or one address.
    #[arg(long)]
    sources: Option<String>,
    /// CA (or pinned self-signed certificate) file to verify the server with.
    #[arg(long, conflicts_with = "insecure")]
    ca: Option<PathBuf>,
    /// Accept any server certificate (handshake signatures are still checked).
    #[arg(long)]
    insecure: bool,
    /// Plain TCP, no TLS.
    #[arg(long)]
    plain: bool,
    /// Key exchange group offered: x25519, secp256r1 or x25519mlkem768 (OpenSSL 3.0 clients
    /// such as wrk and h2load offer x25519 first; the default keeps both proxies on equal work).
    #[arg(long, default_value = "x25519")]
    kx: String,
    /// Idle mode: open this many connections, print `ready`, hold them.
    #[arg(long, value_name = "N")]
    idle: Option<usize>,
    /// Idle mode: only the handshake, no keep-alive request on each connection.
    #[arg(long)]
    no_request: bool,
    /// Idle mode: hold at most this many seconds.
    #[arg(long, default_value_t = 3600)]
    hold_max: u64,
    /// Connect, read and write timeout, seconds.
    #[arg(long, default_value_t = 5.0)]
    timeout: f64,
}

/// Either side of one benchmark connection.
enum Conn {
    Tls(Box<StreamOwned<ClientConnection, TcpStream>>),
    Plain(TcpStream),
}

impl Conn {
    fn io(&mut self) -> &mut dyn ReadWrite {
        match self {
            Conn::Tls(s) => s.as_mut(),
            Conn::Plain(s) => s,
        }
    }

    fn kind(&self) -> Option<HandshakeKind> {
        match self {
            Conn::Tls(s) => s.conn.handshake_kind(),
            Conn::Plain(_) => None,
        }
    }
}

trait ReadWrite: Read + Write {}
impl<T: Read + Write> ReadWrite for T {}

/// What one thread counted.
#[derive(Default)]
struct Tally {
    ok: u64,
    errors: u64,
    full: u64,
    hrr: u64,
    resumed: u64,
    samples: Vec<String>,
    negotiated: Option<String>,
}

impl Tally {
    fn error(&mut self, e: String) {
        self.errors += 1;
        if self.samples.len() < ERROR_SAMPLES && !self.samples.contains(&e) {
            self.samples.push(e);
        }
    }

    fn handshake(&mut self, conn: &Conn) {
        match conn.kind() {
            Some(HandshakeKind::Full) => self.full += 1,
            Some(HandshakeKind::FullWithHelloRetryRequest) => self.hrr += 1,
            Some(HandshakeKind::Resumed) => self.resumed += 1,
            None => {}
        }
        if self.negotiated.is_none() {
            if let Conn::Tls(s) = conn {
                let c = &s.conn;
                let show = |x: Option<String>| x.unwrap_or_else(|| "none".into());
                self.negotiated = Some(format!(
                    "tls={} suite={} group={}",
                    show(c.protocol_version().map(|v| format!("{v:?}"))),
                    show(
                        c.negotiated_cipher_suite()
                            .map(|s| format!("{:?}", s.suite()))
                    ),
                    show(
                        c.negotiated_key_exchange_group()
                            .map(|g| format!("{:?}", g.name()))
                    ),
                ));
            }
        }
    }

    fn add(&mut self, o: Tally) {
        self.ok += o.ok;
        self.full += o.full;
        self.hrr += o.hrr;
        self.resumed += o.resumed;
        for e in o.samples {
            if self.samples.len() < ERROR_SAMPLES && !self.samples.contains(&e) {
                self.samples.push(e);
            }
        }
        self.errors += o.errors;
        if self.negotiated.is_none() {
            self.negotiated = o.negotiated;
        }
    }

    fn report(&self) -> String {
        format!(
            "full={} hrr={} resumed={} {}",
            self.full,
            self.hrr,
            self.resumed,
            self.negotiated.as_deref().unwrap_or("tls=none")
        )
    }
}

/// Everything a worker thread needs, shared.
struct Client {
    args: Args,
    tls: Option<Arc<ClientConfig>>,
    name: ServerName<'static>,
    sources: Vec<Ipv4Addr>,
    next_source: AtomicUsize,
    stop: Arc<AtomicBool>,
    timeout: Duration,
}

impl Client {
    fn connect(&self) -> Result<Conn, String> {
        let sock = socket2::Socket::new(
            socket2::Domain::IPV4,
            socket2::Type::STREAM,
            Some(socket2::Protocol::TCP),
        )
        .map_err(|e| format!("socket: {e}"))?;
        if !self.sources.is_empty() {
            let i = self.next_source.fetch_add(1, Ordering::Relaxed) % self.sources.len();
            // The port is chosen at connect time, per 4-tuple: each source address gets the
            // whole ephemeral range for this target, and TIME_WAIT ports are reused.
            bind_address_no_port(&sock);
            let local = SocketAddr::new(self.sources[i].into(), 0);
            sock.bind(&local.into())
                .map_err(|e| format!("bind {local}: {e}"))?;
        }
        sock.connect_timeout(&self.args.target.into(), self.timeout)
            .map_err(|e| format!("connect: {e}"))?;
        let tcp: TcpStream = sock.into();
        let _ = tcp.set_nodelay(true);
        tcp.set_read_timeout(Some(self.timeout))
            .and_then(|_| tcp.set_write_timeout(Some(self.timeout)))
            .map_err(|e| format!("timeouts: {e}"))?;
        Ok(match &self.tls {
            None => Conn::Plain(tcp),
            Some(cfg) => {
                let conn = ClientConnection::new(cfg.clone(), self.name.clone())
                    .map_err(|e| format!("tls: {e}"))?;
                Conn::Tls(Box::new(StreamOwned::new(conn, tcp)))
            }
        })
    }

    fn request(&self, keep_alive: bool) -> Vec<u8> {
        format!(
            "GET {} HTTP/1.1\r\nHost: {}\r\nConnection: {}\r\n\r\n",
            self.args.path,
            self.args.host,
            if keep_alive { "keep-alive" } else { "close" }
        )
        .into_bytes()
    }

    /// Load mode, one thread: new connection, full handshake, one request, until the deadline.
    fn load(&self, deadline: Instant) -> Tally {
        let mut t = Tally::default();
        let req = self.request(false);
        let mut buf = vec![0u8; READ_CHUNK];
        while Instant::now() < deadline && !self.stop.load(Ordering::Relaxed) {
            let res = self.connect().and_then(|mut c| {
                exchange(c.io(), &req, &mut buf, false)?;
                Ok(c)
            });
            match res {
                Ok(c) => {
                    t.ok += 1;
                    t.handshake(&c);
                }
                Err(e) => {
                    t.error(e);
                    // A refused or reset connection fails fast: do not spin on it.
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
        }
        t
    }

    /// Idle mode, one thread: open `n` connections and return them open.
    fn open_idle(&self, n: usize) -> (Tally, Vec<Conn>) {
        let mut t = Tally::default();
        let mut held = Vec::with_capacity(n);
        let req = self.request(true);
        let mut buf = vec![0u8; READ_CHUNK];
        for _ in 0..n {
            if self.stop.load(Ordering::Relaxed) {
                break;
            }
            let res = self.connect().and_then(|mut c| {
                if let Conn::Tls(s) = &mut c {
                    while s.conn.is_handshaking() {
                        s.conn
                            .complete_io(&mut s.sock)
                            .map_err(|e| format!("handshake: {e}"))?;
                    }
                }
                if !self.args.no_request {
                    exchange(c.io(), &req, &mut buf, true)?;
                }
                Ok(c)
            });
            match res {
                Ok(c) => {
                    t.ok += 1;
                    t.handshake(&c);
                    held.push(c);
                }
                Err(e) => t.error(e),
            }
        }
        (t, held)
    }
}

/// Asks the kernel to pick the local port at connect time (`IP_BIND_ADDRESS_NO_PORT`).
fn bind_address_no_port(sock: &socket2::Socket) {
    let one: libc::c_int = 1;
    // SAFETY: a valid socket descriptor and a pointer to a c_int of the given size.
    unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_BIND_ADDRESS_NO_PORT,
            (&one as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
}

/// Sends `req` and reads one whole `200` response (by Content-Length); with `keep_alive` false,
/// then reads on to the server's close.
fn exchange(
    s: &mut dyn ReadWrite,
    req: &[u8],
    buf: &mut [u8],
    keep_alive: bool,
) -> Result<(), String> {
    s.write_all(req)
        .and_then(|_| s.flush())
        .map_err(|e| format!("write: {e}"))?;
    let mut head: Vec<u8> = Vec::with_capacity(512);
    let (body_len, mut have) = loop {
        let n = s.read(buf).map_err(|e| format!("read header: {e}"))?;
        if n == 0 {
            return Err("closed before the response header".into());
        }
        head.extend_from_slice(&buf[..n]);
        if let Some(end) = find(&head, b"\r\n\r\n") {
            let status = head.get(9..12).unwrap_or_default();
            if !head.starts_with(b"HTTP/1.") || status != b"200" {
                let line = head.split(|&b| b == b'\r').next().unwrap_or_default();
                return Err(format!("status: {}", String::from_utf8_lossy(line)));
            }
            let len = content_length(&head[..end])
                .ok_or_else(|| "response without Content-Length".to_string())?;
            break (len, head.len() - (end + 4));
        }
        if head.len() > MAX_HEADER {
            return Err("response header too large".into());
        }
    };
    while have < body_len {
        let n = s.read(buf).map_err(|e| format!("read body: {e}"))?;
        if n == 0 {
            return Err(format!("closed after {have} of {body_len} body bytes"));
        }
        have += n;
    }
    if !keep_alive {
        // The server closes; a missing close_notify (UnexpectedEof) is fine once the body is in.
        loop {
            match s.read(buf) {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
    }
    Ok(())
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn content_length(head: &[u8]) -> Option<usize> {
    let text = std::str::from_utf8(head).ok()?;
    text.split("\r\n").find_map(|line| {
        let (k, v) = line.split_once(':')?;
        k.trim()
            .eq_ignore_ascii_case("content-length")
            .then(|| v.trim().parse().ok())?
    })
}

/// `127.0.0.2-127.0.0.6`, `127.0.0.2,127.0.0.3` or `127.0.0.2`.
fn parse_sources(s: &str) -> Result<Vec<Ipv4Addr>, String> {
    let bad = |x: &str| format!("bad source address {x:?}");
    let mut out = Vec::new();
    for part in s.split(',').filter(|p| !p.is_empty()) {
        if let Some((a, b)) = part.split_once('-') {
            let a: u32 = a.trim().parse::<Ipv4Addr>().map_err(|_| bad(a))?.into();
            let b: u32 = b.trim().parse::<Ipv4Addr>().map_err(|_| bad(b))?.into();
            if b < a || b - a > 65_535 {
                return Err(format!("bad source range {part:?}"));
            }
            out.extend((a..=b).map(Ipv4Addr::from));
        } else {
            out.push(part.trim().parse().map_err(|_| bad(part))?);
        }
    }
    Ok(out)
}

fn tls_config(args: &Args) -> Result<Arc<ClientConfig>, String> {
    let mut provider = rustls::crypto::aws_lc_rs::default_provider();
    provider
        .kx_groups
        .retain(|g| format!("{:?}", g.name()).eq_ignore_ascii_case(&args.kx));
    if provider.kx_groups.is_empty() {
        return Err(format!("unknown --kx {:?}", args.kx));
    }
    let provider = Arc::new(provider);
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let mut cfg = if let Some(ca) = &args.ca {
        let mut roots = RootCertStore::empty();
        for cert in
            CertificateDer::pem_file_iter(ca).map_err(|e| format!("{}: {e}", ca.display()))?
        {
            roots
                .add(cert.map_err(|e| format!("{}: {e}", ca.display()))?)
                .map_err(|e| format!("{}: {e}", ca.display()))?;
        }
        builder.with_root_certificates(roots).with_no_client_auth()
    } else if args.insecure {
        builder
            .dangerous()
            .with_custom_certificate_verifier(ringmaster::tls::client::accept_any(&provider))
            .with_no_client_auth()
    } else {
        return Err("give --ca FILE, --insecure or --plain".into());
    };
    // Every handshake full: no session cache, no tickets.
    cfg.resumption = Resumption::disabled();
    Ok(Arc::new(cfg))
}

/// User + system CPU seconds of this process so far.
fn cpu_seconds() -> f64 {
    // SAFETY: getrusage fills the zeroed struct it is given.
    let ru = unsafe {
        let mut ru: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut ru);
        ru
    };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// Raises the open-file limit to its hard limit (idle mode holds thousands of sockets).
fn raise_nofile() {
    // SAFETY: getrlimit/setrlimit on a valid, initialised struct.
    unsafe {
        let mut lim: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

/// Splits `n` into `parts` nearly equal counts.
fn shares(n: usize, parts: usize) -> impl Iterator<Item = usize> {
    (0..parts).map(move |i| n / parts + usize::from(i < n % parts))
}

fn main() {
    let args = Args::parse();
    if let Err(e) = run(args) {
        eprintln!("hsload: {e}");
        std::process::exit(1);
    }
}

fn run(args: Args) -> Result<(), String> {
    raise_nofile();
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(sig, stop.clone()).map_err(|e| format!("signal: {e}"))?;
    }
    let tls = if args.plain {
        None
    } else {
        Some(tls_config(&args)?)
    };
    let name = ServerName::try_from(args.host.clone()).map_err(|e| format!("--host: {e}"))?;
    let sources = match &args.sources {
        Some(s) => parse_sources(s)?,
        None => Vec::new(),
    };
    let threads = args.connections.max(1);
    let client = Arc::new(Client {
        timeout: Duration::from_secs_f64(args.timeout),
        args,
        tls,
        name,
        sources,
        next_source: AtomicUsize::new(0),
        stop: stop.clone(),
    });
    let cpu0 = cpu_seconds();
    let t0 = Instant::now();
    match client.args.idle {
        None => {
            let deadline = t0 + Duration::from_secs_f64(client.args.duration);
            let handles: Vec<_> = (0..threads)
                .map(|_| {
                    let c = client.clone();
                    std::thread::spawn(move || c.load(deadline))
                })
                .collect();
            let mut total = Tally::default();
            for h in handles {
                total.add(h.join().map_err(|_| "a load thread panicked")?);
            }
            let secs = t0.elapsed().as_secs_f64();
            let cpu = cpu_seconds() - cpu0;
            print_errors(&total);
            println!(
                "requests={} errors={} secs={:.3} rate={:.1} {} cpu_s={:.3} cpu_us_per_req={:.1}",
                total.ok,
                total.errors,
                secs,
                total.ok as f64 / secs,
                total.report(),
                cpu,
                if total.ok > 0 {
                    cpu * 1e6 / total.ok as f64
                } else {
                    0.0
                },
            );
        }
        Some(n) => {
            let handles: Vec<_> = shares(n, threads.min(n.max(1)))
                .map(|k| {
                    let c = client.clone();
                    std::thread::spawn(move || c.open_idle(k))
                })
                .collect();
            let mut total = Tally::default();
            let mut held = Vec::with_capacity(n);
            for h in handles {
                let (t, conns) = h.join().map_err(|_| "an idle thread panicked")?;
                total.add(t);
                held.extend(conns);
            }
            print_errors(&total);
            println!(
                "ready open={} errors={} secs={:.3} {} cpu_s={:.3}",
                held.len(),
                total.errors,
                t0.elapsed().as_secs_f64(),
                total.report(),
                cpu_seconds() - cpu0,
            );
            let _ = io::stdout().flush();
            hold(&stop, Duration::from_secs(client.args.hold_max));
            let open = held.len();
            drop(held);
            println!("closed open={open}");
        }
    }
    Ok(())
}

/// Waits until stdin reaches EOF, a signal sets `stop`, or `max` has passed.
fn hold(stop: &Arc<AtomicBool>, max: Duration) {
    let eof = Arc::new(AtomicBool::new(false));
    {
        let eof = eof.clone();
        std::thread::spawn(move || {
            let mut sink = [0u8; 256];
            let mut stdin = io::stdin();
            while matches!(stdin.read(&mut sink), Ok(n) if n > 0) {}
            eof.store(true, Ordering::Relaxed);
        });
    }
    let end = Instant::now() + max;
    while Instant::now() < end && !stop.load(Ordering::Relaxed) && !eof.load(Ordering::Relaxed) {
        std::thread::sleep(HOLD_POLL);
    }
}

fn print_errors(t: &Tally) {
    for e in &t.samples {
        eprintln!("hsload: error: {e}");
    }
}
