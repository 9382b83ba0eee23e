//! One admin connection in the event loop: reading its head, then its body, without ever
//! blocking; the policy checked the moment the head is in; the answer written; the close.
//!
//! A connection is a small state machine driven by the loop in [`super::server`] when its socket
//! is ready or its deadline passes: a slow client holds a table entry and its bytes, never a
//! thread.

use std::io::{self, Read, Write};
use std::net::{IpAddr, Shutdown, TcpStream};
use std::time::{Duration, Instant};

use super::api;
use super::http::{parse_head, Head, HttpError, Request, Response, MAX_BODY, MAX_HEAD};
use super::policy::Policy;

/// How long a client may take to send its request line and headers.
pub const HEAD_DEADLINE: Duration = Duration::from_secs(2);
/// How long a client may take to send its whole request, body included.
pub const REQUEST_DEADLINE: Duration = Duration::from_secs(10);
/// How long writing an answer may take.
pub const WRITE_DEADLINE: Duration = Duration::from_secs(5);
/// After answering, how long to read and discard what the client still sends, so that closing
/// with unread bytes does not reset the connection before the client read the answer.
const LINGER: Duration = Duration::from_secs(1);
/// The most bytes discarded while lingering.
const LINGER_BYTES: usize = 256 * 1024;
/// Bytes read from a socket at a time.
const READ_CHUNK: usize = 4096;

/// Where a connection is.
pub enum State {
    /// Reading the request line and headers.
    Head,
    /// Reading `body_len` bytes of body after a head of `head_len` bytes.
    Body {
        /// The request, body still empty.
        request: Request,
        /// Length of the head in the buffer.
        head_len: usize,
        /// Announced body length.
        body_len: usize,
    },
    /// Its request is with a handler thread.
    Handling,
    /// Writing `out` from `written` on.
    Writing {
        /// The whole answer.
        out: Vec<u8>,
        /// Bytes written so far.
        written: usize,
        /// When writing started.
        since: Instant,
    },
    /// Answer written and the write side shut; discarding what the client still sends.
    Lingering {
        /// When to give up waiting for the client's close.
        until: Instant,
        /// Bytes discarded so far.
        discarded: usize,
    },
    /// Finished: the loop drops it.
    Done,
}

/// What the loop must do after driving a connection.
pub enum Next {
    /// Nothing: wait for the socket or the deadline.
    Wait,
    /// Run this request on a handler thread (`head_only` for `HEAD`).
    Dispatch(Request, bool),
}

/// One admin connection.
pub struct Conn {
    /// The socket, non-blocking.
    pub stream: TcpStream,
    /// The client's address.
    pub peer: IpAddr,
    /// When it was accepted.
    pub accepted: Instant,
    /// Where it is.
    pub state: State,
    buf: Vec<u8>,
}

impl Conn {
    /// A connection just accepted.
    pub fn new(stream: TcpStream, peer: IpAddr) -> io::Result<Self> {
        stream.set_nonblocking(true)?;
        Ok(Self {
            stream,
            peer,
            accepted: Instant::now(),
            state: State::Head,
            buf: Vec::new(),
        })
    }

    /// True while it is still sending its request (what a slow client holds on to).
    pub fn reading(&self) -> bool {
        matches!(self.state, State::Head | State::Body { .. })
    }

    /// Whether it waits to read (`true`) or to write (`false`); `None` while a handler has it.
    pub fn wants_read(&self) -> Option<bool> {
        match self.state {
            State::Head | State::Body { .. } | State::Lingering { .. } => Some(true),
            State::Writing { .. } => Some(false),
            State::Handling | State::Done => None,
        }
    }

    /// When its current phase times out, if it can.
    pub fn deadline(&self) -> Option<Instant> {
        match &self.state {
            State::Head => Some(self.accepted + HEAD_DEADLINE),
            State::Body { .. } => Some(self.accepted + REQUEST_DEADLINE),
            State::Writing { since, .. } => Some(*since + WRITE_DEADLINE),
            State::Lingering { until, .. } => Some(*until),
            State::Handling | State::Done => None,
        }
    }

    /// Moves on after its socket became ready (or its deadline passed, `now` being later).
    pub fn drive(&mut self, policy: &Policy, now: Instant) -> Next {
        loop {
            let before = std::mem::discriminant(&self.state);
            let next = match &self.state {
                State::Head | State::Body { .. } => self.read(policy, now),
                State::Writing { .. } => {
                    self.write(now);
                    Next::Wait
                }
                State::Lingering { .. } => {
                    self.linger(now);
                    Next::Wait
                }
                State::Handling | State::Done => Next::Wait,
            };
            if matches!(next, Next::Dispatch(..)) {
                return next;
            }
            // A state that changed may already be able to go on (a short answer written at once).
            if std::mem::discriminant(&self.state) == before {
                return Next::Wait;
            }
        }
    }

