//! Per-core connection registry and its timers: one coarse clock and one sweeper serve every
//! deadline of the worker's connections — idle timeouts, handshake timeouts, the deadline of one
//! attempt to reach a server — and the drain's accounting.
//!
//! A tokio-uring read cannot be raced against a timer (dropping it does not cancel it, and the
//! bytes it receives are lost), so a deadline is enforced from outside: the sweeper aborts the
//! sockets (`net::stream::abort_fd`: a RST to the peer, and every pending read and write completes
//! with an error), the connection's own task sees the error and ends, and its record reads *why*
//! here. The relay marks activity by copying the coarse clock into a `Cell`, which costs no
//! syscall per read; deadlines are set from a fresh clock reading, once per phase.
//!
//! The sweeper visits every entry each tick (at most [`MAX_SWEEP_INTERVAL`]): a few nanoseconds an
//! entry, so 100,000 connections cost well under a millisecond a tick.
//!
//! Owned by one worker (`!Send`); no lock anywhere.

use std::cell::{Cell, RefCell};
use std::os::fd::RawFd;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam::utils::CachePadded;

use tokio::sync::Notify;

use crate::counters::ServerCounters;
use crate::net::stream::abort_fd;

/// The sweeper never ticks slower than this, so a deadline fires at most this late.
pub const MAX_SWEEP_INTERVAL: Duration = Duration::from_millis(250);
/// ... nor faster than this, so many short timeouts do not turn it into a busy loop.
pub const MIN_SWEEP_INTERVAL: Duration = Duration::from_millis(50);

/// No deadline.
const NEVER: u64 = u64::MAX;

/// Why the registry closed an entry's sockets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expiry {
    /// No traffic either way for the connection's idle timeout.
    Idle,
    /// Its phase deadline passed: the client's handshake, or one attempt to reach a server.
    Deadline,
    /// A drain timeout (or shutdown) cut it.
    Drain,
}

/// What one entry shares with the registry: its sockets, its clock readings, its fate.
#[derive(Debug)]
pub struct Activity {
    last: Cell<u64>,
    idle_ms: u64,
    deadline: Cell<u64>,
    fds: Cell<[RawFd; 2]>,
    expired: Cell<Option<Expiry>>,
    /// Counted in [`Registry::active`] (a connection), or a bare deadline.
    counted: bool,
}

impl Activity {
    /// Why the registry closed this entry's sockets, if it did.
    pub fn expired(&self) -> Option<Expiry> {
        self.expired.get()
    }

    /// True once the sweeper closed this connection for being idle.
    pub fn timed_out(&self) -> bool {
        self.expired.get() == Some(Expiry::Idle)
    }

    /// True once a drain timeout (or shutdown) closed this connection.
    pub fn aborted(&self) -> bool {
        self.expired.get() == Some(Expiry::Drain)
    }
}

/// The connections of one worker, and the deadlines of their phases.
pub struct Registry {
    start: Instant,
    now_ms: Cell<u64>,
    slots: RefCell<Vec<Option<Rc<Activity>>>>,
    free: RefCell<Vec<usize>>,
    active: Cell<usize>,
    idle: Notify,
}

impl Default for Registry {
    fn default() -> Self {
        Self::new()
    }
}

impl Registry {
    /// An empty registry whose clock starts now.
    pub fn new() -> Self {
        Self {
            start: Instant::now(),
            now_ms: Cell::new(0),
            slots: RefCell::new(Vec::new()),
            free: RefCell::new(Vec::new()),
            active: Cell::new(0),
            idle: Notify::new(),
        }
    }

    /// The coarse clock in milliseconds since the worker started (advanced by the sweeper).
    pub fn now_ms(&self) -> u64 {
        self.now_ms.get()
    }

