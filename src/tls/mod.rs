//! TLS on rustls: the engine that drives sessions over io_uring owned buffers, configuration
//! builders for both sides, certificate loading, and Extended Protection (RFC 5929).
//!
//! - [`stream`]: a TLS session over a socket, one end of a relay.
//! - [`accept`]: reading the ClientHello first (SNI, ALPN) before answering it.
//! - [`server`]: client-facing config, SNI certificate choice, session cache and shared ticketer.
//! - [`client`]: server-facing config, certificate verification, resumption per server.
//! - [`certs`]: PEM loading with errors that name the file.
//! - [`channel_binding`]: the `tls-server-end-point` hash.
//! - [`ep_monitor`]: comparing servers' certificates with the service's at run time.

pub mod accept;
pub mod certs;
pub mod channel_binding;
pub mod client;
pub mod ep_monitor;
pub mod server;
pub mod stream;

pub use server::TlsSetupError;

use std::sync::Arc;

/// The protocol versions ringmaster speaks on either side: TLS 1.3, then 1.2; nothing older.
pub const PROTOCOL_VERSIONS: &[&rustls::SupportedProtocolVersion] =
    &[&rustls::version::TLS13, &rustls::version::TLS12];

/// The crypto provider every TLS configuration uses (aws-lc-rs).
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}
