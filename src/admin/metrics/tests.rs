//! Tests of the Prometheus rendering: the expected samples, the exposition grammar, escaping.

use super::*;
use crate::admin::snapshot::{
    CheckSnapshot, EndCount, LimitSnapshot, PerIpSnapshot, WorkerSnapshot,
};
use std::collections::HashSet;

fn server(address: &str, state: &'static str, admin: AdminState) -> ServerSnapshot {
    ServerSnapshot {
        address: address.parse().unwrap(),
        weight: 2,
        health: if state == "down" { "down" } else { "up" },
        admin,
        state,
        connections_total: 120,
        connections_current: 3,
        bytes_in: 1_048_576,
        bytes_out: 73_741_824,
        connect_errors: 4,
        server_tls_errors: 1,
        last_check: None,
        ep_match: None,
    }
}

fn snapshot() -> Snapshot {
    let mut up = server("10.0.0.11:443", "up", AdminState::Enabled);
    up.last_check = Some(CheckSnapshot {
        ok: true,
        reason: "HTTP 200".into(),
        at_unix: 1_700_000_000,
        took_ms: 12,
    });
    up.ep_match = Some(true);
    let mut down = server("[2001:db8::12]:443", "down", AdminState::Enabled);
    down.ep_match = Some(false);
    Snapshot {
        version: "0.1.0",
        uptime_secs: 3725,
        config_path: "/etc/ringmaster.toml".into(),
        reloads: 2,
        reload_failures: 1,
        limit: LimitSnapshot {
            current: 12,
            limit: Some(9950),
            reached: 4,
        },
        workers: vec![
            WorkerSnapshot {
                index: 0,
                cpu: 2,
                connections_total: 500,
                connections_current: 7,
                accept_errors: 0,
            },
            WorkerSnapshot {
                index: 1,
                cpu: 3,
                connections_total: 480,
                connections_current: 5,
                accept_errors: 9,
            },
        ],
        services: vec![
            ServiceSnapshot {
                name: "exchange".into(),
                listen: "0.0.0.0:443".parse().unwrap(),
                mode: "reencrypt",
                schedule: "source-hash",
                connections_total: 980,
                connections_current: 12,
                client_tls_errors: 6,
                no_server: 0,
                persistence_entries: Some(42),
                limit: LimitSnapshot {
                    current: 12,
                    limit: Some(500),
                    reached: 2,
                },
                per_ip: Some(PerIpSnapshot {
                    limit: 20,
                    refused: 7,
                    untracked: 0,
                }),
                ends: vec![
                    EndCount {
                        end: "client_close",
                        count: 960,
                    },
                    EndCount {
                        end: "handshake_timeout",
                        count: 8,
                    },
                ],
                extended_protection: true,
                servers: vec![up, down],
            },
            ServiceSnapshot {
                name: "we\"ird\\na\nme".into(),
                listen: "127.0.0.1:8443".parse().unwrap(),
                mode: "passthrough",
                schedule: "round-robin",
                connections_total: 0,
                connections_current: 0,
                client_tls_errors: 0,
                no_server: 5,
                persistence_entries: None,
                limit: LimitSnapshot {
                    current: 0,
                    limit: None,
                    reached: 0,
                },
                per_ip: None,
                ends: vec![],
                extended_protection: false,
                servers: vec![server("127.0.0.1:8080", "drain", AdminState::Drain)],
            },
        ],
    }
}

