//! One io_uring runtime per worker thread.
//!
//! Every ring is created with `IORING_SETUP_COOP_TASKRUN` and `IORING_SETUP_SINGLE_ISSUER`: without
//! them each completion is delivered by an inter-processor interrupt that retries the socket read
//! while the sending CPU still holds the socket lock (a prototype spent 93 % of its time in the
//! kernel that way, at half the speed). `DEFER_TASKRUN` is not used: tokio-uring 0.5 never asks
//! for completions the way it requires, and hangs.

use std::future::Future;
use std::io;

/// Submission queue entries per ring. Completions have twice as many slots, and the kernel keeps
/// overflowing completions (`IORING_FEAT_NODROP`), so this bounds batching, not connections.
pub const RING_ENTRIES: u32 = 4096;

/// How the ring of a worker was set up, for the start-up log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RingFlags {
    /// `COOP_TASKRUN | SINGLE_ISSUER`, as intended.
    CoopSingleIssuer,
    /// The kernel refused the flags (before 6.0); a plain ring, which is much slower.
    Plain,
}

/// Builds a tokio-uring runtime on the calling thread, preferring `COOP_TASKRUN | SINGLE_ISSUER`
/// and falling back to a plain ring where the kernel refuses them.
pub fn build_runtime() -> io::Result<(tokio_uring::Runtime, RingFlags)> {
    let mut urb = tokio_uring::uring_builder();
    urb.setup_coop_taskrun().setup_single_issuer();
    let mut builder = tokio_uring::builder();
    builder.entries(RING_ENTRIES).uring_builder(&urb);
    match tokio_uring::Runtime::new(&builder) {
        Ok(rt) => Ok((rt, RingFlags::CoopSingleIssuer)),
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
            let mut plain = tokio_uring::builder();
            plain.entries(RING_ENTRIES);
            Ok((tokio_uring::Runtime::new(&plain)?, RingFlags::Plain))
        }
        Err(e) => Err(e),
    }
}

/// Runs `future` to completion on a fresh runtime built by [`build_runtime`].
pub fn block_on<F: Future>(future: F) -> io::Result<(F::Output, RingFlags)> {
    let (rt, flags) = build_runtime()?;
    Ok((rt.block_on(future), flags))
}

/// Spawns a task on the current worker's runtime (tasks are `!Send` and stay on this core).
pub fn spawn<F: Future + 'static>(task: F) -> tokio::task::JoinHandle<F::Output> {
    tokio_uring::spawn(task)
}
