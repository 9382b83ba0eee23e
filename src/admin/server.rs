//! The admin listener: one thread runs an event loop (`poll(2)`) that accepts, reads each request
//! without blocking, checks who may send it as soon as its headers are in, and writes the answers;
//! a few handler threads run the routes (a reload takes a while).
//!
//! Slow clients cost a table entry each, never a thread, and cannot starve a scraper: the table
//! holds [`MAX_CONNECTIONS`] connections, at most [`MAX_PER_CLIENT`] per client address, and when
//! it is full the connection that has been sending its request the longest is dropped to make
//! room, so a new `/metrics` request always gets in and is answered in a few milliseconds,
//! whatever a crowd of silent connections does. A request's head must arrive within
//! [`HEAD_DEADLINE`](super::conn::HEAD_DEADLINE) and the whole request within
//! [`REQUEST_DEADLINE`](super::conn::REQUEST_DEADLINE).
//!
//! Plain std networking on purpose: the admin port sees a scrape every few seconds and an
//! operator now and then, and must keep working when the workers are saturated.

use std::io::{self, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use super::api;
use super::conn::{Conn, Next};
use super::control::Control;
use super::http::{Request, Response};
use super::policy::Policy;

/// Connections held at once (requests being read, handled or answered).
pub const MAX_CONNECTIONS: usize = 256;
/// Of those, the most from one client address.
pub const MAX_PER_CLIENT: usize = 32;
/// Threads that run routes.
const HANDLERS: usize = 4;
/// Requests waiting for a handler thread; beyond, the answer is 503 at once.
const QUEUED: usize = 64;
/// The loop wakes at least this often (to notice a stop).
const TICK: Duration = Duration::from_millis(100);
/// Stack size of handler threads: the work is shallow.
const HANDLER_STACK: usize = 256 * 1024;

/// A running admin listener. [`AdminServer::stop`] (or dropping it) stops accepting, closes open
/// connections and joins every thread.
pub struct AdminServer {
    addr: SocketAddr,
    stopping: Arc<AtomicBool>,
    waker: UnixStream,
    thread: Option<JoinHandle<()>>,
}

/// A request for a handler thread: the connection's slot, its generation, what to answer.
type Job = (usize, u64, Request, bool);
/// A handler's answer for a slot and generation.
type Done = (usize, u64, Response, bool);

/// Starts serving the admin API on `listener` (already bound) in new threads. With `token`, every
/// request needs `Authorization: Bearer <token>`; see [`Policy`] for what else is checked.
pub fn spawn(
    listener: TcpListener,
    token: Option<String>,
    control: Arc<dyn Control>,
) -> io::Result<AdminServer> {
    listener.set_nonblocking(true)?;
    let addr = listener.local_addr()?;
    let (waker, wake) = UnixStream::pair()?;
    waker.set_nonblocking(true)?;
    wake.set_nonblocking(true)?;
    let stopping = Arc::new(AtomicBool::new(false));
    let policy = Policy::new(token, addr);
    let event_loop = {
        let stopping = stopping.clone();
        let waker = waker.try_clone()?;
        thread::Builder::new()
            .name("admin".into())
            .spawn(move || Loop::new(listener, wake, waker, policy, control).run(&stopping))?
    };
    tracing::debug!(%addr, "admin listener started");
    Ok(AdminServer {
        addr,
        stopping,
        waker,
        thread: Some(event_loop),
    })
}

impl AdminServer {
    /// The address it listens on (useful after binding port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting, closes every connection and joins every admin thread. Returns promptly,
    /// unless a handler is inside a [`Control`] call.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        let Some(thread) = self.thread.take() else {
            return;
        };
        self.stopping.store(true, Ordering::SeqCst);
        let _ = (&self.waker).write(&[1]);
        if thread.join().is_err() {
            tracing::error!("admin event loop panicked");
        }
        tracing::debug!(addr = %self.addr, "admin listener stopped");
    }
}

