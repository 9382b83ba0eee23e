//! The cases of the hostile suite. Each starts a fresh proxy, states what it sends and what must
//! hold, and returns its figures.

use std::io::Write;
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

use super::peers::{self, Behaviour, Pki, Seen};
use super::proxy::{free_addr, Proxy};

/// One case's result.
pub struct Row {
    /// Its name.
    pub case: &'static str,
    /// What was sent.
    pub sent: String,
    /// What must hold.
    pub must: &'static str,
    /// The figures measured.
    pub figures: String,
    /// Whether it held.
    pub held: bool,
}

/// Where a case runs.
pub struct Ctx<'a> {
    /// The ringmaster binary.
    pub binary: &'a Path,
    /// A scratch directory.
    pub dir: &'a Path,
    /// The certificates.
    pub pki: &'a Pki,
    /// Connections per attack (1,000 by default).
    pub scale: usize,
}

impl Ctx<'_> {
    /// A TLS-terminating service (`mode` offload or reencrypt) in front of `server`.
    pub(crate) fn tls_service(
        &self,
        name: &str,
        listen: SocketAddr,
        mode: &str,
        server: SocketAddr,
        extra: &str,
    ) -> String {
        let backend = if mode == "reencrypt" {
            format!(
                "\n[service.backend_tls]\nverify = \"ca\"\nca = \"{}\"\nsni = \"{}\"\n",
                self.pki.ca_pem.display(),
                peers::NAME
            )
        } else {
            String::new()
        };
        format!(
            "[[service]]\nname = \"{name}\"\nlisten = \"{listen}\"\nmode = \"{mode}\"\n\
             certificate = \"{}\"\nkey = \"{}\"\n{extra}\n{backend}\n[[service.server]]\naddress = \"{server}\"\n\n",
            self.pki.cert_pem.display(),
            self.pki.key_pem.display(),
        )
    }

    /// A passthrough service in front of `server`.
    pub(crate) fn plain_service(
        name: &str,
        listen: SocketAddr,
        server: SocketAddr,
        extra: &str,
    ) -> String {
        format!(
            "[[service]]\nname = \"{name}\"\nlisten = \"{listen}\"\nmode = \"passthrough\"\n{extra}\n\
             [[service.server]]\naddress = \"{server}\"\n\n"
        )
    }
}

/// Descriptors and memory before and after, as one cell.
pub(crate) fn resources(before: (usize, u64), after: (usize, u64)) -> String {
    format!(
        "fds {} → {}, RSS {} → {} KiB",
        before.0, after.0, before.1, after.1
    )
}

/// Waits for descriptors to come back to `fds` (up to 10 s), then half a second more (two
/// sweeper ticks at most, in which a worker whose connections closed gives free memory back);
/// the state then.
pub(crate) fn settle(proxy: &Proxy, fds: usize) -> (usize, u64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while proxy.fds() > fds && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(500));
    (proxy.fds(), proxy.rss_kib())
}

/// `n` normal requests in a row; their p50 and p99, and failures.
fn normal_latency(addr: SocketAddr, pki: &Pki, n: usize) -> (Duration, Duration, usize) {
    let mut times = Vec::with_capacity(n);
    let mut failed = 0;
    for _ in 0..n {
        match peers::normal_request(addr, pki) {
            Ok(t) => times.push(t),
            Err(_) => failed += 1,
        }
    }
    let p50 = peers::percentile(&mut times, 50.0);
    let p99 = peers::percentile(&mut times, 99.0);
    (p50, p99, failed)
}

/// What one round of the handshake attack measured.
struct Round {
    attempted: usize,
    closed: usize,
    in_time: usize,
    p99: Duration,
    max: Duration,
    busy_p50: Duration,
    busy_p99: Duration,
    busy_failed: usize,
}

