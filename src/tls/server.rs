//! The client-facing TLS configuration of a service: certificates chosen by SNI, TLS 1.2 and 1.3,
//! a session cache per worker and one rotating ticketer shared by every worker.
//!
//! Tickets are encrypted with keys every worker shares, so a ticket issued on one core resumes on
//! any core (the kernel's `SO_REUSEPORT` hash rarely sends a reconnecting client to the same one).
//! The session-ID cache (TLS 1.2 without tickets) is per worker: it needs no lock.

use std::fmt;
use std::sync::Arc;

use rustls::server::{ClientHello, ResolvesServerCert, ServerSessionMemoryCache};
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;

use super::certs::TlsCert;

/// Sessions each worker remembers for session-ID resumption (about 200 bytes each).
pub const SESSION_CACHE_PER_WORKER: usize = 4096;

/// Picks the certificate whose names match the client's SNI; the first certificate otherwise.
pub struct SniResolver {
    default: Arc<CertifiedKey>,
    by_name: Vec<(String, Arc<CertifiedKey>)>,
}

impl fmt::Debug for SniResolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SniResolver")
            .field(
                "names",
                &self.by_name.iter().map(|(n, _)| n).collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl SniResolver {
    /// A resolver over `certs`; the first one is the default. Exact names win over wildcards,
    /// and earlier certificates over later ones.
    pub fn new(certs: &[TlsCert]) -> Option<Self> {
        let default = certs.first()?.certified.clone();
        let mut by_name = Vec::new();
        for cert in certs {
            for name in &cert.names {
                by_name.push((name.clone(), cert.certified.clone()));
            }
        }
        // Exact names first so they win over a wildcard covering them.
        by_name.sort_by_key(|(name, _)| name.starts_with("*."));
        Some(Self { default, by_name })
    }

    /// The certificate for `sni` (lower-cased by rustls).
    pub fn select(&self, sni: Option<&str>) -> Arc<CertifiedKey> {
        let Some(sni) = sni else {
            return self.default.clone();
        };
        for (name, key) in &self.by_name {
            let matches = match name.strip_prefix("*.") {
                Some(suffix) => sni
                    .split_once('.')
                    .is_some_and(|(label, rest)| !label.is_empty() && rest == suffix),
                None => name == sni,
            };
            if matches {
                return key.clone();
            }
        }
        self.default.clone()
    }
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.select(hello.server_name()))
    }
}

/// Why a TLS configuration could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsSetupError {
    /// The service has no certificate.
    #[error("no certificate configured")]
    NoCertificate,
    /// rustls refused the configuration or the ticketer.
    #[error("{0}")]
    Rustls(#[from] rustls::Error),
}

/// Makes the ticketer every worker shares: AES-256-GCM keys rotated every 6 hours, tickets valid 12.
pub fn shared_ticketer() -> Result<Arc<dyn rustls::server::ProducesTickets>, TlsSetupError> {
    Ok(rustls::crypto::aws_lc_rs::Ticketer::new()?)
}

/// The service-wide part: versions, certificates (chosen by `resolver`), the shared ticketer.
/// Workers copy it with [`for_worker`] to get their own session cache.
pub fn service_config(
    resolver: Arc<SniResolver>,
    ticketer: Arc<dyn rustls::server::ProducesTickets>,
) -> Result<ServerConfig, TlsSetupError> {
    let mut config = ServerConfig::builder_with_provider(super::provider())
        .with_protocol_versions(super::PROTOCOL_VERSIONS)?
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    config.ticketer = ticketer;
    // One TLS 1.3 ticket per handshake is enough for a browser or Outlook to resume; the default
    // of two costs a second ticket encryption and record on every full handshake.
    config.send_tls13_tickets = 1;
    Ok(config)
}

/// This worker's copy of a service's server config, with its own session-ID cache.
pub fn for_worker(service: &ServerConfig) -> Arc<ServerConfig> {
    let mut config = service.clone();
    config.session_storage = ServerSessionMemoryCache::new(SESSION_CACHE_PER_WORKER);
    Arc::new(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert(names: &[&str]) -> TlsCert {
        let key = rcgen::KeyPair::generate().expect("key");
        let params =
            rcgen::CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .expect("params");
        let c = params.self_signed(&key).expect("cert");
        let der = rustls_pki_types::PrivateKeyDer::try_from(key.serialize_der()).expect("key der");
        let signer = rustls::crypto::aws_lc_rs::sign::any_supported_type(&der).expect("signer");
        let certified = CertifiedKey::new(vec![c.der().clone()], signer);
        TlsCert {
            certificate: "c.pem".into(),
            key: "k.pem".into(),
            names: super::super::certs::dns_names(&certified.cert[0]),
            certified: Arc::new(certified),
        }
    }

    #[test]
    fn sni_selects_exact_then_wildcard_then_default() {
        let default = cert(&["default.test"]);
        let wild = cert(&["*.example.test"]);
        let exact = cert(&["mail.example.test"]);
        let r =
            SniResolver::new(&[default.clone(), wild.clone(), exact.clone()]).expect("resolver");
        assert!(Arc::ptr_eq(
            &r.select(Some("mail.example.test")),
            &exact.certified
        ));
        assert!(Arc::ptr_eq(
            &r.select(Some("owa.example.test")),
            &wild.certified
        ));
        assert!(Arc::ptr_eq(
            &r.select(Some("a.b.example.test")),
            &default.certified
        ));
        assert!(Arc::ptr_eq(
            &r.select(Some("other.test")),
            &default.certified
        ));
        assert!(Arc::ptr_eq(&r.select(None), &default.certified));
    }
}