    /// Starts writing `response`.
    pub fn answer(&mut self, response: &Response, head_only: bool) {
        let mut out = Vec::with_capacity(256 + response.body.len());
        // Writing into a Vec cannot fail.
        let _ = response.write_to(&mut out, head_only);
        self.state = State::Writing {
            out,
            written: 0,
            since: Instant::now(),
        };
    }

    fn read(&mut self, policy: &Policy, now: Instant) -> Next {
        let mut chunk = [0u8; READ_CHUNK];
        loop {
            if let Some(next) = self.advance(policy) {
                return next;
            }
            if !self.reading() {
                return Next::Wait;
            }
            if self.deadline().is_some_and(|d| now >= d) {
                tracing::debug!(peer = %self.peer, "admin: request not received in time");
                self.answer(
                    &api::error(408, &HttpError::Timeout.to_string(), &[]),
                    false,
                );
                return Next::Wait;
            }
            match self.stream.read(&mut chunk) {
                Ok(0) => {
                    tracing::debug!(peer = %self.peer, bytes = self.buf.len(), "admin: client closed before its request was complete");
                    self.state = State::Done;
                    return Next::Wait;
                }
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Next::Wait,
                Err(_) => {
                    self.state = State::Done;
                    return Next::Wait;
                }
            }
        }
    }

    /// Makes what can be made of the bytes received: `Some` once it dispatched, answered or
    /// refused; `None` when more bytes are needed.
    fn advance(&mut self, policy: &Policy) -> Option<Next> {
        if let State::Head = self.state {
            match parse_head(&self.buf) {
                Ok(Head::Partial) => return None,
                Ok(Head::Complete(request, head_len, body_len)) => {
                    // Who may send it is decided now, before any body is read.
                    if let Err(refusal) = policy.check(&request) {
                        tracing::debug!(peer = %self.peer, method = %request.method, path = %request.path, status = refusal.status, "admin: request refused");
                        self.answer(&refusal, false);
                        return Some(Next::Wait);
                    }
                    self.state = State::Body {
                        request,
                        head_len,
                        body_len,
                    };
                }
                Err(e) => {
                    tracing::debug!(peer = %self.peer, error = %e, "admin: bad request");
                    match e.status() {
                        Some(status) => {
                            self.answer(&api::error(status, &e.to_string(), &[]), false)
                        }
                        None => self.state = State::Done,
                    }
                    return Some(Next::Wait);
                }
            }
        }
        let State::Body {
            head_len, body_len, ..
        } = self.state
        else {
            return Some(Next::Wait);
        };
        let have = self.buf.len() - head_len;
        if have > body_len {
            let e = HttpError::BadRequest(
                "more bytes than Content-Length announced (pipelining is not supported)".into(),
            );
            self.answer(&api::error(400, &e.to_string(), &[]), false);
            return Some(Next::Wait);
        }
        if have < body_len {
            debug_assert!(self.buf.len() <= MAX_HEAD + MAX_BODY);
            return None;
        }
        let State::Body { mut request, .. } = std::mem::replace(&mut self.state, State::Handling)
        else {
            return Some(Next::Wait);
        };
        request.body = self.buf.split_off(head_len);
        self.buf = Vec::new();
        let head_only = request.method == "HEAD";
        Some(Next::Dispatch(request, head_only))
    }

    fn write(&mut self, now: Instant) {
        let State::Writing {
            out,
            written,
            since,
        } = &mut self.state
        else {
            return;
        };
        while *written < out.len() {
            match self.stream.write(&out[*written..]) {
                Ok(0) => break,
                Ok(n) => *written += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if now >= *since + WRITE_DEADLINE {
                        self.state = State::Done;
                    }
                    return;
                }
                Err(_) => {
                    self.state = State::Done;
                    return;
                }
            }
        }
        let _ = self.stream.shutdown(Shutdown::Write);
        self.state = State::Lingering {
            until: now + LINGER,
            discarded: 0,
        };
    }

    fn linger(&mut self, now: Instant) {
        let State::Lingering { until, discarded } = &mut self.state else {
            return;
        };
        let mut sink = [0u8; READ_CHUNK];
        loop {
            if now >= *until || *discarded >= LINGER_BYTES {
                self.state = State::Done;
                return;
            }
            match self.stream.read(&mut sink) {
                Ok(0) => {
                    self.state = State::Done;
                    return;
                }
                Ok(n) => *discarded += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(_) => {
                    self.state = State::Done;
                    return;
                }
            }
        }
    }
}
