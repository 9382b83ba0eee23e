//! The admin API against the real binary: exact counters, the token, drain/enable with
//! persistence, Change Address under load, the stats page, and the access log.

mod common;
mod ops_support;

use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use ops_support::*;
use serde_json::Value;

const TOKEN: &str = "0123456789abcdef0123";

/// One passthrough service `test` on `listen` over `servers`, admin on `admin`; `extra` goes
/// into `[global]` and `service_extra` into the service.
fn config(
    listen: SocketAddr,
    admin: SocketAddr,
    servers: &[SocketAddr],
    extra: &str,
    service_extra: &str,
) -> String {
    // The fake servers greet first (`Backend::id`): the service connects at once instead of
    // waiting for the client's first byte.
    let mut toml = format!(
        "[global]\nworkers = 2\nadmin = \"{admin}\"\n{extra}\n\n\
         [[service]]\nname = \"test\"\nlisten = \"{listen}\"\nmode = \"passthrough\"\n\
         server_speaks_first = true\n{service_extra}\n"
    );
    for s in servers {
        toml.push_str(&format!("\n[[service.server]]\naddress = \"{s}\"\n"));
    }
    toml
}

fn services(admin: SocketAddr, token: Option<&str>) -> Value {
    serde_json::from_str(&get_ok(admin, "/api/services", token)).expect("JSON")
}

fn server_json(api: &Value, server: SocketAddr) -> Value {
    api["services"][0]["servers"]
        .as_array()
        .expect("servers")
        .iter()
        .find(|s| s["address"] == server.to_string())
        .cloned()
        .unwrap_or_else(|| panic!("no server {server} in {api}"))
}

/// The value of the sample `name{labels}` in a Prometheus text page.
fn sample(page: &str, name: &str, labels: &str) -> Option<f64> {
    let key = format!("{name}{{{labels}}} ");
    page.lines()
        .find_map(|l| l.strip_prefix(&key))
        .and_then(|v| v.trim().parse().ok())
}

fn wait_idle(admin: SocketAddr) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if services(admin, None)["services"][0]["connections_current"] == 0 {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("connections still open: {}", services(admin, None));
}

