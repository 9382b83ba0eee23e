//! The per-core warm pool of re-encrypt: with `warm = N`, each worker keeps N idle, handshaken
//! server connections, so a new client's first request needs no server handshake.
//!
//! Proves: after the pools have filled, new clients are served without any further handshake at
//! the (counting) server — until the pools refill, which they do off the connection path; and
//! each pooled connection carries one client only (the server sees as many connections as
//! clients, never two clients' bytes on one).
//! Fails if the pool hands out nothing (handshake count grows with every client), hands one
//! connection to two clients (a client would get another's echo or none), or never refills.
//!
//! Also prints the time to first byte of a new client with and without the pool (a figure, not
//! an assertion).

mod common;
mod tls_support;

use std::io::{Read, Write};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use tls_support::*;

/// The config of one reencrypt service with `warm` idle connections per server and worker.
fn config(service: &TlsService, warm: u32) -> String {
    tls_config(1, std::slice::from_ref(service)).replace(
        "mode = \"reencrypt\"",
        &format!("mode = \"reencrypt\"\nwarm = {warm}"),
    )
}

/// Waits until `cond` holds, up to `within`.
fn wait_until(within: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + within;
    while Instant::now() < end {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    cond()
}

/// Time to the first echoed byte of a brand-new client (fresh TLS session to the proxy).
fn first_byte(service: &TlsService, pki: &Pki, what: &str) -> Duration {
    let client = ClientSetup::new(Trust::Roots(pki.ca.roots())).build();
    let started = Instant::now();
    let mut s = tls_connect(service.listen, &client, FRONT_NAME)
        .unwrap_or_else(|e| panic!("{what}: handshake: {e}"));
    let msg = format!("{what}: hello").into_bytes();
    let back = tls_round_trip(&mut s, &msg).unwrap_or_else(|e| panic!("{what}: echo: {e}"));
    let elapsed = started.elapsed();
    assert_eq!(back, msg, "{what}: each client gets its own bytes back");
    elapsed
}

/// A TLS server that answers each connection's first line with `conn-N\n`, N counting
/// handshakes in the order they completed.
fn numbering_server(pki: &Pki) -> TlsServer {
    let order = Arc::new(AtomicUsize::new(0));
    TlsServer::start(
        &pki.ca.leaf(&[BACKEND_NAME]),
        ServerOpts::default(),
        move |mut s| {
            let n = order.fetch_add(1, Ordering::SeqCst) + 1;
            let mut line = Vec::new();
            let mut byte = [0u8; 1];
            while line.len() < 256 {
                match s.read(&mut byte) {
                    Ok(1) if byte[0] == b'\n' => break,
                    Ok(1) => line.push(byte[0]),
                    _ => return,
                }
            }
            let _ = s.write_all(format!("conn-{n}\n").as_bytes());
            let _ = s.flush();
            s.conn.send_close_notify();
            let _ = s.flush();
        },
    )
}

#[test]
fn new_clients_need_no_server_handshake_once_the_pool_is_warm() {
    let pki = Pki::new();
    let server = numbering_server(&pki);
    let service = TlsService::reencrypt_to("warm", &pki, &[server.addr()]);
    let _proxy = Proxy::start(&config(&service, 3));

    // The only worker fills its pool for the configured server name at start.
    assert!(
        wait_until(Duration::from_secs(10), || server.handshakes() >= 3),
        "the pool never filled: {} handshakes",
        server.handshakes()
    );
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(
        server.handshakes(),
        3,
        "warm = 3 with one worker opens exactly 3 connections"
    );

    // Three new clients: each must be answered on a connection whose server handshake had
    // completed before that client arrived (conn-N with N ≤ handshakes counted before it
    // connected), each on a different one. The pool refills in between, so N can exceed 3.
    let client = ClientSetup::new(Trust::Roots(pki.ca.roots())).build();
    let mut seen = Vec::new();
    for i in 0..3 {
        let before = server.handshakes();
        let mut s = tls_connect(service.listen, &client, FRONT_NAME)
            .unwrap_or_else(|e| panic!("client {i}: handshake: {e}"));
        s.write_all(b"which connection?\n")
            .unwrap_or_else(|e| panic!("client {i}: send: {e}"));
        s.flush()
            .unwrap_or_else(|e| panic!("client {i}: flush: {e}"));
        let line = tls_read_line(&mut s).unwrap_or_else(|e| panic!("client {i}: answer: {e}"));
        let n: usize = line
            .trim()
            .strip_prefix("conn-")
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("client {i}: answer {line:?}"));
        assert!(n <= before, "client {i} was answered on conn-{n}, opened after it arrived ({before} handshakes before): no pooled connection was used");
        assert!(!seen.contains(&n), "conn-{n} was handed to two clients");
        seen.push(n);
    }
    // And the pool refills behind them, off the clients' path.
    assert!(
        wait_until(Duration::from_secs(10), || server.handshakes() >= 6),
        "the pool did not refill: {} handshakes",
        server.handshakes()
    );
}

