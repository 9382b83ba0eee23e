//! `ringmaster demo`: a self-contained re-encrypt service with Extended Protection, to try
//! ringmaster with nothing but the binary.
//!
//! It generates one self-signed certificate in a private temporary directory, starts two small
//! HTTPS servers in this process that present that same certificate, writes a config with one
//! `reencrypt` service on `127.0.0.1:8443` (`extended_protection = true`, backend verification
//! against the same certificate), checks Extended Protection with [`crate::ep_check`] exactly as
//! `ringmaster ep-check` would, prints what to try, and serves with [`crate::runtime::run`] until
//! SIGINT/SIGTERM. Each demo server prints one line per request it answers, so the user sees which
//! server got each request. The directory is removed at exit (best effort).

use std::fmt::Write as _;
use std::fs;
use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use rustls::{ServerConfig, ServerConnection, StreamOwned};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

use crate::config::ConfigError;
use crate::runtime::RuntimeError;
use crate::tls::channel_binding::tls_server_end_point;

/// The port of the demo service. Fixed, so that the line printed for `curl` is always the same.
pub const DEMO_PORT: u16 = 8443;

/// Where the demo service listens.
pub const DEMO_LISTEN: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), DEMO_PORT);

/// Names in the demo certificate (`127.0.0.1` becomes an IP subjectAltName).
pub const DEMO_NAMES: [&str; 3] = ["localhost", "127.0.0.1", "ringmaster.demo"];

/// How many demo HTTPS servers stand behind the service.
const DEMO_SERVERS: usize = 2;

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

/// How long the demo's SIGTERM waits for open connections (`[global] drain_timeout`): a demo
/// should stop promptly, and a `curl` is over in milliseconds.
const DEMO_DRAIN_TIMEOUT: &str = "5s";

/// Why the demo could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DemoError {
    /// The demo port is taken.
    #[error(
        "127.0.0.1:{port} is already in use{holder}: stop that process (an earlier `ringmaster demo`?) and run the demo again \
         (`ss -ltnp 'sport = :{port}'` shows who listens there)",
        holder = holder.as_ref().map(|h| format!(" by {h}")).unwrap_or_default()
    )]
    PortInUse {
        /// The port.
        port: u16,
        /// The process listening there, when it could be found (`pid 123 (nginx)`).
        holder: Option<String>,
    },
    /// The temporary directory could not be created.
    #[error("cannot create the demo directory {path}: {source}")]
    Directory {
        /// The directory.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// A demo file could not be written.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// The certificate could not be generated.
    #[error("cannot generate the demo certificate: {0}")]
    Certificate(String),
    /// The demo servers' TLS configuration was refused.
    #[error("cannot set up TLS for the demo servers: {0}")]
    Tls(rustls::Error),
    /// A demo server could not listen.
    #[error("cannot start demo server {index} on 127.0.0.1: {source}")]
    DemoServer {
        /// 1-based server number.
        index: usize,
        /// The OS error.
        source: io::Error,
    },
    /// The generated configuration was rejected (a bug in the demo or in the config checks).
    #[error("the demo configuration was rejected (a bug in `ringmaster demo`):\n{0}")]
    Config(ConfigError),
    /// The proxy could not run.
    #[error("cannot serve: {0}")]
    Runtime(RuntimeError),
}

/// Runs the demo until SIGINT/SIGTERM (see the module documentation). `log_level` only appears in
/// the `ringmaster ep-check` line printed for the user; logging is set up by the caller.
pub fn run(log_level: &str) -> Result<(), DemoError> {
    ensure_port_free(DEMO_PORT)?;
    let dir = DemoDir::create()?;
    let files = write_certificate(dir.path())?;
    let server_tls = demo_server_config(&files)?;
    let mut servers = Vec::with_capacity(DEMO_SERVERS);
    for index in 1..=DEMO_SERVERS {
        servers.push(start_demo_server(index, server_tls.clone())?);
    }
    let config_path = dir.path().join("ringmaster.toml");
    write_file(&config_path, demo_config(&files, &servers).as_bytes())?;
    let config = crate::config::load(&config_path).map_err(DemoError::Config)?;
    let report = crate::ep_check::run(&config);
    print!(
        "{}",
        banner(
            dir.path(),
            &config_path,
            &files,
            &servers,
            &report.render(),
            log_level
        )
    );
    let _ = io::stdout().flush();

    crate::runtime::run(config).map_err(|e| match e {
        RuntimeError::Worker { ref message, .. } if message.contains("in use") => {
            DemoError::PortInUse {
                port: DEMO_PORT,
                holder: listener_on(DEMO_PORT),
            }
        }
        other => DemoError::Runtime(other),
    })
}

