//! Per-core warm pool: idle, already connected (and, for re-encrypt, handshaken) server
//! connections, so a new client's first request does not wait for a server handshake.
//!
//! Owned by one worker (`!Send`, no lock). A pooled connection is handed to exactly one client
//! and never returns to the pool: NTLM authenticates a connection, so two clients must never
//! share one. Connections are kept apart by the key they were opened with (server name and ALPN
//! offer, so a client gets one that negotiated what it would have), are checked before they are
//! handed out (the server may have closed an idle one), and are dropped after
//! [`MAX_IDLE`]. Refilling happens off the connection path, in a task that waits on [`WarmPool::wanted`].

use std::cell::RefCell;
use std::collections::VecDeque;
use std::time::{Duration, Instant};

use tokio::sync::Notify;

/// How long a pooled connection may wait for a client. Servers close idle connections on their
/// own schedule (IIS after 120 s); 30 s keeps well inside that, so few pooled connections die
/// unseen, and a pool refills in one round of handshakes.
pub const MAX_IDLE: Duration = Duration::from_secs(30);

/// A connection that can say, without blocking, whether it can still carry a new client.
pub trait Reusable {
    /// False if the peer closed it or sent something a fresh connection would not have.
    fn still_usable(&self) -> bool;
}

impl Reusable for crate::tls::stream::TlsStream {
    fn still_usable(&self) -> bool {
        self.absorb_pending()
    }
}

impl Reusable for crate::net::TcpStream {
    fn still_usable(&self) -> bool {
        let mut byte = [0u8; 1];
        // SAFETY: a non-blocking peek of one byte into a stack buffer; no read is in flight.
        let n = unsafe {
            libc::recv(
                self.raw_fd(),
                byte.as_mut_ptr().cast(),
                1,
                libc::MSG_PEEK | libc::MSG_DONTWAIT,
            )
        };
        // Nothing to read yet is the only healthy answer: 0 is EOF, data is unsolicited.
        n < 0 && std::io::Error::last_os_error().kind() == std::io::ErrorKind::WouldBlock
    }
}

struct Idle<S, K> {
    stream: S,
    key: K,
    since: Instant,
}

/// Up to `target` idle connections per server, with the key the refill should open them with.
pub struct WarmPool<S, K> {
    idle: Vec<RefCell<VecDeque<Idle<S, K>>>>,
    templates: RefCell<Vec<Option<K>>>,
    target: usize,
    wake: Notify,
}

impl<S: Reusable, K: Clone + PartialEq> WarmPool<S, K> {
    /// A pool for `servers` servers keeping up to `target` connections each; `template` is the
    /// key to open them with before any client has been seen (`None`: wait for the first client).
    pub fn new(servers: usize, target: u32, template: Option<K>) -> Self {
        Self {
            idle: (0..servers)
                .map(|_| RefCell::new(VecDeque::new()))
                .collect(),
            templates: RefCell::new(vec![template; servers]),
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

    /// Tells the pool which key clients of `server` use now; the refill opens the next ones so.
    pub fn learn(&self, server: usize, key: &K) {
        let mut templates = self.templates.borrow_mut();
        if let Some(t) = templates.get_mut(server) {
            if t.as_ref() != Some(key) {
                *t = Some(key.clone());
                self.wake.notify_one();
            }
        }
    }

    /// The key to open one more connection to `server` with, if its pool is short of `target`.
    pub fn wanted(&self, server: usize) -> Option<K> {
        let short = self.idle.get(server)?.borrow().len() < self.target;
        if short {
            self.templates.borrow().get(server).cloned().flatten()
        } else {
            None
        }
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

    /// Drops connections idle for longer than [`MAX_IDLE`], and those opened with a key no
    /// longer in use. Returns how many.
    pub fn expire(&self) -> usize {
        let templates = self.templates.borrow();
        let mut dropped = 0;
        for (server, queue) in self.idle.iter().enumerate() {
            let mut queue = queue.borrow_mut();
            let before = queue.len();
            let template = templates.get(server).cloned().flatten();
            queue.retain(|i| i.since.elapsed() < MAX_IDLE && template.as_ref() == Some(&i.key));
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
        let _ = tokio::time::timeout(every, self.wake.notified()).await;
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
    fn wanted_follows_the_target_and_the_learned_key() {
        let pool: WarmPool<Fake, &str> = WarmPool::new(1, 1, None);
        assert_eq!(pool.wanted(0), None, "no key before the first client");
        pool.learn(0, &"h2");
        assert_eq!(pool.wanted(0), Some("h2"));
        pool.put(0, "h2", Fake(Cell::new(true)));
        assert_eq!(pool.wanted(0), None, "full");
        pool.learn(0, &"http/1.1");
        assert_eq!(
            pool.expire(),
            1,
            "connections opened with an old key are dropped"
        );
        assert_eq!(pool.wanted(0), Some("http/1.1"));
    }
}
