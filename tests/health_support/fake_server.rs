//! The fake server a health check talks to: [`FakeServer`] accepts on a std thread, reads one
//! request head (plain or over TLS), records it with the checked server's health at its
//! arrival ([`Seen`]), and answers the status the test set, garbage, or nothing.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use ringmaster::backend::{Health, ServerState};
use rustls::{ServerConfig, ServerConnection, StreamOwned};

use super::{BAD_REQUEST, GARBAGE, POLL, SERVER_IO_TIMEOUT, SILENT};

/// One request the fake server received.
#[derive(Debug, Clone)]
pub struct Seen {
    /// The checked server's published health when the request arrived.
    pub health_at_arrival: Health,
    /// What the server answered.
    pub answered: u16,
    /// The request head.
    pub head: Vec<u8>,
}

/// A fake server on a std thread: accepts, reads a request head, answers per `answer`.
pub struct FakeServer {
    /// The address it listens on.
    pub address: SocketAddr,
    answer: Arc<AtomicU16>,
    seen: Arc<Mutex<Vec<Seen>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl FakeServer {
    /// A plain HTTP server (`tls: None`) or an HTTPS one, whose requests are recorded together
    /// with `state`'s health at arrival.
    pub fn start(
        state: Arc<ServerState>,
        tls: Option<Arc<Mutex<Arc<ServerConfig>>>>,
        answer: u16,
    ) -> FakeServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.set_nonblocking(true).expect("nonblocking");
        let address = listener.local_addr().expect("local addr");
        let answer = Arc::new(AtomicU16::new(answer));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (answer, seen, stop) = (answer.clone(), seen.clone(), stop.clone());
            thread::spawn(move || {
                while !stop.load(Ordering::Acquire) {
                    match listener.accept() {
                        Ok((tcp, _)) => {
                            let health_at_arrival = state.health();
                            let status = answer.load(Ordering::Acquire);
                            // Recorded as soon as the request head is in, before answering.
                            let record = |head| {
                                seen.lock().expect("seen lock").push(Seen {
                                    health_at_arrival,
                                    answered: status,
                                    head,
                                })
                            };
                            match &tls {
                                None => serve(tcp, status, &stop, record),
                                Some(config) => {
                                    let config = config.lock().expect("config lock").clone();
                                    serve_tls(tcp, config, status, &stop, record)
                                }
                            }
                        }
                        Err(_) => thread::sleep(Duration::from_millis(1)),
                    }
                }
            })
        };
        FakeServer {
            address,
            answer,
            seen,
            stop,
            thread: Some(thread),
        }
    }

    /// What it answers from the next request on: a status, [`GARBAGE`] or [`SILENT`].
    pub fn set_answer(&self, status: u16) {
        self.answer.store(status, Ordering::Release);
    }

    /// Every request received so far, in order.
    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().expect("seen lock").clone()
    }

    /// Stops accepting and closes the port.
    pub fn close(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(thread) = self.thread.take() {
            thread.join().expect("fake server panicked");
        }
    }
}

impl Drop for FakeServer {
    fn drop(&mut self) {
        self.close();
    }
}

/// Reads one request head from `stream` (up to the blank line, at most 8 KiB).
/// Stops at the first byte if that cannot start a request line (a TLS ClientHello sent to the
/// plain server), so the server can answer 400 at once as nginx does.
fn read_head(stream: &mut impl Read) -> Option<Vec<u8>> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") && head.len() < 8192 {
        match stream.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => return None,
        }
        if !head[0].is_ascii_uppercase() {
            break;
        }
    }
    Some(head)
}

/// Writes the answer `status` stands for (or garbage, or nothing until stopped).
fn answer(stream: &mut impl Write, status: u16, stop: &AtomicBool) {
    match status {
        GARBAGE => {
            let _ = stream.write_all(b"SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n");
        }
        SILENT => {
            let end = Instant::now() + SERVER_IO_TIMEOUT;
            while !stop.load(Ordering::Acquire) && Instant::now() < end {
                thread::sleep(POLL);
            }
        }
        status => {
            let _ = write!(
                stream,
                "HTTP/1.1 {status} Whatever\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            );
        }
    }
    let _ = stream.flush();
}

fn serve(mut tcp: TcpStream, status: u16, stop: &AtomicBool, record: impl FnOnce(Vec<u8>)) {
    let setup = tcp
        .set_nonblocking(false)
        .and_then(|()| tcp.set_read_timeout(Some(SERVER_IO_TIMEOUT)))
        .and_then(|()| tcp.set_write_timeout(Some(SERVER_IO_TIMEOUT)));
    if setup.is_err() {
        return;
    }
    if let Some(head) = read_head(&mut tcp) {
        let status = if head.ends_with(b"\r\n\r\n") {
            status
        } else {
            BAD_REQUEST
        };
        record(head);
        answer(&mut tcp, status, stop);
    }
}

fn serve_tls(
    tcp: TcpStream,
    config: Arc<ServerConfig>,
    status: u16,
    stop: &AtomicBool,
    record: impl FnOnce(Vec<u8>),
) {
    let setup = tcp
        .set_nonblocking(false)
        .and_then(|()| tcp.set_read_timeout(Some(SERVER_IO_TIMEOUT)))
        .and_then(|()| tcp.set_write_timeout(Some(SERVER_IO_TIMEOUT)));
    let Ok(conn) = ServerConnection::new(config) else {
        return;
    };
    if setup.is_err() {
        return;
    }
    let mut tls = StreamOwned::new(conn, tcp);
    if let Some(head) = read_head(&mut tls) {
        record(head);
        answer(&mut tls, status, stop);
        tls.conn.send_close_notify();
        let _ = tls.conn.complete_io(&mut tls.sock);
    }
}