/// Fails with [`DemoError::PortInUse`] if `127.0.0.1:port` cannot be bound. The runtime binds with
/// `SO_REUSEPORT`, which would *share* the port with another process that also set it (an earlier
/// demo): this plain bind refuses in that case too.
fn ensure_port_free(port: u16) -> Result<(), DemoError> {
    match TcpListener::bind(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port)) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AddrInUse => Err(DemoError::PortInUse {
            port,
            holder: listener_on(port),
        }),
        // Anything else (no loopback?) will be reported by the runtime with its own words.
        Err(_) => Ok(()),
    }
}

/// The private temporary directory of the demo, removed (best effort) when dropped.
struct DemoDir(PathBuf);

impl DemoDir {
    fn create() -> Result<Self, DemoError> {
        let path = std::env::temp_dir().join(format!("ringmaster-demo-{}", std::process::id()));
        let create = |path: &Path| {
            use std::os::unix::fs::DirBuilderExt;
            // 0700: the private key is written here.
            fs::DirBuilder::new().mode(0o700).create(path)
        };
        let made = match create(&path) {
            // Left over by an earlier process with the same PID, which cannot still be running.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                fs::remove_dir_all(&path).and_then(|()| create(&path))
            }
            other => other,
        };
        made.map_err(|source| DemoError::Directory {
            path: path.clone(),
            source,
        })?;
        Ok(Self(path))
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for DemoDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// The generated certificate, as files and as DER.
struct CertFiles {
    cert_pem: PathBuf,
    key_pem: PathBuf,
    cert_der: CertificateDer<'static>,
    key_der: Vec<u8>,
}

fn write_certificate(dir: &Path) -> Result<CertFiles, DemoError> {
    let fail = |e: rcgen::Error| DemoError::Certificate(e.to_string());
    let key = rcgen::KeyPair::generate().map_err(fail)?;
    let mut params =
        rcgen::CertificateParams::new(DEMO_NAMES.map(String::from).to_vec()).map_err(fail)?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "ringmaster demo");
    let cert = params.self_signed(&key).map_err(fail)?;
    let files = CertFiles {
        cert_pem: dir.join("cert.pem"),
        key_pem: dir.join("key.pem"),
        cert_der: cert.der().clone(),
        key_der: key.serialize_der(),
    };
    write_file(&files.cert_pem, cert.pem().as_bytes())?;
    write_file(&files.key_pem, key.serialize_pem().as_bytes())?;
    Ok(files)
}

fn write_file(path: &Path, contents: &[u8]) -> Result<(), DemoError> {
    fs::write(path, contents).map_err(|source| DemoError::Write {
        path: path.to_path_buf(),
        source,
    })
}

/// A TOML string literal (quoted and escaped) for a path.
fn toml_string(path: &Path) -> String {
    toml::Value::String(path.display().to_string()).to_string()
}

/// The demo configuration: one reencrypt service with Extended Protection over the demo servers,
/// verifying them against the demo certificate itself.
fn demo_config(files: &CertFiles, servers: &[SocketAddr]) -> String {
    let mut text = String::new();
    let _ = writeln!(
        text,
        "# Written by `ringmaster demo`; removed when the demo stops."
    );
    let _ = writeln!(text, "[global]\ndrain_timeout = \"{DEMO_DRAIN_TIMEOUT}\"\n");
    let _ = writeln!(
        text,
        "[[service]]\nname = \"demo\"\nlisten = \"{DEMO_LISTEN}\"\nmode = \"reencrypt\""
    );
    let _ = writeln!(
        text,
        "certificate = {}\nkey = {}",
        toml_string(&files.cert_pem),
        toml_string(&files.key_pem)
    );
    let _ = writeln!(text, "extended_protection = true\n");
    let _ = writeln!(
        text,
        "[service.backend_tls]\nverify = \"ca\"\nca = {}\nsni = \"localhost\"",
        toml_string(&files.cert_pem)
    );
    for server in servers {
        let _ = writeln!(text, "\n[[service.server]]\naddress = \"{server}\"");
    }
    text
}

