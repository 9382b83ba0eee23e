//! Timers on the worker's own ring: sleeps, timeouts and a ticker, all driven by the runtime's
//! wait (`io_uring_enter` with a timeout), with no timer thread or other reactor beside it.
//!
//! Only for code running on a worker runtime ([`super::ring`]); a timed-out future is dropped,
//! which cancels any ring operation it had in flight (compio keeps the operation's buffer until
//! the kernel completes the cancellation).

use std::future::Future;
use std::time::{Duration, Instant};

/// The future did not finish in time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Elapsed;

/// Waits for `duration`.
pub async fn sleep(duration: Duration) {
    compio::time::sleep(duration).await;
}

/// Runs `future` for at most `duration`; dropped (cancelled) when the time is up.
pub async fn timeout<F: Future>(duration: Duration, future: F) -> Result<F::Output, Elapsed> {
    compio::time::timeout(duration, future)
        .await
        .map_err(|_| Elapsed)
}

/// Fires every `period`, the first time one period after it is made. A tick that comes late
/// (the worker was busy) does not make the next ones come sooner: the next one is due a full
/// period after the late one.
pub struct Ticker {
    period: Duration,
    next: Instant,
}

impl Ticker {
    /// A ticker with the given period (at least 1 ms).
    pub fn new(period: Duration) -> Self {
        let period = period.max(Duration::from_millis(1));
        Self {
            period,
            next: Instant::now() + period,
        }
    }

    /// Waits for the next tick.
    pub async fn tick(&mut self) {
        let now = Instant::now();
        if self.next > now {
            compio::time::sleep_until(self.next).await;
        }
        self.next = Instant::now().max(self.next) + self.period;
    }
}
