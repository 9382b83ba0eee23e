//! Shared harness for the integration tests: it starts the real `ringmaster` binary against
//! in-process fake backends and gives the tests deterministic data, digests and bounded I/O.
//!
//! Rules every helper here keeps, so that a broken proxy fails a test instead of hanging it:
//! - every socket has a read and a write timeout ([`IO_TIMEOUT`] on the client side,
//!   [`BACKEND_IO_TIMEOUT`] on the backend side, which is longer so that a backend giving up can
//!   never pass for a proxy timeout);
//! - every wait polls against a deadline; nothing sleeps blindly;
//! - ports come from the kernel (bind port 0), never fixed, because tests run in parallel.
//!
//! The proxy's readiness probe ([`Proxy::start`]) opens one connection per `listen` address, and
//! the proxy relays it to a backend: backend accept counters include it, and the backends that
//! report transfers ([`Backend::duplex`] ...) only report connections that carried data.

// Each test crate uses a different part of this module.
#![allow(dead_code)]

mod backend;
mod data;
mod http;
mod proxy;
mod sockets;

// Test crates reach every part through `use common::*;`. One that uses nothing
// of a part would warn about an unused import here, hence the allow (as for dead_code).
#[allow(unused_imports)]
pub use {backend::*, data::*, http::*, proxy::*, sockets::*};

use std::thread::JoinHandle;
use std::time::Duration;

/// Read/write timeout of client sockets in tests: a proxy that stops relaying fails the test
/// after this long instead of hanging it.
pub const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// Read/write timeout of fake backend sockets. Longer than any client-side deadline, so a
/// backend that gives up on an idle connection can never be mistaken for the proxy closing it.
pub const BACKEND_IO_TIMEOUT: Duration = Duration::from_secs(60);

/// Size of the reads and writes the helpers do: large enough for bulk throughput, small enough
/// that a ping-pong echo of one chunk fits in loopback socket buffers without deadlock.
pub const CHUNK: usize = 64 * 1024;

/// One MiB, for sizes in tests.
pub const MIB: u64 = 1024 * 1024;

/// Joins a test thread, turning its panic into a panic here with the thread's message.
pub fn join<T>(handle: JoinHandle<T>, what: &str) -> T {
    match handle.join() {
        Ok(v) => v,
        Err(panic) => {
            let msg = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            panic!("{what} panicked: {msg}");
        }
    }
}
