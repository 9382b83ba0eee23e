//! Lifecycle of connections and of the process: dead servers are skipped, a service with no live
//! server closes clients at once and keeps running, idle connections are closed and busy ones are
//! not, SIGTERM and SIGINT stop accepting, drain established connections and exit 0.
//!
//! Each test starts the real binary (`CARGO_BIN_EXE_ringmaster`) against in-process fake backends
//! from `common`. On failure the proxy's log is printed (see `common::Proxy`'s `Drop`). Durations
//! below are deadlines for things that should happen much sooner, never timing benchmarks.

mod common;

use common::*;
use std::io::Write;
use std::net::Shutdown;
use std::thread;
use std::time::{Duration, Instant};

/// How long the tests give the proxy to exit after the last connection closed (or after
/// `drain_timeout` ran out).
const EXIT_DEADLINE: Duration = Duration::from_secs(10);

/// How long the tests give the proxy to close its listening sockets after a signal.
const REFUSE_DEADLINE: Duration = Duration::from_secs(5);

/// Proves: with one live and one dead server (nothing listens on its port), every one of 50
/// connections is relayed to the live server: connecting to the dead one fails fast and the
/// next server is tried on the same client connection.
///
/// Fails if the proxy gives up on a client when its first pick is dead (EOF or reset instead of
/// the echo), or if the failed attempt leaves the client hanging (read timeout).
#[test]
fn dead_server_is_skipped() {
    const CONNECTIONS: usize = 50;
    let live = Backend::echo();
    let proxy = Proxy::start(&passthrough_config(
        listen_addr(),
        &[(dead_addr(), 1), (live.addr(), 1)],
        &Opts::default(),
    ));

    for i in 0..CONNECTIONS {
        let mut stream = connect(proxy.addr());
        let token = format!("connection {i} to a pool with a dead server\n").into_bytes();
        let back = echo_round_trip(&mut stream, &token)
            .unwrap_or_else(|e| panic!("connection {i}: no echo: {e}"));
        assert_eq!(back, token, "connection {i}");
    }
    assert!(
        live.accepted() >= CONNECTIONS,
        "the live server accepted {} connections, expected at least {CONNECTIONS}",
        live.accepted()
    );
}

/// Proves: when every server is dead, the client connection is closed promptly (EOF or reset
/// within 5 s), and the proxy keeps running and keeps accepting (and closing) new connections.
///
/// Fails if the proxy leaves the client open with nowhere to send it (read timeout), crashes or
/// exits when no server is reachable, or stops accepting after the failures.
#[test]
fn all_servers_dead_closes_client_and_keeps_running() {
    let mut proxy = Proxy::start(&passthrough_config(
        listen_addr(),
        &[(dead_addr(), 1), (dead_addr(), 2)],
        &Opts::default(),
    ));

    for attempt in 0..3 {
        let mut stream = connect(proxy.addr());
        // Anything written may or may not be accepted before the close; only the close matters.
        let _ = stream.write_all(b"hello?\n");
        let end = wait_closed(&mut stream, Duration::from_secs(5), false);
        assert!(
            end.is_ok(),
            "attempt {attempt}: client must be closed when all servers are dead: {end:?}"
        );
        assert!(
            proxy.is_running(),
            "attempt {attempt}: proxy exited when all servers were dead"
        );
    }
}

/// Proves: with `idle_timeout = "1s"`, a connection with no traffic is closed by the proxy (EOF
/// or reset well within 10 s), while a connection that sends a small message every 200 ms for
/// 4 s (four times the timeout) stays open and gets every echo back.
///
/// Fails if idle connections are never closed (read timeout after 10 s; the backend's own
/// timeout is 60 s, so it cannot close it for the proxy), or if the timeout ignores traffic and
/// cuts the busy connection (an echo fails with EOF or reset).
#[test]
fn idle_timeout_closes_idle_but_not_busy() {
    const BUSY_ROUNDS: usize = 20;
    let backend = Backend::echo();
    let proxy = Proxy::start(&passthrough_config(
        listen_addr(),
        &[(backend.addr(), 1)],
        &Opts {
            idle_timeout: "1s",
            ..Opts::default()
        },
    ));
    let addr = proxy.addr();

    let busy = thread::spawn(move || -> Result<usize, String> {
        let mut stream = try_connect(addr).map_err(|e| format!("busy connect: {e}"))?;
        for round in 0..BUSY_ROUNDS {
            let msg = format!("busy round {round}\n").into_bytes();
            let back = echo_round_trip(&mut stream, &msg)
                .map_err(|e| format!("busy connection cut at round {round}: {e}"))?;
            if back != msg {
                return Err(format!("busy round {round}: wrong echo {back:?}"));
            }
            thread::sleep(Duration::from_millis(200));
        }
        Ok(BUSY_ROUNDS)
    });

    let mut idle = connect(addr);
    // One round trip first, so the connection is known to be relayed end to end.
    let back = echo_round_trip(&mut idle, b"then silence\n").expect("idle connection echo");
    assert_eq!(back, b"then silence\n");
    let started = Instant::now();
    let end = wait_closed(&mut idle, Duration::from_secs(10), false);
    assert!(
        end.is_ok(),
        "idle connection must be closed by idle_timeout: {end:?}"
    );
    eprintln!(
        "idle connection closed ({:?}) {:.2} s after its last traffic",
        end.unwrap(),
        started.elapsed().as_secs_f64()
    );

    let rounds = join(busy, "busy client").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(rounds, BUSY_ROUNDS);
}

