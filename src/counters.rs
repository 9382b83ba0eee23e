//! Per-core counters: every worker counts into its own cache lines, and the admin API sums the
//! workers only when it is scraped. Counters are keyed by service name and server address, so
//! they keep counting across reloads (Prometheus counters never go backwards).
//!
//! Each counter has one writer, the worker that owns it; the increments are relaxed atomic adds
//! on a line no other core writes. Looking a counter set up takes a lock, and happens only when a
//! worker builds its state for a service (start, reload), never per connection.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use crossbeam::utils::CachePadded;

use crate::access_log::End;

/// One monotonic counter.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    /// Adds `n`.
    #[inline]
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }

    /// Adds one.
    #[inline]
    pub fn inc(&self) {
        self.add(1);
    }

    /// The current value.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// One worker's own counters.
#[derive(Debug, Default)]
pub struct WorkerCounters {
    /// Connections accepted, all services.
    pub accepted: Counter,
    /// Connections that ended, all services.
    pub closed: Counter,
    /// Failed `accept` calls.
    pub accept_errors: Counter,
}

/// One service on one worker.
#[derive(Debug, Default)]
pub struct ServiceCounters {
    /// Client connections accepted.
    pub accepted: Counter,
    /// Client connections that ended.
    pub closed: Counter,
    /// Client TLS handshakes that failed.
    pub client_tls_errors: Counter,
    /// Clients closed because no server could take them.
    pub no_server: Counter,
    /// Connections that ended, by how they ended (`End as usize`).
    pub ends: [Counter; End::ALL.len()],
}

impl ServiceCounters {
    /// Counts a connection that ended as `end`.
    pub fn ended(&self, end: End) {
        self.ends[end as usize].inc();
    }
}

/// One server of one service on one worker.
#[derive(Debug, Default)]
pub struct ServerCounters {
    /// Connections made to it and handed to a client.
    pub connections: Counter,
    /// Of those, the ones that ended.
    pub closed: Counter,
    /// Bytes from clients to it.
    pub bytes_in: Counter,
    /// Bytes from it to clients.
    pub bytes_out: Counter,
    /// Connects that failed (refused, timed out).
    pub connect_errors: Counter,
    /// TLS handshakes with it that failed.
    pub tls_errors: Counter,
}

/// Sums of one service's counters over every worker.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ServiceTotals {
    /// Client connections accepted.
    pub accepted: u64,
    /// Client connections that ended.
    pub closed: u64,
    /// Client TLS handshakes that failed.
    pub client_tls_errors: u64,
    /// Clients closed because no server could take them.
    pub no_server: u64,
    /// Connections that ended, by how they ended (`End as usize`).
    pub ends: [u64; End::ALL.len()],
}

/// Sums of one server's counters over every worker.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ServerTotals {
    /// Connections made to it.
    pub connections: u64,
    /// Of those, the ones that ended.
    pub closed: u64,
    /// Bytes from clients to it.
    pub bytes_in: u64,
    /// Bytes from it to clients.
    pub bytes_out: u64,
    /// Connects that failed.
    pub connect_errors: u64,
    /// TLS handshakes that failed.
    pub tls_errors: u64,
}

type ServerKey = (String, SocketAddr);

/// Everything one worker counts.
#[derive(Debug)]
pub struct WorkerStats {
    /// The CPU the worker is pinned to.
    pub cpu: usize,
    /// Its own counters.
    pub worker: CachePadded<WorkerCounters>,
    services: Mutex<HashMap<String, Arc<CachePadded<ServiceCounters>>>>,
    servers: Mutex<HashMap<ServerKey, Arc<CachePadded<ServerCounters>>>>,
}

impl WorkerStats {
    fn new(cpu: usize) -> Self {
        Self {
            cpu,
            worker: CachePadded::default(),
            services: Mutex::default(),
            servers: Mutex::default(),
        }
    }

