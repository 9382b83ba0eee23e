//! Per-core warm pool: idle, already connected (and, for re-encrypt, handshaken) server
//! connections, so a new client's first request does not wait for a server handshake.
//!
//! Owned by one worker (`!Send`, no lock). A pooled connection is handed to exactly one client
//! and never returns to the pool: NTLM authenticates a connection, so two clients must never
//! share one. Connections are kept apart by the key they were opened with — what the server saw:
//! server name and ALPN offer, so a client gets one that negotiated what it would have — and each
//! server keeps warm connections for up to [`MAX_KEYS`] keys at once, the most recently used, so
//! clients that alternate (a browser offering h2, Outlook offering nothing) do not make the pool
//! drop and reopen its connections each time. A key no client used for [`KEY_TTL`] is forgotten.
//! Connections are checked before they are handed out (the server may have closed an idle one)
//! and dropped after [`MAX_IDLE`]. Refilling happens off the connection path, in a task that waits
//! on [`WarmPool::wanted`].

use std::cell::RefCell;
use std::collections::VecDeque;
use std::time::{Duration, Instant};

use tokio::sync::Notify;

/// How long a pooled connection may wait for a client. Servers close idle connections on their
/// own schedule (IIS after 120 s); 30 s keeps well inside that, so few pooled connections die
/// unseen, and a pool refills in one round of handshakes.
pub const MAX_IDLE: Duration = Duration::from_secs(30);
/// Keys a server keeps warm connections for at once: enough for the few client kinds of a
/// service (browsers, Outlook, ActiveSync devices), few enough that the pool stays `warm` × 4.
pub const MAX_KEYS: usize = 4;
/// A key no client asked for this long is forgotten with its connections.
pub const KEY_TTL: Duration = Duration::from_secs(600);

/// A connection that can say, without blocking, whether it can still carry a new client. The
/// pool's user implements it for the streams it pools (`proxy::warm`), so this module knows no
/// stream type.
pub trait Reusable {
    /// False if the peer closed it or sent something a fresh connection would not have.
    fn still_usable(&self) -> bool;
}

struct Idle<S, K> {
    stream: S,
    key: K,
    since: Instant,
}

/// A key clients of one server use, and when one last did.
struct Wanted<K> {
    key: K,
    used: Instant,
}

/// Up to `target` idle connections per server and key, and the keys the refill opens them with.
pub struct WarmPool<S, K> {
    idle: Vec<RefCell<VecDeque<Idle<S, K>>>>,
    /// Per server, the keys in use, most recently used first.
    keys: RefCell<Vec<Vec<Wanted<K>>>>,
    target: usize,
    wake: Notify,
}

impl<S: Reusable, K: Clone + PartialEq> WarmPool<S, K> {
    /// A pool for `servers` servers keeping up to `target` connections each; `template` is the
    /// key to open them with before any client has been seen (`None`: wait for the first client).
    pub fn new(servers: usize, target: u32, template: Option<K>) -> Self {
        let now = Instant::now();
        let first = |_| {
            template
                .iter()
                .map(|key| Wanted {
                    key: key.clone(),
                    used: now,
                })
                .collect()
        };
        Self {
            idle: (0..servers)
                .map(|_| RefCell::new(VecDeque::new()))
                .collect(),
            keys: RefCell::new((0..servers).map(first).collect()),
            target: target as usize,
            wake: Notify::new(),
        }
    }

    /// A pooled connection to `server` opened with `key`, checked alive; `None` if there is none.
    /// Stale or dead ones met on the way are dropped. Wakes the refill.
    pub fn take(&self, server: usize, key: &K) -> Option<S> {
        let queue = self.idle.get(server)?;
        let mut found = None;
        {
            let mut queue = queue.borrow_mut();
            // Oldest first: connections cycle through the pool instead of the oldest ones idling
            // until they expire unused; each is checked alive before it is handed out anyway.
            while let Some(pos) = queue.iter().position(|i| i.key == *key) {
                let Some(entry) = queue.remove(pos) else {
                    break;
                };
                if entry.since.elapsed() < MAX_IDLE && entry.stream.still_usable() {
                    found = Some(entry.stream);
                    break;
                }
            }
        }
        self.wake.notify_one();
        found
    }

    /// Tells the pool that a client of `server` uses `key` now: it becomes the most recent key
    /// (a new one pushes out the least recently used beyond [`MAX_KEYS`]).
    pub fn learn(&self, server: usize, key: &K) {
        let mut keys = self.keys.borrow_mut();
        let Some(keys) = keys.get_mut(server) else {
            return;
        };
        let now = Instant::now();
        match keys.iter().position(|w| w.key == *key) {
            Some(0) => keys[0].used = now,
            Some(pos) => {
                let mut w = keys.remove(pos);
                w.used = now;
                keys.insert(0, w);
            }
            None => {
                keys.insert(
                    0,
                    Wanted {
                        key: key.clone(),
                        used: now,
                    },
                );
                keys.truncate(MAX_KEYS);
                self.wake.notify_one();
            }
        }
    }

    /// The key to open one more connection to `server` with: the most recent key with fewer than
    /// `target` idle connections, if any.
    pub fn wanted(&self, server: usize) -> Option<K> {
        let idle = self.idle.get(server)?.borrow();
        let keys = self.keys.borrow();
        keys.get(server)?
            .iter()
            .find(|w| idle.iter().filter(|i| i.key == w.key).count() < self.target)
            .map(|w| w.key.clone())
    }

