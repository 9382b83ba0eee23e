//! The admin listener's threads: one accepts, and each connection is served on its own short-lived
//! thread, at most [`MAX_CONNECTIONS`] at a time (beyond that the answer is 503 at once). One
//! request per connection (`Connection: close`); every read and write is bounded in time, so a
//! slow or silent client holds a handler for [`REQUEST_DEADLINE`] at most, and never the others.
//!
//! This is plain blocking std networking on purpose: the admin port sees a scrape every few
//! seconds and an operator now and then, and must keep working when the workers are saturated.

use std::collections::HashMap;
use std::io::{self, Read};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use super::api;
use super::control::Control;
use super::http::read_request;

/// The most connections served at once. Scrapers and operators need a handful; the bound keeps a
/// flood of connections from spawning a thread each.
pub const MAX_CONNECTIONS: usize = 16;

/// How long a client may take to send its whole request.
pub const REQUEST_DEADLINE: Duration = Duration::from_secs(10);

/// The longest any single read or write may block.
pub const IO_TIMEOUT: Duration = Duration::from_secs(5);

/// After answering, how long to read and discard what the client still sends, so that closing
/// with unread bytes does not reset the connection before the client read the answer.
const LINGER: Duration = Duration::from_secs(1);

/// The most bytes discarded while lingering.
const LINGER_BYTES: usize = 256 * 1024;

/// How long the acceptor pauses after a failed `accept` (EMFILE ...), so that it does not spin.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);

/// Stack size of handler threads: a request is at most 72 KiB and the work is shallow.
const HANDLER_STACK: usize = 256 * 1024;

/// A running admin listener. [`AdminServer::stop`] (or dropping it) stops accepting, closes open
/// connections and joins every thread.
pub struct AdminServer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    /// A second handle on the listening socket, to wake the acceptor with `shutdown`.
    listener: TcpListener,
    acceptor: Option<JoinHandle<()>>,
}

/// What the acceptor and the handlers share.
struct Shared {
    stopping: AtomicBool,
    token: Option<String>,
    control: Arc<dyn Control>,
    /// Connections being served, by id: a clone of each stream, so that stopping can shut them
    /// down and wake their handlers at once.
    open: Mutex<HashMap<u64, TcpStream>>,
}

/// Starts serving the admin API on `listener` (already bound) in a new thread. With `token`, every
/// request needs `Authorization: Bearer <token>`.
pub fn spawn(
    listener: TcpListener,
    token: Option<String>,
    control: Arc<dyn Control>,
) -> io::Result<AdminServer> {
    listener.set_nonblocking(false)?;
    let addr = listener.local_addr()?;
    let waker = listener.try_clone()?;
    let shared = Arc::new(Shared {
        stopping: AtomicBool::new(false),
        token,
        control,
        open: Mutex::new(HashMap::new()),
    });
    let acceptor = {
        let shared = Arc::clone(&shared);
        thread::Builder::new()
            .name("admin".into())
            .spawn(move || accept_loop(&listener, &shared))?
    };
    tracing::debug!(%addr, "admin listener started");
    Ok(AdminServer {
        addr,
        shared,
        listener: waker,
        acceptor: Some(acceptor),
    })
}

impl AdminServer {
    /// The address it listens on (useful after binding port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting, shuts down the connections being served and joins every admin thread.
    /// Returns once they are gone: promptly, unless a handler is inside a [`Control`] call.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        let Some(acceptor) = self.acceptor.take() else {
            return;
        };
        self.shared.stopping.store(true, Ordering::SeqCst);
        // On Linux, shutting down a listening socket makes a blocked `accept` return EINVAL.
        // SAFETY: the fd belongs to `self.listener`, which is alive for the whole call.
        let rc = unsafe { libc::shutdown(self.listener.as_raw_fd(), libc::SHUT_RDWR) };
        if rc != 0 {
            // Fall back to waking it with a connection of our own.
            let _ = TcpStream::connect_timeout(&wake_addr(self.addr), IO_TIMEOUT);
        }
        if acceptor.join().is_err() {
            tracing::error!("admin acceptor thread panicked");
        }
        tracing::debug!(addr = %self.addr, "admin listener stopped");
    }
}

