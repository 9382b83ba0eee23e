//! TLS primitives over blocking sockets: completing a handshake, writing queued records, the
//! TLS half-close (`close_notify`, then FIN), reading a session until `close_notify`, and a
//! full-duplex transfer over one established session ([`tls_duplex`]).

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::{Arc, Mutex};
use std::thread;

use rustls::{Connection, ConnectionCommon};
use sha2::{Digest as _, Sha256};

use crate::common::{Digest, Pattern, Received, CHUNK};

/// Completes a handshake over a blocking socket (client or server side), then writes whatever
/// it left queued (the server's session tickets). Fails on EOF, a socket timeout or a TLS error.
pub fn handshake<D>(conn: &mut ConnectionCommon<D>, sock: &mut TcpStream) -> io::Result<()> {
    while conn.is_handshaking() {
        conn.complete_io(sock)?;
    }
    flush(conn, sock)
}

/// Writes every queued TLS record to the socket.
pub fn flush<D>(conn: &mut ConnectionCommon<D>, sock: &mut TcpStream) -> io::Result<()> {
    while conn.wants_write() {
        conn.write_tls(sock)?;
    }
    sock.flush()
}

/// The TLS half-close: `close_notify`, then `FIN`. Reading keeps working.
pub fn close_write<D>(conn: &mut ConnectionCommon<D>, sock: &mut TcpStream) -> io::Result<()> {
    conn.send_close_notify();
    flush(conn, sock)?;
    sock.shutdown(Shutdown::Write)
}

/// Reads a TLS session until the peer's `close_notify`, hashing the plaintext. A TCP EOF
/// without `close_notify` (truncation), a reset or a timeout is an error with the count so far.
pub fn read_tls_to_close(stream: &mut impl Read) -> io::Result<Received> {
    let mut hasher = Sha256::new();
    let mut bytes = 0u64;
    let mut buf = vec![0u8; CHUNK];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => {
                return Ok(Received {
                    bytes,
                    sha256: Digest(hasher.finalize().into()),
                })
            }
            Ok(n) => {
                hasher.update(&buf[..n]);
                bytes += n as u64;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(io::Error::new(e.kind(), format!("{e} after {bytes} bytes"))),
        }
    }
}

/// Full duplex over an established TLS session: sends `send` (then `close_notify` and `FIN`)
/// from a second thread while this one reads until the peer's `close_notify`. Returns what was
/// received and how sending ended.
///
/// One lock guards the rustls state and is never held across socket I/O, so each direction
/// blocks only on its own socket operation; records reach the socket in the order rustls
/// produced them because only the sending thread writes to the socket.
pub fn tls_duplex(
    sock: TcpStream,
    conn: Connection,
    send: Pattern,
) -> (io::Result<Received>, io::Result<()>) {
    let conn = Arc::new(Mutex::new(conn));
    let mut write_sock = match sock.try_clone() {
        Ok(s) => s,
        Err(e) => return (Err(e), Err(io::Error::other("no writer: try_clone failed"))),
    };
    let writer = {
        let conn = conn.clone();
        thread::spawn(move || send_all(&conn, &mut write_sock, send))
    };
    let mut read_sock = sock;
    let got = receive_all(&conn, &mut read_sock);
    if got.is_err() {
        // Unblocks the writer, which would otherwise wait on a peer that stopped reading.
        let _ = read_sock.shutdown(Shutdown::Both);
    }
    let sent = writer
        .join()
        .unwrap_or_else(|_| Err(io::Error::other("TLS writer thread panicked")));
    (got, sent)
}

fn send_all(conn: &Mutex<Connection>, sock: &mut TcpStream, send: Pattern) -> io::Result<()> {
    let mut out = Vec::with_capacity(2 * CHUNK);
    let mut sent = 0u64;
    let context = |e: io::Error, sent: u64| {
        io::Error::new(
            e.kind(),
            format!("{e} after sending {sent} of {} bytes", send.len),
        )
    };
    send.for_each_chunk(|chunk| {
        let mut off = 0;
        while off < chunk.len() {
            {
                let mut c = conn.lock().expect("TLS state");
                let n = c
                    .writer()
                    .write(&chunk[off..])
                    .map_err(|e| context(e, sent))?;
                if n == 0 && !c.wants_write() {
                    return Err(io::Error::other("rustls accepted no plaintext"));
                }
                off += n;
                sent += n as u64;
                while c.wants_write() {
                    c.write_tls(&mut out)?;
                }
            }
            sock.write_all(&out).map_err(|e| context(e, sent))?;
            out.clear();
        }
        Ok(())
    })?;
    {
        let mut c = conn.lock().expect("TLS state");
        c.send_close_notify();
        while c.wants_write() {
            c.write_tls(&mut out)?;
        }
    }
    sock.write_all(&out).map_err(|e| context(e, sent))?;
    sock.shutdown(Shutdown::Write)
}

fn receive_all(conn: &Mutex<Connection>, sock: &mut TcpStream) -> io::Result<Received> {
    let mut hasher = Sha256::new();
    let mut bytes = 0u64;
    let mut buf = vec![0u8; CHUNK];
    let mut plain = vec![0u8; CHUNK];
    let context = |e: io::Error, bytes: u64| {
        io::Error::new(e.kind(), format!("{e} after receiving {bytes} bytes"))
    };
    loop {
        let n = match sock.read(&mut buf) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(context(e, bytes)),
        };
        let mut c = conn.lock().expect("TLS state");
        let mut input = &buf[..n];
        loop {
            let used = if n == 0 {
                c.read_tls(&mut io::empty())?
            } else {
                c.read_tls(&mut input)?
            };
            c.process_new_packets()
                .map_err(|e| context(io::Error::new(io::ErrorKind::InvalidData, e), bytes))?;
            loop {
                match c.reader().read(&mut plain) {
                    Ok(0) => {
                        return Ok(Received {
                            bytes,
                            sha256: Digest(hasher.finalize().into()),
                        })
                    }
                    Ok(k) => {
                        hasher.update(&plain[..k]);
                        bytes += k as u64;
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) => return Err(context(e, bytes)),
                }
            }
            if n == 0 {
                return Err(context(
                    io::Error::new(io::ErrorKind::UnexpectedEof, "TCP EOF without close_notify"),
                    bytes,
                ));
            }
            if input.is_empty() {
                break;
            }
            if used == 0 {
                return Err(io::Error::other("rustls accepted no ciphertext"));
            }
        }
    }
}
