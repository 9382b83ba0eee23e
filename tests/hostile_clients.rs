//! Hostile clients, at the scale that fits in the test suite (the thousands are in
//! `benches/hostile/`): silent and byte-a-second clients cut at the handshake deadline, floods
//! past `max_connections` that wait in the kernel's backlog, an address over
//! `max_connections_per_ip`, a descriptor limit too low for the configured `max_connections`,
//! malformed and oversized ClientHellos, and a client that never reads its answers. Throughout,
//! a normal client keeps being served, and descriptors come back after.

mod common;
mod tls_support;

use std::io::{self, Read, Write};
use std::net::{IpAddr, TcpStream};
use std::time::{Duration, Instant};

use common::*;
use tls_support::*;

/// The handshake timeout of these tests.
const HANDSHAKE: Duration = Duration::from_secs(1);
/// How late after [`HANDSHAKE`] a close may come: the sweeper ticks every 125 ms for a 1 s
/// timeout, and a loaded test machine adds scheduling delay.
const SLACK: Duration = Duration::from_millis(900);

/// Waits for `sock` to be closed by the proxy (EOF or reset); the time it took since `since`.
fn closed_after(
    sock: &mut TcpStream,
    since: Instant,
    within: Duration,
) -> Result<Duration, String> {
    wait_closed(sock, within, false).map(|_| since.elapsed())
}

/// The number of access-log lines with `end=END`.
fn ends(log: &std::path::Path, end: &str) -> usize {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains(&format!("end={end}")))
        .count()
}

fn wait_ends(log: &std::path::Path, end: &str, n: usize) -> usize {
    let deadline = Instant::now() + Duration::from_secs(5);
    while ends(log, end) < n && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    ends(log, end)
}

fn with_access_log(config: String, log: &std::path::Path) -> String {
    config.replacen(
        "[global]\n",
        &format!(
            "[global]\naccess_log = {{ path = \"{}\" }}\n",
            log.display()
        ),
        1,
    )
}

