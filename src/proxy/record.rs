//! What is learned about one connection while it is served — the server that took it, the
//! client's TLS parameters, how the relay ended or why it never started — and what is done with
//! it at close: the per-core counters and one access log line.

use std::net::SocketAddr;
use std::time::{Instant, SystemTime};

use rustls::Connection;

use super::registry::{ConnGuard, Expiry};
use super::relay::{Failure, RelayOutcome, Side};
use super::ServiceState;
use crate::access_log::{End, Entry};

/// The client's TLS session, for the access log.
#[derive(Debug, Clone, Default)]
pub struct TlsInfo {
    /// `TLSv1.2` or `TLSv1.3`.
    pub version: Option<&'static str>,
    /// The negotiated cipher suite's IANA name.
    pub cipher: Option<&'static str>,
    /// The server name the client asked for.
    pub sni: Option<String>,
    /// The application protocol agreed.
    pub alpn: Option<String>,
}

impl TlsInfo {
    /// Reads the parameters of an established session.
    pub fn of(conn: &Connection) -> Self {
        let version = conn.protocol_version().map(|v| match v {
            rustls::ProtocolVersion::TLSv1_3 => "TLSv1.3",
            rustls::ProtocolVersion::TLSv1_2 => "TLSv1.2",
            _ => "TLS",
        });
        let cipher = conn
            .negotiated_cipher_suite()
            .and_then(|s| s.suite().as_str());
        let sni = match conn {
            Connection::Server(s) => s.server_name().map(str::to_owned),
            Connection::Client(_) => None,
        };
        let alpn = conn
            .alpn_protocol()
            .map(|p| String::from_utf8_lossy(p).into_owned());
        Self {
            version,
            cipher,
            sni,
            alpn,
        }
    }
}

/// Everything known about one connection by the time it closes.
#[derive(Debug, Default)]
pub struct Record {
    /// The server that took the connection.
    pub server: Option<usize>,
    /// The client's TLS session (offload, reencrypt).
    pub tls: Option<TlsInfo>,
    /// How the relay ended, if it ran.
    pub outcome: Option<RelayOutcome>,
    /// Why the connection ended before the relay: the side at fault and what happened.
    pub failure: Option<(Side, String)>,
}

impl Record {
    /// Records a failure before the relay (the first one wins).
    pub fn fail(&mut self, side: Side, why: impl Into<String>) {
        if self.failure.is_none() {
            self.failure = Some((side, why.into()));
        }
    }

    /// How the connection ended and, for an error, what it was. What the registry did decides
    /// first (its abort is why the sockets failed), then a failure before the relay, then how the
    /// relay ended.
    fn end(&self, guard: &ConnGuard) -> (End, Option<String>) {
        let why = || {
            self.failure
                .as_ref()
                .map(|(_, why)| why.clone())
                .or_else(|| {
                    let outcome = self.outcome.as_ref()?;
                    outcome.error.as_ref().map(|(_, e)| e.to_string())
                })
        };
        match guard.activity().expired() {
            Some(Expiry::Deadline) => return (End::HandshakeTimeout, None),
            Some(Expiry::Idle) => return (End::Timeout, None),
            Some(Expiry::Drain) => return (End::Shutdown, why()),
            None => {}
        }
        if let Some((side, why)) = &self.failure {
            return (error_end(*side, Failure::Error), Some(why.clone()));
        }
        let Some(outcome) = &self.outcome else {
            return (
                End::ClientError,
                Some("closed before a server was chosen".into()),
            );
        };
        if let Some((side, e)) = &outcome.error {
            return (error_end(*side, Failure::of(e)), Some(e.to_string()));
        }
        match outcome.first_close {
            Some(Side::Server) => (End::ServerClose, None),
            _ => (End::ClientClose, None),
        }
    }

    /// Counts and logs a connection refused at the per-address limit.
    pub fn refused(&self, service: &ServiceState, peer: SocketAddr) {
        self.close(
            service,
            peer,
            SystemTime::now(),
            Instant::now(),
            End::IpLimit,
            Some("max_connections_per_ip reached"),
        );
    }

    /// Counts the close and writes the access log line.
    pub fn finish(
        &self,
        service: &ServiceState,
        peer: SocketAddr,
        accepted_at: SystemTime,
        started: Instant,
        guard: &ConnGuard,
    ) {
        if let Some(index) = self.server {
            service.server_counters[index].closed.inc();
        }
        let (end, error) = self.end(guard);
        self.close(service, peer, accepted_at, started, end, error.as_deref());
    }

    fn close(
        &self,
        service: &ServiceState,
        peer: SocketAddr,
        accepted_at: SystemTime,
        started: Instant,
        end: End,
        error: Option<&str>,
    ) {
        service.counters.closed.inc();
        service.counters.ended(end);
        service.worker.worker.closed.inc();
        let config = service.config();
        let server = self.server.map(|i| config.servers[i].address);
        let (bytes_in, bytes_out) = self
            .outcome
            .as_ref()
            .map_or((0, 0), |o| (o.client_to_server, o.server_to_client));
        match server {
            Some(server) => tracing::debug!(
                service = %config.name, client = %peer, server = %server,
                bytes_in, bytes_out, duration_ms = started.elapsed().as_millis() as u64,
                end = end.as_str(), error = error.unwrap_or(""),
                "connection closed"
            ),
            None => tracing::debug!(
                service = %config.name, client = %peer,
                duration_ms = started.elapsed().as_millis() as u64,
                end = end.as_str(), error = error.unwrap_or(""),
                "connection closed without a server"
            ),
        }
        let Some(log) = &service.access_log else {
            return;
        };
        let tls = self.tls.as_ref();
        log.write(&Entry {
            time: accepted_at,
            client: peer,
            service: &config.name,
            server,
            mode: config.mode.as_str(),
            tls_version: tls.and_then(|t| t.version),
            cipher: tls.and_then(|t| t.cipher),
            sni: tls.and_then(|t| t.sni.as_deref()),
            alpn: tls.and_then(|t| t.alpn.as_deref()),
            bytes_in,
            bytes_out,
            duration: started.elapsed(),
            end,
            error,
        });
    }
}

fn error_end(side: Side, failure: Failure) -> End {
    match (side, failure) {
        (Side::Client, Failure::Truncated) => End::ClientTruncated,
        (Side::Server, Failure::Truncated) => End::ServerTruncated,
        (Side::Client, Failure::Reset) => End::ClientReset,
        (Side::Server, Failure::Reset) => End::ServerReset,
        (Side::Client, Failure::Error) => End::ClientError,
        (Side::Server, Failure::Error) => End::ServerError,
    }
}
