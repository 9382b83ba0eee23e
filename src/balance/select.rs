//! The choice of a server for one new connection, in the order DESIGN.md gives: the persistence
//! map, then the scheduler, among the servers the health checks (and, later, the admin) allow.
//!
//! [`SharedBalance`] is what all workers share (health per server, connection counts, the Maglev
//! table, the persistence map: atomics and lock-free structures only); [`Balancer`] is one
//! worker's view, with its own round-robin position. Nothing here locks or blocks.

use std::net::IpAddr;
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use super::least_conn::{ConnCountGuard, ConnCounts};
use super::maglev::{SharedMaglev, DEFAULT_TABLE_SIZE};
use super::persistence::PersistenceMap;
use super::round_robin::SmoothRoundRobin;
use crate::backend::state::ServerState;
use crate::config::{Schedule, Service};

/// Seconds since the process started, the persistence map's clock.
pub fn now_secs() -> u32 {
    static START: OnceLock<Instant> = OnceLock::new();
    let secs = START.get_or_init(Instant::now).elapsed().as_secs();
    u32::try_from(secs).unwrap_or(u32::MAX)
}

/// Balancing state of one service shared by every worker.
#[derive(Debug)]
pub struct SharedBalance {
    /// Health (and later admin state) per server, in config order.
    pub servers: Vec<Arc<ServerState>>,
    /// Open connections per server, across cores (least-connections, metrics).
    pub counts: Arc<ConnCounts>,
    /// The Maglev table of `schedule = "source-hash"`.
    pub maglev: Option<Arc<SharedMaglev>>,
    /// Client IP → server, with `persistence = { mode = "source-ip" }`.
    pub persistence: Option<Arc<PersistenceMap>>,
    schedule: Schedule,
    weights: Vec<u32>,
    keys: Vec<String>,
}

impl SharedBalance {
    /// Balancing state for `service`; every server starts up.
    pub fn new(service: &Service) -> Self {
        Self::reloaded(service, None)
    }

    /// Balancing state for `service` after a reload, carrying over from `previous` (the same
    /// service under the old configuration) what belongs to servers that still exist: their
    /// health and admin state, their connection counts when the server list is unchanged, and
    /// the persistence entries pointing to them (when the map's size and timeout are unchanged).
    /// `previous` is only read: what changes is built aside.
    pub fn reloaded(service: &Service, previous: Option<&SharedBalance>) -> Self {
        let keys: Vec<String> = service
            .servers
            .iter()
            .map(|s| s.address.to_string())
            .collect();
        let old_index = |key: &String| previous.and_then(|p| p.keys.iter().position(|k| k == key));
        let servers: Vec<Arc<ServerState>> = keys
            .iter()
            .map(|k| match (previous, old_index(k)) {
                (Some(p), Some(i)) => p.servers[i].clone(),
                _ => Arc::new(ServerState::new(true)),
            })
            .collect();
        let weights: Vec<u32> = service.servers.iter().map(|s| s.weight.get()).collect();
        let same_servers = previous.is_some_and(|p| p.keys == keys);
        let counts = match previous {
            Some(p) if same_servers => p.counts.clone(),
            _ => ConnCounts::new(servers.len()),
        };
        let maglev = (service.schedule == Schedule::SourceHash).then(|| {
            let members: Vec<(&str, u32, bool)> = keys
                .iter()
                .zip(&weights)
                .zip(&servers)
                .map(|((k, w), s)| (k.as_str(), *w, s.is_usable()))
                .collect();
            Arc::new(SharedMaglev::new(&members, DEFAULT_TABLE_SIZE))
        });
        let persistence = service.persistence.map(|p| {
            // The map's clock counts whole seconds, so an entry used late in one second and
            // timed `n` seconds lives between n - 1 and n seconds: round the timeout up and add
            // one second, so a client keeps its server at least as long as configured.
            let secs = p.timeout.as_secs() + u64::from(p.timeout.subsec_nanos() > 0) + 1;
            let timeout = u32::try_from(secs).unwrap_or(u32::MAX).max(1);
            let reusable = previous
                .and_then(|prev| prev.persistence.clone())
                .filter(|m| m.timeout_secs() == timeout && m.capacity() >= p.capacity);
            match (reusable, previous) {
                (Some(map), _) if same_servers => map,
                // A new map, built aside: the running one is left as it is until the new
                // configuration is in force, so a reload that fails changes nothing.
                (Some(map), Some(prev)) => {
                    let moves: Vec<Option<u16>> = prev
                        .keys
                        .iter()
                        .map(|k| keys.iter().position(|n| n == k))
                        .map(|i| i.and_then(|i| u16::try_from(i).ok()))
                        .collect();
                    Arc::new(map.remapped(&moves))
                }
                _ => Arc::new(PersistenceMap::new(p.capacity, timeout)),
            }
        });
        Self {
            counts,
            servers,
            maglev,
            persistence,
            schedule: service.schedule,
            weights,
            keys,
        }
    }

