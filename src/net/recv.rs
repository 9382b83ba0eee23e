//! Receiving on a plain TCP socket with one multishot receive into kernel-selected buffers.
//!
//! A [`Receiver`] arms one `IORING_OP_RECV` with `IORING_RECV_MULTISHOT` and buffer selection
//! (`IOSQE_BUFFER_SELECT`, the worker's provided-buffer ring, [`PROVIDED_LEN`] bytes each): the
//! kernel receives into a buffer of its choosing whenever data arrives and posts a completion,
//! with no new submission, no failed first attempt and no poll to arm per read. An idle
//! connection holds no receive buffer at all, only the armed operation.
//!
//! Back-pressure. A multishot receive keeps taking data off the socket (and buffers off the
//! shared ring) while the other side is not written to yet, which would bypass TCP's flow
//! control. So the receiver keeps count: chunks received and not yet handed on are *held*; when
//! [`MAX_HELD`] are held, or a chunk fills its buffer (a burst: more is queued), it cancels the
//! multishot receive and goes on with single-shot reads into a 64 KiB buffer of its own (from
//! `net::buffers`), which read only when asked, so the socket's receive buffer fills and TCP
//! stops the sender. The multishot receive is armed again once a read finds the socket drained.
//! The count is checked each time the connection's task runs, so what arrives while it waits to
//! run (a worker busy with handshakes) is held too: the bound is the ring, whose buffers are
//! allocated once per worker, so holding them costs no memory, only other connections their
//! multishot receives for a while. When the ring has no free buffer (`ENOBUFS`), the kernel ends the
//! multishot receive and the receiver falls back the same way: a connection that hoards buffers
//! slows the others down to single-shot reads, it cannot stall them.
//!
//! Cancellation is lossless: cancelling marks the operation through a compio `CancelToken` and
//! the receiver keeps polling it until its last completion, keeping every chunk posted before
//! the cancel took effect; bytes not yet received stay in the socket for the next read.

use std::collections::VecDeque;
use std::future::{poll_fn, Future};
use std::io;
use std::ops::Deref;
use std::pin::Pin;
use std::task::{Context, Poll};

use compio::buf::{IoBuf, IoVectoredBuf};
use compio::driver::op::{RecvFlags, RecvMulti};
use compio::driver::{BufferRef, SharedFd, ToSharedFd};
use compio::runtime::{CancelToken, Runtime, SubmitMultiManaged, WithCancel};
use futures_util::StreamExt;

use super::buffers::ReadBuf;
use super::TcpStream;

/// Size of each kernel-selected receive buffer. A keep-alive request or a small response (or
/// its TLS record) fits in one.
pub const PROVIDED_LEN: usize = 4 * 1024;
/// Chunks a receiver may hold before it stops its multishot receive (32 KiB at most).
pub const MAX_HELD: usize = 8;
/// Most chunks handed on at once (one vectored write).
pub const MAX_BATCH: usize = 16;

/// Received bytes: a kernel-selected buffer (given back to the ring when dropped) or one of the
/// receiver's own.
pub enum Chunk {
    /// From the provided-buffer ring.
    Provided(BufferRef),
    /// From a single-shot read into an owned buffer.
    Owned(Vec<u8>),
}

impl Deref for Chunk {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match self {
            Chunk::Provided(b) => b,
            Chunk::Owned(v) => v,
        }
    }
}

impl IoBuf for Chunk {
    fn as_init(&self) -> &[u8] {
        self
    }
}

/// Chunks received and not yet written, in arrival order: what one vectored write sends.
#[derive(Default)]
pub struct Batch {
    chunks: Vec<Chunk>,
    bytes: usize,
}

/// Chunk slots a batch keeps while its connection is idle (a keep-alive request needs one).
const IDLE_SLOTS: usize = 2;

