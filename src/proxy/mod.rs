//! Serving one accepted connection: mode dispatch, server choice with failover, and the relay.
//!
//! - [`passthrough`]: TCP relay, TLS untouched.
//! - [`offload`]: TLS from the client, plain TCP to the server.
//! - [`reencrypt`]: TLS from the client, new TLS to the server, ALPN passed through.
//! - [`relay`]: the bidirectional copy shared by every mode.
//! - [`splice`]: passthrough's lean relay between two plain sockets (multishot receives).
//! - [`warm`]: keeping each core's warm pools of server connections filled.
//! - [`registry`]: per-core connection registry, idle timeouts and drain accounting.

mod front;
pub mod offload;
pub mod passthrough;
pub mod record;
pub mod reencrypt;
pub mod registry;
pub mod relay;
pub mod splice;
pub mod warm;

use std::cell::{Cell, RefCell};
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use crossbeam::utils::CachePadded;

use rustls::server::ProducesTickets;
use rustls::{ClientConfig, ServerConfig};

use crate::access_log::LocalLog;
use crate::balance::select::{Balancer, SharedBalance};
use crate::config::{Mode, Service};
use crate::counters::{ServerCounters, ServiceCounters, WorkerStats};
use crate::limits::{ConnCount, Gate, IpTable, Permit};
use crate::net::TcpStream;
use crate::tls::ep_monitor::EpMonitor;
use crate::tls::{client, server, TlsSetupError};
use record::Record;
use registry::{ConnGuard, Registry};

/// Time allowed for one attempt to reach a server: `connect_timeout`, cut to what is left of the
/// client's handshake deadline while that runs (re-encrypt connects during the client's handshake).
pub(crate) fn attempt_timeout(service: &ServiceState, guard: &ConnGuard) -> std::time::Duration {
    let connect = service.config().connect_timeout;
    guard.remaining().map_or(connect, |left| left.min(connect))
}

/// What all workers share about one service: its config, its TLS setup and EP monitor.
pub struct SharedService {
    /// The validated configuration.
    pub config: Arc<Service>,
    /// Client-facing TLS (offload, reencrypt), without a session cache of its own.
    pub front_tls: Option<ServerConfig>,
    /// Which certificate a client gets for its SNI (offload, reencrypt).
    pub resolver: Option<Arc<server::SniResolver>>,
    /// Server health, connection counts, Maglev table and persistence map.
    pub balance: Arc<SharedBalance>,
    /// Extended Protection monitor (reencrypt with `extended_protection = true`).
    pub ep: Option<Arc<EpMonitor>>,
    /// The service's `max_connections` over its open connections (counted on every core).
    pub gate: Gate,
    /// Open connections per client address, when `max_connections_per_ip` is set.
    pub per_ip: Option<Arc<IpTable>>,
}

impl SharedService {
    /// Builds the shared part of `config`; TLS services use `ticketer` for their tickets, and
    /// the per-address table is sized for `process_limit` connections.
    pub fn new(
        config: Arc<Service>,
        ticketer: &Arc<dyn ProducesTickets>,
        process_limit: u32,
    ) -> Result<Self, TlsSetupError> {
        Self::reloaded(config, ticketer, None, process_limit)
    }

    /// Like [`new`](Self::new) after a reload: server health, admin state, connection counts
    /// (per server, per service, per address) and persistence entries carry over from
    /// `previous`, the same service's old state.
    pub fn reloaded(
        config: Arc<Service>,
        ticketer: &Arc<dyn ProducesTickets>,
        previous: Option<&SharedService>,
        process_limit: u32,
    ) -> Result<Self, TlsSetupError> {
        let resolver = match &config.tls {
            Some(tls) => Some(Arc::new(
                server::SniResolver::new(&tls.certificates).ok_or(TlsSetupError::NoCertificate)?,
            )),
            None => None,
        };
        let front_tls = match &resolver {
            Some(r) => Some(server::service_config(r.clone(), ticketer.clone())?),
            None => None,
        };
        let ep = match (&config.tls, config.mode, config.extended_protection) {
            (Some(tls), Mode::Reencrypt, true) => {
                Some(Arc::new(EpMonitor::new(&config, &tls.certificates)?))
            }
            _ => None,
        };
        let balance = Arc::new(SharedBalance::reloaded(
            &config,
            previous.map(|p| &*p.balance),
        ));
        let count = previous.map_or_else(ConnCount::new, |p| p.gate.count().clone());
        let gate = Gate::new(count, config.limits.max_connections);
        let per_ip = config.limits.max_connections_per_ip.map(|_| {
            previous
                .and_then(|p| p.per_ip.clone())
                .unwrap_or_else(|| IpTable::new(process_limit))
        });
        Ok(Self {
            config,
            front_tls,
            resolver,
            balance,
            ep,
            gate,
            per_ip,
        })
    }
}

