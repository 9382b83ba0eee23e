//! Configuration: loads `ringmaster.toml` and turns it into a validated, immutable [`Config`].
//!
//! Two stages, as sozu does: [`file`] holds the raw serde structs (every key optional, every
//! value a `toml::Spanned` so it keeps its byte span, unknown keys rejected), and [`validate`]
//! turns them into the typed structs below, collecting *every* problem with its line, column,
//! value and fix. The raw structs never leave this module; runtime code sees only `SocketAddr`,
//! `Duration` and `NonZero*`.

mod address;
mod balance;
mod duration;
mod error;
mod file;
mod global;
mod health;
mod limits;
mod service;
mod suggest;
mod summary;
mod tls;
mod validate;

#[cfg(test)]
mod fixture_tests;

use std::fmt;
use std::net::SocketAddr;
use std::num::{NonZeroU32, NonZeroUsize};
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use error::{ConfigError, Problem};
pub use limits::{
    ServiceLimits, DEFAULT_HANDSHAKE_TIMEOUT, MAX_CONNECTIONS, MAX_CONNECTIONS_PER_IP,
};

/// Exit status for a configuration error: `EX_CONFIG` from sysexits(3).
pub const EXIT_CONFIG: i32 = 78;

/// `[global] drain_timeout` when the key is absent: how long SIGTERM waits for open connections.
pub const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(30);
/// `connect_timeout` when absent: time allowed to open a connection to a real server.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// `idle_timeout` when absent: a connection with no bytes either way for this long is closed.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(10 * 60);
/// `backlog` when absent: the `listen(2)` queue length of each listener.
pub const DEFAULT_BACKLOG: u32 = 4096;
/// Largest `backlog` accepted; the kernel caps it at `net.core.somaxconn` anyway.
pub const MAX_BACKLOG: u32 = 65_535;
/// Largest server `weight`, as in HAProxy (weights are relative, so 256 steps are plenty).
pub const MAX_WEIGHT: u32 = 256;
/// Largest explicit `workers` count; more pinned threads than this is a typo, not a machine.
pub const MAX_WORKERS: usize = 1024;
/// Longest service name: it appears in metric labels and log lines.
pub const MAX_NAME_LEN: usize = 64;

/// A validated configuration: everything in it has been checked and has its real type.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it was loaded from, as the caller gave it.
    pub path: PathBuf,
    /// The `[global]` table, with defaults filled in.
    pub global: Global,
    /// The `[[service]]` tables, in file order; at least one.
    pub services: Vec<Service>,
}

/// Process-wide settings from `[global]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Global {
    /// How many pinned worker threads to run.
    pub workers: Workers,
    /// How long a draining process waits for open connections before it exits (default 30s).
    pub drain_timeout: Duration,
    /// Where the admin API listens; off when absent.
    pub admin: Option<SocketAddr>,
    /// Bearer token the admin API requires, when set (required for a non-loopback `admin`).
    pub admin_token: Option<Secret>,
    /// The per-connection access log; off when absent.
    pub access_log: Option<AccessLog>,
    /// Most client connections open at once, all services together; `None`: derived from the
    /// descriptor limit at start (see `runtime::limits`).
    pub max_connections: Option<u32>,
}

/// A string that never appears in `Debug` output (tokens).
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// `[global] access_log = { path, format }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessLog {
    /// Where lines go.
    pub target: LogTarget,
    /// How each line is written.
    pub format: LogFormat,
}

/// Where the access log is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogTarget {
    /// Standard output (`path = "stdout"`, the default).
    Stdout,
    /// A file, appended to, reopened on SIGUSR1 (for logrotate).
    File(PathBuf),
}

/// The access log's line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// `key=value` pairs (the default).
    Logfmt,
    /// One JSON object per line.
    Json,
}

/// Number of worker threads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Workers {
    /// One per CPU the process is allowed to run on (`sched_getaffinity`), the default.
    Auto,
    /// Exactly this many (1..=1024).
    Count(NonZeroUsize),
}

/// One virtual service: a listening address and the pool of real servers behind it.
#[derive(Debug, Clone)]
pub struct Service {
    /// Unique name, `[A-Za-z0-9_.-]{1,64}`; used in logs and metrics.
    pub name: String,
    /// Address the service listens on; never port 0.
    pub listen: SocketAddr,
    /// How TLS is handled.
    pub mode: Mode,
    /// Time allowed to connect to a real server (default 3s).
    pub connect_timeout: Duration,
    /// Idle time after which a connection is closed (default 10m).
    pub idle_timeout: Duration,
    /// Connection limits and the handshake deadline.
    pub limits: ServiceLimits,
    /// `listen(2)` backlog, 1..=65535 (default 4096).
    pub backlog: u32,
    /// Real servers, in file order; at least one, no address twice.
    pub servers: Vec<Server>,
    /// Client-facing TLS: present exactly for `offload` and `reencrypt`.
    pub tls: Option<FrontTls>,
    /// Server-facing TLS: present exactly for `reencrypt`.
    pub backend_tls: Option<BackendTls>,
    /// `extended_protection = true`: the Extended Protection guard is on (never with `offload`).
    pub extended_protection: bool,
    /// How a server is chosen for a new client (default round robin).
    pub schedule: Schedule,
    /// Source-IP persistence, when configured.
    pub persistence: Option<Persistence>,
    /// Kernel steering of client IPs to cores.
    pub steer: Steer,
    /// Active health checks, when configured (`check = "none"` or no table: none).
    pub health: Option<HealthCheck>,
    /// Idle, already-handshaken server connections each core keeps per server (offload and
    /// reencrypt; 0 = none).
    pub warm: u32,
}

