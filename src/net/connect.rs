//! Backend connects with a timeout.
//!
//! An in-flight tokio-uring operation is not cancelled when its future is dropped, so a connect
//! raced against a timer would keep its socket until the kernel gives up (two minutes for a
//! black-holed SYN). Instead the socket connects non-blocking and its writability is awaited on
//! tokio's reactor, which is cancel-safe; only then is it handed to io_uring.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

use super::TcpStream;

/// Why a backend connect failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectError {
    /// The server did not answer within the service's `connect_timeout`.
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    /// The kernel reported an error (refused, unreachable, out of ports, ...).
    #[error("{0}")]
    Io(#[from] io::Error),
}

/// Connects to `addr` with `TCP_NODELAY`, failing after `timeout`.
pub async fn connect(addr: SocketAddr, timeout: Duration) -> Result<TcpStream, ConnectError> {
    let socket = Socket::new(
        Domain::for_address(addr),
        Type::STREAM.nonblocking().cloexec(),
        Some(Protocol::TCP),
    )?;
    socket.set_nodelay(true)?;
    let socket = match socket.connect(&addr.into()) {
        Ok(()) => socket,
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {
            // SAFETY: `socket2::Socket` owns its descriptor and keeps it open and unchanged
            // until `into_inner` hands it back or the `AsyncFd` drops it.
            let fd = unsafe { AsyncFd::register_with_interest(socket, Interest::WRITABLE) }
                .map_err(|e| e.into_parts().1)?;
            match tokio::time::timeout(timeout, fd.writable()).await {
                Ok(Ok(_guard)) => {}
                Ok(Err(e)) => return Err(e.into()),
                // Dropping `fd` closes the socket, which aborts the pending SYN.
                Err(_) => return Err(ConnectError::Timeout(timeout)),
            }
            let socket = fd.into_inner();
            if let Some(e) = socket.take_error()? {
                return Err(e.into());
            }
            socket
        }
        Err(e) => return Err(e.into()),
    };
    // io_uring honours O_NONBLOCK: a read or write on a non-blocking socket fails with EAGAIN
    // instead of waiting, which the relay would take for an error. Back to blocking mode, as
    // accepted sockets are.
    socket.set_nonblocking(false)?;
    let stream: std::net::TcpStream = socket.into();
    Ok(TcpStream::from_uring(
        tokio_uring::net::TcpStream::from_std(stream),
    ))
}
