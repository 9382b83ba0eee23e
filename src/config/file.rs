//! The raw file format: serde structs that mirror `ringmaster.toml` key for key.
//!
//! Every key is optional and every scalar is a `Spanned<toml::Value>`, so that a missing key or a
//! value of the wrong type becomes one collected problem in `validate.rs` (with its line and
//! column) instead of a serde error that stops at the first. Unknown keys are still rejected by
//! serde (`deny_unknown_fields`): that is the one error the first stage reports by itself.
//! These structs never leave the `config` module.

use serde::Deserialize;
use toml::{Spanned, Value};

/// Keys allowed at the top level. Kept in sync with [`RawFile`] by a test.
pub(super) const TOP_KEYS: &[&str] = &["global", "service"];
/// Keys allowed in `[global]`. Kept in sync with [`RawGlobal`] by a test.
pub(super) const GLOBAL_KEYS: &[&str] = &[
    "workers",
    "drain_timeout",
    "admin",
    "admin_token",
    "access_log",
    "max_connections",
];
/// Keys allowed in `access_log = { ... }`. Kept in sync with [`RawAccessLog`] by a test.
pub(super) const ACCESS_LOG_KEYS: &[&str] = &["path", "format"];
/// Keys allowed in `[[service]]`. Kept in sync with [`RawService`] by a test.
pub(super) const SERVICE_KEYS: &[&str] = &[
    "name",
    "listen",
    "mode",
    "connect_timeout",
    "idle_timeout",
    "handshake_timeout",
    "backlog",
    "certificate",
    "key",
    "extended_protection",
    "sni_certificate",
    "backend_tls",
    "schedule",
    "persistence",
    "steer",
    "health",
    "warm",
    "max_connections",
    "max_connections_per_ip",
    "server_speaks_first",
    "server",
];
/// Keys allowed in `persistence = { ... }`. Kept in sync with [`RawPersistence`] by a test.
pub(super) const PERSISTENCE_KEYS: &[&str] = &["mode", "timeout", "capacity"];
/// Keys allowed in `[service.health]`. Kept in sync with [`RawHealth`] by a test.
pub(super) const HEALTH_KEYS: &[&str] = &[
    "check", "path", "host", "sni", "expect", "interval", "timeout", "rise", "fall", "verify", "ca",
];
/// Keys allowed in `[[service.sni_certificate]]`. Kept in sync with [`RawSniCertificate`] by a test.
pub(super) const SNI_CERT_KEYS: &[&str] = &["certificate", "key"];
/// Keys allowed in `[service.backend_tls]`. Kept in sync with [`RawBackendTls`] by a test.
pub(super) const BACKEND_TLS_KEYS: &[&str] = &["verify", "ca", "sni"];
/// Keys allowed in `[[service.server]]`. Kept in sync with [`RawServer`] by a test.
pub(super) const SERVER_KEYS: &[&str] = &["address", "weight"];

/// The whole file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawFile {
    pub global: Option<RawGlobal>,
    pub service: Option<Vec<Spanned<RawService>>>,
}

/// `[global]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawGlobal {
    pub workers: Option<Spanned<Value>>,
    pub drain_timeout: Option<Spanned<Value>>,
    pub admin: Option<Spanned<Value>>,
    pub admin_token: Option<Spanned<Value>>,
    pub access_log: Option<Spanned<RawAccessLog>>,
    pub max_connections: Option<Spanned<Value>>,
}

/// `access_log = { path = "stdout", format = "logfmt" }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAccessLog {
    pub path: Option<Spanned<Value>>,
    pub format: Option<Spanned<Value>>,
}

/// One `[[service]]`; its span starts at the `[[service]]` header.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawService {
    pub name: Option<Spanned<Value>>,
    pub listen: Option<Spanned<Value>>,
    pub mode: Option<Spanned<Value>>,
    pub connect_timeout: Option<Spanned<Value>>,
    pub idle_timeout: Option<Spanned<Value>>,
    pub handshake_timeout: Option<Spanned<Value>>,
    pub backlog: Option<Spanned<Value>>,
    pub certificate: Option<Spanned<Value>>,
    pub key: Option<Spanned<Value>>,
    pub extended_protection: Option<Spanned<Value>>,
    pub sni_certificate: Option<Vec<Spanned<RawSniCertificate>>>,
    pub backend_tls: Option<Spanned<RawBackendTls>>,
    pub schedule: Option<Spanned<Value>>,
    pub persistence: Option<Spanned<RawPersistence>>,
    pub steer: Option<Spanned<Value>>,
    pub health: Option<Spanned<RawHealth>>,
    pub warm: Option<Spanned<Value>>,
    pub max_connections: Option<Spanned<Value>>,
    pub max_connections_per_ip: Option<Spanned<Value>>,
    pub server_speaks_first: Option<Spanned<Value>>,
    pub server: Option<Vec<Spanned<RawServer>>>,
}

