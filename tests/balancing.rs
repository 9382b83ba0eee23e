//! Balancing through the real binary: source-IP persistence (sticks across connections and
//! workers, expires, moves off a server that goes down), least connections, Maglev source hash
//! across two ringmaster processes, and client-IP steering.
//!
//! Clients connect from 127.0.0.2, 127.0.0.3, ... so that one test is many client IPs; the fake
//! servers (`balancing_support::IdServer`) tell each client which server it reached. Where a
//! test needs "a server that refuses" it reserves the server's port without listening on it, so
//! the port cannot be taken by anyone else before the server starts.
//!
//! Several tests lean on one property of `schedule = "round-robin"` with two (or three) servers
//! of equal weight: each worker rotates through the servers strictly (A, B, A, B ...), and the
//! rotation only moves when a connection is actually scheduled (not when persistence answers).
//! So when a worker schedules two connections in a row it sends them to two different servers;
//! with two workers, any three scheduled connections include two on one worker. The tests use
//! that pigeonhole instead of probabilities.
//!
//! On failure the proxy's log is printed (see `common::Proxy`'s `Drop`).

mod balancing_support;
mod common;

use balancing_support::*;
use common::*;
use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::thread;
use std::time::{Duration, Instant};

/// Proves: with `persistence = { mode = "source-ip" }` every one of 39 client IPs reaches one
/// and the same server on all of its 10 connections, although its connections are spread by the
/// kernel over both workers (the `SO_REUSEPORT` hash covers the source port, which changes on
/// every connection: the chance that all ten of one IP's connections land on one worker is
/// 1/512, so nearly every IP here crosses workers); and the IPs are spread over more than one of
/// the three servers.
///
/// How it would fail: a per-worker (not shared) persistence map, or none, sends an IP's
/// connections round robin, to several servers; a map that does not find entries written by
/// the other worker does the same. A proxy that sends everybody to one server fails the spread
/// (round robin over 39 first connections, two workers, cannot give fewer than two servers).
#[test]
fn persistence_sticks_per_client_ip_across_workers() {
    let servers = [
        IdServer::start("srv-A"),
        IdServer::start("srv-B"),
        IdServer::start("srv-C"),
    ];
    let mut spec = ServiceSpec::new(listen_addr(), servers.iter().map(|s| s.addr()).collect());
    spec.persistence = Some("1h");
    let proxy = Proxy::start(&config(2, &[spec]));

    let ips = client_ips(39);
    let seen = connections_per_client(proxy.addr(), &ips, 10);

    let moved = unsteady(&seen);
    assert!(
        moved.is_empty(),
        "{} of {} client IPs reached more than one server despite persistence: {moved:?}",
        moved.len(),
        ips.len()
    );
    let used = servers_used(&seen);
    assert!(
        used.len() > 1,
        "all 39 client IPs went to {used:?}: persistence must keep each IP on the server round \
         robin gave it, not send everyone to one server"
    );
}

