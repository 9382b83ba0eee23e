//! Checks for the balancing keys of a service: `schedule`, `persistence`, `steer` and `warm`.

use std::time::Duration;

use toml::{Spanned, Value};

use super::file::RawPersistence;
use super::suggest::closest;
use super::validate::Checker;
use super::{Mode, Persistence, Schedule, Steer};

/// `schedule` spellings, for the fix of an unknown one.
const SCHEDULES: [&str; 3] = ["round-robin", "least-connections", "source-hash"];
/// Default `persistence.timeout`: an Exchange client keeps its server for an hour of inactivity.
pub const DEFAULT_PERSISTENCE_TIMEOUT: Duration = Duration::from_secs(3600);
/// Default `persistence.capacity`: a million client IPs, about 27 MB of table per service.
pub const DEFAULT_PERSISTENCE_CAPACITY: usize = 1 << 20;
/// Largest `persistence.capacity`: 2^26 entries is about 1.7 GB of table.
pub const MAX_PERSISTENCE_CAPACITY: usize = 1 << 26;
/// Largest `warm`: idle connections per server per core; more only wastes servers' sockets.
pub const MAX_WARM: u32 = 64;

impl Checker<'_> {
    /// `schedule`, default round robin.
    pub(super) fn schedule(&mut self, v: Option<&Spanned<Value>>) -> Option<Schedule> {
        let Some(v) = v else {
            return Some(Schedule::RoundRobin);
        };
        let text = self.string("schedule", v, "round-robin")?;
        match text {
            "round-robin" => Some(Schedule::RoundRobin),
            "least-connections" => Some(Schedule::LeastConnections),
            "source-hash" => Some(Schedule::SourceHash),
            _ => {
                let list = "\"round-robin\", \"least-connections\" or \"source-hash\"";
                let fix = match closest(text, &SCHEDULES) {
                    Some(near) => format!("did you mean \"{near}\"? The schedules are {list}"),
                    None => format!("use one of {list}"),
                };
                self.report(v, format!("unknown schedule \"{text}\""), fix);
                None
            }
        }
    }

    /// `persistence = { ... }`, absent = none.
    pub(super) fn persistence(
        &mut self,
        raw: Option<&Spanned<RawPersistence>>,
    ) -> Option<Option<Persistence>> {
        let Some(raw) = raw else { return Some(None) };
        let p = raw.get_ref();
        let mode = match &p.mode {
            Some(v) => {
                let text = self.string("mode", v, "source-ip")?;
                if text != "source-ip" {
                    self.report(
                        v,
                        format!("unknown persistence mode \"{text}\""),
                        "use mode = \"source-ip\" (the only mode so far)",
                    );
                    None
                } else {
                    Some(())
                }
            }
            None => {
                self.report_at(
                    raw.span().start,
                    "persistence needs a mode",
                    "write persistence = { mode = \"source-ip\", timeout = \"1h\" }",
                );
                None
            }
        };
        let timeout = self.duration("timeout", p.timeout.as_ref(), DEFAULT_PERSISTENCE_TIMEOUT);
        let capacity = match &p.capacity {
            Some(v) => {
                let n = self.integer("capacity", v, DEFAULT_PERSISTENCE_CAPACITY as i64)?;
                let ok = usize::try_from(n)
                    .ok()
                    .filter(|n| (1..=MAX_PERSISTENCE_CAPACITY).contains(n));
                if ok.is_none() {
                    self.report(
                        v,
                        format!("persistence capacity must be between 1 and {MAX_PERSISTENCE_CAPACITY}"),
                        format!("e.g. capacity = {DEFAULT_PERSISTENCE_CAPACITY} (the default: a million client IPs)"),
                    );
                }
                ok
            }
            None => Some(DEFAULT_PERSISTENCE_CAPACITY),
        };
        mode?;
        let timeout = timeout?;
        if timeout < Duration::from_secs(1) {
            if let Some(v) = &p.timeout {
                self.report(
                    v,
                    "persistence timeout must be at least 1s (entries are timed in whole seconds)",
                    "e.g. timeout = \"1h\"",
                );
            }
            return None;
        }
        Some(Some(Persistence {
            timeout,
            capacity: capacity?,
        }))
    }

    /// `steer`, default none.
    pub(super) fn steer(&mut self, v: Option<&Spanned<Value>>) -> Option<Steer> {
        let Some(v) = v else { return Some(Steer::None) };
        match self.string("steer", v, "client-ip")? {
            "client-ip" => Some(Steer::ClientIp),
            "none" => Some(Steer::None),
            other => {
                self.report(v, format!("unknown steer \"{other}\""), "use steer = \"client-ip\" (each client IPv4 always lands on the same core) or \"none\"");
                None
            }
        }
    }

    /// `warm`, default 0; only for modes that open server connections ahead of clients.
    pub(super) fn warm(&mut self, v: Option<&Spanned<Value>>, mode: Option<Mode>) -> Option<u32> {
        let Some(v) = v else { return Some(0) };
        let n = self.integer("warm", v, 4)?;
        let Some(warm) = u32::try_from(n).ok().filter(|n| *n <= MAX_WARM) else {
            self.report(
                v,
                format!("warm must be between 0 and {MAX_WARM}"),
                "e.g. warm = 4 (idle connections per server, per core)",
            );
            return None;
        };
        if warm > 0 && mode == Some(Mode::Passthrough) {
            self.report(
                v,
                "warm is for offload and reencrypt: passthrough relays the client's own TLS session, which cannot be opened ahead of the client",
                "remove warm, or set mode = \"reencrypt\"",
            );
            return None;
        }
        Some(warm)
    }
}
