//! A point-in-time picture of the running proxy, built when the admin API is asked: per-core
//! counters summed, health and admin state read from the shared atomics. Renderers (Prometheus,
//! JSON, the stats page) only ever see this plain data.

use std::net::SocketAddr;

use serde::Serialize;

/// Everything the admin endpoints show.
#[derive(Debug, Clone, Serialize)]
pub struct Snapshot {
    /// ringmaster's version.
    pub version: &'static str,
    /// Seconds since the process started.
    pub uptime_secs: u64,
    /// The configuration file in use.
    pub config_path: String,
    /// Successful reloads since start.
    pub reloads: u64,
    /// Reloads refused because the new file was invalid (or could not be applied).
    pub reload_failures: u64,
    /// The process-wide connection limit.
    pub limit: LimitSnapshot,
    /// One entry per worker thread.
    pub workers: Vec<WorkerSnapshot>,
    /// One entry per service, in configuration order.
    pub services: Vec<ServiceSnapshot>,
}

/// One worker thread's counters.
#[derive(Debug, Clone, Serialize)]
pub struct WorkerSnapshot {
    /// Worker index (0-based).
    pub index: usize,
    /// The CPU it is pinned to.
    pub cpu: usize,
    /// Connections accepted since start, all services.
    pub connections_total: u64,
    /// Connections open now.
    pub connections_current: u64,
    /// Failed `accept` calls (EMFILE, ENOBUFS, ...).
    pub accept_errors: u64,
}

/// One virtual service.
#[derive(Debug, Clone, Serialize)]
pub struct ServiceSnapshot {
    /// Service name.
    pub name: String,
    /// The address it listens on now (after any Change Address).
    pub listen: SocketAddr,
    /// `passthrough`, `offload` or `reencrypt`.
    pub mode: &'static str,
    /// `round-robin`, `least-connections` or `source-hash`.
    pub schedule: &'static str,
    /// Client connections accepted since start.
    pub connections_total: u64,
    /// Client connections open now.
    pub connections_current: u64,
    /// Client-side TLS handshakes that failed (bad ClientHello, handshake error, timeout).
    pub client_tls_errors: u64,
    /// Clients closed because no server could take them (all down or all failing).
    pub no_server: u64,
    /// Live source-IP persistence entries; `None` without persistence.
    pub persistence_entries: Option<u64>,
    /// The service's `max_connections` (`limit: None` without one).
    pub limit: LimitSnapshot,
    /// The per-address limit, when `max_connections_per_ip` is set.
    pub per_ip: Option<PerIpSnapshot>,
    /// Connections that ended, by how they ended (the access log's `end` values), in the order of
    /// `access_log::End::ALL`.
    pub ends: Vec<EndCount>,
    /// Whether `extended_protection = true`.
    pub extended_protection: bool,
    /// The real servers, in configuration order.
    pub servers: Vec<ServerSnapshot>,
}

/// A connection limit: how many are open against it, the limit, how often it was reached.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct LimitSnapshot {
    /// Connections counted now.
    pub current: u64,
    /// The limit; `None` when there is none.
    pub limit: Option<u64>,
    /// Times a worker found it reached and stopped accepting until a connection closed.
    pub reached: u64,
}

/// The per-address limit of a service.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct PerIpSnapshot {
    /// `max_connections_per_ip`.
    pub limit: u32,
    /// Connections reset because their address was at the limit.
    pub refused: u64,
    /// Connections let through uncounted (their slot of the address table was full).
    pub untracked: u64,
}

/// Connections that ended one way.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct EndCount {
    /// The access log's `end` value (`client_close`, `handshake_timeout`, ...).
    pub end: &'static str,
    /// How many ended so.
    pub count: u64,
}

pub use crate::backend::state::AdminState;

/// One real server of a service.
#[derive(Debug, Clone, Serialize)]
pub struct ServerSnapshot {
    /// Its address.
    pub address: SocketAddr,
    /// Its weight.
    pub weight: u32,
    /// `up` or `down`, from the health checks (`up` when unchecked).
    pub health: &'static str,
    /// What the operator set.
    pub admin: AdminState,
    /// One word for display: `up`, `down`, `drain` or `maint`.
    pub state: &'static str,
    /// Connections made to it since start.
    pub connections_total: u64,
    /// Connections to it open now.
    pub connections_current: u64,
    /// Bytes received from clients and sent to it.
    pub bytes_in: u64,
    /// Bytes received from it and sent to clients.
    pub bytes_out: u64,
    /// Failed connects (refused, timeout) to it.
    pub connect_errors: u64,
    /// Failed TLS handshakes with it (re-encrypt).
    pub server_tls_errors: u64,
    /// The last health check, if there was one.
    pub last_check: Option<CheckSnapshot>,
    /// Extended Protection: whether the certificate it presented last matched the service's;
    /// `None` when EP is off or it was not seen yet.
    pub ep_match: Option<bool>,
}

/// The last health check of a server.
#[derive(Debug, Clone, Serialize)]
pub struct CheckSnapshot {
    /// Whether it passed.
    pub ok: bool,
    /// What was seen (`HTTP 200`, `connect refused`, ...).
    pub reason: String,
    /// When it started, seconds since the Unix epoch.
    pub at_unix: u64,
    /// How long it took, in milliseconds.
    pub took_ms: u64,
}