#[test]
fn renders_the_expected_lines() {
    let text = render(&snapshot());
    let lines: HashSet<&str> = text.lines().collect();
    for want in [
        "# HELP ringmaster_build_info ringmaster's version; always 1.",
        "# TYPE ringmaster_build_info gauge",
        "ringmaster_build_info{version=\"0.1.0\"} 1",
        "ringmaster_uptime_seconds 3725",
        "# TYPE ringmaster_reloads_total counter",
        "ringmaster_reloads_total 2",
        "ringmaster_reload_failures_total 1",
        "ringmaster_worker_connections_total{worker=\"1\",cpu=\"3\"} 480",
        "ringmaster_worker_connections_current{worker=\"0\",cpu=\"2\"} 7",
        "ringmaster_worker_accept_errors_total{worker=\"1\",cpu=\"3\"} 9",
        "ringmaster_service_info{service=\"exchange\",listen=\"0.0.0.0:443\",mode=\"reencrypt\",\
         schedule=\"source-hash\",extended_protection=\"true\"} 1",
        "ringmaster_service_connections_total{service=\"exchange\"} 980",
        "ringmaster_service_connections_current{service=\"exchange\"} 12",
        "ringmaster_service_no_server_total{service=\"we\\\"ird\\\\na\\nme\"} 5",
        "ringmaster_service_persistence_entries{service=\"exchange\"} 42",
        "ringmaster_connections_current 12",
        "ringmaster_connections_limit 9950",
        "ringmaster_connections_limit_reached_total 4",
        "ringmaster_service_connections_limit{service=\"exchange\"} 500",
        "ringmaster_service_connections_limit_reached_total{service=\"exchange\"} 2",
        "ringmaster_service_per_ip_limit{service=\"exchange\"} 20",
        "ringmaster_service_per_ip_refused_total{service=\"exchange\"} 7",
        "ringmaster_service_closes_total{service=\"exchange\",end=\"handshake_timeout\"} 8",
        "ringmaster_tls_handshake_errors_total{service=\"exchange\",side=\"client\"} 6",
        "ringmaster_tls_handshake_errors_total{service=\"exchange\",server=\"10.0.0.11:443\",\
         side=\"server\"} 1",
        "ringmaster_server_weight{service=\"exchange\",server=\"10.0.0.11:443\"} 2",
        "ringmaster_server_connections_total{service=\"exchange\",server=\"10.0.0.11:443\"} 120",
        "ringmaster_server_connections_current{service=\"exchange\",server=\"10.0.0.11:443\"} 3",
        "ringmaster_server_bytes_in_total{service=\"exchange\",server=\"10.0.0.11:443\"} 1048576",
        "ringmaster_server_bytes_out_total{service=\"exchange\",server=\"10.0.0.11:443\"} 73741824",
        "ringmaster_server_connect_errors_total{service=\"exchange\",server=\"10.0.0.11:443\"} 4",
        "ringmaster_server_up{service=\"exchange\",server=\"10.0.0.11:443\"} 1",
        "ringmaster_server_up{service=\"exchange\",server=\"[2001:db8::12]:443\"} 0",
        "ringmaster_server_check_ok{service=\"exchange\",server=\"10.0.0.11:443\"} 1",
        "ringmaster_server_check_timestamp_seconds{service=\"exchange\",server=\"10.0.0.11:443\"} \
         1700000000",
        "ringmaster_server_check_duration_seconds{service=\"exchange\",server=\"10.0.0.11:443\"} \
         0.012",
        "ringmaster_server_ep_match{service=\"exchange\",server=\"10.0.0.11:443\"} 1",
        "ringmaster_server_ep_match{service=\"exchange\",server=\"[2001:db8::12]:443\"} 0",
        "ringmaster_server_state{service=\"exchange\",server=\"10.0.0.11:443\",state=\"up\"} 1",
        "ringmaster_server_state{service=\"exchange\",server=\"10.0.0.11:443\",state=\"down\"} 0",
        "ringmaster_server_state{service=\"exchange\",server=\"[2001:db8::12]:443\",state=\"down\"} 1",
        "ringmaster_server_admin_state{service=\"we\\\"ird\\\\na\\nme\",server=\"127.0.0.1:8080\",\
         state=\"drain\"} 1",
        "ringmaster_server_admin_state{service=\"we\\\"ird\\\\na\\nme\",server=\"127.0.0.1:8080\",\
         state=\"enabled\"} 0",
    ] {
        assert!(lines.contains(want), "missing line {want}\n---\n{text}");
    }
    // Only where the snapshot has a value: no persistence, check or EP line for the others.
    for absent in [
        "ringmaster_service_persistence_entries{service=\"we",
        "ringmaster_server_check_ok{service=\"exchange\",server=\"[2001",
        "ringmaster_server_ep_match{service=\"we",
    ] {
        assert!(!text.contains(absent), "unexpected {absent}\n{text}");
    }
    // One-hot enumerations: every server has exactly one current state and admin state.
    assert_eq!(
        text.matches("ringmaster_server_state{").count(),
        3 * STATES.len()
    );
    assert_eq!(
        text.lines()
            .filter(|l| l.starts_with("ringmaster_server_state{") && l.ends_with(" 1"))
            .count(),
        3
    );
}