/// One round: `n` silent clients each to `off` and `pt`, `n` slowloris clients to `re`, and a
/// normal client's 200 requests meanwhile.
fn handshake_round(
    ctx: &Ctx,
    off: SocketAddr,
    re: SocketAddr,
    pt: SocketAddr,
    timeout: Duration,
) -> Round {
    let n = ctx.scale;
    let started = Instant::now();
    let attacker = |i: usize| IpAddr::from([127, 0, 1, (i % 250) as u8 + 2]);
    let mut silent: Vec<TcpStream> = Vec::with_capacity(2 * n);
    for i in 0..n {
        for addr in [off, pt] {
            if let Ok(s) = peers::connect_from(attacker(i), addr) {
                silent.push(s);
            }
        }
    }
    // Half a ClientHello, a byte a second, to the reencrypt service; the trickle writes through
    // clones while this thread watches every socket close.
    let slow: Vec<TcpStream> = (0..n)
        .filter_map(|i| peers::connect_from(attacker(i), re).ok())
        .collect();
    let attempted = silent.len() + slow.len();
    let mut writers: Vec<TcpStream> = slow.iter().filter_map(|s| s.try_clone().ok()).collect();
    let trickle = std::thread::spawn(move || {
        let hello = b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03";
        for &byte in hello.iter().cycle().take(8) {
            for s in &mut writers {
                let _ = s.set_nonblocking(true);
                let _ = s.write_all(&[byte]);
            }
            std::thread::sleep(Duration::from_secs(1));
        }
    });
    let (busy_p50, busy_p99, busy_failed) = normal_latency(off, ctx.pki, 200);
    silent.extend(slow);
    let times = peers::close_times(&silent, started, timeout + Duration::from_secs(5));
    let _ = trickle.join();
    let mut took: Vec<Duration> = times.iter().flatten().copied().collect();
    let in_time = took
        .iter()
        .filter(|t| **t <= timeout + Duration::from_secs(1))
        .count();
    let max = took.iter().max().copied().unwrap_or_default();
    let p99 = peers::percentile(&mut took, 99.0);
    Round {
        attempted,
        closed: took.len(),
        in_time,
        p99,
        max,
        busy_p50,
        busy_p99,
        busy_failed,
    }
}

/// Silent clients and slowloris clients against the handshake deadline, twice: the first round
/// warms the allocator, which keeps the memory it once used; the second must leave descriptors
/// and RSS where the first left them (+10 %).
pub fn handshake(ctx: &Ctx) -> Row {
    const TIMEOUT: Duration = Duration::from_secs(3);
    let n = ctx.scale;
    let echo = peers::server(Behaviour::Echo, None);
    let tls_echo = peers::server(Behaviour::Echo, Some(ctx.pki.server.clone()));
    let (off, re, pt) = (free_addr(), free_addr(), free_addr());
    let extra = "handshake_timeout = \"3s\"";
    let services = ctx.tls_service("off", off, "offload", echo, extra)
        + &ctx.tls_service("re", re, "reencrypt", tls_echo, extra)
        + &Ctx::plain_service("pt", pt, echo, extra);
    let proxy = Proxy::start(ctx.binary, &ctx.dir.join("handshake"), "", &services, None);
    let (quiet_p50, quiet_p99, _) = normal_latency(off, ctx.pki, 200);
    let start = (proxy.fds(), proxy.rss_kib());
    let first = handshake_round(ctx, off, re, pt, TIMEOUT);
    let before = settle(&proxy, start.0);
    let r = handshake_round(ctx, off, re, pt, TIMEOUT);
    let counted = proxy.ends("handshake_timeout");
    let after = settle(&proxy, before.0);
    let rss_back = after.1 <= before.1 + before.1 / 10;
    Row {
        case: "handshake deadline",
        sent: format!("twice: {n} silent to offload, {n} silent to passthrough, {n} sending half a ClientHello a byte a second to reencrypt (from 250 addresses); handshake_timeout 3 s"),
        must: "all closed within timeout + 1 s; a normal client served throughout; fds and RSS back after the second round",
        figures: format!(
            "second round: attempted {}, closed {} ({} within 4 s), time to close p99 {}, max {}; logged handshake_timeout {counted} (both rounds); normal client (new TLS connection + echo) p50/p99 without {} / {}, during {} / {} ({} failed); fds {} at start, {} after round 1, {} after round 2; RSS {} KiB at start, {} after round 1, {} after round 2 (first round: {}/{} closed in time)",
            r.attempted, r.closed, r.in_time, peers::ms(r.p99), peers::ms(r.max), peers::ms(quiet_p50), peers::ms(quiet_p99), peers::ms(r.busy_p50), peers::ms(r.busy_p99), r.busy_failed, start.0, before.0, after.0, start.1, before.1, after.1, first.in_time, first.attempted
        ),
        held: r.closed == r.attempted
            && r.in_time == r.attempted
            && first.in_time == first.attempted
            && r.busy_failed == 0
            && after.0 <= start.0
            && rss_back,
    }
}

