//! Backend connects with a timeout.
//!
//! The socket is made (close-on-exec, `TCP_NODELAY`) with socket2 and connected by an
//! `IORING_OP_CONNECT` on the worker's ring. When the timeout fires first, the connect future is
//! dropped: compio cancels the operation on the ring and keeps the socket until the kernel posts
//! the cancellation, then closes it, which abandons the pending SYN at once (no socket is left
//! waiting two minutes for a black-holed server).

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};

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
        Type::STREAM.cloexec(),
        Some(Protocol::TCP),
    )?;
    socket.set_nodelay(true)?;
    let socket = compio::net::TcpSocket::from_std_stream(socket.into())?;
    match super::time::timeout(timeout, socket.connect(addr)).await {
        Ok(Ok(stream)) => Ok(TcpStream::from_compio(stream)),
        Ok(Err(e)) => Err(e.into()),
        Err(_) => Err(ConnectError::Timeout(timeout)),
    }
}