    /// A fresh reading of the clock, for setting a deadline.
    fn fresh_ms(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_millis()).unwrap_or(NEVER - 1)
    }

    fn after(&self, timeout: Duration) -> u64 {
        self.fresh_ms()
            .saturating_add(u64::try_from(timeout.as_millis()).unwrap_or(NEVER))
            .min(NEVER - 1)
    }

    /// Marks traffic on `activity` now.
    pub fn touch(&self, activity: &Activity) {
        activity.last.set(self.now_ms.get());
    }

    /// Number of connections currently registered.
    pub fn active(&self) -> usize {
        self.active.get()
    }

    /// Registers a connection over `fds` (client, server) that is closed after `idle_timeout`
    /// without traffic and, while `handshake` is `Some`, once that much time has passed (until
    /// [`ConnGuard::handshake_done`]). The returned guard unregisters it; drop it before the
    /// sockets close.
    pub fn register(
        self: &Rc<Self>,
        fds: [RawFd; 2],
        idle_timeout: Duration,
        handshake: Option<Duration>,
    ) -> ConnGuard {
        let activity = self.insert(Activity {
            last: Cell::new(self.now_ms.get()),
            idle_ms: u64::try_from(idle_timeout.as_millis()).unwrap_or(NEVER),
            deadline: Cell::new(handshake.map_or(NEVER, |d| self.after(d))),
            fds: Cell::new(fds),
            expired: Cell::new(None),
            counted: true,
        });
        self.active.set(self.active.get() + 1);
        ConnGuard {
            registry: self.clone(),
            key: activity.0,
            activity: activity.1,
            counters: RefCell::new(None),
        }
    }

    /// Aborts socket `fd` unless the returned [`Deadline`] is dropped within `timeout`. Not a
    /// connection: drains do not wait for it. `fd` must stay open while the `Deadline` lives.
    pub fn deadline(self: &Rc<Self>, fd: RawFd, timeout: Duration) -> Deadline {
        let (key, activity) = self.insert(Activity {
            last: Cell::new(0),
            idle_ms: NEVER,
            deadline: Cell::new(self.after(timeout)),
            fds: Cell::new([fd, -1]),
            expired: Cell::new(None),
            counted: false,
        });
        Deadline {
            registry: self.clone(),
            key,
            activity,
        }
    }

    fn insert(&self, activity: Activity) -> (usize, Rc<Activity>) {
        let activity = Rc::new(activity);
        let mut slots = self.slots.borrow_mut();
        let key = match self.free.borrow_mut().pop() {
            Some(key) => {
                slots[key] = Some(activity.clone());
                key
            }
            None => {
                slots.push(Some(activity.clone()));
                slots.len() - 1
            }
        };
        (key, activity)
    }

    fn unregister(&self, key: usize, counted: bool) {
        self.slots.borrow_mut()[key] = None;
        self.free.borrow_mut().push(key);
        if counted {
            let left = self.active.get().saturating_sub(1);
            self.active.set(left);
            if left == 0 {
                self.idle.notify_waiters();
            }
        }
    }

    /// Advances the clock and aborts every entry past its deadline or idle for longer than its
    /// timeout. Returns how many.
    pub fn sweep(&self) -> usize {
        let now = self.fresh_ms();
        self.now_ms.set(now);
        let mut closed = 0;
        for activity in self.slots.borrow().iter().flatten() {
            if activity.expired.get().is_some() {
                continue;
            }
            let why = if now >= activity.deadline.get() {
                Expiry::Deadline
            } else if now.saturating_sub(activity.last.get()) > activity.idle_ms {
                Expiry::Idle
            } else {
                continue;
            };
            activity.expired.set(Some(why));
            abort_fds(activity.fds.get());
            closed += 1;
        }
        closed
    }

    /// Aborts every registered connection (end of a drain). Returns how many.
    pub fn abort_all(&self) -> usize {
        let slots = self.slots.borrow();
        let mut cut = 0;
        for activity in slots.iter().flatten().filter(|a| a.counted) {
            if activity.expired.get().is_none() {
                activity.expired.set(Some(Expiry::Drain));
            }
            abort_fds(activity.fds.get());
            cut += 1;
        }
        cut
    }

    /// Resolves once no connection is registered.
    pub async fn wait_empty(&self) {
        loop {
            let notified = self.idle.notified();
            if self.active.get() == 0 {
                return;
            }
            notified.await;
        }
    }

    /// The sweeper's tick for a shortest timeout of `shortest`: an eighth of it, within
    /// [`MIN_SWEEP_INTERVAL`]..=[`MAX_SWEEP_INTERVAL`].
    pub fn tick_for(shortest: Duration) -> Duration {
        (shortest / 8).clamp(MIN_SWEEP_INTERVAL, MAX_SWEEP_INTERVAL)
    }

    /// Runs the sweeper forever, every `tick`; after a burst of connections ends, it also has
    /// the allocator give free memory back (`crate::alloc`).
    pub async fn run_sweeper(self: Rc<Self>, tick: Duration) {
        let mut ticker = crate::net::time::Ticker::new(tick);
        let mut trim = crate::alloc::Trim::default();
        loop {
            ticker.tick().await;
            let closed = self.sweep();
            if closed > 0 {
                tracing::debug!(closed, "timeouts: aborted connections past their deadline");
            }
            if trim.after_tick(self.active.get()) {
                tracing::debug!(
                    open = self.active.get(),
                    "open connections halved: free memory purged"
                );
            }
        }
    }
}