/// A flood of twice `max_connections`, and one address past `max_connections_per_ip`.
pub fn flood(ctx: &Ctx) -> Row {
    let limit = ctx.scale / 4;
    let echo = peers::server(Behaviour::Echo, None);
    let (pt, ip) = (free_addr(), free_addr());
    let per_ip = limit / 2;
    let services = Ctx::plain_service("pt", pt, echo, "")
        + &Ctx::plain_service(
            "ip",
            ip,
            echo,
            &format!("max_connections_per_ip = {per_ip}"),
        );
    let global = format!("max_connections = {}", 2 * limit);
    let proxy = Proxy::start(ctx.binary, &ctx.dir.join("flood"), &global, &services, None);
    let before = (proxy.fds(), proxy.rss_kib());

    // Twice the limit on `pt` (the global limit is 2 × limit, the other service idle).
    let mut socks: Vec<TcpStream> = Vec::new();
    let mut refused = 0;
    for i in 0..4 * limit {
        match peers::connect_from(IpAddr::from([127, 0, 2, (i % 200) as u8 + 2]), pt) {
            Ok(mut s) => {
                let _ = s.write_all(format!("{i}\n").as_bytes());
                socks.push(s);
            }
            Err(_) => refused += 1,
        }
    }
    std::thread::sleep(Duration::from_millis(500));
    let waiting_seen = proxy.metric("ringmaster_connections_current");
    let reached = proxy.metric("ringmaster_connections_limit_reached_total");
    // Serve in turn: read the answer of each, then close it, which lets the next in.
    let mut served = 0;
    let mut failed = 0;
    for s in &mut socks {
        let mut line = [0u8; 16];
        match std::io::Read::read(s, &mut line) {
            Ok(n) if n > 0 => served += 1,
            _ => failed += 1,
        }
        let _ = s.shutdown(std::net::Shutdown::Both);
    }
    drop(socks);
    let accept_errors = proxy.metric("ringmaster_worker_accept_errors_total");

    // One address past its limit while another is served.
    let hog = IpAddr::from([127, 0, 3, 2]);
    let other = IpAddr::from([127, 0, 3, 3]);
    let mut mine = Vec::new();
    let mut reset = 0;
    for _ in 0..2 * per_ip {
        match peers::connect_from(hog, ip) {
            Ok(mut s) => {
                let _ = s.write_all(b"x\n");
                let mut b = [0u8; 2];
                match std::io::Read::read(&mut s, &mut b) {
                    Ok(n) if n > 0 => mine.push(s),
                    _ => reset += 1,
                }
            }
            Err(_) => reset += 1,
        }
    }
    let mut others = 0;
    for _ in 0..per_ip {
        if let Ok(mut s) = peers::connect_from(other, ip) {
            let _ = s.write_all(b"y\n");
            let mut b = [0u8; 2];
            if matches!(std::io::Read::read(&mut s, &mut b), Ok(n) if n > 0) {
                others += 1;
            }
        }
    }
    let logged = proxy.ends("ip_limit");
    let kept = mine.len();
    drop(mine);
    let after = settle(&proxy, before.0);
    Row {
        case: "connection limits",
        sent: format!("{} clients at once against max_connections = {} (one line each, then read the answer and close, in order); {} from one address against max_connections_per_ip = {per_ip}, {per_ip} from another", 4 * limit, 2 * limit, 2 * per_ip),
        must: "no EMFILE, no refusal, all served in turn; the address's excess reset, the other served",
        figures: format!(
            "flood: attempted {}, refused at connect {refused}, served {served}, failed {failed}, open at the limit {waiting_seen}, limit reached {reached}×, accept errors {accept_errors}; per IP: {kept} served, {reset} reset ({logged} logged ip_limit), other address {others}/{per_ip} served; {}",
            4 * limit, resources(before, after)
        ),
        held: refused == 0 && failed == 0 && served == 4 * limit && accept_errors == 0 && kept == per_ip && reset == per_ip && others == per_ip && waiting_seen <= (2 * limit) as u64,
    }
}

