//! TLS clients: [`ClientSetup`] builds a rustls client config with a chosen trust, ALPN,
//! versions and session store; connects (from a chosen source address) and completes a
//! handshake; round trips and line reads over a session.

use std::io::{self, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::sync::Arc;

use rustls::client::{ClientSessionMemoryCache, ClientSessionStore, Resumption};
use rustls::{
    ClientConfig, ClientConnection, RootCertStore, StreamOwned, SupportedProtocolVersion,
};
use rustls_pki_types::ServerName;

use super::{handshake, provider, Pki};
use crate::common::IO_TIMEOUT;

/// A client side TLS session.
pub type ClientStream = StreamOwned<ClientConnection, TcpStream>;

/// How a test client checks the server's certificate.
#[derive(Clone)]
pub enum Trust {
    /// Against these roots, for the name it asked for (a real client).
    Roots(Arc<RootCertStore>),
    /// Not at all (handshake signatures are still checked): to look at whatever certificate a
    /// server presents.
    Any,
}

/// What a test client offers. Build with [`ClientSetup::new`] and the methods below.
#[derive(Clone)]
pub struct ClientSetup {
    trust: Trust,
    alpn: Vec<String>,
    versions: Vec<&'static SupportedProtocolVersion>,
    sessions: Option<Arc<dyn ClientSessionStore>>,
}

impl ClientSetup {
    /// TLS 1.3 and 1.2, no ALPN, no resumption.
    pub fn new(trust: Trust) -> ClientSetup {
        ClientSetup {
            trust,
            alpn: Vec::new(),
            versions: vec![&rustls::version::TLS13, &rustls::version::TLS12],
            sessions: None,
        }
    }

    /// Offers `alpn`, in this order.
    pub fn alpn(mut self, alpn: &[&str]) -> ClientSetup {
        self.alpn = alpn.iter().map(|s| s.to_string()).collect();
        self
    }

    /// Offers only `versions`.
    pub fn versions(mut self, versions: &[&'static SupportedProtocolVersion]) -> ClientSetup {
        self.versions = versions.to_vec();
        self
    }

    /// Keeps sessions in `store` and resumes from it: clients built with the same store share
    /// their tickets.
    pub fn sessions(mut self, store: Arc<dyn ClientSessionStore>) -> ClientSetup {
        self.sessions = Some(store);
        self
    }

    /// The rustls client config.
    pub fn build(&self) -> Arc<ClientConfig> {
        let builder = ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(&self.versions)
            .expect("client versions");
        let mut config = match &self.trust {
            Trust::Roots(roots) => builder
                .with_root_certificates(roots.clone())
                .with_no_client_auth(),
            Trust::Any => builder
                .dangerous()
                // ringmaster's own `verify = "none"` verifier: any certificate, signatures still checked.
                .with_custom_certificate_verifier(ringmaster::tls::client::accept_any(&provider()))
                .with_no_client_auth(),
        };
        config.alpn_protocols = self.alpn.iter().map(|p| p.as_bytes().to_vec()).collect();
        config.resumption = match &self.sessions {
            Some(store) => Resumption::store(store.clone()),
            None => Resumption::disabled(),
        };
        Arc::new(config)
    }
}

/// A client that trusts the test CA.
pub fn ca_client(pki: &Pki) -> ClientSetup {
    ClientSetup::new(Trust::Roots(pki.ca.roots()))
}

/// A client session store for [`ClientSetup::sessions`].
pub fn session_store() -> Arc<ClientSessionMemoryCache> {
    Arc::new(ClientSessionMemoryCache::new(64))
}

/// `sni` as a rustls server name; an IP literal makes the client send no SNI at all.
pub fn server_name(sni: &str) -> ServerName<'static> {
    match sni.parse::<IpAddr>() {
        Ok(ip) => ServerName::IpAddress(ip.into()),
        Err(_) => ServerName::try_from(sni.to_owned()).expect("valid DNS name"),
    }
}

/// Connects from 127.0.0.1 and completes a handshake asking for `sni`.
pub fn tls_connect(
    addr: SocketAddr,
    config: &Arc<ClientConfig>,
    sni: &str,
) -> io::Result<ClientStream> {
    tls_connect_from(IpAddr::from([127, 0, 0, 1]), addr, config, sni)
}

/// Connects from `source` (any port) and completes a handshake asking for `sni`.
pub fn tls_connect_from(
    source: IpAddr,
    addr: SocketAddr,
    config: &Arc<ClientConfig>,
    sni: &str,
) -> io::Result<ClientStream> {
    let mut sock = connect_from(source, addr)?;
    let mut conn = ClientConnection::new(config.clone(), server_name(sni))
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    handshake(&mut conn, &mut sock)?;
    Ok(StreamOwned::new(conn, sock))
}

/// A TCP connection from `source` (kernel-chosen port) to `addr`, with the client timeouts.
pub fn connect_from(source: IpAddr, addr: SocketAddr) -> io::Result<TcpStream> {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        Some(socket2::Protocol::TCP),
    )?;
    socket.bind(&SocketAddr::new(source, 0).into())?;
    socket.connect_timeout(&addr.into(), IO_TIMEOUT)?;
    let sock: TcpStream = socket.into();
    sock.set_read_timeout(Some(IO_TIMEOUT))?;
    sock.set_write_timeout(Some(IO_TIMEOUT))?;
    sock.set_nodelay(true)?;
    Ok(sock)
}

/// Writes `msg` and reads back exactly as many bytes over a TLS session.
pub fn tls_round_trip(s: &mut ClientStream, msg: &[u8]) -> io::Result<Vec<u8>> {
    s.write_all(msg)?;
    s.flush()?;
    let mut back = vec![0u8; msg.len()];
    s.read_exact(&mut back)?;
    Ok(back)
}

/// Reads one line (at most 256 bytes) from a TLS session.
pub fn tls_read_line(s: &mut ClientStream) -> io::Result<String> {
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    while line.len() < 256 {
        s.read_exact(&mut byte)?;
        line.push(byte[0]);
        if byte[0] == b'\n' {
            return Ok(String::from_utf8_lossy(&line).into_owned());
        }
    }
    Err(io::Error::new(io::ErrorKind::InvalidData, "line too long"))
}