#[test]
fn counters_match_what_was_sent_exactly() {
    let backend = Backend::echo();
    let (listen, admin) = (listen_addr(), listen_addr());
    let _proxy = Proxy::start(&config(listen, admin, &[backend.addr()], "", ""));
    // The readiness probe reaches the server (it speaks first): wait until it did and closed,
    // or it could be counted in the middle of the measurement.
    let deadline = Instant::now() + Duration::from_secs(10);
    while server_json(&services(admin, None), backend.addr())["connections_total"] == 0 {
        assert!(
            Instant::now() < deadline,
            "the readiness probe never reached the server"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    wait_idle(admin);
    let before = services(admin, None);
    let server_before = server_json(&before, backend.addr());

    let mut sent = 0u64;
    for k in 1..=10u64 {
        let len = (k * 1000 + 7) as usize;
        let msg = vec![b'x'; len];
        let mut s = connect(listen);
        assert_eq!(echo_round_trip(&mut s, &msg).expect("echo").len(), len);
        sent += len as u64;
    }
    wait_idle(admin);
    let after = services(admin, None);
    let server_after = server_json(&after, backend.addr());
    let delta =
        |v: &Value, w: &Value, key: &str| v[key].as_u64().expect(key) - w[key].as_u64().expect(key);
    assert_eq!(delta(&server_after, &server_before, "bytes_in"), sent);
    assert_eq!(delta(&server_after, &server_before, "bytes_out"), sent);
    assert_eq!(
        delta(&server_after, &server_before, "connections_total"),
        10
    );
    assert_eq!(server_after["connections_current"], 0);
    let svc = |v: &Value, key: &str| v["services"][0][key].as_u64().expect(key);
    assert_eq!(
        svc(&after, "connections_total") - svc(&before, "connections_total"),
        10
    );
    let workers = |v: &Value| -> u64 {
        v["workers"]
            .as_array()
            .expect("workers")
            .iter()
            .map(|w| w["connections_total"].as_u64().expect("n"))
            .sum()
    };
    assert_eq!(workers(&after) - workers(&before), 10);

    // Prometheus says the same.
    let page = get_ok(admin, "/metrics", None);
    let labels = format!("service=\"test\",server=\"{}\"", backend.addr());
    assert_eq!(
        sample(&page, "ringmaster_server_bytes_in_total", &labels),
        server_after["bytes_in"].as_f64(),
        "{page}"
    );
    assert_eq!(
        sample(&page, "ringmaster_server_connections_total", &labels),
        server_after["connections_total"].as_f64(),
        "{page}"
    );
    assert_eq!(
        sample(&page, "ringmaster_server_up", &labels),
        Some(1.0),
        "{page}"
    );
}

#[test]
fn the_token_is_enforced() {
    let backend = Backend::echo();
    let (listen, admin) = (listen_addr(), listen_addr());
    let _proxy = Proxy::start(&config(
        listen,
        admin,
        &[backend.addr()],
        &format!("admin_token = \"{TOKEN}\""),
        "",
    ));
    for (path, method) in [
        ("/metrics", "GET"),
        ("/api/services", "GET"),
        ("/stats", "GET"),
        ("/api/reload", "POST"),
    ] {
        assert_eq!(
            http(admin, method, path, None, "").status,
            401,
            "{method} {path} without a token"
        );
        assert_eq!(
            http(admin, method, path, Some("wrong-token-wrong-token"), "").status,
            401,
            "{method} {path} with a wrong token"
        );
    }
    let drain = format!("/api/services/test/servers/{}/drain", backend.addr());
    assert_eq!(http(admin, "POST", &drain, None, "").status, 401);
    assert_eq!(
        server_json(&services(admin, Some(TOKEN)), backend.addr())["admin"],
        "enabled",
        "an unauthorised drain changed nothing"
    );
    assert_eq!(http(admin, "GET", "/metrics", Some(TOKEN), "").status, 200);
    assert_eq!(http(admin, "POST", &drain, Some(TOKEN), "").status, 200);
    assert_eq!(
        server_json(&services(admin, Some(TOKEN)), backend.addr())["admin"],
        "drain"
    );
}

/// Connects and reads the backend's id line.
fn which(listen: SocketAddr) -> (std::net::TcpStream, String) {
    let mut s = connect(listen);
    let id = read_line(&mut s).expect("id line");
    (s, id.trim().to_owned())
}

#[test]
fn drain_moves_new_and_persisted_clients_and_lets_open_ones_finish() {
    let (a, b) = (Backend::id("a"), Backend::id("b"));
    let (listen, admin) = (listen_addr(), listen_addr());
    let proxy = Proxy::start(&config(
        listen,
        admin,
        &[a.addr(), b.addr()],
        "",
        "persistence = { mode = \"source-ip\", timeout = \"10m\" }",
    ));
    // The readiness probe already made this client's entry (once it reached its server: wait
    // for that, or the first connection here could race it to an empty entry); every
    // connection sticks to it.
    wait_idle(admin);
    assert_eq!(
        services(admin, None)["services"][0]["persistence_entries"],
        1
    );
    let (mut open, first) = which(listen);
    for _ in 0..5 {
        assert_eq!(which(listen).1, first, "persistence");
    }
    let (drained, other) = if first == "a" {
        (a.addr(), "b")
    } else {
        (b.addr(), "a")
    };
    let r = http(
        admin,
        "POST",
        &format!("/api/services/test/servers/{drained}/drain"),
        None,
        "",
    );
    assert_eq!(r.status, 200, "{}", r.body);
    for i in 0..20 {
        assert_eq!(which(listen).1, other, "connection {i} after the drain");
    }
    // The open connection to the drained server still works.
    assert_eq!(
        echo_round_trip(&mut open, b"still open\n").expect("echo"),
        b"still open\n"
    );
    let api = services(admin, None);
    assert_eq!(server_json(&api, drained)["state"], "drain");
    assert_eq!(server_json(&api, drained)["connections_current"], 1);
    let stats = get_ok(admin, "/stats", None);
    assert!(
        stats.contains(&format!("data-server=\"{drained}\"")),
        "{stats}"
    );
    assert!(stats.contains("state-drain"), "{stats}");

    // Enabled again: new clients may go there, this one stays where it moved (persistence).
    let r = http(
        admin,
        "POST",
        &format!("/api/services/test/servers/{drained}/enable"),
        None,
        "",
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(which(listen).1, other);
    assert_eq!(server_json(&services(admin, None), drained)["state"], "up");
    drop(open);
    // Unknown service or server: 404.
    assert_eq!(
        http(
            admin,
            "POST",
            "/api/services/nope/servers/1.2.3.4:5/drain",
            None,
            ""
        )
        .status,
        404
    );
    assert_eq!(
        http(
            admin,
            "POST",
            "/api/services/test/servers/1.2.3.4:5/drain",
            None,
            ""
        )
        .status,
        404
    );
    drop(proxy);
}

#[test]
fn change_address_under_load_moves_the_service_and_keeps_open_transfers() {
    let backend = Backend::echo();
    let (old, admin, new) = (listen_addr(), listen_addr(), listen_addr());
    let proxy = Proxy::start(&config(old, admin, &[backend.addr()], "", ""));
    let stop = Arc::new(AtomicBool::new(false));
    let transfers: Vec<_> = (0..2)
        .map(|i| long_transfer(old, stop.clone(), 7 + i))
        .collect();
    std::thread::sleep(Duration::from_millis(300));

    let r = http(
        admin,
        "POST",
        "/api/services/test/address",
        None,
        &new.to_string(),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let body: Value = serde_json::from_str(&r.body).expect("JSON");
    assert_eq!(body["old"], old.to_string());
    assert_eq!(body["new"], new.to_string());
    let mut s = connect(new);
    assert_eq!(
        echo_round_trip(&mut s, b"moved\n").expect("echo on the new address"),
        b"moved\n"
    );
    assert!(
        wait_refused(old, Duration::from_secs(5)),
        "the old address still accepts"
    );
    assert_eq!(
        services(admin, None)["services"][0]["listen"],
        new.to_string()
    );

    // An address in use: refused, and nothing changes.
    let squatter = TcpListener::bind("127.0.0.1:0").expect("bind");
    let taken = squatter.local_addr().expect("addr");
    let r = http(
        admin,
        "POST",
        "/api/services/test/address",
        None,
        &format!("{{\"address\":\"{taken}\"}}"),
    );
    assert_eq!(r.status, 409, "{}", r.body);
    assert!(r.body.contains("in use"), "{}", r.body);
    let mut s = connect(new);
    assert_eq!(
        echo_round_trip(&mut s, b"still\n").expect("echo"),
        b"still\n"
    );
    // Garbage: 400.
    assert_eq!(
        http(
            admin,
            "POST",
            "/api/services/test/address",
            None,
            "example.com:80"
        )
        .status,
        400
    );

    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::Relaxed);
    for t in transfers {
        let t = join(t, "transfer");
        assert!(
            t.intact,
            "transfer across the address change: {:?}",
            t.error
        );
        assert!(t.bytes > 0);
    }
    drop(proxy);
}

#[test]
fn stats_page_lists_every_server_with_its_state() {
    let up = Backend::echo();
    let down = dead_addr();
    let (listen, admin) = (listen_addr(), listen_addr());
    let _proxy = Proxy::start(&config(
        listen,
        admin,
        &[up.addr(), down],
        "",
        "[service.health]\ncheck = \"tcp\"\ninterval = \"200ms\"\ntimeout = \"100ms\"\nrise = 1\nfall = 1",
    ));
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let api = services(admin, None);
        if server_json(&api, down)["state"] == "down" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "dead server never marked down: {api}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let page = get_ok(admin, "/stats", None);
    for (server, state) in [(up.addr(), "up"), (down, "down")] {
        let row = page
            .lines()
            .find(|l| l.contains(&format!("data-server=\"{server}\"")))
            .unwrap_or_else(|| panic!("no row for {server}:\n{page}"));
        assert!(
            row.contains(&format!("state-{state}")),
            "{server} should be {state}: {row}"
        );
    }
    let page = get_ok(admin, "/metrics", None);
    let labels = format!("service=\"test\",server=\"{down}\"");
    assert_eq!(
        sample(&page, "ringmaster_server_up", &labels),
        Some(0.0),
        "{page}"
    );
}

#[test]
fn access_log_has_one_json_line_per_connection_and_reopens_on_sigusr1() {
    let backend = Backend::echo();
    let (listen, admin) = (listen_addr(), listen_addr());
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("access.log");
    let proxy = Proxy::start(&config(
        listen,
        admin,
        &[backend.addr()],
        &format!(
            "access_log = {{ path = \"{}\", format = \"json\" }}",
            path.display()
        ),
        "",
    ));
    for len in [100usize, 2000, 30000] {
        let mut s = connect(listen);
        echo_round_trip(&mut s, &vec![b'y'; len]).expect("echo");
    }
    let read_lines = |p: &std::path::Path| -> Vec<Value> {
        std::fs::read_to_string(p)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON: {l}: {e}")))
            .collect()
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    // The readiness probe's connection is logged too.
    while read_lines(&path).len() < 4 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let lines = read_lines(&path);
    for len in [100u64, 2000, 30000] {
        let line = lines
            .iter()
            .find(|l| l["bytes_in"] == len)
            .unwrap_or_else(|| panic!("no line with bytes_in={len}: {lines:?}"));
        assert_eq!(line["bytes_out"], len);
        assert_eq!(line["service"], "test");
        assert_eq!(line["mode"], "passthrough");
        assert_eq!(line["server"], backend.addr().to_string());
        assert_eq!(line["end"], "client_close");
        assert!(line["client"]
            .as_str()
            .expect("client")
            .starts_with("127.0.0.1:"));
        assert!(line["duration_ms"].as_f64().is_some());
        assert!(line["time"].as_str().expect("time").ends_with('Z'));
    }

    // logrotate: move the file away, SIGUSR1, the next line goes to a new file.
    let rotated = dir.path().join("access.log.1");
    std::fs::rename(&path, &rotated).expect("rotate");
    proxy.signal(libc::SIGUSR1);
    assert!(proxy.wait_log_count("reopening the access log", 1, Duration::from_secs(5)));
    std::thread::sleep(Duration::from_millis(300));
    let mut s = connect(listen);
    echo_round_trip(&mut s, b"after rotation").expect("echo");
    drop(s);
    let deadline = Instant::now() + Duration::from_secs(10);
    while read_lines(&path).is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let fresh = read_lines(&path);
    assert_eq!(fresh.len(), 1, "{fresh:?}");
    assert_eq!(fresh[0]["bytes_in"], 14);
    assert_eq!(
        read_lines(&rotated).len(),
        lines.len(),
        "nothing more went to the rotated file"
    );

    // A server that refuses: one line saying so, with the side.
    let dead = dead_addr();
    drop(proxy);
    let listen2 = listen_addr();
    let admin2 = listen_addr();
    let path2 = dir.path().join("errors.log");
    let mut cfg = config(
        listen2,
        admin2,
        &[dead],
        &format!("access_log = {{ path = \"{}\" }}", path2.display()),
        "connect_timeout = \"500ms\"",
    );
    cfg = cfg.replace("workers = 2", "workers = 1");
    let _proxy = Proxy::start(&cfg);
    let deadline = Instant::now() + Duration::from_secs(10);
    let text = loop {
        let text = std::fs::read_to_string(&path2).unwrap_or_default();
        if text.contains("end=server_error") || Instant::now() > deadline {
            break text;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(text.contains("end=server_error"), "{text}");
    assert!(
        text.contains("error=\"no server could be reached\""),
        "{text}"
    );
    assert!(text.contains("service=test"), "{text}");
}
