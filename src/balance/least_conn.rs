//! Weighted least connections, with counts shared by every worker, for
//! `schedule = "least-connections"`.
//!
//! Owns the per-server count of open connections ([`ConnCounts`]), the guard that keeps a count
//! exact ([`ConnCountGuard`]), and the choice itself ([`ConnCounts::pick`]).
//!
//! **Why shared counts.** A worker only sees the connections it accepted; with per-core counts a
//! server that is busy through other cores looks idle to this one. So the counts are one atomic
//! per server, shared through an `Arc` by all workers and read without a lock. Each sits on its
//! own cache line ([`CachePadded`]): a busy server's counter is written by every core, and must not
//! drag its neighbours' lines along (false sharing).
//!
//! **Algorithm.** Among usable servers, choose the lowest `active / weight`, compared exactly as
//! `a_active · b_weight < b_active · a_weight` in `u64` (no floats, no rounding). Ties go to the
//! first server at or after the caller's `tie_start`, in list order, wrapping: a per-worker
//! rotating counter turns ties (all idle at start, equal load) into round robin instead of a
//! stampede onto server 0.
//!
//! **What it does not promise.** A pick and the [`ConnCounts::acquire`] that follows are two steps:
//! workers picking at the same instant can choose the same server, overshooting it by at most one
//! connection per worker. The next picks see the counts and correct it; a lock would cost more
//! than it saves. Counts use `Relaxed` ordering: they order nothing else.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use crossbeam::utils::CachePadded;

/// Open connections per real server, shared by every worker (hold it in an `Arc`).
#[derive(Debug)]
pub struct ConnCounts {
    /// `counts[i]` = connections open to server `i` (config order), one cache line each.
    counts: Box<[CachePadded<AtomicU32>]>,
}

impl ConnCounts {
    /// Zero counts for `servers` servers, ready to share.
    pub fn new(servers: usize) -> Arc<Self> {
        Arc::new(Self {
            counts: (0..servers)
                .map(|_| CachePadded::new(AtomicU32::new(0)))
                .collect(),
        })
    }

    /// Number of servers counted.
    pub fn len(&self) -> usize {
        self.counts.len()
    }

    /// True when there are no servers.
    pub fn is_empty(&self) -> bool {
        self.counts.is_empty()
    }

    /// Connections open to `server` now (0 for an index out of range). For metrics and tests.
    pub fn active(&self, server: usize) -> u32 {
        self.counts
            .get(server)
            .map_or(0, |c| c.load(Ordering::Relaxed))
    }

    /// Counts one more connection to `server` until the returned guard is dropped: keep the
    /// guard for as long as the connection to that server is open.
    ///
    /// `server` comes from [`ConnCounts::pick`] over the same list, so it is in range; an index
    /// out of range (a bug) counts nothing rather than panicking on the connection path.
    #[must_use = "the connection is counted only while the guard lives"]
    pub fn acquire(self: &Arc<Self>, server: usize) -> ConnCountGuard {
        debug_assert!(server < self.counts.len(), "server {server} out of range");
        if let Some(c) = self.counts.get(server) {
            c.fetch_add(1, Ordering::Relaxed);
        }
        ConnCountGuard {
            counts: Arc::clone(self),
            server,
        }
    }

    /// The usable server with the fewest open connections per unit of weight, or `None` when
    /// no server is usable.
    ///
    /// `weights[i]` is server `i`'s weight (zero counts as one, as in
    /// [`SmoothRoundRobin`](super::SmoothRoundRobin)); only servers present in both `weights` and
    /// these counts are considered. `usable(i)` says whether server `i` may take a connection
    /// (health, drain). Ties go to the first tied server at or after `tie_start` (taken modulo
    /// the number of servers): pass a per-worker counter that advances on every pick.
    /// O(servers), no allocation, no lock.
    pub fn pick(
        &self,
        weights: &[u32],
        usable: impl Fn(usize) -> bool,
        tie_start: usize,
    ) -> Option<usize> {
        let n = weights.len().min(self.counts.len());
        if n == 0 {
            return None;
        }
        let start = tie_start % n;
        // (index, active, weight) of the best so far.
        let mut best: Option<(usize, u64, u64)> = None;
        for k in 0..n {
            let i = if start + k < n {
                start + k
            } else {
                start + k - n
            };
            if !usable(i) {
                continue;
            }
            let active = u64::from(self.counts[i].load(Ordering::Relaxed));
            let weight = u64::from(weights[i].max(1));
            // Strictly less: on a tie the earlier one in rotation order stays.
            if best.is_none_or(|(_, b_active, b_weight)| active * b_weight < b_active * weight) {
                best = Some((i, active, weight));
            }
        }
        best.map(|(i, _, _)| i)
    }
}