/// What the demo prints before serving.
fn banner(
    dir: &Path,
    config: &Path,
    files: &CertFiles,
    servers: &[SocketAddr],
    ep_report: &str,
    log_level: &str,
) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "ringmaster demo: a re-encrypt service with Extended Protection, all in this process.\n"
    );
    let _ = writeln!(
        out,
        "  files        {}  (cert.pem, key.pem, ringmaster.toml; removed at exit)",
        dir.display()
    );
    let _ = writeln!(
        out,
        "  certificate  self-signed for {}",
        DEMO_NAMES.join(", ")
    );
    if let Ok(hash) = tls_server_end_point(files.cert_der.as_ref()) {
        let _ = writeln!(out, "               tls-server-end-point {hash}");
    }
    let _ = writeln!(out, "  service      demo on https://{DEMO_LISTEN}  (mode reencrypt, extended_protection = true)");
    for (i, server) in servers.iter().enumerate() {
        let _ = writeln!(
            out,
            "  server {}     https://{server}  (demo HTTPS server, same certificate)",
            i + 1
        );
    }
    let _ = writeln!(
        out,
        "\nExtended Protection: the service and each server must present the same certificate."
    );
    for line in ep_report.lines() {
        let indent = if line.is_empty() { "" } else { "  " };
        let _ = writeln!(out, "{indent}{line}");
    }
    let _ = writeln!(out, "\nTry:");
    let _ = writeln!(out, "  curl -k https://{DEMO_LISTEN}/");
    let _ = writeln!(
        out,
        "  curl --cacert {} https://localhost:{DEMO_PORT}/",
        files.cert_pem.display()
    );
    let _ = writeln!(
        out,
        "  ringmaster --log-level {log_level} ep-check -c {}",
        config.display()
    );
    let _ = writeln!(
        out,
        "Each answer names the demo server that gave it, and the server prints a line below."
    );
    let _ = writeln!(out, "Ctrl-C to stop.\n");
    out
}

/// The demo servers' TLS: the demo certificate, HTTP/1.1 by ALPN.
fn demo_server_config(files: &CertFiles) -> Result<Arc<ServerConfig>, DemoError> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(files.key_der.clone()));
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
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
fn start_demo_server(index: usize, tls: Arc<ServerConfig>) -> Result<SocketAddr, DemoError> {
    let fail = |source| DemoError::DemoServer { index, source };
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).map_err(fail)?;
    let own = listener.local_addr().map_err(fail)?;
    thread::Builder::new()
        .name(format!("demo-server-{index}"))
        .spawn(move || accept_loop(index, own, &listener, &tls))
        .map_err(fail)?;
    Ok(own)
}

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

/// The process listening on TCP `port`, as `pid 123 (name)`, from `/proc` (best effort: only
/// processes this user may inspect are found).
fn listener_on(port: u16) -> Option<String> {
    let inodes: Vec<String> = ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .filter_map(|table| fs::read_to_string(table).ok())
        .flat_map(|text| {
            text.lines()
                .skip(1)
                .filter_map(|line| {
                    // sl local_address rem_address st ... inode; st 0A is LISTEN.
                    let fields: Vec<&str> = line.split_whitespace().collect();
                    if fields.get(3) != Some(&"0A") {
                        return None;
                    }
                    let local_port =
                        u16::from_str_radix(fields.get(1)?.rsplit(':').next()?, 16).ok()?;
                    (local_port == port)
                        .then(|| fields.get(9).map(|s| s.to_string()))
                        .flatten()
                })
                .collect::<Vec<_>>()
        })
        .collect();
    if inodes.is_empty() {
        return None;
    }
    let wanted: Vec<String> = inodes.iter().map(|i| format!("socket:[{i}]")).collect();
    for entry in fs::read_dir("/proc").ok()?.flatten() {
        let pid = entry.file_name().to_string_lossy().into_owned();
        if !pid.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let Ok(fds) = fs::read_dir(entry.path().join("fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            let Ok(link) = fs::read_link(fd.path()) else {
                continue;
            };
            if wanted.iter().any(|w| link.as_os_str() == w.as_str()) {
                let name = fs::read_to_string(entry.path().join("comm")).unwrap_or_default();
                return Some(format!("pid {pid} ({})", name.trim()));
            }
        }
    }
    None
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

    #[test]
    fn the_demo_config_is_valid_toml_with_escaped_paths() {
        let files = CertFiles {
            cert_pem: PathBuf::from("/tmp/a \"b\"/cert.pem"),
            key_pem: PathBuf::from("/tmp/a \"b\"/key.pem"),
            cert_der: CertificateDer::from(vec![0u8]),
            key_der: Vec::new(),
        };
        let servers = [
            "127.0.0.1:1001".parse().expect("addr"),
            "127.0.0.1:1002".parse().expect("addr"),
        ];
        let text = demo_config(&files, &servers);
        let value: toml::Table = toml::from_str(&text).expect(&text);
        let service = &value["service"].as_array().expect("services")[0];
        assert_eq!(
            service["certificate"].as_str(),
            Some("/tmp/a \"b\"/cert.pem")
        );
        assert_eq!(service["extended_protection"].as_bool(), Some(true));
        assert_eq!(service["server"].as_array().expect("servers").len(), 2);
        assert_eq!(service["backend_tls"]["verify"].as_str(), Some("ca"));
    }

    #[test]
    fn a_listener_on_a_port_is_found_in_proc() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let found = listener_on(port).expect("this process listens there");
        assert!(
            found.starts_with(&format!("pid {} (", std::process::id())),
            "{found}"
        );
    }
}
