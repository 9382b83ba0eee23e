//! Worker threads: one per allowed CPU, pinned, each with its own io_uring runtime, listeners,
//! schedulers and connection registry; plus signal handling and graceful shutdown.
//!
//! Shutdown (SIGTERM or SIGINT): every worker stops its listeners at once (new connects are then
//! refused), lets established connections finish for up to `drain_timeout`, shuts down what is
//! left, and exits; the process then exits 0. A second signal stops at once.

use std::io;
use std::rc::Rc;
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;
use tokio::sync::watch;

use crate::config::{Config, Workers};
use crate::net::affinity;
use crate::net::listener::Listener;
use crate::net::ring::{self, RingFlags};
use crate::proxy::registry::Registry;
use crate::proxy::{ServiceState, SharedService};
use crate::tls::client::Verify;

mod accept;
mod health;
mod listeners;

/// After the drain timeout, how long shut-down connections get to unwind before the worker exits.
const ABORT_GRACE: Duration = Duration::from_secs(1);

/// Why the runtime could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RuntimeError {
    /// The allowed CPU set could not be read.
    #[error("cannot read the CPUs this process may use: {0}")]
    Affinity(io::Error),
    /// Signal handlers could not be installed.
    #[error("cannot install signal handlers: {0}")]
    Signals(io::Error),
    /// A worker thread could not be created.
    #[error("cannot start worker thread {worker}: {source}")]
    Spawn {
        /// Worker index.
        worker: usize,
        /// The OS error.
        source: io::Error,
    },
    /// A TLS configuration could not be built.
    #[error("service {service}: TLS setup failed: {message}")]
    Tls {
        /// The service.
        service: String,
        /// What rustls said.
        message: String,
    },
    /// A service's address could not be bound.
    #[error("cannot listen on {address} for service {service}: {message}")]
    Bind {
        /// The service.
        service: String,
        /// Its listen address.
        address: std::net::SocketAddr,
        /// The OS error, with a hint.
        message: String,
    },
    /// A worker failed while starting (ring creation).
    #[error("worker {worker}: {message}")]
    Worker {
        /// Worker index.
        worker: usize,
        /// What failed, with the address or resource.
        message: String,
    },
}

/// How many workers to run and on which CPUs: `auto` = one per allowed CPU; a fixed count is
/// spread over the allowed CPUs in order (wrapping if there are more workers than CPUs).
pub fn worker_cpus(workers: &Workers, allowed: &[usize]) -> Vec<usize> {
    let count = match workers {
        Workers::Auto => allowed.len(),
        Workers::Count(n) => n.get(),
    };
    (0..count).map(|i| allowed[i % allowed.len()]).collect()
}

/// Builds what all workers share: per service its config, TLS setup and EP monitor, with one
/// ticketer for every TLS service so that a ticket resumes on any core.
fn shared_services(config: &Config) -> Result<Vec<Arc<SharedService>>, RuntimeError> {
    let ticketer = crate::tls::server::shared_ticketer().map_err(|e| RuntimeError::Tls {
        service: "*".into(),
        message: e.to_string(),
    })?;
    config
        .services
        .iter()
        .map(|s| {
            SharedService::new(Arc::new(s.clone()), &ticketer)
                .map(Arc::new)
                .map_err(|e| RuntimeError::Tls {
                    service: s.name.clone(),
                    message: e.to_string(),
                })
        })
        .collect()
}

/// Probes every server of every Extended Protection service once, off the workers, and feeds the
/// certificates to the service's monitor (which logs a mismatch as an error). Later full
/// handshakes keep checking.
fn check_extended_protection_at_start(services: &Arc<Vec<Arc<SharedService>>>) {
    if !services.iter().any(|s| s.ep.is_some()) {
        return;
    }
    let services = services.clone();
    let spawned = std::thread::Builder::new().name("ringmaster-ep-check".into()).spawn(move || {
        for shared in services.iter() {
            let (Some(ep), Some(resolver)) = (&shared.ep, &shared.resolver) else { continue };
            for (index, server) in shared.config.servers.iter().enumerate() {
                match crate::ep_check::probe(&shared.config, index) {
                    Ok(probe) => {
                        if let Some(why) = &probe.verify_error {
                            tracing::warn!(service = %shared.config.name, server = %server.address, sni = %probe.sni, error = %why, "Extended Protection check at start: the server's certificate does not verify for this name; re-encrypt connections asking for it will fail over to other servers");
                        }
                        // A server that fails verification for this name never serves it, so
                        // there is no channel binding to compare for it.
                        if probe.verify_error.is_some() {
                            continue;
                        }
                        let front = resolver.select(Some(&probe.sni.to_ascii_lowercase()));
                        if ep.observe(index, probe.certificate.as_ref(), &front) == crate::tls::ep_monitor::Verdict::Match {
                            tracing::info!(service = %shared.config.name, server = %server.address, sni = %probe.sni, hash = %ep.front_hash(&front), "Extended Protection: the server presents the service's certificate");
                        }
                    }
                    Err(e) => tracing::warn!(service = %shared.config.name, server = %server.address, error = %e, "Extended Protection check at start: server not reachable; it will be checked on its first handshake"),
                }
            }
        }
    });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "cannot start the Extended Protection check thread");
    }
}

