//! The controller: owns the running configuration and changes it without dropping anyone —
//! hot reload (SIGHUP or the admin API) and Change Address. It validates and prepares
//! everything that can fail (parsing, certificates, TLS setup, binding new addresses) before
//! any worker is told, so a bad file or an address in use leaves the old configuration serving.

use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};

use arc_swap::ArcSwap;
use rustls::server::ProducesTickets;
use tokio::sync::mpsc::UnboundedSender;

use super::health::{self, HealthCheckers};
use super::listeners::bind_service;
use super::worker::{Command, Plan};
use super::{check_extended_protection_at_start, RuntimeError};
use crate::admin::control::ControlError;
use crate::config::{self, Config};
use crate::counters::Counters;
use crate::proxy::{ServiceState, SharedService};

/// What is running now; the admin API reads it without waiting for the controller.
pub struct Generation {
    /// The configuration in force (with any Change Address applied).
    pub config: Arc<Config>,
    /// Its services, in order.
    pub services: Vec<Arc<SharedService>>,
}

/// Process-wide counts of configuration changes.
#[derive(Debug, Default)]
pub struct ReloadStats {
    /// Reloads (and address changes) applied.
    pub applied: AtomicU64,
    /// Reloads refused (invalid file, or could not be applied).
    pub failed: AtomicU64,
}

/// The running configuration and the means to change it. One at a time: hold it in a `Mutex`.
pub struct Controller {
    config: Arc<Config>,
    services: Vec<Arc<SharedService>>,
    ticketer: Arc<dyn ProducesTickets>,
    workers: Vec<UnboundedSender<Command>>,
    checkers: Option<HealthCheckers>,
    generation: Arc<ArcSwap<Generation>>,
    stats: Arc<ReloadStats>,
    stopped: bool,
    /// The process-wide connection limit, which sizes per-address tables.
    process_limit: u32,
}

impl Controller {
    /// The controller of workers already serving `services` of `config`.
    pub fn new(
        config: Config,
        services: Vec<Arc<SharedService>>,
        ticketer: Arc<dyn ProducesTickets>,
        workers: Vec<UnboundedSender<Command>>,
        process_limit: u32,
    ) -> Self {
        let config = Arc::new(config);
        let checkers = Some(health::start(&services));
        let generation = Arc::new(ArcSwap::from_pointee(Generation {
            config: config.clone(),
            services: services.clone(),
        }));
        Self {
            config,
            services,
            ticketer,
            workers,
            checkers,
            generation,
            stats: Arc::default(),
            stopped: false,
            process_limit,
        }
    }

    /// What the admin API reads.
    pub fn generation(&self) -> Arc<ArcSwap<Generation>> {
        self.generation.clone()
    }

    /// Reload counts.
    pub fn stats(&self) -> Arc<ReloadStats> {
        self.stats.clone()
    }

    /// Re-reads the configuration file and applies it. An invalid file changes nothing: every
    /// problem is logged and returned.
    pub fn reload(&mut self) -> Result<String, ControlError> {
        let path = self.config.path.clone();
        let result = match config::load(&path) {
            Ok(new) => self.apply(self.keep_restart_only(new), "reload"),
            Err(e) => {
                let problems: Vec<String> = e
                    .problems
                    .iter()
                    .map(|p| problem_line(&e.path, p))
                    .collect();
                for p in &problems {
                    tracing::error!(file = %path.display(), problem = %p, "reload refused: the new configuration is invalid; still serving the old one");
                }
                Err(ControlError::Invalid(if problems.is_empty() {
                    vec![e.to_string()]
                } else {
                    problems
                }))
            }
        };
        match &result {
            Ok(summary) => tracing::info!(file = %path.display(), "{summary}"),
            Err(e) => {
                self.stats.failed.fetch_add(1, Ordering::Relaxed);
                if !matches!(e, ControlError::Invalid(_)) {
                    tracing::error!(file = %path.display(), error = %e, "reload failed; still serving the old configuration");
                }
            }
        }
        result
    }

    /// `[global]` settings that only a restart changes keep their running values (logged).
    fn keep_restart_only(&self, mut new: Config) -> Config {
        let old = &self.config.global;
        let g = &mut new.global;
        let mut kept = Vec::new();
        if g.workers != old.workers {
            kept.push("workers");
            g.workers = old.workers;
        }
        if g.admin != old.admin || g.admin_token != old.admin_token {
            kept.push("admin, admin_token");
            g.admin = old.admin;
            g.admin_token = old.admin_token.clone();
        }
        if g.access_log != old.access_log {
            kept.push("access_log");
            g.access_log = old.access_log.clone();
        }
        if g.max_connections != old.max_connections {
            kept.push("max_connections");
            g.max_connections = old.max_connections;
        }
        if !kept.is_empty() {
            tracing::warn!(keys = %kept.join(", "), "these [global] settings change only on restart; keeping the running values");
        }
        new
    }

