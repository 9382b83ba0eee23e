//! Load for the operations tests: a client that keeps opening short connections, and clients
//! that keep one long transfer open, each counting what a reload or an address change would
//! break (refused connects, wrong answers, cut or corrupted transfers).

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use sha2::{Digest as _, Sha256};

/// Longest any load thread runs, whatever the test does.
pub const MAX_LOAD: Duration = Duration::from_secs(120);

/// What a short-connection client saw.
#[derive(Debug, Default)]
pub struct Churn {
    /// Connections opened and answered correctly.
    pub ok: AtomicU64,
    /// Connects refused or timed out.
    pub refused: AtomicU64,
    /// Connections that opened but were cut or answered wrongly.
    pub broken: AtomicU64,
}

/// Opens connection after connection to `addr` (sending a unique line, expecting it echoed)
/// until `stop` is set.
pub fn churn(addr: SocketAddr, stop: Arc<AtomicBool>, tag: &str) -> (Arc<Churn>, JoinHandle<()>) {
    let stats = Arc::new(Churn::default());
    let s = stats.clone();
    let tag = tag.to_owned();
    let handle = thread::spawn(move || {
        let started = Instant::now();
        let mut i = 0u64;
        while !stop.load(Ordering::Relaxed) && started.elapsed() < MAX_LOAD {
            i += 1;
            let mut stream = match TcpStream::connect_timeout(&addr, Duration::from_secs(2)) {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("{tag}: connect {i} to {addr}: {e}");
                    s.refused.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
            };
            stream.set_read_timeout(Some(Duration::from_secs(10))).ok();
            let line = format!("{tag}-{i}\n");
            let mut back = vec![0u8; line.len()];
            let result = stream
                .write_all(line.as_bytes())
                .and_then(|()| stream.read_exact(&mut back));
            match result {
                Ok(()) if back == line.as_bytes() => s.ok.fetch_add(1, Ordering::Relaxed),
                Ok(()) => {
                    eprintln!("{tag}: connection {i} answered {back:?}");
                    s.broken.fetch_add(1, Ordering::Relaxed)
                }
                Err(e) => {
                    eprintln!("{tag}: connection {i}: {e}");
                    s.broken.fetch_add(1, Ordering::Relaxed)
                }
            };
        }
    });
    (stats, handle)
}

/// The result of one long transfer.
#[derive(Debug)]
pub struct Transfer {
    /// Bytes sent (and expected back).
    pub bytes: u64,
    /// Whether every byte came back in order (sha256 of sent == sha256 of received) and the
    /// connection was never cut.
    pub intact: bool,
    /// The first error, if any.
    pub error: Option<String>,
}

/// Keeps one connection to an echo server busy until `stop` is set: writes 16 KiB chunks and
/// reads them back, hashing both streams; then half-closes and reads to EOF.
pub fn long_transfer(addr: SocketAddr, stop: Arc<AtomicBool>, seed: u64) -> JoinHandle<Transfer> {
    thread::spawn(move || {
        let mut stream = match TcpStream::connect_timeout(&addr, Duration::from_secs(2)) {
            Ok(s) => s,
            Err(e) => {
                return Transfer {
                    bytes: 0,
                    intact: false,
                    error: Some(format!("connect: {e}")),
                }
            }
        };
        stream.set_read_timeout(Some(Duration::from_secs(10))).ok();
        let (mut sent, mut received) = (Sha256::new(), Sha256::new());
        let mut chunk = vec![0u8; 16 * 1024];
        let mut back = vec![0u8; chunk.len()];
        let mut state = seed | 1;
        let mut bytes = 0u64;
        let started = Instant::now();
        let mut error = None;
        while !stop.load(Ordering::Relaxed) && started.elapsed() < MAX_LOAD {
            for b in chunk.iter_mut() {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                *b = state as u8;
            }
            if let Err(e) = stream
                .write_all(&chunk)
                .and_then(|()| stream.read_exact(&mut back))
            {
                error = Some(format!("after {bytes} bytes: {e}"));
                break;
            }
            sent.update(&chunk);
            received.update(&back);
            bytes += chunk.len() as u64;
        }
        if error.is_none() {
            let _ = stream.shutdown(Shutdown::Write);
            let mut rest = Vec::new();
            match stream.read_to_end(&mut rest) {
                Ok(_) if rest.is_empty() => {}
                Ok(n) => error = Some(format!("{n} unexpected bytes after the last echo")),
                Err(e) => error = Some(format!("reading to EOF: {e}")),
            }
        }
        let intact = error.is_none() && sent.finalize() == received.finalize();
        Transfer {
            bytes,
            intact,
            error,
        }
    })
}
