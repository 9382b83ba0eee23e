//! The Extended Protection guard at run time: every full handshake with a server (and the check at
//! start) compares the server's `tls-server-end-point` with the service's own certificate.
//!
//! A mismatch is counted every time and logged once per change of the server's certificate (all
//! workers share one atomic per server, so the first worker to see a change logs it).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};

use super::channel_binding::{tls_server_end_point, EndPointHash};
use super::TlsSetupError;
use crate::config::Service;
use rustls_pki_types::CertificateDer;

/// EP state of one server.
#[derive(Debug)]
struct ServerEp {
    address: SocketAddr,
    /// Fingerprint of the last certificate seen (0 = none yet).
    last_seen: AtomicU64,
    mismatches: AtomicU64,
}

/// What the monitor concluded about one observed certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Same certificate as the service: Extended Protection works through this server.
    Match,
    /// Different certificate: Extended Protection logins through this server fail.
    Mismatch(EndPointHash),
    /// The server's certificate could not be parsed.
    Unreadable(String),
}

/// Compares servers' certificates with the service's, for one service.
#[derive(Debug)]
pub struct EpMonitor {
    service: String,
    front: EndPointHash,
    servers: Vec<ServerEp>,
}

impl EpMonitor {
    /// A monitor for `service`, whose clients see `front` (its default certificate).
    pub fn new(service: &Service, front: &CertificateDer<'_>) -> Result<Self, TlsSetupError> {
        let front = tls_server_end_point(front.as_ref())
            .map_err(|e| TlsSetupError::Rustls(rustls::Error::General(e.to_string())))?;
        let servers = service
            .servers
            .iter()
            .map(|s| ServerEp {
                address: s.address,
                last_seen: AtomicU64::new(0),
                mismatches: AtomicU64::new(0),
            })
            .collect();
        Ok(Self {
            service: service.name.clone(),
            front,
            servers,
        })
    }

    /// The service's own channel binding.
    pub fn front(&self) -> &EndPointHash {
        &self.front
    }

    /// Mismatches counted for server `index` so far.
    pub fn mismatches(&self, index: usize) -> u64 {
        self.servers
            .get(index)
            .map_or(0, |s| s.mismatches.load(Ordering::Relaxed))
    }

    /// Checks the end-entity certificate server `index` presented in a full handshake.
    pub fn observe(&self, index: usize, cert_der: &[u8]) -> Verdict {
        let Some(server) = self.servers.get(index) else {
            return Verdict::Unreadable(format!("no server #{index}"));
        };
        let hash = match tls_server_end_point(cert_der) {
            Ok(h) => h,
            Err(e) => {
                server.mismatches.fetch_add(1, Ordering::Relaxed);
                tracing::error!(service = %self.service, server = %server.address, error = %e, "Extended Protection: cannot read the server's certificate");
                return Verdict::Unreadable(e.to_string());
            }
        };
        let matches = hash == self.front;
        let previous = server.last_seen.swap(hash.fingerprint(), Ordering::Relaxed);
        let changed = previous != hash.fingerprint();
        if matches {
            if changed && previous != 0 {
                tracing::info!(service = %self.service, server = %server.address, hash = %hash, "Extended Protection: the server's certificate matches the service's again");
            }
            Verdict::Match
        } else {
            server.mismatches.fetch_add(1, Ordering::Relaxed);
            if changed {
                tracing::error!(
                    service = %self.service, server = %server.address,
                    front_hash = %self.front, server_hash = %hash,
                    "Extended Protection will fail through this server: it presents a different certificate than the service (install the service's certificate on the server, or the server's on the service)"
                );
            }
            Verdict::Mismatch(hash)
        }
    }
}
