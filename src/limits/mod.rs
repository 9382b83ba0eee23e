//! Connection limits, as HAProxy's `maxconn` keeps them: a process-wide limit, one per service and
//! one per client address.
//!
//! A worker takes a slot of the global and of the service's limit *before* it accepts
//! ([`Gate::acquire`]); at a limit it stops accepting on that listener and waits, so new clients
//! queue in the kernel's backlog instead of being refused, reset or costing a descriptor, and it
//! resumes as soon as any core releases a slot. The per-address limit can only be checked after
//! the accept (the address is not known before): an excess connection is reset at once and
//! counted ([`per_ip`]).
//!
//! Counts are atomics shared by every core (an accept and a close each touch a few cache lines,
//! no lock); the wake-up of a waiting worker goes through a `Notify` only while one waits.
//! The default process-wide limit comes from the descriptor limit ([`nofile`]).

pub mod nofile;
pub mod per_ip;

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;

use tokio::sync::Notify;

pub use per_ip::{IpSlot, IpTable};

/// Open connections counted against one limit, shared by every core and by every generation of a
/// reloaded configuration (connections of a retired generation still count until they close).
#[derive(Debug, Default)]
pub struct ConnCount {
    current: AtomicU32,
    /// Times a worker found the limit reached and stopped accepting.
    reached: AtomicU64,
    waiting: AtomicU32,
    released: Notify,
}

impl ConnCount {
    /// A zero count, to share.
    pub fn new() -> Arc<Self> {
        Arc::default()
    }

    /// Connections counted now.
    pub fn current(&self) -> u32 {
        self.current.load(Ordering::Relaxed)
    }

    /// Times the limit was reached (a worker stopped accepting).
    pub fn reached(&self) -> u64 {
        self.reached.load(Ordering::Relaxed)
    }

    fn try_take(&self, limit: u32) -> bool {
        let mut current = self.current.load(Ordering::Relaxed);
        loop {
            if current >= limit {
                return false;
            }
            match self.current.compare_exchange_weak(
                current,
                current + 1,
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => return true,
                Err(now) => current = now,
            }
        }
    }

    fn release(&self) {
        self.current.fetch_sub(1, Ordering::AcqRel);
        // SeqCst pairs with the waiter's increment: either it sees the slot freed, or this sees
        // it waiting and wakes it.
        if self.waiting.load(Ordering::SeqCst) > 0 {
            self.released.notify_waiters();
        }
    }
}

/// A limit on a [`ConnCount`]: the count is shared across reloads, the limit is the running
/// configuration's.
#[derive(Debug, Clone)]
pub struct Gate {
    count: Arc<ConnCount>,
    limit: u32,
}

impl Gate {
    /// A gate letting at most `limit` connections through `count` (`None`: no limit, only counted).
    pub fn new(count: Arc<ConnCount>, limit: Option<u32>) -> Self {
        Self {
            count,
            limit: limit.unwrap_or(u32::MAX),
        }
    }

    /// The shared count.
    pub fn count(&self) -> &Arc<ConnCount> {
        &self.count
    }

    /// The limit, `None` when there is none.
    pub fn limit(&self) -> Option<u32> {
        (self.limit != u32::MAX).then_some(self.limit)
    }

    /// A slot if one is free now.
    pub fn try_acquire(&self) -> Option<Slot> {
        self.count.try_take(self.limit).then(|| Slot {
            count: self.count.clone(),
        })
    }

    /// A slot, waiting for one to be released while the limit is reached. Cancel-safe.
    pub async fn acquire(&self) -> Slot {
        if let Some(slot) = self.try_acquire() {
            return slot;
        }
        self.count.reached.fetch_add(1, Ordering::Relaxed);
        self.count.waiting.fetch_add(1, Ordering::SeqCst);
        let _waiting = Waiting(&self.count);
        loop {
            let released = self.count.released.notified();
            tokio::pin!(released);
            released.as_mut().enable();
            if let Some(slot) = self.try_acquire() {
                return slot;
            }
            released.await;
        }
    }
}

/// Unregisters a waiter when its wait ends or is cancelled.
struct Waiting<'a>(&'a ConnCount);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.waiting.fetch_sub(1, Ordering::SeqCst);
    }
}

/// One connection counted against a limit until dropped.
#[derive(Debug)]
pub struct Slot {
    count: Arc<ConnCount>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.count.release();
    }
}

/// Everything one connection holds against the limits: released when it closes.
#[derive(Debug)]
pub struct Permit {
    /// The process-wide slot.
    pub global: Slot,
    /// The service's slot.
    pub service: Slot,
    /// The client address's slot, when the service limits addresses.
    pub ip: Option<IpSlot>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_gate_never_lets_more_than_its_limit_through() {
        let gate = Gate::new(ConnCount::new(), Some(2));
        let a = gate.try_acquire().expect("first");
        let _b = gate.try_acquire().expect("second");
        assert!(gate.try_acquire().is_none());
        assert_eq!(gate.count().current(), 2);
        drop(a);
        assert_eq!(gate.count().current(), 1);
        assert!(gate.try_acquire().is_some());
    }

    #[test]
    fn a_waiting_acquire_resumes_when_another_thread_releases() {
        let gate = Gate::new(ConnCount::new(), Some(1));
        let held = gate.try_acquire().expect("slot");
        let waiter = {
            let gate = gate.clone();
            std::thread::spawn(move || {
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("runtime")
                    .block_on(async { drop(gate.acquire().await) })
            })
        };
        while gate.count().reached() == 0 {
            std::thread::yield_now();
        }
        drop(held);
        waiter.join().expect("the waiter got its slot");
        assert_eq!(gate.count().current(), 0);
        assert_eq!(gate.count().reached(), 1);
    }

    #[test]
    fn a_reload_keeps_the_count_and_takes_the_new_limit() {
        let count = ConnCount::new();
        let old = Gate::new(count.clone(), Some(1));
        let open = old.try_acquire().expect("slot");
        let new = Gate::new(count, Some(2));
        assert!(new.try_acquire().is_some(), "one more under the new limit");
        let _second = new.try_acquire();
        assert!(
            new.try_acquire().is_none(),
            "the old generation's connection still counts"
        );
        drop(open);
        assert_eq!(new.limit(), Some(2));
        assert_eq!(Gate::new(ConnCount::new(), None).limit(), None);
    }
}
