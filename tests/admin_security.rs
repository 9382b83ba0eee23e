//! The admin API against the attacks a browser on the same host can make, and against leaks.
//!
//! Each attack is one request as a page (or a rebound name) would send it, against the admin
//! server in front of the fake `Control` of `admin_support`; what must hold is that it is refused
//! with the status that names the check, and that nothing reached `Control` (no drain, no reload,
//! no address change) and nothing was read. Then a real page of another origin, in headless
//! Chromium, tries every way a page has to POST and to read; and the real binary is checked for
//! never printing its token.

use std::io::Write;
use std::net::{SocketAddr, TcpListener};
use std::thread;
use std::time::{Duration, Instant};

mod admin_support;
mod common;

use admin_support::chromium::{chromium, run_chromium};
use admin_support::Fake;

/// One raw request to `addr`; the status and body.
fn send(addr: SocketAddr, head: &str, body: &str) -> (u16, String) {
    let r = common::http_raw(
        addr,
        &format!("{head}Content-Length: {}\r\n\r\n{body}", body.len()),
    );
    (r.status, r.body)
}

/// Proves: without a token, each browser-made attack is refused before any route runs — a POST
/// without a JSON content type (415), a request from another origin (403, by `Origin` or by
/// `Sec-Fetch-Site`), a rebound or foreign `Host` (403, and the answer holds no service data),
/// no `Host` at all (403), a CORS preflight (403: another origin; never an `Access-Control-*`
/// header) — and nothing reaches `Control`; the same requests as an operator's client sends
/// them succeed.
///
/// Fails if any attack changes state or returns data, or if the checks refuse an operator.
#[test]
fn browser_attacks_are_refused_and_change_nothing() {
    let fake = Fake::new();
    let admin = admin_support::start(&fake, None);
    let a = admin.local_addr();
    let drain = "/api/services/exchange/servers/10.0.0.11:443/drain";
    let attacks: [(&str, String, u16); 9] = [
        (
            "form POST (text/plain)",
            format!("POST /api/reload HTTP/1.1\r\nHost: {a}\r\nContent-Type: text/plain\r\n"),
            415,
        ),
        (
            "form POST (urlencoded)",
            format!("POST {drain} HTTP/1.1\r\nHost: {a}\r\nContent-Type: application/x-www-form-urlencoded\r\n"),
            415,
        ),
        (
            "POST without a content type",
            format!("POST /api/reload HTTP/1.1\r\nHost: {a}\r\n"),
            415,
        ),
        (
            "JSON POST from another origin",
            format!("POST {drain} HTTP/1.1\r\nHost: {a}\r\nOrigin: http://evil.example\r\nContent-Type: application/json\r\n"),
            403,
        ),
        (
            "JSON POST, browser says cross-site",
            format!("POST /api/reload HTTP/1.1\r\nHost: {a}\r\nSec-Fetch-Site: cross-site\r\nContent-Type: application/json\r\n"),
            403,
        ),
        (
            "DNS rebinding: read the API",
            format!("GET /api/services HTTP/1.1\r\nHost: rebind.evil.example:{}\r\n", a.port()),
            403,
        ),
        (
            "DNS rebinding: drain",
            format!("POST {drain} HTTP/1.1\r\nHost: 127.0.0.1.nip.io:{}\r\nContent-Type: application/json\r\n", a.port()),
            403,
        ),
        (
            "no Host (HTTP/1.0)",
            "GET /api/services HTTP/1.0\r\n".to_string(),
            403,
        ),
        (
            "CORS preflight",
            format!("OPTIONS /api/reload HTTP/1.1\r\nHost: {a}\r\nOrigin: http://evil.example\r\nAccess-Control-Request-Method: POST\r\n"),
            403,
        ),
    ];
    for (what, head, status) in &attacks {
        let r = common::http_raw(a, &format!("{head}Content-Length: 2\r\n\r\n{{}}"));
        assert_eq!(r.status, *status, "{what}: {}", r.body);
        assert!(
            !r.body.contains("exchange") && !r.body.contains("10.0.0.11"),
            "{what}: the refusal leaks data: {}",
            r.body
        );
        assert!(
            r.headers
                .iter()
                .all(|(n, _)| !n.starts_with("access-control-")),
            "{what}: a CORS header: {:?}",
            r.headers
        );
    }
    assert!(
        fake.calls().is_empty(),
        "attacks reached Control: {:?}",
        fake.calls()
    );

    // The operator's way still works: curl with the JSON content type, from loopback.
    let (status, _) = send(
        a,
        &format!("POST {drain} HTTP/1.1\r\nHost: {a}\r\nContent-Type: application/json\r\n"),
        "",
    );
    assert_eq!(status, 200);
    let (status, body) = send(a, "GET /api/services HTTP/1.1\r\nHost: localhost\r\n", "");
    assert_eq!(status, 200);
    assert!(body.contains("exchange"));
    assert_eq!(fake.calls(), ["Drain exchange 10.0.0.11:443"]);
    admin.stop();
}

