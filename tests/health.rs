//! Health checkers at library level (`ringmaster::backend`), against fake servers in std threads:
//! an HTTP server whose answer the test switches between 200, 503, garbage and silence (and then
//! closes), and a rustls HTTPS server with certificates generated here by rcgen.
//!
//! What it proves: rise/fall hysteresis as HAProxy counts it (an up server goes down on exactly
//! the `fall`-th consecutive failure and comes back on exactly the `rise`-th success, both with
//! [`Checker::check`] one check at a time and with the threads of [`spawn_checkers`]); the request
//! is the documented one; transitions are logged with service, server, old and new state and the
//! reason; an `https` check hands the server's end-entity certificate to `on_certificate` after
//! each handshake, so a renewed certificate is seen on the next check; a refused certificate, a
//! closed port, garbage and silence each take a server down with its reason; the stop flag ends
//! every thread promptly, even one in the middle of a check.
//!
//! How it would fail: the fake server records the health the checker had published when each
//! request *arrived* (checks of one server are sequential, so that is the result of all earlier
//! checks): off-by-one hysteresis, or a checker that does not publish before its next check, shows
//! up as a wrong health at an exact request number, without timing assumptions. A checker that
//! ignores `stop` while sleeping or waiting on a silent server misses the join deadline; a TLS
//! check that resumes sessions sees the first certificate only and misses the renewed one.
//! Waits poll against generous deadlines; nothing asserts on timing beyond them.

mod health_support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use health_support::*;
use ringmaster::backend::{
    spawn_checkers, CertificateCallback, CheckKind, Checker, Health, HealthConfig, ServerState,
};
use ringmaster::tls::client::Verify;
use rustls_pki_types::CertificateDer;

/// One check at a time, no threads: the exact rise/fall counts, the reasons, the request.
#[test]
fn checker_counts_fall_and_rise_exactly() {
    let state = Arc::new(ServerState::new(true));
    let server = FakeServer::start(state.clone(), None, 200);
    let config = config(CheckKind::Http(http("/health")), 2, 3);
    let mut checker =
        Checker::new("exact", 0, server.address, state.clone(), &config, None).expect("checker");

    let first = checker.check();
    assert!(first.ok, "{first:?}");
    assert_eq!(first.reason, "HTTP 200");
    server.set_answer(503);
    for failure in 1..=3 {
        let summary = checker.check();
        assert!(!summary.ok);
        assert_eq!(summary.reason, "HTTP 503 not in expect [200]");
        let want = if failure < 3 {
            Health::Up
        } else {
            Health::Down
        };
        assert_eq!(state.health(), want, "after failure {failure}");
        assert_eq!(summary.health, want);
    }
    server.set_answer(200);
    for success in 1..=2 {
        checker.check();
        let want = if success < 2 {
            Health::Down
        } else {
            Health::Up
        };
        assert_eq!(state.health(), want, "after success {success}");
    }
    let last = state.last_check().expect("a last check");
    assert!(last.ok && last.health == Health::Up, "{last:?}");

    let head = String::from_utf8(server.seen()[0].head.clone()).expect("ASCII request");
    assert_eq!(
        head,
        format!(
            "GET /health HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nConnection: close\r\nUser-Agent: ringmaster-health\r\n\r\n",
            server.address.port()
        )
    );
}

