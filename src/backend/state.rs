//! The shared state of one real server: whether it may receive new connections, and what its last
//! health check found.
//!
//! Every worker reads [`ServerState::is_usable`] on every new connection, so the health is one
//! atomic byte (an `Acquire` load, no lock, no shared write on the read side). Only the server's
//! health checker writes it. The last check's details ([`CheckSummary`]) sit behind an
//! `ArcSwapOption`: written once per check, read by logs and the admin API, never on the
//! connection path.

use std::fmt;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwapOption;

use serde::Serialize;

/// What an operator asked of a server through the admin API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
#[repr(u8)]
pub enum AdminState {
    /// Takes connections when healthy (the default).
    Enabled,
    /// No new connections; open ones finish; health checks go on.
    Drain,
    /// Maintenance: no new connections; open ones finish; health checks paused.
    Disabled,
}

impl AdminState {
    /// `enabled`, `drain` or `disabled`.
    pub fn as_str(self) -> &'static str {
        match self {
            AdminState::Enabled => "enabled",
            AdminState::Drain => "drain",
            AdminState::Disabled => "disabled",
        }
    }
}

/// Whether a real server passes its health checks.
#[repr(u8)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Health {
    /// Passing (or not checked): it receives new connections.
    Up = 0,
    /// Failing: no new connection is sent to it; open ones are left alone.
    Down = 1,
}

impl Health {
    /// The word used in logs and the admin API: `up` or `down`.
    pub fn as_str(self) -> &'static str {
        match self {
            Health::Up => "up",
            Health::Down => "down",
        }
    }

    /// The inverse of `as u8`; any byte other than `Down`'s reads as `Up` (only this module
    /// stores the byte, so that arm is never taken).
    fn from_u8(byte: u8) -> Self {
        if byte == Health::Down as u8 {
            Health::Down
        } else {
            Health::Up
        }
    }
}

impl fmt::Display for Health {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What one health check found, kept for logs and the admin API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckSummary {
    /// When the check started (wall clock, for display).
    pub at: SystemTime,
    /// How long it took, connect to verdict.
    pub took: Duration,
    /// Whether it passed.
    pub ok: bool,
    /// What was seen, in words: `HTTP 200`, `connected`, or why it failed
    /// (`HTTP 503 not in expect [200]`, `connect refused`, `timeout after 2s`, `TLS: ...`).
    pub reason: String,
    /// The server's health once this check was counted (rise/fall applied).
    pub health: Health,
}

/// The state of one real server shared by every worker and its health checker.
///
/// `Send + Sync`; hold it in an `Arc`, one per server of a service.
#[derive(Debug)]
pub struct ServerState {
    /// A [`Health`] as `u8`.
    health: AtomicU8,
    /// An [`AdminState`] as `u8`, set through the admin API.
    admin: AtomicU8,
    /// The last completed check; `None` until the first one ends (and forever without checks).
    last_check: ArcSwapOption<CheckSummary>,
}

impl ServerState {
    /// A server that is up (`initially_up`) or down until its checks say otherwise.
    ///
    /// With checks configured, pass `true`: as HAProxy does, servers start up and the first
    /// checks decide. Without checks, pass `true` as well: an unchecked server is always up.
    pub fn new(initially_up: bool) -> Self {
        let health = if initially_up {
            Health::Up
        } else {
            Health::Down
        };
        Self {
            health: AtomicU8::new(health as u8),
            admin: AtomicU8::new(AdminState::Enabled as u8),
            last_check: ArcSwapOption::empty(),
        }
    }

    /// The server's current health (one atomic load).
    #[inline]
    pub fn health(&self) -> Health {
        Health::from_u8(self.health.load(Ordering::Acquire))
    }

    /// Whether new connections may go to this server: it is up and the operator has neither
    /// drained nor disabled it (two atomic loads).
    #[inline]
    pub fn is_usable(&self) -> bool {
        self.health() == Health::Up
            && self.admin.load(Ordering::Acquire) == AdminState::Enabled as u8
    }

    /// What the operator set.
    pub fn admin(&self) -> AdminState {
        match self.admin.load(Ordering::Acquire) {
            b if b == AdminState::Drain as u8 => AdminState::Drain,
            b if b == AdminState::Disabled as u8 => AdminState::Disabled,
            _ => AdminState::Enabled,
        }
    }

    /// Sets the operator's state; returns the previous one.
    pub fn set_admin(&self, state: AdminState) -> AdminState {
        let before = self.admin();
        self.admin.store(state as u8, Ordering::Release);
        before
    }

    /// One word for display: `maint` (disabled), `drain`, else the health (`up`/`down`).
    pub fn state_word(&self) -> &'static str {
        match self.admin() {
            AdminState::Disabled => "maint",
            AdminState::Drain => "drain",
            AdminState::Enabled => self.health().as_str(),
        }
    }

    /// Sets the health and returns the previous one. Called by the server's health checker; a
    /// test or a future admin command may call it too (a checker overwrites it on its next
    /// transition).
    pub fn set_health(&self, health: Health) -> Health {
        Health::from_u8(self.health.swap(health as u8, Ordering::AcqRel))
    }

    /// The last completed health check, `None` before the first (or without checks).
    pub fn last_check(&self) -> Option<CheckSummary> {
        self.last_check.load_full().map(|s| (*s).clone())
    }

    /// Records a completed check (its `health` is what the checker decided).
    pub fn record_check(&self, summary: CheckSummary) {
        self.last_check.store(Some(Arc::new(summary)));
    }
}

impl Default for ServerState {
    /// An unchecked server: up.
    fn default() -> Self {
        Self::new(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starts_as_asked_and_flips() {
        let up = ServerState::new(true);
        assert_eq!(up.health(), Health::Up);
        assert!(up.is_usable());
        let down = ServerState::new(false);
        assert_eq!(down.health(), Health::Down);
        assert!(!down.is_usable());
        assert_eq!(up.set_health(Health::Down), Health::Up);
        assert!(!up.is_usable());
        assert_eq!(up.set_health(Health::Up), Health::Down);
        assert!(up.is_usable());
    }

    #[test]
    fn last_check_is_empty_until_recorded() {
        let state = ServerState::default();
        assert_eq!(state.last_check(), None);
        let summary = CheckSummary {
            at: SystemTime::UNIX_EPOCH,
            took: Duration::from_millis(3),
            ok: false,
            reason: "connect refused".into(),
            health: Health::Up,
        };
        state.record_check(summary.clone());
        assert_eq!(state.last_check(), Some(summary));
    }

    #[test]
    fn drain_and_disable_stop_new_connections() {
        let s = ServerState::new(true);
        assert_eq!(s.set_admin(AdminState::Drain), AdminState::Enabled);
        assert!(!s.is_usable());
        assert_eq!(s.state_word(), "drain");
        s.set_admin(AdminState::Disabled);
        assert_eq!(s.state_word(), "maint");
        s.set_admin(AdminState::Enabled);
        assert!(s.is_usable());
        s.set_health(Health::Down);
        assert_eq!(s.state_word(), "down");
    }

    #[test]
    fn health_words() {
        assert_eq!(Health::Up.to_string(), "up");
        assert_eq!(Health::Down.to_string(), "down");
    }

    #[test]
    fn shared_between_threads() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<ServerState>();
    }
}
