//! Fake backends: [`Backend`], an accept thread on a loopback port that runs a handler per
//! connection (sockets with [`BACKEND_IO_TIMEOUT`]), and the handlers the tests use: echo, id
//! line, full duplex, half-close from either side; the last three report what they received.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::Duration;

use super::data::read_to_eof_counting;
use super::{Pattern, Received, BACKEND_IO_TIMEOUT, CHUNK};

/// What a reporting backend saw on one connection that carried data, or why it failed.
pub type Report = Result<Received, String>;

/// A fake server: an accept thread on a loopback port that runs `handler` for each connection in
/// a thread of its own, counting accepted connections. Stopped (and its accept thread joined) by
/// [`Backend::stop`] or drop; connection threads finish on their own (EOF or
/// [`BACKEND_IO_TIMEOUT`]).
pub struct Backend {
    addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Backend {
    /// A backend on 127.0.0.1 with a kernel-chosen port.
    pub fn start<F>(handler: F) -> Backend
    where
        F: Fn(TcpStream) + Send + Sync + 'static,
    {
        Backend::start_on(SocketAddr::from(([127, 0, 0, 1], 0)), handler)
    }

    /// A backend on `addr`.
    pub fn start_on<F>(addr: SocketAddr, handler: F) -> Backend
    where
        F: Fn(TcpStream) + Send + Sync + 'static,
    {
        let listener = TcpListener::bind(addr).unwrap_or_else(|e| panic!("bind {addr}: {e}"));
        let addr = listener.local_addr().expect("local_addr");
        let accepted = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let handler = Arc::new(handler);
        let thread = {
            let accepted = accepted.clone();
            let stop = stop.clone();
            thread::Builder::new()
                .name(format!("backend-{}", addr.port()))
                .spawn(move || {
                    for conn in listener.incoming() {
                        if stop.load(Ordering::SeqCst) {
                            break;
                        }
                        let Ok(stream) = conn else { continue };
                        accepted.fetch_add(1, Ordering::SeqCst);
                        let _ = stream.set_read_timeout(Some(BACKEND_IO_TIMEOUT));
                        let _ = stream.set_write_timeout(Some(BACKEND_IO_TIMEOUT));
                        let _ = stream.set_nodelay(true);
                        let handler = handler.clone();
                        thread::spawn(move || handler(stream));
                    }
                })
                .expect("spawn backend thread")
        };
        Backend {
            addr,
            accepted,
            stop,
            thread: Some(thread),
        }
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Connections accepted so far (including the proxy's readiness probe, if it landed here).
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    /// The accept counter itself.
    pub fn accepted_counter(&self) -> Arc<AtomicUsize> {
        self.accepted.clone()
    }

    /// Stops accepting and closes the listening socket; established connections carry on.
    pub fn stop(&mut self) {
        if let Some(thread) = self.thread.take() {
            self.stop.store(true, Ordering::SeqCst);
            // Wake the blocking accept so it sees the flag.
            let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
            let _ = thread.join();
        }
    }

    /// Echoes everything until EOF, then shuts down its write side.
    pub fn echo() -> Backend {
        Backend::start(|mut stream| {
            let _ = echo_until_eof(&mut stream);
        })
    }

    /// Writes `"{id}\n"` on accept, then echoes like [`Backend::echo`]. A client that reads the
    /// first line learns which server it reached.
    pub fn id(id: &str) -> Backend {
        let greeting = format!("{id}\n").into_bytes();
        Backend::start(move |mut stream| {
            if stream.write_all(&greeting).is_ok() {
                let _ = echo_until_eof(&mut stream);
            }
        })
    }

    /// Full duplex: on each connection, sends `send` (then shuts down its write side) while it
    /// reads everything the client sends until EOF, both at the same time, and reports what it
    /// read.
    pub fn duplex(send: Pattern) -> (Backend, Receiver<Report>) {
        let (tx, rx) = mpsc::channel::<Report>();
        let backend = Backend::start(move |mut stream| {
            let writer = match stream.try_clone() {
                Ok(mut w) => thread::spawn(move || {
                    send.write_to(&mut w)?;
                    w.shutdown(Shutdown::Write)
                }),
                Err(e) => return report(&tx, Err(format!("backend try_clone: {e}"))),
            };
            let mut bytes_in = 0;
            let got = read_to_eof_counting(&mut stream, &mut bytes_in);
            let sent = writer.join().expect("backend writer thread panicked");
            // A connection that carried nothing in is the proxy's readiness probe: the proxy
            // may well have reset it while this side was still sending.
            if bytes_in == 0 {
                return;
            }
            let result = match (got, sent) {
                (Ok(got), Ok(())) => Ok(got),
                (Ok(got), Err(e)) => Err(format!("backend send failed: {e} (it received {got:?})")),
                (Err(e), _) => Err(format!("backend receive failed: {e}")),
            };
            report(&tx, result);
        });
        (backend, rx)
    }

    /// Client half-close: reads the request until EOF, then sends `reply`, then closes; reports
    /// the request it read. Connections with an empty request are ignored (readiness probe).
    pub fn reply_after_eof(reply: Pattern) -> (Backend, Receiver<Report>) {
        let (tx, rx) = mpsc::channel::<Report>();
        let backend = Backend::start(move |mut stream| {
            let mut bytes_in = 0;
            let request = match read_to_eof_counting(&mut stream, &mut bytes_in) {
                // Nothing came in: the proxy's readiness probe.
                _ if bytes_in == 0 => return,
                Ok(r) => r,
                Err(e) => return report(&tx, Err(format!("backend reading request: {e}"))),
            };
            let result = reply
                .write_to(&mut stream)
                .and_then(|()| stream.shutdown(Shutdown::Write))
                .map(|()| request)
                .map_err(|e| format!("backend sending reply: {e}"));
            report(&tx, result);
        });
        (backend, rx)
    }

    /// Backend half-close: sends `first`, shuts down its write side, then keeps reading the
    /// client's upload until EOF; reports the upload, then closes. Connections with an empty
    /// upload are ignored (readiness probe).
    pub fn half_close_first(first: Pattern) -> (Backend, Receiver<Report>) {
        let (tx, rx) = mpsc::channel::<Report>();
        let backend = Backend::start(move |mut stream| {
            let sent = first
                .write_to(&mut stream)
                .and_then(|()| stream.shutdown(Shutdown::Write));
            let mut bytes_in = 0;
            let got = read_to_eof_counting(&mut stream, &mut bytes_in);
            // A connection that carried nothing in is the proxy's readiness probe.
            if bytes_in == 0 {
                return;
            }
            let result = match (sent, got) {
                (Ok(()), Ok(got)) => Ok(got),
                (Err(e), _) => Err(format!("backend sending before half-close: {e}")),
                (Ok(()), Err(e)) => Err(format!("backend reading upload after half-close: {e}")),
            };
            report(&tx, result);
        });
        (backend, rx)
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.stop();
    }
}

fn report(tx: &Sender<Report>, result: Report) {
    // The test may have given up already; nothing to do then.
    let _ = tx.send(result);
}

/// Echoes until EOF, then shuts down the write side.
fn echo_until_eof(stream: &mut TcpStream) -> io::Result<()> {
    let mut buf = vec![0u8; CHUNK];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return stream.shutdown(Shutdown::Write),
            Ok(n) => stream.write_all(&buf[..n])?,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// Waits up to `within` for the next report of a reporting backend.
pub fn next_report(rx: &Receiver<Report>, within: Duration) -> Report {
    rx.recv_timeout(within)
        .unwrap_or_else(|e| Err(format!("no report from the backend within {within:?}: {e}")))
}
