//! Passthrough mode: pick a server, connect (failing over to the others), relay bytes untouched.

use std::net::SocketAddr;
use std::time::Instant;

use super::registry::ConnGuard;
use super::relay::relay;
use super::{log_close, ServiceState};
use crate::net::{connect::connect, TcpStream};

/// Serves one passthrough connection.
pub async fn serve(client: TcpStream, peer: SocketAddr, service: &ServiceState, guard: &ConnGuard) {
    let Some((server, address)) = connect_plain(service, peer).await else {
        return;
    };
    guard.set_server_fd(server.raw_fd());
    let started = Instant::now();
    let outcome = relay(&client, &server, guard).await;
    log_close(service, peer, address, guard, &outcome, started);
}

/// Connects to the scheduled server, failing over to each other server once. `None` (logged) when
/// every server refused or timed out.
pub(crate) async fn connect_plain(
    service: &ServiceState,
    peer: SocketAddr,
) -> Option<(TcpStream, SocketAddr)> {
    let config = service.config();
    let order = service.scheduler.borrow_mut().failover_order();
    for index in order {
        let address = config.servers[index].address;
        match connect(address, config.connect_timeout).await {
            Ok(server) => return Some((server, address)),
            Err(e) => {
                tracing::warn!(service = %config.name, server = %address, client = %peer, error = %e, "connect to server failed; trying the next one");
            }
        }
    }
    tracing::warn!(service = %config.name, client = %peer, "no server could be reached; closing the client");
    None
}
