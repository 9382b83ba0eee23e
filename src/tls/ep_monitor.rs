//! The Extended Protection guard at run time: every full handshake with a server (and the check at
//! start) compares the server's `tls-server-end-point` with the certificate the *client* was given
//! (the default one, or the `[[service.sni_certificate]]` its SNI selected).
//!
//! A mismatch is counted every time and logged once per change of the server's certificate (all
//! workers share one atomic per server and front certificate, so the first worker to see a change
//! logs it).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;

use rustls::sign::CertifiedKey;

use super::certs::TlsCert;
use super::channel_binding::{tls_server_end_point, EndPointHash};
use super::TlsSetupError;
use crate::config::Service;

/// What the monitor concluded about one observed certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Same certificate as the client saw: Extended Protection works through this server.
    Match,
    /// Different certificate: Extended Protection logins through this server fail.
    Mismatch(EndPointHash),
    /// The server's certificate could not be parsed.
    Unreadable(String),
}

/// One certificate the service presents, with its channel binding.
#[derive(Debug)]
struct Front {
    key: Arc<CertifiedKey>,
    hash: EndPointHash,
}

/// Compares servers' certificates with the service's, for one service.
#[derive(Debug)]
pub struct EpMonitor {
    service: String,
    fronts: Vec<Front>,
    addresses: Vec<SocketAddr>,
    /// Per server, per front: fingerprint of the last server certificate seen (0 = none yet).
    last_seen: Vec<AtomicU64>,
    /// Per server: mismatches seen.
    mismatches: Vec<AtomicU64>,
    /// Per server: the last verdict (0 none yet, 1 match, 2 mismatch), for the admin API.
    last_verdict: Vec<AtomicU8>,
}

impl EpMonitor {
    /// A monitor for `service`, whose clients see one of `fronts` (default first).
    pub fn new(service: &Service, fronts: &[TlsCert]) -> Result<Self, TlsSetupError> {
        let fronts = fronts
            .iter()
            .map(|cert| {
                let hash = tls_server_end_point(cert.end_entity().as_ref()).map_err(|e| {
                    TlsSetupError::Rustls(rustls::Error::General(format!(
                        "{}: {e}",
                        cert.certificate.display()
                    )))
                })?;
                Ok(Front {
                    key: cert.certified.clone(),
                    hash,
                })
            })
            .collect::<Result<Vec<_>, TlsSetupError>>()?;
        if fronts.is_empty() {
            return Err(TlsSetupError::NoCertificate);
        }
        let addresses: Vec<SocketAddr> = service.servers.iter().map(|s| s.address).collect();
        let last_seen = (0..addresses.len() * fronts.len())
            .map(|_| AtomicU64::new(0))
            .collect();
        let mismatches = addresses.iter().map(|_| AtomicU64::new(0)).collect();
        let last_verdict = addresses.iter().map(|_| AtomicU8::new(0)).collect();
        Ok(Self {
            service: service.name.clone(),
            fronts,
            addresses,
            last_seen,
            mismatches,
            last_verdict,
        })
    }

    /// The channel binding of the service's default certificate.
    pub fn front(&self) -> &EndPointHash {
        &self.fronts[0].hash
    }

    /// The channel binding of `front` (one of the service's certificates; the default if unknown).
    pub fn front_hash(&self, front: &Arc<CertifiedKey>) -> &EndPointHash {
        &self.fronts[self.front_index(front)].hash
    }

    fn front_index(&self, front: &Arc<CertifiedKey>) -> usize {
        self.fronts
            .iter()
            .position(|f| Arc::ptr_eq(&f.key, front))
            .unwrap_or(0)
    }

    /// Whether the certificate server `index` presented last matched the client's; `None`
    /// before its first full handshake or check.
    pub fn matches(&self, index: usize) -> Option<bool> {
        match self.last_verdict.get(index)?.load(Ordering::Relaxed) {
            1 => Some(true),
            2 => Some(false),
            _ => None,
        }
    }

    /// Mismatches counted for server `index` so far.
    pub fn mismatches(&self, index: usize) -> u64 {
        self.mismatches
            .get(index)
            .map_or(0, |m| m.load(Ordering::Relaxed))
    }

    /// Checks the end-entity certificate server `index` presented in a full handshake, against
    /// `front`, the certificate the client saw.
    pub fn observe(&self, index: usize, cert_der: &[u8], front: &Arc<CertifiedKey>) -> Verdict {
        let (Some(address), Some(mismatches)) =
            (self.addresses.get(index), self.mismatches.get(index))
        else {
            return Verdict::Unreadable(format!("no server #{index}"));
        };
        let verdict = &self.last_verdict[index];
        let hash = match tls_server_end_point(cert_der) {
            Ok(h) => h,
            Err(e) => {
                verdict.store(2, Ordering::Relaxed);
                mismatches.fetch_add(1, Ordering::Relaxed);
                tracing::error!(service = %self.service, server = %address, error = %e, "Extended Protection: cannot read the server's certificate");
                return Verdict::Unreadable(e.to_string());
            }
        };
        let f = self.front_index(front);
        let expected = &self.fronts[f].hash;
        let previous = self.last_seen[index * self.fronts.len() + f]
            .swap(hash.fingerprint(), Ordering::Relaxed);
        let changed = previous != hash.fingerprint();
        if hash == *expected {
            verdict.store(1, Ordering::Relaxed);
            if changed && previous != 0 {
                tracing::info!(service = %self.service, server = %address, hash = %hash, "Extended Protection: the server's certificate matches the service's again");
            }
            Verdict::Match
        } else {
            verdict.store(2, Ordering::Relaxed);
            mismatches.fetch_add(1, Ordering::Relaxed);
            if changed {
                tracing::error!(
                    service = %self.service, server = %address,
                    front_hash = %expected, server_hash = %hash,
                    "Extended Protection will fail through this server: it presents a different certificate than the service (install the service's certificate on the server, or the server's on the service)"
                );
            }
            Verdict::Mismatch(hash)
        }
    }
}
