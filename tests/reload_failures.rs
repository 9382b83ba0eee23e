//! A reload is all or nothing: when any step fails — the new file is invalid, a new address is in
//! use, a worker refuses to prepare, a worker does not answer, a worker panics — the running
//! configuration is exactly as it was: the same services and servers, the same persistence
//! entries (each persisted client still reaches its server), the same open-connection counts,
//! health and drain state.
//!
//! Each case starts a proxy (2 workers) over servers A and B with source-IP persistence, puts
//! clients on both, holds connections open, drains B, and asks for a reload to a configuration
//! that would move things: A and B swapped, B replaced by C, least connections, and a second
//! service. The failing step is made to fail (an occupied port, or a fault injected with
//! `RINGMASTER_FAULTS`); then the whole `/api/services` view is compared with what it was, and
//! every client connects again. The old code remapped the shared persistence map before the
//! workers answered, and a partial apply left some workers on the new configuration: clients of
//! A would then reach B (or be forgotten), and the view would show the new server list.

mod common;

use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

use common::*;
use serde_json::Value;

/// Client addresses: each has its own persistence entry.
fn clients() -> Vec<IpAddr> {
    (2..22u8)
        .map(|i| IpAddr::V4(Ipv4Addr::new(127, 0, 3, i)))
        .collect()
}

/// A connection from `ip`; the server's greeting (its id).
fn which(ip: IpAddr, addr: SocketAddr) -> (TcpStream, String) {
    let socket = socket2::Socket::new(
        socket2::Domain::IPV4,
        socket2::Type::STREAM,
        Some(socket2::Protocol::TCP),
    )
    .expect("socket");
    socket.bind(&SocketAddr::new(ip, 0).into()).expect("bind");
    socket
        .connect_timeout(&addr.into(), Duration::from_secs(5))
        .unwrap_or_else(|e| panic!("connect from {ip}: {e}"));
    let mut s: TcpStream = socket.into();
    s.set_read_timeout(Some(IO_TIMEOUT)).expect("timeout");
    let id = read_line(&mut s).unwrap_or_else(|e| panic!("greeting for {ip}: {e}"));
    (s, id.trim().to_owned())
}

fn config(
    admin: SocketAddr,
    listen: SocketAddr,
    servers: &[SocketAddr],
    schedule: &str,
    extra: Option<SocketAddr>,
) -> String {
    let mut t = format!(
        "[global]\nworkers = 2\nadmin = \"{admin}\"\n\n\
         [[service]]\nname = \"web\"\nlisten = \"{listen}\"\nmode = \"passthrough\"\n\
         server_speaks_first = true\nschedule = \"{schedule}\"\n\
         persistence = {{ mode = \"source-ip\", timeout = \"10m\" }}\n"
    );
    for s in servers {
        t.push_str(&format!("\n[[service.server]]\naddress = \"{s}\"\n"));
    }
    if let Some(extra) = extra {
        t.push_str(&format!(
            "\n[[service]]\nname = \"extra\"\nlisten = \"{extra}\"\nmode = \"passthrough\"\n\
             [[service.server]]\naddress = \"{}\"\n",
            servers[0]
        ));
    }
    t
}

/// The running configuration as the API shows it, without what moves on its own (counters of
/// bytes and totals, the last health check).
fn view(admin: SocketAddr) -> Value {
    let mut v: Value = serde_json::from_str(&get_ok(admin, "/api/services", None)).expect("JSON");
    let services = v["services"].as_array_mut().expect("services");
    for s in services.iter_mut() {
        let s = s.as_object_mut().expect("service");
        for key in ["connections_total", "ends", "limit"] {
            s.remove(key);
        }
        for server in s["servers"].as_array_mut().expect("servers") {
            let server = server.as_object_mut().expect("server");
            for key in ["connections_total", "bytes_in", "bytes_out", "last_check"] {
                server.remove(key);
            }
        }
    }
    v["services"].take()
}