/// Proves: with `handshake_timeout = "1s"`, clients that connect and send nothing (offload,
/// reencrypt, passthrough), and clients that send half a ClientHello one byte every 200 ms
/// (slowloris: each byte keeps them from being idle), are all closed between 1 s and 1.9 s after
/// they connected, each counted `end=handshake_timeout`; a normal client is served throughout,
/// and the proxy's descriptors come back to what they were.
///
/// Fails if any client is kept past the deadline (trickling bytes reset an idle timer, not the
/// handshake deadline), closed before it, or if the normal client is refused meanwhile.
#[test]
fn silent_and_slowloris_clients_are_cut_at_the_handshake_timeout() {
    const EACH: usize = 20;
    let pki = Pki::new();
    let server = TlsServer::echo(&pki.ca.leaf(&[BACKEND_NAME]), ServerOpts::default());
    let echo = Backend::echo();
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("access.log");
    let offload = TlsService::offload("off", &pki.front_files, &[echo.addr()])
        .with("handshake_timeout = \"1s\"");
    let reencrypt =
        TlsService::reencrypt_to("re", &pki, &[server.addr()]).with("handshake_timeout = \"1s\"");
    let passthrough = listen_addr();
    let mut config = with_access_log(tls_config(2, &[offload.clone(), reencrypt.clone()]), &log);
    config.push_str(&format!(
        "\n[[service]]\nname = \"pt\"\nlisten = \"{passthrough}\"\nmode = \"passthrough\"\n\
         handshake_timeout = \"1s\"\n[[service.server]]\naddress = \"{}\"\n",
        echo.addr()
    ));
    let proxy = Proxy::start(&config);
    let client = ca_client(&pki).build();
    // Warm up once so the baseline includes the lazily made per-core state.
    let mut warm = tls_connect(offload.listen, &client, FRONT_NAME).expect("normal client");
    tls_round_trip(&mut warm, b"warm\n").expect("echo");
    drop(warm);
    std::thread::sleep(Duration::from_millis(200));
    let fds_before = proxy.fd_count();

    let started = Instant::now();
    let mut silent: Vec<TcpStream> = Vec::new();
    for addr in [offload.listen, reencrypt.listen, passthrough] {
        silent.extend((0..EACH).map(|_| connect(addr)));
    }
    // A ClientHello's first bytes (a record announcing 512 bytes), a byte each 100 ms each: a
    // client that is never idle and never done. Each one's close time is when a write first
    // fails (its reset arrived at most 100 ms before).
    let mut hello = b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03".to_vec();
    hello.resize(30, 0x5a);
    let mut slow: Vec<TcpStream> = (0..EACH).map(|_| connect(offload.listen)).collect();
    let trickle = std::thread::spawn(move || {
        let mut closed: Vec<Option<Duration>> = vec![None; slow.len()];
        for &byte in &hello {
            for (s, closed) in slow.iter_mut().zip(closed.iter_mut()) {
                if closed.is_none() && s.write_all(&[byte]).is_err() {
                    *closed = Some(started.elapsed());
                }
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        closed
    });

    // The normal client, during the attack.
    for i in 0..10 {
        let mut s = tls_connect(offload.listen, &client, FRONT_NAME)
            .unwrap_or_else(|e| panic!("normal client {i} during the attack: {e}"));
        let msg = format!("normal {i}\n").into_bytes();
        assert_eq!(tls_round_trip(&mut s, &msg).expect("echo"), msg);
    }

    for (i, s) in silent.iter_mut().enumerate() {
        let took = closed_after(s, started, HANDSHAKE + SLACK + Duration::from_secs(1))
            .unwrap_or_else(|e| panic!("silent client {i}: {e}"));
        assert!(
            took >= HANDSHAKE - Duration::from_millis(100),
            "silent client {i} closed after {took:?}"
        );
        assert!(
            took <= HANDSHAKE + SLACK,
            "silent client {i} closed after {took:?}"
        );
    }
    for (i, took) in join(trickle, "slowloris").into_iter().enumerate() {
        let took = took.unwrap_or_else(|| panic!("slowloris client {i} still open after 3 s"));
        assert!(
            took <= HANDSHAKE + SLACK + Duration::from_millis(100),
            "slowloris client {i} closed after {took:?}"
        );
    }
    assert_eq!(wait_ends(&log, "handshake_timeout", 4 * EACH), 4 * EACH);
    drop(silent);
    let deadline = Instant::now() + Duration::from_secs(5);
    while proxy.fd_count() > fds_before && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        proxy.fd_count() <= fds_before,
        "descriptors: {} after, {fds_before} before",
        proxy.fd_count()
    );
}

/// Proves: in reencrypt, a ClientHello costs a server connection (the server is asked with the
/// client's ALPN before the client is answered), and when that client never finishes its
/// handshake, the server connection is closed with it at the handshake deadline, not held for
/// the idle timeout.
///
/// Fails if the server's connection outlives the client's deadline.
#[test]
fn the_server_connection_a_client_hello_caused_closes_at_its_deadline() {
    let pki = Pki::new();
    let (closed_tx, closed_rx) = std::sync::mpsc::channel::<Instant>();
    let closed_tx = std::sync::Mutex::new(closed_tx);
    let server = TlsServer::start(
        &pki.ca.leaf(&[BACKEND_NAME]),
        ServerOpts::default(),
        move |mut s| {
            let mut buf = [0u8; 64];
            while matches!(s.read(&mut buf), Ok(n) if n > 0) {}
            let _ = closed_tx.lock().expect("tx").send(Instant::now());
        },
    );
    let reencrypt =
        TlsService::reencrypt_to("re", &pki, &[server.addr()]).with("handshake_timeout = \"1s\"");
    reencrypt_proxy_probe_free(&server);
    let proxy = Proxy::start(&tls_config(1, std::slice::from_ref(&reencrypt)));
    // A real ClientHello, then nothing: rustls writes its first flight, we never read the answer.
    let client = ca_client(&pki).build();
    let mut conn = rustls::ClientConnection::new(client, server_name(FRONT_NAME)).expect("client");
    let mut sock = connect(reencrypt.listen);
    let started = Instant::now();
    conn.write_tls(&mut sock).expect("send the ClientHello");
    let server_closed = closed_rx
        .recv_timeout(Duration::from_secs(5))
        .unwrap_or_else(|_| {
            panic!(
                "the server connection was not closed\n{}",
                proxy.logs_tail()
            )
        });
    let took = server_closed.duration_since(started);
    assert!(
        took >= HANDSHAKE - Duration::from_millis(100),
        "closed after {took:?}"
    );
    assert!(took <= HANDSHAKE + SLACK, "closed after {took:?}");
    // The proxy answered the ClientHello (the server was reached), then gave up on the client.
    wait_closed(&mut sock, Duration::from_secs(2), true).expect("the client is closed too");
}

/// The readiness probe of `Proxy::start` never reaches a reencrypt server (it sends no
/// ClientHello); nothing to do, but the test above relies on it, so say so here.
fn reencrypt_proxy_probe_free(server: &TlsServer) {
    assert_eq!(server.accepted(), 0);
}

/// Proves: at `max_connections` (5 here, process-wide) a worker stops accepting: more clients
/// complete their TCP handshake in the kernel's backlog and wait, none is refused or reset, and
/// each is served as soon as an earlier one closes; the limit is never exceeded (the backend
/// never has more than 5 connections open) and reaching it is counted.
///
/// Fails if a client beyond the limit is served at once (limit ignored), refused or reset
/// (accept-and-close instead of waiting), or never served after others close.
#[test]
fn a_flood_past_max_connections_waits_in_the_backlog_and_is_served_in_turn() {
    const LIMIT: usize = 5;
    let echo = Backend::echo();
    let admin = listen_addr();
    let listen = listen_addr();
    let config = format!(
        "[global]\nworkers = 1\nmax_connections = {LIMIT}\nadmin = \"{admin}\"\n\n\
         [[service]]\nname = \"test\"\nlisten = \"{listen}\"\nmode = \"passthrough\"\n\
         [[service.server]]\naddress = \"{}\"\n",
        echo.addr()
    );
    let proxy = Proxy::start(&config);
    let mut open: Vec<TcpStream> = (0..LIMIT)
        .map(|i| {
            let mut s = connect(listen);
            let msg = format!("first {i}\n").into_bytes();
            assert_eq!(echo_round_trip(&mut s, &msg).expect("echo"), msg);
            s
        })
        .collect();
    // Twice the limit more: they connect (the kernel completes the handshake) but get no answer.
    let mut waiting: Vec<TcpStream> = (0..2 * LIMIT)
        .map(|i| {
            let mut s = connect(listen);
            s.write_all(format!("waiting {i}\n").as_bytes())
                .expect("send");
            s
        })
        .collect();
    for (i, s) in waiting.iter_mut().enumerate() {
        s.set_read_timeout(Some(Duration::from_millis(100)))
            .expect("timeout");
        let mut byte = [0u8; 1];
        match s.read(&mut byte) {
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) => {}
            other => panic!("client {i} past the limit was not left waiting: {other:?}"),
        }
        s.set_read_timeout(Some(IO_TIMEOUT)).expect("timeout");
    }
    assert_eq!(
        echo.accepted(),
        LIMIT,
        "the backend saw more than the limit"
    );
    let metrics = get_ok(admin, "/metrics", None);
    assert!(
        metrics.contains(&format!("ringmaster_connections_limit {LIMIT}\n")),
        "{metrics}"
    );
    assert!(
        metrics.contains(&format!("ringmaster_connections_current {LIMIT}\n")),
        "{metrics}"
    );
    assert!(
        !metrics.contains("ringmaster_connections_limit_reached_total 0\n"),
        "{metrics}"
    );

    // Each close lets the next waiting client in, in the order they connected (one worker: one
    // backlog), and the limit still holds.
    for (i, mut s) in waiting.into_iter().enumerate() {
        open.remove(0);
        let line = read_line(&mut s).unwrap_or_else(|e| panic!("waiting client {i}: {e}"));
        assert_eq!(line, format!("waiting {i}\n"));
        open.push(s);
        assert!(echo.accepted() <= LIMIT + i + 1);
    }
    drop(open);
    assert!(
        !proxy.logs().contains("accept failed"),
        "{}",
        proxy.logs_tail()
    );
}

