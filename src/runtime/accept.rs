//! The accept loop of one listener on one worker. It never dies on a transient error, and it
//! accepts only while the connection limits leave room: before each accept it takes a slot of
//! the service's and the process's limit, waiting while either is reached, so clients beyond a
//! limit queue in the kernel's backlog; after the accept, the client's address is checked
//! against `max_connections_per_ip`.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use crate::limits::{Gate, Permit, Slot};
use crate::net::listener::Listener;
use crate::net::{ring, time};
use crate::proxy::{self, ServiceState};

/// Back-off after running out of descriptors or memory: long enough for connections to close and
/// free some, short enough not to let the backlog overflow.
const RESOURCE_BACKOFF: Duration = Duration::from_millis(50);
/// At most one log line per this interval for repeated accept errors, with a count of the rest.
const LOG_EVERY: Duration = Duration::from_secs(1);

/// Accepts connections until the listener is stopped (or `stop` is notified while the loop waits
/// at a limit), spawning one task per connection. Each connection gets the service state current
/// when it is accepted (a reload swaps it in `service`; connections already open keep theirs).
pub async fn accept_loop(
    worker: usize,
    listener: Listener,
    service: Rc<RefCell<Rc<ServiceState>>>,
    global: Gate,
    stop: Rc<Notify>,
) {
    let mut error_log = RateLimited::default();
    let mut ip_log = RateLimited::default();
    loop {
        let gate = service.borrow().shared.gate.clone();
        let (service_slot, global_slot) = tokio::select! {
            biased;
            () = stop.notified() => return,
            slots = slots(&gate, &global) => slots,
        };
        match listener.accept().await {
            Ok((stream, peer)) => {
                let state = service.borrow().clone();
                let ip = match &state.shared.per_ip {
                    Some(table) => {
                        let limit = state
                            .config()
                            .limits
                            .max_connections_per_ip
                            .unwrap_or(u32::MAX);
                        match table.admit(peer.ip(), limit) {
                            Ok(slot) => slot,
                            Err(_) => {
                                if ip_log.due() {
                                    tracing::warn!(worker, service = %state.config().name, client = %peer, limit, suppressed = ip_log.take_suppressed(), "client address at max_connections_per_ip; connection reset");
                                }
                                proxy::refuse_over_ip_limit(stream, peer, &state);
                                continue;
                            }
                        }
                    }
                    None => None,
                };
                let permit = Permit {
                    global: global_slot,
                    service: service_slot,
                    ip,
                };
                ring::spawn_detached(proxy::serve(stream, peer, state, permit));
            }
            Err(e) => {
                let errno = e.raw_os_error();
                // A stopped listener leaves LISTEN state: accept fails with EINVAL.
                if errno == Some(libc::EINVAL) || errno == Some(libc::EBADF) {
                    tracing::debug!(worker, listen = %listener.addr(), "listener stopped");
                    return;
                }
                drop((service_slot, global_slot));
                service.borrow().worker.worker.accept_errors.inc();
                if error_log.due() {
                    tracing::warn!(worker, listen = %listener.addr(), error = %e, suppressed = error_log.take_suppressed(), "accept failed; retrying");
                }
                let out_of_resources = matches!(
                    errno,
                    Some(libc::EMFILE)
                        | Some(libc::ENFILE)
                        | Some(libc::ENOBUFS)
                        | Some(libc::ENOMEM)
                );
                if out_of_resources {
                    time::sleep(RESOURCE_BACKOFF).await;
                } else if !matches!(
                    errno,
                    Some(libc::ECONNABORTED) | Some(libc::EPROTO) | Some(libc::EINTR)
                ) {
                    // Unknown error: do not spin on it.
                    time::sleep(Duration::from_millis(5)).await;
                }
            }
        }
    }
}

/// A slot of the service's limit, then of the process's; waits while either is reached (the
/// service first, so a service at its limit holds no slot of the others').
async fn slots(service: &Gate, global: &Gate) -> (Slot, Slot) {
    let service_slot = service.acquire().await;
    let global_slot = global.acquire().await;
    (service_slot, global_slot)
}

/// At most one log line per [`LOG_EVERY`], with a count of the lines left out.
#[derive(Default)]
struct RateLimited {
    last: Option<Instant>,
    suppressed: u64,
}

impl RateLimited {
    /// True when a line may be logged now; otherwise counts it as suppressed.
    fn due(&mut self) -> bool {
        let now = Instant::now();
        if self.last.is_none_or(|t| now.duration_since(t) >= LOG_EVERY) {
            self.last = Some(now);
            true
        } else {
            self.suppressed += 1;
            false
        }
    }

    /// The suppressed count since the last line, reset.
    fn take_suppressed(&mut self) -> u64 {
        std::mem::take(&mut self.suppressed)
    }
}