/// Proves: with a token, a request without it is refused as soon as its headers are read — its
/// body is never waited for (the 401 arrives while the client still owes 60,000 bytes) — and a
/// head that takes longer than the head deadline (2 s) is answered 408 and closed.
///
/// Fails if the server reads a body before checking the token, or lets a slow head hold a
/// connection for the whole request deadline.
#[test]
fn the_token_is_checked_before_the_body_and_heads_have_a_deadline() {
    let fake = Fake::new();
    let admin = admin_support::start(&fake, Some("s3cret-t0ken-s3cret"));
    let a = admin.local_addr();
    let mut s = admin_support::connect(a);
    write!(
        s,
        "POST /api/reload HTTP/1.1\r\nHost: {a}\r\nContent-Type: application/json\r\nContent-Length: 60000\r\n\r\n"
    )
    .unwrap();
    let r = admin_support::read_reply(&mut s, false);
    assert_eq!(r.status, 401, "{}", r.body);

    let started = Instant::now();
    let mut slow = admin_support::connect(a);
    slow.write_all(b"GET /metrics HTTP/1.1\r\nHost: loc")
        .unwrap();
    let r = admin_support::read_reply(&mut slow, false);
    assert_eq!(r.status, 408);
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(1900) && took < Duration::from_secs(5),
        "a slow head was closed after {took:?}"
    );
    assert!(fake.calls().is_empty());
    admin.stop();
}

/// A page of another origin (its own HTTP server on another loopback port) that tries every way
/// a page has to drive the admin API: a form POST, `fetch` POSTs in `no-cors` mode (sent
/// without a preflight), a JSON `fetch` POST (needs a preflight), and a `fetch` GET to read the
/// services. It writes what each attempt saw into `#out`.
fn attacker_page(admin: SocketAddr) -> String {
    format!(
        r#"<!DOCTYPE html><html><head><title>not the admin</title></head><body>
<pre id="out">running</pre>
<iframe name="sink"></iframe>
<form id="f" method="POST" action="http://{admin}/api/reload" target="sink" enctype="text/plain">
<input name="a" value="b"></form>
<script>
const admin = 'http://{admin}';
const drain = admin + '/api/services/exchange/servers/10.0.0.11:443/drain';
const seen = [];
async function attempt(name, url, init) {{
  try {{
    const r = await fetch(url, init);
    let text = '';
    try {{ text = await r.text(); }} catch (e) {{}}
    seen.push(name + ' ' + r.type + ' ' + r.status + ' ' + (text.includes('10.0.0.11') ? 'LEAKED' : 'nothing-read'));
  }} catch (e) {{
    seen.push(name + ' blocked');
  }}
}}
(async () => {{
  await attempt('no-cors-reload', admin + '/api/reload', {{method: 'POST', mode: 'no-cors', body: 'x'}});
  await attempt('no-cors-drain', drain, {{method: 'POST', mode: 'no-cors', headers: {{'Content-Type': 'text/plain'}}, body: '{{}}'}});
  await attempt('json-drain', drain, {{method: 'POST', headers: {{'Content-Type': 'application/json'}}, body: '{{}}'}});
  await attempt('read-services', admin + '/api/services', {{}});
  document.getElementById('f').submit();
  await new Promise(r => setTimeout(r, 1000));
  document.getElementById('out').textContent = 'done\n' + seen.join('\n');
}})();
</script></body></html>"#
    )
}

