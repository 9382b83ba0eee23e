//! Deadlines for socket phases that cannot be raced against a timer (a TLS handshake is a series
//! of io_uring reads, and dropping an in-flight read loses its bytes): a per-phase watchdog task
//! shuts the socket down when time is up, which completes the pending read with EOF.

use std::cell::Cell;
use std::os::fd::RawFd;
use std::rc::Rc;
use std::time::Duration;

/// Shuts a socket down unless dropped (disarmed) before `timeout`.
pub struct Deadline {
    fired: Rc<Cell<bool>>,
    task: tokio::task::JoinHandle<()>,
}

impl Deadline {
    /// Arms a deadline for the socket `fd`, which must stay open while the `Deadline` lives: drop
    /// the `Deadline` before the socket (declare it after the socket).
    pub fn arm(fd: RawFd, timeout: Duration) -> Self {
        let fired = Rc::new(Cell::new(false));
        let flag = fired.clone();
        let task = super::ring::spawn(async move {
            tokio::time::sleep(timeout).await;
            flag.set(true);
            // SAFETY: plain syscall; the owner keeps `fd` open until this task is aborted.
            unsafe { libc::shutdown(fd, libc::SHUT_RDWR) };
        });
        Self { fired, task }
    }

    /// True if time ran out and the socket was shut down.
    pub fn fired(&self) -> bool {
        self.fired.get()
    }
}

impl Drop for Deadline {
    fn drop(&mut self) {
        // Single-threaded runtime: once aborted, the task never runs again, so it cannot touch
        // the descriptor after its owner closes it.
        self.task.abort();
    }
}
