//! The accept loop of one listener on one worker. It never dies on a transient error.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use crate::net::listener::Listener;
use crate::net::ring;
use crate::proxy::registry::Registry;
use crate::proxy::{self, ServiceState};

/// Back-off after running out of descriptors or memory: long enough for connections to close and
/// free some, short enough not to let the backlog overflow.
const RESOURCE_BACKOFF: Duration = Duration::from_millis(50);
/// At most one log line per this interval for repeated accept errors, with a count of the rest.
const LOG_EVERY: Duration = Duration::from_secs(1);

/// Accepts connections until the listener is stopped, spawning one task per connection. Each
/// connection gets the service state current when it is accepted (a reload swaps it in
/// `service`; connections already open keep theirs).
pub async fn accept_loop(
    worker: usize,
    listener: Listener,
    service: Rc<RefCell<Rc<ServiceState>>>,
    registry: Rc<Registry>,
) {
    let mut last_log: Option<Instant> = None;
    let mut suppressed: u64 = 0;
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                let state = service.borrow().clone();
                ring::spawn(proxy::serve(stream, peer, state, registry.clone()));
            }
            Err(e) => {
                let errno = e.raw_os_error();
                // A stopped listener leaves LISTEN state: accept fails with EINVAL.
                if errno == Some(libc::EINVAL) || errno == Some(libc::EBADF) {
                    tracing::debug!(worker, listen = %listener.addr(), "listener stopped");
                    return;
                }
                service.borrow().worker.worker.accept_errors.inc();
                let now = Instant::now();
                if last_log.is_none_or(|t| now.duration_since(t) >= LOG_EVERY) {
                    tracing::warn!(worker, listen = %listener.addr(), error = %e, suppressed, "accept failed; retrying");
                    last_log = Some(now);
                    suppressed = 0;
                } else {
                    suppressed += 1;
                }
                let out_of_resources = matches!(
                    errno,
                    Some(libc::EMFILE)
                        | Some(libc::ENFILE)
                        | Some(libc::ENOBUFS)
                        | Some(libc::ENOMEM)
                );
                if out_of_resources {
                    tokio::time::sleep(RESOURCE_BACKOFF).await;
                } else if !matches!(
                    errno,
                    Some(libc::ECONNABORTED) | Some(libc::EPROTO) | Some(libc::EINTR)
                ) {
                    // Unknown error: do not spin on it.
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
        }
    }
}