/// Proves: a persistence entry expires once its client has been idle for `timeout` ("1s").
///
/// Design: server B's port refuses at first, so the first connection of each of 10 client IPs
/// fails over to A and every IP is persisted to A. Then B starts, and each IP connects at once:
/// every one must still reach A (its entry holds; without persistence, round robin would send
/// some to B). Then the test waits until every entry is well past the timeout (2.5 s after the
/// last connection: the timeout, plus one second for a clock kept in whole seconds that rounds
/// expiries up, plus margin; the wait *is* the event, there is nothing to poll without refreshing
/// the entries), and each IP connects once more. Expired entries leave the choice to round robin
/// again, which on the worker that schedules two of those ten connections sends one of them to B.
///
/// How it would fail: persistence off (or entries not found) sends some IPs to B while their
/// entries should hold; entries that never expire (or a timeout read as hours) keep all ten IPs
/// on A after the timeout.
#[test]
fn persistence_expires_after_its_timeout() {
    let a = IdServer::start("srv-A");
    let mut b = IdServer::reserve("srv-B");
    let mut spec = ServiceSpec::new(listen_addr(), vec![a.addr(), b.addr()]);
    spec.persistence = Some("1s");
    let proxy = Proxy::start(&config(2, &[spec]));

    let ips = client_ips(10);
    for &ip in &ips {
        let server = server_for(proxy.addr(), ip, "while B refuses");
        assert_eq!(server, "srv-A", "client {ip} while B refuses connections");
    }
    b.listen();
    for &ip in &ips {
        let server = server_for(proxy.addr(), ip, "B up, entries fresh");
        assert_eq!(
            server, "srv-A",
            "client {ip}, persisted to srv-A a moment ago, reached {server}: persistence is off"
        );
    }
    let last_use = Instant::now();

    // The timeout counts from the last connection; see the header for the margin.
    let expired = last_use + Duration::from_millis(2500);
    thread::sleep(expired.saturating_duration_since(Instant::now()));

    let after: Vec<(Ipv4Addr, String)> = ips
        .iter()
        .map(|&ip| (ip, server_for(proxy.addr(), ip, "after the timeout")))
        .collect();
    assert!(
        after.iter().any(|(_, s)| s == "srv-B"),
        "2.5 s after their last connection (persistence timeout 1s) all 10 clients still went to \
         srv-A, so their entries did not expire (round robin on two workers must send at least \
         one of ten fresh choices to srv-B): {after:?}"
    );
}

/// Proves: a client that keeps coming back (a connection every 20 ms for 2.5 s) keeps its
/// persisted server; `timeout = "1s"` counts from the client's *last* connection, as the config
/// documents ("How long a client IP stays with its server after its last connection").
///
/// Design: least connections + persistence. The client first opens a connection and keeps it
/// open, on server S. Then it opens and closes short connections. S always has at least one more
/// open connection than the other server, so any short connection that is *not* answered by the
/// persistence map is scheduled to the other server at once; one that is answered goes to S.
/// 2.5 s of reconnecting crosses at least two whole-second boundaries.
///
/// How it would fail: an expiry that is rounded down to whole seconds since the entry was
/// written (expiry = now_secs + timeout with coarse seconds), so that an entry written at
/// x.99 s expires at x+1 s, 10 ms later, loses the client at a second boundary although its
/// last connection was 20 ms before; the client then lands on the other server.
#[test]
fn persistence_is_kept_while_the_client_keeps_coming_back() {
    let a = IdServer::start("srv-A");
    let b = IdServer::start("srv-B");
    let mut spec = ServiceSpec::new(listen_addr(), vec![a.addr(), b.addr()]);
    spec.schedule = "least-connections";
    spec.persistence = Some("1s");
    let proxy = Proxy::start(&config(2, &[spec]));

    let ip = client_ip(7);
    let first = hold(proxy.addr(), ip).unwrap_or_else(|e| panic!("first connection: {e}"));
    let end = Instant::now() + Duration::from_millis(2500);
    let mut seen = Vec::new();
    let started = Instant::now();
    while Instant::now() < end {
        let server = server_for(proxy.addr(), ip, "reconnecting");
        let at = started.elapsed();
        if server != first.server {
            panic!(
                "client {ip}, persisted to {} (timeout 1s), reached {server} {at:?} into a \
                 series of connections 20 ms apart (after {} that stayed): the entry expired \
                 while the client was active",
                first.server,
                seen.len()
            );
        }
        seen.push(server);
        thread::sleep(Duration::from_millis(20));
    }
    first.close().expect("closing the first connection");
}