/// Failing servers, at scale: how every client saw its end.
pub fn servers(ctx: &Ctx) -> Row {
    let n = ctx.scale / 10;
    let mut services = String::new();
    let mut cases = Vec::new();
    for (name, behaviour, expect) in [
        ("reset", Behaviour::ResetMidAnswer, "server_reset"),
        ("truncate", Behaviour::CloseMidAnswer, "server_truncated"),
        ("silent", Behaviour::SilentMidAnswer, "timeout"),
        ("garbage", Behaviour::Garbage, "server_error"),
    ] {
        let addr = free_addr();
        let server = peers::server(behaviour, Some(ctx.pki.server.clone()));
        services += &ctx.tls_service(name, addr, "reencrypt", server, "idle_timeout = \"2s\"");
        cases.push((name, addr, expect));
    }
    let expired_addr = free_addr();
    let expired = peers::server(Behaviour::Echo, Some(ctx.pki.expired.clone()));
    services += &ctx.tls_service("expired", expired_addr, "reencrypt", expired, "");
    cases.push(("expired", expired_addr, "server_error"));
    let plain_reset = free_addr();
    services += &Ctx::plain_service(
        "pt-reset",
        plain_reset,
        peers::server(Behaviour::ResetMidAnswer, None),
        "",
    );
    let proxy = Proxy::start(ctx.binary, &ctx.dir.join("servers"), "", &services, None);
    let before = (proxy.fds(), proxy.rss_kib());
    let mut held = true;
    let mut figures = Vec::new();
    for (name, addr, expect) in &cases {
        let handles: Vec<_> = (0..n)
            .map(|_| {
                let addr = *addr;
                let client = ctx.pki.client.clone();
                std::thread::spawn(move || {
                    let pki_client = client;
                    let mut sock = peers::connect_from(IpAddr::from([127, 0, 0, 1]), addr).ok()?;
                    let mut conn = rustls::ClientConnection::new(
                        pki_client,
                        rustls::pki_types::ServerName::try_from(peers::NAME).ok()?,
                    )
                    .ok()?;
                    while conn.is_handshaking() {
                        if conn.complete_io(&mut sock).is_err() {
                            return Some(Seen::Abortive);
                        }
                    }
                    let mut s = rustls::StreamOwned::new(conn, sock);
                    let _ = s.write_all(b"GET\n").and_then(|()| s.flush());
                    Some(peers::ending(&mut s))
                })
            })
            .collect();
        let (clean, abortive) = tally(handles);
        let logged = proxy.ends_for(name, expect);
        figures.push(format!(
            "{name}: {abortive}/{n} abortive, {clean} clean, {logged} logged {expect}"
        ));
        held &= abortive == n && clean == 0;
    }
    let handles: Vec<_> = (0..n)
        .map(|_| {
            std::thread::spawn(move || {
                let mut s = peers::connect_from(IpAddr::from([127, 0, 0, 1]), plain_reset).ok()?;
                let _ = s.write_all(b"GET\n");
                Some(peers::ending(&mut s))
            })
        })
        .collect();
    let (_, abortive) = tally(handles);
    figures.push(format!("passthrough reset: {abortive}/{n} abortive"));
    held &= abortive == n;
    let alive = {
        let mut p = proxy;
        let alive = p.alive();
        let after = settle(&p, before.0);
        figures.push(resources(before, after));
        alive
    };
    Row {
        case: "failing servers",
        sent: format!("{n} reencrypt clients each against servers that reset, close without close_notify, go silent (idle_timeout 2 s) mid-answer, answer the ClientHello with garbage, present an expired certificate; {n} passthrough clients against a resetting server"),
        must: "every client sees an abortive close, never a clean one; the right access-log end; the worker lives",
        figures: figures.join("; "),
        held: held && alive,
    }
}

/// How the clients of `handles` saw their ends: (clean, abortive).
fn tally(handles: Vec<std::thread::JoinHandle<Option<Seen>>>) -> (usize, usize) {
    let seen: Vec<Option<Seen>> = handles
        .into_iter()
        .map(|h| h.join().unwrap_or(None))
        .collect();
    let count = |want: Seen| seen.iter().filter(|s| **s == Some(want)).count();
    (count(Seen::Clean), count(Seen::Abortive))
}

