//! Per-core connection registry: a coarse clock, the idle-timeout sweeper and drain accounting.
//!
//! A tokio-uring read cannot be raced against a timer (dropping it does not cancel it, and the bytes
//! it receives are lost), so idle connections are closed by a sweeper that calls `shutdown(SHUT_RDWR)`
//! on both sockets; that completes the pending reads and the relay ends on its own. The relay marks
//! activity by copying a per-core coarse clock into a `Cell`, which costs no syscall per read.
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

/// The sweeper never ticks slower than this, so a timeout fires at most this late.
pub const MAX_SWEEP_INTERVAL: Duration = Duration::from_secs(1);
/// ... nor faster than this, so many short timeouts do not turn it into a busy loop.
pub const MIN_SWEEP_INTERVAL: Duration = Duration::from_millis(50);

/// What one connection shares with the registry.
#[derive(Debug)]
pub struct Activity {
    last: Cell<u64>,
    idle_ms: u64,
    fds: Cell<[RawFd; 2]>,
    timed_out: Cell<bool>,
    aborted: Cell<bool>,
}

impl Activity {
    /// True once the sweeper closed this connection for being idle.
    pub fn timed_out(&self) -> bool {
        self.timed_out.get()
    }

    /// True once a drain timeout (or shutdown) closed this connection.
    pub fn aborted(&self) -> bool {
        self.aborted.get()
    }
}

/// The connections of one worker.
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

    /// Marks traffic on `activity` now.
    pub fn touch(&self, activity: &Activity) {
        activity.last.set(self.now_ms.get());
    }

    /// Number of connections currently registered.
    pub fn active(&self) -> usize {
        self.active.get()
    }

    /// Registers a connection over `fds` (client, server) that is closed after `idle_timeout`
    /// without traffic. The returned guard unregisters it; drop it before the sockets close.
    pub fn register(self: &Rc<Self>, fds: [RawFd; 2], idle_timeout: Duration) -> ConnGuard {
        let activity = Rc::new(Activity {
            last: Cell::new(self.now_ms.get()),
            idle_ms: u64::try_from(idle_timeout.as_millis()).unwrap_or(u64::MAX),
            fds: Cell::new(fds),
            timed_out: Cell::new(false),
            aborted: Cell::new(false),
        });
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
        self.active.set(self.active.get() + 1);
        ConnGuard {
            registry: self.clone(),
            key,
            activity,
            counters: RefCell::new(None),
        }
    }

    fn unregister(&self, key: usize) {
        self.slots.borrow_mut()[key] = None;
        self.free.borrow_mut().push(key);
        let left = self.active.get().saturating_sub(1);
        self.active.set(left);
        if left == 0 {
            self.idle.notify_waiters();
        }
    }

    /// Advances the clock and shuts down every connection idle for longer than its timeout.
    /// Returns how many were shut down.
    pub fn sweep(&self) -> usize {
        let now = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.now_ms.set(now);
        let mut closed = 0;
        for activity in self.slots.borrow().iter().flatten() {
            if !activity.timed_out.get()
                && now.saturating_sub(activity.last.get()) > activity.idle_ms
            {
                activity.timed_out.set(true);
                shutdown_fds(activity.fds.get());
                closed += 1;
            }
        }
        closed
    }

    /// Shuts down every registered connection (end of a drain). Returns how many.
    pub fn abort_all(&self) -> usize {
        let slots = self.slots.borrow();
        for activity in slots.iter().flatten() {
            activity.aborted.set(true);
            shutdown_fds(activity.fds.get());
        }
        slots.iter().flatten().count()
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

    /// Runs the sweeper until `stop` resolves, ticking often enough for `shortest_timeout`.
    pub async fn run_sweeper(self: Rc<Self>, shortest_timeout: Duration) {
        let tick = (shortest_timeout / 4).clamp(MIN_SWEEP_INTERVAL, MAX_SWEEP_INTERVAL);
        let mut interval = tokio::time::interval(tick);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            interval.tick().await;
            let closed = self.sweep();
            if closed > 0 {
                tracing::debug!(closed, "idle timeout: shut down idle connections");
            }
        }
    }
}

fn shutdown_fds(fds: [RawFd; 2]) {
    for fd in fds {
        if fd >= 0 {
            // SAFETY: the fd belongs to a registered connection, which unregisters before its
            // sockets close, and registry and sockets live on this one thread.
            unsafe { libc::shutdown(fd, libc::SHUT_RDWR) };
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

    /// Records the server socket once connected, so an idle timeout or a drain shuts it too.
    pub fn set_server_fd(&self, fd: RawFd) {
        let [client, _] = self.activity.fds.get();
        self.activity.fds.set([client, fd]);
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
        self.registry.unregister(self.key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_reused_and_counted() {
        let reg = Rc::new(Registry::new());
        let a = reg.register([-1, -1], Duration::from_secs(1));
        let b = reg.register([-1, -1], Duration::from_secs(1));
        assert_eq!(reg.active(), 2);
        let key_a = a.key;
        drop(a);
        assert_eq!(reg.active(), 1);
        let c = reg.register([-1, -1], Duration::from_secs(1));
        assert_eq!(c.key, key_a);
        drop((b, c));
        assert_eq!(reg.active(), 0);
    }

    #[test]
    fn sweep_marks_only_idle_connections() {
        let reg = Rc::new(Registry::new());
        let idle = reg.register([-1, -1], Duration::from_millis(10));
        let busy = reg.register([-1, -1], Duration::from_secs(3600));
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
        let conn = reg.register([-1, -1], Duration::from_millis(20));
        std::thread::sleep(Duration::from_millis(15));
        reg.sweep();
        reg.touch(conn.activity());
        std::thread::sleep(Duration::from_millis(10));
        assert_eq!(reg.sweep(), 0);
        assert!(!conn.activity().timed_out());
    }
}