/// Proves: SIGTERM drains. With a connection mid-transfer, SIGTERM makes the proxy refuse new
/// connections (its listeners are closed), while the established connection finishes its
/// transfer intact (every echoed chunk equal, sha256 of all echoed bytes equal); once it closes,
/// the process exits with status 0.
///
/// Fails if SIGTERM kills the process at once or cuts established connections (the second half
/// fails), if the listeners stay open (connects still accepted after 5 s), or if the process
/// does not exit, or exits non-zero, after its last connection closed.
#[test]
fn sigterm_drains_established_connections() {
    let backend = Backend::echo();
    let mut proxy = Proxy::start(&passthrough_config(
        listen_addr(),
        &[(backend.addr(), 1)],
        &Opts {
            drain_timeout: "20s",
            ..Opts::default()
        },
    ));
    let transfer = Pattern::new(0x51_6E, 2 * MIB);
    let data = transfer.bytes();
    let chunks: Vec<&[u8]> = data.chunks(CHUNK).collect();
    let half = chunks.len() / 2;
    let mut echoed = Vec::with_capacity(data.len());

    let mut stream = connect(proxy.addr());
    for (i, chunk) in chunks[..half].iter().enumerate() {
        let back = echo_round_trip(&mut stream, chunk)
            .unwrap_or_else(|e| panic!("chunk {i} before SIGTERM: {e}"));
        echoed.extend_from_slice(&back);
    }

    proxy.sigterm();
    assert!(
        wait_refused(proxy.addr(), REFUSE_DEADLINE),
        "new connections still accepted {REFUSE_DEADLINE:?} after SIGTERM"
    );
    assert!(
        proxy.is_running(),
        "proxy exited with a connection still open"
    );

    for (i, chunk) in chunks[half..].iter().enumerate() {
        let back = echo_round_trip(&mut stream, chunk)
            .unwrap_or_else(|e| panic!("chunk {} after SIGTERM: {e}", half + i));
        echoed.extend_from_slice(&back);
    }
    assert_eq!(
        Received {
            bytes: echoed.len() as u64,
            sha256: sha256(&echoed)
        },
        transfer.expected(),
        "echo of a transfer that spanned SIGTERM"
    );
    stream
        .shutdown(Shutdown::Write)
        .expect("client shutdown(Write)");
    let end = wait_closed(&mut stream, IO_TIMEOUT, false);
    assert_eq!(
        end,
        Ok(Closed::Eof),
        "echo backend's FIN after the client's"
    );
    drop(stream);

    let status = proxy.wait_exit(EXIT_DEADLINE);
    assert!(
        status.is_some(),
        "still running {EXIT_DEADLINE:?} after its last connection closed"
    );
    assert_eq!(status.unwrap().code(), Some(0), "exit status after SIGTERM");
}

/// Proves: with `drain_timeout = "1s"`, SIGTERM ends the process (status 0) even though a
/// connection stays open and never finishes; that connection is then closed.
///
/// Fails if the drain waits for the connection forever (still running after 1 s + 10 s), or if
/// giving up on the drain is treated as a failure (non-zero status or killed by a signal).
#[test]
fn sigterm_gives_up_after_drain_timeout() {
    let backend = Backend::echo();
    let mut proxy = Proxy::start(&passthrough_config(
        listen_addr(),
        &[(backend.addr(), 1)],
        &Opts {
            drain_timeout: "1s",
            ..Opts::default()
        },
    ));
    let mut stream = connect(proxy.addr());
    let back = echo_round_trip(&mut stream, b"never finishing\n").expect("echo");
    assert_eq!(back, b"never finishing\n");

    proxy.sigterm();
    let status = proxy.wait_exit(Duration::from_secs(1) + EXIT_DEADLINE);
    assert!(
        status.is_some(),
        "still running {EXIT_DEADLINE:?} after drain_timeout ran out"
    );
    assert_eq!(
        status.unwrap().code(),
        Some(0),
        "exit status after the drain timed out"
    );
    let end = wait_closed(&mut stream, Duration::from_secs(5), false);
    assert!(
        end.is_ok(),
        "the unfinished connection must end with the process: {end:?}"
    );
}

/// Proves: SIGINT is handled like SIGTERM: listeners close at once, an established connection
/// still gets its answer, and the process exits 0 after it closes.
///
/// Fails if SIGINT takes the default action (the process dies by signal: no exit code, the open
/// connection is cut), or if it is ignored (connects still accepted, process never exits).
#[test]
fn sigint_drains_like_sigterm() {
    let backend = Backend::echo();
    let mut proxy = Proxy::start(&passthrough_config(
        listen_addr(),
        &[(backend.addr(), 1)],
        &Opts::default(),
    ));
    let mut stream = connect(proxy.addr());
    let back = echo_round_trip(&mut stream, b"before SIGINT\n").expect("echo");
    assert_eq!(back, b"before SIGINT\n");

    proxy.sigint();
    assert!(
        wait_refused(proxy.addr(), REFUSE_DEADLINE),
        "new connections still accepted {REFUSE_DEADLINE:?} after SIGINT"
    );
    let back = echo_round_trip(&mut stream, b"after SIGINT\n").expect("echo after SIGINT");
    assert_eq!(back, b"after SIGINT\n");
    drop(stream);

    let status = proxy.wait_exit(EXIT_DEADLINE);
    assert!(
        status.is_some(),
        "still running {EXIT_DEADLINE:?} after SIGINT and its last connection closed"
    );
    assert_eq!(status.unwrap().code(), Some(0), "exit status after SIGINT");
}
