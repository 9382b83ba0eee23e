//! Named faults of the reload protocol, for the tests that prove a failed reload changes
//! nothing: a worker that refuses to prepare, one that stops answering, one that panics.
//!
//! Inert unless the environment variable `RINGMASTER_FAULTS` is set when the process starts, to a
//! comma-separated list of:
//!
//! - `prepare-fail=W` — worker `W` reports an error instead of preparing a configuration;
//! - `prepare-stall=W` — worker `W` blocks for `stall-ms` before answering (default 3000);
//! - `prepare-panic=W` — worker `W` panics while preparing;
//! - `stall-ms=N` — how long a stalled worker blocks;
//! - `apply-timeout-ms=N` — how long the controller waits for a worker's answer (default 10 s).
//!
//! Each worker fault fires on the first reload (not the start-up configuration) and only once.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

/// How long the controller waits for each worker's answer to a prepare or a commit.
pub const APPLY_TIMEOUT: Duration = Duration::from_secs(10);

/// What a worker is to do when asked to prepare.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PrepareFault {
    /// Report an error.
    Fail,
    /// Block the worker's thread for this long, then go on.
    Stall(Duration),
    /// Panic.
    Panic,
}

#[derive(Debug, Default)]
struct Faults {
    fail: Option<usize>,
    stall: Option<usize>,
    panic: Option<usize>,
    stall_ms: Option<u64>,
    apply_timeout_ms: Option<u64>,
    fired: AtomicBool,
}

fn faults() -> &'static Faults {
    static FAULTS: OnceLock<Faults> = OnceLock::new();
    FAULTS.get_or_init(|| {
        let mut f = Faults::default();
        let spec = std::env::var("RINGMASTER_FAULTS").unwrap_or_default();
        for item in spec.split(',').filter(|s| !s.is_empty()) {
            let Some((name, value)) = item.split_once('=') else {
                continue;
            };
            let n: Option<u64> = value.trim().parse().ok();
            match name.trim() {
                "prepare-fail" => f.fail = n.map(|n| n as usize),
                "prepare-stall" => f.stall = n.map(|n| n as usize),
                "prepare-panic" => f.panic = n.map(|n| n as usize),
                "stall-ms" => f.stall_ms = n,
                "apply-timeout-ms" => f.apply_timeout_ms = n,
                _ => {}
            }
        }
        if !spec.is_empty() {
            tracing::warn!(faults = %spec, "RINGMASTER_FAULTS is set: test faults will be injected");
        }
        f
    })
}

/// The fault worker `worker` is to meet on this prepare of a reload, if any (each fires once).
pub fn prepare_fault(worker: usize) -> Option<PrepareFault> {
    let f = faults();
    let fault = if f.fail == Some(worker) {
        PrepareFault::Fail
    } else if f.stall == Some(worker) {
        PrepareFault::Stall(Duration::from_millis(f.stall_ms.unwrap_or(3000)))
    } else if f.panic == Some(worker) {
        PrepareFault::Panic
    } else {
        return None;
    };
    (!f.fired.swap(true, Ordering::SeqCst)).then_some(fault)
}

/// How long the controller waits for a worker's answer.
pub fn apply_timeout() -> Duration {
    faults()
        .apply_timeout_ms
        .map_or(APPLY_TIMEOUT, Duration::from_millis)
}
