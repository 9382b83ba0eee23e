//! Serving one accepted connection: mode dispatch, server choice with failover, and the relay.
//!
//! - [`passthrough`]: TCP relay, TLS untouched.
//! - [`relay`]: the bidirectional copy shared by every mode.
//! - [`registry`]: per-core connection registry, idle timeouts and drain accounting.

pub mod passthrough;
pub mod registry;
pub mod relay;

use std::cell::RefCell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;

use crate::balance::SmoothRoundRobin;
use crate::config::{Mode, Service};
use crate::net::TcpStream;
use registry::Registry;

/// One service as seen by one worker: its configuration and this core's scheduler state.
pub struct ServiceState {
    /// The validated service configuration, shared by all workers.
    pub config: Arc<Service>,
    /// This worker's round-robin position.
    pub scheduler: RefCell<SmoothRoundRobin>,
}

impl ServiceState {
    /// Per-worker state for `config`.
    pub fn new(config: Arc<Service>) -> Self {
        let scheduler = SmoothRoundRobin::new(config.servers.iter().map(|s| s.weight.get()));
        Self {
            config,
            scheduler: RefCell::new(scheduler),
        }
    }
}

/// Serves one accepted client connection until both directions are closed.
pub async fn serve(
    client: TcpStream,
    peer: SocketAddr,
    service: Rc<ServiceState>,
    registry: Rc<Registry>,
) {
    match service.config.mode {
        Mode::Passthrough => passthrough::serve(client, peer, &service, &registry).await,
        // The config refuses these modes until TLS support lands; refuse here too rather than
        // relaying TLS bytes as if they were plain.
        Mode::Offload | Mode::Reencrypt => {
            tracing::error!(service = %service.config.name, mode = %service.config.mode, "mode not supported; closing client");
        }
    }
}
