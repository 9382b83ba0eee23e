//! Per-core pools of large I/O buffers, so that memory follows traffic rather than history.
//!
//! A connection reads into a small buffer of its own while it waits for data ([`SMALL`]); when a
//! read fills that, more is probably queued, and it borrows a [`LARGE`] buffer from its core's
//! pool for as long as non-blocking reads keep finding data. The first read that would block
//! hands the large buffer back before the connection waits again. So an idle connection holds
//! only small buffers whatever bursts it carried before, a busy one holds at most one large buffer
//! per direction, and steady traffic allocates nothing: buffers cycle through the pool.
//!
//! The pool is a thread-local stack (workers are pinned threads; a buffer never crosses cores)
//! and keeps at most [`POOL_MAX`] idle buffers, so a burst of many busy connections does not
//! stay resident after it ends.

use std::cell::RefCell;

/// The buffer a connection waits with, per direction: an idle connection costs this much. 2 KiB
/// holds a typical request or small response whole; measured with 2,000 idle passthrough
/// connections, 4 KiB cost 11.3 KiB of RSS per connection and 2 KiB 7.2 KiB.
pub const SMALL: usize = 2 * 1024;
/// The buffer of a busy direction: 64 KiB is the loopback MTU and four full TLS records; larger
/// buffers did not move more bytes per syscall.
pub const LARGE: usize = 64 * 1024;
/// Most idle large buffers one core keeps (4 MiB).
pub const POOL_MAX: usize = 64;

thread_local! {
    static LARGE_POOL: RefCell<Vec<Vec<u8>>> = const { RefCell::new(Vec::new()) };
}

/// An empty buffer of capacity [`LARGE`] from this core's pool (allocated when the pool is empty).
pub fn take_large() -> Vec<u8> {
    LARGE_POOL
        .with(|pool| pool.borrow_mut().pop())
        .unwrap_or_else(|| Vec::with_capacity(LARGE))
}

/// Gives a buffer back: one of capacity [`LARGE`] goes to the pool (while it has room), any other
/// is freed.
pub fn give_back(mut buf: Vec<u8>) {
    if buf.capacity() != LARGE {
        return;
    }
    buf.clear();
    LARGE_POOL.with(|pool| {
        let mut pool = pool.borrow_mut();
        if pool.len() < POOL_MAX {
            pool.push(buf);
        }
    });
}

/// Large buffers idle in this core's pool (for tests and memory accounting).
pub fn pooled() -> usize {
    LARGE_POOL.with(|pool| pool.borrow().len())
}

/// The read buffers of one direction of a connection: its own small one (allocated at its first
/// wait), and a large one borrowed from the pool while data flows.
///
/// Take [`ReadBuf::for_wait`]'s buffer for a read that waits for data and
/// [`ReadBuf::for_burst`]'s for reading what is already queued; give either back with
/// [`ReadBuf::put`]. Waiting returns the large buffer to the pool first, so an idle connection never
/// holds one, and neither call allocates once the pool is warm.
#[derive(Debug)]
pub struct ReadBuf {
    small: Option<Vec<u8>>,
    large: Option<Vec<u8>>,
}

impl Default for ReadBuf {
    fn default() -> Self {
        Self::new()
    }
}

impl ReadBuf {
    /// No buffer yet: the small one is allocated by the first [`ReadBuf::for_wait`], the large
    /// one comes from the pool.
    pub fn new() -> Self {
        Self {
            small: None,
            large: None,
        }
    }

    /// The small buffer, to wait for data with; a large one held goes back to the pool first.
    pub fn for_wait(&mut self) -> Vec<u8> {
        if let Some(large) = self.large.take() {
            give_back(large);
        }
        self.small
            .take()
            .unwrap_or_else(|| Vec::with_capacity(SMALL))
    }

    /// A large buffer, to read what is already queued: the one held, else one from the pool.
    pub fn for_burst(&mut self) -> Vec<u8> {
        self.large.take().unwrap_or_else(take_large)
    }

    /// Gives back a buffer taken with [`ReadBuf::for_wait`] or [`ReadBuf::for_burst`].
    pub fn put(&mut self, buf: Vec<u8>) {
        if buf.capacity() >= LARGE {
            self.large = Some(buf);
        } else {
            self.small = Some(buf);
        }
    }

    /// Gives the large buffer back to the pool and frees the small one: for a connection that
    /// waits without buffers of its own (a multishot receive).
    pub fn release(&mut self) {
        if let Some(large) = self.large.take() {
            give_back(large);
        }
        self.small = None;
    }

    /// True while a large buffer is held (taken from the pool and not yet given back).
    pub fn holds_large(&self) -> bool {
        self.large.is_some()
    }
}

impl Drop for ReadBuf {
    fn drop(&mut self) {
        if let Some(large) = self.large.take() {
            give_back(large);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn large_buffers_cycle_through_the_pool() {
        let before = pooled();
        let mut a = ReadBuf::new();
        let big = a.for_burst();
        assert_eq!(big.capacity(), LARGE);
        a.put(big);
        assert!(a.holds_large());
        let small = a.for_wait();
        assert!(small.capacity() < LARGE);
        assert!(!a.holds_large());
        assert_eq!(
            pooled(),
            before + 1,
            "the large buffer went back before the wait"
        );
        a.put(small);
        let mut b = ReadBuf::new();
        let big = b.for_burst();
        assert_eq!(pooled(), before, "and was reused");
        b.put(big);
        drop(b);
        assert_eq!(pooled(), before + 1, "dropping a holder returns its buffer");
    }

    #[test]
    fn the_pool_is_bounded_and_odd_sizes_are_freed() {
        for _ in 0..POOL_MAX + 10 {
            give_back(Vec::with_capacity(LARGE));
        }
        assert_eq!(pooled(), POOL_MAX);
        give_back(Vec::with_capacity(LARGE * 2));
        assert_eq!(pooled(), POOL_MAX);
    }
}
