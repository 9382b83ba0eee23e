//! Passthrough mode: pick a server, connect (failing over to the others), relay bytes untouched.

use std::net::SocketAddr;

use super::record::Record;
use super::registry::ConnGuard;
use super::relay::relay;
use super::{ServiceState, Upstream};
use crate::net::{connect::connect, TcpStream};

/// Serves one passthrough connection.
pub async fn serve(
    client: TcpStream,
    peer: SocketAddr,
    service: &ServiceState,
    guard: &ConnGuard,
    record: &mut Record,
) {
    let Some(server) = connect_plain(service, peer, guard, record).await else {
        return;
    };
    guard.set_server_fd(server.stream.raw_fd());
    record.outcome = Some(relay(&client, &server.stream, guard).await);
}

/// Connects to the chosen server, failing over to each other usable server once. `None` (logged
/// and recorded) when every server refused, timed out or is down.
pub(crate) async fn connect_plain(
    service: &ServiceState,
    peer: SocketAddr,
    guard: &ConnGuard,
    record: &mut Record,
) -> Option<Upstream<TcpStream>> {
    let config = service.config();
    let order = service.plan(peer, record);
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
            return Some(service.upstream(peer, index, server, guard, record));
        }
        match connect(address, config.connect_timeout).await {
            Ok(server) => return Some(service.upstream(peer, index, server, guard, record)),
            Err(e) => {
                service.server_counters[index].connect_errors.inc();
                tracing::warn!(service = %config.name, server = %address, client = %peer, error = %e, "connect to server failed; trying the next one");
            }
        }
    }
    tracing::warn!(service = %config.name, client = %peer, "no server could be reached; closing the client");
    service.unreachable(record);
    None
}