    /// Rebuilds the Maglev table from the servers' current state, if this service uses one.
    /// Called off the connection path when a server's health changes.
    pub fn rebuild_maglev(&self) {
        if let Some(maglev) = &self.maglev {
            let members: Vec<(&str, u32, bool)> = self
                .keys
                .iter()
                .zip(&self.weights)
                .zip(&self.servers)
                .map(|((k, w), s)| (k.as_str(), *w, s.is_usable()))
                .collect();
            maglev.rebuild(&members);
        }
    }

    /// Whether any server may take a new connection.
    pub fn any_usable(&self) -> bool {
        self.servers.iter().any(|s| s.is_usable())
    }

    /// Whether server `index` may take a new connection.
    pub fn usable(&self, index: usize) -> bool {
        self.servers.get(index).is_some_and(|s| s.is_usable())
    }
}

/// One worker's balancer for one service.
#[derive(Debug)]
pub struct Balancer {
    shared: Arc<SharedBalance>,
    round_robin: SmoothRoundRobin,
    tie: usize,
}

impl Balancer {
    /// This worker's balancer; `worker` staggers where its rotation starts.
    pub fn new(shared: Arc<SharedBalance>, worker: usize) -> Self {
        let round_robin = SmoothRoundRobin::new(shared.weights.iter().copied()).with_phase(worker);
        Self {
            shared,
            round_robin,
            tie: worker,
        }
    }

    /// The shared state.
    pub fn shared(&self) -> &Arc<SharedBalance> {
        &self.shared
    }

    /// The servers to try for `client`, best first: its persisted server if it has a live entry
    /// and that server is usable, else the scheduler's choice; then every other usable server
    /// once (failover). Empty when no server is usable: the client is closed at once.
    pub fn plan(&mut self, client: IpAddr) -> Vec<usize> {
        let shared = &*self.shared;
        let usable = |i: usize| shared.usable(i);
        let persisted = shared
            .persistence
            .as_ref()
            .and_then(|map| map.get(client, now_secs()))
            .map(usize::from)
            .filter(|&i| usable(i));
        let first = persisted.or_else(|| match shared.schedule {
            Schedule::RoundRobin => self.round_robin.pick_usable(usable),
            Schedule::LeastConnections => {
                self.tie = self.tie.wrapping_add(1);
                shared.counts.pick(&shared.weights, usable, self.tie)
            }
            Schedule::SourceHash => shared
                .maglev
                .as_ref()
                .and_then(|m| m.lookup(client))
                .filter(|&i| usable(i))
                // The table is rebuilt shortly after a health change; until then, fall back.
                .or_else(|| self.round_robin.pick_usable(usable)),
        });
        let Some(first) = first else {
            return Vec::new();
        };
        let n = shared.servers.len();
        let mut order = Vec::with_capacity(n);
        order.push(first);
        order.extend((1..n).map(|k| (first + k) % n).filter(|&i| usable(i)));
        order
    }

    /// Counts a connection to server `index` from the moment it is picked (before the connect,
    /// so least-connections picks during a slow connect see it) for as long as the returned guard
    /// lives; a failed attempt drops it.
    pub fn count(&self, index: usize) -> ConnCountGuard {
        self.shared.counts.acquire(index)
    }

    /// Records that `client` is now served by server `index`: (re)writes its persistence entry.
    pub fn connected(&self, client: IpAddr, index: usize) {
        if let (Some(map), Ok(server)) = (&self.shared.persistence, u16::try_from(index)) {
            map.insert(client, server, now_secs());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service(schedule: &str, weights: &[u32]) -> Service {
        let mut text = format!(
            "[[service]]\nname = \"t\"\nlisten = \"127.0.0.1:1000\"\nmode = \"passthrough\"\n\
             schedule = \"{schedule}\"\n"
        );
        for (i, w) in weights.iter().enumerate() {
            text.push_str(&format!(
                "[[service.server]]\naddress = \"127.0.0.1:{}\"\nweight = {w}\n",
                2000 + i
            ));
        }
        crate::config::parse(&text, std::path::Path::new("t.toml"))
            .expect("valid")
            .services
            .remove(0)
    }

    /// A connection counts from its pick, not from the end of its connect: a second client
    /// arriving while the first one's connect is still running sees it. Server A (weight 1, idle)
    /// beats B (weight 2, one open: 1/2); with A's connect in progress counted (1/1), B wins —
    /// counted only after the connect, A would be picked twice.
    #[test]
    fn least_connections_counts_a_server_while_it_is_being_connected() {
        let shared = Arc::new(SharedBalance::new(&service("least-connections", &[1, 2])));
        let mut balancer = Balancer::new(shared.clone(), 0);
        let _open_on_b = balancer.count(1);
        let client: IpAddr = "127.0.0.2".parse().expect("ip");
        assert_eq!(balancer.plan(client)[0], 0);
        let connecting = balancer.count(0);
        assert_eq!(
            balancer.plan(client)[0],
            1,
            "the pick in progress is counted"
        );
        drop(connecting);
        assert_eq!(shared.counts.active(0), 0, "a failed attempt is uncounted");
    }
}