/// One service as seen by one worker: shared parts plus this core's scheduler and TLS caches.
pub struct ServiceState {
    /// What all workers share.
    pub shared: Arc<SharedService>,
    /// This worker's balancer (its own round-robin position over the shared state).
    pub balancer: RefCell<Balancer>,
    /// This worker's server config (own session cache, shared ticketer).
    pub front_tls: Option<Arc<ServerConfig>>,
    /// This worker's client config per server (own resumption cache each), for reencrypt.
    pub backend_tls: Vec<Arc<ClientConfig>>,
    /// Idle handshaken server connections (reencrypt with `warm > 0`).
    pub tls_pool: Option<warm::TlsPool>,
    /// Idle connected server sockets (offload with `warm > 0`).
    pub tcp_pool: Option<warm::TcpPool>,
    /// This worker's counters for the service.
    pub counters: Arc<CachePadded<ServiceCounters>>,
    /// This worker's counters per server, in config order.
    pub server_counters: Vec<Arc<CachePadded<ServerCounters>>>,
    /// This worker's own counters.
    pub worker: Arc<WorkerStats>,
    /// This worker's access log buffer, when the log is on.
    pub access_log: Option<Rc<LocalLog>>,
    /// This worker's connection registry and timers.
    pub registry: Rc<Registry>,
    /// Set when a reload or a stop replaced this state: its warm pool stops refilling, and
    /// connections already using it finish under it.
    pub retired: Cell<bool>,
}

impl ServiceState {
    /// Per-worker state for a service; `worker` staggers the round-robin start; `stats` are the
    /// worker's counters, `access_log` its log buffer and `registry` its connections' timers.
    pub fn new(
        shared: Arc<SharedService>,
        worker: usize,
        stats: Arc<WorkerStats>,
        access_log: Option<Rc<LocalLog>>,
        registry: Rc<Registry>,
    ) -> Result<Self, TlsSetupError> {
        let config = &shared.config;
        let counters = stats.service(&config.name);
        let server_counters = config
            .servers
            .iter()
            .map(|s| stats.server(&config.name, s.address))
            .collect();
        let balancer = Balancer::new(shared.balance.clone(), worker);
        let front_tls = shared.front_tls.as_ref().map(server::for_worker);
        let backend_tls = match &config.backend_tls {
            Some(b) if config.mode == Mode::Reencrypt => config
                .servers
                .iter()
                .map(|_| client::for_server(&b.verify))
                .collect::<Result<Vec<_>, _>>()?,
            _ => Vec::new(),
        };
        let (tls_pool, tcp_pool) = warm::pools(config);
        Ok(Self {
            tls_pool,
            tcp_pool,
            counters,
            server_counters,
            worker: stats,
            access_log,
            registry,
            retired: Cell::new(false),
            balancer: RefCell::new(balancer),
            front_tls,
            backend_tls,
            shared,
        })
    }

    /// The validated configuration of this service.
    pub fn config(&self) -> &Service {
        &self.shared.config
    }

    /// A reload or a stop replaced this state: its warm pools close their idle connections at
    /// once and stop refilling; connections already using it finish under it.
    pub fn retire(&self) {
        self.retired.set(true);
        if let Some(pool) = &self.tls_pool {
            pool.clear();
        }
        if let Some(pool) = &self.tcp_pool {
            pool.clear();
        }
    }
}

