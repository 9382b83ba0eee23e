//! The admin listener: Prometheus metrics, a JSON API, operator actions and a stats page.
//!
//! [`server::spawn`] serves it on a listener the caller bound, with an event loop on a thread of
//! its own (slow clients cost no thread), so that it answers even when the workers are saturated.
//! Each request passes [`policy`] (token, Host, Origin, content type) as soon as its headers are
//! read; [`api`] then routes it to [`control::Control`], which the runtime implements; the
//! renderers ([`metrics`], [`stats`], the JSON of [`snapshot`]) only see a [`snapshot::Snapshot`].

pub mod api;
mod conn;
pub mod control;
pub mod http;
pub mod metrics;
pub mod policy;
pub mod server;
pub mod snapshot;
pub mod stats;
