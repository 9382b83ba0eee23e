//! Second stage: raw structs from `file.rs` to the typed [`Config`], collecting every problem.
//!
//! Each check reports into a [`Checker`] and carries on, so one run of `ringmaster check` shows
//! every mistake in the file, not just the first (linkerd2-proxy's habit). The per-service checks
//! live in `service.rs`; this file has the entry point, the TOML/serde error, `[global]`, and
//! the helpers that read one typed value out of a `Spanned<toml::Value>`.

use std::num::NonZeroUsize;
use std::path::Path;
use std::time::Duration;

use toml::{Spanned, Value};

use super::duration::{format_duration, parse_duration};
use super::error::{ConfigError, Problem};
use super::file::{self, RawFile, RawGlobal};
use super::suggest::{key_list, unknown_key, unknown_key_fix};
use super::{Config, Global, Workers, DEFAULT_DRAIN_TIMEOUT, MAX_WORKERS};

/// Longest value shown after "found:"; longer ones are cut.
const MAX_SHOWN: usize = 80;

/// Parses and validates `text`; see [`super::parse`]. Without `lookup`, server host names are
/// not resolved (see [`super::parse_offline`]).
pub(super) fn validate(text: &str, path: &Path, lookup: bool) -> Result<Config, ConfigError> {
    let raw: RawFile = match toml::from_str(text) {
        Ok(raw) => raw,
        Err(e) => return Err(ConfigError::single(path, toml_problem(text, &e))),
    };
    let mut checker = Checker {
        text,
        dir: path.parent().unwrap_or(Path::new("")).to_path_buf(),
        problems: Vec::new(),
        lookup,
    };
    let global = checker.global(raw.global.as_ref());
    let services = checker.services(raw.service.as_deref().unwrap_or(&[]));
    checker.admin_collision(raw.global.as_ref(), &global, &services);
    if checker.problems.is_empty() {
        Ok(Config {
            path: path.to_path_buf(),
            global,
            services,
        })
    } else {
        Err(ConfigError::new(path, checker.problems))
    }
}

/// The one problem a TOML syntax error or a serde error (unknown key, wrong table shape) gives.
fn toml_problem(text: &str, e: &toml::de::Error) -> Problem {
    let offset = e.span().map_or(0, |s| s.start);
    let message = e.message().trim().lines().collect::<Vec<_>>().join("; ");
    if let Some((key, allowed)) = unknown_key(&message) {
        let allowed: Vec<&str> = allowed.iter().map(String::as_str).collect();
        let table = file::table_of(&allowed).unwrap_or("this table");
        let fix = match home_of(&key).filter(|home| *home != table) {
            Some(home) => format!(
                "`{key}` belongs in {home}: move it under a {home} header; the keys allowed in \
                 {table} are: {}",
                key_list(&allowed)
            ),
            None => unknown_key_fix(&key, &allowed),
        };
        return Problem::at(
            text,
            offset,
            format!("unknown key `{key}` in {table}"),
            Some(key),
            fix,
        );
    }
    let fix = if message.contains("expected a sequence") {
        "write each service as [[service]] and each server as [[service.server]] (double brackets)"
    } else if message.starts_with("duplicate key") {
        "remove one of the two; each key may appear once per table"
    } else if message.starts_with("invalid string") || message.starts_with("invalid basic string") {
        "put strings in double quotes on both ends, e.g. name = \"web\""
    } else {
        "correct the TOML syntax at this position (see https://toml.io/en/v1.0.0)"
    };
    Problem::at(text, offset, message, source_line(text, offset), fix)
}

/// The table, other than the current one, where `key` is allowed.
fn home_of(key: &str) -> Option<&'static str> {
    [
        (file::GLOBAL_KEYS, "[global]"),
        (file::SERVICE_KEYS, "[[service]]"),
        (file::SERVER_KEYS, "[[service.server]]"),
        (file::SNI_CERT_KEYS, "[[service.sni_certificate]]"),
        (file::BACKEND_TLS_KEYS, "[service.backend_tls]"),
        (file::PERSISTENCE_KEYS, "persistence = { ... }"),
        (file::HEALTH_KEYS, "[service.health]"),
    ]
    .into_iter()
    .find(|(keys, _)| keys.contains(&key))
    .map(|(_, table)| table)
}

