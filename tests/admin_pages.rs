//! The admin listener over real sockets: `/metrics`, the JSON API, operator actions and their
//! errors, the bearer token, the connection limit and stopping, and the stats page rendered by
//! headless Chromium.
//!
//! Each test serves `ringmaster::admin::server::spawn` on 127.0.0.1:0 in-process, in front of a
//! fake `Control` whose snapshot holds two services and five servers in every state (up, down,
//! drain, maint, one with an Extended Protection mismatch). The HTTP client here is a few lines of
//! std `TcpStream` with timeouts, so a hung server fails a test instead of hanging it. Chromium
//! runs under a 60 s deadline and is killed after it; without Chromium that test fails and says
//! how to install it (`.ci/run` does). The fake, the client and the Chromium runner are in
//! `admin_support/`.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::thread;
use std::time::{Duration, Instant};

mod admin_support;

use admin_support::chromium::{chromium, run_chromium, state_cell};
use admin_support::*;
use ringmaster::admin::server::MAX_CONNECTIONS;

/// Proves: `/metrics` is Prometheus text with per-server, per-service and per-worker samples
/// taken from `Control::snapshot`; `/api/services` is the snapshot as JSON and
/// `/api/services/{name}` one service; `/` redirects to the stats page.
///
/// Fails if a route is missing, a family or label is renamed, or the JSON loses a field.
#[test]
fn metrics_and_json_api() {
    let fake = Fake::new();
    let admin = start(&fake, None);
    let addr = admin.local_addr();

    let m = get(addr, "/metrics");
    assert_eq!(m.status, 200);
    assert!(m
        .header("content-type")
        .unwrap()
        .starts_with("text/plain; version=0.0.4"));
    for line in [
        "ringmaster_build_info{version=\"0.1.0\"} 1",
        "ringmaster_server_up{service=\"exchange\",server=\"10.0.0.12:443\"} 0",
        "ringmaster_server_state{service=\"exchange\",server=\"[2001:db8::13]:443\",state=\"drain\"} 1",
        "ringmaster_server_state{service=\"intranet\",server=\"127.0.0.1:8080\",state=\"maint\"} 1",
        "ringmaster_server_ep_match{service=\"exchange\",server=\"10.0.0.12:443\"} 0",
        "ringmaster_server_bytes_out_total{service=\"intranet\",server=\"127.0.0.1:8081\"} 1250000000",
        "ringmaster_tls_handshake_errors_total{service=\"exchange\",side=\"client\"} 12",
        "ringmaster_service_persistence_entries{service=\"exchange\"} 17",
        "ringmaster_worker_accept_errors_total{worker=\"1\",cpu=\"1\"} 1",
        "ringmaster_reload_failures_total 1",
    ] {
        assert!(m.body.lines().any(|l| l == line), "no {line} in\n{}", m.body);
    }

    let all = get(addr, "/api/services");
    assert_eq!(
        (all.status, all.header("content-type")),
        (200, Some("application/json"))
    );
    let all = all.json();
    assert_eq!(all["version"], "0.1.0");
    assert_eq!(all["reloads"], 4);
    assert_eq!(all["services"].as_array().unwrap().len(), 2);
    assert_eq!(all["services"][0]["servers"][1]["state"], "down");
    assert_eq!(all["services"][0]["servers"][2]["admin"], "drain");
    assert_eq!(all["services"][0]["servers"][1]["ep_match"], false);

    let one = get(addr, "/api/services/intranet");
    assert_eq!(one.status, 200);
    assert_eq!(one.json()["servers"][0]["address"], "127.0.0.1:8080");
    let missing = get(addr, "/api/services/nope");
    assert_eq!(missing.status, 404);
    assert!(missing.json()["error"].as_str().unwrap().contains("nope"));

    let root = get(addr, "/");
    assert_eq!(
        (root.status, root.header("location")),
        (302, Some("/stats"))
    );
    let head = request(addr, "HEAD", "/metrics", &[], "");
    assert_eq!(head.status, 200);
    assert!(head.body.is_empty());
    admin.stop();
}

