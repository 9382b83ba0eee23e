//! Offload mode: TLS from the client ends here; plain TCP to the server.

use std::net::SocketAddr;

use super::front::{accept_client, client_hello};
use super::passthrough::connect_plain;
use super::record::Record;
use super::registry::ConnGuard;
use super::relay::relay;
use super::ServiceState;
use crate::net::TcpStream;

/// Serves one offload connection: client handshake first, then the server.
pub async fn serve(
    client: &TcpStream,
    peer: SocketAddr,
    service: &ServiceState,
    guard: &ConnGuard,
    record: &mut Record,
) {
    let config = service.config();
    let Some(front) = service.front_tls.clone() else {
        tracing::error!(service = %config.name, "offload service without TLS configuration; closing client");
        return;
    };
    let Some(hello) = client_hello(client, service, peer, record).await else {
        return;
    };
    let Some(client) = accept_client(client, hello, front, service, peer, record).await else {
        return;
    };
    let Some(server) = connect_plain(service, peer, guard, record).await else {
        return;
    };
    guard.set_server_fd(server.stream.raw_fd());
    record.outcome = Some(relay(&client, &server.stream, guard).await);
}
