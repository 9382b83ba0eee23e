//! `GET /metrics`: a [`Snapshot`] in the Prometheus text exposition format 0.0.4.
//!
//! Every family is written once, `# HELP` and `# TYPE` first, then all its samples, so that the
//! output is valid however many services and servers there are. Names start with `ringmaster_`;
//! counters end in `_total`. Enumerations (health state, admin state) are written as one sample per
//! possible value, 1 for the current one and 0 for the others, so that a query can select a state
//! that no server is in at the moment.

use std::fmt::{Display, Write};

use super::snapshot::{AdminState, ServerSnapshot, ServiceSnapshot, Snapshot};

/// `Content-Type` of the exposition format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The states of `ringmaster_server_state`, as in [`ServerSnapshot::state`].
const STATES: [&str; 4] = ["up", "down", "drain", "maint"];

/// The values of `ringmaster_server_admin_state`.
const ADMIN_STATES: [AdminState; 3] =
    [AdminState::Enabled, AdminState::Drain, AdminState::Disabled];

/// Renders `snapshot` in the text exposition format.
pub fn render(snapshot: &Snapshot) -> String {
    let mut m = Metrics(String::with_capacity(4096));
    let s = snapshot;

    m.family("build_info", "gauge", "ringmaster's version; always 1.");
    m.sample("build_info", &[("version", s.version)], 1);
    m.family(
        "uptime_seconds",
        "gauge",
        "Seconds since the process started.",
    );
    m.sample("uptime_seconds", &[], s.uptime_secs);
    m.family("reloads_total", "counter", "Configuration reloads applied.");
    m.sample("reloads_total", &[], s.reloads);
    m.family(
        "reload_failures_total",
        "counter",
        "Configuration reloads refused (invalid file) or not applied.",
    );
    m.sample("reload_failures_total", &[], s.reload_failures);
    m.family(
        "connections_current",
        "gauge",
        "Client connections open now, all services (counted against max_connections).",
    );
    m.sample("connections_current", &[], s.limit.current);
    m.family(
        "connections_limit",
        "gauge",
        "[global] max_connections: configured, or derived from the descriptor limit.",
    );
    m.sample("connections_limit", &[], s.limit.limit.unwrap_or(0));
    m.family(
        "connections_limit_reached_total",
        "counter",
        "Times a worker found max_connections reached and stopped accepting until a connection closed.",
    );
    m.sample("connections_limit_reached_total", &[], s.limit.reached);

    worker_families(&mut m, s);
    service_families(&mut m, &s.services);
    server_families(&mut m, &s.services);
    m.0
}

fn worker_families(m: &mut Metrics, s: &Snapshot) {
    type Field = fn(&super::snapshot::WorkerSnapshot) -> u64;
    let families: [(&str, &str, &str, Field); 3] = [
        (
            "worker_connections_total",
            "counter",
            "Connections accepted by the worker, all services.",
            |w| w.connections_total,
        ),
        (
            "worker_connections_current",
            "gauge",
            "Connections open on the worker now.",
            |w| w.connections_current,
        ),
        (
            "worker_accept_errors_total",
            "counter",
            "Failed accept calls on the worker (EMFILE, ENOBUFS, ...).",
            |w| w.accept_errors,
        ),
    ];
    for (name, kind, help, field) in families {
        m.family(name, kind, help);
        for w in &s.workers {
            let (index, cpu) = (w.index.to_string(), w.cpu.to_string());
            m.sample(name, &[("worker", &index), ("cpu", &cpu)], field(w));
        }
    }
}

fn service_families(m: &mut Metrics, services: &[ServiceSnapshot]) {
    m.family(
        "service_info",
        "gauge",
        "A service's listen address, mode and schedule; always 1.",
    );
    for v in services {
        let listen = v.listen.to_string();
        let ep = if v.extended_protection {
            "true"
        } else {
            "false"
        };
        let labels = [
            ("service", v.name.as_str()),
            ("listen", &listen),
            ("mode", v.mode),
            ("schedule", v.schedule),
            ("extended_protection", ep),
        ];
        m.sample("service_info", &labels, 1);
    }

    type Field = fn(&ServiceSnapshot) -> Option<u64>;
    let families: [(&str, &str, &str, Field); 8] = [
        (
            "service_connections_total",
            "counter",
            "Client connections accepted by the service.",
            |v| Some(v.connections_total),
        ),
        (
            "service_connections_current",
            "gauge",
            "Client connections open on the service now.",
            |v| Some(v.connections_current),
        ),
        (
            "service_no_server_total",
            "counter",
            "Clients closed because no server could take them.",
            |v| Some(v.no_server),
        ),
        (
            "service_persistence_entries",
            "gauge",
            "Live source-IP persistence entries (services with persistence only).",
            |v| v.persistence_entries,
        ),
        (
            "service_connections_limit",
            "gauge",
            "The service's max_connections (services with one only).",
            |v| v.limit.limit,
        ),
        (
            "service_connections_limit_reached_total",
            "counter",
            "Times a worker found the service's max_connections reached and stopped accepting.",
            |v| v.limit.limit.map(|_| v.limit.reached),
        ),
        (
            "service_per_ip_limit",
            "gauge",
            "The service's max_connections_per_ip (services with one only).",
            |v| v.per_ip.map(|p| u64::from(p.limit)),
        ),
        (
            "service_per_ip_refused_total",
            "counter",
            "Connections reset because their client address was at max_connections_per_ip.",
            |v| v.per_ip.map(|p| p.refused),
        ),
    ];
    for (name, kind, help, field) in families {
        m.family(name, kind, help);
        for v in services {
            if let Some(value) = field(v) {
                m.sample(name, &[("service", &v.name)], value);
            }
        }
    }

    m.family(
        "service_closes_total",
        "counter",
        "Client connections that ended, by how they ended (the access log's end field).",
    );
    for v in services {
        for e in &v.ends {
            m.sample(
                "service_closes_total",
                &[("service", &v.name), ("end", e.end)],
                e.count,
            );
        }
    }
}