impl Batch {
    /// An empty batch; its chunk list grows with the first sends (up to [`MAX_BATCH`]) and
    /// shrinks back to [`IDLE_SLOTS`] when its connection goes idle.
    pub fn new() -> Self {
        Self {
            chunks: Vec::new(),
            bytes: 0,
        }
    }

    /// Frees the room of a past burst (called before an idle wait, when the batch is empty).
    fn shrink_idle(&mut self) {
        if self.chunks.capacity() > IDLE_SLOTS {
            self.chunks.shrink_to(IDLE_SLOTS);
        }
    }

    /// Bytes in the batch.
    pub fn len(&self) -> usize {
        self.bytes
    }

    /// True when the batch holds nothing.
    pub fn is_empty(&self) -> bool {
        self.bytes == 0
    }

    fn push(&mut self, chunk: Chunk) {
        self.bytes += chunk.len();
        self.chunks.push(chunk);
    }

    fn is_full(&self) -> bool {
        self.chunks.len() >= MAX_BATCH
    }

    /// Gives the chunks back (provided buffers return to the ring; owned ones to `bufs`).
    pub fn clear(&mut self, bufs: &mut ReadBuf) {
        for chunk in self.chunks.drain(..) {
            if let Chunk::Owned(v) = chunk {
                bufs.put(v);
            }
        }
        self.bytes = 0;
    }
}

impl IoVectoredBuf for Batch {
    fn iter_slice(&self) -> impl Iterator<Item = &[u8]> {
        self.chunks.iter().map(|c| &**c)
    }
}

/// An armed multishot receive, polled for its chunks.
trait MultiRecv {
    /// The next chunk; `Ready(None)` at EOF, or once the operation ended after `token` was
    /// cancelled. The cancel token is attached (compio's waker extension) only to the poll that
    /// submits the operation, which is where compio registers it: polls in between carry no
    /// extension, and so no allocation.
    fn poll_chunk(
        &mut self,
        cx: &mut Context<'_>,
        token: &CancelToken,
    ) -> Poll<Option<io::Result<BufferRef>>>;
}

/// A multishot receive on one socket, armed again when the kernel ends it (it does after a
/// number of completions, or when it found no free buffer once the error was seen).
struct Multishot<S: std::os::fd::AsFd + 'static> {
    fd: SharedFd<S>,
    rt: Runtime,
    op: Option<SubmitMultiManaged<RecvMulti<SharedFd<S>>, BufferRef>>,
    /// The operation was made and not yet polled (submitted) under the token.
    fresh: bool,
}

impl<S: std::os::fd::AsFd + 'static> MultiRecv for Multishot<S> {
    fn poll_chunk(
        &mut self,
        cx: &mut Context<'_>,
        token: &CancelToken,
    ) -> Poll<Option<io::Result<BufferRef>>> {
        loop {
            let Some(op) = self.op.as_mut() else {
                if token.is_cancelled() {
                    return Poll::Ready(None);
                }
                let pool = self.rt.buffer_pool()?;
                let op = RecvMulti::new(self.fd.clone(), &pool, PROVIDED_LEN, RecvFlags::empty())?;
                self.op = Some(self.rt.submit_multi(op).into_managed(pool));
                self.fresh = true;
                continue;
            };
            let polled = if std::mem::take(&mut self.fresh) {
                let mut next = WithCancel::new(op.next(), token.clone());
                Pin::new(&mut next).poll(cx)
            } else {
                op.poll_next_unpin(cx)
            };
            return match polled {
                Poll::Pending => Poll::Pending,
                Poll::Ready(Some(Ok(Some(buffer)))) if !buffer.is_empty() => {
                    Poll::Ready(Some(Ok(buffer)))
                }
                // An empty final buffer, or none: the peer's FIN.
                Poll::Ready(Some(Ok(_))) => Poll::Ready(None),
                Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e))),
                // Ended after its last result: arm again (unless cancelled).
                Poll::Ready(None) => {
                    self.op = None;
                    continue;
                }
            };
        }
    }
}

/// An armed multishot receive.
type Multi = Box<dyn MultiRecv>;

