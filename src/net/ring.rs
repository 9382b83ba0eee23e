//! One io_uring runtime (compio) per worker thread, and the tasks that run on it.
//!
//! The ring is created with `IORING_SETUP_SINGLE_ISSUER` and cooperative task running
//! (`COOP_TASKRUN | TASKRUN_FLAG`): without them each completion is delivered by an
//! inter-processor interrupt that retries the socket read while the sending CPU still holds the
//! socket lock (a prototype spent 93 % of its time in the kernel that way, at half the speed).
//! `DEFER_TASKRUN` works on this runtime (it waits with `GETEVENTS`) but measured no faster here
//! (README, "The engine"); `RINGMASTER_RING=defer` selects it for measurement.
//!
//! The runtime waits for completions in `io_uring_enter(GETEVENTS)` itself: there is no epoll
//! and no other reactor beside it. Timers live on the same runtime ([`super::time`]).
//!
//! Tasks: dropping a compio task handle cancels the task, so connection tasks are detached at
//! once ([`spawn_detached`]); a [`Task`] is kept only where its owner stops it on purpose.

use std::future::Future;
use std::io;

use compio::driver::ProactorBuilder;
use compio::runtime::{Runtime, RuntimeBuilder};

/// Submission queue entries per ring. Completions have twice as many slots, and the kernel keeps
/// overflowing completions (`IORING_FEAT_NODROP`), so this bounds batching, not connections.
pub const RING_ENTRIES: u32 = 4096;

/// How the ring of a worker was set up, for the start-up log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RingFlags {
    /// `SINGLE_ISSUER | COOP_TASKRUN | TASKRUN_FLAG`, the default.
    Coop,
    /// `SINGLE_ISSUER | DEFER_TASKRUN` (`RINGMASTER_RING=defer`).
    Defer,
    /// The kernel refused the flags (before 6.1); a plain ring, which is much slower.
    Plain,
}

/// The flags asked for: `RINGMASTER_RING=defer` or `plain` for measurements, else [`RingFlags::Coop`].
fn wanted() -> RingFlags {
    match std::env::var("RINGMASTER_RING").as_deref() {
        Ok("defer") => RingFlags::Defer,
        Ok("plain") => RingFlags::Plain,
        _ => RingFlags::Coop,
    }
}

/// Buffers in each worker's provided-buffer ring (`net::recv`), [`super::recv::PROVIDED_LEN`]
/// bytes each: 2 MiB per worker, touched as used.
pub const PROVIDED_BUFFERS: u16 = 512;

fn builder(flags: RingFlags) -> ProactorBuilder {
    let mut proactor = ProactorBuilder::new();
    proactor.capacity(RING_ENTRIES);
    if let Some(n) = std::num::NonZeroU16::new(PROVIDED_BUFFERS) {
        proactor
            .buffer_pool_size(n)
            .buffer_pool_buffer_len(super::recv::PROVIDED_LEN);
    }
    match flags {
        RingFlags::Coop => {
            proactor
                .single_issuer(true)
                .coop_taskrun(true)
                .taskrun_flag(true);
        }
        RingFlags::Defer => {
            proactor.single_issuer(true).defer_taskrun(true);
        }
        RingFlags::Plain => {}
    }
    proactor
}

/// Builds a runtime on the calling thread (the ring belongs to it: `SINGLE_ISSUER`), with the
/// wanted flags, falling back to a plain ring where the kernel refuses them.
pub fn build_runtime() -> io::Result<(Runtime, RingFlags)> {
    let flags = wanted();
    match RuntimeBuilder::new().with_proactor(builder(flags)).build() {
        Ok(rt) => Ok((rt, flags)),
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) && flags != RingFlags::Plain => {
            let rt = RuntimeBuilder::new()
                .with_proactor(builder(RingFlags::Plain))
                .build()?;
            Ok((rt, RingFlags::Plain))
        }
        Err(e) => Err(e),
    }
}

/// Runs `future` to completion on a fresh runtime built by [`build_runtime`].
pub fn block_on<F: Future>(future: F) -> io::Result<(F::Output, RingFlags)> {
    let (rt, flags) = build_runtime()?;
    Ok((rt.block_on(future), flags))
}

/// A task its owner may stop: dropping it, or [`Task::abort`], cancels the task at its next
/// await point (a compio operation in flight then is cancelled on the ring, its buffer kept by
/// the driver until the kernel is done with it).
pub struct Task<T> {
    handle: Option<compio::runtime::JoinHandle<T>>,
}

impl<T> Task<T> {
    /// Cancels the task.
    pub fn abort(mut self) {
        self.handle.take();
    }

    /// True once the task completed (or was cancelled).
    pub fn is_finished(&self) -> bool {
        self.handle.as_ref().is_none_or(|h| h.is_finished())
    }

    /// Waits for the task; `None` if it was cancelled or panicked.
    pub async fn join(mut self) -> Option<T> {
        match self.handle.take() {
            Some(handle) => handle.await.ok(),
            None => None,
        }
    }
}

/// Spawns a task on the current worker's runtime that runs until it ends by itself (tasks are
/// `!Send` and stay on this core). Every connection task is spawned this way.
pub fn spawn_detached<F: Future + 'static>(task: F) {
    compio::runtime::spawn(task).detach();
}

/// Spawns a task its owner keeps a handle to, and stops by dropping it.
pub fn spawn<F: Future + 'static>(task: F) -> Task<F::Output> {
    Task {
        handle: Some(compio::runtime::spawn(task)),
    }
}
