//! Choosing a real server for a new connection.
//!
//! Each worker owns its scheduler state; what cores share (health, connection counts, the Maglev
//! table, the persistence map) is atomic or lock-free. Nothing here locks.

pub mod least_conn;
pub mod maglev;
pub mod persistence;
pub mod round_robin;
pub mod select;

pub use least_conn::{ConnCountGuard, ConnCounts};
pub use maglev::{MaglevTable, SharedMaglev};
pub use round_robin::SmoothRoundRobin;