    /// Change Address: moves `service` to `address`. Every worker listens on the new address
    /// before any stops accepting on the old one; open connections continue.
    pub fn change_address(
        &mut self,
        service: &str,
        address: &str,
    ) -> Result<SocketAddr, ControlError> {
        let new_addr = config::parse_listen_address(address.trim())
            .map_err(|why| ControlError::BadRequest(format!("address {address:?}: {why}")))?;
        let Some(index) = self.config.services.iter().position(|s| s.name == service) else {
            return Err(ControlError::NotFound(format!(
                "no service named {service:?}"
            )));
        };
        let old_addr = self.config.services[index].listen;
        if old_addr == new_addr {
            return Ok(old_addr);
        }
        if let Some(other) = self.config.services.iter().find(|s| s.listen == new_addr) {
            return Err(ControlError::Conflict(format!(
                "{new_addr} is already the address of service {}",
                other.name
            )));
        }
        if self.config.global.admin == Some(new_addr) {
            return Err(ControlError::Conflict(format!(
                "{new_addr} is the admin listener's address"
            )));
        }
        let mut new = (*self.config).clone();
        new.services[index].listen = new_addr;
        self.apply(new, "change address")?;
        tracing::warn!(service, old = %old_addr, new = %new_addr, file = %self.config.path.display(), "service moved to a new address; the configuration file still has the old one: update it, or the next reload moves the service back");
        Ok(old_addr)
    }

    /// Prepares `new` (TLS, new listeners) and hands it to every worker.
    fn apply(&mut self, mut new: Config, what: &str) -> Result<String, ControlError> {
        if self.stopped {
            return Err(ControlError::Conflict("ringmaster is stopping".into()));
        }
        let services = self.prepare(&new)?;
        let mut sockets = self.bind_new(&services)?;
        let replies = self.send(&services, &mut sockets);
        if let Err(e) = replies {
            return Err(ControlError::Conflict(e));
        }
        // Kept from the running configuration on purpose: new.path stays the file's.
        new.path = self.config.path.clone();
        let summary = summarize(what, &self.config, &new);
        self.config = Arc::new(new);
        self.services = services;
        self.generation.store(Arc::new(Generation {
            config: self.config.clone(),
            services: self.services.clone(),
        }));
        if let Some(old) = self.checkers.take() {
            old.stop();
        }
        self.checkers = Some(health::start(&self.services));
        check_extended_protection_at_start(&Arc::new(self.services.clone()));
        self.stats.applied.fetch_add(1, Ordering::Relaxed);
        Ok(summary)
    }

    /// Builds the shared state of every service, carrying over what belongs to servers that
    /// still exist, and checks that each worker's state can be built (TLS setup).
    fn prepare(&self, new: &Config) -> Result<Vec<Arc<SharedService>>, ControlError> {
        let mut out = Vec::with_capacity(new.services.len());
        let mut problems = Vec::new();
        let probe_stats = Counters::new(&[0]).worker(0);
        for service in &new.services {
            let previous = self.services.iter().find(|s| s.config.name == service.name);
            match SharedService::reloaded(
                Arc::new(service.clone()),
                &self.ticketer,
                previous.map(|p| &**p),
                self.process_limit,
            ) {
                Ok(shared) => {
                    let shared = Arc::new(shared);
                    let registry = std::rc::Rc::new(crate::proxy::registry::Registry::new());
                    if let Err(e) =
                        ServiceState::new(shared.clone(), 0, probe_stats.clone(), None, registry)
                    {
                        problems.push(format!("service {}: TLS setup failed: {e}", service.name));
                    }
                    out.push(shared);
                }
                Err(e) => problems.push(format!("service {}: TLS setup failed: {e}", service.name)),
            }
        }
        if problems.is_empty() {
            Ok(out)
        } else {
            Err(ControlError::Invalid(problems))
        }
    }

    /// Binds every address not listened on yet, one socket per worker. All or nothing.
    fn bind_new(
        &self,
        services: &[Arc<SharedService>],
    ) -> Result<HashMap<SocketAddr, Vec<TcpListener>>, ControlError> {
        let mut bound = HashMap::new();
        for shared in services {
            let addr = shared.config.listen;
            let current = self.config.services.iter().find(|s| s.listen == addr);
            if let Some(current) = current {
                if current.backlog != shared.config.backlog || current.steer != shared.config.steer
                {
                    tracing::warn!(service = %shared.config.name, listen = %addr, "backlog and steer changes take effect when the address changes or on restart; the listener is kept");
                }
                continue;
            }
            match bind_service(shared, self.workers.len()) {
                Ok(group) => {
                    bound.insert(addr, group);
                }
                Err(RuntimeError::Bind { message, .. }) => {
                    return Err(ControlError::Conflict(format!(
                        "cannot listen on {addr} for service {}: {message}; nothing was changed",
                        shared.config.name
                    )));
                }
                Err(e) => return Err(ControlError::Conflict(e.to_string())),
            }
        }
        Ok(bound)
    }