/// A descriptor limit far below `max_connections`.
pub fn emfile(ctx: &Ctx) -> Row {
    let echo = peers::server(Behaviour::Echo, None);
    let pt = free_addr();
    let services = Ctx::plain_service("pt", pt, echo, "");
    let mut proxy = Proxy::start(
        ctx.binary,
        &ctx.dir.join("emfile"),
        "max_connections = 100000",
        &services,
        Some(256),
    );
    let mut socks = Vec::new();
    for i in 0..ctx.scale {
        if let Ok(mut s) = peers::connect_from(IpAddr::from([127, 0, 4, (i % 200) as u8 + 2]), pt) {
            let _ = s.write_all(b"x\n");
            socks.push(s);
        }
    }
    std::thread::sleep(Duration::from_millis(500));
    let cpu_before = proxy.cpu();
    let window = Duration::from_secs(5);
    std::thread::sleep(window);
    let cpu = proxy.cpu() - cpu_before;
    drop(socks);
    let started = Instant::now();
    let mut recovered = None;
    while started.elapsed() < Duration::from_secs(20) {
        if peers::connect_from(IpAddr::from([127, 0, 0, 1]), pt)
            .and_then(|mut s| {
                s.write_all(b"ok\n")?;
                let mut b = [0u8; 3];
                std::io::Read::read_exact(&mut s, &mut b)
            })
            .is_ok()
        {
            recovered = Some(started.elapsed());
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    // Read after the recovery: while descriptors are out, the admin API cannot accept either
    // (`max_connections` was set past what the limit allows, so nothing was reserved for it).
    let errors = proxy.metric("ringmaster_worker_accept_errors_total");
    let connect_errors = proxy.metric("ringmaster_server_connect_errors_total");
    let share = cpu.as_secs_f64() / window.as_secs_f64();
    Row {
        case: "EMFILE",
        sent: format!("{} clients against ulimit -n 256 with max_connections = 100000", ctx.scale),
        must: "EMFILE at accept backs off (no spinning core) and the proxy recovers",
        figures: format!(
            "accept errors {errors}, server connects that met EMFILE {connect_errors}; proxy CPU while out of descriptors {:.1} % of a core over 5 s; served again {} after the clients left; alive {}",
            share * 100.0,
            recovered.map_or("never".to_owned(), peers::ms),
            proxy.alive()
        ),
        held: share < 0.2 && recovered.is_some() && errors + connect_errors > 0,
    }
}

/// Malformed ClientHellos.
pub fn malformed(ctx: &Ctx) -> Row {
    let n = ctx.scale / 5;
    let echo = peers::server(Behaviour::Echo, None);
    let off = free_addr();
    let services = ctx.tls_service("off", off, "offload", echo, "");
    let mut proxy = Proxy::start(ctx.binary, &ctx.dir.join("malformed"), "", &services, None);
    let before = (proxy.fds(), proxy.rss_kib());
    let mut huge = vec![0x16, 0x03, 0x01, 0x40, 0x00, 0x01, 0xff, 0xff, 0xff];
    huge.resize(5 + 0x4000, 0x41);
    for _ in 0..4 {
        huge.extend_from_slice(&[0x16, 0x03, 0x01, 0x40, 0x00]);
        huge.extend(std::iter::repeat_n(0x41, 0x4000));
    }
    let cases: [(&str, Vec<u8>); 3] = [
        ("garbage", b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec()),
        ("SSLv2 hello", b"\x80\x2e\x01\x03\x01\x00\x15\x00\x00\x00\x10\x07\x00\xc0\x03\x00\x80\x01\x00\x80\x06\x00\x40\x04\x00\x80\x02\x00\x80\xaa\xbb\xcc\xdd\xee\xff\x00\x11\x22\x33\x44\x55\x66\x77\x88\x99".to_vec()),
        ("ClientHello > 64 KiB", huge),
    ];
    let mut figures = Vec::new();
    let mut held = true;
    for (name, bytes) in &cases {
        let mut answered_tls = 0;
        let mut closed = 0;
        for _ in 0..n {
            let Ok(mut s) = peers::connect_from(IpAddr::from([127, 0, 0, 1]), off) else {
                continue;
            };
            let _ = s.write_all(bytes);
            let mut got = Vec::new();
            let _ = std::io::Read::read_to_end(&mut s, &mut got);
            closed += 1;
            // Only an alert (content type 21) may come back.
            if got.first().is_some_and(|&b| b != 0x15) {
                answered_tls += 1;
            }
        }
        figures.push(format!(
            "{name}: {closed}/{n} closed, {answered_tls} answered with anything but an alert"
        ));
        held &= closed == n && answered_tls == 0;
    }
    let after = settle(&proxy, before.0);
    let ok = peers::normal_request(off, ctx.pki).is_ok();
    figures.push(format!(
        "normal client after: {}",
        if ok { "served" } else { "FAILED" }
    ));
    figures.push(resources(before, after));
    Row {
        case: "malformed ClientHellos",
        sent: format!("{n} each of garbage, an SSLv2 hello, a ClientHello of more than 64 KiB (TLS 1.0-only: run.sh, with openssl)"),
        must: "each refused (an alert or a reset, nothing else), the worker lives",
        figures: figures.join("; "),
        held: held && ok && proxy.alive(),
    }
}