/// Proves: with `max_connections_per_ip = 3`, a fourth connection from 127.0.0.2 is reset at
/// once (and logged `end=ip_limit`) while its three are served, another address is served
/// meanwhile, and 127.0.0.2 gets a slot back when one of its connections closes.
///
/// Fails if the fourth connection is served or left hanging, or if 127.0.0.3 is refused.
#[test]
fn max_connections_per_ip_resets_the_excess_and_serves_other_addresses() {
    let echo = Backend::echo();
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("access.log");
    let listen = listen_addr();
    let config = format!(
        "[global]\nworkers = 2\naccess_log = {{ path = \"{}\" }}\n\n\
         [[service]]\nname = \"test\"\nlisten = \"{listen}\"\nmode = \"passthrough\"\n\
         max_connections_per_ip = 3\n[[service.server]]\naddress = \"{}\"\n",
        log.display(),
        echo.addr()
    );
    let _proxy = Proxy::start(&config);
    let a = IpAddr::from([127, 0, 0, 2]);
    let b = IpAddr::from([127, 0, 0, 3]);
    let mut mine: Vec<TcpStream> = (0..3)
        .map(|i| {
            let mut s = tls_support::connect_from(a, listen).expect("connect");
            let msg = format!("a{i}\n").into_bytes();
            assert_eq!(echo_round_trip(&mut s, &msg).expect("echo"), msg);
            s
        })
        .collect();
    // The kernel completes the connect; the reset may come before connect() returns.
    match tls_support::connect_from(a, listen) {
        Ok(mut fourth) => {
            let _ = fourth.write_all(b"a3\n");
            match wait_closed(&mut fourth, Duration::from_secs(2), false) {
                Ok(Closed::Reset(_)) | Ok(Closed::Eof) => {}
                Err(e) => panic!("the fourth connection from 127.0.0.2 was not refused: {e}"),
            }
        }
        Err(e) => assert_eq!(e.kind(), io::ErrorKind::ConnectionReset, "{e}"),
    }
    let mut other = tls_support::connect_from(b, listen).expect("connect");
    assert_eq!(echo_round_trip(&mut other, b"b\n").expect("echo"), b"b\n");
    assert_eq!(wait_ends(&log, "ip_limit", 1), 1);
    mine.pop();
    // The slot comes back once the close reached the proxy.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let mut again = tls_support::connect_from(a, listen).expect("connect");
        if echo_round_trip(&mut again, b"again\n").is_ok_and(|r| r == b"again\n") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "127.0.0.2 never got its slot back"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    drop(mine);
}

