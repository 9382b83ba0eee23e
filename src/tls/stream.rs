//! rustls driven over io_uring owned buffers: one TLS end of a relay.
//!
//! The rules learned the hard way on this machine (DESIGN.md), and where each is honoured:
//! 1. plaintext that arrived with the handshake is returned before the next socket read
//!    ([`TlsStream::read`] always drains `reader()` first);
//! 2. `read_tls` on an empty slice means EOF, so it is called with one only after a real 0-byte read;
//! 3. `read_tls` refuses more input while 16 KiB of plaintext is undrained: ciphertext is kept in
//!    `rx` and fed only after the plaintext was handed out;
//! 4. `writer().write()` is partial once 64 KiB of TLS output is queued: [`TlsStream::write_all`]
//!    flushes and retries, which is the back-pressure;
//! 5. both pumps of a relay may produce records on one socket (alerts, tickets, KeyUpdate): socket
//!    writes go through one flusher at a time, and the flusher loops until nothing is queued, so a
//!    reader never waits on a writer;
//! 6. tokio-uring reads from index 0 of a buffer: `rx` keeps a `start..end` window instead of
//!    appending;
//! 7. close: `send_close_notify`, flush, `shutdown(Write)`; ENOTCONN/EPIPE/ECONNRESET are normal.
//!
//! Ending honestly: a peer's `close_notify` is a clean end of data (`Ok(0)`); a socket EOF without
//! it is `Err(UnexpectedEof)` — a truncation the relay passes on as an abort, never as a clean close.
//!
//! Ciphertext is received as the relay receives plaintext (`net::buffers`): a small buffer to wait
//! with, a large pooled one while a socket read keeps filling its buffer, given back as soon as a
//! non-blocking read finds nothing; so an idle session holds no large buffer.
//!
//! The stream under the session is any [`Transport`]: a [`TcpStream`] in production (the default
//! type parameter), an in-memory pipe in unit tests and benchmarks. Only
//! [`TlsStream::absorb_pending`] needs a real socket.

use std::cell::{Cell, RefCell};
use std::io::{self, BufRead, Write};
use std::net::Shutdown;

use rustls::Connection;
use tokio::sync::Notify;

use crate::net::buffers::ReadBuf;
use crate::net::endpoint::{is_benign_close_error, Endpoint};
use crate::net::{TcpStream, Transport};

/// Size of the ciphertext buffer a session waits with; an idle session holds this much (a small
/// request or response record fits; a read that fills it continues in a large pooled buffer).
pub const RX_INITIAL: usize = crate::net::buffers::SMALL;
/// Size of the pooled ciphertext buffer of a busy session: about four full TLS records.
pub const RX_MAX: usize = crate::net::buffers::LARGE;
/// First size of a ciphertext send buffer. Send buffers are not kept by idle connections: each
/// flush borrows one from its core's pool and gives it back.
pub const TX_INITIAL: usize = 4 * 1024;
/// Send buffers larger than this go back to the allocator instead of the pool.
const TX_POOL_MAX_CAPACITY: usize = 2 * RX_MAX;
/// Most send buffers one core's pool keeps.
const TX_POOL_MAX_LEN: usize = 64;

thread_local! {
    /// This core's idle send buffers: a flush takes one and puts it back, so a connection with
    /// nothing to send holds none, and steady traffic allocates none.
    static TX_POOL: RefCell<Vec<Vec<u8>>> = const { RefCell::new(Vec::new()) };
}

fn take_tx() -> Vec<u8> {
    TX_POOL
        .with(|pool| pool.borrow_mut().pop())
        .unwrap_or_else(|| Vec::with_capacity(TX_INITIAL))
}

fn put_tx(mut tx: Vec<u8>) {
    if tx.capacity() > TX_POOL_MAX_CAPACITY {
        return;
    }
    tx.clear();
    TX_POOL.with(|pool| {
        let mut pool = pool.borrow_mut();
        if pool.len() < TX_POOL_MAX_LEN {
            pool.push(tx);
        }
    });
}

/// Why feeding rustls failed: the socket side, or the TLS session itself (which queued an alert).
enum Fed {
    Io(io::Error),
    Tls(rustls::Error),
}

