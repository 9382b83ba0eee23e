//! Choosing a real server for a new connection.
//!
//! Each worker owns its scheduler state; nothing here is shared between cores or locked.

pub mod round_robin;

pub use round_robin::SmoothRoundRobin;
