//! TLS helpers for the integration tests, on top of `common`: certificates generated with rcgen
//! (a CA, leaves it signs with chosen names and validity, self-signed ones), TLS fake servers on
//! std threads (rustls `ServerConnection` over the harness' `Backend`), rustls clients with a
//! chosen trust, SNI, ALPN, versions and session store, a full-duplex TLS transfer, and config
//! files for TLS services.
//!
//! Same rules as `common`: every socket has read and write timeouts (client sockets
//! [`IO_TIMEOUT`], fake servers `common::BACKEND_IO_TIMEOUT` through [`Backend`]), nothing
//! sleeps blindly, ports come from the kernel.
//!
//! Include it next to `common` in a test crate: `mod common; mod tls_support;`.

// Each test crate uses a different part of this module.
#![allow(dead_code)]

mod client;
mod config;
mod pki;
mod server;
mod session;
mod verdict;

// Test crates reach every part through `use tls_support::*;`. One that uses nothing
// of a part would warn about an unused import here, hence the allow (as for dead_code).
#[allow(unused_imports)]
pub use {client::*, config::*, pki::*, server::*, session::*, verdict::*};

use std::sync::Arc;

use rustls::crypto::CryptoProvider;

/// The DNS name of the service's own (front) certificate in most tests.
pub const FRONT_NAME: &str = "front.test";
/// The DNS name of the fake servers' certificates in most tests.
pub const BACKEND_NAME: &str = "backend.test";

/// The crypto provider ringmaster uses (aws-lc-rs), named explicitly so no process default is
/// needed.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}
