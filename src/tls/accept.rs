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

/// Why a ClientHello was refused, with the alert rustls prepared for the client, if any.
#[derive(Debug)]
pub struct HelloError {
    /// What was wrong.
    pub error: io::Error,
    /// The alert to send before closing.
    pub alert: Option<AcceptedAlert>,
}

impl HelloError {
    fn invalid(why: &'static str) -> Self {
        Self {
            error: io::Error::new(io::ErrorKind::InvalidData, why),
            alert: None,
        }
    }
}

/// Takes a client's first bytes, in whatever pieces they arrive, until they make a whole
/// ClientHello. Sans I/O, so the socket reader and the fuzz target share it.
#[derive(Default)]
pub struct HelloParser {
    acceptor: Acceptor,
    total: usize,
}

impl HelloParser {
    /// Feeds the next `data` received. `Ok(Some((hello, used)))` once the hello is complete,
    /// with how many bytes of `data` it took (the rest belongs to the handshake that follows);
    /// `Ok(None)` when more is needed; an error for garbage, a bad hello or one over
    /// [`MAX_HELLO_BYTES`].
    pub fn feed(&mut self, data: &[u8]) -> Result<Option<(Accepted, usize)>, HelloError> {
        self.total += data.len();
        let mut start = 0;
        while start < data.len() {
            let mut pending = &data[start..];
            let used = self
                .acceptor
                .read_tls(&mut pending)
                .map_err(|error| HelloError { error, alert: None })?;
            start += used;
            match self.acceptor.accept() {
                Ok(Some(accepted)) => return Ok(Some((accepted, start))),
                Ok(None) => {}
                Err((e, alert)) => {
                    return Err(HelloError {
                        error: io::Error::new(io::ErrorKind::InvalidData, e),
                        alert: Some(alert),
                    })
                }
            }
            if used == 0 {
                break;
            }
        }
        if self.total > MAX_HELLO_BYTES {
            return Err(HelloError::invalid("ClientHello larger than 64 KiB"));
        }
        Ok(None)
    }
}

/// Reads from `tcp` until a whole ClientHello has arrived. Garbage, a non-TLS client or EOF ends in
/// an error (and the alert rustls prepared is sent).
pub async fn read_client_hello(tcp: &TcpStream) -> io::Result<Hello> {
    let mut parser = HelloParser::default();
    let mut buf = Vec::with_capacity(RX_INITIAL);
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
        match parser.feed(&buf[..n]) {
            Ok(Some((accepted, used))) => {
                return Ok(Hello {
                    accepted,
                    leftover: (buf, used),
                })
            }
            Ok(None) => {}
            Err(HelloError { error, alert }) => {
                if let Some(alert) = alert {
                    send_alert(tcp, alert).await;
                }
                return Err(error);
            }
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
