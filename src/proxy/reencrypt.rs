//! Re-encrypt mode: TLS from the client ends here and a new TLS session goes to the server.
//!
//! The ClientHello is read first. The server is then connected and handshaken with the client's
//! ALPN list (and its SNI, unless one is configured), and the client is answered with the ALPN the
//! server chose: h2 and http/1.1 both work end to end without ringmaster parsing HTTP.

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;

use rustls::client::ClientConnection;
use rustls::Connection;
use rustls_pki_types::ServerName;

use super::front::{accept_client, client_hello};
use super::record::Record;
use super::registry::ConnGuard;
use super::relay::relay;
use super::{ServiceState, Upstream};
use crate::net::{connect::connect, TcpStream};

use crate::tls::stream::TlsStream;

/// Serves one re-encrypt connection.
pub async fn serve(
    client: &TcpStream,
    peer: SocketAddr,
    service: &ServiceState,
    guard: &ConnGuard,
    record: &mut Record,
) {
    let config = service.config();
    let Some(front) = service.front_tls.as_ref() else {
        tracing::error!(service = %config.name, "reencrypt service without TLS configuration; closing client");
        return;
    };
    let Some(hello) = client_hello(client, service, peer, record).await else {
        return;
    };
    let offered = hello.accepted.client_hello();
    let client_sni = offered.server_name().map(str::to_owned);
    let alpn: Vec<Vec<u8>> = offered
        .alpn()
        .map(|list| list.map(<[u8]>::to_vec).collect())
        .unwrap_or_default();

    let Some(server) =
        connect_tls(service, peer, client_sni.as_deref(), &alpn, guard, record).await
    else {
        return;
    };

    // Answer the client with what the server chose (or nothing, if it chose nothing).
    let front = if alpn.is_empty() {
        front.clone()
    } else {
        let mut cfg = (**front).clone();
        cfg.alpn_protocols = server.stream.with_conn(|c| {
            c.alpn_protocol()
                .map(|p| vec![p.to_vec()])
                .unwrap_or_default()
        });
        Arc::new(cfg)
    };
    let Some(client) = accept_client(client, hello, front, service, peer, record).await else {
        return;
    };
    record.outcome = Some(relay(&client, &server.stream, guard).await);
}

/// Connects and handshakes with the scheduled server, failing over to each other server once on a
/// connect or TLS failure (a wrong certificate on one server is that server's fault).
async fn connect_tls(
    service: &ServiceState,
    peer: SocketAddr,
    client_sni: Option<&str>,
    alpn: &[Vec<u8>],
    guard: &ConnGuard,
    record: &mut Record,
) -> Option<Upstream<TlsStream>> {
    let config = service.config();
    let order = service.plan(peer, record);
    if order.is_empty() {
        return None;
    }
    for index in order {
        let address = config.servers[index].address;
        let name = server_name(service, index, client_sni);
        let count = service.attempt(index);
        if let Some(pool) = &service.tls_pool {
            let key = (name.clone(), alpn.to_vec());
            pool.learn(index, &key);
            if let Some(server) = pool.take(index, &key) {
                guard.set_server_fd(server.tcp().raw_fd());
                return Some(service.upstream(peer, index, server, guard, record, count));
            }
        }
        let timeout = super::attempt_timeout(service, guard);
        match open_tls(service, index, name, alpn, client_sni, timeout).await {
            Ok(server) => {
                guard.set_server_fd(server.tcp().raw_fd());
                return Some(service.upstream(peer, index, server, guard, record, count));
            }
            Err(why) => {
                tracing::warn!(service = %config.name, server = %address, client = %peer, error = %why, "server connection failed (side=server); trying the next server");
            }
        }
    }
    tracing::warn!(service = %config.name, client = %peer, "no server could be reached over TLS; closing the client");
    service.unreachable(record);
    None
}

/// The name sent to server `index` as SNI and verified: `backend_tls.sni`, else the client's SNI,
/// else the server's IP address.
pub(crate) fn server_name(
    service: &ServiceState,
    index: usize,
    client_sni: Option<&str>,
) -> ServerName<'static> {
    let config = service.config();
    config
        .backend_tls
        .as_ref()
        .and_then(|b| b.sni.clone())
        .or_else(|| client_sni.and_then(|s| ServerName::try_from(s.to_owned()).ok()))
        .unwrap_or_else(|| ServerName::IpAddress(config.servers[index].address.ip().into()))
}

/// Connects to server `index` and completes a TLS handshake offering `alpn`, each step bounded
/// by `timeout` (`connect_timeout`, or less while a client's handshake deadline runs: a server that
/// accepts TCP but never answers TLS is given up like one that refuses). A full handshake is
/// checked by the Extended Protection monitor against the certificate a client asking for
/// `front_sni` gets.
pub(crate) async fn open_tls(
    service: &ServiceState,
    index: usize,
    name: ServerName<'static>,
    alpn: &[Vec<u8>],
    front_sni: Option<&str>,
    timeout: std::time::Duration,
) -> Result<TlsStream, OpenError> {
    let config = service.config();
    let address = config.servers[index].address;
    let counters = &service.server_counters[index];
    let tcp = connect(address, timeout).await.map_err(|e| {
        counters.connect_errors.inc();
        OpenError(format!("connect: {e}"))
    })?;
    let conn =
        ClientConnection::new_with_alpn(service.backend_tls[index].clone(), name, alpn.to_vec())
            .map_err(|e| OpenError(format!("cannot start the TLS session: {e}")))?;
    let server = TlsStream::new(tcp, Connection::Client(conn), None);
    let deadline = service.registry.deadline(server.tcp().raw_fd(), timeout);
    if let Err(e) = server.handshake().await {
        counters.tls_errors.inc();
        return Err(OpenError(if deadline.fired() {
            format!("TLS handshake: no TLS answer within {timeout:?}")
        } else {
            format!("TLS handshake: {e}")
        }));
    }
    drop(deadline);
    let kind = server.with_conn(|c| c.handshake_kind());
    tracing::debug!(service = %config.name, server = %address, handshake = ?kind, "server TLS session established");
    if let (Some(ep), Some(resolver)) = (&service.shared.ep, &service.shared.resolver) {
        let full = kind == Some(rustls::HandshakeKind::Full);
        let cert = server.with_conn(|c| {
            c.peer_certificates()
                .and_then(|certs| certs.first().cloned())
        });
        if let (true, Some(cert)) = (full, cert) {
            ep.observe(index, cert.as_ref(), &resolver.select(front_sni));
        }
    }
    Ok(server)
}

/// Why a connection to a server could not be opened (connect or TLS), in words.
#[derive(Debug)]
pub struct OpenError(String);

impl fmt::Display for OpenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
