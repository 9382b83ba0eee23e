//! Checks for `[[service]]` and `[[service.server]]` tables, and the rules that span several
//! of them: unique service names, unique listen addresses, unique servers within a service.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::num::NonZeroU32;

use toml::{Spanned, Value};

use super::address::{listen_address, server_address, Rejection};
use super::file::{RawServer, RawService};
use super::suggest::closest;
use super::validate::Checker;
use super::{
    Mode, Server, Service, DEFAULT_BACKLOG, DEFAULT_CONNECT_TIMEOUT, DEFAULT_IDLE_TIMEOUT,
    MAX_BACKLOG, MAX_NAME_LEN, MAX_WEIGHT,
};

/// Mode names as written in the config, for the "unknown mode" fix.
const MODES: [&str; 3] = ["passthrough", "offload", "reencrypt"];

/// What earlier services already claimed, for the duplicate checks.
#[derive(Default)]
struct Seen {
    /// Service name → line of its `name`.
    names: HashMap<String, usize>,
    /// Listen address → (service label, line of its `listen`).
    listens: HashMap<SocketAddr, (String, usize)>,
}

impl Checker<'_> {
    /// All `[[service]]` tables; only the valid ones are returned (any invalid one has recorded
    /// a problem, so no `Config` is built from the result).
    pub(super) fn services(&mut self, raw: &[Spanned<RawService>]) -> Vec<Service> {
        if raw.is_empty() {
            self.report_at(
                0,
                "a config needs at least one [[service]]",
                "add a [[service]] with name, listen and mode, and at least one [[service.server]] \
                 with an address",
            );
            return Vec::new();
        }
        let mut seen = Seen::default();
        raw.iter()
            .filter_map(|s| self.service(s, &mut seen))
            .collect()
    }

    fn service(&mut self, raw: &Spanned<RawService>, seen: &mut Seen) -> Option<Service> {
        let header = raw.span().start;
        let s = raw.get_ref();
        let unnamed = format!("the service on line {}", self.line_of(header));
        let name = match &s.name {
            Some(v) => self.service_name(v, seen),
            None => {
                self.missing(header, &unnamed, "name", "name = \"web\"");
                None
            }
        };
        let label = name
            .as_ref()
            .map_or(unnamed, |name| format!("service \"{name}\""));
        let listen = match &s.listen {
            Some(v) => self.listen(v, &label, seen),
            None => {
                self.missing(header, &label, "listen", "listen = \"0.0.0.0:443\"");
                None
            }
        };
        let mode = match &s.mode {
            Some(v) => self.mode(v),
            None => {
                self.missing(header, &label, "mode", "mode = \"passthrough\"");
                None
            }
        };
        let connect_timeout = self.duration(
            "connect_timeout",
            s.connect_timeout.as_ref(),
            DEFAULT_CONNECT_TIMEOUT,
        );
        let idle_timeout = self.duration(
            "idle_timeout",
            s.idle_timeout.as_ref(),
            DEFAULT_IDLE_TIMEOUT,
        );
        let backlog = match &s.backlog {
            Some(v) => self.backlog(v),
            None => Some(DEFAULT_BACKLOG),
        };
        let servers = self.servers(s.server.as_deref().unwrap_or(&[]), header, &label);
        let tls = mode.and_then(|mode| self.service_tls(s, mode, header, &label));
        let schedule = self.schedule(s.schedule.as_ref());
        let persistence = self.persistence(s.persistence.as_ref());
        let steer = self.steer(s.steer.as_ref());
        let warm = self.warm(s.warm.as_ref(), mode);
        let limits = self.service_limits(
            s.max_connections.as_ref(),
            s.max_connections_per_ip.as_ref(),
            s.handshake_timeout.as_ref(),
            s.server_speaks_first.as_ref(),
            mode,
        );
        let (tls, backend_tls, extended_protection) = tls?;
        let health = self.health(s.health.as_ref(), mode, backend_tls.as_ref());
        Some(Service {
            name: name?,
            listen: listen?,
            mode: mode?,
            connect_timeout: connect_timeout?,
            idle_timeout: idle_timeout?,
            limits: limits?,
            backlog: backlog?,
            servers: servers?,
            tls,
            backend_tls,
            extended_protection,
            schedule: schedule?,
            persistence: persistence?,
            steer: steer?,
            health: health?,
            warm: warm?,
        })
    }

    /// A required key is absent: reported at the table's header.
    fn missing(&mut self, header: usize, table: &str, key: &str, example: &str) {
        self.report_at(
            header,
            format!("{table} is missing `{key}`"),
            format!("add {example}"),
        );
    }

    fn service_name(&mut self, v: &Spanned<Value>, seen: &mut Seen) -> Option<String> {
        let name = self.string("name", v, "web")?;
        let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-');
        if name.is_empty() {
            self.report(
                v,
                "service name is empty",
                "give the service a name, e.g. name = \"web\"",
            );
            return None;
        }
        if let Some(bad) = name.chars().find(|c| !allowed(*c)) {
            let cleaned: String = name
                .chars()
                .map(|c| if allowed(c) { c } else { '-' })
                .collect();
            self.report(
                v,
                format!("service name contains {bad:?}; only letters, digits, '_', '.' and '-' are allowed"),
                format!("e.g. name = \"{cleaned}\""),
            );
            return None;
        }
        if name.len() > MAX_NAME_LEN {
            let fix = format!(
                "shorten it to {MAX_NAME_LEN} characters or fewer (it appears in logs and metrics)"
            );
            self.report(
                v,
                format!("service name is {} characters long", name.len()),
                fix,
            );
            return None;
        }
        let line = self.line_of(v.span().start);
        if let Some(first) = seen.names.get(name) {
            let message =
                format!("service name \"{name}\" is already used by the service on line {first}");
            self.report(v, message, "give each service a unique name");
            return None;
        }
        seen.names.insert(name.to_owned(), line);
        Some(name.to_owned())
    }

    fn listen(&mut self, v: &Spanned<Value>, label: &str, seen: &mut Seen) -> Option<SocketAddr> {
        let text = self.string("listen", v, "0.0.0.0:443")?;
        let addr = self.address(v, listen_address(text))?;
        if let Some((other, line)) = seen.listens.get(&addr) {
            let message = format!("listen address {addr} is already used by {other} (line {line})");
            self.report(v, message, "give each service its own address or port");
            return None;
        }
        let line = self.line_of(v.span().start);
        seen.listens.insert(addr, (label.to_owned(), line));
        Some(addr)
    }

    /// Records a rejected address at `v`.
    fn address(
        &mut self,
        v: &Spanned<Value>,
        result: Result<SocketAddr, Rejection>,
    ) -> Option<SocketAddr> {
        result
            .map_err(|Rejection { message, fix }| self.report(v, message, fix))
            .ok()
    }

    fn mode(&mut self, v: &Spanned<Value>) -> Option<Mode> {
        let text = self.string("mode", v, "passthrough")?;
        match text {
            "passthrough" => return Some(Mode::Passthrough),
            "offload" => return Some(Mode::Offload),
            "reencrypt" => return Some(Mode::Reencrypt),
            _ => {
                let list = "\"passthrough\", \"offload\" or \"reencrypt\"";
                let fix = match closest(text, &MODES) {
                    Some(near) => format!("did you mean \"{near}\"? The modes are {list}"),
                    None => format!("use one of {list}"),
                };
                self.report(v, format!("unknown mode \"{text}\""), fix);
            }
        }
        None
    }

    fn backlog(&mut self, v: &Spanned<Value>) -> Option<u32> {
        let n = self.integer("backlog", v, i64::from(DEFAULT_BACKLOG))?;
        let backlog = u32::try_from(n)
            .ok()
            .filter(|n| (1..=MAX_BACKLOG).contains(n));
        if backlog.is_none() {
            let fix = format!(
                "use a number from 1 to {MAX_BACKLOG}, e.g. {DEFAULT_BACKLOG} (the default); the kernel \
                 also caps it at net.core.somaxconn"
            );
            self.report(
                v,
                format!("backlog must be between 1 and {MAX_BACKLOG}"),
                fix,
            );
        }
        backlog
    }

    /// The servers of one service; `None` if any is invalid or there are none.
    fn servers(
        &mut self,
        raw: &[Spanned<RawServer>],
        header: usize,
        label: &str,
    ) -> Option<Vec<Server>> {
        if raw.is_empty() {
            self.report_at(
                header,
                format!("{label} has no servers"),
                "add at least one [[service.server]] with an address",
            );
            return None;
        }
        let mut seen: HashMap<SocketAddr, usize> = HashMap::new();
        let servers: Vec<Option<Server>> = raw
            .iter()
            .map(|s| self.server(s, label, &mut seen))
            .collect();
        servers.into_iter().collect()
    }

    fn server(
        &mut self,
        raw: &Spanned<RawServer>,
        label: &str,
        seen: &mut HashMap<SocketAddr, usize>,
    ) -> Option<Server> {
        let s = raw.get_ref();
        let address = match &s.address {
            Some(v) => self.server_address(v, label, seen),
            None => {
                self.missing(
                    raw.span().start,
                    "server",
                    "address",
                    "address = \"10.0.0.11:443\"",
                );
                None
            }
        };
        let weight = match &s.weight {
            Some(v) => self.weight(v),
            None => Some(NonZeroU32::MIN),
        };
        Some(Server {
            address: address?,
            weight: weight?,
        })
    }

    fn server_address(
        &mut self,
        v: &Spanned<Value>,
        label: &str,
        seen: &mut HashMap<SocketAddr, usize>,
    ) -> Option<SocketAddr> {
        let text = self.string("address", v, "10.0.0.11:443")?;
        let addr = self.address(v, server_address(text, self.lookup))?;
        if let Some(first) = seen.get(&addr) {
            let message = format!("server {addr} appears twice in {label} (first on line {first})");
            self.report(
                v,
                message,
                "remove one of them; to send it more traffic, raise its weight instead",
            );
            return None;
        }
        seen.insert(addr, self.line_of(v.span().start));
        Some(addr)
    }

    fn weight(&mut self, v: &Spanned<Value>) -> Option<NonZeroU32> {
        let n = self.integer("weight", v, 1)?;
        let weight = u32::try_from(n)
            .ok()
            .filter(|n| *n <= MAX_WEIGHT)
            .and_then(NonZeroU32::new);
        if weight.is_none() {
            let fix = if n <= 0 {
                "give the server a weight of 1 or more (weight 0 would send it nothing; remove the \
                 server instead)"
                    .to_owned()
            } else {
                format!(
                    "use a weight from 1 to {MAX_WEIGHT}; weights are relative, so divide this \
                     service's weights by a common factor"
                )
            };
            self.report(v, format!("weight must be between 1 and {MAX_WEIGHT}"), fix);
        }
        weight
    }
}