fn abort_fds(fds: [RawFd; 2]) {
    for fd in fds {
        if fd >= 0 {
            // The fd belongs to a registered entry, which unregisters before its sockets close,
            // and registry and sockets live on this one thread.
            abort_fd(fd);
        }
    }
}

/// Keeps a connection registered; unregisters on drop.
pub struct ConnGuard {
    registry: Rc<Registry>,
    key: usize,
    activity: Rc<Activity>,
    counters: RefCell<Option<Arc<CachePadded<ServerCounters>>>>,
}

impl ConnGuard {
    /// The activity record the relay touches.
    pub fn activity(&self) -> &Activity {
        &self.activity
    }

    /// The registry this connection belongs to.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The registry, to arm a [`Deadline`] for one step of this connection.
    pub fn registry_rc(&self) -> &Rc<Registry> {
        &self.registry
    }

    /// Records the server socket once connected, so a deadline, an idle timeout or a drain
    /// aborts it too.
    pub fn set_server_fd(&self, fd: RawFd) {
        let [client, _] = self.activity.fds.get();
        self.activity.fds.set([client, fd]);
    }

    /// The client's handshake (or first byte) arrived: only the idle timeout applies from now on.
    pub fn handshake_done(&self) {
        self.activity.deadline.set(NEVER);
        self.registry.touch(&self.activity);
    }

    /// Time left before the handshake deadline (`None` when there is none); zero once past.
    pub fn remaining(&self) -> Option<Duration> {
        let deadline = self.activity.deadline.get();
        (deadline != NEVER)
            .then(|| Duration::from_millis(deadline.saturating_sub(self.registry.fresh_ms())))
    }

    /// The counters of the server this connection is relayed to; the relay adds its bytes there.
    pub fn set_server_counters(&self, counters: Arc<CachePadded<ServerCounters>>) {
        *self.counters.borrow_mut() = Some(counters);
    }

    /// The server's counters, once chosen.
    pub fn server_counters(&self) -> Option<Arc<CachePadded<ServerCounters>>> {
        self.counters.borrow().clone()
    }
}

impl Drop for ConnGuard {
    fn drop(&mut self) {
        self.registry.unregister(self.key, true);
    }
}

/// A deadline on one socket from [`Registry::deadline`]: the socket is aborted if this is still
/// alive when time is up. Drop it to disarm (before the socket closes).
pub struct Deadline {
    registry: Rc<Registry>,
    key: usize,
    activity: Rc<Activity>,
}

impl Deadline {
    /// True if time ran out and the socket was aborted.
    pub fn fired(&self) -> bool {
        self.activity.expired.get().is_some()
    }
}