#[test]
fn time_to_first_byte_with_and_without_the_pool() {
    let pki = Pki::new();
    let server = TlsServer::echo(&pki.ca.leaf(&[BACKEND_NAME]), ServerOpts::default());
    let cold = TlsService::reencrypt_to("cold", &pki, &[server.addr()]);
    let warm = TlsService::reencrypt_to("warm", &pki, &[server.addr()]);
    let _cold = Proxy::start(&config(&cold, 0));
    let _warm = Proxy::start(&config(&warm, 4));
    assert!(
        wait_until(Duration::from_secs(10), || server.handshakes() >= 4),
        "pool never filled"
    );
    let mut cold_times = Vec::new();
    let mut warm_times = Vec::new();
    for i in 0..20 {
        cold_times.push(first_byte(&cold, &pki, &format!("cold {i}")));
        warm_times.push(first_byte(&warm, &pki, &format!("warm {i}")));
        // Let the warm pool refill between clients, as it would between real arrivals.
        std::thread::sleep(Duration::from_millis(30));
    }
    cold_times.sort();
    warm_times.sort();
    eprintln!(
        "time to first byte of a new re-encrypt client, median of 20 ({} build): without pool {:?}, with warm = 4 {:?}",
        if cfg!(debug_assertions) { "debug" } else { "release" },
        cold_times[10], warm_times[10]
    );
}

/// Proves: a reload that replaces a service's state closes the retired state's idle pooled
/// connections at once, instead of leaving them open until their last client of the old
/// generation leaves (or the 30 s idle limit); the new state fills its own pool.
///
/// Fails if the server still holds the old pool's connections two seconds after the reload.
#[test]
fn a_reload_closes_the_retired_pool_at_once() {
    let pki = Pki::new();
    let ended = Arc::new(AtomicUsize::new(0));
    let server = {
        let ended = ended.clone();
        TlsServer::start(
            &pki.ca.leaf(&[BACKEND_NAME]),
            ServerOpts::default(),
            move |mut s| {
                let mut buf = [0u8; 256];
                while matches!(s.read(&mut buf), Ok(n) if n > 0) {}
                ended.fetch_add(1, Ordering::SeqCst);
            },
        )
    };
    let service = TlsService::reencrypt_to("warm", &pki, &[server.addr()]);
    let proxy = Proxy::start(&config(&service, 3));
    assert!(
        wait_until(Duration::from_secs(10), || server.handshakes() >= 3),
        "the pool never filled"
    );
    // The same service with another connect_timeout: a new state, the old one retired.
    proxy.write_config(
        &config(&service, 2).replace("connect_timeout = \"2s\"", "connect_timeout = \"3s\""),
    );
    proxy.signal(libc::SIGHUP);
    assert!(
        wait_until(Duration::from_secs(2), || ended.load(Ordering::SeqCst) >= 3),
        "{} of the 3 retired pooled connections closed within 2 s of the reload\n{}",
        ended.load(Ordering::SeqCst),
        proxy.logs_tail()
    );
    assert!(
        wait_until(Duration::from_secs(10), || server.handshakes() >= 5),
        "the new state's pool did not fill"
    );
}