/// The whole source line containing byte `offset`, trimmed; `None` if blank.
fn source_line(text: &str, offset: usize) -> Option<String> {
    let offset = offset.min(text.len());
    let start = text.get(..offset)?.rfind('\n').map_or(0, |i| i + 1);
    let end = text
        .get(offset..)?
        .find('\n')
        .map_or(text.len(), |i| offset + i);
    let line = text.get(start..end)?.trim();
    // A line that sets the token is shown without it: errors are printed, logged and returned
    // by the admin API.
    if line.starts_with("admin_token") {
        return Some("admin_token = (hidden: a secret)".into());
    }
    (!line.is_empty()).then(|| shorten(line))
}

/// `s` cut to [`MAX_SHOWN`] characters and its first line.
fn shorten(s: &str) -> String {
    let first = s.lines().next().unwrap_or("");
    let mut out: String = first.chars().take(MAX_SHOWN).collect();
    if out.len() < s.len() {
        out.push_str(" …");
    }
    out
}

/// Collects problems while reading typed values out of the raw structs.
pub(super) struct Checker<'t> {
    /// The whole file, for line:column and for showing values as written.
    pub text: &'t str,
    /// The directory of the file: relative certificate paths are relative to it.
    pub dir: std::path::PathBuf,
    /// Everything found so far.
    pub problems: Vec<Problem>,
    /// Whether server host names are resolved (always, but when fuzzing).
    pub lookup: bool,
}