impl Drop for AdminServer {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// The event loop's state.
struct Loop {
    listener: TcpListener,
    wake: UnixStream,
    policy: Policy,
    conns: Vec<Option<(u64, Conn)>>,
    generation: u64,
    jobs: Option<SyncSender<Job>>,
    done: Receiver<Done>,
    handlers: Vec<JoinHandle<()>>,
}

impl Loop {
    fn new(
        listener: TcpListener,
        wake: UnixStream,
        waker: UnixStream,
        policy: Policy,
        control: Arc<dyn Control>,
    ) -> Self {
        let (jobs, queue) = mpsc::sync_channel::<Job>(QUEUED);
        let (finished, done) = mpsc::channel::<Done>();
        let queue = Arc::new(Mutex::new(queue));
        let handlers = (0..HANDLERS)
            .filter_map(|i| {
                let queue = queue.clone();
                let finished = finished.clone();
                let control = control.clone();
                let waker = waker.try_clone().ok()?;
                thread::Builder::new()
                    .name(format!("admin-h{i}"))
                    .stack_size(HANDLER_STACK)
                    .spawn(move || handle_jobs(&queue, &finished, &waker, &*control))
                    .map_err(|e| tracing::warn!(error = %e, "admin: cannot start a handler thread"))
                    .ok()
            })
            .collect();
        Self {
            listener,
            wake,
            policy,
            conns: Vec::new(),
            generation: 0,
            jobs: Some(jobs),
            done,
            handlers,
        }
    }

    fn run(mut self, stopping: &AtomicBool) {
        let mut fds: Vec<libc::pollfd> = Vec::new();
        let mut slots: Vec<usize> = Vec::new();
        while !stopping.load(Ordering::SeqCst) {
            self.poll(&mut fds, &mut slots);
            let now = Instant::now();
            self.drain_wake();
            self.collect_answers();
            if fds[0].revents != 0 {
                self.accept_all();
            }
            for (pfd, &slot) in fds[2..].iter().zip(&slots) {
                let due = self.conns[slot]
                    .as_ref()
                    .and_then(|(_, c)| c.deadline())
                    .is_some_and(|d| now >= d);
                if pfd.revents != 0 || due {
                    self.drive(slot, now);
                }
            }
            self.conns.iter_mut().for_each(|entry| {
                if entry
                    .as_ref()
                    .is_some_and(|(_, c)| matches!(c.state, super::conn::State::Done))
                {
                    *entry = None;
                }
            });
        }
        // Handler threads end when the queue closes; answers in flight are dropped.
        self.jobs = None;
        self.conns.clear();
        for h in self.handlers.drain(..) {
            if h.join().is_err() {
                tracing::error!("admin handler thread panicked");
            }
        }
    }