/// The threads of `spawn_checkers`: 200 → 503 → 200 → closed port, interval 100ms, rise 2,
/// fall 3; transitions at exact request numbers, logged with their reasons.
#[test]
fn http_checker_thread_follows_the_server() {
    logged(); // capture from here on
    let service = "flip";
    let state = Arc::new(ServerState::new(true));
    let mut server = FakeServer::start(state.clone(), None, 200);
    let stop = Arc::new(AtomicBool::new(false));
    let handles = spawn_checkers(
        service,
        &[(server.address, state.clone())],
        &config(CheckKind::Http(http("/")), 2, 3),
        None,
        stop.clone(),
    )
    .expect("spawn");

    wait_for("two 200 checks", || server.seen().len() >= 2);
    assert_eq!(state.health(), Health::Up);
    server.set_answer(503);
    wait_for("down", || state.health() == Health::Down);
    server.set_answer(200);
    wait_for("up again", || state.health() == Health::Up);
    // A third 200, so the one that brought it up is followed by an arrival.
    wait_for("three checks after the 503s", || {
        let seen = server.seen();
        seen.iter().rev().take_while(|s| s.answered == 200).count() >= 3
    });

    // Exact counting, from the health each request found on arrival.
    let seen = server.seen();
    let first_503 = seen.iter().position(|s| s.answered == 503).expect("a 503");
    let first_200_after = first_503
        + seen[first_503..]
            .iter()
            .position(|s| s.answered == 200)
            .expect("a 200 after the 503s");
    let after_503s = &seen[first_503..=first_200_after];
    // After 1 and 2 failures still up; after the 3rd, down.
    assert_eq!(after_503s[1].health_at_arrival, Health::Up, "{seen:#?}");
    assert_eq!(after_503s[2].health_at_arrival, Health::Up, "{seen:#?}");
    assert!(
        after_503s.len() > 3,
        "fewer than 3 failures took it down: {seen:#?}"
    );
    assert_eq!(after_503s[3].health_at_arrival, Health::Down, "{seen:#?}");
    // After 1 success still down; after the 2nd, up.
    let ups = &seen[first_200_after..];
    assert_eq!(ups[1].health_at_arrival, Health::Down, "{seen:#?}");
    assert_eq!(ups[2].health_at_arrival, Health::Up, "{seen:#?}");

    server.close();
    wait_for("down after the port closed", || {
        state.health() == Health::Down
    });
    let last = state.last_check().expect("a last check");
    assert_eq!(last.reason, "connect refused");

    stop.store(true, Ordering::Release);
    join_within(handles, DEADLINE);

    let lines = lines_of(service);
    let transitions: Vec<&String> = lines.iter().filter(|l| l.contains(" from=")).collect();
    assert_eq!(transitions.len(), 3, "{lines:#?}");
    assert!(transitions[0].starts_with("WARN"), "{}", transitions[0]);
    assert!(
        transitions[0].contains(" health: server up -> down"),
        "{}",
        transitions[0]
    );
    assert!(
        transitions[0].contains("reason=HTTP 503 not in expect [200]"),
        "{}",
        transitions[0]
    );
    assert!(
        transitions[0].contains(&format!("server={}", server.address)),
        "{}",
        transitions[0]
    );
    assert!(
        transitions[1].contains("from=down to=up reason=HTTP 200"),
        "{}",
        transitions[1]
    );
    assert!(
        transitions[2].contains("reason=connect refused"),
        "{}",
        transitions[2]
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains("no server of the service is up")),
        "{lines:#?}"
    );
}

/// `tcp` against a closed port: down (fall 2), reason `connect refused`.
#[test]
fn tcp_check_of_a_closed_port_goes_down() {
    let state = Arc::new(ServerState::new(true));
    let stop = Arc::new(AtomicBool::new(false));
    let handles = spawn_checkers(
        "tcp-closed",
        &[(closed_port(), state.clone())],
        &config(CheckKind::Tcp, 2, 2),
        None,
        stop.clone(),
    )
    .expect("spawn");
    wait_for("down", || state.health() == Health::Down);
    assert_eq!(
        state.last_check().expect("checked").reason,
        "connect refused"
    );
    stop.store(true, Ordering::Release);
    join_within(handles, DEADLINE);
}

/// `tcp` against a listening port stays up and says so.
#[test]
fn tcp_check_of_an_open_port_passes() {
    let state = Arc::new(ServerState::new(false));
    let server = FakeServer::start(state.clone(), None, 200);
    let mut checker = Checker::new(
        "tcp-open",
        0,
        server.address,
        state.clone(),
        &config(CheckKind::Tcp, 1, 1),
        None,
    )
    .expect("checker");
    let summary = checker.check();
    assert!(summary.ok, "{summary:?}");
    assert_eq!(summary.reason, "connected");
    assert_eq!(state.health(), Health::Up);
}

