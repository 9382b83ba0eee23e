//! What a TLS session needs from the byte stream under it: owned-buffer reads and writes and a
//! shutdown. [`TcpStream`] is the transport in production; [`memory_pipe`] is one without a
//! socket, for unit tests and the in-memory TLS benchmarks (`benches/tls_relay.rs`).
//!
//! The trait is used generically (monomorphised), so the TLS engine over a [`TcpStream`] costs
//! what it did before the trait existed.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::io;
use std::net::Shutdown;
use std::rc::Rc;

use tokio::sync::Notify;

use super::TcpStream;

/// A byte stream driven with owned buffers, in the tokio-uring style.
///
/// Futures are `!Send` by design: a connection lives on the core that accepted it. Reads and
/// writes take `&self`, so one reader and one writer may use the transport at the same time.
#[allow(async_fn_in_trait)]
pub trait Transport {
    /// Reads into `buf` from index 0, up to its capacity; on return `buf.len()` is the count read.
    /// `Ok(0)` means the peer closed its sending side (or this side shut its reading side).
    async fn read(&self, buf: Vec<u8>) -> (io::Result<usize>, Vec<u8>);
    /// Writes all of `buf[..buf.len()]`, returning the buffer for reuse.
    async fn write_all(&self, buf: Vec<u8>) -> (io::Result<()>, Vec<u8>);
    /// Reads what is already queued without waiting, into `buf` from index 0: `Ok(None)` when
    /// nothing is. Only while no [`Transport::read`] is pending.
    fn try_read(&self, buf: &mut Vec<u8>) -> io::Result<Option<usize>>;
    /// Shuts down one or both halves. A pending read completes (with 0) once the read half is shut.
    fn shutdown(&self, how: Shutdown) -> io::Result<()>;
    /// Closes abortively: the peer sees a reset, pending reads and writes fail at once.
    fn abort(&self);
}

impl Transport for TcpStream {
    async fn read(&self, buf: Vec<u8>) -> (io::Result<usize>, Vec<u8>) {
        TcpStream::read(self, buf).await
    }

    async fn write_all(&self, buf: Vec<u8>) -> (io::Result<()>, Vec<u8>) {
        TcpStream::write_all(self, buf).await
    }

    fn try_read(&self, buf: &mut Vec<u8>) -> io::Result<Option<usize>> {
        TcpStream::try_read(self, buf)
    }

    fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        TcpStream::shutdown(self, how)
    }

    fn abort(&self) {
        TcpStream::abort(self);
    }
}

/// A borrowed transport is one too: a client's TLS session runs over the socket its connection
/// task keeps owning, so the task can still abort it after a failed handshake.
impl<T: Transport> Transport for &T {
    async fn read(&self, buf: Vec<u8>) -> (io::Result<usize>, Vec<u8>) {
        T::read(self, buf).await
    }

    async fn write_all(&self, buf: Vec<u8>) -> (io::Result<()>, Vec<u8>) {
        T::write_all(self, buf).await
    }

    fn try_read(&self, buf: &mut Vec<u8>) -> io::Result<Option<usize>> {
        T::try_read(self, buf)
    }

    fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        T::shutdown(self, how)
    }

    fn abort(&self) {
        T::abort(self);
    }
}

/// One direction of a [`memory_pipe`]: a bounded byte queue with its two wake-ups.
struct Lane {
    bytes: RefCell<VecDeque<u8>>,
    capacity: usize,
    /// The writer shut its sending side: the reader gets EOF once the queue is empty.
    fin: Cell<bool>,
    /// The reader shut its receiving side or went away: reads return 0, writes fail with `EPIPE`.
    gone: Cell<bool>,
    /// The writer aborted: the reader gets `ECONNRESET` once, as from a TCP reset.
    reset: Cell<bool>,
    readable: Notify,
    writable: Notify,
}

impl Lane {
    fn new(capacity: usize) -> Rc<Self> {
        Rc::new(Self {
            bytes: RefCell::new(VecDeque::with_capacity(capacity)),
            capacity,
            fin: Cell::new(false),
            gone: Cell::new(false),
            reset: Cell::new(false),
            readable: Notify::new(),
            writable: Notify::new(),
        })
    }
}

/// One end of an in-memory, single-threaded duplex byte stream made by [`memory_pipe`].
///
/// What one end writes, the other reads, in order. Each direction holds at most the capacity
/// given to [`memory_pipe`]; a writer waits for room beyond that, which is the back-pressure a
/// socket's send buffer gives. Dropping an end shuts both of its directions.
pub struct MemoryEnd {
    rx: Rc<Lane>,
    tx: Rc<Lane>,
}

