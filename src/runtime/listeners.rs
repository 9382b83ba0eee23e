//! Binding every service's listening sockets before the workers start, one per worker in worker
//! order, and attaching client-IP steering where a service asks for it.

use std::net::TcpListener;
use std::sync::Arc;

use super::RuntimeError;
use crate::config::Steer;
use crate::net::listener::{attach_client_ip_steering, bind_group};
use crate::proxy::SharedService;

/// Binds `workers` sockets for each service and returns them per worker: `result[w][s]` is worker
/// `w`'s socket for service `s`.
pub fn bind_all(
    services: &[Arc<SharedService>],
    workers: usize,
) -> Result<Vec<Vec<TcpListener>>, RuntimeError> {
    let mut per_worker: Vec<Vec<TcpListener>> = (0..workers)
        .map(|_| Vec::with_capacity(services.len()))
        .collect();
    for shared in services {
        for (w, socket) in bind_service(shared, workers)?.into_iter().enumerate() {
            per_worker[w].push(socket);
        }
    }
    Ok(per_worker)
}

/// Binds one service's group of `workers` sockets (listening when this returns), with client-IP
/// steering attached when the service asks for it.
pub fn bind_service(
    shared: &SharedService,
    workers: usize,
) -> Result<Vec<TcpListener>, RuntimeError> {
    let service = &shared.config;
    let group = bind_group(service.listen, service.backlog, workers).map_err(|e| {
        let hint = if e.kind() == std::io::ErrorKind::AddrInUse {
            " (another process listens there: stop it or change `listen`)"
        } else {
            ""
        };
        RuntimeError::Bind {
            service: service.name.clone(),
            address: service.listen,
            message: format!("{e}{hint}"),
        }
    })?;
    if service.steer == Steer::ClientIp {
        steer(&service.name, service.listen, &group);
    }
    Ok(group)
}

/// Attaches the steering program, or explains once why the kernel's default hash stays.
fn steer(service: &str, listen: std::net::SocketAddr, group: &[TcpListener]) {
    let Some(first) = group.first() else { return };
    if !listen.is_ipv4() {
        tracing::warn!(service, %listen, "steer = \"client-ip\" works for IPv4 listeners only; using the kernel's default spreading");
        return;
    }
    let workers = u32::try_from(group.len()).unwrap_or(u32::MAX);
    match attach_client_ip_steering(first, workers) {
        Ok(()) => {
            tracing::info!(service, %listen, workers, "client-IP steering attached: each client IPv4 always lands on the same worker")
        }
        Err(e) => {
            tracing::warn!(service, %listen, error = %e, "the kernel refused the client-IP steering program; using its default spreading")
        }
    }
}
