//! Loopback ports and client sockets: ports chosen by the kernel and never handed out twice in
//! one test process, connects with the client timeouts ([`IO_TIMEOUT`]), waits for a refused
//! connect or a closed connection, and small bounded reads and round trips.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use super::{CHUNK, IO_TIMEOUT};

/// A loopback port that was free a moment ago (bind 127.0.0.1:0, read the port, drop).
pub fn free_port() -> u16 {
    free_ports(1)[0]
}

/// `n` distinct loopback ports that were free a moment ago: all are held at once before being
/// released, so they cannot repeat, and no port is handed out twice in one test process (the
/// kernel may give a just-released port again, which made two services share a port).
pub fn free_ports(n: usize) -> Vec<u16> {
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
    let mut held: Vec<TcpListener> = Vec::new();
    let mut ports = Vec::with_capacity(n);
    while ports.len() < n {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let port = listener.local_addr().expect("local_addr").port();
        if !given.contains(&port) {
            given.push(port);
            ports.push(port);
        }
        // Held until all are chosen, so a refused duplicate is not offered again at once.
        held.push(listener);
    }
    ports
}

/// A loopback address with nothing listening on it: connecting there is refused.
pub fn dead_addr() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], free_port()))
}

/// Sets the client-side timeouts and `TCP_NODELAY` on a socket.
fn client_socket(stream: &TcpStream) {
    stream
        .set_read_timeout(Some(IO_TIMEOUT))
        .expect("set_read_timeout");
    stream
        .set_write_timeout(Some(IO_TIMEOUT))
        .expect("set_write_timeout");
    stream.set_nodelay(true).expect("set_nodelay");
}

/// Connects with [`IO_TIMEOUT`] as connect, read and write timeout.
pub fn try_connect(addr: SocketAddr) -> io::Result<TcpStream> {
    let stream = TcpStream::connect_timeout(&addr, IO_TIMEOUT)?;
    client_socket(&stream);
    Ok(stream)
}

/// Like [`try_connect`], panicking with the address on failure.
pub fn connect(addr: SocketAddr) -> TcpStream {
    try_connect(addr).unwrap_or_else(|e| panic!("connect to {addr}: {e}"))
}

/// Polls until a connect to `addr` is refused, closing any connection that still got through;
/// true if refused before `within` passed.
pub fn wait_refused(addr: SocketAddr, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        match TcpStream::connect_timeout(&addr, Duration::from_millis(500)) {
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => return true,
            Ok(stream) => drop(stream),
            Err(_) => {}
        }
        thread::sleep(Duration::from_millis(20));
    }
    false
}

/// How a read on a connection that should be closed ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Closed {
    /// A FIN: `read` returned 0.
    Eof,
    /// A RST (or the socket was otherwise torn down).
    Reset(io::ErrorKind),
}

/// Reads until the peer closes, discarding data, with `within` as read timeout; returns how it
/// ended, or an error saying what was read instead (timeout, or data when `allow_data` is false).
pub fn wait_closed(
    stream: &mut TcpStream,
    within: Duration,
    allow_data: bool,
) -> Result<Closed, String> {
    let deadline = Instant::now() + within;
    let mut buf = vec![0u8; CHUNK];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(format!("still open after {within:?}"));
        }
        stream
            .set_read_timeout(Some(left))
            .expect("set_read_timeout");
        match stream.read(&mut buf) {
            Ok(0) => return Ok(Closed::Eof),
            Ok(_) if allow_data => {}
            Ok(n) => return Err(format!("got {n} bytes instead of a close")),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return Err(format!("still open after {within:?}"));
            }
            Err(e) => return Ok(Closed::Reset(e.kind())),
        }
    }
}

/// Reads one line (up to and including `\n`, at most 256 bytes) without reading past it.
pub fn read_line(stream: &mut TcpStream) -> io::Result<String> {
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    while line.len() < 256 {
        match stream.read(&mut byte) {
            Ok(0) => {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("EOF after {:?}", String::from_utf8_lossy(&line)),
                ))
            }
            Ok(_) => {
                line.push(byte[0]);
                if byte[0] == b'\n' {
                    return Ok(String::from_utf8_lossy(&line).into_owned());
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Err(io::Error::new(
        io::ErrorKind::InvalidData,
        "line longer than 256 bytes",
    ))
}

/// Writes `msg` and reads back exactly as many bytes: one echo round trip.
pub fn echo_round_trip(stream: &mut TcpStream, msg: &[u8]) -> io::Result<Vec<u8>> {
    stream.write_all(msg)?;
    let mut back = vec![0u8; msg.len()];
    stream.read_exact(&mut back)?;
    Ok(back)
}
