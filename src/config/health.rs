//! Checks for `[service.health]`: what a check does, its timing and its hysteresis.

use std::time::Duration;

use toml::{Spanned, Value};

use super::file::RawHealth;
use super::validate::Checker;
use super::{BackendTls, CheckType, HealthCheck, Mode};
use crate::tls::client::Verify;

/// Default time between two checks of one server.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(5);
/// Default time one check may take.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(2);
/// Default consecutive successes to bring a server up (HAProxy's default).
pub const DEFAULT_RISE: u32 = 2;
/// Default consecutive failures to take a server down (HAProxy's default).
pub const DEFAULT_FALL: u32 = 3;
/// Largest `rise` or `fall`: beyond this a state change takes longer than anyone waits for.
pub const MAX_RISE_FALL: u32 = 100;

impl Checker<'_> {
    /// `[service.health]`; `None` inside when absent or `check = "none"`.
    pub(super) fn health(
        &mut self,
        raw: Option<&Spanned<RawHealth>>,
        mode: Option<Mode>,
        backend_tls: Option<&BackendTls>,
    ) -> Option<Option<HealthCheck>> {
        let Some(raw) = raw else { return Some(None) };
        let h = raw.get_ref();
        let kind = match &h.check {
            None => {
                self.report_at(
                    raw.span().start,
                    "[service.health] needs a check",
                    "add check = \"tcp\", \"http\" or \"https\" (or remove the table)",
                );
                return None;
            }
            Some(v) => match self.string("check", v, "https")? {
                "tcp" => CheckType::Tcp,
                "http" => CheckType::Http,
                "https" => CheckType::Https,
                "none" => return Some(None),
                other => {
                    self.report(
                        v,
                        format!("unknown check \"{other}\""),
                        "use \"tcp\", \"http\", \"https\" or \"none\"",
                    );
                    return None;
                }
            },
        };
        let path = match &h.path {
            Some(v) => {
                let p = self.string("path", v, "/owa/healthcheck.htm")?;
                if !p.starts_with('/')
                    || p.chars()
                        .any(|c| c.is_ascii_whitespace() || c.is_ascii_control())
                {
                    self.report(
                        v,
                        "path must start with / and contain no spaces",
                        "e.g. path = \"/owa/healthcheck.htm\"",
                    );
                    None
                } else {
                    Some(p.to_owned())
                }
            }
            None => Some("/".to_owned()),
        };
        let host = match &h.host {
            Some(v) => {
                let text = self.string("host", v, "mail.example.com")?;
                if text.is_empty()
                    || text
                        .chars()
                        .any(|c| c.is_ascii_whitespace() || c.is_ascii_control())
                {
                    self.report(
                        v,
                        "host must be a name without spaces",
                        "e.g. host = \"mail.example.com\"",
                    );
                    None
                } else {
                    Some(Some(text.to_owned()))
                }
            }
            None => Some(None),
        };
        let sni = self.server_name(h.sni.as_ref());
        let expect = match &h.expect {
            Some(v) => self.statuses(v),
            None => Some(vec![200]),
        };
        let interval = self.duration("interval", h.interval.as_ref(), DEFAULT_INTERVAL);
        let timeout = self.duration("timeout", h.timeout.as_ref(), DEFAULT_TIMEOUT);
        if let (Some(i), Some(t), Some(v)) = (interval, timeout, &h.timeout) {
            if t >= i {
                self.report(
                    v,
                    "the check timeout must be shorter than its interval",
                    "e.g. interval = \"5s\" with timeout = \"2s\"",
                );
            }
        }
        let rise = self.count("rise", h.rise.as_ref(), DEFAULT_RISE);
        let fall = self.count("fall", h.fall.as_ref(), DEFAULT_FALL);
        // https checks verify like the service's backend_tls unless told otherwise; a health
        // check of a passthrough server needs no trust to read a status line.
        let default_verify = match (mode, backend_tls) {
            (Some(Mode::Reencrypt), Some(b)) if h.verify.is_none() && h.ca.is_none() => {
                Some((b.verify.clone(), b.ca.clone()))
            }
            _ => None,
        };
        let verify = match default_verify {
            Some(v) => Some(v),
            None => self.verify(h.verify.as_ref(), h.ca.as_ref(), "none", "[service.health]"),
        };
        if kind != CheckType::Https {
            for (key, v) in [("sni", &h.sni), ("verify", &h.verify), ("ca", &h.ca)] {
                if let Some(v) = v {
                    self.report(
                        v,
                        format!("`{key}` is only used by check = \"https\""),
                        "remove it, or use check = \"https\"",
                    );
                }
            }
        }
        Some(Some(HealthCheck {
            kind,
            path: path?,
            host: host?,
            sni: sni?,
            expect: expect?,
            interval: interval?,
            timeout: timeout?,
            rise: rise?,
            fall: fall?,
            verify: verify.map_or(Verify::None, |(v, _)| v),
        }))
    }

    /// `expect = [200, 302]`: HTTP statuses 100..=599.
    fn statuses(&mut self, v: &Spanned<Value>) -> Option<Vec<u16>> {
        let fix = "e.g. expect = [200] or expect = [200, 302]";
        let Value::Array(items) = v.get_ref() else {
            self.report(v, "expect must be a list of HTTP statuses", fix);
            return None;
        };
        let statuses: Option<Vec<u16>> = items
            .iter()
            .map(|item| {
                item.as_integer()
                    .and_then(|n| u16::try_from(n).ok())
                    .filter(|n| (100..=599).contains(n))
            })
            .collect();
        match statuses {
            Some(list) if !list.is_empty() => Some(list),
            _ => {
                self.report(v, "expect must list HTTP statuses between 100 and 599", fix);
                None
            }
        }
    }

    /// `rise` or `fall`: 1..=100.
    fn count(&mut self, key: &str, v: Option<&Spanned<Value>>, default: u32) -> Option<u32> {
        let Some(v) = v else { return Some(default) };
        let n = self.integer(key, v, i64::from(default))?;
        let ok = u32::try_from(n)
            .ok()
            .filter(|n| (1..=MAX_RISE_FALL).contains(n));
        if ok.is_none() {
            self.report(
                v,
                format!("{key} must be between 1 and {MAX_RISE_FALL}"),
                format!("e.g. {key} = {default} (the default)"),
            );
        }
        ok
    }
}