/// Proves: a persisted client whose server goes down (HTTP health check answers 503) is sent to
/// another server, and stays on that new server for its following connections, even after the
/// old server comes back up; clients of the other servers keep theirs.
///
/// Design: three servers, round robin, persistence 1h, `http` checks every 100 ms with fall 3,
/// rise 2. Twelve client IPs connect once, one after another (round robin gives srv-A some of
/// them: the worker that schedules three or more of the twelve gives one to each server). A is
/// switched to 503; once the log says A is down, A's clients reconnect four times each.
///
/// How it would fail: a persistence lookup that ignores health sends A's clients to A while it
/// is down (the fake server would still answer, so the test checks the id); a map that is not
/// rewritten after the move sends them back to A once it is up again; a proxy that runs no
/// health checks never logs A as down and the test says so.
#[test]
fn persistence_moves_when_its_server_goes_down() {
    let servers = [
        IdServer::start("srv-A"),
        IdServer::start("srv-B"),
        IdServer::start("srv-C"),
    ];
    let a = &servers[0];
    let mut spec = ServiceSpec::new(listen_addr(), servers.iter().map(|s| s.addr()).collect());
    spec.persistence = Some("1h");
    spec.health = Some(http_health(2, 3));
    let proxy = Proxy::start(&config(2, &[spec]));

    let ips = client_ips(12);
    let before: Vec<(Ipv4Addr, String)> = ips
        .iter()
        .map(|&ip| (ip, server_for(proxy.addr(), ip, "first connection")))
        .collect();
    let on_a: Vec<Ipv4Addr> = before
        .iter()
        .filter(|(_, s)| s == "srv-A")
        .map(|(ip, _)| *ip)
        .collect();
    assert!(
        !on_a.is_empty(),
        "round robin over three servers gave srv-A none of 12 clients: {before:?}"
    );

    a.set_health(503);
    wait_transition(&proxy, a, 0, "down");

    let mut moved_to = Vec::new();
    for &ip in &on_a {
        let servers: Vec<String> = (0..4)
            .map(|_| server_for(proxy.addr(), ip, "while srv-A is down"))
            .collect();
        assert!(
            servers.iter().all(|s| s != "srv-A"),
            "client {ip} was sent to srv-A while it is down: {servers:?}"
        );
        assert!(
            servers.iter().all(|s| *s == servers[0]),
            "client {ip} did not stay on its new server: {servers:?}"
        );
        moved_to.push((ip, servers[0].clone()));
    }
    for (ip, server) in before.iter().filter(|(_, s)| s != "srv-A") {
        let now = server_for(proxy.addr(), *ip, "client of an up server");
        assert_eq!(
            &now, server,
            "client {ip} of {server}, which stayed up, moved to {now}"
        );
    }

    a.set_health(200);
    wait_transition(&proxy, a, 1, "up");
    for (ip, server) in &moved_to {
        for _ in 0..2 {
            let now = server_for(proxy.addr(), *ip, "after srv-A is back up");
            assert_eq!(
                &now, server,
                "client {ip}, moved to {server} while srv-A was down, went to {now} once srv-A \
                 was back: its persistence entry was not rewritten"
            );
        }
    }
}

