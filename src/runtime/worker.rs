//! One worker thread: pinned to its CPU, its own io_uring runtime, one socket of each service's
//! `SO_REUSEPORT` group, its connection registry and access log buffer; it obeys the
//! controller's commands (apply a configuration, stop).
//!
//! A configuration is applied in two steps, so that the controller can apply it on every worker
//! or on none: [`Command::Prepare`] builds every service's state aside (the only step that can
//! fail) and answers; [`Command::Commit`] then swaps, per listening address, the state that *new*
//! connections use (it cannot fail); [`Command::Abort`] drops what was prepared. Connections
//! already open keep the `ServiceState` they started with until they end. New addresses start
//! accepting before removed ones stop.

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::{mpsc, Arc};
use std::time::Duration;

use tokio::sync::mpsc::UnboundedReceiver;
use tokio::sync::Notify;

use super::accept::accept_loop;
use crate::access_log::{LocalLog, Sink};
use crate::config::LogFormat;
use crate::counters::WorkerStats;
use crate::limits::Gate;
use crate::net::affinity;
use crate::net::listener::{Listener, ListenerStopper};
use crate::net::ring::{self, RingFlags, Task};
use crate::net::time;
use crate::proxy::registry::Registry;
use crate::proxy::{ServiceState, SharedService};

/// After the drain timeout, how long shut-down connections get to unwind before the worker exits.
const ABORT_GRACE: Duration = Duration::from_secs(1);

/// What the controller asks of a worker.
pub enum Command {
    /// Build the state of these services, aside; answer whether it could.
    Prepare(Plan),
    /// Serve what was prepared from now on; answer once done.
    Commit(mpsc::Sender<Result<(), String>>),
    /// Forget what was prepared (another worker could not prepare).
    Abort,
    /// Stop accepting, drain open connections for up to `drain_timeout`, exit.
    Stop {
        /// How long open connections may take to finish.
        drain_timeout: Duration,
    },
}

/// A configuration for one worker: every service, in order, with this worker's new socket for
/// services whose address is not listened on yet (`None`: keep the current listener there).
pub struct Plan {
    /// The services and, where the address is new, this worker's listening socket.
    pub services: Vec<(Arc<SharedService>, Option<std::net::TcpListener>)>,
    /// Where the worker answers: `Ok` once prepared, or why it could not be.
    pub reply: mpsc::Sender<Result<(), String>>,
}

/// What a worker thread is started with.
pub struct Setup {
    /// Worker index.
    pub worker: usize,
    /// CPU to pin to.
    pub cpu: usize,
    /// The worker's counters.
    pub stats: Arc<WorkerStats>,
    /// The access log, when on, and its format.
    pub log: Option<(Sink, LogFormat)>,
    /// The process-wide connection limit, shared by every worker.
    pub global: Gate,
    /// The controller's commands.
    pub commands: UnboundedReceiver<Command>,
    /// Start-up report: the ring flags, or why the ring could not be made.
    pub ready: mpsc::Sender<Result<RingFlags, String>>,
}

/// One listening address on this worker.
struct Slot {
    state: Rc<RefCell<Rc<ServiceState>>>,
    stopper: ListenerStopper,
    /// Stops the accept loop while it waits at a connection limit (not in an accept).
    stop: Rc<Notify>,
    task: Task<()>,
}

/// The thread's body: pin, build the ring, serve commands until stopped.
pub fn thread_main(setup: Setup) {
    let Setup {
        worker,
        cpu,
        stats,
        log,
        global,
        commands,
        ready,
    } = setup;
    if let Err(e) = affinity::pin_current_thread(cpu) {
        tracing::warn!(worker, cpu, error = %e, "cannot pin worker to its CPU; running unpinned");
    }
    let (rt, flags) = match ring::build_runtime() {
        Ok(v) => v,
        Err(e) => {
            let _ = ready.send(Err(format!("cannot create io_uring: {e} (is io_uring disabled by sysctl kernel.io_uring_disabled or seccomp?)")));
            return;
        }
    };
    let _ = ready.send(Ok(flags));
    drop(ready);
    rt.block_on(async move { Worker::new(worker, stats, log, global).run(commands).await });
}

