//! Active health checks of real servers: `tcp` (connect), `http` (a GET and its status) and
//! `https` (the same over TLS, and the server's certificate handed to the Extended Protection
//! monitor), with HAProxy's rise/fall hysteresis.
//!
//! **One std thread per real server** ([`spawn_checkers`]), not per core and not per service: a
//! check is a few blocking socket calls bounded by the check's `timeout`, so a thread per server
//! keeps a dead or slow server from delaying the checks of the others, with no scheduler to
//! write. A checker thread sleeps between checks (in slices of [`STOP_POLL`], so shutdown is
//! prompt) and costs one mostly idle stack; it never touches a worker. Its only output is the
//! server's [`ServerState`]: one atomic the workers read on each new connection, and the last
//! [`CheckSummary`] for logs and the admin API. Transitions are logged with the service, the
//! server, the old and new state and the reason.
//!
//! Timing, as HAProxy's `inter`: the first check runs as soon as the thread starts (the server
//! starts up, so a dead one is found `fall` checks later), and each next check starts `interval`
//! after the previous one ended. A check never lasts longer than `timeout`; the thread notices
//! `stop` at most `timeout` + [`STOP_POLL`] after it is set.
//!
//! This file owns the configuration types, [`Checker`] and [`spawn_checkers`]; `hysteresis` the
//! rise/fall counter; `request` the request bytes, SNI and TLS client of a check; `status_line`
//! the HTTP status line parser; `probe` the socket and TLS I/O of one check.

mod hysteresis;
mod probe;
mod request;
mod status_line;

use std::net::SocketAddr;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use rustls::ClientConfig;
use rustls_pki_types::ServerName;

use request::{expect, request, sni, tls_client, DEFAULT_HTTPS_PORT, DEFAULT_HTTP_PORT};

use crate::backend::state::{CheckSummary, Health, ServerState};
use crate::tls::client::Verify;

pub use hysteresis::Hysteresis;
pub use probe::{CheckFailure, MAX_ANSWER_HEAD};
pub use status_line::{parse_status, StatusLine};

/// Statuses that pass an `http`/`https` check whose `expect` is empty.
pub const DEFAULT_EXPECT: &[u16] = &[200];

/// Longest a checker sleeps before looking at its stop flag again: shutdown waits at most this
/// long for a sleeping checker (plus the check in progress, bounded by its timeout).
pub const STOP_POLL: Duration = Duration::from_millis(100);

/// The `User-Agent` of check requests, so server logs can tell checks from users.
pub const USER_AGENT: &str = "ringmaster-health";

/// Called with the server's index and end-entity certificate (DER) after each full TLS handshake
/// of an `https` check; the runtime connects it to `EpMonitor::observe`. It runs on the checker's
/// thread: keep it short.
pub type CertificateCallback = Arc<dyn Fn(usize, &[u8]) + Send + Sync>;

/// `[service.health]` of a service, validated. A service with `check = "none"` has none.
#[derive(Debug, Clone)]
pub struct HealthConfig {
    /// What one check does.
    pub check: CheckKind,
    /// Time from the end of one check to the start of the next.
    pub interval: Duration,
    /// Longest one check may take, connect to verdict.
    pub timeout: Duration,
    /// Consecutive passed checks that bring a down server up.
    pub rise: u32,
    /// Consecutive failed checks that take an up server down.
    pub fall: u32,
}

/// What one check does.
#[derive(Debug, Clone)]
pub enum CheckKind {
    /// The connect succeeds within the timeout.
    Tcp,
    /// A `GET` over plain TCP gets a status in `expect`.
    Http(HttpCheck),
    /// A `GET` over TLS gets a status in `expect`; each check is a full handshake.
    Https(HttpCheck),
}

/// The request of an `http` or `https` check and what passes.
#[derive(Debug, Clone)]
pub struct HttpCheck {
    /// The request target, starting with `/`.
    pub path: String,
    /// The `Host` header; `None`: the server's IP address (with `:port` unless the port is the
    /// scheme's default).
    pub host: Option<String>,
    /// Statuses that pass; empty means [`DEFAULT_EXPECT`].
    pub expect: Vec<u16>,
    /// `https`: the name sent as SNI and verified; `None`: `host` without its port, else the
    /// server's IP address (no SNI is sent for an address).
    pub sni: Option<ServerName<'static>>,
    /// `https`: how the server's certificate is verified (the service's `backend_tls` verify, or
    /// [`Verify::None`]). A refused certificate fails the check.
    pub verify: Verify,
}