/// Serves `page` to every request on a new loopback port, until the process ends.
fn serve_page(page: String) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut s) = conn else { continue };
            let mut buf = [0u8; 4096];
            let _ = std::io::Read::read(&mut s, &mut buf);
            let _ = write!(
                s,
                "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{page}",
                page.len()
            );
        }
    });
    addr
}

/// Proves: a real page of another origin, opened in headless Chromium, cannot drive the admin API
/// by any of a page's means (form POST, `no-cors` fetch POSTs, a JSON POST, a read of
/// `/api/services`): nothing reaches `Control`, the JSON POST and the read are blocked by the
/// browser, and nothing is read.
///
/// Fails if any of them drains a server or reloads (the fake records it), or if the page reads
/// the services.
#[test]
fn a_page_of_another_origin_cannot_drive_the_api_in_chromium() {
    let bin = chromium().expect(
        "Chromium is needed for this test: apt-get install -y chromium (tests/run.sh does), or \
         set $CHROMIUM",
    );
    let fake = Fake::new();
    let admin = admin_support::start(&fake, None);
    let page = serve_page(attacker_page(admin.local_addr()));
    let dom = run_chromium(
        &bin,
        &[
            "--dump-dom".to_string(),
            "--virtual-time-budget=10000".to_string(),
            "--disable-background-networking".to_string(),
        ],
        &format!("http://{page}/"),
    );
    let out = dom
        .split("<pre id=\"out\">")
        .nth(1)
        .and_then(|rest| rest.split("</pre>").next())
        .unwrap_or_default();
    assert!(
        out.starts_with("done"),
        "the page did not finish its attempts:\n{dom}"
    );
    for attempt in [
        "no-cors-reload",
        "no-cors-drain",
        "json-drain",
        "read-services",
    ] {
        assert!(out.contains(attempt), "{attempt} missing:\n{out}");
    }
    assert!(!out.contains("LEAKED"), "the page read the API:\n{out}");
    assert!(out.contains("json-drain blocked"), "{out}");
    assert!(out.contains("read-services blocked"), "{out}");
    assert!(
        fake.calls().is_empty(),
        "a page of another origin drove the API: {:?}\n{dom}",
        fake.calls()
    );
    eprintln!("attacker page results: {}", out.replace('\n', " | "));
    admin.stop();
}

/// Proves: the real binary never shows its token: not in its log (start, requests refused with a
/// wrong token, a reload), and not when a reload is refused because the new file's token is
/// invalid — the 422 answer and the log name the problem and its place, not the value.
///
/// Fails if either token's text appears in an answer or in the log.
#[test]
fn the_token_never_appears_in_logs_errors_or_answers() {
    const TOKEN: &str = "t0ken-that-must-not-leak-0001";
    const BAD: &str = "bad-t0ken x";
    let backend = common::Backend::echo();
    let (listen, admin) = (common::listen_addr(), common::listen_addr());
    let config = |token: &str| {
        format!(
            "[global]\nworkers = 1\nadmin = \"{admin}\"\nadmin_token = \"{token}\"\n\n\
             [[service]]\nname = \"t\"\nlisten = \"{listen}\"\nmode = \"passthrough\"\n\
             [[service.server]]\naddress = \"{}\"\n",
            backend.addr()
        )
    };
    let proxy = common::Proxy::start(&config(TOKEN));
    assert_eq!(
        common::http(admin, "GET", "/metrics", Some("wrong-wrong-wrong-1"), "").status,
        401
    );
    assert_eq!(
        common::http(admin, "GET", "/metrics", Some(TOKEN), "").status,
        200
    );
    proxy.write_config(&config(BAD));
    let r = common::http(admin, "POST", "/api/reload", Some(TOKEN), "");
    assert_eq!(r.status, 422, "{}", r.body);
    assert!(r.body.contains("admin_token"), "{}", r.body);
    let logs = proxy.logs();
    for (what, text) in [("answer", r.body.as_str()), ("log", logs.as_str())] {
        assert!(
            !text.contains(TOKEN),
            "the running token is in the {what}:\n{text}"
        );
        assert!(
            !text.contains(BAD),
            "the refused token is in the {what}:\n{text}"
        );
    }
}
