//! The TCP stream the proxy relays through: owned-buffer reads and writes on io_uring.
//!
//! Cancellation: a read or write is an owned-buffer operation on the ring; if its future is
//! dropped before it completes (a timeout, a cancelled task), compio submits an
//! `IORING_OP_ASYNC_CANCEL` for it and keeps the buffer (and the socket) alive until the kernel
//! posts the completion, so no freed memory is ever written. Bytes a cancelled read had already
//! received are lost with it, so the proxy never drops a read of a connection it goes on using:
//! a connection is ended by [`abort_fd`] or `shutdown`, which completes every pending operation
//! with an error or EOF, and its task then finishes normally.

use std::io;
use std::net::Shutdown;
use std::os::fd::{AsRawFd, RawFd};

use compio::buf::BufResult;
use compio::io::{AsyncRead, AsyncWriteExt};

/// A connected TCP socket driven by the worker's io_uring.
///
/// Reads and writes take `&self`, so the two directions of a relay can use one stream at once.
pub struct TcpStream {
    inner: compio::net::TcpStream,
}

impl TcpStream {
    pub(crate) fn from_compio(inner: compio::net::TcpStream) -> Self {
        Self { inner }
    }

    /// The compio socket, for the multishot receiver (`net::recv`).
    pub(crate) fn compio(&self) -> &compio::net::TcpStream {
        &self.inner
    }

    /// Writes every chunk of `batch` with vectored writes, returning it for reuse.
    pub async fn write_batch(
        &self,
        batch: super::recv::Batch,
    ) -> (io::Result<()>, super::recv::Batch) {
        let mut writer = &self.inner;
        let BufResult(res, batch) = writer.write_vectored_all(batch).await;
        (res, batch)
    }

    /// Reads into `buf` from index 0, up to its capacity; on return `buf.len()` is the count read.
    /// `Ok(0)` means the peer closed its sending side.
    pub async fn read(&self, mut buf: Vec<u8>) -> (io::Result<usize>, Vec<u8>) {
        // compio fills the vector's spare capacity; start from an empty one.
        buf.clear();
        let BufResult(res, buf) = (&self.inner).read(buf).await;
        (res, buf)
    }

    /// Writes all of `buf[..buf.len()]`, returning the buffer for reuse.
    pub async fn write_all(&self, buf: Vec<u8>) -> (io::Result<()>, Vec<u8>) {
        let mut writer = &self.inner;
        let BufResult(res, buf) = writer.write_all(buf).await;
        (res, buf)
    }

    /// Shuts down one or both halves. Pending reads complete (with 0) once the read half is shut.
    pub fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        let how = match how {
            Shutdown::Read => libc::SHUT_RD,
            Shutdown::Write => libc::SHUT_WR,
            Shutdown::Both => libc::SHUT_RDWR,
        };
        // SAFETY: a plain syscall on the descriptor this stream keeps open.
        if unsafe { libc::shutdown(self.raw_fd(), how) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Reads what is already queued, without waiting: `Ok(None)` when nothing is (`EAGAIN`),
    /// else as [`TcpStream::read`]. Only for a socket with no read in flight on the ring.
    pub fn try_read(&self, buf: &mut Vec<u8>) -> io::Result<Option<usize>> {
        try_recv(self.raw_fd(), buf)
    }

    /// Closes abortively: see [`abort_fd`].
    pub fn abort(&self) {
        abort_fd(self.raw_fd());
    }

    /// Disables Nagle's algorithm: the proxy forwards what it read at once.
    pub fn set_nodelay(&self) -> io::Result<()> {
        self.inner.set_nodelay(true)
    }

    /// The raw descriptor, for the idle sweeper's `shutdown`.
    pub fn raw_fd(&self) -> RawFd {
        self.inner.as_raw_fd()
    }
}

/// A non-blocking `recv` into `buf` from index 0, up to its capacity: `Ok(None)` on `EAGAIN`,
/// `Ok(Some(0))` on EOF, else the count read (and `buf.len()`).
pub fn try_recv(fd: RawFd, buf: &mut Vec<u8>) -> io::Result<Option<usize>> {
    buf.clear();
    // SAFETY: the kernel writes at most `capacity` bytes into the vector's spare room, and the
    // length is set to what it reported.
    let n = unsafe {
        libc::recv(
            fd,
            buf.as_mut_ptr().cast(),
            buf.capacity(),
            libc::MSG_DONTWAIT,
        )
    };
    if n < 0 {
        let e = io::Error::last_os_error();
        return match e.kind() {
            io::ErrorKind::WouldBlock => Ok(None),
            io::ErrorKind::Interrupted => Ok(None),
            _ => Err(e),
        };
    }
    let n = n as usize;
    // SAFETY: `n` bytes were initialised by recv, and n <= capacity.
    unsafe { buf.set_len(n) };
    Ok(Some(n))
}

/// Closes a TCP connection abortively, the way a crashed process would: the peer gets a RST
/// (never a FIN it could take for the end of the data), and every read or write pending on the
/// socket, on the ring or elsewhere, completes at once with an error.
///
/// `SO_LINGER` 0 makes the final `close` send a RST whatever state the socket is in;
/// `connect(AF_UNSPEC)` disconnects now (the kernel's `tcp_disconnect`: RST, queues purged, waiters
/// woken with `ECONNRESET`/`EPIPE`). Where the kernel refuses the disconnect (`EBUSY`: a thread
/// blocked in the socket), `shutdown` wakes the waiters instead and the close still resets.
/// The descriptor stays open; its owner closes it.
pub fn abort_fd(fd: RawFd) {
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: plain syscalls on a descriptor the caller keeps open; arguments are valid for the
    // calls' duration.
    unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&linger as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        );
        let mut unspec: libc::sockaddr = std::mem::zeroed();
        unspec.sa_family = libc::AF_UNSPEC as libc::sa_family_t;
        let rc = libc::connect(
            fd,
            &unspec,
            std::mem::size_of::<libc::sockaddr>() as libc::socklen_t,
        );
        if rc != 0 {
            libc::shutdown(fd, libc::SHUT_RDWR);
        }
    }
}