/// `schedule`: how a new client's server is chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Schedule {
    /// Smooth weighted round robin (the default).
    RoundRobin,
    /// Weighted least connections, counted across all cores.
    LeastConnections,
    /// Maglev consistent hashing of the client IP: every ringmaster node picks the same server.
    SourceHash,
}

impl Schedule {
    /// The spelling used in the configuration file.
    pub fn as_str(self) -> &'static str {
        match self {
            Schedule::RoundRobin => "round-robin",
            Schedule::LeastConnections => "least-connections",
            Schedule::SourceHash => "source-hash",
        }
    }
}

/// `persistence = { mode = "source-ip", timeout = "1h", capacity = N }`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Persistence {
    /// How long a client IP stays with its server after its last connection.
    pub timeout: Duration,
    /// Most client IPs remembered at once (per service).
    pub capacity: usize,
}

/// `steer`: whether the kernel sends each client IPv4 to one core.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Steer {
    /// The kernel's default `SO_REUSEPORT` hash (by 4-tuple).
    None,
    /// A cBPF program sends each client IPv4 to the same core every time.
    ClientIp,
}

/// `[service.health]`: active checks, one checker per server.
#[derive(Debug, Clone)]
pub struct HealthCheck {
    /// What a check does.
    pub kind: CheckType,
    /// Request path for `http`/`https` (default `/`).
    pub path: String,
    /// `Host` header for `http`/`https` (default: the server's address).
    pub host: Option<String>,
    /// SNI for `https` (default: `host`, else the server's IP).
    pub sni: Option<rustls_pki_types::ServerName<'static>>,
    /// Statuses that count as healthy (default `[200]`).
    pub expect: Vec<u16>,
    /// Time between two checks of one server (default 5s).
    pub interval: Duration,
    /// Time one check may take (default 2s; less than `interval`).
    pub timeout: Duration,
    /// Consecutive successes that bring a down server up (default 2).
    pub rise: u32,
    /// Consecutive failures that take an up server down (default 3).
    pub fall: u32,
    /// How `https` checks verify the server's certificate (default: like `backend_tls` for
    /// reencrypt, else none — a health check of a passthrough server needs no trust).
    pub verify: crate::tls::client::Verify,
}

/// `check`: the kind of health check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckType {
    /// A TCP connect.
    Tcp,
    /// An HTTP/1.1 GET, healthy when the status is in `expect`.
    Http,
    /// The same over TLS; also captures the server's certificate for Extended Protection.
    Https,
}

/// The certificates a TLS-terminating service presents.
#[derive(Debug, Clone)]
pub struct FrontTls {
    /// `certificate`/`key` first (the default), then each `[[service.sni_certificate]]`, all
    /// loaded and checked to match their keys.
    pub certificates: Vec<crate::tls::certs::TlsCert>,
}

/// `[service.backend_tls]` of a reencrypt service.
#[derive(Debug, Clone)]
pub struct BackendTls {
    /// How the servers' certificates are verified (default: the system trust store).
    pub verify: crate::tls::client::Verify,
    /// The CA file for `verify = "ca"`.
    pub ca: Option<PathBuf>,
    /// Name sent as SNI and verified; `None` = the client's SNI (else the server's IP).
    pub sni: Option<rustls_pki_types::ServerName<'static>>,
}

/// One real server behind a service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Server {
    /// Its address; host names were resolved once, when the file was loaded.
    pub address: SocketAddr,
    /// Relative share of new connections, 1..=256 (default 1).
    pub weight: NonZeroU32,
}

/// How a service treats TLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mode {
    /// TCP relay; TLS goes through untouched (Extended Protection always works).
    Passthrough,
    /// TLS ends at the balancer; plain TCP to the servers (breaks Extended Protection).
    Offload,
    /// TLS ends at the balancer and a new TLS connection goes to the server.
    Reencrypt,
}

impl Mode {
    /// The spelling used in the configuration file.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Passthrough => "passthrough",
            Mode::Offload => "offload",
            Mode::Reencrypt => "reencrypt",
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Reads the file at `path` and validates it; see [`parse`].
///
/// A file that cannot be read (or is not UTF-8) is reported as one [`Problem`] at line 0,
/// which [`ConfigError`] prints without a line and column.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let bytes = std::fs::read(path).map_err(|e| {
        ConfigError::single(
            path,
            Problem::file(
                format!("cannot read the configuration file: {e}"),
                "check the path, or pass another file with -c FILE",
            ),
        )
    })?;
    let text = String::from_utf8(bytes).map_err(|e| {
        ConfigError::single(
            path,
            Problem::file(
                format!(
                    "the file is not UTF-8 text (invalid byte at offset {})",
                    e.utf8_error().valid_up_to()
                ),
                "save the file as UTF-8",
            ),
        )
    })?;
    parse(&text, path)
}

/// Validates `text`, the contents of the file at `path` (used only in messages).
///
/// Returns every problem found, in file order, or the typed [`Config`]. Host names in server
/// addresses are resolved here, once; nothing else does I/O.
pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
    validate::validate(text, path, true)
}

/// Like [`parse`] without any name lookup: a server given by host name gets the address
/// 192.0.2.1 (TEST-NET-1) and its port. For the fuzz target, which must not wait on a resolver.
pub fn parse_offline(text: &str, path: &Path) -> Result<Config, ConfigError> {
    validate::validate(text, path, false)
}

impl Config {
    /// A human-readable table of the services and servers, for `ringmaster check`.
    pub fn summary(&self) -> String {
        summary::render(self)
    }
}

/// A listen address as the config accepts it (an IP literal and a non-zero port), for the admin
/// API's Change Address; the error says what is wrong and how to fix it.
pub fn parse_listen_address(text: &str) -> Result<SocketAddr, String> {
    address::listen_address(text).map_err(|r| format!("{} ({})", r.message, r.fix))
}
