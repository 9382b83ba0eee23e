//! What the admin endpoints may ask of the running proxy. The runtime implements [`Control`];
//! tests of the HTTP layer use a fake.

use std::net::SocketAddr;

use super::snapshot::Snapshot;

/// An operator's action on one server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerAction {
    /// No new connections; open ones finish; persistence entries move on next use.
    Drain,
    /// Maintenance: like drain, and health checks pause.
    Disable,
    /// Back to normal.
    Enable,
}

/// Why an admin request could not be done; each maps to an HTTP status.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ControlError {
    /// No such service or server (404).
    #[error("{0}")]
    NotFound(String),
    /// The request was understood but its value is wrong (400), e.g. an unparsable address.
    #[error("{0}")]
    BadRequest(String),
    /// The new configuration is invalid: every problem, one per entry (422).
    #[error("{}", .0.join("\n"))]
    Invalid(Vec<String>),
    /// Applying failed and nothing changed, e.g. the new address is in use (409).
    #[error("{0}")]
    Conflict(String),
}

/// The running proxy, as the admin API sees it. Called from the admin thread.
pub trait Control: Send + Sync {
    /// Counters and state now.
    fn snapshot(&self) -> Snapshot;
    /// Drains, disables or enables `server` (its `address` as written in the config) of `service`.
    fn server_action(
        &self,
        service: &str,
        server: &str,
        action: ServerAction,
    ) -> Result<(), ControlError>;
    /// Moves `service` to `address`: every worker listens there first, then stops accepting on
    /// the old address; established connections continue. Returns the old address.
    fn change_address(&self, service: &str, address: &str) -> Result<SocketAddr, ControlError>;
    /// Reloads the configuration file, as SIGHUP does; on success, a one-line summary.
    fn reload(&self) -> Result<String, ControlError>;
}