/// Received ciphertext not yet handed to rustls.
struct RxBuf {
    /// The buffer holding it (`None` while a socket read is in flight).
    buf: Option<Vec<u8>>,
    /// The first byte rustls has not consumed.
    start: usize,
    /// The socket reached EOF.
    eof: bool,
    /// The last socket read filled its buffer or found data without waiting: look for more
    /// without waiting before the next wait.
    eager: bool,
    /// The small buffer to wait with and the large one borrowed while data flows.
    bufs: ReadBuf,
}

impl RxBuf {
    /// True when everything received was handed to rustls.
    fn drained(&self) -> bool {
        self.start >= self.buf.as_ref().map_or(0, Vec::len)
    }

    /// Gives back the current (drained) buffer.
    fn release(&mut self) {
        if let Some(buf) = self.buf.take() {
            self.bufs.put(buf);
        }
        self.start = 0;
    }

    /// Stores the result of a socket read into `buf`: `Some(0)` is EOF.
    fn filled(&mut self, buf: Vec<u8>, n: usize) {
        self.eager = n > 0 && (n == buf.capacity() || buf.capacity() >= RX_MAX);
        self.eof |= n == 0;
        self.start = 0;
        self.buf = Some(buf);
    }
}

/// One TLS session over one transport (a TCP socket unless said otherwise), usable by both pumps
/// of a relay at once.
pub struct TlsStream<T: Transport = TcpStream> {
    io: T,
    conn: RefCell<Connection>,
    rx: RefCell<RxBuf>,
    flushing: Cell<bool>,
    /// Callers waiting for the running flush; `flushed` is only notified when there are some
    /// (`notify_waiters` takes a lock).
    waiting: Cell<usize>,
    flushed: Notify,
}

impl<T: Transport> TlsStream<T> {
    /// Wraps a socket and a fresh rustls connection; `leftover` is ciphertext already read from the
    /// socket that rustls has not consumed (after a ClientHello peek).
    pub fn new(io: T, conn: Connection, leftover: Option<(Vec<u8>, usize)>) -> Self {
        let mut bufs = ReadBuf::new();
        let (buf, start) = leftover.unwrap_or_else(|| (bufs.for_wait(), 0));
        Self {
            io,
            conn: RefCell::new(conn),
            rx: RefCell::new(RxBuf {
                buf: Some(buf),
                start,
                eof: false,
                eager: false,
                bufs,
            }),
            flushing: Cell::new(false),
            waiting: Cell::new(0),
            flushed: Notify::new(),
        }
    }

    /// The underlying transport.
    pub fn transport(&self) -> &T {
        &self.io
    }

    /// Runs `f` with the rustls connection (for ALPN, certificates, versions once handshaken).
    pub fn with_conn<R>(&self, f: impl FnOnce(&Connection) -> R) -> R {
        f(&self.conn.borrow())
    }

