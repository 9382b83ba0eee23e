//! Readers of the proxy's log: health transitions, health check results, lines about one
//! server, and waits that poll the log until an event shows up or `DEADLINE` passes.

// These read lines that ringmaster writes (tracing's fmt layer, no ANSI when stderr is a file):
//   WARN health: server up -> down service="test" server=127.0.0.1:PORT from=up to=down reason=...
//   INFO health: server down -> up ...
//   DEBUG health check service="test" server=127.0.0.1:PORT ok=false reason=... progress=1/3
//   DEBUG connection closed service=test client=127.0.0.5:PORT server=127.0.0.1:PORT ...
//   WARN connect to server failed; trying the next one service=test server=127.0.0.1:PORT ...
// Fields are matched as whole `key=value` tokens, so a port is never a prefix of another.

use std::net::SocketAddr;
use std::thread;
use std::time::Instant;

use super::{IdServer, DEADLINE, POLL};
use crate::common::Proxy;

/// True if `line` has the whitespace-separated token `key=value`.
pub fn has_field(line: &str, key: &str, value: &str) -> bool {
    let token = format!("{key}={value}");
    line.split_whitespace().any(|t| t == token)
}

/// The health transitions of `server` in `logs`, in order: `(line number, "down" | "up")`.
pub fn transitions(logs: &str, server: SocketAddr) -> Vec<(usize, &'static str)> {
    let server = server.to_string();
    logs.lines()
        .enumerate()
        .filter(|(_, l)| l.contains("health: server") && has_field(l, "server", &server))
        .filter_map(|(i, l)| {
            if l.contains("-> down") {
                Some((i, "down"))
            } else if l.contains("-> up") {
                Some((i, "up"))
            } else {
                None
            }
        })
        .collect()
}

/// Lines `from..to` (line numbers) of `logs` that are results of a health check of `server`
/// with `ok=` `ok` that did not change its state.
pub fn check_lines(logs: &str, server: SocketAddr, ok: bool, from: usize, to: usize) -> usize {
    let server = server.to_string();
    let ok = ok.to_string();
    logs.lines()
        .enumerate()
        .skip(from)
        .take(to.saturating_sub(from))
        .filter(|(_, l)| {
            l.contains(" health check ")
                && has_field(l, "server", &server)
                && has_field(l, "ok", &ok)
        })
        .count()
}

/// Lines of `logs` that contain `text` and the field `server=<server>`.
pub fn lines_about(logs: &str, text: &str, server: SocketAddr) -> Vec<(usize, String)> {
    let server = server.to_string();
    logs.lines()
        .enumerate()
        .filter(|(_, l)| l.contains(text) && has_field(l, "server", &server))
        .map(|(i, l)| (i, l.to_owned()))
        .collect()
}

/// Number of lines in `logs`.
pub fn line_count(logs: &str) -> usize {
    logs.lines().count()
}

/// Polls the proxy's log until `found` returns Some (its value is returned) or [`DEADLINE`]
/// passes; then panics with `what` and `hint`.
pub fn wait_log<T>(
    proxy: &Proxy,
    what: &str,
    hint: impl Fn(&str) -> String,
    mut found: impl FnMut(&str) -> Option<T>,
) -> T {
    let end = Instant::now() + DEADLINE;
    loop {
        let logs = proxy.logs();
        if let Some(v) = found(&logs) {
            return v;
        }
        if Instant::now() >= end {
            panic!(
                "no {what} in the proxy's log within {DEADLINE:?}; {}",
                hint(&logs)
            );
        }
        thread::sleep(POLL);
    }
}

/// Waits for `server`'s `nth` health transition (0-based) to be `to`; returns its line number.
/// The panic message says whether health checks were started at all, since a runtime that never
/// runs them fails every health test here.
pub fn wait_transition(proxy: &Proxy, server: &IdServer, nth: usize, to: &'static str) -> usize {
    let what = format!(
        "health transition #{} of {} ({}) to {to}",
        nth + 1,
        server.id(),
        server.addr()
    );
    let checks = server.checks();
    wait_log(
        proxy,
        &what,
        |logs| {
            format!(
                "health checks started: {}; the fake server answered {} health requests ({} of \
                 them during the wait, {} failed in all); transitions so far: {:?}",
                if logs.contains("health checks started") {
                    "yes"
                } else {
                    "NO (the runtime never started the checkers?)"
                },
                server.checks(),
                server.checks() - checks,
                server.failed_checks(),
                transitions(logs, server.addr()),
            )
        },
        |logs| {
            let all = transitions(logs, server.addr());
            all.get(nth).map(|&(line, state)| {
                assert_eq!(
                    state,
                    to,
                    "{what}: the log has {all:?} for {} instead",
                    server.addr()
                );
                line
            })
        },
    )
}

/// Polls until `cond` is true or [`DEADLINE`] passes (then panics with `what`).
pub fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let end = Instant::now() + DEADLINE;
    while !cond() {
        assert!(
            Instant::now() < end,
            "timed out after {DEADLINE:?} waiting for {what}"
        );
        thread::sleep(POLL);
    }
}