/// `persistence = { mode = "source-ip", timeout = "1h", capacity = N }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPersistence {
    pub mode: Option<Spanned<Value>>,
    pub timeout: Option<Spanned<Value>>,
    pub capacity: Option<Spanned<Value>>,
}

/// `[service.health]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHealth {
    pub check: Option<Spanned<Value>>,
    pub path: Option<Spanned<Value>>,
    pub host: Option<Spanned<Value>>,
    pub sni: Option<Spanned<Value>>,
    pub expect: Option<Spanned<Value>>,
    pub interval: Option<Spanned<Value>>,
    pub timeout: Option<Spanned<Value>>,
    pub rise: Option<Spanned<Value>>,
    pub fall: Option<Spanned<Value>>,
    pub verify: Option<Spanned<Value>>,
    pub ca: Option<Spanned<Value>>,
}

/// One `[[service.sni_certificate]]`: an extra certificate chosen when the client's SNI matches
/// one of its names.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSniCertificate {
    pub certificate: Option<Spanned<Value>>,
    pub key: Option<Spanned<Value>>,
}

/// `[service.backend_tls]`: TLS towards the servers of a reencrypt service.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawBackendTls {
    pub verify: Option<Spanned<Value>>,
    pub ca: Option<Spanned<Value>>,
    pub sni: Option<Spanned<Value>>,
}

/// One `[[service.server]]`; its span starts at the `[[service.server]]` header.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawServer {
    pub address: Option<Spanned<Value>>,
    pub weight: Option<Spanned<Value>>,
}

/// The table a list of allowed keys belongs to, for messages ("in [[service.server]]").
pub(super) fn table_of(allowed: &[&str]) -> Option<&'static str> {
    [
        (TOP_KEYS, "the top level"),
        (GLOBAL_KEYS, "[global]"),
        (ACCESS_LOG_KEYS, "access_log = { ... }"),
        (SERVICE_KEYS, "[[service]]"),
        (SERVER_KEYS, "[[service.server]]"),
        (SNI_CERT_KEYS, "[[service.sni_certificate]]"),
        (BACKEND_TLS_KEYS, "[service.backend_tls]"),
        (PERSISTENCE_KEYS, "persistence = { ... }"),
        (HEALTH_KEYS, "[service.health]"),
    ]
    .into_iter()
    .find(|(keys, _)| *keys == allowed)
    .map(|(_, table)| table)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::suggest::unknown_key;

    /// serde lists the fields a struct accepts in its "unknown field" message; the constants above
    /// must match, or the fix we print would list the wrong keys.
    #[test]
    fn key_lists_match_the_structs() {
        let cases: [(&str, &[&str]); 9] = [
            ("bogus = 1\n", TOP_KEYS),
            ("[global]\nbogus = 1\n", GLOBAL_KEYS),
            ("[global]\naccess_log = { bogus = 1 }\n", ACCESS_LOG_KEYS),
            ("[[service]]\nbogus = 1\n", SERVICE_KEYS),
            ("[[service]]\n[[service.server]]\nbogus = 1\n", SERVER_KEYS),
            (
                "[[service]]\n[[service.sni_certificate]]\nbogus = 1\n",
                SNI_CERT_KEYS,
            ),
            (
                "[[service]]\n[service.backend_tls]\nbogus = 1\n",
                BACKEND_TLS_KEYS,
            ),
            (
                "[[service]]\npersistence = { bogus = 1 }\n",
                PERSISTENCE_KEYS,
            ),
            ("[[service]]\n[service.health]\nbogus = 1\n", HEALTH_KEYS),
        ];
        for (text, keys) in cases {
            let err = toml::from_str::<RawFile>(text).expect_err(text);
            let message = err.message();
            let (key, allowed) = unknown_key(message).unwrap_or_else(|| panic!("{message}"));
            assert_eq!(key, "bogus");
            let allowed: Vec<&str> = allowed.iter().map(String::as_str).collect();
            assert_eq!(allowed, keys, "{text}");
            assert!(table_of(&allowed).is_some());
        }
    }
}
