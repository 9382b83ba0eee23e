//! Helpers for the balancing and health-check integration tests, on top of `common`: a fake
//! server that says who it is and also answers an HTTP health check whose status the test
//! switches ([`IdServer`]), clients that connect from a chosen source address (127.0.0.x) so that
//! one test acts as many client IPs, service configs with the balancing keys, and readers of the
//! proxy's log (health transitions, check results, connection closes).
//!
//! Same rules as `common`: every socket has read and write timeouts, waits poll against a
//! deadline, ports come from the kernel.
//!
//! Include it next to `common` in a test crate: `mod common; mod balancing_support;`.

// Each test crate uses a different part of this module.
#![allow(dead_code)]

mod clients;
mod config;
mod id_server;
mod proxy_log;

// Test crates reach every part through `use balancing_support::*;`. One that uses nothing
// of a part would warn about an unused import here, hence the allow (as for dead_code).
#[allow(unused_imports)]
pub use {clients::*, config::*, id_server::*, proxy_log::*};

use std::net::Ipv4Addr;
use std::time::Duration;

/// Longest any awaited event may take (a health transition, a log line). Checks in these tests
/// run every 100 ms, so this is dozens of intervals: only a proxy that never gets there fails.
pub const DEADLINE: Duration = Duration::from_secs(10);

/// How often waits poll.
pub const POLL: Duration = Duration::from_millis(10);

/// What a client sends first: the fake server answers a line that is not an HTTP request with
/// its id (so a client learns which server it reached), and a `GET` with an HTTP answer.
pub const HELLO: &[u8] = b"id?\n";

/// Path of the fake servers' health endpoint.
pub const HEALTH_PATH: &str = "/health";

/// The client address 127.0.0.`n` (n in 2..=254; 127.0.0.1 is left to the harness' probes).
pub fn client_ip(n: u8) -> Ipv4Addr {
    assert!((2..=254).contains(&n), "client address 127.0.0.{n}");
    Ipv4Addr::new(127, 0, 0, n)
}

/// The client addresses 127.0.0.2 ..= 127.0.0.(count + 1).
pub fn client_ips(count: u8) -> Vec<Ipv4Addr> {
    (2..count + 2).map(client_ip).collect()
}
