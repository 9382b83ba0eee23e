//! Smooth weighted round robin (the nginx algorithm).
//!
//! Every pick adds each server's weight to its running score, takes the highest score and lowers it
//! by the total weight. Over any window of `sum(weights)` picks each server is chosen exactly
//! `weight` times, and picks are interleaved (weights 5:1:1 give `a a b a c a a`, not `a a a a a b c`),
//! so a heavy server never receives a burst.

/// Per-worker smooth weighted round-robin state over a fixed list of servers.
#[derive(Debug, Clone)]
pub struct SmoothRoundRobin {
    weights: Vec<i64>,
    current: Vec<i64>,
    total: i64,
}

impl SmoothRoundRobin {
    /// A scheduler over servers with these weights (index = server position in the config).
    ///
    /// Weights of zero are treated as one; the config never produces them.
    pub fn new(weights: impl IntoIterator<Item = u32>) -> Self {
        let weights: Vec<i64> = weights.into_iter().map(|w| i64::from(w.max(1))).collect();
        let total = weights.iter().sum();
        let current = vec![0; weights.len()];
        Self {
            weights,
            current,
            total,
        }
    }

    /// The same scheduler advanced by `phase` picks, so that workers started together do not all
    /// send their first connection to the same server (worker *i* uses phase *i*).
    pub fn with_phase(mut self, phase: usize) -> Self {
        let steps = usize::try_from(self.total).map_or(0, |total| phase % total.max(1));
        for _ in 0..steps {
            self.pick();
        }
        self
    }

    /// Number of servers.
    pub fn len(&self) -> usize {
        self.weights.len()
    }

    /// True when there are no servers to pick from.
    pub fn is_empty(&self) -> bool {
        self.weights.is_empty()
    }

    /// The index of the next server, or `None` when there are no servers.
    pub fn pick(&mut self) -> Option<usize> {
        let mut best: Option<usize> = None;
        for i in 0..self.weights.len() {
            self.current[i] += self.weights[i];
            if best.is_none_or(|b| self.current[i] > self.current[b]) {
                best = Some(i);
            }
        }
        let b = best?;
        self.current[b] -= self.total;
        Some(b)
    }

    /// The next server among those `usable` says may take a connection, smooth over the usable
    /// ones only (a down server's share is spread over the others); `None` when none is usable.
    pub fn pick_usable(&mut self, usable: impl Fn(usize) -> bool) -> Option<usize> {
        let mut best: Option<usize> = None;
        let mut total = 0;
        for i in 0..self.weights.len() {
            if !usable(i) {
                continue;
            }
            self.current[i] += self.weights[i];
            total += self.weights[i];
            if best.is_none_or(|b| self.current[i] > self.current[b]) {
                best = Some(i);
            }
        }
        let b = best?;
        self.current[b] -= total;
        Some(b)
    }

    /// The order in which to try servers for one connection: the scheduled pick first, then every
    /// other server once, in config order after it (failover without retrying a server twice).
    pub fn failover_order(&mut self) -> impl Iterator<Item = usize> {
        let n = self.len();
        let first = self.pick().unwrap_or(0);
        (0..n).map(move |k| (first + k) % n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sequence(weights: &[u32], n: usize) -> Vec<usize> {
        let mut rr = SmoothRoundRobin::new(weights.iter().copied());
        (0..n).map(|_| rr.pick().expect("servers")).collect()
    }

    #[test]
    fn each_window_of_total_weight_matches_the_weights() {
        let weights = [3, 1, 2];
        let seq = sequence(&weights, 6 * 50);
        for window in seq.chunks(6) {
            for (i, &w) in weights.iter().enumerate() {
                assert_eq!(
                    window.iter().filter(|&&s| s == i).count(),
                    w as usize,
                    "{window:?}"
                );
            }
        }
    }

    #[test]
    fn picks_are_interleaved_not_bursty() {
        // nginx's reference sequence for 5:1:1.
        assert_eq!(sequence(&[5, 1, 1], 7), vec![0, 0, 1, 0, 2, 0, 0]);
    }

    #[test]
    fn equal_weights_rotate() {
        assert_eq!(sequence(&[1, 1, 1], 6), vec![0, 1, 2, 0, 1, 2]);
    }

    #[test]
    fn workers_start_at_different_servers() {
        let first = |phase| SmoothRoundRobin::new([1, 1]).with_phase(phase).pick();
        assert_eq!(first(0), Some(0));
        assert_eq!(first(1), Some(1));
        assert_eq!(first(2), Some(0));
        assert!(SmoothRoundRobin::new([]).with_phase(3).is_empty());
    }

    #[test]
    fn unusable_servers_are_skipped_and_their_share_spread() {
        let mut rr = SmoothRoundRobin::new([1, 1, 1]);
        let picks: Vec<usize> = (0..6).filter_map(|_| rr.pick_usable(|i| i != 1)).collect();
        assert_eq!(picks.iter().filter(|&&p| p == 0).count(), 3);
        assert_eq!(picks.iter().filter(|&&p| p == 2).count(), 3);
        assert_eq!(rr.pick_usable(|_| false), None);
    }

    #[test]
    fn empty_scheduler_picks_nothing() {
        let mut rr = SmoothRoundRobin::new([]);
        assert_eq!(rr.pick(), None);
        assert_eq!(rr.failover_order().count(), 0);
    }

    #[test]
    fn failover_order_visits_every_server_once() {
        let mut rr = SmoothRoundRobin::new([1, 1, 1, 1]);
        rr.pick();
        let order: Vec<usize> = rr.failover_order().collect();
        assert_eq!(order, vec![1, 2, 3, 0]);
    }
}
