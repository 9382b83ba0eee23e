//! Worker threads: one per allowed CPU, pinned, each with its own io_uring runtime, listeners,
//! schedulers and connection registry; plus signal handling and graceful shutdown.
//!
//! Shutdown (SIGTERM or SIGINT): every worker stops its listeners at once (new connects are then
//! refused), lets established connections finish for up to `drain_timeout`, shuts down what is
//! left, and exits; the process then exits 0. A second signal stops at once.

use std::io;
use std::sync::{mpsc, Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use rustls::server::ProducesTickets;
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM, SIGUSR1};
use signal_hook::iterator::Signals;

use crate::access_log::AccessLogWriter;
use crate::config::{Config, Workers};
use crate::counters::Counters;
use crate::limits::nofile::{self, Budget};
use crate::limits::{ConnCount, Gate};
use crate::net::affinity;
use crate::net::ring::RingFlags;
use crate::proxy::SharedService;
use crate::tls::client::Verify;
use admin_control::AdminControl;
use control::Controller;

mod accept;
mod admin_control;
pub mod control;
pub mod faults;
mod health;
mod listeners;
pub mod worker;

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
    /// The access log could not be opened.
    #[error("cannot open the access log {target}: {message}")]
    AccessLog {
        /// Where it should go.
        target: String,
        /// The OS error.
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
fn shared_services(
    config: &Config,
    ticketer: &Arc<dyn ProducesTickets>,
    process_limit: u32,
) -> Result<Vec<Arc<SharedService>>, RuntimeError> {
    config
        .services
        .iter()
        .map(|s| {
            SharedService::new(Arc::new(s.clone()), ticketer, process_limit)
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
pub(crate) fn check_extended_protection_at_start(services: &Arc<Vec<Arc<SharedService>>>) {
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

/// Runs the proxy until SIGTERM/SIGINT and the drain that follows. SIGHUP reloads the
/// configuration file; SIGUSR1 reopens the access log file.
pub fn run(config: Config) -> Result<(), RuntimeError> {
    // Handlers first: a signal during start-up must drain, not kill.
    let mut signals =
        Signals::new([SIGTERM, SIGINT, SIGHUP, SIGUSR1]).map_err(RuntimeError::Signals)?;
    let started = Instant::now();
    let allowed = affinity::allowed_cpus().map_err(RuntimeError::Affinity)?;
    let cpus = worker_cpus(&config.global.workers, &allowed);
    if cpus.len() > allowed.len() {
        tracing::warn!(
            workers = cpus.len(),
            cpus = allowed.len(),
            "more workers than allowed CPUs: some CPUs run two workers"
        );
    }
    let ticketer = crate::tls::server::shared_ticketer().map_err(|e| RuntimeError::Tls {
        service: "*".into(),
        message: e.to_string(),
    })?;
    let global = Gate::new(
        ConnCount::new(),
        Some(connection_limit(&config, cpus.len())),
    );
    let process_limit = global.limit().unwrap_or(u32::MAX);
    let services = shared_services(&config, &ticketer, process_limit)?;
    let mut sockets = listeners::bind_all(&services, cpus.len())?;
    let admin_socket = match config.global.admin {
        Some(addr) => Some(bind_admin(addr)?),
        None => None,
    };
    let access_log = match &config.global.access_log {
        Some(log) => Some(
            AccessLogWriter::start(log).map_err(|e| RuntimeError::AccessLog {
                target: format!("{:?}", log.target),
                message: e.to_string(),
            })?,
        ),
        None => None,
    };
    let counters = Arc::new(Counters::new(&cpus));

    let (ready_tx, ready_rx) = mpsc::channel::<Result<RingFlags, String>>();
    let mut handles = Vec::with_capacity(cpus.len());
    let mut commands = Vec::with_capacity(cpus.len());
    for (worker, &cpu) in cpus.iter().enumerate() {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        commands.push(tx);
        let setup = worker::Setup {
            worker,
            cpu,
            stats: counters.worker(worker),
            global: global.clone(),
            log: access_log
                .as_ref()
                .zip(config.global.access_log.as_ref())
                .map(|(w, c)| (w.sink(), c.format)),
            commands: rx,
            ready: ready_tx.clone(),
        };
        let handle = std::thread::Builder::new()
            .name(format!("ringmaster-w{worker}"))
            .spawn(move || worker::thread_main(setup))
            .map_err(|source| RuntimeError::Spawn { worker, source })?;
        handles.push(handle);
    }
    drop(ready_tx);

    let stop_all = |commands: &[tokio::sync::mpsc::UnboundedSender<worker::Command>]| {
        for c in commands {
            let _ = c.send(worker::Command::Stop {
                drain_timeout: Duration::ZERO,
            });
        }
    };
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
    if failure.is_none() {
        failure = start_services(&services, &mut sockets, &commands).err();
    }
    if let Some(err) = failure {
        stop_all(&commands);
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
    check_extended_protection_at_start(&Arc::new(services.clone()));

    let admin_token = config.global.admin_token.clone().map(|t| t.0);
    let controller = Controller::new(config, services, ticketer, commands, process_limit);
    let generation = controller.generation();
    let reloads = controller.stats();
    let controller = Arc::new(Mutex::new(controller));
    let admin = match admin_socket {
        Some(socket) => {
            let control = Arc::new(AdminControl {
                global: global.clone(),
                controller: controller.clone(),
                generation,
                counters: counters.clone(),
                reloads,
                started,
            });
            let addr = socket.local_addr().ok();
            match crate::admin::server::spawn(socket, admin_token, control) {
                Ok(server) => {
                    tracing::info!(admin = ?addr, "admin API listening: /metrics, /api/services, /stats");
                    Some(server)
                }
                Err(e) => {
                    tracing::error!(error = %e, "cannot start the admin API; serving without it");
                    None
                }
            }
        }
        None => None,
    };

    // Signals are handled on their own thread; this one waits for the workers.
    let signal_handle = signals.handle();
    let access_log = access_log.map(Arc::new);
    let reopen = access_log.clone();
    let signal_controller = controller.clone();
    let signal_thread = std::thread::Builder::new()
        .name("ringmaster-signals".into())
        .spawn(move || {
            let mut stopping = false;
            for sig in signals.forever() {
                match sig {
                    SIGHUP => {
                        tracing::info!("SIGHUP: reloading the configuration");
                        let _ = lock(&signal_controller).reload();
                    }
                    SIGUSR1 => match &reopen {
                        Some(log) => {
                            tracing::info!("SIGUSR1: reopening the access log");
                            log.reopen();
                        }
                        None => tracing::info!("SIGUSR1: no access log file to reopen"),
                    },
                    _ if !stopping => {
                        stopping = true;
                        tracing::info!(
                            signal = sig,
                            "stopping: no new connections, draining established ones"
                        );
                        lock(&signal_controller).stop();
                    }
                    _ => {
                        tracing::warn!(
                            signal = sig,
                            "second signal: exiting now without waiting for connections"
                        );
                        std::process::exit(0);
                    }
                }
            }
        })
        .map_err(|source| RuntimeError::Spawn {
            worker: usize::MAX,
            source,
        })?;

    for h in handles {
        if h.join().is_err() {
            tracing::error!("a worker thread panicked");
        }
    }
    signal_handle.close();
    let _ = signal_thread.join();
    if let Some(admin) = admin {
        admin.stop();
    }
    lock(&controller).stop_checkers();
    if let Some(log) = access_log.and_then(Arc::into_inner) {
        log.stop();
    }
    tracing::info!("all workers stopped");
    Ok(())
}

/// The process-wide connection limit: `[global] max_connections`, else what the descriptor limit
/// leaves room for (raised to its hard limit first). Logs the budget, and warns when a configured
/// limit needs more descriptors than the process may open.
fn connection_limit(config: &Config, workers: usize) -> u32 {
    let nofile = match nofile::raise_to_hard() {
        Ok((now, before)) => {
            if now > before {
                tracing::info!(
                    before,
                    now,
                    "raised the soft descriptor limit (ulimit -n) to the hard limit"
                );
            }
            now
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the descriptor limit; assuming 1024");
            1024
        }
    };
    let budget = Budget::new(config, workers, nofile);
    match config.global.max_connections {
        Some(max) => {
            if budget.needed(max) > nofile {
                tracing::warn!(max_connections = max, descriptors_needed = budget.needed(max), nofile, "max_connections needs more descriptors than the process may open: accepts will meet EMFILE before the limit; raise LimitNOFILE (ulimit -n) or lower max_connections");
            }
            tracing::info!(
                max_connections = max,
                nofile,
                "connection limit (configured)"
            );
            max
        }
        None => {
            tracing::info!(
                max_connections = budget.connections,
                nofile,
                reserved = budget.reserved,
                "connection limit derived from the descriptor limit: (nofile - reserved) / 2"
            );
            budget.connections
        }
    }
}

/// Locks the controller (a panic while holding it leaves a usable state: every change is
/// prepared before anything is switched).
fn lock(controller: &Mutex<Controller>) -> std::sync::MutexGuard<'_, Controller> {
    controller.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Binds the admin listener (loopback unless a token is configured; the config checks that).
fn bind_admin(addr: std::net::SocketAddr) -> Result<std::net::TcpListener, RuntimeError> {
    crate::net::listener::bind_std(addr, 128).map_err(|e| RuntimeError::Bind {
        service: "admin".into(),
        address: addr,
        message: e.to_string(),
    })
}

/// Hands every worker its sockets and the services' state, and waits until all serve (all or
/// nothing, as a reload).
fn start_services(
    services: &[Arc<SharedService>],
    sockets: &mut [Vec<std::net::TcpListener>],
    commands: &[tokio::sync::mpsc::UnboundedSender<worker::Command>],
) -> Result<(), RuntimeError> {
    let plans = sockets
        .iter_mut()
        .map(|mine| {
            services
                .iter()
                .cloned()
                .zip(mine.drain(..).map(Some))
                .collect()
        })
        .collect();
    control::distribute(commands, plans)
        .map_err(|message| RuntimeError::Worker { worker: 0, message })
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
