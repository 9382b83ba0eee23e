//! `GET /stats`: a page for people, in the spirit of HAProxy's stats page. Plain server-rendered
//! HTML5 with inline CSS and no script; it reloads itself every [`REFRESH_SECS`] seconds.
//!
//! One table per service, one row per server, the state written as a word in a coloured cell.
//! Rows carry stable hooks for tests and scrapers:
//! `<tr class="server state-up" data-service="..." data-server="...">` and `<td class="state">`.
//! Every string that comes from the configuration or the network is HTML-escaped.

use std::fmt::Write;

use super::snapshot::{
    CheckSnapshot, LimitSnapshot, ServerSnapshot, ServiceSnapshot, Snapshot, WorkerSnapshot,
};

/// How often the page reloads itself, in seconds.
pub const REFRESH_SECS: u32 = 5;

/// The page's style: a compact, readable table in the manner of HAProxy's, with state colours
/// that keep enough contrast for dark text.
const STYLE: &str = "\
:root{font-family:system-ui,-apple-system,'Segoe UI',Roboto,Arial,sans-serif;font-size:14px;\
color:#1d2330;background:#f4f5f7}
body{margin:0;padding:16px 24px}
header{display:flex;flex-wrap:wrap;align-items:baseline;gap:8px 28px;margin-bottom:14px}
h1{font-size:22px;margin:0;color:#0b3d62}
h1 small{font-size:13px;font-weight:normal;color:#5b6475;margin-left:6px}
dl.process{display:flex;flex-wrap:wrap;gap:4px 22px;margin:0}
dl.process div{display:flex;gap:6px}
dt{color:#5b6475}
dd{margin:0;font-weight:600}
h2{font-size:15px;margin:18px 0 6px;color:#0b3d62}
table{border-collapse:collapse;background:#fff;margin:0 0 18px;box-shadow:0 1px 2px #0002;\
font-variant-numeric:tabular-nums}
table.service{width:100%;min-width:900px;margin:0}
table.service th{vertical-align:bottom}
div.scroll{overflow-x:auto;margin:0 0 18px}
tfoot td{background:#e9ecf1;font-weight:600}
caption .none-up{background:#e53935;border-radius:3px;padding:0 5px}
caption{text-align:left;padding:8px 10px;background:#0b3d62;color:#fff;font-size:13px}
caption .name{font-size:16px;font-weight:700;margin-right:14px}
caption .fact{display:inline-block;margin-right:14px;white-space:nowrap}
caption .fact b{font-weight:600}
caption .bad{color:#ffc2b8}
caption .ep-on{background:#2e7d32;border-radius:3px;padding:0 5px}
caption .ep-off{background:#5b6475;border-radius:3px;padding:0 5px}
th,td{padding:4px 10px;border:1px solid #d5d9e0;white-space:nowrap}
th{background:#e3e7ee;font-weight:600;text-align:left;font-size:12px}
td.num,th.num{text-align:right}
td.addr{font-family:ui-monospace,'SFMono-Regular',Menlo,Consolas,monospace}
td.state{font-weight:700;text-transform:uppercase;text-align:center;letter-spacing:.5px}
tr.state-up td.state{background:#43a047;color:#fff}
tr.state-down td.state{background:#e53935;color:#fff}
tr.state-drain td.state{background:#fb8c00;color:#fff}
tr.state-maint td.state{background:#9e9e9e;color:#fff}
tr.state-up{background:#f1f9f1}
tr.state-down{background:#fdecea}
tr.state-drain{background:#fff4e5}
tr.state-maint{background:#f2f2f2;color:#5b6475}
td.check{white-space:normal;min-width:16em}
.ok{color:#2e7d32;font-weight:600}
.bad{color:#c62828;font-weight:700}
.muted{color:#8a93a3}
td.empty{text-align:center;color:#8a93a3;font-style:italic}
footer{color:#5b6475;font-size:12px}
footer a{color:#0b5fa5}
";

/// Renders the page for `snapshot`; `now_unix` (seconds since the Unix epoch) dates the health
/// checks ("3 s ago").
pub fn render(snapshot: &Snapshot, now_unix: u64) -> String {
    let s = snapshot;
    let mut h = String::with_capacity(8192 + 1024 * s.services.len());
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta http-equiv=\"refresh\" content=\"{REFRESH_SECS}\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>ringmaster stats</title>\n<style>\n{STYLE}</style>\n</head>\n<body>\n"
    );
    let _ = write!(
        h,
        "<header>\n<h1>ringmaster <small>{}</small></h1>\n<dl class=\"process\">\n",
        esc(s.version)
    );
    fact(&mut h, "uptime", &duration(s.uptime_secs));
    fact(&mut h, "config", &esc(&s.config_path));
    let reloads = if s.reload_failures > 0 {
        format!(
            "{} <span class=\"bad\">({} failed)</span>",
            s.reloads, s.reload_failures
        )
    } else {
        s.reloads.to_string()
    };
    fact(&mut h, "reloads", &reloads);
    fact(&mut h, "connections", &limit_text(&s.limit));
    fact(&mut h, "services", &s.services.len().to_string());
    fact(&mut h, "workers", &s.workers.len().to_string());
    h.push_str("</dl>\n</header>\n");

    workers(&mut h, &s.workers);
    if s.services.is_empty() {
        h.push_str("<p class=\"muted\">No services are configured.</p>\n");
    }
    for service in &s.services {
        service_table(&mut h, service, now_unix);
    }
    let _ = write!(
        h,
        "<footer>Refreshes every {REFRESH_SECS} s. Also: <a href=\"/metrics\">/metrics</a> \
         (Prometheus), <a href=\"/api/services\">/api/services</a> (JSON).</footer>\n\
         </body>\n</html>\n"
    );
    h
}

fn fact(h: &mut String, term: &str, value_html: &str) {
    let _ = writeln!(h, "<div><dt>{term}</dt><dd>{value_html}</dd></div>");
}

fn workers(h: &mut String, workers: &[WorkerSnapshot]) {
    h.push_str(
        "<h2>Workers</h2>\n<table class=\"workers\">\n<thead><tr><th>Worker</th><th>CPU</th>\
         <th class=\"num\">Open</th><th class=\"num\">Accepted</th>\
         <th class=\"num\">Accept errors</th></tr></thead>\n<tbody>\n",
    );
    for w in workers {
        let _ = writeln!(
            h,
            "<tr class=\"worker\"><td>{}</td><td>{}</td><td class=\"num\">{}</td>\
             <td class=\"num\">{}</td><td class=\"num{}\">{}</td></tr>",
            w.index,
            w.cpu,
            w.connections_current,
            w.connections_total,
            if w.accept_errors > 0 { " bad" } else { "" },
            w.accept_errors
        );
    }
    if workers.is_empty() {
        h.push_str("<tr><td class=\"empty\" colspan=\"5\">no workers</td></tr>\n");
    }
    h.push_str("</tbody>\n</table>\n");
}

/// The columns of a service table.
const SERVER_COLUMNS: &str = "<tr><th>Server</th><th class=\"num\">Weight</th><th>State</th>\
    <th>Admin</th><th class=\"num\">Open</th><th class=\"num\">Total</th>\
    <th class=\"num\">Bytes in</th><th class=\"num\">Bytes out</th>\
    <th class=\"num\">Connect errors</th><th class=\"num\">TLS errors</th>\
    <th>Last check</th><th>EP match</th></tr>";

/// Column widths shared by every service table, so that the tables line up under each other. The
/// layout stays automatic: a cell that needs more room gets it, no number or state is cut.
const SERVER_COLGROUP: &str = "<colgroup><col style=\"width:14%\"><col style=\"width:5%\">\
    <col style=\"width:6%\"><col style=\"width:6%\"><col style=\"width:5%\">\
    <col style=\"width:6%\"><col style=\"width:7%\"><col style=\"width:7%\">\
    <col style=\"width:7%\"><col style=\"width:6%\"><col style=\"width:25%\">\
    <col style=\"width:6%\"></colgroup>";

fn service_table(h: &mut String, v: &ServiceSnapshot, now_unix: u64) {
    let name = esc(&v.name);
    let _ = write!(
        h,
        "<div class=\"scroll\"><table class=\"service\" data-service=\"{name}\">\n<caption>\
         <span class=\"name\">{name}</span>"
    );
    caption_fact(h, "listen", &esc(&v.listen.to_string()));
    caption_fact(h, "mode", &esc(v.mode));
    caption_fact(h, "schedule", &esc(v.schedule));
    let ep = if v.extended_protection {
        "<span class=\"ep-on\">on</span>"
    } else {
        "<span class=\"ep-off\">off</span>"
    };
    caption_fact(h, "EP", ep);
    let up = v.servers.iter().filter(|s| s.state == "up").count();
    let servers = format!("{up}/{} up", v.servers.len());
    if up == 0 {
        caption_fact(
            h,
            "servers",
            &format!("<span class=\"none-up\">{servers}</span>"),
        );
    } else {
        caption_fact(h, "servers", &servers);
    }
    caption_fact(
        h,
        "connections",
        &format!(
            "{} open / {} total",
            v.connections_current, v.connections_total
        ),
    );
    if v.limit.limit.is_some() {
        caption_fact(h, "limit", &limit_text(&v.limit));
    }
    if let Some(p) = &v.per_ip {
        let refused = if p.refused > 0 {
            format!(" <span class=\"bad\">({} refused)</span>", p.refused)
        } else {
            String::new()
        };
        caption_fact(h, "per address", &format!("{}{refused}", p.limit));
    }
    let timeouts = v
        .ends
        .iter()
        .find(|e| e.end == "handshake_timeout")
        .map_or(0, |e| e.count);
    if timeouts > 0 {
        caption_fact(h, "handshake timeouts", &timeouts.to_string());
    }
    caption_fact(h, "client TLS errors", &v.client_tls_errors.to_string());
    caption_fact(h, "no server", &v.no_server.to_string());
    if let Some(n) = v.persistence_entries {
        caption_fact(h, "persistence entries", &n.to_string());
    }
    let _ = write!(
        h,
        "</caption>\n{SERVER_COLGROUP}\n<thead>{SERVER_COLUMNS}</thead>\n<tbody>\n"
    );
    for server in &v.servers {
        server_row(h, &name, server, now_unix);
    }
    if v.servers.is_empty() {
        h.push_str("<tr><td class=\"empty\" colspan=\"12\">no servers</td></tr>\n");
    }
    h.push_str("</tbody>\n");
    totals(h, &v.servers);
    h.push_str("</table></div>\n");
}

/// The servers' sums, in the columns where a sum means something.
fn totals(h: &mut String, servers: &[ServerSnapshot]) {
    if servers.len() < 2 {
        return;
    }
    let sum = |f: fn(&ServerSnapshot) -> u64| servers.iter().map(f).fold(0u64, u64::saturating_add);
    let (bytes_in, bytes_out) = (sum(|s| s.bytes_in), sum(|s| s.bytes_out));
    let _ = writeln!(
        h,
        "<tfoot><tr class=\"total\"><td>total</td><td class=\"num\">{}</td><td></td><td></td>\
         <td class=\"num\">{}</td><td class=\"num\">{}</td>\
         <td class=\"num\" title=\"{bytes_in} bytes\">{}</td>\
         <td class=\"num\" title=\"{bytes_out} bytes\">{}</td>\
         <td class=\"num\">{}</td><td class=\"num\">{}</td><td></td><td></td></tr></tfoot>",
        sum(|s| u64::from(s.weight)),
        sum(|s| s.connections_current),
        sum(|s| s.connections_total),
        human_bytes(bytes_in),
        human_bytes(bytes_out),
        sum(|s| s.connect_errors),
        sum(|s| s.server_tls_errors),
    );
}

/// "12 / 9950", with how often the limit was reached when it was.
fn limit_text(l: &LimitSnapshot) -> String {
    let limit = l.limit.map_or("no limit".to_owned(), |n| n.to_string());
    if l.reached > 0 {
        format!(
            "{} / {limit} <span class=\"bad\">(reached {}×)</span>",
            l.current, l.reached
        )
    } else {
        format!("{} / {limit}", l.current)
    }
}

fn caption_fact(h: &mut String, term: &str, value_html: &str) {
    let _ = write!(h, "<span class=\"fact\">{term} <b>{value_html}</b></span>");
}

/// One server's row; `service` is already escaped.
fn server_row(h: &mut String, service: &str, s: &ServerSnapshot, now_unix: u64) {
    let addr = esc(&s.address.to_string());
    let state = esc(s.state);
    let _ = write!(
        h,
        "<tr class=\"server state-{state}\" data-service=\"{service}\" data-server=\"{addr}\">\
         <td class=\"addr\">{addr}</td><td class=\"num\">{}</td>\
         <td class=\"state\" title=\"health: {}\">{state}</td><td class=\"admin\">{}</td>\
         <td class=\"num\">{}</td><td class=\"num\">{}</td>",
        s.weight,
        esc(s.health),
        s.admin.as_str(),
        s.connections_current,
        s.connections_total,
    );
    for bytes in [s.bytes_in, s.bytes_out] {
        let _ = write!(
            h,
            "<td class=\"num\" title=\"{bytes} bytes\">{}</td>",
            human_bytes(bytes)
        );
    }
    for errors in [s.connect_errors, s.server_tls_errors] {
        let class = if errors > 0 { "num bad" } else { "num" };
        let _ = write!(h, "<td class=\"{class}\">{errors}</td>");
    }
    let _ = write!(
        h,
        "<td class=\"check\">{}</td>",
        check(s.last_check.as_ref(), now_unix)
    );
    let ep = match s.ep_match {
        Some(true) => "<td class=\"ep ok\" title=\"certificate matches the service's\">yes</td>",
        Some(false) => {
            "<td class=\"ep bad\" title=\"certificate differs from the service's: \
             Extended Protection fails\">NO</td>"
        }
        None => "<td class=\"ep muted\" title=\"EP off or not seen yet\">\u{2013}</td>",
    };
    h.push_str(ep);
    h.push_str("</tr>\n");
}

fn check(c: Option<&CheckSnapshot>, now_unix: u64) -> String {
    let Some(c) = c else {
        return "<span class=\"muted\">not checked</span>".to_string();
    };
    let (class, word) = if c.ok {
        ("ok", "ok")
    } else {
        ("bad", "failed")
    };
    format!(
        "<span class=\"{class}\">{word}</span> \u{b7} {} \u{b7} <span class=\"muted\">{} \
         ({} ms)</span>",
        esc(&c.reason),
        ago(now_unix.saturating_sub(c.at_unix)),
        c.took_ms
    )
}

fn ago(secs: u64) -> String {
    if secs == 0 {
        "just now".to_string()
    } else {
        format!("{} ago", duration(secs))
    }
}

/// `45 s`, `3 m 05 s`, `2 h 07 m`, `4 d 03 h`: the two largest units.
fn duration(secs: u64) -> String {
    let (d, h, m, s) = (secs / 86_400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    if d > 0 {
        format!("{d} d {h:02} h")
    } else if h > 0 {
        format!("{h} h {m:02} m")
    } else if m > 0 {
        format!("{m} m {s:02} s")
    } else {
        format!("{s} s")
    }
}

/// `512 B`, `1.5 KiB`, `73.2 MiB`, ...: one decimal above bytes.
fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 6] = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut value = n as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// Escapes `&`, `<`, `>`, `"` and `'`, so the result is safe in text and in quoted attributes.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admin::snapshot::{AdminState, PerIpSnapshot};

    fn snapshot() -> Snapshot {
        let server = |address: &str, state: &'static str, admin| ServerSnapshot {
            address: address.parse().unwrap(),
            weight: 1,
            health: if state == "down" { "down" } else { "up" },
            admin,
            state,
            connections_total: 10,
            connections_current: 1,
            bytes_in: 1536,
            bytes_out: 5 * 1024 * 1024,
            connect_errors: 0,
            server_tls_errors: 2,
            last_check: Some(CheckSnapshot {
                ok: state != "down",
                reason: "HTTP <500> & \"x\"".into(),
                at_unix: 1000,
                took_ms: 7,
            }),
            ep_match: Some(state != "down"),
        };
        Snapshot {
            version: "0.1.0",
            uptime_secs: 90_061,
            config_path: "/etc/<ringmaster>.toml".into(),
            reloads: 3,
            reload_failures: 1,
            limit: LimitSnapshot {
                current: 1,
                limit: Some(9950),
                reached: 3,
            },
            workers: vec![WorkerSnapshot {
                index: 0,
                cpu: 1,
                connections_total: 5,
                connections_current: 1,
                accept_errors: 0,
            }],
            services: vec![ServiceSnapshot {
                name: "a<b>&\"c'".into(),
                listen: "127.0.0.1:443".parse().unwrap(),
                mode: "reencrypt",
                schedule: "round-robin",
                connections_total: 10,
                connections_current: 1,
                client_tls_errors: 0,
                no_server: 0,
                persistence_entries: Some(7),
                limit: LimitSnapshot {
                    current: 1,
                    limit: Some(200),
                    reached: 2,
                },
                per_ip: Some(PerIpSnapshot {
                    limit: 10,
                    refused: 5,
                    untracked: 0,
                }),
                ends: vec![],
                extended_protection: true,
                servers: vec![
                    server("10.0.0.1:443", "up", AdminState::Enabled),
                    server("[::1]:443", "down", AdminState::Enabled),
                    server("10.0.0.3:443", "maint", AdminState::Disabled),
                ],
            }],
        }
    }

    #[test]
    fn rows_have_hooks_and_state_words() {
        let page = render(&snapshot(), 1003);
        assert!(page.starts_with("<!DOCTYPE html>"));
        assert!(page.contains("<meta http-equiv=\"refresh\" content=\"5\">"));
        let svc = "a&lt;b&gt;&amp;&quot;c&#39;";
        for (addr, state) in [
            ("10.0.0.1:443", "up"),
            ("[::1]:443", "down"),
            ("10.0.0.3:443", "maint"),
        ] {
            let row = format!(
                "<tr class=\"server state-{state}\" data-service=\"{svc}\" data-server=\"{addr}\">\
                 <td class=\"addr\">{addr}</td>"
            );
            assert!(page.contains(&row), "no row {row}\n{page}");
        }
        assert!(
            page.contains(">up</td>")
                && page.contains(">down</td>")
                && page.contains(">maint</td>")
        );
        assert!(page.contains("<td class=\"ep bad\""));
        assert!(page.contains("title=\"5242880 bytes\">5.0 MiB</td>"));
        assert!(page.contains("title=\"1536 bytes\">1.5 KiB</td>"));
        assert!(page.contains("3 s ago (7 ms)"));
        assert!(page.contains("1 d 01 h"), "uptime");
        assert!(page.contains("persistence entries <b>7</b>"));
    }

    #[test]
    fn dynamic_strings_are_escaped() {
        let page = render(&snapshot(), 1003);
        for raw in ["a<b>", "<ringmaster>", "HTTP <500>", "& \"x\""] {
            assert!(!page.contains(raw), "unescaped {raw}");
        }
        assert!(page.contains("HTTP &lt;500&gt; &amp; &quot;x&quot;"));
        assert!(page.contains("/etc/&lt;ringmaster&gt;.toml"));
    }

    #[test]
    fn units() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(1023), "1023 B");
        assert_eq!(human_bytes(1024), "1.0 KiB");
        assert_eq!(human_bytes(u64::MAX), "16.0 EiB");
        assert_eq!(duration(59), "59 s");
        assert_eq!(duration(61), "1 m 01 s");
        assert_eq!(duration(3600 * 5 + 60 * 7), "5 h 07 m");
        assert_eq!(ago(0), "just now");
    }
}