/// Arms a multishot receive on `socket` into the worker's provided-buffer ring.
fn multishot(socket: &compio::net::TcpStream) -> Multi {
    Box::new(Multishot {
        fd: socket.to_shared_fd(),
        rt: Runtime::current(),
        op: None,
        fresh: false,
    })
}

/// How the receiver reads next.
enum Mode {
    /// No multishot receive armed: the next wait arms one.
    Idle,
    /// A multishot receive is armed (the token cancels it).
    Armed(Multi, CancelToken),
    /// Cancelled; polled (under the same token, so that it is not armed again) until its last
    /// completion.
    Draining(Multi, CancelToken),
    /// After a stop: non-blocking reads into a large pooled buffer until the socket is drained
    /// (then the large buffer goes back to the pool and the receive is armed again).
    Burst,
    /// The ring had no free buffer: one waiting read into a small buffer of its own, then armed
    /// again.
    Starved,
}

/// The end of the data, or how it failed, met while chunks were still held.
enum Pending {
    Eof,
    Error(io::Error),
}

/// The receiving side of one direction of a plain TCP relay (one per socket).
pub struct Receiver<'a> {
    stream: &'a TcpStream,
    mode: Mode,
    held: VecDeque<Chunk>,
    ended: Option<Pending>,
    /// Times the ring had no free buffer for this receiver (it fell back to single-shot reads).
    out_of_buffers: usize,
    /// The own buffers for single-shot reads.
    pub bufs: ReadBuf,
}

impl<'a> Receiver<'a> {
    /// A receiver for `stream`; nothing is armed until the first wait.
    pub fn new(stream: &'a TcpStream) -> Self {
        Self {
            stream,
            mode: Mode::Idle,
            held: VecDeque::new(),
            ended: None,
            out_of_buffers: 0,
            bufs: ReadBuf::new(),
        }
    }