/// Runs the proxy until SIGTERM/SIGINT and the drain that follows.
pub fn run(config: Config) -> Result<(), RuntimeError> {
    // Handlers first: a signal during start-up must drain, not kill.
    let mut signals = Signals::new([SIGTERM, SIGINT]).map_err(RuntimeError::Signals)?;
    let allowed = affinity::allowed_cpus().map_err(RuntimeError::Affinity)?;
    let cpus = worker_cpus(&config.global.workers, &allowed);
    if cpus.len() > allowed.len() {
        tracing::warn!(
            workers = cpus.len(),
            cpus = allowed.len(),
            "more workers than allowed CPUs: some CPUs run two workers"
        );
    }
    let services = Arc::new(shared_services(&config)?);
    let drain_timeout = config.global.drain_timeout;
    let (stop_tx, stop_rx) = watch::channel(false);
    let (ready_tx, ready_rx) = mpsc::channel::<Result<RingFlags, String>>();

    let mut sockets = listeners::bind_all(&services, cpus.len())?.into_iter();
    let mut handles = Vec::with_capacity(cpus.len());
    for (worker, &cpu) in cpus.iter().enumerate() {
        let services = services.clone();
        let sockets = sockets.next().unwrap_or_default();
        let stop_rx = stop_rx.clone();
        let ready_tx = ready_tx.clone();
        let handle = std::thread::Builder::new()
            .name(format!("ringmaster-w{worker}"))
            .spawn(move || {
                worker_thread(
                    worker,
                    cpu,
                    services,
                    sockets,
                    stop_rx,
                    ready_tx,
                    drain_timeout,
                )
            })
            .map_err(|source| RuntimeError::Spawn { worker, source })?;
        handles.push(handle);
    }
    drop(ready_tx);

    let mut failure = None;
    for worker in 0..cpus.len() {
        match ready_rx.recv() {
            Ok(Ok(RingFlags::Plain)) if worker == 0 => {
                tracing::warn!("the kernel refused COOP_TASKRUN|SINGLE_ISSUER: running on plain rings, expect about half the throughput");
            }
            Ok(Ok(_)) => {}
            Ok(Err(message)) => {
                failure.get_or_insert(RuntimeError::Worker { worker, message });
            }
            Err(_) => {
                failure.get_or_insert(RuntimeError::Worker {
                    worker,
                    message: "exited during start-up".into(),
                });
            }
        }
    }
    if let Some(err) = failure {
        let _ = stop_tx.send(true);
        for h in handles {
            let _ = h.join();
        }
        return Err(err);
    }
    for s in services.iter().map(|s| &s.config) {
        tracing::info!(service = %s.name, listen = %s.listen, mode = %s.mode, servers = s.servers.len(), "service listening");
        if s.backend_tls
            .as_ref()
            .is_some_and(|b| matches!(b.verify, Verify::None))
        {
            tracing::warn!(service = %s.name, "backend_tls verify = \"none\": servers' certificates are NOT verified; anyone on the path to them can read and change the traffic");
        }
    }
    tracing::info!(workers = cpus.len(), ?cpus, "ringmaster ready");
    check_extended_protection_at_start(&services);
    let checkers = health::start(&services);

    // Signals are handled on their own thread; this one waits for the workers.
    let signal_handle = signals.handle();
    std::thread::Builder::new()
        .name("ringmaster-signals".into())
        .spawn(move || {
            let mut seen = 0;
            for sig in signals.forever() {
                seen += 1;
                if seen == 1 {
                    tracing::info!(signal = sig, drain_timeout = ?drain_timeout, "stopping: no new connections, draining established ones");
                    let _ = stop_tx.send(true);
                } else {
                    tracing::warn!(signal = sig, "second signal: exiting now without waiting for connections");
                    std::process::exit(0);
                }
            }
        })
        .map_err(|source| RuntimeError::Spawn { worker: usize::MAX, source })?;

    for h in handles {
        if h.join().is_err() {
            tracing::error!("a worker thread panicked");
        }
    }
    signal_handle.close();
    checkers.stop();
    tracing::info!("all workers stopped");
    Ok(())
}

