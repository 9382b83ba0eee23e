//! Reading a client's ClientHello before choosing anything (rustls `Acceptor`), so the server can
//! be picked and asked about ALPN before the client's handshake is answered.

use std::io;

use rustls::server::{Accepted, AcceptedAlert, Acceptor};

use super::stream::RX_INITIAL;
use crate::net::TcpStream;

/// Largest ClientHello ringmaster waits for; one with a post-quantum key share and many extensions
/// is under 4 KiB, and rustls caps handshake messages at 64 KiB anyway.
pub const MAX_HELLO_BYTES: usize = 64 * 1024;

/// A parsed ClientHello and the ciphertext read after it, to hand to the connection.
pub struct Hello {
    /// The accepted hello; turn it into a connection with `into_connection`.
    pub accepted: Accepted,
    /// Receive buffer and the offset of its first byte rustls has not consumed.
    pub leftover: (Vec<u8>, usize),
}

/// Reads from `tcp` until a whole ClientHello has arrived. Garbage, a non-TLS client or EOF ends in
/// an error (and the alert rustls prepared is sent).
pub async fn read_client_hello(tcp: &TcpStream) -> io::Result<Hello> {
    let mut acceptor = Acceptor::default();
    let mut buf = Vec::with_capacity(RX_INITIAL);
    let mut total = 0usize;
    loop {
        let (res, b) = tcp.read(buf).await;
        buf = b;
        let n = res?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "client closed before sending a complete ClientHello",
            ));
        }
        total += n;
        let mut start = 0;
        while start < n {
            let mut pending = &buf[start..n];
            let used = acceptor.read_tls(&mut pending)?;
            start += used;
            match acceptor.accept() {
                Ok(Some(accepted)) => {
                    return Ok(Hello {
                        accepted,
                        leftover: (buf, start),
                    })
                }
                Ok(None) => {}
                Err((e, alert)) => {
                    send_alert(tcp, alert).await;
                    return Err(io::Error::new(io::ErrorKind::InvalidData, e));
                }
            }
            if used == 0 {
                break;
            }
        }
        if total > MAX_HELLO_BYTES {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "ClientHello larger than 64 KiB",
            ));
        }
    }
}

/// Writes a rustls alert to the socket, ignoring failures (the connection is being dropped).
pub async fn send_alert(tcp: &TcpStream, mut alert: AcceptedAlert) {
    let mut out = Vec::new();
    if alert.write_all(&mut out).is_ok() && !out.is_empty() {
        let _ = tcp.write_all(out).await;
    }
}