    /// The socket this receiver reads.
    pub fn stream(&self) -> &'a TcpStream {
        self.stream
    }

    /// Waits for data and moves what has arrived into `batch` (at most [`MAX_BATCH`] chunks).
    /// `Ok(false)`: the peer ended its data (and `batch` is empty).
    pub async fn recv(&mut self, batch: &mut Batch) -> io::Result<bool> {
        loop {
            while let Some(chunk) = self.held.pop_front() {
                batch.push(chunk);
                if batch.is_full() {
                    return Ok(true);
                }
            }
            if !batch.is_empty() {
                // Whatever else is ready now goes in the same write.
                poll_fn(|cx| {
                    self.poll_hold(cx);
                    Poll::Ready(())
                })
                .await;
                while let Some(chunk) = self.held.pop_front() {
                    if batch.is_full() {
                        self.held.push_front(chunk);
                        break;
                    }
                    batch.push(chunk);
                }
                return Ok(true);
            }
            match self.ended.take() {
                Some(Pending::Eof) => return Ok(false),
                Some(Pending::Error(e)) => return Err(e),
                None => {}
            }
            match self.mode {
                Mode::Idle => self.arm(),
                Mode::Armed(..) | Mode::Draining(..) => {
                    batch.shrink_idle();
                    if self.held.capacity() > IDLE_SLOTS {
                        self.held.shrink_to(IDLE_SLOTS);
                    }
                    poll_fn(|cx| {
                        self.poll_hold(cx);
                        if self.held.is_empty() && self.ended.is_none() && !self.is_direct() {
                            Poll::Pending
                        } else {
                            Poll::Ready(())
                        }
                    })
                    .await;
                }
                Mode::Burst => {
                    if let Some(more) = self.read_queued(batch)? {
                        return Ok(more);
                    }
                }
                Mode::Starved => return self.read_starved(batch).await,
            }
        }
    }

    fn is_direct(&self) -> bool {
        matches!(self.mode, Mode::Burst | Mode::Starved | Mode::Idle)
    }

    fn arm(&mut self) {
        self.mode = Mode::Armed(multishot(self.stream.compio()), CancelToken::new());
    }

    /// Reads what the socket has queued into a large pooled buffer, without waiting. `None`
    /// when nothing was: the buffer went back to the pool and the receive is to be armed again.
    fn read_queued(&mut self, batch: &mut Batch) -> io::Result<Option<bool>> {
        let mut buf = self.bufs.for_burst();
        match self.stream.try_read(&mut buf) {
            Ok(None) => {
                self.bufs.put(buf);
                self.bufs.release();
                self.mode = Mode::Idle;
                Ok(None)
            }
            Ok(Some(0)) => {
                self.bufs.put(buf);
                Ok(Some(false))
            }
            Ok(Some(_)) => {
                batch.push(Chunk::Owned(buf));
                Ok(Some(true))
            }
            Err(e) => {
                self.bufs.put(buf);
                Err(e)
            }
        }
    }

    /// One waiting read into a small own buffer, for when the ring had none; armed again after.
    async fn read_starved(&mut self, batch: &mut Batch) -> io::Result<bool> {
        let (res, buf) = self.stream.read(self.bufs.for_wait()).await;
        self.mode = Mode::Idle;
        match res {
            Ok(0) => {
                self.bufs.put(buf);
                Ok(false)
            }
            Ok(_) => {
                batch.push(Chunk::Owned(buf));
                Ok(true)
            }
            Err(e) => {
                self.bufs.put(buf);
                Err(e)
            }
        }
    }

    /// Moves every chunk the armed (or draining) receive has posted into `held`, without
    /// waiting; registers the task's waker for more. Cancels the receive when [`MAX_HELD`] are
    /// held, and notes how it ended.
    pub fn poll_hold(&mut self, cx: &mut Context<'_>) {
        loop {
            let polled = match &mut self.mode {
                Mode::Armed(stream, token) | Mode::Draining(stream, token) => {
                    stream.poll_chunk(cx, token)
                }
                Mode::Idle | Mode::Burst | Mode::Starved => return,
            };
            match polled {
                Poll::Pending => return,
                Poll::Ready(Some(Ok(buffer))) => {
                    // A full buffer means more is queued: a burst goes on in large single-shot
                    // reads (one 64 KiB read instead of sixteen completions).
                    let full = buffer.len() >= PROVIDED_LEN;
                    self.held.push_back(Chunk::Provided(buffer));
                    if full || self.held.len() >= MAX_HELD {
                        self.stop();
                    }
                }
                Poll::Ready(Some(Err(e))) => {
                    let draining = matches!(self.mode, Mode::Draining(..));
                    // Its end after our cancel, or the ring out of buffers: the data is still
                    // in the socket, for single-shot reads.
                    let out_of_buffers = e.kind() == io::ErrorKind::ResourceBusy;
                    self.out_of_buffers += usize::from(out_of_buffers);
                    self.mode = if out_of_buffers {
                        Mode::Starved
                    } else {
                        Mode::Burst
                    };
                    let our_cancel = draining && e.raw_os_error() == Some(libc::ECANCELED);
                    if !(out_of_buffers || our_cancel) {
                        self.ended = Some(Pending::Error(e));
                    }
                    return;
                }
                Poll::Ready(None) => {
                    // EOF, or (after a cancel) the end of the operation: a direct read tells.
                    let draining = matches!(self.mode, Mode::Draining(..));
                    self.mode = Mode::Burst;
                    if !draining {
                        self.ended = Some(Pending::Eof);
                    }
                    return;
                }
            }
        }
    }

    /// Cancels the multishot receive; it is drained by the next polls.
    fn stop(&mut self) {
        if !matches!(self.mode, Mode::Armed(..)) {
            return;
        }
        if let Mode::Armed(stream, token) = std::mem::replace(&mut self.mode, Mode::Idle) {
            token.clone().cancel();
            self.mode = Mode::Draining(stream, token);
        }
    }
}

#[cfg(test)]
mod tests;