fn worker_thread(
    worker: usize,
    cpu: usize,
    services: Arc<Vec<Arc<SharedService>>>,
    sockets: Vec<std::net::TcpListener>,
    stop_rx: watch::Receiver<bool>,
    ready_tx: mpsc::Sender<Result<RingFlags, String>>,
    drain_timeout: Duration,
) {
    if let Err(e) = affinity::pin_current_thread(cpu) {
        tracing::warn!(worker, cpu, error = %e, "cannot pin worker to its CPU; running unpinned");
    }
    let (rt, flags) = match ring::build_runtime() {
        Ok(v) => v,
        Err(e) => {
            let _ = ready_tx.send(Err(format!("cannot create io_uring: {e} (is io_uring disabled by sysctl kernel.io_uring_disabled or seccomp?)")));
            return;
        }
    };
    rt.block_on(worker_main(
        worker,
        services,
        sockets,
        stop_rx,
        ready_tx,
        flags,
        drain_timeout,
    ));
}

async fn worker_main(
    worker: usize,
    services: Arc<Vec<Arc<SharedService>>>,
    sockets: Vec<std::net::TcpListener>,
    mut stop_rx: watch::Receiver<bool>,
    ready_tx: mpsc::Sender<Result<RingFlags, String>>,
    flags: RingFlags,
    drain_timeout: Duration,
) {
    let mut listeners = Vec::with_capacity(services.len());
    for (shared, socket) in services.iter().zip(sockets) {
        match ServiceState::new(shared.clone(), worker) {
            Ok(state) => {
                let state = Rc::new(state);
                if state.tls_pool.is_some() || state.tcp_pool.is_some() {
                    ring::spawn(crate::proxy::warm::refill(state.clone()));
                }
                listeners.push((Listener::from_std(socket), state));
            }
            Err(e) => {
                let _ = ready_tx.send(Err(format!(
                    "service {}: TLS setup failed: {e}",
                    shared.config.name
                )));
                return;
            }
        }
    }
    let _ = ready_tx.send(Ok(flags));
    drop(ready_tx);

    let registry = Rc::new(Registry::new());
    let shortest_idle = services
        .iter()
        .map(|s| s.config.idle_timeout)
        .min()
        .unwrap_or(Duration::from_secs(1));
    let sweeper = ring::spawn(registry.clone().run_sweeper(shortest_idle));

    let mut stoppers = Vec::with_capacity(listeners.len());
    let mut loops = Vec::with_capacity(listeners.len());
    for (listener, state) in listeners {
        stoppers.push(listener.stopper());
        loops.push(ring::spawn(accept::accept_loop(
            worker,
            listener,
            state,
            registry.clone(),
        )));
    }

    // Until the first signal (or the runtime going away).
    let _ = stop_rx.wait_for(|stop| *stop).await;
    for stopper in &stoppers {
        stopper.stop();
    }
    for accept_loop in loops {
        let _ = accept_loop.await;
    }
    let open = registry.active();
    if open > 0 {
        tracing::debug!(worker, open, "listeners closed; draining connections");
        if tokio::time::timeout(drain_timeout, registry.wait_empty())
            .await
            .is_err()
        {
            let cut = registry.abort_all();
            tracing::warn!(
                worker,
                cut,
                ?drain_timeout,
                "drain timeout reached: closing the remaining connections"
            );
            let _ = tokio::time::timeout(ABORT_GRACE, registry.wait_empty()).await;
        }
    }
    sweeper.abort();
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::num::NonZeroUsize;

    #[test]
    fn auto_uses_every_allowed_cpu_in_order() {
        assert_eq!(worker_cpus(&Workers::Auto, &[2, 5, 7]), vec![2, 5, 7]);
    }

    #[test]
    fn a_fixed_count_wraps_over_the_allowed_cpus() {
        let three = Workers::Count(NonZeroUsize::new(3).expect("non-zero"));
        assert_eq!(worker_cpus(&three, &[4, 6]), vec![4, 6, 4]);
    }
}
