//! Health checks through the real binary: the runtime runs one checker per server, a server is
//! taken out of rotation after `fall` failed checks and put back after `rise` passed ones, a
//! flapping server never changes state, a service with every server down closes new clients at
//! once and recovers, and a `tcp` check notices a closed port.
//!
//! The fake servers (`balancing_support::IdServer`) tell each client which server it reached and
//! answer `GET /health` with a status the test switches. State changes are awaited through the
//! proxy's log ("health: server up -> down" with `server=ADDR`), polled against a deadline;
//! every check here runs every 100 ms, so the deadline is dozens of intervals.
//!
//! "A server gets connections again" is shown with round robin over two servers: each worker
//! rotates strictly between the usable servers, so among three connections (two of them on one
//! worker, by pigeonhole) both servers appear.
//!
//! On failure the proxy's log is printed (see `common::Proxy`'s `Drop`).

mod balancing_support;
mod common;

use balancing_support::*;
use common::*;
use std::net::Ipv4Addr;
use std::time::Duration;

/// `rise` in these tests.
const RISE: u32 = 2;
/// `fall` in these tests.
const FALL: u32 = 3;

/// The servers reached by `n` connections from `n` client IPs (127.0.0.2 ...), one after
/// another.
fn servers_reached(proxy: &Proxy, n: u8, what: &str) -> Vec<(Ipv4Addr, String)> {
    client_ips(n)
        .into_iter()
        .map(|ip| (ip, server_for(proxy.addr(), ip, what)))
        .collect()
}

/// Proves: a server whose health endpoint starts failing is marked down on exactly its
/// `fall`-th failed check (not before), after which no new connection goes to it; when the
/// endpoint passes again it is marked up on exactly its `rise`-th passed check and receives
/// connections again. The log has both transition lines, with the server's address.
///
/// Exactness without timing: the checker writes one line per check that did not change the
/// state, then the transition line, all from one thread and in order. So between the switch to
/// 503 and the "up -> down" line there must be exactly `fall - 1` failed-check lines for that
/// server, and between the switch back to 200 and the "down -> up" line exactly `rise - 1`
/// passed-check lines. The fake server's own count of 503s it answered must be at least `fall`
/// when the transition shows.
///
/// How it would fail: a runtime that starts no checkers never logs a transition (the message
/// says "health checks started: NO"); an off-by-one hysteresis, or `rise`/`fall` not taken from
/// the config, gives another count of lines; a balancer that ignores health keeps sending
/// connections to the failing server (which still answers, so the test sees its id).
#[test]
fn a_failing_server_goes_down_after_fall_checks_and_up_after_rise() {
    let a = IdServer::start("srv-A");
    let b = IdServer::start("srv-B");
    let mut spec = ServiceSpec::new(listen_addr(), vec![a.addr(), b.addr()]);
    spec.health = Some(http_health(RISE, FALL));
    let proxy = Proxy::start(&config(2, &[spec]));
    wait_until("the first health checks of both servers", || {
        a.checks() >= 2 && b.checks() >= 2
    });
    let before = servers_reached(&proxy, 6, "both servers up");
    assert!(
        before.iter().any(|(_, s)| s == "srv-A"),
        "srv-A got none of 6 connections while up: {before:?}"
    );

    let switched_at = line_count(&proxy.logs());
    let failed_before = a.failed_checks();
    a.set_health(503);
    let down_line = wait_transition(&proxy, &a, 0, "down");
    let failed = a.failed_checks() - failed_before;
    assert!(
        failed >= FALL as usize,
        "srv-A was marked down after answering only {failed} failed checks (fall = {FALL})"
    );
    let logs = proxy.logs();
    let failed_lines = check_lines(&logs, a.addr(), false, switched_at, down_line);
    assert_eq!(
        failed_lines,
        FALL as usize - 1,
        "between the switch to 503 and the down transition the log should have fall - 1 = {} \
         failed checks of srv-A that did not change its state",
        FALL - 1
    );

    let while_down = servers_reached(&proxy, 10, "srv-A down");
    assert!(
        while_down.iter().all(|(_, s)| s == "srv-B"),
        "connections went to srv-A after it was marked down: {while_down:?}"
    );

    let switched_back_at = line_count(&proxy.logs());
    a.set_health(200);
    let up_line = wait_transition(&proxy, &a, 1, "up");
    let logs = proxy.logs();
    let passed_lines = check_lines(&logs, a.addr(), true, switched_back_at, up_line);
    assert_eq!(
        passed_lines,
        RISE as usize - 1,
        "between the switch to 200 and the up transition the log should have rise - 1 = {} \
         passed checks of srv-A that did not change its state",
        RISE - 1
    );
    let after = servers_reached(&proxy, 6, "srv-A back up");
    assert!(
        after.iter().any(|(_, s)| s == "srv-A"),
        "srv-A got none of 6 connections after it came back up: {after:?}"
    );
    assert_eq!(
        transitions(&proxy.logs(), b.addr()),
        vec![],
        "srv-B, always healthy, changed state"
    );
}

