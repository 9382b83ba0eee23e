//! ringmaster: a thread-per-core load balancer for TLS services on io_uring.
//!
//! A virtual service listens on an address and spreads connections over real servers in one of
//! three modes: passthrough (TCP relay, TLS untouched), offload (TLS ends here) and reencrypt (TLS
//! ends here, new TLS to the server). See `DESIGN.md` for the architecture; module map:
//!
//! - [`config`] — TOML → validated [`config::Config`], with every error located and explained.
//! - [`runtime`] — pinned worker threads, signals, graceful shutdown.
//! - [`net`] — the only code that touches io_uring and socket options.
//! - [`proxy`] — serving a connection: mode dispatch, failover, the relay.
//! - [`tls`] — rustls over owned buffers, certificates, Extended Protection.
//! - [`balance`] — schedulers.
//! - [`limits`] — connection limits: process-wide, per service, per client address.
//! - [`ep_check`] — the Extended Protection report (`ringmaster ep-check`).
//! - [`demo`] — `ringmaster demo`, a self-contained re-encrypt service.
//! - [`fuzz`] — the fuzz targets' entry points, replayed on their corpus by the tests.

#![warn(missing_docs)]

pub mod access_log;
pub mod admin;
pub mod alloc;
pub mod backend;
pub mod balance;
pub mod config;
pub mod counters;
pub mod demo;
pub mod ep_check;
pub mod fuzz;
pub mod limits;
pub mod net;
pub mod proxy;
pub mod runtime;
pub mod tls;