    /// Completes the handshake. A failure sends rustls' alert (best effort) and returns the error.
    pub async fn handshake(&self) -> io::Result<()> {
        loop {
            if self.conn.borrow().wants_write() {
                self.flush().await?;
            }
            if !self.conn.borrow().is_handshaking() {
                return Ok(());
            }
            if !self.fill_and_process().await? {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "peer closed the connection during the TLS handshake",
                ));
            }
        }
    }

    /// Feeds buffered ciphertext to rustls, reading the socket first if none is buffered.
    /// Returns false on EOF with nothing left to feed.
    async fn fill_and_process(&self) -> io::Result<bool> {
        let need_read = {
            let rx = self.rx.borrow();
            rx.drained() && !rx.eof
        };
        if need_read && !(self.rx.borrow().eager && self.try_fill()?) {
            let buf = {
                let mut rx = self.rx.borrow_mut();
                rx.release();
                rx.bufs.for_wait()
            };
            let (res, buf) = self.io.read(buf).await;
            let mut rx = self.rx.borrow_mut();
            match res {
                Ok(n) => rx.filled(buf, n),
                Err(e) => {
                    rx.bufs.put(buf);
                    return Err(e);
                }
            }
        }
        self.processed().await
    }

    /// Feeds what is buffered and turns a TLS error into an `InvalidData` error after sending the
    /// alert rustls queued.
    async fn processed(&self) -> io::Result<bool> {
        match self.feed() {
            Ok(more) => Ok(more),
            Err(Fed::Io(e)) => Err(e),
            Err(Fed::Tls(e)) => {
                // Best effort: send the alert rustls queued, then fail.
                let _ = self.flush().await;
                Err(io::Error::new(io::ErrorKind::InvalidData, e))
            }
        }
    }

    /// Reads what the socket has queued into a large buffer, without waiting. False (and the
    /// large buffer given back) when nothing was queued.
    fn try_fill(&self) -> io::Result<bool> {
        let mut rx = self.rx.borrow_mut();
        rx.release();
        let mut buf = rx.bufs.for_burst();
        match self.io.try_read(&mut buf) {
            Ok(Some(n)) => {
                rx.filled(buf, n);
                Ok(true)
            }
            Ok(None) => {
                rx.bufs.put(buf);
                rx.eager = false;
                Ok(false)
            }
            Err(e) => {
                rx.bufs.put(buf);
                rx.eager = false;
                Err(e)
            }
        }
    }

    /// Hands buffered ciphertext (or the EOF) to rustls and processes it; no borrow outlives it.
    /// `Ok(false)` after EOF.
    fn feed(&self) -> Result<bool, Fed> {
        let mut rx = self.rx.borrow_mut();
        let rx = &mut *rx;
        let mut conn = self.conn.borrow_mut();
        let buf = rx.buf.as_deref().unwrap_or_default();
        let more = if rx.start < buf.len() {
            let mut pending = &buf[rx.start..];
            rx.start += conn.read_tls(&mut pending).map_err(Fed::Io)?;
            true
        } else if rx.eof {
            // Rule 2: an empty read_tls only after a real 0-byte socket read.
            conn.read_tls(&mut io::empty()).map_err(Fed::Io)?;
            false
        } else {
            true
        };
        conn.process_new_packets().map_err(Fed::Tls)?;
        Ok(more)
    }

    /// Writes every queued TLS record to the socket. Only one flusher runs at a time; a caller that
    /// finds one running waits for it (the running one loops until nothing is queued).
    async fn flush(&self) -> io::Result<()> {
        loop {
            if self.flushing.get() {
                let done = self.flushed.notified();
                self.waiting.set(self.waiting.get() + 1);
                if self.flushing.get() {
                    done.await;
                }
                self.waiting.set(self.waiting.get() - 1);
                continue;
            }
            if !self.conn.borrow().wants_write() {
                return Ok(());
            }
            self.flushing.set(true);
            let res = self.flush_queued().await;
            self.flushing.set(false);
            if self.waiting.get() > 0 {
                self.flushed.notify_waiters();
            }
            return res;
        }
    }

    async fn flush_queued(&self) -> io::Result<()> {
        let mut tx = take_tx();
        loop {
            tx.clear();
            let encoded = {
                let mut conn = self.conn.borrow_mut();
                let mut result = Ok(());
                while conn.wants_write() {
                    if let Err(e) = conn.write_tls(&mut tx) {
                        result = Err(e);
                        break;
                    }
                }
                result
            };
            if let Err(e) = encoded {
                put_tx(tx);
                return Err(e);
            }
            if tx.is_empty() {
                put_tx(tx);
                return Ok(());
            }
            let (res, back) = self.io.write_all(tx).await;
            tx = back;
            if let Err(e) = res {
                put_tx(tx);
                return Err(e);
            }
        }
    }

    /// Feeds `bytes` to rustls; false if that produced an error, plaintext or a close.
    fn absorb(&self, mut bytes: &[u8]) -> bool {
        let mut conn = self.conn.borrow_mut();
        while !bytes.is_empty() {
            if conn.read_tls(&mut bytes).is_err() {
                return false;
            }
            match conn.process_new_packets() {
                Ok(state) if state.plaintext_bytes_to_read() == 0 && !state.peer_has_closed() => {}
                _ => return false,
            }
        }
        true
    }

    /// Copies decrypted plaintext into `buf`, up to its capacity, straight from rustls' buffers
    /// (no zero-filling first). `Some(0)` is a clean EOF, `None` means none buffered; on
    /// `Some(n)` the length of `buf` is `n`.
    fn take_plaintext(&self, buf: &mut Vec<u8>) -> io::Result<Option<usize>> {
        buf.clear();
        if buf.capacity() == 0 {
            buf.reserve(RX_INITIAL);
        }
        let cap = buf.capacity();
        let mut conn = self.conn.borrow_mut();
        let mut reader = conn.reader();
        loop {
            let chunk = match reader.fill_buf() {
                Ok(chunk) => chunk,
                // Nothing more decrypted yet.
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    return Ok((!buf.is_empty()).then_some(buf.len()));
                }
                // The peer closed the socket without close_notify: a truncation, reported once
                // the plaintext before it was handed out.
                Err(e) if buf.is_empty() && e.kind() == io::ErrorKind::UnexpectedEof => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the peer closed the connection without close_notify (truncated)",
                    ))
                }
                Err(e) if buf.is_empty() => return Err(e),
                Err(_) => return Ok(Some(buf.len())),
            };
            // An empty chunk without error: close_notify received and everything handed out.
            if chunk.is_empty() {
                return Ok(Some(buf.len()));
            }
            let n = chunk.len().min(cap - buf.len());
            buf.extend_from_slice(&chunk[..n]);
            reader.consume(n);
            if buf.len() == cap {
                return Ok(Some(cap));
            }
        }
    }
}

