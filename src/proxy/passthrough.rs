//! Passthrough mode: pick a server, connect (failing over to the others), relay bytes untouched.

use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Instant;

use super::registry::Registry;
use super::relay::{relay, Side};
use super::ServiceState;
use crate::net::{connect::connect, TcpStream};

/// Serves one passthrough connection.
pub async fn serve(
    client: TcpStream,
    peer: SocketAddr,
    service: &ServiceState,
    registry: &Rc<Registry>,
) {
    let config = &service.config;
    let order = service.scheduler.borrow_mut().failover_order();
    for index in order {
        let address = config.servers[index].address;
        let server = match connect(address, config.connect_timeout).await {
            Ok(server) => server,
            Err(e) => {
                tracing::warn!(service = %config.name, server = %address, client = %peer, error = %e, "connect to server failed; trying the next one");
                continue;
            }
        };
        let started = Instant::now();
        // Declared after both sockets, so it is dropped (unregistered) before they close.
        let guard = registry.register([client.raw_fd(), server.raw_fd()], config.idle_timeout);
        let outcome = relay(&client, &server, &guard).await;
        let ended = match &outcome.error {
            _ if guard.activity().timed_out() => "idle timeout".to_string(),
            None => "closed".to_string(),
            Some((Side::Client, e)) => format!("client error: {e}"),
            Some((Side::Server, e)) => format!("server error: {e}"),
        };
        tracing::debug!(
            service = %config.name, client = %peer, server = %address,
            bytes_in = outcome.client_to_server, bytes_out = outcome.server_to_client,
            duration_ms = started.elapsed().as_millis() as u64, ended = %ended,
            "connection closed"
        );
        return;
    }
    tracing::warn!(service = %config.name, client = %peer, "no server could be reached; closing the client");
}
