//! What the relay needs from one end of a connection — a plain TCP socket here, or a TLS session
//! over one (`tls::stream`) — so that the bidirectional copy is written once for both.

use std::io;
use std::net::Shutdown;

use super::TcpStream;

/// One end of a relay: a plain TCP socket or a TLS session over one.
///
/// Futures are `!Send` by design: a connection lives on the core that accepted it.
#[allow(async_fn_in_trait)]
pub trait Endpoint {
    /// Reads data into `buf` (from index 0, up to its capacity), waiting for some. `Ok(0)` is a
    /// clean end of data (`FIN`; `close_notify` for TLS); a TLS end without `close_notify` is
    /// `Err(UnexpectedEof)`.
    async fn read(&self, buf: Vec<u8>) -> (io::Result<usize>, Vec<u8>);
    /// Like [`Endpoint::read`] without waiting: `Ok(None)` when nothing is available now.
    fn try_read(&self, buf: &mut Vec<u8>) -> io::Result<Option<usize>>;
    /// Writes all of `buf[..len]`.
    async fn write_all(&self, buf: Vec<u8>) -> (io::Result<()>, Vec<u8>);
    /// Signals end of data to the peer (`FIN`, after `close_notify` for TLS); reads keep working.
    async fn close_write(&self) -> io::Result<()>;
    /// Closes abortively (no `close_notify`; a RST), completing any pending read or write of
    /// either pump.
    fn abort(&self);
}

impl Endpoint for TcpStream {
    async fn read(&self, buf: Vec<u8>) -> (io::Result<usize>, Vec<u8>) {
        TcpStream::read(self, buf).await
    }

    fn try_read(&self, buf: &mut Vec<u8>) -> io::Result<Option<usize>> {
        TcpStream::try_read(self, buf)
    }

    async fn write_all(&self, buf: Vec<u8>) -> (io::Result<()>, Vec<u8>) {
        TcpStream::write_all(self, buf).await
    }

    async fn close_write(&self) -> io::Result<()> {
        self.shutdown(Shutdown::Write)
    }

    fn abort(&self) {
        TcpStream::abort(self);
    }
}

/// Errors a half-close may meet when the peer is already gone; the relay ends normally then.
pub fn is_benign_close_error(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::ENOTCONN) | Some(libc::EPIPE) | Some(libc::ECONNRESET)
    )
}
