//! Re-encrypt mode: TLS from the client ends here and a new TLS session goes to the server.
//!
//! The ClientHello is read first. The server is then connected and handshaken with the client's
//! ALPN list (and its SNI, unless one is configured), and the client is answered with the ALPN the
//! server chose: h2 and http/1.1 both work end to end without ringmaster parsing HTTP.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use rustls::client::ClientConnection;
use rustls::Connection;
use rustls_pki_types::ServerName;

use super::registry::ConnGuard;
use super::relay::relay;
use super::{log_close, ServiceState, Upstream};
use crate::net::deadline::Deadline;
use crate::net::{connect::connect, TcpStream};
use crate::tls::accept::{read_client_hello, send_alert};
use crate::tls::stream::TlsStream;

/// Serves one re-encrypt connection.
pub async fn serve(client: TcpStream, peer: SocketAddr, service: &ServiceState, guard: &ConnGuard) {
    let config = service.config();
    let Some(front) = service.front_tls.as_ref() else {
        tracing::error!(service = %config.name, "reencrypt service without TLS configuration; closing client");
        return;
    };
    let hello = match read_client_hello(&client).await {
        Ok(hello) => hello,
        Err(e) => {
            tracing::info!(service = %config.name, client = %peer, error = %e, "client TLS failed before the handshake (side=client)");
            return;
        }
    };
    let client_hello = hello.accepted.client_hello();
    let client_sni = client_hello.server_name().map(str::to_owned);
    let alpn: Vec<Vec<u8>> = client_hello
        .alpn()
        .map(|list| list.map(<[u8]>::to_vec).collect())
        .unwrap_or_default();

    let Some(server) = connect_tls(service, peer, client_sni.as_deref(), &alpn, guard).await
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
    let conn = match hello.accepted.into_connection(front) {
        Ok(conn) => conn,
        Err((e, alert)) => {
            send_alert(&client, alert).await;
            tracing::info!(service = %config.name, client = %peer, error = %e, "client TLS handshake refused (side=client)");
            return;
        }
    };
    let client = TlsStream::new(client, Connection::Server(conn), Some(hello.leftover));
    if let Err(e) = client.handshake().await {
        tracing::info!(service = %config.name, client = %peer, error = %e, "client TLS handshake failed (side=client)");
        return;
    }
    let started = Instant::now();
    let outcome = relay(&client, &server.stream, guard).await;
    log_close(service, peer, server.address, guard, &outcome, started);
}

/// Connects and handshakes with the scheduled server, failing over to each other server once on a
/// connect or TLS failure (a wrong certificate on one server is that server's fault).
async fn connect_tls(
    service: &ServiceState,
    peer: SocketAddr,
    client_sni: Option<&str>,
    alpn: &[Vec<u8>],
    guard: &ConnGuard,
) -> Option<Upstream<TlsStream>> {
    let config = service.config();
    let backend = config.backend_tls.as_ref()?;
    let order = service.plan(peer);
    if order.is_empty() {
        return None;
    }
    for index in order {
        let address = config.servers[index].address;
        let tcp = match connect(address, config.connect_timeout).await {
            Ok(tcp) => tcp,
            Err(e) => {
                tracing::warn!(service = %config.name, server = %address, client = %peer, error = %e, "connect to server failed; trying the next one");
                continue;
            }
        };
        guard.set_server_fd(tcp.raw_fd());
        let name = backend
            .sni
            .clone()
            .or_else(|| client_sni.and_then(|s| ServerName::try_from(s.to_owned()).ok()))
            .unwrap_or_else(|| ServerName::IpAddress(address.ip().into()));
        let conn = match ClientConnection::new_with_alpn(
            service.backend_tls[index].clone(),
            name,
            alpn.to_vec(),
        ) {
            Ok(conn) => conn,
            Err(e) => {
                tracing::error!(service = %config.name, server = %address, error = %e, "cannot start server TLS session");
                continue;
            }
        };
        let server = TlsStream::new(tcp, Connection::Client(conn), None);
        // The handshake gets the connect timeout too: a server that accepts TCP but never
        // answers TLS is skipped like one that refuses the connection.
        let deadline = Deadline::arm(server.tcp().raw_fd(), config.connect_timeout);
        if let Err(e) = server.handshake().await {
            let why = if deadline.fired() {
                format!("no TLS answer within {:?}", config.connect_timeout)
            } else {
                e.to_string()
            };
            tracing::warn!(service = %config.name, server = %address, client = %peer, error = %why, "server TLS handshake failed (side=server); trying the next server");
            continue;
        }
        drop(deadline);
        if let (Some(ep), Some(resolver)) = (&service.shared.ep, &service.shared.resolver) {
            let full =
                server.with_conn(|c| c.handshake_kind() == Some(rustls::HandshakeKind::Full));
            if full {
                if let Some(cert) = server.with_conn(|c| {
                    c.peer_certificates()
                        .and_then(|certs| certs.first().cloned())
                }) {
                    // Compare with what this client is about to be shown for its SNI.
                    ep.observe(index, cert.as_ref(), &resolver.select(client_sni));
                }
            }
        }
        return Some(service.upstream(peer, index, server));
    }
    tracing::warn!(service = %config.name, client = %peer, "no server could be reached over TLS; closing the client");
    None
}
