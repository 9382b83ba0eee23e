//! Checks for the keys that bound what clients may take: `[global] max_connections`, and per
//! service `max_connections`, `max_connections_per_ip`, `handshake_timeout` and
//! `server_speaks_first`.

use std::time::Duration;

use toml::{Spanned, Value};

use super::validate::Checker;
use super::Mode;

/// `handshake_timeout` when absent: time from accept to the end of the client's TLS handshake (to
/// its first byte in passthrough). A real client needs a round trip or two; a slowloris needs this.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest `max_connections` (global or per service): 2^24 connections, far past any descriptor
/// limit a kernel grants.
pub const MAX_CONNECTIONS: u32 = 1 << 24;
/// Largest `max_connections_per_ip`: the per-IP table counts in 16 bits.
pub const MAX_CONNECTIONS_PER_IP: u32 = 65_535;

/// A service's client-facing limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServiceLimits {
    /// Most connections open at once for this service (`None`: only the global limit).
    pub max_connections: Option<u32>,
    /// Most connections open at once from one client address (`None`: no per-address limit).
    pub max_connections_per_ip: Option<u32>,
    /// Time from accept to the end of the client's TLS handshake, or to its first byte in
    /// passthrough; `None` for a passthrough service whose server speaks first.
    pub handshake_timeout: Option<Duration>,
}

impl Checker<'_> {
    /// `max_connections = N`, 1..=[`MAX_CONNECTIONS`]; `None` when absent (or invalid, reported).
    pub(super) fn max_connections(
        &mut self,
        v: Option<&Spanned<Value>>,
        example: &str,
    ) -> Option<Option<u32>> {
        let Some(v) = v else { return Some(None) };
        let n = self.integer("max_connections", v, 10_000)?;
        let limit = u32::try_from(n)
            .ok()
            .filter(|n| (1..=MAX_CONNECTIONS).contains(n));
        if limit.is_none() {
            self.report(
                v,
                format!("max_connections must be between 1 and {MAX_CONNECTIONS}"),
                format!("e.g. max_connections = 10000, or remove it ({example})"),
            );
            return None;
        }
        Some(limit)
    }

    /// The limits of one service in `mode`.
    pub(super) fn service_limits(
        &mut self,
        max: Option<&Spanned<Value>>,
        per_ip: Option<&Spanned<Value>>,
        handshake: Option<&Spanned<Value>>,
        speaks_first: Option<&Spanned<Value>>,
        mode: Option<Mode>,
    ) -> Option<ServiceLimits> {
        let max_connections =
            self.max_connections(max, "then only [global] max_connections applies");
        let max_connections_per_ip = match per_ip {
            None => Some(None),
            Some(v) => self.per_ip(v),
        };
        let handshake_timeout =
            self.duration("handshake_timeout", handshake, DEFAULT_HANDSHAKE_TIMEOUT);
        let server_first = match speaks_first {
            None => Some(false),
            Some(v) => self.server_speaks_first(v, mode, handshake),
        };
        Some(ServiceLimits {
            max_connections: max_connections?,
            max_connections_per_ip: max_connections_per_ip?,
            handshake_timeout: (!server_first?).then_some(handshake_timeout?),
        })
    }

    fn per_ip(&mut self, v: &Spanned<Value>) -> Option<Option<u32>> {
        let n = self.integer("max_connections_per_ip", v, 100)?;
        match u32::try_from(n)
            .ok()
            .filter(|n| (1..=MAX_CONNECTIONS_PER_IP).contains(n))
        {
            Some(n) => Some(Some(n)),
            None => {
                self.report(
                    v,
                    format!("max_connections_per_ip must be between 1 and {MAX_CONNECTIONS_PER_IP}"),
                    "e.g. max_connections_per_ip = 100 (leave room for clients behind one NAT), or remove it to have no per-address limit",
                );
                None
            }
        }
    }

    /// `server_speaks_first = true`: passthrough only, and then no `handshake_timeout`.
    fn server_speaks_first(
        &mut self,
        v: &Spanned<Value>,
        mode: Option<Mode>,
        handshake: Option<&Spanned<Value>>,
    ) -> Option<bool> {
        let Value::Boolean(on) = v.get_ref() else {
            self.report(
                v,
                "server_speaks_first must be true or false",
                "write server_speaks_first = true (without quotes) for protocols such as SMTP",
            );
            return None;
        };
        if *on && matches!(mode, Some(Mode::Offload | Mode::Reencrypt)) {
            self.report(
                v,
                "server_speaks_first is for passthrough: in offload and reencrypt the client always speaks first (its ClientHello)",
                "remove server_speaks_first",
            );
            return None;
        }
        if let (true, Some(h)) = (*on, handshake) {
            self.report(
                h,
                "handshake_timeout has no effect with server_speaks_first = true: the server is connected at once and the client may stay silent",
                "remove handshake_timeout (idle_timeout still applies), or remove server_speaks_first",
            );
            return None;
        }
        Some(*on)
    }
}