impl Drop for Deadline {
    fn drop(&mut self) {
        self.registry.unregister(self.key, false);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_reused_and_counted() {
        let reg = Rc::new(Registry::new());
        let a = reg.register([-1, -1], Duration::from_secs(1), None);
        let b = reg.register([-1, -1], Duration::from_secs(1), None);
        assert_eq!(reg.active(), 2);
        let key_a = a.key;
        drop(a);
        assert_eq!(reg.active(), 1);
        let c = reg.register([-1, -1], Duration::from_secs(1), None);
        assert_eq!(c.key, key_a);
        let d = reg.deadline(-1, Duration::from_secs(1));
        assert_eq!(reg.active(), 2, "a bare deadline is not a connection");
        drop((b, c, d));
        assert_eq!(reg.active(), 0);
    }

    #[test]
    fn sweep_marks_only_idle_connections() {
        let reg = Rc::new(Registry::new());
        let idle = reg.register([-1, -1], Duration::from_millis(10), None);
        let busy = reg.register([-1, -1], Duration::from_secs(3600), None);
        std::thread::sleep(Duration::from_millis(30));
        assert_eq!(reg.sweep(), 1);
        assert!(idle.activity().timed_out());
        assert!(!busy.activity().timed_out());
        // Already timed out: not counted twice.
        assert_eq!(reg.sweep(), 0);
    }

    #[test]
    fn touch_keeps_a_connection_alive() {
        let reg = Rc::new(Registry::new());
        let conn = reg.register([-1, -1], Duration::from_millis(20), None);
        std::thread::sleep(Duration::from_millis(15));
        reg.sweep();
        reg.touch(conn.activity());
        std::thread::sleep(Duration::from_millis(10));
        assert_eq!(reg.sweep(), 0);
        assert!(!conn.activity().timed_out());
    }

    #[test]
    fn a_handshake_deadline_fires_despite_traffic_until_done() {
        let reg = Rc::new(Registry::new());
        let slow = reg.register(
            [-1, -1],
            Duration::from_secs(60),
            Some(Duration::from_millis(20)),
        );
        let done = reg.register(
            [-1, -1],
            Duration::from_secs(60),
            Some(Duration::from_millis(20)),
        );
        done.handshake_done();
        assert_eq!(done.remaining(), None);
        assert!(slow
            .remaining()
            .is_some_and(|r| r <= Duration::from_millis(20)));
        std::thread::sleep(Duration::from_millis(30));
        // A byte a second keeps a connection from being idle, not from its handshake deadline.
        reg.touch(slow.activity());
        assert_eq!(reg.sweep(), 1);
        assert_eq!(slow.activity().expired(), Some(Expiry::Deadline));
        assert_eq!(done.activity().expired(), None);
        assert_eq!(slow.remaining(), Some(Duration::ZERO));
    }

    #[test]
    fn a_bare_deadline_fires_unless_dropped_and_drains_ignore_it() {
        let reg = Rc::new(Registry::new());
        let fires = reg.deadline(-1, Duration::from_millis(10));
        let disarmed = reg.deadline(-1, Duration::from_millis(10));
        drop(disarmed);
        std::thread::sleep(Duration::from_millis(20));
        assert_eq!(reg.sweep(), 1);
        assert!(fires.fired());
        let conn = reg.register([-1, -1], Duration::from_secs(60), None);
        assert_eq!(reg.abort_all(), 1);
        assert!(conn.activity().aborted());
    }

    #[test]
    fn the_tick_follows_the_shortest_timeout_within_bounds() {
        assert_eq!(
            Registry::tick_for(Duration::from_secs(1)),
            Duration::from_millis(125)
        );
        assert_eq!(
            Registry::tick_for(Duration::from_secs(600)),
            MAX_SWEEP_INTERVAL
        );
        assert_eq!(
            Registry::tick_for(Duration::from_millis(100)),
            MIN_SWEEP_INTERVAL
        );
    }
}
