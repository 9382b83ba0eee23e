//! The bidirectional copy between a client and a server, written once for plain and TLS ends.
//!
//! One pump per direction, both polled by the connection's own task (`join!`, no extra task and no
//! lock). Each pump waits for data with a small buffer of its own; when a read fills it, it
//! borrows a large buffer from its core's pool and reads what is queued without waiting, until a
//! read would block — then the large buffer goes back before the next wait (`net::buffers`). So an
//! idle connection holds only its small buffers, and no read allocates.
//!
//! Closes are passed on as they happened ("honest closes"): a clean end of data (TCP `FIN`, TLS
//! `close_notify`) becomes a half-close towards the other side while the opposite direction keeps
//! flowing; an unclean one (a TLS peer that vanished without `close_notify`, a reset, any error)
//! aborts both sides — a RST, never a `FIN` or `close_notify` the other peer could take for a
//! complete answer — and the first such failure is what the connection's record reports.

use std::cell::{Cell, RefCell};
use std::io;

use super::registry::ConnGuard;
use crate::net::buffers::ReadBuf;
use crate::net::endpoint::is_benign_close_error;
use crate::net::Endpoint;

/// Which side of a connection something happened on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The client that connected to the virtual service.
    Client,
    /// The real server.
    Server,
}

impl std::fmt::Display for Side {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Side::Client => "client",
            Side::Server => "server",
        })
    }
}

/// How one side's data ended badly, from the error its read or write reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// A TLS peer closed the connection without `close_notify`: what it sent may be cut short.
    Truncated,
    /// The peer reset the connection (or was gone when written to).
    Reset,
    /// Anything else: a TLS protocol error, an unexpected socket error.
    Error,
}

impl Failure {
    /// Classifies an error met reading from or writing to one side.
    pub fn of(e: &io::Error) -> Failure {
        match e.kind() {
            io::ErrorKind::UnexpectedEof => Failure::Truncated,
            io::ErrorKind::ConnectionReset
            | io::ErrorKind::BrokenPipe
            | io::ErrorKind::ConnectionAborted => Failure::Reset,
            _ => Failure::Error,
        }
    }
}

/// How a relay ended.
#[derive(Debug, Default)]
pub struct RelayOutcome {
    /// Bytes read from the client and written to the server.
    pub client_to_server: u64,
    /// Bytes read from the server and written to the client.
    pub server_to_client: u64,
    /// The first failure, with the side whose socket reported it; `None` for a clean close.
    pub error: Option<(Side, io::Error)>,
    /// The side that ended its data first (its EOF reached the relay first).
    pub first_close: Option<Side>,
}

/// What the two pumps of one relay share: how it is ending.
#[derive(Default)]
pub(super) struct Ending {
    /// The side whose end of data reached the relay first.
    pub(super) first_close: Cell<Option<Side>>,
    /// The first failure and its side.
    pub(super) failure: RefCell<Option<(Side, io::Error)>>,
}

impl Ending {
    /// `from` ended its data cleanly: notes which side closed first and half-closes `to`
    /// (the opposite direction keeps going); a failing half-close, unless the peer is merely
    /// gone already, is a failure.
    pub(super) async fn end_of_data(
        &self,
        from: &impl Endpoint,
        from_side: Side,
        to: &impl Endpoint,
        to_side: Side,
    ) {
        if self.first_close.get().is_none() {
            self.first_close.set(Some(from_side));
        }
        if let Err(e) = to.close_write().await {
            if !is_benign_close_error(&e) {
                self.fail(to_side, e, from, to);
            }
        }
    }

    /// The outcome, with the bytes each pump copied.
    pub(super) fn outcome(self, client_to_server: u64, server_to_client: u64) -> RelayOutcome {
        RelayOutcome {
            client_to_server,
            server_to_client,
            error: self.failure.into_inner(),
            first_close: self.first_close.get(),
        }
    }

    /// Records the first failure and aborts both ends; later errors (the other pump's, caused by
    /// that abort) are not failures of their own.
    pub(super) fn fail(&self, side: Side, e: io::Error, a: &impl Endpoint, b: &impl Endpoint) {
        let first = self.failure.borrow().is_none();
        if first {
            *self.failure.borrow_mut() = Some((side, e));
            a.abort();
            b.abort();
        }
    }
}

/// Copies both directions until both are closed, then returns what happened.
pub async fn relay<C: Endpoint, S: Endpoint>(
    client: &C,
    server: &S,
    guard: &ConnGuard,
) -> RelayOutcome {
    let ending = Ending::default();
    let (up, down) = tokio::join!(
        pump(client, Side::Client, server, Side::Server, guard, &ending),
        pump(server, Side::Server, client, Side::Client, guard, &ending),
    );
    ending.outcome(up, down)
}

/// Copies `from` → `to` until a clean EOF or a failure; returns the bytes copied.
async fn pump<R: Endpoint, W: Endpoint>(
    from: &R,
    from_side: Side,
    to: &W,
    to_side: Side,
    guard: &ConnGuard,
    ending: &Ending,
) -> u64 {
    let registry = guard.registry();
    let activity = guard.activity();
    // Bytes are counted as they go (a scrape sees long transfers move), on this core's line.
    let counters = guard.server_counters();
    let counter = counters.as_deref().map(|c| match from_side {
        Side::Client => &c.bytes_in,
        Side::Server => &c.bytes_out,
    });
    let mut bufs = ReadBuf::new();
    let mut copied: u64 = 0;
    // True while data flows: the next read takes what is queued, without waiting.
    let mut eager = false;
    loop {
        let (res, buf) = if eager {
            let mut buf = bufs.for_burst();
            match from.try_read(&mut buf) {
                Ok(None) => {
                    // Nothing queued: give the large buffer back and wait with the small one.
                    bufs.put(buf);
                    eager = false;
                    continue;
                }
                Ok(Some(n)) => (Ok(n), buf),
                Err(e) => (Err(e), buf),
            }
        } else {
            from.read(bufs.for_wait()).await
        };
        let n = match res {
            Ok(0) => {
                bufs.put(buf);
                ending.end_of_data(from, from_side, to, to_side).await;
                return copied;
            }
            Ok(n) => n,
            Err(e) => {
                bufs.put(buf);
                ending.fail(from_side, e, from, to);
                return copied;
            }
        };
        registry.touch(activity);
        eager = n == buf.capacity() || buf.capacity() >= crate::net::buffers::LARGE;
        let (res, buf) = to.write_all(buf).await;
        bufs.put(buf);
        if let Err(e) = res {
            ending.fail(to_side, e, from, to);
            return copied;
        }
        copied += n as u64;
        if let Some(counter) = counter {
            counter.add(n as u64);
        }
        registry.touch(activity);
    }
}