impl Checker<'_> {
    /// Records a problem at byte `offset`.
    pub fn report_at(&mut self, offset: usize, message: impl Into<String>, fix: impl Into<String>) {
        self.problems
            .push(Problem::at(self.text, offset, message, None, fix));
    }

    /// Records a problem with value `v`, showing it as written in the file.
    pub fn report(
        &mut self,
        v: &Spanned<Value>,
        message: impl Into<String>,
        fix: impl Into<String>,
    ) {
        let shown = self.text.get(v.span()).map(shorten);
        self.problems
            .push(Problem::at(self.text, v.span().start, message, shown, fix));
    }

    /// Records a problem with a secret value `v` without showing the value: a config error is
    /// printed, logged and sent in the admin API's answer to a reload.
    pub fn report_secret(
        &mut self,
        v: &Spanned<Value>,
        message: impl Into<String>,
        fix: impl Into<String>,
    ) {
        self.problems.push(Problem::at(
            self.text,
            v.span().start,
            message,
            Some("(hidden: a secret)".into()),
            fix,
        ));
    }

    /// 1-based line of byte `offset`, for "first on line N".
    pub fn line_of(&self, offset: usize) -> usize {
        super::error::line_column(self.text, offset).0
    }

    /// The string in `v`, or a problem saying `key` needs quotes.
    pub fn string<'v>(
        &mut self,
        key: &str,
        v: &'v Spanned<Value>,
        example: &str,
    ) -> Option<&'v str> {
        if let Value::String(s) = v.get_ref() {
            return Some(s);
        }
        self.report(
            v,
            format!("{key} must be a string"),
            format!("put it in quotes, e.g. {key} = \"{example}\""),
        );
        None
    }

    /// The integer in `v`, or a problem saying `key` must be a whole number.
    pub fn integer(&mut self, key: &str, v: &Spanned<Value>, example: i64) -> Option<i64> {
        match v.get_ref() {
            Value::Integer(n) => return Some(*n),
            Value::String(s) if s.trim().parse::<i64>().is_ok() => {
                self.report(
                    v,
                    format!("{key} must be a number, not a string"),
                    format!("remove the quotes: {key} = {}", s.trim()),
                );
            }
            _ => self.report(
                v,
                format!("{key} must be a whole number"),
                format!("e.g. {key} = {example}"),
            ),
        }
        None
    }

    /// The duration in `v` (a string with units, greater than zero), `default` if absent.
    /// `None` after reporting a problem.
    pub fn duration(
        &mut self,
        key: &str,
        v: Option<&Spanned<Value>>,
        default: Duration,
    ) -> Option<Duration> {
        let Some(v) = v else { return Some(default) };
        let shown_default = format_duration(default);
        let text = match v.get_ref() {
            Value::String(s) => s,
            Value::Integer(n) => {
                self.report(
                    v,
                    format!("{key} has no unit"),
                    format!("add a unit, e.g. \"{n}s\""),
                );
                return None;
            }
            _ => {
                let fix = format!(
                    "write a number and a unit in quotes, e.g. {key} = \"{shown_default}\""
                );
                self.report(v, format!("{key} must be a duration string"), fix);
                return None;
            }
        };
        match parse_duration(text) {
            Ok(d) if d.is_zero() => {
                let fix = format!(
                    "use a duration greater than zero, e.g. \"{shown_default}\" (the default)"
                );
                self.report(v, format!("{key} must be greater than zero"), fix);
                None
            }
            Ok(d) => Some(d),
            Err(e) => {
                self.report(v, format!("invalid {key}: {e}"), e.fix());
                None
            }
        }
    }

    /// `[global]`, with defaults for absent keys. Problems are recorded; the value returned
    /// then does not matter, since no `Config` is built.
    fn global(&mut self, raw: Option<&RawGlobal>) -> Global {
        let workers = raw
            .and_then(|g| g.workers.as_ref())
            .and_then(|v| self.workers(v));
        let drain = raw.and_then(|g| g.drain_timeout.as_ref());
        let drain_timeout = self.duration("drain_timeout", drain, DEFAULT_DRAIN_TIMEOUT);
        let (admin, admin_token) = self.admin(raw);
        let access_log = raw
            .and_then(|g| g.access_log.as_ref())
            .and_then(|v| self.access_log(v));
        let max_connections = self
            .max_connections(
                raw.and_then(|g| g.max_connections.as_ref()),
                "then it is derived from the descriptor limit, ulimit -n",
            )
            .flatten();
        Global {
            max_connections,
            workers: workers.unwrap_or(Workers::Auto),
            drain_timeout: drain_timeout.unwrap_or(DEFAULT_DRAIN_TIMEOUT),
            admin,
            admin_token,
            access_log,
        }
    }

    /// `workers`: `"auto"` or an integer 1..=1024.
    fn workers(&mut self, v: &Spanned<Value>) -> Option<Workers> {
        let fix = format!(
            "use workers = \"auto\" (one per CPU this process may run on) or a number from 1 to {MAX_WORKERS}"
        );
        match v.get_ref() {
            Value::String(s) if s == "auto" => return Some(Workers::Auto),
            Value::Integer(n) => {
                let count = usize::try_from(*n)
                    .ok()
                    .filter(|n| *n <= MAX_WORKERS)
                    .and_then(NonZeroUsize::new);
                if count.is_some() {
                    return count.map(Workers::Count);
                }
                self.report(
                    v,
                    format!("workers must be between 1 and {MAX_WORKERS}"),
                    fix,
                );
            }
            Value::String(s) if s.eq_ignore_ascii_case("auto") => {
                self.report(
                    v,
                    "workers must be \"auto\" or a number",
                    "write \"auto\" in lower case",
                );
            }
            Value::String(s) if s.trim().parse::<i64>().is_ok() => {
                let fix = format!("remove the quotes: workers = {}", s.trim());
                self.report(
                    v,
                    "workers must be \"auto\" or a number, not a number in quotes",
                    fix,
                );
            }
            _ => self.report(v, "workers must be \"auto\" or a number", fix),
        }
        None
    }
}