/// Proves: each POST route reaches `Control` with its decoded arguments (an IPv6 server address
/// percent-encoded in the path), answers JSON, and each `ControlError` maps to its status with a
/// JSON body; wrong methods get 405 with `Allow`, unknown paths 404.
///
/// Fails if an address is passed still encoded, an error maps to the wrong status, or a refused
/// request reaches `Control` anyway.
#[test]
fn operator_actions_and_errors() {
    let fake = Fake::new();
    let admin = start(&fake, None);
    let addr = admin.local_addr();

    let r = post(
        addr,
        "/api/services/exchange/servers/10.0.0.11:443/drain",
        "",
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["action"], "drain");
    let r = post(
        addr,
        "/api/services/exchange/servers/%5B2001%3Adb8%3A%3A13%5D%3A443/enable",
        "",
    );
    assert_eq!(
        (r.status, r.json()["server"].as_str()),
        (200, Some("[2001:db8::13]:443"))
    );
    let r = post(
        addr,
        "/api/services/intranet/servers/127.0.0.1%3A8081/disable",
        "",
    );
    assert_eq!(r.status, 200);
    let r = post(addr, "/api/services/intranet/servers/10.9.9.9:1/drain", "");
    assert_eq!(r.status, 404);
    assert!(r.json()["error"].as_str().unwrap().contains("10.9.9.9:1"));
    assert_eq!(
        post(
            addr,
            "/api/services/intranet/servers/127.0.0.1:8081/reboot",
            ""
        )
        .status,
        404
    );

    let r = post(addr, "/api/services/intranet/address", "127.0.0.1:9443");
    assert_eq!(r.status, 200);
    assert_eq!(
        r.json(),
        serde_json::json!({"service": "intranet", "old": "127.0.0.1:8443", "new": "127.0.0.1:9443"})
    );
    let r = post(
        addr,
        "/api/services/exchange/address",
        r#"{"address":"[::1]:9443"}"#,
    );
    assert_eq!(
        (r.status, r.json()["old"].as_str()),
        (200, Some("0.0.0.0:443"))
    );
    let r = post(addr, "/api/services/exchange/address", "127.0.0.1:1");
    assert_eq!(r.status, 409);
    assert!(r.json()["error"].as_str().unwrap().contains("in use"));
    assert_eq!(
        post(addr, "/api/services/exchange/address", "not-an-address").status,
        400
    );
    assert_eq!(post(addr, "/api/services/exchange/address", "").status, 400);
    assert_eq!(
        post(addr, "/api/services/nope/address", "127.0.0.1:9").status,
        404
    );

    let r = post(addr, "/api/reload", "");
    assert_eq!(r.status, 422);
    let problems = r.json()["problems"].as_array().unwrap().clone();
    assert_eq!(problems.len(), 2);
    assert!(problems[0]
        .as_str()
        .unwrap()
        .starts_with("ringmaster.toml:3:10"));
    fake.reload_ok.store(true, Ordering::SeqCst);
    let r = post(addr, "/api/reload", "");
    assert_eq!(
        (r.status, r.json()["summary"].as_str()),
        (200, Some("2 services, 5 servers"))
    );

    let r = request(addr, "GET", "/api/reload", &[], "");
    assert_eq!((r.status, r.header("allow")), (405, Some("POST")));
    let r = post(addr, "/metrics", "");
    assert_eq!((r.status, r.header("allow")), (405, Some("GET, HEAD")));
    let r = get(addr, "/api/services/exchange/servers/10.0.0.11:443/drain");
    assert_eq!((r.status, r.header("allow")), (405, Some("POST")));
    assert_eq!(get(addr, "/admin.php").status, 404);

    assert_eq!(
        fake.calls(),
        [
            "Drain exchange 10.0.0.11:443",
            "Enable exchange [2001:db8::13]:443",
            "Disable intranet 127.0.0.1:8081",
            "Drain intranet 10.9.9.9:1",
            "move intranet 127.0.0.1:9443",
            "move exchange [::1]:9443",
            "move exchange 127.0.0.1:1",
            "move exchange not-an-address",
            "move nope 127.0.0.1:9",
            "reload",
            "reload",
        ]
    );
    admin.stop();
}