impl TlsStream<TcpStream> {
    /// The underlying socket.
    pub fn tcp(&self) -> &TcpStream {
        &self.io
    }

    /// For an idle connection nobody reads (a warm pool's): takes in, without blocking, whatever
    /// the peer sent meanwhile — session tickets are fine; application data, an alert or EOF
    /// make the connection unusable. Returns whether it can still carry a new client.
    pub fn absorb_pending(&self) -> bool {
        /// One read of what an idle peer may have sent: tickets, a KeyUpdate, an alert.
        const PEEK: usize = 4096;
        // Ciphertext that arrived with the handshake and was not needed by it.
        let leftover = {
            let mut rx = self.rx.borrow_mut();
            if rx.eof {
                return false;
            }
            let len = rx.buf.as_ref().map_or(0, Vec::len);
            let bytes = rx
                .buf
                .as_deref()
                .map_or(Vec::new(), |b| b[rx.start.min(len)..].to_vec());
            rx.start = len;
            bytes
        };
        if !self.absorb(&leftover) {
            return false;
        }
        let mut buf = [0u8; PEEK];
        loop {
            // SAFETY: a non-blocking recv into a stack buffer; no io_uring read is in flight on
            // an idle pooled connection.
            let n = unsafe {
                libc::recv(
                    self.io.raw_fd(),
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                    libc::MSG_DONTWAIT,
                )
            };
            match n {
                n if n < 0 => {
                    return io::Error::last_os_error().kind() == io::ErrorKind::WouldBlock
                }
                0 => return false,
                n => {
                    if !self.absorb(&buf[..n as usize]) {
                        return false;
                    }
                }
            }
        }
    }
}

impl<T: Transport> Endpoint for TlsStream<T> {
    async fn read(&self, mut buf: Vec<u8>) -> (io::Result<usize>, Vec<u8>) {
        loop {
            match self.take_plaintext(&mut buf) {
                Ok(Some(n)) => return (Ok(n), buf),
                Ok(None) => {}
                Err(e) => return (Err(e), buf),
            }
            // Tickets, KeyUpdate answers and alerts the last records produced.
            if self.conn.borrow().wants_write() && !self.flushing.get() {
                if let Err(e) = self.flush().await {
                    return (Err(e), buf);
                }
            }
            match self.fill_and_process().await {
                Ok(true) => {}
                // EOF: whatever rustls made of it (clean close_notify or truncation) ends this side.
                Ok(false) => return (self.take_plaintext(&mut buf).map(|n| n.unwrap_or(0)), buf),
                Err(e) => return (Err(e), buf),
            }
        }
    }

    fn try_read(&self, buf: &mut Vec<u8>) -> io::Result<Option<usize>> {
        loop {
            if let Some(n) = self.take_plaintext(buf)? {
                return Ok(Some(n));
            }
            // Records to send first (tickets, a KeyUpdate answer, an alert): the waiting read
            // flushes them.
            if self.conn.borrow().wants_write() {
                return Ok(None);
            }
            let (drained, eof) = {
                let rx = self.rx.borrow();
                (rx.drained(), rx.eof)
            };
            if drained && !eof && !self.try_fill()? {
                return Ok(None);
            }
            match self.feed() {
                Ok(true) => {}
                // EOF fed: what rustls made of it (clean close or truncation) is the answer.
                Ok(false) => return self.take_plaintext(buf).map(|n| Some(n.unwrap_or(0))),
                Err(Fed::Io(e)) => return Err(e),
                // A protocol error mid-stream: the relay aborts the connection.
                Err(Fed::Tls(e)) => return Err(io::Error::new(io::ErrorKind::InvalidData, e)),
            }
        }
    }