/// Proves: with the descriptor limit set far below what `max_connections` needs, accepts (and
/// server connects) that meet `EMFILE` are retried with a back-off, not in a loop: the proxy uses
/// under 20 % of a core while it is out of descriptors, and serves again once clients leave.
///
/// Fails if the accept loop spins on `EMFILE` (a core's worth of CPU), or if the proxy does not
/// recover.
#[test]
fn emfile_at_accept_backs_off_and_recovers() {
    let echo = Backend::echo();
    let listen = listen_addr();
    let config = format!(
        "[global]\nworkers = 1\nmax_connections = 10000\n\n\
         [[service]]\nname = \"test\"\nlisten = \"{listen}\"\nmode = \"passthrough\"\n\
         [[service.server]]\naddress = \"{}\"\n",
        echo.addr()
    );
    let proxy = Proxy::start_with_nofile(&config, Some(48));
    let mut clients = Vec::new();
    for i in 0..60 {
        let mut s = connect(listen);
        let _ = s.write_all(format!("c{i}\n").as_bytes());
        clients.push(s);
    }
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        proxy.logs().contains("Too many open files"),
        "the test did not exhaust the descriptors:\n{}",
        proxy.logs_tail()
    );
    let cpu_before = proxy.cpu_time();
    std::thread::sleep(Duration::from_secs(2));
    let cpu = proxy.cpu_time() - cpu_before;
    assert!(
        cpu < Duration::from_millis(400),
        "the proxy used {cpu:?} of CPU in 2 s while out of descriptors"
    );
    drop(clients);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(mut s) = try_connect(listen) {
            if echo_round_trip(&mut s, b"after\n").is_ok_and(|r| r == b"after\n") {
                break;
            }
        }
        assert!(
            Instant::now() < deadline,
            "never recovered:\n{}",
            proxy.logs_tail()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Proves: without `max_connections`, the limit derived from a low descriptor limit keeps the
/// proxy out of `EMFILE`: a flood of twice the derived limit never meets it (no accept error),
/// nobody is refused, and everyone is served in turn as earlier clients leave.
#[test]
fn the_derived_limit_keeps_a_flood_out_of_emfile() {
    let echo = Backend::echo();
    let listen = listen_addr();
    let config = format!(
        "[global]\nworkers = 1\n\n\
         [[service]]\nname = \"test\"\nlisten = \"{listen}\"\nmode = \"passthrough\"\n\
         [[service.server]]\naddress = \"{}\"\n",
        echo.addr()
    );
    // 100 descriptors: 64 + 4 + 1 listener + 1 checker slot reserved, (100 - 70) / 2 = 15.
    let proxy = Proxy::start_with_nofile(&config, Some(100));
    assert!(
        proxy.logs().contains("max_connections=15"),
        "{}",
        proxy.logs_tail()
    );
    let mut clients: Vec<TcpStream> = (0..30)
        .map(|i| {
            let mut s = connect(listen);
            s.write_all(format!("c{i}\n").as_bytes()).expect("send");
            s
        })
        .collect();
    let mut served = 0;
    while !clients.is_empty() {
        let mut s = clients.remove(0);
        let line = read_line(&mut s).unwrap_or_else(|e| panic!("client {served}: {e}"));
        assert_eq!(line, format!("c{served}\n"));
        served += 1;
    }
    assert_eq!(served, 30);
    assert!(
        !proxy.logs().contains("accept failed"),
        "{}",
        proxy.logs_tail()
    );
}

/// Proves: malformed and hostile ClientHellos are refused cleanly — garbage, an SSLv2-style
/// hello and a ClientHello of more than 64 KiB each end with an alert or a reset (never a TLS
/// session or any other answer), are counted `end=client_error`, and the worker keeps serving.
/// (TLS 1.0 and 1.1 hellos: `tls_errors.rs`, with openssl.)
#[test]
fn malformed_client_hellos_are_refused_cleanly() {
    let pki = Pki::new();
    let echo = Backend::echo();
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("access.log");
    let offload = TlsService::offload("off", &pki.front_files, &[echo.addr()]);
    let proxy = Proxy::start(&with_access_log(
        tls_config(1, std::slice::from_ref(&offload)),
        &log,
    ));
    // The readiness probe's line (no ClientHello) comes first.
    let before = wait_ends(&log, "client_error", 1);
    // SSLv2 CLIENT-HELLO: 2-byte header with the high bit, msg type 1, version 3.1.
    let sslv2 = b"\x80\x2e\x01\x03\x01\x00\x15\x00\x00\x00\x10\x07\x00\xc0\x03\x00\x80\x01\x00\x80\x06\x00\x40\x04\x00\x80\x02\x00\x80\xaa\xbb\xcc\xdd\xee\xff\x00\x11\x22\x33\x44\x55\x66\x77\x88\x99";
    // A handshake record announcing a 16 MiB ClientHello, then 70 KiB of it in records.
    let mut huge = Vec::new();
    let body = 16 * 1024 - 4;
    huge.extend_from_slice(&[0x16, 0x03, 0x01, ((body + 4) >> 8) as u8, (body + 4) as u8]);
    huge.extend_from_slice(&[0x01, 0xff, 0xff, 0xff]);
    huge.extend(std::iter::repeat_n(0x41, body));
    for _ in 0..4 {
        huge.extend_from_slice(&[0x16, 0x03, 0x01, 0x40, 0x00]);
        huge.extend(std::iter::repeat_n(0x41, 0x4000));
    }
    let cases: [(&str, Vec<u8>); 3] = [
        ("garbage", b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec()),
        ("sslv2", sslv2.to_vec()),
        ("oversized", huge),
    ];
    for (what, bytes) in &cases {
        let mut s = connect(offload.listen);
        let _ = s.write_all(bytes);
        let mut got = Vec::new();
        let end = s.read_to_end(&mut got);
        assert!(
            got.is_empty() || got[0] == 0x15,
            "{what}: answered with something other than an alert: {got:?}"
        );
        let _ = end;
    }
    assert_eq!(
        wait_ends(&log, "client_error", before + cases.len()),
        before + cases.len(),
        "{}",
        proxy.logs_tail()
    );
    let client = ca_client(&pki).build();
    let mut s = tls_connect(offload.listen, &client, FRONT_NAME).expect("still serving");
    assert_eq!(tls_round_trip(&mut s, b"ok\n").expect("echo"), b"ok\n");
}

/// Proves: a client that sends requests and never reads the answers costs bounded memory: 40
/// such clients of an offload service whose server answers each with 1 MiB add well under
/// 400 KiB of RSS each (the relay stops reading from the server when the client's socket is
/// full: one large buffer per direction and rustls' bounded send queue), and the proxy goes on
/// serving others.
#[test]
fn a_client_that_never_reads_costs_bounded_memory() {
    const CLIENTS: usize = 40;
    let pki = Pki::new();
    // Answers every line with 1 MiB.
    let big = Backend::start(|mut sock| {
        let chunk = vec![b'x'; CHUNK];
        while read_line(&mut sock).is_ok() {
            for _ in 0..16 {
                if sock.write_all(&chunk).is_err() {
                    return;
                }
            }
        }
    });
    let offload = TlsService::offload("off", &pki.front_files, &[big.addr()]);
    let proxy = Proxy::start(&tls_config(1, std::slice::from_ref(&offload)));
    let client = ca_client(&pki).build();
    std::thread::sleep(Duration::from_millis(200));
    let rss_before = proxy.rss_kib();
    let sessions: Vec<ClientStream> = (0..CLIENTS)
        .map(|_| {
            let mut s = tls_connect(offload.listen, &client, FRONT_NAME).expect("handshake");
            for _ in 0..8 {
                s.write_all(b"more\n").expect("request");
            }
            s.flush().expect("flush");
            s
        })
        .collect();
    std::thread::sleep(Duration::from_secs(1));
    let grown = proxy.rss_kib().saturating_sub(rss_before);
    let per_client = grown / CLIENTS as u64;
    eprintln!("never-reading clients: {CLIENTS} cost {grown} KiB of RSS, {per_client} KiB each");
    assert!(
        per_client < 400,
        "{per_client} KiB per never-reading client"
    );
    let echo_ok = {
        let mut s = tls_connect(offload.listen, &client, FRONT_NAME).expect("another client");
        s.write_all(b"x\n").and_then(|()| s.flush()).is_ok()
    };
    assert!(echo_ok);
    drop(sessions);
}