    /// Gives each worker its plan, all or nothing (see [`distribute`]).
    fn send(
        &self,
        services: &[Arc<SharedService>],
        sockets: &mut HashMap<SocketAddr, Vec<TcpListener>>,
    ) -> Result<(), String> {
        // Sockets are handed out last to first, so pop() gives worker w its own.
        let mut plans: Vec<WorkerPlan> = (0..self.workers.len())
            .rev()
            .map(|w| {
                services
                    .iter()
                    .map(|s| {
                        let socket = sockets.get_mut(&s.config.listen).and_then(Vec::pop);
                        debug_assert!(socket.is_none() || sockets[&s.config.listen].len() == w);
                        (s.clone(), socket)
                    })
                    .collect()
            })
            .collect();
        plans.reverse();
        distribute(&self.workers, plans)
    }

    /// Tells every worker to stop accepting and drain. Later changes are refused.
    pub fn stop(&mut self) {
        self.stopped = true;
        let drain_timeout = self.config.global.drain_timeout;
        for w in &self.workers {
            let _ = w.send(Command::Stop { drain_timeout });
        }
    }

    /// Stops the health checkers (at exit).
    pub fn stop_checkers(&mut self) {
        if let Some(c) = self.checkers.take() {
            c.stop();
        }
    }
}

/// One worker's share of a configuration: every service, with this worker's new socket where
/// the address is new.
pub type WorkerPlan = Vec<(Arc<SharedService>, Option<TcpListener>)>;

/// Applies a configuration on every worker or on none, in two steps: each worker prepares its
/// `plans[w]` aside and answers; only when all did is each told to commit (which cannot fail).
/// A worker that refuses, does not answer within the apply timeout, or has exited (panicked)
/// makes every worker drop what it prepared: then nothing serves differently, and the sockets
/// bound for new addresses close. Returns why, with every worker's failure.
pub fn distribute(
    workers: &[UnboundedSender<Command>],
    plans: Vec<WorkerPlan>,
) -> Result<(), String> {
    let timeout = super::faults::apply_timeout();
    let (tx, rx) = mpsc::channel();
    let mut failures = Vec::new();
    let mut sent = 0;
    for (w, (worker, plan)) in workers.iter().zip(plans).enumerate() {
        let prepare = Command::Prepare(Plan {
            services: plan,
            reply: tx.clone(),
        });
        match worker.send(prepare) {
            Ok(()) => sent += 1,
            Err(_) => failures.push(format!("worker {w} has exited")),
        }
    }
    drop(tx);
    let deadline = std::time::Instant::now() + timeout;
    for _ in 0..sent {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match rx.recv_timeout(left) {
            Ok(Ok(())) => {}
            Ok(Err(e)) => failures.push(e),
            Err(mpsc::RecvTimeoutError::Timeout) => {
                failures.push(format!("a worker did not answer within {timeout:?}"));
                break;
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                failures.push("a worker exited while preparing".into());
                break;
            }
        }
    }
    if !failures.is_empty() {
        for worker in workers {
            let _ = worker.send(Command::Abort);
        }
        return Err(format!("{}; nothing was changed", failures.join("; ")));
    }
    let (tx, rx) = mpsc::channel();
    for worker in workers {
        let _ = worker.send(Command::Commit(tx.clone()));
    }
    drop(tx);
    for _ in 0..workers.len() {
        match rx.recv_timeout(timeout) {
            Ok(Ok(())) => {}
            Ok(Err(e)) => failures.push(e),
            Err(_) => failures.push("a worker did not confirm its commit".into()),
        }
    }
    if failures.is_empty() {
        Ok(())
    } else {
        tracing::error!(failures = %failures.join("; "), "a worker failed after every worker had prepared the configuration: workers may now serve different configurations");
        Err(failures.join("; "))
    }
}

/// One line saying what a change did: services added, removed, moved, changed.
fn summarize(what: &str, old: &Config, new: &Config) -> String {
    let find = |c: &Config, name: &str| c.services.iter().find(|s| s.name == name).cloned();
    let added: Vec<&str> = new
        .services
        .iter()
        .filter(|s| find(old, &s.name).is_none())
        .map(|s| s.name.as_str())
        .collect();
    let removed: Vec<&str> = old
        .services
        .iter()
        .filter(|s| find(new, &s.name).is_none())
        .map(|s| s.name.as_str())
        .collect();
    let moved: Vec<String> = new
        .services
        .iter()
        .filter_map(|s| {
            let o = find(old, &s.name)?;
            (o.listen != s.listen).then(|| format!("{} {}→{}", s.name, o.listen, s.listen))
        })
        .collect();
    format!(
        "{what} applied: {} services; added [{}], removed [{}], moved [{}]",
        new.services.len(),
        added.join(", "),
        removed.join(", "),
        moved.join(", ")
    )
}

/// One problem of an invalid file on one line: `file:line:col: message (found: v); fix: ...`.
fn problem_line(path: &std::path::Path, p: &config::Problem) -> String {
    let place = if p.line == 0 {
        path.display().to_string()
    } else {
        format!("{}:{}:{}", path.display(), p.line, p.column)
    };
    let found = p
        .value
        .as_ref()
        .map(|v| format!(" (found: {v})"))
        .unwrap_or_default();
    format!("{place}: {}{found}; fix: {}", p.message, p.fix)
}
