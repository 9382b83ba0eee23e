//! Per-worker `SO_REUSEPORT` listeners.
//!
//! Every worker binds its own socket to each service address; the kernel spreads new connections
//! over the group. Stopping one listener (`shutdown(SHUT_RD)`) wakes its pending io_uring accept with
//! an error, which is how a worker stops accepting without cancelling an in-flight operation.

use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, RawFd};

use socket2::{Domain, Protocol, Socket, Type};

use super::TcpStream;

/// A bound, listening `SO_REUSEPORT` socket owned by one worker.
pub struct Listener {
    inner: tokio_uring::net::TcpListener,
    addr: SocketAddr,
}

impl Listener {
    /// Binds `addr` with `SO_REUSEADDR` and `SO_REUSEPORT` and listens with `backlog`.
    ///
    /// Must be called on a worker thread (inside its runtime).
    pub fn bind(addr: SocketAddr, backlog: u32) -> io::Result<Self> {
        let socket = Socket::new(
            Domain::for_address(addr),
            Type::STREAM.cloexec(),
            Some(Protocol::TCP),
        )?;
        socket.set_reuse_address(true)?;
        socket.set_reuse_port(true)?;
        socket.bind(&addr.into())?;
        let backlog = i32::try_from(backlog).unwrap_or(i32::MAX);
        socket.listen(backlog)?;
        let std_listener: std::net::TcpListener = socket.into();
        Ok(Self {
            inner: tokio_uring::net::TcpListener::from_std(std_listener),
            addr,
        })
    }

    /// The address this listener was bound to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Accepts one connection, with `TCP_NODELAY` set on it.
    pub async fn accept(&self) -> io::Result<(TcpStream, SocketAddr)> {
        let (stream, peer) = self.inner.accept().await?;
        let stream = TcpStream::from_uring(stream);
        stream.set_nodelay()?;
        Ok((stream, peer))
    }

    /// A handle that can stop this listener from another task of the same worker.
    pub fn stopper(&self) -> ListenerStopper {
        ListenerStopper {
            fd: self.inner.as_raw_fd(),
        }
    }
}

/// Stops a [`Listener`]: its pending and future accepts fail, and new connections are refused once
/// every listener of the `SO_REUSEPORT` group is stopped.
///
/// Valid only while the listener is alive; the accept loop that owns the listener exits (and closes
/// it) after it sees the stop, and the stopper is dropped with it.
#[derive(Debug, Clone, Copy)]
pub struct ListenerStopper {
    fd: RawFd,
}

impl ListenerStopper {
    /// `shutdown(SHUT_RD)` on the listening socket: the kernel moves it out of `LISTEN`, which wakes
    /// the in-flight accept with `EINVAL`.
    pub fn stop(&self) {
        // SAFETY: plain syscall on an fd the owning listener keeps open; errors are harmless here.
        unsafe { libc::shutdown(self.fd, libc::SHUT_RD) };
    }
}