impl Drop for AdminServer {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Where to connect to reach a listener bound to `addr` (an unspecified address means loopback).
fn wake_addr(addr: SocketAddr) -> SocketAddr {
    let mut a = addr;
    if a.ip().is_unspecified() {
        a.set_ip(match a {
            SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
            SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        });
    }
    a
}

fn accept_loop(listener: &TcpListener, shared: &Arc<Shared>) {
    let mut handlers: Vec<JoinHandle<()>> = Vec::new();
    let mut next_id = 0u64;
    loop {
        let accepted = listener.accept();
        if shared.stopping.load(Ordering::SeqCst) {
            break;
        }
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) if e.kind() == io::ErrorKind::ConnectionAborted => continue,
            Err(e) => {
                tracing::warn!(error = %e, "admin listener: accept failed");
                thread::sleep(ACCEPT_ERROR_PAUSE);
                continue;
            }
        };
        handlers.retain(|h| !h.is_finished());
        if handlers.len() >= MAX_CONNECTIONS {
            refuse(stream, "too many admin connections at once; try again");
            continue;
        }
        next_id += 1;
        match start_handler(next_id, stream, shared) {
            Ok(h) => handlers.push(h),
            Err(e) => tracing::warn!(error = %e, "admin listener: cannot start a handler"),
        }
    }
    // Wake every handler blocked on its client, then wait for them.
    for (_, stream) in lock(&shared.open).drain() {
        let _ = stream.shutdown(Shutdown::Both);
    }
    for h in handlers {
        if h.join().is_err() {
            tracing::error!("admin handler thread panicked");
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // The map stays consistent whatever a panicking holder did: entries are only added or removed.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn start_handler(id: u64, stream: TcpStream, shared: &Arc<Shared>) -> io::Result<JoinHandle<()>> {
    let registered = stream.try_clone()?;
    lock(&shared.open).insert(id, registered);
    let shared_for_thread = Arc::clone(shared);
    let spawned = thread::Builder::new()
        .name("admin-conn".into())
        .stack_size(HANDLER_STACK)
        .spawn(move || {
            // Unregistered on the way out, even if a `Control` call panics.
            let _registered = Registered(id, &shared_for_thread);
            serve(stream, &shared_for_thread);
        });
    match spawned {
        Ok(h) => Ok(h),
        Err(e) => {
            if let Some(stream) = lock(&shared.open).remove(&id) {
                refuse(
                    stream,
                    "the admin server cannot start a thread now; try again",
                );
            }
            Err(e)
        }
    }
}

/// Removes a connection from [`Shared::open`] when its handler ends.
struct Registered<'a>(u64, &'a Shared);

impl Drop for Registered<'_> {
    fn drop(&mut self) {
        lock(&self.1.open).remove(&self.0);
    }
}

/// Answers 503 without reading the request, from the acceptor: the write fits in the socket's
/// send buffer, and the timeout bounds it if it does not.
fn refuse(mut stream: TcpStream, why: &str) {
    let _ = stream.set_write_timeout(Some(Duration::from_millis(200)));
    let _ = api::error(503, why, &[]).write_to(&mut stream, false);
    // Discard what already arrived so that the close is a FIN, not a reset that could destroy
    // the answer in flight.
    let _ = stream.set_nonblocking(true);
    let mut sink = [0u8; 4096];
    for _ in 0..16 {
        if !matches!(stream.read(&mut sink), Ok(n) if n > 0) {
            break;
        }
    }
    let _ = stream.shutdown(Shutdown::Write);
}

/// Serves one request on `stream` and closes it.
fn serve(mut stream: TcpStream, shared: &Shared) {
    let peer = stream.peer_addr().ok();
    let _ = stream.set_write_timeout(Some(IO_TIMEOUT));
    let deadline = Instant::now() + REQUEST_DEADLINE;
    // `Read` is implemented for `&TcpStream`, so the reader and the timeout setter can share it.
    let reader = &stream;
    let mut set_timeout = |left: Duration| reader.set_read_timeout(Some(left.min(IO_TIMEOUT)));
    let (response, head_only) = match read_request(&mut &stream, deadline, &mut set_timeout) {
        Ok(request) => {
            let head_only = request.method == "HEAD";
            let token = shared.token.as_deref();
            (api::handle(&request, token, &*shared.control), head_only)
        }
        Err(e) => match e.status() {
            Some(status) => {
                tracing::debug!(?peer, error = %e, "admin: bad request");
                (api::error(status, &e.to_string(), &[]), false)
            }
            None => {
                tracing::debug!(?peer, error = %e, "admin: connection dropped");
                return;
            }
        },
    };
    if let Err(e) = response.write_to(&mut stream, head_only) {
        tracing::debug!(?peer, error = %e, "admin: writing the answer failed");
        return;
    }
    linger(&mut stream);
}

/// Half-closes, then reads and discards until the client closes (or [`LINGER`] passes), so that
/// unread request bytes do not turn the close into a reset that destroys the answer in flight.
fn linger(stream: &mut TcpStream) {
    let _ = stream.shutdown(Shutdown::Write);
    let deadline = Instant::now() + LINGER;
    let mut sink = [0u8; 4096];
    let mut discarded = 0;
    while discarded < LINGER_BYTES {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || stream.set_read_timeout(Some(left)).is_err() {
            break;
        }
        match stream.read(&mut sink) {
            Ok(0) | Err(_) => break,
            Ok(n) => discarded += n,
        }
    }
}