/// Proves: with a token, every route answers 401 with `WWW-Authenticate: Bearer` unless the
/// request carries `Authorization: Bearer <token>`, and a refused action never reaches `Control`.
///
/// Fails if any route is served without the token or with a wrong one.
#[test]
fn token_is_enforced() {
    let fake = Fake::new();
    let admin = start(&fake, Some("s3cret-t0ken"));
    let addr = admin.local_addr();
    for path in ["/metrics", "/stats", "/api/services", "/", "/nope"] {
        let r = get(addr, path);
        assert_eq!(r.status, 401, "{path}");
        assert!(
            r.header("www-authenticate").unwrap().starts_with("Bearer"),
            "{path}"
        );
        let r = request(
            addr,
            "GET",
            path,
            &["Authorization: Bearer s3cret-t0kem"],
            "",
        );
        assert_eq!(r.status, 401, "wrong token on {path}");
        let r = request(
            addr,
            "GET",
            path,
            &["Authorization: Bearer s3cret-t0ken-and-more"],
            "",
        );
        assert_eq!(r.status, 401, "longer token on {path}");
    }
    let ok = request(
        addr,
        "GET",
        "/metrics",
        &["Authorization: Bearer s3cret-t0ken"],
        "",
    );
    assert_eq!(ok.status, 200);
    let ok = request(
        addr,
        "GET",
        "/api/services",
        &["authorization: bearer s3cret-t0ken"],
        "",
    );
    assert_eq!(ok.status, 200);

    let path = "/api/services/exchange/servers/10.0.0.11:443/drain";
    assert_eq!(post(addr, path, "").status, 401);
    assert_eq!(post(addr, "/api/reload", "").status, 401);
    assert!(
        fake.calls().is_empty(),
        "refused requests reached Control: {:?}",
        fake.calls()
    );
    let r = request(
        addr,
        "POST",
        path,
        &["Authorization: Bearer s3cret-t0ken"],
        "",
    );
    assert_eq!(r.status, 200);
    assert_eq!(fake.calls(), ["Drain exchange 10.0.0.11:443"]);
    admin.stop();
}

/// Proves: malformed, oversized and non-HTTP input is answered with the matching 4xx status and
/// a message, and the server goes on serving.
///
/// Fails if the parser accepts bad input, or if bad input kills or wedges the admin thread.
#[test]
fn bad_requests_get_clear_errors() {
    let fake = Fake::new();
    let admin = start(&fake, None);
    let addr = admin.local_addr();

    let r = raw(addr, b"GET /metrics HTTP/1.1\nHost: localhost\n\n");
    assert_eq!(r.status, 400);
    assert!(
        r.json()["error"].as_str().unwrap().contains("CRLF"),
        "{}",
        r.body
    );
    assert_eq!(
        raw(addr, b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03").status,
        400
    );
    assert_eq!(
        raw(addr, b"GET /metrics HTTP/1.1\r\n\r\n").status,
        400,
        "no Host"
    );
    assert_eq!(
        raw(addr, b"GET /metrics HTTP/2.0\r\nHost: localhost\r\n\r\n").status,
        505
    );

    let big = format!(
        "POST /api/reload HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n",
        70_000
    );
    let r = raw(addr, big.as_bytes());
    assert_eq!(r.status, 413);
    let mut long = b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Pad: ".to_vec();
    long.resize(10_000, b'a');
    long.extend_from_slice(b"\r\n\r\n");
    assert_eq!(raw(addr, &long).status, 431);
    let chunked =
        b"POST /api/reload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n";
    assert_eq!(raw(addr, chunked).status, 411);

    // A body sent in pieces, with pauses, is put together.
    let mut s = connect(addr);
    let body = "127.0.0.1:9443";
    write!(
        s,
        "POST /api/services/intranet/address HTTP/1.1\r\nHost: localhost\r\n\
         Content-Type: application/json\r\n"
    )
    .unwrap();
    thread::sleep(Duration::from_millis(50));
    write!(s, "Content-Length: {}\r\n\r\n127.0.", body.len()).unwrap();
    thread::sleep(Duration::from_millis(50));
    write!(s, "0.1:9443").unwrap();
    let r = read_reply(&mut s, false);
    assert_eq!((r.status, r.json()["new"].as_str()), (200, Some(body)));

    assert!(fake.calls().iter().all(|c| !c.starts_with("reload")));
    assert_eq!(get(addr, "/metrics").status, 200);
    admin.stop();
}

/// Proves: slow clients cannot starve a scraper. With more silent connections than the admin
/// server holds (`MAX_CONNECTIONS`), and clients trickling a request a byte at a time, `/metrics`
/// is still answered 200 at once (the slowest pending request is dropped to make room); the
/// silent ones are closed after the head deadline; and `stop` returns promptly with clients still
/// connected, after which nothing listens.
///
/// Fails if silent or slow clients make a scrape wait or fail (503), or if stopping waits for
/// them.
#[test]
fn slow_clients_cannot_starve_a_scrape_and_stop_is_prompt() {
    let fake = Fake::new();
    let admin = start(&fake, None);
    let addr = admin.local_addr();

    let mut silent: Vec<TcpStream> = (0..MAX_CONNECTIONS + 20).map(|_| connect(addr)).collect();
    let mut slow: Vec<TcpStream> = (0..20)
        .map(|_| {
            let mut s = connect(addr);
            s.write_all(b"GET /met").unwrap();
            s
        })
        .collect();
    for i in 0..5 {
        let r = get(addr, "/metrics");
        assert_eq!(r.status, 200, "scrape {i} among slow clients: {}", r.body);
        for s in &mut slow {
            let _ = s.write_all(b"r");
        }
    }
    // The head deadline closes what never finished its request.
    let mut buf = [0u8; 256];
    let s = silent.last_mut().unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut answer = Vec::new();
    while let Ok(n) = s.read(&mut buf) {
        if n == 0 {
            break;
        }
        answer.extend_from_slice(&buf[..n]);
    }
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 408"),
        "a silent client got {answer:?}"
    );

    let _half = {
        let mut s = connect(addr);
        s.write_all(b"GET /metrics HTTP/1.1\r\n").unwrap();
        s
    };
    thread::sleep(Duration::from_millis(100));
    let started = Instant::now();
    admin.stop();
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "stop took {:?}",
        started.elapsed()
    );
    assert!(
        TcpStream::connect_timeout(&addr, IO_TIMEOUT).is_err(),
        "still listening"
    );
    drop((silent, slow));
}