/// Two connected [`MemoryEnd`]s, each direction buffering up to `capacity` bytes (at least 1).
pub fn memory_pipe(capacity: usize) -> (MemoryEnd, MemoryEnd) {
    let capacity = capacity.max(1);
    let (a_to_b, b_to_a) = (Lane::new(capacity), Lane::new(capacity));
    (
        MemoryEnd {
            rx: b_to_a.clone(),
            tx: a_to_b.clone(),
        },
        MemoryEnd {
            rx: a_to_b,
            tx: b_to_a,
        },
    )
}

impl MemoryEnd {
    /// Moves queued bytes into `buf` (from index 0): `None` while nothing is queued and the
    /// writer has not finished.
    fn take_queued(&self, buf: &mut Vec<u8>) -> io::Result<Option<usize>> {
        buf.clear();
        let lane = &self.rx;
        if lane.reset.replace(false) {
            lane.gone.set(true);
            return Err(io::Error::from_raw_os_error(libc::ECONNRESET));
        }
        if lane.gone.get() {
            return Ok(Some(0));
        }
        let mut bytes = lane.bytes.borrow_mut();
        if !bytes.is_empty() {
            let n = bytes.len().min(buf.capacity());
            let (front, back) = bytes.as_slices();
            let from_front = n.min(front.len());
            buf.extend_from_slice(&front[..from_front]);
            buf.extend_from_slice(&back[..n - from_front]);
            bytes.drain(..n);
            drop(bytes);
            lane.writable.notify_waiters();
            return Ok(Some(n));
        }
        Ok(lane.fin.get().then_some(0))
    }
}

impl Transport for MemoryEnd {
    async fn read(&self, mut buf: Vec<u8>) -> (io::Result<usize>, Vec<u8>) {
        loop {
            // Created before the check: `notify_waiters` reaches it even before its first poll.
            let ready = self.rx.readable.notified();
            match self.take_queued(&mut buf) {
                Ok(Some(n)) => return (Ok(n), buf),
                Ok(None) => ready.await,
                Err(e) => return (Err(e), buf),
            }
        }
    }

    fn try_read(&self, buf: &mut Vec<u8>) -> io::Result<Option<usize>> {
        self.take_queued(buf)
    }

    async fn write_all(&self, buf: Vec<u8>) -> (io::Result<()>, Vec<u8>) {
        let lane = &self.tx;
        let mut written = 0;
        while written < buf.len() {
            let room = lane.writable.notified();
            if lane.gone.get() || lane.fin.get() {
                return (Err(io::Error::from_raw_os_error(libc::EPIPE)), buf);
            }
            let n = {
                let mut bytes = lane.bytes.borrow_mut();
                let n = (lane.capacity - bytes.len()).min(buf.len() - written);
                bytes.extend(&buf[written..written + n]);
                n
            };
            if n == 0 {
                room.await;
                continue;
            }
            written += n;
            lane.readable.notify_waiters();
        }
        (Ok(()), buf)
    }

    fn abort(&self) {
        self.tx.reset.set(true);
        let _ = Transport::shutdown(self, Shutdown::Both);
    }

    fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        if matches!(how, Shutdown::Write | Shutdown::Both) {
            self.tx.fin.set(true);
            self.tx.readable.notify_waiters();
            self.tx.writable.notify_waiters();
        }
        if matches!(how, Shutdown::Read | Shutdown::Both) {
            self.rx.gone.set(true);
            self.rx.readable.notify_waiters();
            self.rx.writable.notify_waiters();
        }
        Ok(())
    }
}

impl Drop for MemoryEnd {
    fn drop(&mut self) {
        let _ = Transport::shutdown(self, Shutdown::Both);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime")
            .block_on(f)
    }

    #[test]
    fn bytes_arrive_in_order_through_a_small_pipe() {
        let (a, b) = memory_pipe(7);
        let sent: Vec<u8> = (0..1000u32).map(|i| i as u8).collect();
        let got = block_on(async {
            let write = async {
                let (res, _) = a.write_all(sent.clone()).await;
                res.expect("write");
                a.shutdown(Shutdown::Write).expect("shutdown");
            };
            let read = async {
                let mut got = Vec::new();
                let mut buf = Vec::with_capacity(5);
                loop {
                    let (res, b2) = b.read(buf).await;
                    buf = b2;
                    match res.expect("read") {
                        0 => return got,
                        n => got.extend_from_slice(&buf[..n]),
                    }
                }
            };
            tokio::join!(write, read).1
        });
        assert_eq!(got, sent);
    }

    #[test]
    fn shutting_the_read_side_completes_a_pending_read_and_fails_the_writer() {
        let (a, b) = memory_pipe(16);
        block_on(async {
            let read = async { b.read(Vec::with_capacity(8)).await.0.expect("read") };
            let shut = async {
                tokio::task::yield_now().await;
                b.shutdown(Shutdown::Read).expect("shutdown");
            };
            assert_eq!(tokio::join!(read, shut).0, 0);
            let (res, _) = a.write_all(vec![1]).await;
            assert_eq!(res.unwrap_err().raw_os_error(), Some(libc::EPIPE));
        });
    }
}