/// Runs one failing reload: sets up the state, breaks the step with `prepare`, reloads, and
/// checks nothing changed. `faults` goes to `RINGMASTER_FAULTS`.
fn failing_reload(case: &str, faults: &str, occupy_extra: bool) {
    let (a, b, c) = (Backend::id("A"), Backend::id("B"), Backend::id("C"));
    let (admin, listen, extra) = (listen_addr(), listen_addr(), listen_addr());
    let env: Vec<(&str, &str)> = if faults.is_empty() {
        Vec::new()
    } else {
        vec![("RINGMASTER_FAULTS", faults)]
    };
    let proxy = Proxy::start_with(
        &config(admin, listen, &[a.addr(), b.addr()], "round-robin", None),
        None,
        &env,
    );
    // Every client gets an entry; round robin gives both servers some.
    let persisted: Vec<(IpAddr, String)> = clients()
        .into_iter()
        .map(|ip| (ip, which(ip, listen).1))
        .collect();
    assert!(
        persisted.iter().any(|(_, s)| s == "A") && persisted.iter().any(|(_, s)| s == "B"),
        "{case}: round robin should spread the clients: {persisted:?}"
    );
    // Open connections to count, and B drained.
    let held: Vec<TcpStream> = persisted
        .iter()
        .take(4)
        .map(|(ip, _)| which(*ip, listen).0)
        .collect();
    let drained = http(
        admin,
        "POST",
        &format!("/api/services/web/servers/{}/drain", b.addr()),
        None,
        "",
    );
    assert_eq!(drained.status, 200, "{case}: drain: {}", drained.body);
    std::thread::sleep(Duration::from_millis(200));
    let before = view(admin);

    // A port the new configuration wants, held by someone else.
    let _occupier = occupy_extra.then(|| TcpListener::bind(extra).expect("occupy the new port"));
    proxy.write_config(&config(
        admin,
        listen,
        &[c.addr(), a.addr()],
        "least-connections",
        Some(extra),
    ));
    let r = http(admin, "POST", "/api/reload", None, "");
    assert!(
        r.status == 409 || r.status == 422,
        "{case}: the reload should have failed: {} {}\n{}",
        r.status,
        r.body,
        proxy.logs_tail()
    );
    assert!(r.body.contains("nothing was changed"), "{case}: {}", r.body);
    std::thread::sleep(Duration::from_millis(200));
    let after = view(admin);
    assert_eq!(
        before, after,
        "{case}: the running configuration changed after a failed reload"
    );
    // Every client still reaches its persisted server (B is drained: its clients move to A,
    // which is what they did before the reload too).
    for (ip, server) in &persisted {
        let now = which(*ip, listen).1;
        let want = if server == "B" { "A" } else { server.as_str() };
        assert_eq!(
            now, want,
            "{case}: client {ip} (persisted to {server}) reached {now}"
        );
    }
    assert!(
        TcpStream::connect_timeout(&extra, Duration::from_millis(500)).is_err() || occupy_extra,
        "{case}: the new service listens"
    );
    drop(held);
}

/// Proves: a new address in use fails the reload (409) before any worker is asked, and
/// nothing changes.
#[test]
fn an_address_in_use_changes_nothing() {
    failing_reload("address in use", "", true);
}

/// Proves: a worker that refuses to prepare (worker 1) makes every worker drop what it
/// prepared: nothing changes, on either worker.
#[test]
fn a_worker_that_refuses_changes_nothing() {
    failing_reload("worker refuses", "prepare-fail=1", false);
}

/// Proves: a worker that does not answer within the apply timeout (0.5 s here) fails the reload
/// and the one that answered drops its prepared state: nothing changes, once the slow worker is
/// back.
#[test]
fn a_worker_that_does_not_answer_changes_nothing() {
    failing_reload(
        "worker does not answer",
        "prepare-stall=0,stall-ms=1500,apply-timeout-ms=500",
        false,
    );
}

/// Proves: a worker that panics while preparing fails the reload: the other worker drops what it
/// prepared and keeps serving the old configuration.
#[test]
fn a_worker_that_panics_changes_nothing() {
    failing_reload("worker panics", "prepare-panic=1", false);
}