/// One open connection counted against a server; dropping it un-counts the connection.
#[derive(Debug)]
pub struct ConnCountGuard {
    counts: Arc<ConnCounts>,
    server: usize,
}

impl ConnCountGuard {
    /// The server this connection is counted against.
    pub fn server(&self) -> usize {
        self.server
    }
}

impl Drop for ConnCountGuard {
    fn drop(&mut self) {
        if let Some(c) = self.counts.counts.get(self.server) {
            c.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(_: usize) -> bool {
        true
    }

    #[test]
    fn prefers_the_idle_server() {
        let counts = ConnCounts::new(3);
        let _a = counts.acquire(0);
        let _b = counts.acquire(1);
        for tie_start in 0..3 {
            assert_eq!(counts.pick(&[1, 1, 1], all, tie_start), Some(2));
        }
    }

    #[test]
    fn ties_rotate_from_tie_start() {
        let counts = ConnCounts::new(4);
        let picks: Vec<_> = (0..8).map(|t| counts.pick(&[1; 4], all, t)).collect();
        assert_eq!(picks, [0, 1, 2, 3, 0, 1, 2, 3].map(Some));
        // Only 1 and 3 tied at the minimum: from 2 the next tied one is 3, from 0 it is 1.
        let _g = [counts.acquire(0), counts.acquire(2)];
        assert_eq!(counts.pick(&[1; 4], all, 2), Some(3));
        assert_eq!(counts.pick(&[1; 4], all, 0), Some(1));
    }

    /// If `pick` ignored weights, the weight-2 server would hold a quarter, not half.
    #[test]
    fn a_double_weight_server_holds_twice_the_connections() {
        let counts = ConnCounts::new(3);
        let weights = [2, 1, 1];
        let guards: Vec<_> = (0..400)
            .map(|t| counts.acquire(counts.pick(&weights, all, t).expect("usable")))
            .collect();
        assert_eq!(
            (0..3).map(|i| counts.active(i)).collect::<Vec<_>>(),
            [200, 100, 100]
        );
        drop(guards);
        // Weight 0 counts as 1.
        let _g = counts.acquire(0);
        assert_eq!(counts.pick(&[0, 1, 1], all, 0), Some(1));
    }

    #[test]
    fn skips_unusable_servers() {
        let counts = ConnCounts::new(3);
        let _g = [counts.acquire(0), counts.acquire(0)];
        assert_eq!(counts.pick(&[1, 1, 1], |i| i == 0, 1), Some(0));
        assert_eq!(counts.pick(&[1, 1, 1], |i| i != 1, 1), Some(2));
        assert_eq!(counts.pick(&[1, 1, 1], |_| false, 0), None);
        assert_eq!(ConnCounts::new(0).pick(&[], all, 5), None);
        // Only servers known to both the weights and the counts.
        assert_eq!(counts.pick(&[1], |i| i != 0, 0), None);
    }

    #[test]
    fn the_guard_uncounts_on_drop() {
        let counts = ConnCounts::new(2);
        let g = counts.acquire(1);
        let h = counts.acquire(1);
        assert_eq!((g.server(), counts.active(1)), (1, 2));
        drop(g);
        assert_eq!(counts.active(1), 1);
        drop(h);
        assert_eq!(counts.active(1), 0);
        assert_eq!(counts.active(0), 0);
    }

    #[test]
    fn concurrent_acquire_and_drop_end_at_zero() {
        const THREADS: usize = 4;
        const ROUNDS: usize = 20_000;
        const HELD: usize = 16;
        let counts = ConnCounts::new(5);
        let weights = [1, 2, 1, 3, 1];
        std::thread::scope(|s| {
            for t in 0..THREADS {
                let counts = &counts;
                s.spawn(move || {
                    let mut held = Vec::with_capacity(HELD);
                    for r in 0..ROUNDS {
                        let server = counts.pick(&weights, all, t + r).expect("usable");
                        held.push(counts.acquire(server));
                        if held.len() == HELD {
                            held.drain(..HELD / 2);
                        }
                    }
                });
            }
        });
        assert!((0..5).all(|i| counts.active(i) == 0));
        assert_eq!(Arc::strong_count(&counts), 1);
    }
}
