//! Offload mode: TLS from the client ends here; plain TCP to the server.

use std::net::SocketAddr;
use std::time::Instant;

use rustls::Connection;

use super::passthrough::connect_plain;
use super::registry::ConnGuard;
use super::relay::relay;
use super::{log_close, ServiceState};
use crate::net::TcpStream;
use crate::tls::accept::{read_client_hello, send_alert};
use crate::tls::stream::TlsStream;

/// Serves one offload connection: client handshake first, then the server.
pub async fn serve(client: TcpStream, peer: SocketAddr, service: &ServiceState, guard: &ConnGuard) {
    let config = service.config();
    let Some(front) = service.front_tls.clone() else {
        tracing::error!(service = %config.name, "offload service without TLS configuration; closing client");
        return;
    };
    let hello = match read_client_hello(&client).await {
        Ok(hello) => hello,
        Err(e) => {
            tracing::info!(service = %config.name, client = %peer, error = %e, "client TLS failed before the handshake (side=client)");
            return;
        }
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
    let Some(server) = connect_plain(service, peer).await else {
        return;
    };
    guard.set_server_fd(server.stream.raw_fd());
    let started = Instant::now();
    let outcome = relay(&client, &server.stream, guard).await;
    log_close(service, peer, server.address, guard, &outcome, started);
}
