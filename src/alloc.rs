//! Giving memory back to the kernel after a burst of connections ends.
//!
//! The allocator (mimalloc, per thread) keeps pages it freed for reuse and purges them lazily,
//! from later allocations; a worker that goes quiet after an attack would keep its high-water
//! mark resident (3,000 silent clients left 38 MiB behind). Each worker's sweeper calls
//! [`Trim::after_tick`], which has the allocator purge its free memory once the number of open
//! connections has fallen to half of its peak or less (and by at least [`MIN_DROP`]): rare, and
//! off the per-request path. With it the same attack leaves 2 MiB.

/// Fewest connections that must have closed since the peak before a purge is worth it.
pub const MIN_DROP: usize = 256;

/// A worker's purge trigger: the peak of open connections since the last purge.
#[derive(Debug, Default)]
pub struct Trim {
    peak: usize,
}

impl Trim {
    /// Notes `open` connections; purges this thread's free memory when `open` fell to half of
    /// the peak or less. Returns whether it purged.
    pub fn after_tick(&mut self, open: usize) -> bool {
        self.peak = self.peak.max(open);
        if self.peak - open < MIN_DROP || open * 2 > self.peak {
            return false;
        }
        self.peak = open;
        // SAFETY: mi_collect(true) purges this thread's free pages and the segment cache; it is
        // safe to call at any time, also where mimalloc is not the global allocator (tests).
        unsafe { libmimalloc_sys::mi_collect(true) };
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn purges_once_the_count_halves_after_a_burst() {
        let mut trim = Trim::default();
        assert!(!trim.after_tick(100), "growing");
        assert!(!trim.after_tick(1000), "growing");
        assert!(!trim.after_tick(600), "not yet half");
        assert!(trim.after_tick(400), "half of the peak, 600 fewer");
        assert!(!trim.after_tick(300), "the peak restarted at 400");
        assert!(
            !trim.after_tick(150),
            "halved, but fewer than MIN_DROP closed"
        );
        assert!(trim.after_tick(100), "half, and MIN_DROP closed");
    }
}