    async fn write_all(&self, buf: Vec<u8>) -> (io::Result<()>, Vec<u8>) {
        let mut written = 0;
        while written < buf.len() {
            let res = self.conn.borrow_mut().writer().write(&buf[written..]);
            match res {
                Ok(n) => written += n,
                Err(e) => return (Err(e), buf),
            }
            if let Err(e) = self.flush().await {
                return (Err(e), buf);
            }
        }
        (Ok(()), buf)
    }

    async fn close_write(&self) -> io::Result<()> {
        self.conn.borrow_mut().send_close_notify();
        match self.flush().await {
            Ok(()) => {}
            Err(e) if is_benign_close_error(&e) => {}
            Err(e) => return Err(e),
        }
        self.io.shutdown(Shutdown::Write)
    }

    fn abort(&self) {
        self.io.abort();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use rustls::{ClientConfig, ClientConnection, ServerConfig, ServerConnection};
    use rustls_pki_types::{PrivateKeyDer, ServerName};

    use super::*;
    use crate::net::transport::{memory_pipe, MemoryEnd};

    fn pair(pipe_capacity: usize) -> (TlsStream<MemoryEnd>, TlsStream<MemoryEnd>) {
        let key = rcgen::KeyPair::generate().expect("key");
        let cert = rcgen::CertificateParams::new(vec!["pipe.test".to_string()])
            .expect("params")
            .self_signed(&key)
            .expect("cert");
        let key = PrivateKeyDer::try_from(key.serialize_der()).expect("key der");
        let provider = crate::tls::provider();
        let server = ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(crate::tls::PROTOCOL_VERSIONS)
            .expect("versions")
            .with_no_client_auth()
            .with_single_cert(vec![cert.der().clone()], key)
            .expect("server config");
        let client = ClientConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(crate::tls::PROTOCOL_VERSIONS)
            .expect("versions")
            .dangerous()
            .with_custom_certificate_verifier(crate::tls::client::accept_any(&provider))
            .with_no_client_auth();
        let name = ServerName::try_from("pipe.test").expect("name");
        let client = ClientConnection::new(Arc::new(client), name).expect("client");
        let server = ServerConnection::new(Arc::new(server)).expect("server");
        let (a, b) = memory_pipe(pipe_capacity);
        (
            TlsStream::new(a, Connection::Client(client), None),
            TlsStream::new(b, Connection::Server(server), None),
        )
    }

    /// Sends `data` in 7 KiB writes, then closes (close_notify + FIN).
    async fn send_and_close(end: &TlsStream<MemoryEnd>, data: &[u8]) {
        for chunk in data.chunks(7 * 1024) {
            let (res, _) = end.write_all(chunk.to_vec()).await;
            res.expect("write");
        }
        end.close_write().await.expect("close");
    }

    async fn read_to_eof(end: &TlsStream<MemoryEnd>) -> Vec<u8> {
        let mut got = Vec::new();
        let mut buf = Vec::with_capacity(3000);
        loop {
            let (res, b) = end.read(buf).await;
            buf = b;
            match res.expect("read") {
                0 => return got,
                n => got.extend_from_slice(&buf[..n]),
            }
        }
    }

    /// Both directions at once through a pipe much smaller than a TLS record, so every write
    /// waits for the peer's reads (rules 3 and 4) and both ends' flushes interleave with reads
    /// (rule 5); each side must see exactly the other's bytes, then a clean EOF (rule 7).
    /// A lost wake-up hangs this test; a lost or reordered byte fails the comparison.
    #[test]
    fn both_directions_through_a_tiny_pipe_then_a_clean_close() {
        let (client, server) = pair(1000);
        let up: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        let down: Vec<u8> = (0..200_000u32).map(|i| (i % 241) as u8).collect();
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        let (got_up, got_down) = rt.block_on(async {
            let (rc, rs) = tokio::join!(client.handshake(), server.handshake());
            rc.expect("client handshake");
            rs.expect("server handshake");
            let (_, got_up, _, got_down) = tokio::join!(
                send_and_close(&client, &up),
                read_to_eof(&server),
                send_and_close(&server, &down),
                read_to_eof(&client),
            );
            (got_up, got_down)
        });
        assert!(got_up == up, "client→server bytes differ");
        assert!(got_down == down, "server→client bytes differ");
    }
}