/// Proves: a real browser loads `/stats` and the page it builds lists every server of every
/// service, each row with its state word in its state cell; and a screenshot can be taken for a
/// person to look at (its path is printed).
///
/// Fails if the page does not parse into the expected table rows (a missing or mis-nested row,
/// an unescaped attribute), if a state is shown only as a colour, or if Chromium fails.
#[test]
fn stats_page_in_chromium() {
    // `.ci/run` installs Chromium; without it this check cannot be made, and says so.
    let bin = chromium().expect(
        "Chromium is needed to check the stats page in a browser: apt-get install -y chromium \
         (or set $CHROMIUM)",
    );
    let fake = Fake::new();
    let admin = start(&fake, None);
    let url = format!("http://{}/stats", admin.local_addr());

    let dom = run_chromium(&bin, &["--dump-dom".to_string()], &url);
    assert!(
        dom.contains("<title>ringmaster stats</title>"),
        "not the stats page:\n{dom}"
    );
    assert_eq!(
        dom.matches("<tr class=\"server ").count(),
        SERVERS.len(),
        "{dom}"
    );
    for (service, server, state) in SERVERS {
        let start = format!(
            "<tr class=\"server state-{state}\" data-service=\"{service}\" data-server=\"{server}\">"
        );
        let at = dom
            .find(&start)
            .unwrap_or_else(|| panic!("no row {start} in the DOM:\n{dom}"));
        let row = &dom[at..at + dom[at..].find("</tr>").unwrap()];
        assert_eq!(state_cell(row), Some(state), "state cell of {row}");
        assert!(row.contains(server), "{row}");
    }
    for service in ["exchange", "intranet"] {
        assert!(
            dom.contains(&format!("<span class=\"name\">{service}</span>")),
            "{service}"
        );
    }

    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("admin_pages");
    std::fs::create_dir_all(&dir).unwrap();
    let png = dir.join("stats.png");
    let _ = std::fs::remove_file(&png);
    let args = [
        format!("--screenshot={}", png.display()),
        "--window-size=1400,900".to_string(),
    ];
    run_chromium(&bin, &args, &url);
    let size = std::fs::metadata(&png).map(|m| m.len()).unwrap_or(0);
    assert!(
        size > 10_000,
        "screenshot {} is {size} bytes",
        png.display()
    );
    eprintln!("stats page screenshot: {}", png.display());
    admin.stop();
}