/// Proves: `schedule = "least-connections"` sends a new connection to the server with fewer
/// open connections, counted across both workers, and un-counts a connection when it closes.
///
/// Design, deterministic at every step:
/// 1. server B refuses: 5 connections are opened and held; all fail over to A (A: 5, B: 0);
/// 2. B starts: the next 5 held connections must all go to B, which has fewer (A: 5, B: 5);
/// 3. from that tie, 4 more in two pairs: each pair covers both servers (A: 7, B: 7);
/// 4. the 5 held on A from step 1 are closed, and the test waits for the proxy's 5
///    "connection closed" log lines for A (after each, the worker releases the count before it
///    does anything else, so at most one count per worker can still be in flight): A ≤ 4 and
///    B = 7, so the next 3 connections must all go to A.
///
/// How it would fail: round robin (or counts per worker, which see half the connections) sends
/// step 2's connections to both servers; counts that are never released (a leaked guard) keep A
/// at 7 in step 4 and send the connections to B.
#[test]
fn least_connections_prefers_the_less_loaded_server() {
    let a = IdServer::start("srv-A");
    let mut b = IdServer::reserve("srv-B");
    let mut spec = ServiceSpec::new(listen_addr(), vec![a.addr(), b.addr()]);
    spec.schedule = "least-connections";
    let proxy = Proxy::start(&config(2, &[spec]));
    // The readiness probe's connection is over (and un-counted) once its close is logged.
    wait_log(
        &proxy,
        "close of the readiness probe",
        |_| String::new(),
        |logs| logs.contains("connection closed").then_some(()),
    );

    let ips = client_ips(20);
    let mut ip = ips.iter().copied().cycle();
    let mut open = |n: usize, step: &str| -> Vec<Held> {
        (0..n)
            .map(|i| {
                let src = ip.next().expect("cycle");
                hold(proxy.addr(), src).unwrap_or_else(|e| panic!("{step}, connection {i}: {e}"))
            })
            .collect()
    };
    let ids = |held: &[Held]| held.iter().map(|h| h.server.clone()).collect::<Vec<_>>();

    let step1 = open(5, "step 1 (B refuses)");
    assert!(
        step1.iter().all(|h| h.server == "srv-A"),
        "step 1: {:?}",
        ids(&step1)
    );

    b.listen();
    let step2 = open(5, "step 2 (A: 5 open, B: 0)");
    assert!(
        step2.iter().all(|h| h.server == "srv-B"),
        "step 2: with 5 connections open on srv-A and none on srv-B, least connections must send \
         the next 5 to srv-B: {:?}",
        ids(&step2)
    );

    let step3 = open(4, "step 3 (A: 5, B: 5)");
    for pair in step3.chunks(2) {
        assert_ne!(
            pair[0].server,
            pair[1].server,
            "step 3: from a tie, two connections in a row must go to both servers: {:?}",
            ids(&step3)
        );
    }

    let closed_before = lines_about(&proxy.logs(), "connection closed", a.addr()).len();
    for held in step1 {
        let src = held.src;
        held.close()
            .unwrap_or_else(|e| panic!("step 4: closing {src}'s connection on srv-A: {e}"));
    }
    wait_log(
        &proxy,
        "5 more \"connection closed\" lines for srv-A",
        |logs| {
            format!(
                "{} such lines before, {} now",
                closed_before,
                lines_about(logs, "connection closed", a.addr()).len()
            )
        },
        |logs| {
            (lines_about(logs, "connection closed", a.addr()).len() >= closed_before + 5)
                .then_some(())
        },
    );
    let step4 = open(3, "step 4 (A: 2, B: 7)");
    assert!(
        step4.iter().all(|h| h.server == "srv-A"),
        "step 4: with 2 connections open on srv-A and 7 on srv-B, the next 3 must go to srv-A: \
         {:?}",
        ids(&step4)
    );
    drop((step2, step3, step4));
}

/// Proves: `schedule = "source-hash"` (Maglev on the client IP) is a function of the client IP
/// and the server list only: two ringmaster processes with the same servers send each of 30
/// client IPs to the same server (so ECMP may spread clients over several balancers), one IP's
/// repeated connections stay on one server without any persistence, and the IPs are spread
/// over more than one server.
///
/// How it would fail: a hash keyed per process (ahash's random state), a table that depends on
/// start-up timing, or a fallback to round robin sends an IP to different servers on the two
/// proxies or on repeated connections; a table that maps everything to one server fails the
/// spread.
#[test]
fn source_hash_is_the_same_on_two_proxies() {
    let servers = [
        IdServer::start("srv-A"),
        IdServer::start("srv-B"),
        IdServer::start("srv-C"),
    ];
    let addrs: Vec<_> = servers.iter().map(|s| s.addr()).collect();
    let configs: Vec<String> = (0..2)
        .map(|_| {
            let mut spec = ServiceSpec::new(listen_addr(), addrs.clone());
            spec.schedule = "source-hash";
            config(2, &[spec])
        })
        .collect();
    let first = Proxy::start(&configs[0]);
    let second = Proxy::start(&configs[1]);

    let ips = client_ips(30);
    let on_first = connections_per_client(first.addr(), &ips, 3);
    let on_second = connections_per_client(second.addr(), &ips, 3);
    for &ip in &ips {
        let all: BTreeSet<&String> = on_first[&ip].iter().chain(&on_second[&ip]).collect();
        assert_eq!(
            all.len(),
            1,
            "client {ip}: first proxy {:?}, second proxy {:?}",
            on_first[&ip],
            on_second[&ip]
        );
    }
    let used = servers_used(&on_first);
    assert!(used.len() > 1, "Maglev sent all 30 client IPs to {used:?}");
}

