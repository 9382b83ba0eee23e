//! Real servers as the rest of the balancer sees them: their shared [`state`] (health, read on
//! every new connection), the [`health`] checkers that keep it current, and each core's warm
//! [`pool`] of idle server connections.
//!
//! The checkers run on plain std threads, off the workers; the workers only read atomics.

pub mod health;
pub mod pool;
pub mod state;

pub use health::{
    spawn_checkers, CertificateCallback, CheckFailure, CheckKind, Checker, HealthConfig,
    HealthError, HttpCheck, Hysteresis,
};
pub use state::{CheckSummary, Health, ServerState};