fn server_families(m: &mut Metrics, services: &[ServiceSnapshot]) {
    let servers = || {
        services
            .iter()
            .flat_map(|v| v.servers.iter().map(move |s| (v, s, s.address.to_string())))
    };

    m.family(
        "tls_handshake_errors_total",
        "counter",
        "Failed TLS handshakes: side=\"client\" per service, side=\"server\" per server.",
    );
    for v in services {
        let labels = [("service", v.name.as_str()), ("side", "client")];
        m.sample("tls_handshake_errors_total", &labels, v.client_tls_errors);
    }
    for (v, s, addr) in servers() {
        let labels = [
            ("service", v.name.as_str()),
            ("server", &addr),
            ("side", "server"),
        ];
        m.sample("tls_handshake_errors_total", &labels, s.server_tls_errors);
    }

    type Field = fn(&ServerSnapshot) -> Option<Value>;
    let families: [(&str, &str, &str, Field); 11] = [
        (
            "server_weight",
            "gauge",
            "The server's configured weight.",
            |s| Some(Value::Int(u64::from(s.weight))),
        ),
        (
            "server_connections_total",
            "counter",
            "Connections made to the server.",
            |s| Some(Value::Int(s.connections_total)),
        ),
        (
            "server_connections_current",
            "gauge",
            "Connections to the server open now.",
            |s| Some(Value::Int(s.connections_current)),
        ),
        (
            "server_bytes_in_total",
            "counter",
            "Bytes received from clients and sent to the server.",
            |s| Some(Value::Int(s.bytes_in)),
        ),
        (
            "server_bytes_out_total",
            "counter",
            "Bytes received from the server and sent to clients.",
            |s| Some(Value::Int(s.bytes_out)),
        ),
        (
            "server_connect_errors_total",
            "counter",
            "Failed connects (refused, timeout) to the server.",
            |s| Some(Value::Int(s.connect_errors)),
        ),
        (
            "server_up",
            "gauge",
            "1 when health checks pass (or there are none), else 0; ignores the admin state.",
            |s| Some(Value::Int(u64::from(s.health == "up"))),
        ),
        (
            "server_check_ok",
            "gauge",
            "Whether the last health check passed (servers checked at least once).",
            |s| s.last_check.as_ref().map(|c| Value::Int(u64::from(c.ok))),
        ),
        (
            "server_check_timestamp_seconds",
            "gauge",
            "When the last health check started, seconds since the Unix epoch.",
            |s| s.last_check.as_ref().map(|c| Value::Int(c.at_unix)),
        ),
        (
            "server_check_duration_seconds",
            "gauge",
            "How long the last health check took.",
            |s| s.last_check.as_ref().map(|c| Value::Millis(c.took_ms)),
        ),
        (
            "server_ep_match",
            "gauge",
            "Extended Protection: 1 when the server's certificate matches the service's, else 0.",
            |s| s.ep_match.map(|m| Value::Int(u64::from(m))),
        ),
    ];
    for (name, kind, help, field) in families {
        m.family(name, kind, help);
        for (v, s, addr) in servers() {
            if let Some(value) = field(s) {
                m.sample(name, &[("service", &v.name), ("server", &addr)], value);
            }
        }
    }

    m.family(
        "server_state",
        "gauge",
        "The server's state for display: 1 for the current one of up, down, drain, maint.",
    );
    for (v, s, addr) in servers() {
        for state in STATES {
            let labels = [
                ("service", v.name.as_str()),
                ("server", &addr),
                ("state", state),
            ];
            m.sample("server_state", &labels, u8::from(s.state == state));
        }
    }
    m.family(
        "server_admin_state",
        "gauge",
        "What the operator set: 1 for the current one of enabled, drain, disabled.",
    );
    for (v, s, addr) in servers() {
        for state in ADMIN_STATES {
            let labels = [
                ("service", v.name.as_str()),
                ("server", &addr),
                ("state", state.as_str()),
            ];
            m.sample("server_admin_state", &labels, u8::from(s.admin == state));
        }
    }
}

/// A sample's value: counters stay exact integers (an `f64` would round above 2^53).
enum Value {
    Int(u64),
    /// Milliseconds, written as seconds with three decimals at most.
    Millis(u64),
}

impl Display for Value {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            Value::Int(n) => write!(f, "{n}"),
            Value::Millis(ms) if ms % 1000 == 0 => write!(f, "{}", ms / 1000),
            Value::Millis(ms) => {
                let frac = format!("{:03}", ms % 1000);
                write!(f, "{}.{}", ms / 1000, frac.trim_end_matches('0'))
            }
        }
    }
}

/// The output being built. Writing to a `String` cannot fail, hence the ignored results.
struct Metrics(String);

impl Metrics {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.0, "# HELP ringmaster_{name} {help}");
        let _ = writeln!(self.0, "# TYPE ringmaster_{name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl Display) {
        let _ = write!(self.0, "ringmaster_{name}");
        if !labels.is_empty() {
            self.0.push('{');
            for (i, (label, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.0.push(',');
                }
                let _ = write!(self.0, "{label}=\"");
                escape_label_value(&mut self.0, v);
                self.0.push('"');
            }
            self.0.push('}');
        }
        let _ = writeln!(self.0, " {value}");
    }
}

/// Appends `value` escaped as the exposition format requires inside double quotes: backslash,
/// double quote and line feed are written `\\`, `\"` and `\n`.
pub fn escape_label_value(out: &mut String, value: &str) {
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests;
