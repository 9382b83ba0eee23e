//! The TCP stream the proxy relays through: owned-buffer reads and writes on io_uring.

use std::io;
use std::net::Shutdown;
use std::os::fd::{AsRawFd, RawFd};

/// A connected TCP socket driven by the worker's io_uring.
///
/// Reads and writes take `&self`, so the two directions of a relay can use one stream at once.
pub struct TcpStream {
    inner: tokio_uring::net::TcpStream,
}

impl TcpStream {
    pub(crate) fn from_uring(inner: tokio_uring::net::TcpStream) -> Self {
        Self { inner }
    }

    /// Reads into `buf` from index 0, up to its capacity; on return `buf.len()` is the count read.
    /// `Ok(0)` means the peer closed its sending side.
    pub async fn read(&self, mut buf: Vec<u8>) -> (io::Result<usize>, Vec<u8>) {
        // tokio-uring fills from index 0 whatever the length; make that explicit.
        buf.clear();
        let (res, buf) = self.inner.read(buf).await;
        (res, buf)
    }

    /// Writes all of `buf[..buf.len()]`, returning the buffer for reuse.
    pub async fn write_all(&self, buf: Vec<u8>) -> (io::Result<()>, Vec<u8>) {
        self.inner.write_all(buf).await
    }

    /// Shuts down one or both halves. Pending reads complete (with 0) once the read half is shut.
    pub fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        self.inner.shutdown(how)
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