/// Why the checkers of a service cannot start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HealthError {
    /// `path` or `host` cannot go into a request line or header.
    #[error("health check of service {service}: {field} {value:?} cannot be sent: {why}")]
    Request {
        /// The service.
        service: String,
        /// `path` or `host`.
        field: &'static str,
        /// The value.
        value: String,
        /// What is wrong with it.
        why: &'static str,
    },
    /// The TLS client configuration of an `https` check could not be built.
    #[error("health check of service {service}: cannot build the TLS client: {message}")]
    Tls {
        /// The service.
        service: String,
        /// rustls' reason.
        message: String,
    },
    /// The OS refused a thread.
    #[error("health check of service {service}: cannot start a checker thread: {source}")]
    Spawn {
        /// The service.
        service: String,
        /// The OS error.
        source: std::io::Error,
    },
}

/// The health checker of one real server: its prepared request, its hysteresis and where it
/// publishes. [`Checker::check`] runs one check; [`Checker::run`] loops until stopped.
pub struct Checker {
    service: Arc<str>,
    index: usize,
    address: SocketAddr,
    state: Arc<ServerState>,
    /// Every server of the service (this one included), to log when none is up.
    siblings: Arc<[Arc<ServerState>]>,
    interval: Duration,
    timeout: Duration,
    plan: Plan,
    hysteresis: Hysteresis,
    on_certificate: Option<CertificateCallback>,
}

/// A check prepared for one server: the request bytes and SNI are built once.
enum Plan {
    Tcp,
    Http {
        request: Vec<u8>,
        expect: Vec<u16>,
    },
    Https {
        request: Vec<u8>,
        expect: Vec<u16>,
        tls: Arc<ClientConfig>,
        sni: ServerName<'static>,
    },
}

impl Checker {
    /// A checker for server `index` (its position in the service's server list, as
    /// `EpMonitor` counts) at `address`, publishing to `state`. Its hysteresis starts at
    /// `state`'s current health.
    pub fn new(
        service_name: &str,
        index: usize,
        address: SocketAddr,
        state: Arc<ServerState>,
        config: &HealthConfig,
        on_certificate: Option<CertificateCallback>,
    ) -> Result<Self, HealthError> {
        let tls = tls_client(service_name, &config.check)?;
        let siblings: Arc<[Arc<ServerState>]> = Arc::from(vec![state.clone()]);
        Self::with_parts(
            service_name.into(),
            index,
            address,
            state,
            siblings,
            config,
            tls.as_ref(),
            on_certificate,
        )
    }

    #[allow(clippy::too_many_arguments)] // private: every part is distinct and named at the call
    fn with_parts(
        service: Arc<str>,
        index: usize,
        address: SocketAddr,
        state: Arc<ServerState>,
        siblings: Arc<[Arc<ServerState>]>,
        config: &HealthConfig,
        tls: Option<&Arc<ClientConfig>>,
        on_certificate: Option<CertificateCallback>,
    ) -> Result<Self, HealthError> {
        let plan = match (&config.check, tls) {
            (CheckKind::Tcp, _) => Plan::Tcp,
            (CheckKind::Http(http), _) => Plan::Http {
                request: request(&service, http, address, DEFAULT_HTTP_PORT)?,
                expect: expect(http),
            },
            (CheckKind::Https(http), Some(tls)) => Plan::Https {
                request: request(&service, http, address, DEFAULT_HTTPS_PORT)?,
                expect: expect(http),
                tls: tls.clone(),
                sni: sni(http, address),
            },
            (CheckKind::Https(_), None) => {
                return Err(HealthError::Tls {
                    service: service.to_string(),
                    message: "no TLS client configuration".into(),
                })
            }
        };
        let hysteresis = Hysteresis::new(config.rise, config.fall, state.health() == Health::Up);
        Ok(Self {
            service,
            index,
            address,
            state,
            siblings,
            interval: config.interval,
            timeout: config.timeout,
            plan,
            hysteresis,
            on_certificate,
        })
    }

    /// Runs one check now: probes the server, counts the result, publishes a transition to the
    /// server's state (and logs it), records and returns the summary. Never panics: a panic in
    /// the probe or the certificate callback counts as a failed check.
    pub fn check(&mut self) -> CheckSummary {
        let at = SystemTime::now();
        let started = Instant::now();
        let result = catch_unwind(AssertUnwindSafe(|| self.probe()))
            .unwrap_or_else(|_| Err(CheckFailure::Internal("the health check panicked".into())));
        let took = started.elapsed();
        let (ok, reason) = match result {
            Ok(seen) => (true, seen),
            Err(e) => (false, e.to_string()),
        };
        if let Some(new) = self.hysteresis.record(ok) {
            let old = self.state.set_health(new);
            self.log_transition(old, new, &reason);
        } else if !ok || self.hysteresis.health() == Health::Down {
            let (count, of) = self.hysteresis.progress();
            tracing::debug!(
                service = %self.service, server = %self.address, ok, reason = %reason,
                health = %self.hysteresis.health(), progress = %format_args!("{count}/{of}"),
                "health check"
            );
        }
        let summary = CheckSummary {
            at,
            took,
            ok,
            reason,
            health: self.hysteresis.health(),
        };
        self.state.record_check(summary.clone());
        summary
    }