    /// This worker's counters for `service` (made on first use; kept across reloads).
    pub fn service(&self, service: &str) -> Arc<CachePadded<ServiceCounters>> {
        let mut map = self.services.lock().unwrap_or_else(PoisonError::into_inner);
        map.entry(service.to_owned()).or_default().clone()
    }

    /// This worker's counters for `server` of `service`.
    pub fn server(&self, service: &str, server: SocketAddr) -> Arc<CachePadded<ServerCounters>> {
        let mut map = self.servers.lock().unwrap_or_else(PoisonError::into_inner);
        map.entry((service.to_owned(), server)).or_default().clone()
    }

    fn service_if_any(&self, service: &str) -> Option<Arc<CachePadded<ServiceCounters>>> {
        let map = self.services.lock().unwrap_or_else(PoisonError::into_inner);
        map.get(service).cloned()
    }

    fn server_if_any(&self, key: &ServerKey) -> Option<Arc<CachePadded<ServerCounters>>> {
        let map = self.servers.lock().unwrap_or_else(PoisonError::into_inner);
        map.get(key).cloned()
    }
}

/// The counters of every worker.
#[derive(Debug)]
pub struct Counters {
    workers: Vec<Arc<WorkerStats>>,
}

impl Counters {
    /// Counters for workers pinned to `cpus` (worker `i` on `cpus[i]`).
    pub fn new(cpus: &[usize]) -> Self {
        Self {
            workers: cpus
                .iter()
                .map(|&c| Arc::new(WorkerStats::new(c)))
                .collect(),
        }
    }

    /// Worker `index`'s counters.
    pub fn worker(&self, index: usize) -> Arc<WorkerStats> {
        self.workers[index].clone()
    }

    /// Every worker's counters, in worker order.
    pub fn workers(&self) -> &[Arc<WorkerStats>] {
        &self.workers
    }

    /// `service`'s counters summed over the workers.
    pub fn service(&self, service: &str) -> ServiceTotals {
        let mut t = ServiceTotals::default();
        for c in self
            .workers
            .iter()
            .filter_map(|w| w.service_if_any(service))
        {
            t.accepted += c.accepted.get();
            t.closed += c.closed.get();
            t.client_tls_errors += c.client_tls_errors.get();
            t.no_server += c.no_server.get();
            for (sum, n) in t.ends.iter_mut().zip(&c.ends) {
                *sum += n.get();
            }
        }
        t
    }

    /// The counters of `server` of `service` summed over the workers.
    pub fn server(&self, service: &str, server: SocketAddr) -> ServerTotals {
        let key = (service.to_owned(), server);
        let mut t = ServerTotals::default();
        for c in self.workers.iter().filter_map(|w| w.server_if_any(&key)) {
            t.connections += c.connections.get();
            t.closed += c.closed.get();
            t.bytes_in += c.bytes_in.get();
            t.bytes_out += c.bytes_out.get();
            t.connect_errors += c.connect_errors.get();
            t.tls_errors += c.tls_errors.get();
        }
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workers_count_apart_and_sum_when_asked() {
        let counters = Counters::new(&[0, 1]);
        let addr: SocketAddr = "127.0.0.1:80".parse().expect("addr");
        let a = counters.worker(0).server("web", addr);
        let b = counters.worker(1).server("web", addr);
        assert!(!Arc::ptr_eq(&a, &b));
        a.bytes_in.add(10);
        b.bytes_in.add(5);
        b.connections.inc();
        // The same key on the same worker is the same counter (a reload keeps counting).
        counters.worker(1).server("web", addr).connections.inc();
        let t = counters.server("web", addr);
        assert_eq!((t.bytes_in, t.connections), (15, 2));
        assert_eq!(counters.server("other", addr), ServerTotals::default());
        counters.worker(0).service("web").accepted.add(3);
        assert_eq!(counters.service("web").accepted, 3);
    }
}
