//! The client side of the TLS-terminating modes: reading the ClientHello, then answering it and
//! completing the client's handshake. Failures are the client's: logged with `side=client`, and
//! the connection is closed.

use std::net::SocketAddr;
use std::sync::Arc;

use rustls::{Connection, ServerConfig};

use super::record::{Record, TlsInfo};
use super::relay::Side;
use super::ServiceState;
use crate::net::TcpStream;
use crate::tls::accept::{read_client_hello, send_alert, Hello};
use crate::tls::stream::TlsStream;

/// Reads the client's ClientHello; `None` (logged) on garbage, EOF or a bad hello.
pub(crate) async fn client_hello(
    client: &TcpStream,
    service: &ServiceState,
    peer: SocketAddr,
    record: &mut Record,
) -> Option<Hello> {
    match read_client_hello(client).await {
        Ok(hello) => Some(hello),
        Err(e) => {
            service.counters.client_tls_errors.inc();
            record.fail(Side::Client, format!("TLS before the handshake: {e}"));
            tracing::info!(service = %service.config().name, client = %peer, error = %e, "client TLS failed before the handshake (side=client)");
            None
        }
    }
}

/// Answers `hello` with `config` and completes the client's handshake.
pub(crate) async fn accept_client<'c>(
    client: &'c TcpStream,
    hello: Hello,
    config: Arc<ServerConfig>,
    service: &ServiceState,
    peer: SocketAddr,
    record: &mut Record,
) -> Option<TlsStream<&'c TcpStream>> {
    let name = &service.config().name;
    let conn = match hello.accepted.into_connection(config) {
        Ok(conn) => conn,
        Err((e, alert)) => {
            send_alert(client, alert).await;
            service.counters.client_tls_errors.inc();
            record.fail(Side::Client, format!("TLS handshake refused: {e}"));
            tracing::info!(service = %name, client = %peer, error = %e, "client TLS handshake refused (side=client)");
            return None;
        }
    };
    let client = TlsStream::new(client, Connection::Server(conn), Some(hello.leftover));
    if let Err(e) = client.handshake().await {
        service.counters.client_tls_errors.inc();
        record.fail(Side::Client, format!("TLS handshake: {e}"));
        tracing::info!(service = %name, client = %peer, error = %e, "client TLS handshake failed (side=client)");
        return None;
    }
    record.tls = Some(client.with_conn(TlsInfo::of));
    Some(client)
}