/// Garbage and silence fail the check with their reasons, and nothing panics.
#[test]
fn garbage_and_silence_fail_with_reasons() {
    let state = Arc::new(ServerState::new(true));
    let server = FakeServer::start(state.clone(), None, GARBAGE);
    let quick = HealthConfig {
        timeout: Duration::from_millis(300),
        ..config(CheckKind::Http(http("/")), 1, 1)
    };
    let mut checker =
        Checker::new("garbage", 0, server.address, state.clone(), &quick, None).expect("checker");
    let summary = checker.check();
    assert!(!summary.ok);
    assert!(
        summary
            .reason
            .starts_with("not an HTTP answer: not an HTTP response: \"SSH-2.0-"),
        "{}",
        summary.reason
    );
    assert_eq!(state.health(), Health::Down);

    server.set_answer(SILENT);
    let summary = checker.check();
    assert_eq!(
        summary.reason, "timeout after 300ms (waiting for the HTTP status)",
        "{summary:?}"
    );
    // Bounded by the timeout (with a generous margin for a loaded machine).
    assert!(summary.took < DEADLINE, "{summary:?}");
}

/// A server index and certificate (DER) passed to `on_certificate`.
type Observed = (usize, Vec<u8>);

/// `https`: each check is a full handshake whose end-entity certificate reaches
/// `on_certificate`; a renewed certificate is seen on a following check.
#[test]
fn https_check_reports_each_certificate() {
    let pki = Pki::new("health test CA");
    let (first_der, first_config) = pki.server();
    let (renewed_der, renewed_config) = pki.server();
    assert_ne!(first_der, renewed_der);
    let served = Arc::new(Mutex::new(first_config));
    let state = Arc::new(ServerState::new(true));
    let server = FakeServer::start(state.clone(), Some(served.clone()), 200);

    let certificates: Arc<Mutex<Vec<Observed>>> = Arc::default();
    let on_certificate: CertificateCallback = {
        let certificates = certificates.clone();
        Arc::new(move |index, der| {
            certificates
                .lock()
                .expect("lock")
                .push((index, der.to_vec()));
        })
    };
    let stop = Arc::new(AtomicBool::new(false));
    let other = Arc::new(ServerState::new(true));
    let handles = spawn_checkers(
        "https-cert",
        // The server under test is index 1: the index passed on is its position here.
        &[(closed_port(), other), (server.address, state.clone())],
        &config(CheckKind::Https(https(Verify::Ca(pki.roots()))), 2, 3),
        Some(on_certificate),
        stop.clone(),
    )
    .expect("spawn");

    let saw = |der: &CertificateDer<'_>| {
        let (der, certificates) = (der.as_ref().to_vec(), certificates.clone());
        move || {
            certificates
                .lock()
                .expect("lock")
                .contains(&(1, der.clone()))
        }
    };
    wait_for("the first certificate", saw(&first_der));
    let ok = state.last_check().expect("checked");
    assert!(ok.ok && ok.reason == "HTTP 200", "{ok:?}");
    *served.lock().expect("lock") = renewed_config;
    wait_for("the renewed certificate", saw(&renewed_der));
    assert_eq!(state.health(), Health::Up);
    assert!(
        certificates
            .lock()
            .expect("lock")
            .iter()
            .all(|(i, _)| *i == 1),
        "only server 1 has a certificate"
    );
    let head = &server.seen()[0].head;
    assert!(
        head.starts_with(b"GET /owa/healthcheck.htm HTTP/1.1\r\n"),
        "{head:?}"
    );

    stop.store(true, Ordering::Release);
    join_within(handles, DEADLINE);
}

