//! The admin listener: Prometheus metrics, a JSON API, operator actions and a stats page.
//!
//! [`server::spawn`] serves it on a listener the caller bound, over plain blocking std sockets on
//! a thread of its own, so that it answers even when the workers are saturated. [`api`] routes
//! each request to [`control::Control`], which the runtime implements; the renderers
//! ([`metrics`], [`stats`], the JSON of [`snapshot`]) only see a [`snapshot::Snapshot`].

pub mod api;
pub mod control;
pub mod http;
pub mod metrics;
pub mod server;
pub mod snapshot;
pub mod stats;