/// A worker's state on its own thread.
struct Worker {
    index: usize,
    stats: Arc<WorkerStats>,
    log: Option<Rc<LocalLog>>,
    global: Gate,
    registry: Rc<Registry>,
    sweeper: Option<(Duration, Task<()>)>,
    slots: HashMap<SocketAddr, Slot>,
    stopping: Vec<Task<()>>,
    /// What the last `Prepare` built, until `Commit` or `Abort`.
    prepared: Option<Prepared>,
    /// Whether the start-up configuration was applied (test faults fire on reloads only).
    started: bool,
}

/// Every service's shared state, this worker's new listener where its address is new, and the
/// state built for it.
type Prepared = Vec<(Arc<SharedService>, Option<Listener>, Rc<ServiceState>)>;

impl Worker {
    fn new(
        index: usize,
        stats: Arc<WorkerStats>,
        log: Option<(Sink, LogFormat)>,
        global: Gate,
    ) -> Self {
        let log = log.map(|(sink, format)| {
            let local = Rc::new(sink.local(format));
            ring::spawn_detached(local.clone().run_flusher());
            local
        });
        Self {
            index,
            stats,
            log,
            global,
            registry: Rc::new(Registry::new()),
            sweeper: None,
            slots: HashMap::new(),
            stopping: Vec::new(),
            prepared: None,
            started: false,
        }
    }

    async fn run(mut self, mut commands: UnboundedReceiver<Command>) {
        let mut drain_timeout = crate::config::DEFAULT_DRAIN_TIMEOUT;
        while let Some(command) = commands.recv().await {
            match command {
                Command::Prepare(plan) => {
                    let result = self.prepare(plan.services);
                    if let Err(e) = &result {
                        tracing::error!(worker = self.index, error = %e, "configuration not prepared on this worker");
                    }
                    let _ = plan.reply.send(result);
                }
                Command::Commit(reply) => {
                    let result = self.commit();
                    let _ = reply.send(result);
                }
                Command::Abort => {
                    if self.prepared.take().is_some() {
                        tracing::debug!(worker = self.index, "prepared configuration dropped");
                    }
                }
                Command::Stop { drain_timeout: d } => {
                    drain_timeout = d;
                    break;
                }
            }
        }
        self.drain(drain_timeout).await;
    }

    /// Builds every service's state, aside: nothing this worker serves changes.
    fn prepare(
        &mut self,
        services: Vec<(Arc<SharedService>, Option<std::net::TcpListener>)>,
    ) -> Result<(), String> {
        self.prepared = None;
        if self.started {
            match super::faults::prepare_fault(self.index) {
                Some(super::faults::PrepareFault::Fail) => {
                    return Err("injected fault: prepare-fail".into())
                }
                Some(super::faults::PrepareFault::Stall(d)) => std::thread::sleep(d),
                Some(super::faults::PrepareFault::Panic) => {
                    panic!("injected fault: prepare-panic on worker {}", self.index)
                }
                None => {}
            }
        }
        let mut prepared = Vec::with_capacity(services.len());
        for (shared, socket) in services {
            if socket.is_none() && !self.slots.contains_key(&shared.config.listen) {
                return Err(format!(
                    "service {}: no listener on {} to keep",
                    shared.config.name, shared.config.listen
                ));
            }
            let state = ServiceState::new(
                shared.clone(),
                self.index,
                self.stats.clone(),
                self.log.clone(),
                self.registry.clone(),
            )
            .map_err(|e| format!("service {}: TLS setup failed: {e}", shared.config.name))?;
            let listener = match socket {
                Some(socket) => Some(Listener::from_std(socket).map_err(|e| {
                    format!(
                        "service {}: cannot put the listener on {} on the ring: {e}",
                        shared.config.name, shared.config.listen
                    )
                })?),
                None => None,
            };
            prepared.push((shared, listener, Rc::new(state)));
        }
        self.prepared = Some(prepared);
        Ok(())
    }

