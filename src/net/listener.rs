//! Per-worker `SO_REUSEPORT` listeners.
//!
//! Every worker binds its own socket to each service address; the kernel spreads new connections
//! over the group. Stopping one listener (`shutdown(SHUT_RD)`) wakes its pending io_uring accept with
//! an error, which is how a worker stops accepting without cancelling an in-flight operation.
//!
//! Accepts are single-shot (`IORING_OP_ACCEPT`, which compio submits with `POLL_FIRST` once the
//! backlog ran dry), not multishot: a multishot accept keeps taking connections off the backlog
//! whatever the proxy does, so at `max_connections` it would hold sockets it must not serve —
//! and cancelling it races with connections it has already taken. One accept per connection
//! lets the accept loop stop at a limit and leave clients in the kernel's backlog, for one
//! submission per connection (a TLS handshake costs several hundred times more).

use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, RawFd};

use socket2::{Domain, Protocol, Socket, Type};

use super::TcpStream;

/// A bound, listening `SO_REUSEPORT` socket owned by one worker.
pub struct Listener {
    inner: compio::net::TcpListener,
    addr: SocketAddr,
}

impl Listener {
    /// Binds `addr` with `SO_REUSEADDR` and `SO_REUSEPORT` and listens with `backlog`.
    ///
    /// Must be called on a worker thread (inside its runtime).
    pub fn bind(addr: SocketAddr, backlog: u32) -> io::Result<Self> {
        Self::from_std(bind_std(addr, backlog)?)
    }

    /// Takes over a socket made by [`bind_group`]; must be called on the worker's thread.
    pub fn from_std(listener: std::net::TcpListener) -> io::Result<Self> {
        let addr = listener
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
        Ok(Self {
            inner: compio::net::TcpListener::from_std(listener)?,
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
        let stream = TcpStream::from_compio(stream);
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

/// A listening `SO_REUSEPORT` socket (blocking, close-on-exec).
pub fn bind_std(addr: SocketAddr, backlog: u32) -> io::Result<std::net::TcpListener> {
    let socket = Socket::new(
        Domain::for_address(addr),
        Type::STREAM.cloexec(),
        Some(Protocol::TCP),
    )?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.bind(&addr.into())?;
    socket.listen(i32::try_from(backlog).unwrap_or(i32::MAX))?;
    Ok(socket.into())
}

/// One listening socket per worker for `addr`, made in worker order: in the kernel's
/// `SO_REUSEPORT` group, socket *i* (the *i*-th to call `listen`) belongs to worker *i*, which is
/// what [`attach_client_ip_steering`] relies on.
pub fn bind_group(
    addr: SocketAddr,
    backlog: u32,
    workers: usize,
) -> io::Result<Vec<std::net::TcpListener>> {
    (0..workers).map(|_| bind_std(addr, backlog)).collect()
}

/// Multiplier of the steering hash (Knuth's golden-ratio constant): spreads nearby IPs apart.
pub const STEER_MULTIPLIER: u32 = 0x9E37_79B1;

/// The worker the steering program sends client `ip` to, out of `workers`: the same formula as
/// the cBPF program, `(ip * 0x9E3779B1 >> 16) % workers`, for tests and for sharding by core.
pub fn steered_worker(ip: std::net::Ipv4Addr, workers: u32) -> u32 {
    (u32::from(ip).wrapping_mul(STEER_MULTIPLIER) >> 16) % workers.max(1)
}

/// Attaches a classic BPF program to the `SO_REUSEPORT` group of `member` that sends every
/// connection from one client IPv4 to the same socket (worker), so a client's connections meet
/// the same per-core caches and persistence shard. Every socket of the group must already listen.
/// IPv4 only: the program reads the IPv4 source address.
pub fn attach_client_ip_steering(member: &std::net::TcpListener, workers: u32) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    // Classic BPF opcodes (linux/filter.h): BPF_LD | BPF_W | BPF_ABS, where LD and W are 0.
    const LD_W_ABS: u16 = 0x20;
    const ALU_MUL_K: u16 = 0x04 | 0x20;
    const ALU_RSH_K: u16 = 0x04 | 0x70;
    const ALU_MOD_K: u16 = 0x04 | 0x90;
    const RET_A: u16 = 0x06 | 0x10;
    /// `SKF_NET_OFF + 12`: the IPv4 source address, counted from the network header.
    const SRC_ADDR: u32 = (-0x10_0000i32 + 12) as u32;
    let insn = |code: u16, k: u32| libc::sock_filter {
        code,
        jt: 0,
        jf: 0,
        k,
    };
    let mut program = [
        insn(LD_W_ABS, SRC_ADDR),
        insn(ALU_MUL_K, STEER_MULTIPLIER),
        insn(ALU_RSH_K, 16),
        insn(ALU_MOD_K, workers.max(1)),
        insn(RET_A, 0),
    ];
    let fprog = libc::sock_fprog {
        len: program.len() as u16,
        filter: program.as_mut_ptr(),
    };
    // SAFETY: `fprog` points at `program`, alive for the call; the kernel copies it.
    let rc = unsafe {
        libc::setsockopt(
            member.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_ATTACH_REUSEPORT_CBPF,
            (&fprog as *const libc::sock_fprog).cast(),
            std::mem::size_of::<libc::sock_fprog>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
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