/// A connected (and, for reencrypt, handshaken) server side of one client's connection.
pub struct Upstream<S> {
    /// The stream to the server.
    pub stream: S,
    /// The server's address.
    pub address: SocketAddr,
    /// Counts this connection against its server (least connections, metrics) while it lives.
    _count: crate::balance::ConnCountGuard,
}

impl ServiceState {
    /// The servers to try for `peer`, best first; logs and returns an empty list when no server
    /// is usable (every one down), so the client is closed at once.
    pub(crate) fn plan(&self, peer: SocketAddr, record: &mut Record) -> Vec<usize> {
        let order = self.balancer.borrow_mut().plan(peer.ip());
        if order.is_empty() {
            tracing::warn!(service = %self.config().name, client = %peer, "every server is down, drained or disabled; closing the client");
            self.counters.no_server.inc();
            record.fail(
                relay::Side::Server,
                "no server available (all down, drained or disabled)",
            );
        }
        order
    }

    /// Records that no server in the plan could be reached.
    pub(crate) fn unreachable(&self, record: &mut Record) {
        self.counters.no_server.inc();
        record.fail(relay::Side::Server, "no server could be reached");
    }

    /// Counts an attempt on server `index` until the returned guard (then the connection's
    /// [`Upstream`]) is dropped.
    pub(crate) fn attempt(&self, index: usize) -> crate::balance::ConnCountGuard {
        self.balancer.borrow().count(index)
    }

    /// Wraps the stream of a successful connection to server `index` for client `peer`, and
    /// points the connection's counters, record and persistence entry at that server; `count`
    /// is the attempt's count from [`ServiceState::attempt`].
    pub(crate) fn upstream<S>(
        &self,
        peer: SocketAddr,
        index: usize,
        stream: S,
        guard: &ConnGuard,
        record: &mut Record,
        count: crate::balance::ConnCountGuard,
    ) -> Upstream<S> {
        let address = self.config().servers[index].address;
        let counters = &self.server_counters[index];
        counters.connections.inc();
        guard.set_server_counters(counters.clone());
        record.server = Some(index);
        self.balancer.borrow().connected(peer.ip(), index);
        Upstream {
            stream,
            address,
            _count: count,
        }
    }
}

/// Serves one accepted client connection until both directions are closed, then counts it and
/// writes its access log line.
///
/// `permit` holds the connection's slots of the connection limits until it ends.
pub async fn serve(client: TcpStream, peer: SocketAddr, service: Rc<ServiceState>, permit: Permit) {
    let accepted_at = SystemTime::now();
    let started = Instant::now();
    service.counters.accepted.inc();
    service.worker.worker.accepted.inc();
    // Registered from the start, so a client that never sends its ClientHello is timed out too.
    let config = service.config();
    let guard = service.registry.register(
        [client.raw_fd(), -1],
        config.idle_timeout,
        config.limits.handshake_timeout,
    );
    let mut record = Record::default();
    // Each mode's future in its own allocation: a task is as large as its largest state, and an
    // idle passthrough connection should not carry the room of two TLS sessions.
    match service.config().mode {
        Mode::Passthrough => {
            Box::pin(passthrough::serve(
                &client,
                peer,
                &service,
                &guard,
                &mut record,
            ))
            .await
        }
        Mode::Offload => {
            Box::pin(offload::serve(&client, peer, &service, &guard, &mut record)).await
        }
        Mode::Reencrypt => {
            Box::pin(reencrypt::serve(
                &client,
                peer,
                &service,
                &guard,
                &mut record,
            ))
            .await
        }
    }
    // Ended before its relay (no server, a failed handshake, a deadline): the client gets a
    // reset, never a FIN it could take for a complete, empty answer.
    if record.failure.is_some() {
        client.abort();
    }
    record.finish(&service, peer, accepted_at, started, &guard);
    drop(permit);
}

/// Turns away a client whose address already has `max_connections_per_ip` connections open:
/// reset at once (it costs no server connection and no task), counted and logged.
pub fn refuse_over_ip_limit(client: TcpStream, peer: SocketAddr, service: &ServiceState) {
    client.abort();
    service.counters.accepted.inc();
    service.worker.worker.accepted.inc();
    Record::default().refused(service, peer);
}
