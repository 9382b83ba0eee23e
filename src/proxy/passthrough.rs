//! Passthrough mode: pick a server, connect (failing over to the others), relay bytes untouched.

use std::net::SocketAddr;

use super::record::Record;
use super::registry::ConnGuard;
use super::relay::{RelayOutcome, Side};
use super::splice::splice;
use super::{ServiceState, Upstream};
use crate::net::recv::{Batch, Receiver};
use crate::net::{connect::connect, TcpStream};

/// Serves one passthrough connection: waits for the client's first bytes (within the handshake
/// timeout; a silent client never costs a server connection, nor a buffer: the wait is the
/// multishot receive the relay goes on with), unless the server speaks first, then connects and
/// relays, the first bytes first.
pub async fn serve(
    client: &TcpStream,
    peer: SocketAddr,
    service: &ServiceState,
    guard: &ConnGuard,
    record: &mut Record,
) {
    // With every server down the client is closed at once, not after its first byte.
    if !service.shared.balance.any_usable() {
        service.plan(peer, record);
        return;
    }
    let mut client_rx = Receiver::new(client);
    let mut first = Batch::new();
    if service.config().limits.handshake_timeout.is_some()
        && !first_bytes(&mut client_rx, &mut first, record).await
    {
        return;
    }
    guard.handshake_done();
    let Some(server) = connect_plain(service, peer, guard, record).await else {
        return;
    };
    guard.set_server_fd(server.stream.raw_fd());
    record.outcome = Some(splice(client_rx, first, &server.stream, guard).await);
}

/// Receives the client's first bytes into `first`; false (recorded) if it closed or failed
/// before sending any. A client that closes without a byte (a port probe) is a clean close, not
/// an error.
async fn first_bytes(rx: &mut Receiver<'_>, first: &mut Batch, record: &mut Record) -> bool {
    match rx.recv(first).await {
        Ok(true) => true,
        Ok(false) => {
            record.outcome = Some(RelayOutcome {
                first_close: Some(Side::Client),
                ..RelayOutcome::default()
            });
            false
        }
        Err(e) => {
            record.fail(Side::Client, format!("before its first byte: {e}"));
            false
        }
    }
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
        let count = service.attempt(index);
        if let Some(server) = service
            .tcp_pool
            .as_ref()
            .and_then(|pool| pool.take(index, &()))
        {
            return Some(service.upstream(peer, index, server, guard, record, count));
        }
        match connect(address, super::attempt_timeout(service, guard)).await {
            Ok(server) => return Some(service.upstream(peer, index, server, guard, record, count)),
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