    /// Adds a freshly opened connection.
    pub fn put(&self, server: usize, key: K, stream: S) {
        if let Some(queue) = self.idle.get(server) {
            queue.borrow_mut().push_back(Idle {
                stream,
                key,
                since: Instant::now(),
            });
        }
    }

    /// Forgets keys unused for [`KEY_TTL`] (all but the most recent one of a server), and drops
    /// connections idle for longer than [`MAX_IDLE`] or opened with a key no longer kept.
    /// Returns how many connections.
    pub fn expire(&self) -> usize {
        let mut keys = self.keys.borrow_mut();
        let mut dropped = 0;
        for (server, queue) in self.idle.iter().enumerate() {
            let Some(keys) = keys.get_mut(server) else {
                continue;
            };
            let mut kept = 0;
            keys.retain(|w| {
                kept += 1;
                kept == 1 || w.used.elapsed() < KEY_TTL
            });
            let mut queue = queue.borrow_mut();
            let before = queue.len();
            queue.retain(|i| i.since.elapsed() < MAX_IDLE && keys.iter().any(|w| w.key == i.key));
            dropped += before - queue.len();
        }
        dropped
    }

    /// Drops every idle connection and wakes the refill (which checks whether it should stop).
    pub fn clear(&self) {
        for queue in &self.idle {
            queue.borrow_mut().clear();
        }
        self.wake.notify_one();
    }

    /// Number of servers.
    pub fn servers(&self) -> usize {
        self.idle.len()
    }

    /// Idle connections held for `server`.
    pub fn len(&self, server: usize) -> usize {
        self.idle.get(server).map_or(0, |q| q.borrow().len())
    }

    /// True when no connection is pooled for `server`.
    pub fn is_empty(&self, server: usize) -> bool {
        self.len(server) == 0
    }

    /// Resolves when a connection was taken or a key learned (or `every` passed).
    pub async fn changed(&self, every: Duration) {
        let _ = crate::net::time::timeout(every, self.wake.notified()).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    struct Fake(Cell<bool>);
    impl Reusable for Fake {
        fn still_usable(&self) -> bool {
            self.0.get()
        }
    }

    #[test]
    fn take_matches_the_key_and_never_hands_out_twice() {
        let pool: WarmPool<Fake, &str> = WarmPool::new(2, 2, Some("h2"));
        pool.put(0, "h2", Fake(Cell::new(true)));
        pool.put(0, "http/1.1", Fake(Cell::new(true)));
        assert!(pool.take(0, &"h2").is_some());
        assert!(
            pool.take(0, &"h2").is_none(),
            "a connection goes to one client only"
        );
        assert!(pool.take(1, &"h2").is_none(), "pools are per server");
        assert_eq!(pool.len(0), 1);
    }

    #[test]
    fn dead_connections_are_dropped_not_handed_out() {
        let pool: WarmPool<Fake, ()> = WarmPool::new(1, 2, Some(()));
        pool.put(0, (), Fake(Cell::new(false)));
        assert!(pool.take(0, &()).is_none());
        assert!(pool.is_empty(0));
    }

    #[test]
    fn wanted_follows_the_target_for_each_learned_key() {
        let pool: WarmPool<Fake, &str> = WarmPool::new(1, 1, None);
        assert_eq!(pool.wanted(0), None, "no key before the first client");
        pool.learn(0, &"h2");
        assert_eq!(pool.wanted(0), Some("h2"));
        pool.put(0, "h2", Fake(Cell::new(true)));
        assert_eq!(pool.wanted(0), None, "full");
        pool.learn(0, &"http/1.1");
        assert_eq!(
            pool.wanted(0),
            Some("http/1.1"),
            "a second key gets its own"
        );
        pool.put(0, "http/1.1", Fake(Cell::new(true)));
        assert_eq!(pool.wanted(0), None);
    }

    /// Browsers (h2) and Outlook (no ALPN) alternating must not make the pool drop and reopen
    /// its connections: both keys keep theirs.
    #[test]
    fn alternating_keys_do_not_thrash() {
        let pool: WarmPool<Fake, &str> = WarmPool::new(1, 1, None);
        for key in ["h2", "none"] {
            pool.learn(0, &key);
            pool.put(0, key, Fake(Cell::new(true)));
        }
        for round in 0..10 {
            let key = if round % 2 == 0 { "h2" } else { "none" };
            pool.learn(0, &key);
            assert_eq!(pool.expire(), 0, "round {round}: nothing dropped");
            assert!(pool.take(0, &key).is_some(), "round {round}: {key} is warm");
            pool.put(0, key, Fake(Cell::new(true)));
        }
    }

    #[test]
    fn only_the_most_recent_keys_are_kept() {
        let pool: WarmPool<Fake, u32> = WarmPool::new(1, 1, None);
        for key in 0..MAX_KEYS as u32 + 1 {
            pool.learn(0, &key);
            pool.put(0, key, Fake(Cell::new(true)));
        }
        assert_eq!(
            pool.expire(),
            1,
            "the least recently used key's connection goes"
        );
        assert!(pool.take(0, &0).is_none());
        assert!(pool.take(0, &(MAX_KEYS as u32)).is_some());
    }

    #[test]
    fn clear_drops_every_idle_connection() {
        let pool: WarmPool<Fake, ()> = WarmPool::new(2, 2, Some(()));
        pool.put(0, (), Fake(Cell::new(true)));
        pool.put(1, (), Fake(Cell::new(true)));
        pool.clear();
        assert!(pool.is_empty(0) && pool.is_empty(1));
    }
}