    /// Checks every `interval` until `stop` is set.
    pub fn run(self, stop: &AtomicBool) {
        self.run_until(|| stop.load(Ordering::Acquire));
    }

    fn run_until(mut self, stopped: impl Fn() -> bool) {
        while !stopped() {
            // A server in maintenance (`disable` through the admin API) is not checked.
            if self.state.admin() != crate::admin::snapshot::AdminState::Disabled {
                self.check();
            }
            let next = Instant::now() + self.interval;
            loop {
                if stopped() {
                    return;
                }
                let left = next.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    break;
                }
                std::thread::sleep(left.min(STOP_POLL));
            }
        }
    }

    /// One probe, and the certificate callback for a completed handshake.
    fn probe(&self) -> Result<String, CheckFailure> {
        let probe = match &self.plan {
            Plan::Tcp => probe::Probe::Tcp,
            Plan::Http { request, expect } => probe::Probe::Http { request, expect },
            Plan::Https {
                request,
                expect,
                tls,
                sni,
            } => probe::Probe::Https {
                request,
                expect,
                tls,
                sni,
            },
        };
        let outcome = probe::run(self.address, self.timeout, &probe);
        if let (Some(certificate), Some(callback)) = (&outcome.certificate, &self.on_certificate) {
            callback(self.index, certificate);
        }
        outcome.result
    }

    fn log_transition(&self, old: Health, new: Health, reason: &str) {
        let (service, server) = (&*self.service, self.address);
        match new {
            Health::Down => {
                tracing::warn!(service, %server, from = %old, to = %new, reason, "health: server {old} -> {new}")
            }
            Health::Up => {
                tracing::info!(service, %server, from = %old, to = %new, reason, "health: server {old} -> {new}")
            }
        }
        let up = self.siblings.iter().filter(|s| s.is_usable()).count();
        match (new, up) {
            (Health::Down, 0) => tracing::error!(
                service,
                servers = self.siblings.len(),
                "health: no server of the service is up"
            ),
            (Health::Up, 1) if self.siblings.len() > 1 => {
                tracing::info!(service, %server, "health: the service has a server up again")
            }
            _ => {}
        }
    }
}

/// Starts one checker thread per server of `service_name` (`servers` in the service's order: the
/// index passed to `on_certificate` is the position here). Each checks until `stop` is set.
///
/// Errors before any thread runs when a request or the TLS client cannot be built; if the OS
/// refuses a thread, the threads already started are stopped and joined, and the error returned.
pub fn spawn_checkers(
    service_name: &str,
    servers: &[(SocketAddr, Arc<ServerState>)],
    config: &HealthConfig,
    on_certificate: Option<CertificateCallback>,
    stop: Arc<AtomicBool>,
) -> Result<Vec<JoinHandle<()>>, HealthError> {
    let service: Arc<str> = service_name.into();
    let tls = tls_client(service_name, &config.check)?;
    let siblings: Arc<[Arc<ServerState>]> = servers.iter().map(|(_, s)| s.clone()).collect();
    let checkers = servers
        .iter()
        .enumerate()
        .map(|(index, (address, state))| {
            Checker::with_parts(
                service.clone(),
                index,
                *address,
                state.clone(),
                siblings.clone(),
                config,
                tls.as_ref(),
                on_certificate.clone(),
            )
        })
        .collect::<Result<Vec<_>, _>>()?;
    tracing::info!(
        service = service_name,
        servers = servers.len(),
        check = config.check.name(),
        interval = ?config.interval,
        timeout = ?config.timeout,
        rise = config.rise,
        fall = config.fall,
        "health checks started"
    );
    // Set only if a thread cannot be started, to stop the ones that were.
    let abort = Arc::new(AtomicBool::new(false));
    let mut handles = Vec::with_capacity(checkers.len());
    for checker in checkers {
        let (stop, abort_flag) = (stop.clone(), abort.clone());
        let spawned = std::thread::Builder::new()
            .name(format!("health-{service_name}-{}", checker.index))
            .spawn(move || {
                checker.run_until(|| {
                    stop.load(Ordering::Acquire) || abort_flag.load(Ordering::Acquire)
                })
            });
        match spawned {
            Ok(handle) => handles.push(handle),
            Err(source) => {
                abort.store(true, Ordering::Release);
                for handle in handles {
                    let _ = handle.join();
                }
                return Err(HealthError::Spawn {
                    service: service_name.into(),
                    source,
                });
            }
        }
    }
    Ok(handles)
}

impl CheckKind {
    /// The spelling used in the configuration file.
    pub fn name(&self) -> &'static str {
        match self {
            CheckKind::Tcp => "tcp",
            CheckKind::Http(_) => "http",
            CheckKind::Https(_) => "https",
        }
    }
}