/// `https` with a certificate from another CA: down, reason `UnknownIssuer`, no certificate
/// passed on (the handshake did not complete).
#[test]
fn https_check_refuses_an_untrusted_certificate() {
    let trusted = Pki::new("trusted CA");
    let stranger = Pki::new("stranger CA");
    let (_, config_of_stranger) = stranger.server();
    let state = Arc::new(ServerState::new(true));
    let server = FakeServer::start(
        state.clone(),
        Some(Arc::new(Mutex::new(config_of_stranger))),
        200,
    );
    let called = Arc::new(AtomicBool::new(false));
    let on_certificate: CertificateCallback = {
        let called = called.clone();
        Arc::new(move |_, _| called.store(true, Ordering::Release))
    };
    let mut checker = Checker::new(
        "https-untrusted",
        0,
        server.address,
        state.clone(),
        &config(CheckKind::Https(https(Verify::Ca(trusted.roots()))), 2, 1),
        Some(on_certificate),
    )
    .expect("checker");
    let summary = checker.check();
    assert_eq!(
        summary.reason, "TLS: invalid peer certificate: UnknownIssuer",
        "{summary:?}"
    );
    assert_eq!(state.health(), Health::Down);
    assert!(!called.load(Ordering::Acquire));

    // The same server checked with `verify = none` passes, and its certificate is passed on.
    let mut lenient = Checker::new(
        "https-untrusted",
        0,
        server.address,
        state.clone(),
        &config(CheckKind::Https(https(Verify::None)), 1, 1),
        None,
    )
    .expect("checker");
    assert!(lenient.check().ok);
    assert_eq!(state.health(), Health::Up);
}

/// An `https` check of a plain HTTP port (which answers its ClientHello with a 400) fails with a
/// TLS reason that names the likely cause, not a panic or a timeout.
#[test]
fn https_check_of_a_plain_port_fails() {
    let state = Arc::new(ServerState::new(true));
    let server = FakeServer::start(state.clone(), None, 200);
    let mut checker = Checker::new(
        "https-plain",
        0,
        server.address,
        state.clone(),
        &config(CheckKind::Https(https(Verify::None)), 1, 1),
        None,
    )
    .expect("checker");
    let summary = checker.check();
    assert!(!summary.ok);
    assert!(
        summary
            .reason
            .starts_with("TLS: the server did not answer in TLS (is it a TLS port?)"),
        "{summary:?}"
    );
    assert_eq!(state.health(), Health::Down);
}

/// The stop flag ends sleeping checkers and one waiting on a silent server, promptly.
#[test]
fn stop_ends_every_thread_promptly() {
    let silent_state = Arc::new(ServerState::new(true));
    let silent = FakeServer::start(silent_state.clone(), None, SILENT);
    let sleeper_state = Arc::new(ServerState::new(true));
    let sleeper = FakeServer::start(sleeper_state.clone(), None, 200);
    let stop = Arc::new(AtomicBool::new(false));
    let long = HealthConfig {
        interval: Duration::from_secs(3600),
        timeout: Duration::from_secs(2),
        ..config(CheckKind::Http(http("/")), 2, 3)
    };
    let handles = spawn_checkers(
        "stop",
        &[
            (silent.address, silent_state),
            (sleeper.address, sleeper_state.clone()),
            (closed_port(), Arc::new(ServerState::new(true))),
        ],
        &long,
        None,
        stop.clone(),
    )
    .expect("spawn");
    // One checker asleep for an hour, one inside a check that waits on a silent server.
    wait_for("the sleeper's first check", || {
        sleeper_state.last_check().is_some()
    });
    wait_for("the silent server's request", || !silent.seen().is_empty());
    let stopped = Instant::now();
    stop.store(true, Ordering::Release);
    // Within the check timeout (2 s) plus a slice, with a margin for a loaded machine.
    join_within(handles, Duration::from_secs(6));
    let took = stopped.elapsed();
    assert!(took < Duration::from_secs(6), "joined after {took:?}");
}

/// Setup errors come back before any thread starts.
#[test]
fn bad_requests_are_refused_at_spawn() {
    let stop = Arc::new(AtomicBool::new(false));
    let bad = config(CheckKind::Http(http("/a b")), 2, 3);
    let e = spawn_checkers(
        "bad",
        &[(closed_port(), Arc::new(ServerState::new(true)))],
        &bad,
        None,
        stop,
    )
    .expect_err("a path with a space");
    assert!(e.to_string().contains("\"/a b\""), "{e}");
}
