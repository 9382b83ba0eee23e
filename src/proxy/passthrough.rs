//! Passthrough mode: pick a server, connect (failing over to the others), relay bytes untouched.

use std::net::SocketAddr;
use std::time::Instant;

use super::registry::ConnGuard;
use super::relay::relay;
use super::{log_close, ServiceState, Upstream};
use crate::net::{connect::connect, TcpStream};

/// Serves one passthrough connection.
pub async fn serve(client: TcpStream, peer: SocketAddr, service: &ServiceState, guard: &ConnGuard) {
    let Some(server) = connect_plain(service, peer).await else {
        return;
    };
    guard.set_server_fd(server.stream.raw_fd());
    let started = Instant::now();
    let outcome = relay(&client, &server.stream, guard).await;
    log_close(service, peer, server.address, guard, &outcome, started);
}

/// Connects to the chosen server, failing over to each other usable server once. `None` (logged)
/// when every server refused, timed out or is down.
pub(crate) async fn connect_plain(
    service: &ServiceState,
    peer: SocketAddr,
) -> Option<Upstream<TcpStream>> {
    let config = service.config();
    let order = service.plan(peer);
    if order.is_empty() {
        return None;
    }
    for index in order {
        let address = config.servers[index].address;
        if let Some(server) = service
            .tcp_pool
            .as_ref()
            .and_then(|pool| pool.take(index, &()))
        {
            return Some(service.upstream(peer, index, server));
        }
        match connect(address, config.connect_timeout).await {
            Ok(server) => return Some(service.upstream(peer, index, server)),
            Err(e) => {
                tracing::warn!(service = %config.name, server = %address, client = %peer, error = %e, "connect to server failed; trying the next one");
            }
        }
    }
    tracing::warn!(service = %config.name, client = %peer, "no server could be reached; closing the client");
    None
}