    /// Serves what [`Worker::prepare`] built: starts new listeners, swaps the state of kept
    /// ones, and stops the ones no longer configured. Cannot fail once prepared.
    fn commit(&mut self) -> Result<(), String> {
        let Some(prepared) = self.prepared.take() else {
            return Err("nothing was prepared".into());
        };
        self.started = true;
        // The sweeper ticks for the shortest timeout any connection may have.
        let shortest = prepared
            .iter()
            .flat_map(|(s, _, _)| {
                let c = &s.config;
                [
                    Some(c.idle_timeout),
                    Some(c.connect_timeout),
                    c.limits.handshake_timeout,
                ]
            })
            .flatten()
            .min();
        let mut keep = HashSet::with_capacity(prepared.len());
        for (shared, listener, state) in prepared {
            let addr = shared.config.listen;
            keep.insert(addr);
            if state.tls_pool.is_some() || state.tcp_pool.is_some() {
                ring::spawn_detached(crate::proxy::warm::refill(state.clone()));
            }
            match listener {
                Some(listener) => {
                    let cell = Rc::new(RefCell::new(state));
                    let stopper = listener.stopper();
                    let stop = Rc::new(Notify::new());
                    let task = ring::spawn(accept_loop(
                        self.index,
                        listener,
                        cell.clone(),
                        self.global.clone(),
                        stop.clone(),
                    ));
                    let slot = Slot {
                        state: cell,
                        stopper,
                        stop,
                        task,
                    };
                    if let Some(old) = self.slots.insert(addr, slot) {
                        self.retire(old);
                    }
                }
                None => {
                    if let Some(slot) = self.slots.get(&addr) {
                        let old = slot.state.replace(state);
                        old.retire();
                    }
                }
            }
        }
        let gone: Vec<SocketAddr> = self
            .slots
            .keys()
            .filter(|a| !keep.contains(a))
            .copied()
            .collect();
        for addr in gone {
            if let Some(slot) = self.slots.remove(&addr) {
                tracing::debug!(worker = self.index, listen = %addr, "listener stopped: address no longer configured");
                self.retire(slot);
            }
        }
        self.stopping.retain(|t| !t.is_finished());
        if let Some(shortest) = shortest {
            self.sweep_for(Registry::tick_for(shortest));
        }
        Ok(())
    }

    /// Stops a slot's listener; its connections keep their state until they end.
    fn retire(&mut self, slot: Slot) {
        slot.stopper.stop();
        slot.stop.notify_one();
        slot.state.borrow().retire();
        self.stopping.push(slot.task);
    }

    /// (Re)starts the sweeper when a shorter timeout needs a faster `tick`.
    fn sweep_for(&mut self, tick: Duration) {
        if self.sweeper.as_ref().is_some_and(|(d, _)| *d <= tick) {
            return;
        }
        if let Some((_, old)) = self.sweeper.take() {
            old.abort();
        }
        let task = ring::spawn(self.registry.clone().run_sweeper(tick));
        self.sweeper = Some((tick, task));
    }

    /// Stops every listener, lets open connections finish for up to `drain_timeout`, then
    /// shuts down what is left.
    async fn drain(mut self, drain_timeout: Duration) {
        let slots: Vec<Slot> = self.slots.drain().map(|(_, s)| s).collect();
        for slot in slots {
            self.retire(slot);
        }
        for task in self.stopping.drain(..) {
            task.join().await;
        }
        let worker = self.index;
        let registry = &self.registry;
        let open = registry.active();
        if open > 0 {
            tracing::debug!(worker, open, "listeners closed; draining connections");
            if time::timeout(drain_timeout, registry.wait_empty())
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
                let _ = time::timeout(ABORT_GRACE, registry.wait_empty()).await;
            }
        }
        if let Some((_, sweeper)) = self.sweeper.take() {
            sweeper.abort();
        }
        if let Some(log) = &self.log {
            log.flush();
        }
    }
}
