//! The human summary printed by `ringmaster check`: one block per service, its servers below it
//! with their share of new connections — `haproxy -c` meets `ipvsadm -L`.
//!
//! ```text
//! ringmaster.toml: configuration OK, 1 service, 2 servers
//! global: workers auto, drain_timeout 30s, max_connections from ulimit -n
//!
//! SERVICE   LISTEN       MODE         CONNECT  HANDSHAKE  IDLE  BACKLOG  MAXCONN  PER-IP
//!   -> SERVER         WEIGHT  SHARE
//!
//! exchange  0.0.0.0:443  passthrough  3s       10s        10m      4096        -       -
//!   -> 10.0.0.11:443       1  50.0%
//!   -> 10.0.0.12:443       1  50.0%
//! ```

use std::fmt::Write as _;

use super::duration::format_duration;
use super::{Config, Workers};

/// Column alignment.
#[derive(Clone, Copy, PartialEq)]
enum Align {
    Left,
    Right,
}

/// Pads every row to the widest cell of each column; no trailing spaces.
fn align(rows: &[Vec<String>], aligns: &[Align]) -> Vec<String> {
    let mut widths = vec![0; aligns.len()];
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    rows.iter()
        .map(|row| {
            let mut line = String::new();
            for (i, ((cell, w), a)) in row.iter().zip(&widths).zip(aligns).enumerate() {
                if i > 0 {
                    line.push_str("  ");
                }
                let _ = match a {
                    Align::Left => write!(line, "{cell:<w$}"),
                    Align::Right => write!(line, "{cell:>w$}"),
                };
            }
            line.trim_end().to_owned()
        })
        .collect()
}

fn plural(n: usize, word: &str) -> String {
    format!("{n} {word}{}", if n == 1 { "" } else { "s" })
}

/// Renders the summary; see the module documentation for its shape.
pub(super) fn render(config: &Config) -> String {
    use Align::{Left, Right};

    let server_count: usize = config.services.iter().map(|s| s.servers.len()).sum();
    let workers = match config.global.workers {
        Workers::Auto => "auto".to_owned(),
        Workers::Count(n) => n.to_string(),
    };
    let max_connections = config
        .global
        .max_connections
        .map_or("from ulimit -n".to_owned(), |n| n.to_string());
    let mut out = format!(
        "{}: configuration OK, {}, {}\nglobal: workers {workers}, drain_timeout {}, \
         max_connections {max_connections}\n",
        config.path.display(),
        plural(config.services.len(), "service"),
        plural(server_count, "server"),
        format_duration(config.global.drain_timeout),
    );

    let header = [
        "SERVICE",
        "LISTEN",
        "MODE",
        "CONNECT",
        "HANDSHAKE",
        "IDLE",
        "BACKLOG",
        "MAXCONN",
        "PER-IP",
    ];
    let or_dash = |n: Option<u32>| n.map_or("-".to_owned(), |n| n.to_string());
    let mut service_rows = vec![header.map(String::from).to_vec()];
    service_rows.extend(config.services.iter().map(|s| {
        vec![
            s.name.clone(),
            s.listen.to_string(),
            s.mode.to_string(),
            format_duration(s.connect_timeout),
            s.limits
                .handshake_timeout
                .map_or("-".to_owned(), format_duration),
            format_duration(s.idle_timeout),
            s.backlog.to_string(),
            or_dash(s.limits.max_connections),
            or_dash(s.limits.max_connections_per_ip),
        ]
    }));
    let service_lines = align(
        &service_rows,
        &[Left, Left, Left, Left, Left, Left, Right, Right, Right],
    );

    let mut server_rows = vec![["  -> SERVER", "WEIGHT", "SHARE"]
        .map(String::from)
        .to_vec()];
    for service in &config.services {
        let total: u64 = service
            .servers
            .iter()
            .map(|s| u64::from(s.weight.get()))
            .sum();
        server_rows.extend(service.servers.iter().map(|s| {
            let share = 100.0 * f64::from(s.weight.get()) / total.max(1) as f64;
            vec![
                format!("  -> {}", s.address),
                s.weight.to_string(),
                format!("{share:.1}%"),
            ]
        }));
    }
    let server_lines = align(&server_rows, &[Left, Right, Right]);

    let mut service_lines = service_lines.into_iter();
    let mut server_lines = server_lines.into_iter();
    let service_head = service_lines.next().unwrap_or_default();
    let server_head = server_lines.next().unwrap_or_default();
    let _ = writeln!(out, "\n{service_head}\n{server_head}");
    for (service, line) in config.services.iter().zip(service_lines) {
        let _ = writeln!(out, "\n{line}");
        for server_line in server_lines.by_ref().take(service.servers.len()) {
            let _ = writeln!(out, "{server_line}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    #[test]
    fn summary_aligns_services_and_servers() {
        let text = r#"
[global]
workers = 4

[[service]]
name = "exchange"
listen = "0.0.0.0:443"
mode = "passthrough"
idle_timeout = "65m"
[[service.server]]
address = "10.0.0.11:443"
weight = 3
[[service.server]]
address = "10.0.0.12:443"

[[service]]
name = "smtp"
listen = "[::]:25"
mode = "passthrough"
backlog = 128
server_speaks_first = true
max_connections = 500
max_connections_per_ip = 20
[[service.server]]
address = "10.0.0.21:25"
"#;
        let config = crate::config::parse(text, Path::new("rm.toml")).unwrap();
        let expected = "\
rm.toml: configuration OK, 2 services, 3 servers
global: workers 4, drain_timeout 30s, max_connections from ulimit -n

SERVICE   LISTEN       MODE         CONNECT  HANDSHAKE  IDLE  BACKLOG  MAXCONN  PER-IP
  -> SERVER         WEIGHT   SHARE

exchange  0.0.0.0:443  passthrough  3s       10s        1h5m     4096        -       -
  -> 10.0.0.11:443       3   75.0%
  -> 10.0.0.12:443       1   25.0%

smtp      [::]:25      passthrough  3s       -          10m       128      500      20
  -> 10.0.0.21:25        1  100.0%
";
        assert_eq!(config.summary(), expected);
    }
}