/// Every line is a `# HELP`/`# TYPE` comment or `name{label="value",...} value`; each family's
/// samples follow its own `# TYPE` without interruption; counters end in `_total`.
#[test]
fn every_line_follows_the_exposition_grammar() {
    let text = render(&snapshot());
    assert!(text.ends_with('\n'));
    let mut families_seen = HashSet::new();
    let mut current: Option<(String, String)> = None;
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').expect(line);
            assert!(valid_name(name) && !help.is_empty(), "{line}");
            assert!(
                families_seen.insert(name.to_string()),
                "family twice: {line}"
            );
            current = None;
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect(line);
            assert!(families_seen.contains(name), "TYPE before HELP: {line}");
            assert!(kind == "counter" || kind == "gauge", "{line}");
            assert_eq!(kind == "counter", name.ends_with("_total"), "{line}");
            current = Some((name.to_string(), kind.to_string()));
        } else {
            let (name, value) = parse_sample(line);
            let (family, _) = current.as_ref().expect("sample before any # TYPE");
            assert_eq!(&name, family, "sample outside its family: {line}");
            assert!(value.parse::<f64>().is_ok(), "value of {line}");
        }
    }
}

fn valid_name(name: &str) -> bool {
    name.starts_with("ringmaster_")
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b':')
}

/// Parses `name{l="v",...} value` (labels optional), following the escapes; returns the name
/// and the value text.
fn parse_sample(line: &str) -> (String, String) {
    let name_end = line.find(['{', ' ']).expect(line);
    let name = &line[..name_end];
    assert!(valid_name(name), "{line}");
    let mut rest = &line[name_end..];
    if let Some(labels) = rest.strip_prefix('{') {
        let mut chars = labels.char_indices().peekable();
        loop {
            let label: String = chars
                .by_ref()
                .take_while(|&(_, c)| c != '=')
                .map(|(_, c)| c)
                .collect();
            assert!(
                !label.is_empty()
                    && label
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'_'),
                "label name in {line}"
            );
            assert_eq!(chars.next().map(|(_, c)| c), Some('"'), "{line}");
            loop {
                match chars.next().expect(line).1 {
                    '\\' => assert!(
                        matches!(chars.next(), Some((_, '\\' | '"' | 'n'))),
                        "{line}"
                    ),
                    '"' => break,
                    '\n' => panic!("raw newline in {line}"),
                    _ => {}
                }
            }
            match chars.next().expect(line) {
                (_, ',') => continue,
                (i, '}') => {
                    rest = &labels[i + 1..];
                    break;
                }
                (_, c) => panic!("{c:?} after a label value in {line}"),
            }
        }
    }
    let value = rest.strip_prefix(' ').expect(line);
    assert!(!value.contains(' '), "{line}");
    (name.to_string(), value.to_string())
}

#[test]
fn label_escapes() {
    let mut out = String::new();
    escape_label_value(&mut out, "a\\b\"c\nd");
    assert_eq!(out, "a\\\\b\\\"c\\nd");
}