/// Proves: `steer = "client-ip"` with two workers serves every client, keeps persistence
/// sticking, and really sends each client IP to one worker, the one
/// `ringmaster::net::listener::steered_worker` predicts (the formula the persistence map's
/// sharding also relies on).
///
/// Design: one process, two services over the same two servers, both steered: "sticky" (round
/// robin + persistence) where 20 client IPs make 5 connections each, and "rr" (round robin, no
/// persistence). On "rr", connections alternate between an IP steered to worker 0 and one
/// steered to worker 1, 20 rounds. Each worker's round robin alternates strictly, so the
/// servers reached by the worker-0 IPs alternate A, B, A, ... and so do the worker-1 IPs'.
///
/// How it would fail: a program the kernel refuses (logged; checked here), or a formula that
/// disagrees with `steered_worker`, lets the kernel's 4-tuple hash pick the worker: the
/// connections of one group then hit both workers' rotations, and a sequence of 20 stays
/// strictly alternating with a chance of about (3/4)^19, under 1 %. Broken serving or stickiness
/// fails the first part directly.
#[test]
fn client_ip_steering_serves_and_keeps_persistence() {
    let a = IdServer::start("srv-A");
    let b = IdServer::start("srv-B");
    let mut sticky = ServiceSpec::new(listen_addr(), vec![a.addr(), b.addr()]);
    sticky.name = "sticky";
    sticky.persistence = Some("1h");
    sticky.steer = true;
    let mut rr = ServiceSpec::new(listen_addr(), vec![a.addr(), b.addr()]);
    rr.name = "rr";
    rr.steer = true;
    let (sticky_addr, rr_addr) = (sticky.listen, rr.listen);
    let proxy = Proxy::start(&config(2, &[sticky, rr]));
    let attached = proxy.logs().matches("client-IP steering attached").count();
    assert_eq!(
        attached, 2,
        "the log should say steering was attached for both services"
    );

    let ips = client_ips(20);
    let seen = connections_per_client(sticky_addr, &ips, 5);
    let moved = unsteady(&seen);
    assert!(
        moved.is_empty(),
        "with steering and persistence, these client IPs moved: {moved:?}"
    );
    assert!(
        servers_used(&seen).len() > 1,
        "all clients on one server: {seen:?}"
    );

    let group = |worker: u32| -> Vec<Ipv4Addr> {
        client_ips(39)
            .into_iter()
            .filter(|&ip| ringmaster::net::listener::steered_worker(ip, 2) == worker)
            .take(5)
            .collect()
    };
    let groups = [group(0), group(1)];
    assert!(
        groups.iter().all(|g| !g.is_empty()),
        "127.0.0.2..=40 should map to both workers: {groups:?}"
    );
    let mut sequences: [Vec<(Ipv4Addr, String)>; 2] = [Vec::new(), Vec::new()];
    for round in 0..20 {
        for (worker, group) in groups.iter().enumerate() {
            let ip = group[round % group.len()];
            sequences[worker].push((ip, server_for(rr_addr, ip, "service rr")));
        }
    }
    for (worker, sequence) in sequences.iter().enumerate() {
        for pair in sequence.windows(2) {
            assert_ne!(
                pair[0].1, pair[1].1,
                "IPs steered to worker {worker} should see that worker's strict round robin \
                 (A, B, A, ...): {sequence:?}"
            );
        }
    }
}