    /// Waits for the listener, the waker or a connection, up to the nearest deadline (at most
    /// [`TICK`]). `fds[0]` is the listener, `fds[1]` the waker, then `slots[i]`'s socket.
    fn poll(&self, fds: &mut Vec<libc::pollfd>, slots: &mut Vec<usize>) {
        fds.clear();
        slots.clear();
        let entry = |fd: i32, events: i16| libc::pollfd {
            fd,
            events,
            revents: 0,
        };
        fds.push(entry(self.listener.as_raw_fd(), libc::POLLIN));
        fds.push(entry(self.wake.as_raw_fd(), libc::POLLIN));
        let now = Instant::now();
        let mut timeout = TICK;
        for (slot, entry_) in self.conns.iter().enumerate() {
            let Some((_, conn)) = entry_ else { continue };
            if let Some(d) = conn.deadline() {
                timeout = timeout.min(d.saturating_duration_since(now));
            }
            let events = match conn.wants_read() {
                Some(true) => libc::POLLIN,
                Some(false) => libc::POLLOUT,
                None => 0,
            };
            fds.push(entry(conn.stream.as_raw_fd(), events));
            slots.push(slot);
        }
        let millis = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
        // SAFETY: `fds` is a valid array of pollfd for the duration of the call.
        let _ = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, millis) };
    }

    fn drain_wake(&self) {
        let mut sink = [0u8; 64];
        while matches!((&self.wake).read(&mut sink), Ok(n) if n > 0) {}
    }

    fn accept_all(&mut self) {
        loop {
            match self.listener.accept() {
                Ok((stream, peer)) => self.admit(stream, peer.ip()),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::ConnectionAborted => {}
                Err(e) => {
                    tracing::warn!(error = %e, "admin listener: accept failed");
                    return;
                }
            }
        }
    }

    /// Takes a new connection, making room first: a client at its share loses its own slowest
    /// request; a full table loses its slowest request from anyone.
    fn admit(&mut self, stream: std::net::TcpStream, peer: IpAddr) {
        let mine = self
            .conns
            .iter()
            .flatten()
            .filter(|(_, c)| c.peer == peer)
            .count();
        if mine >= MAX_PER_CLIENT {
            self.evict_slowest(Some(peer));
        }
        if self.conns.iter().flatten().count() >= MAX_CONNECTIONS {
            self.evict_slowest(None);
        }
        let conn = match Conn::new(stream, peer) {
            Ok(conn) => conn,
            Err(e) => {
                tracing::debug!(error = %e, "admin: cannot set up a connection");
                return;
            }
        };
        self.generation += 1;
        let entry = Some((self.generation, conn));
        match self.conns.iter().position(Option::is_none) {
            Some(free) => self.conns[free] = entry,
            None => self.conns.push(entry),
        }
    }

    /// Drops the connection that has been sending its request the longest (of `peer`, when
    /// given). Connections already answered or handled are kept.
    fn evict_slowest(&mut self, peer: Option<IpAddr>) {
        let oldest = self
            .conns
            .iter()
            .enumerate()
            .filter_map(|(i, e)| e.as_ref().map(|(_, c)| (i, c)))
            .filter(|(_, c)| c.reading() && peer.is_none_or(|p| c.peer == p))
            .min_by_key(|(_, c)| c.accepted)
            .map(|(i, _)| i);
        if let Some(i) = oldest {
            if let Some((_, conn)) = self.conns[i].take() {
                tracing::debug!(peer = %conn.peer, "admin: dropped the slowest request to make room");
            }
        }
    }

    fn drive(&mut self, slot: usize, now: Instant) {
        let Some((generation, conn)) = self.conns[slot].as_mut() else {
            return;
        };
        if let Next::Dispatch(request, head_only) = conn.drive(&self.policy, now) {
            let job = (slot, *generation, request, head_only);
            let sent = match &self.jobs {
                Some(jobs) => jobs.try_send(job),
                None => return,
            };
            if let Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) = sent {
                conn.answer(
                    &api::error(503, "the admin API is busy; try again", &[]),
                    false,
                );
                conn.drive(&self.policy, now);
            }
        }
    }

    /// Hands each finished answer to its connection, if it is still the same one.
    fn collect_answers(&mut self) {
        while let Ok((slot, generation, response, head_only)) = self.done.try_recv() {
            let Some(Some((g, conn))) = self.conns.get_mut(slot) else {
                continue;
            };
            if *g == generation {
                conn.answer(&response, head_only);
                conn.drive(&self.policy, Instant::now());
            }
        }
    }
}

/// A handler thread: runs routes until the queue closes.
fn handle_jobs(
    queue: &Mutex<Receiver<Job>>,
    finished: &mpsc::Sender<Done>,
    waker: &UnixStream,
    control: &dyn Control,
) {
    loop {
        let job = queue.lock().unwrap_or_else(PoisonError::into_inner).recv();
        let Ok((slot, generation, request, head_only)) = job else {
            return;
        };
        let response = api::handle(&request, control);
        if finished
            .send((slot, generation, response, head_only))
            .is_err()
        {
            return;
        }
        let _ = (&*waker).write(&[1]);
    }
}