/// Proves: with `rise = fall = 2`, a health endpoint that alternates 503 and 200 on every
/// request never changes the server's state: over 20 checks no "down" transition is logged and
/// the server keeps receiving connections.
///
/// How it would fail: a counter that counts failures without resetting on a success (or
/// `fall = 1` behaviour) takes the server down after two failures in total; a proxy without
/// checkers never answers 20 health requests and the test says so.
#[test]
fn a_flapping_server_does_not_change_state() {
    let a = IdServer::start("srv-A");
    let b = IdServer::start("srv-B");
    a.flap();
    let mut spec = ServiceSpec::new(listen_addr(), vec![a.addr(), b.addr()]);
    spec.health = Some(http_health(2, 2));
    let proxy = Proxy::start(&config(2, &[spec]));

    let mut rounds = 0;
    wait_until("20 health checks of the flapping server", || {
        // Connections meanwhile, so the server is also seen to be in rotation throughout.
        rounds += 1;
        let seen = servers_reached(&proxy, 3, "srv-A flapping");
        assert!(
            seen.iter().any(|(_, s)| s == "srv-A"),
            "round {rounds}: srv-A got none of 3 connections while flapping: {seen:?}"
        );
        a.checks() >= 20
    });
    let logs = proxy.logs();
    assert_eq!(
        transitions(&logs, a.addr()),
        vec![],
        "srv-A changed state while its checks alternated fail/pass with rise = fall = 2 \
         ({} checks, {} failed)",
        a.checks(),
        a.failed_checks()
    );
    assert!(a.failed_checks() >= 10, "the endpoint did not flap");
}

/// Proves: when every server of a service is down, a new client is closed at once (EOF or
/// reset well within 2 s, no server id), the proxy keeps running, and once one server passes
/// its checks again clients are served by it.
///
/// How it would fail: a balancer that falls back to a down server (the fake servers still
/// answer, so the client would read an id instead of a close); a proxy that keeps the client
/// open, or crashes, with no server; a server that never comes back.
#[test]
fn all_servers_down_closes_clients_and_recovers() {
    let a = IdServer::start("srv-A");
    let b = IdServer::start("srv-B");
    let mut spec = ServiceSpec::new(listen_addr(), vec![a.addr(), b.addr()]);
    spec.health = Some(http_health(RISE, FALL));
    let mut proxy = Proxy::start(&config(2, &[spec]));

    a.set_health(503);
    b.set_health(503);
    wait_transition(&proxy, &a, 0, "down");
    wait_transition(&proxy, &b, 0, "down");

    let greeted = a.greeted() + b.greeted();
    for n in 2..5 {
        let ip = client_ip(n);
        // The reset may arrive before connect() returns.
        let mut stream = match connect_from(ip, proxy.addr()) {
            Ok(stream) => stream,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => continue,
            Err(e) => panic!("client {ip}: connect while all servers are down: {e}"),
        };
        let closed = wait_closed(&mut stream, Duration::from_secs(2), false);
        assert!(
            closed.is_ok(),
            "client {ip} with every server down: {closed:?} (expected an EOF or reset)"
        );
    }
    assert_eq!(
        a.greeted() + b.greeted(),
        greeted,
        "a server received a client while marked down"
    );
    assert!(
        proxy.is_running(),
        "ringmaster exited with every server down"
    );
    assert!(
        proxy.logs().contains("every server is down"),
        "the log should say why clients are closed"
    );

    a.set_health(200);
    wait_transition(&proxy, &a, 1, "up");
    let after = servers_reached(&proxy, 5, "srv-A back up, srv-B down");
    assert!(
        after.iter().all(|(_, s)| s == "srv-A"),
        "only srv-A is up: {after:?}"
    );
}

/// Proves: `check = "tcp"` marks a server whose port closes as down; the other server serves
/// every new client, and the proxy no longer even tries the closed one (no "connect to server
/// failed" for it after the transition).
///
/// How it would fail: without checks, clients are still served through failover, but every one
/// first tries the closed port: the log shows those failed connects, and no transition.
#[test]
fn tcp_check_marks_a_closed_port_down() {
    let mut a = IdServer::start("srv-A");
    let b = IdServer::start("srv-B");
    let mut spec = ServiceSpec::new(listen_addr(), vec![a.addr(), b.addr()]);
    spec.health = Some(tcp_health(RISE, FALL));
    let proxy = Proxy::start(&config(2, &[spec]));
    let before = servers_reached(&proxy, 6, "both servers up");
    assert!(
        before.iter().any(|(_, s)| s == "srv-A"),
        "srv-A got none of 6 connections while up: {before:?}"
    );

    a.close();
    let down_line = wait_transition(&proxy, &a, 0, "down");
    let after = servers_reached(&proxy, 10, "srv-A's port closed");
    assert!(
        after.iter().all(|(_, s)| s == "srv-B"),
        "only srv-B is open: {after:?}"
    );
    let tried: Vec<(usize, String)> =
        lines_about(&proxy.logs(), "connect to server failed", a.addr())
            .into_iter()
            .filter(|(line, _)| *line > down_line)
            .collect();
    assert!(
        tried.is_empty(),
        "the proxy still tried srv-A after marking it down: {tried:?}"
    );
}
