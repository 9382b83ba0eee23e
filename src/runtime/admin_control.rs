//! The admin API's view of the running proxy: snapshots built from the current generation and
//! the per-core counters, server actions on the shared server state, and configuration changes
//! through the controller.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Instant, UNIX_EPOCH};

use arc_swap::ArcSwap;

use super::control::{Controller, Generation, ReloadStats};
use crate::access_log::End;
use crate::admin::control::{Control, ControlError, ServerAction};
use crate::admin::snapshot::{
    AdminState, CheckSnapshot, EndCount, LimitSnapshot, PerIpSnapshot, ServerSnapshot,
    ServiceSnapshot, Snapshot, WorkerSnapshot,
};
use crate::balance::select::now_secs;
use crate::counters::Counters;
use crate::limits::Gate;
use crate::proxy::SharedService;

/// [`Control`] for the running process.
pub struct AdminControl {
    /// The process-wide connection limit.
    pub global: Gate,
    /// The controller, for configuration changes (one at a time).
    pub controller: Arc<Mutex<Controller>>,
    /// What runs now.
    pub generation: Arc<ArcSwap<Generation>>,
    /// Every worker's counters.
    pub counters: Arc<Counters>,
    /// Reload counts.
    pub reloads: Arc<ReloadStats>,
    /// When the process started.
    pub started: Instant,
}

impl AdminControl {
    fn service_snapshot(&self, shared: &SharedService) -> ServiceSnapshot {
        let config = &shared.config;
        let totals = self.counters.service(&config.name);
        let servers = config
            .servers
            .iter()
            .enumerate()
            .map(|(i, server)| {
                let state = &shared.balance.servers[i];
                let t = self.counters.server(&config.name, server.address);
                ServerSnapshot {
                    address: server.address,
                    weight: server.weight.get(),
                    health: state.health().as_str(),
                    admin: state.admin(),
                    state: state.state_word(),
                    connections_total: t.connections,
                    connections_current: t.connections.saturating_sub(t.closed),
                    bytes_in: t.bytes_in,
                    bytes_out: t.bytes_out,
                    connect_errors: t.connect_errors,
                    server_tls_errors: t.tls_errors,
                    last_check: state.last_check().map(|c| CheckSnapshot {
                        ok: c.ok,
                        reason: c.reason,
                        at_unix: c
                            .at
                            .duration_since(UNIX_EPOCH)
                            .map(|d| d.as_secs())
                            .unwrap_or(0),
                        took_ms: u64::try_from(c.took.as_millis()).unwrap_or(u64::MAX),
                    }),
                    ep_match: shared.ep.as_ref().and_then(|ep| ep.matches(i)),
                }
            })
            .collect();
        ServiceSnapshot {
            name: config.name.clone(),
            listen: config.listen,
            mode: config.mode.as_str(),
            schedule: config.schedule.as_str(),
            connections_total: totals.accepted,
            connections_current: totals.accepted.saturating_sub(totals.closed),
            client_tls_errors: totals.client_tls_errors,
            no_server: totals.no_server,
            persistence_entries: shared
                .balance
                .persistence
                .as_ref()
                .map(|m| m.len(now_secs()) as u64),
            limit: limit_snapshot(&shared.gate),
            per_ip: shared.per_ip.as_ref().map(|table| PerIpSnapshot {
                limit: config.limits.max_connections_per_ip.unwrap_or(0),
                refused: table.refused(),
                untracked: table.untracked(),
            }),
            ends: End::ALL
                .iter()
                .map(|&end| EndCount {
                    end: end.as_str(),
                    count: totals.ends[end as usize],
                })
                .collect(),
            extended_protection: config.extended_protection,
            servers,
        }
    }
}

/// What a gate shows.
fn limit_snapshot(gate: &Gate) -> LimitSnapshot {
    LimitSnapshot {
        current: u64::from(gate.count().current()),
        limit: gate.limit().map(u64::from),
        reached: gate.count().reached(),
    }
}

impl Control for AdminControl {
    fn snapshot(&self) -> Snapshot {
        let generation = self.generation.load();
        let workers = self
            .counters
            .workers()
            .iter()
            .enumerate()
            .map(|(index, w)| WorkerSnapshot {
                index,
                cpu: w.cpu,
                connections_total: w.worker.accepted.get(),
                connections_current: w
                    .worker
                    .accepted
                    .get()
                    .saturating_sub(w.worker.closed.get()),
                accept_errors: w.worker.accept_errors.get(),
            })
            .collect();
        Snapshot {
            version: env!("CARGO_PKG_VERSION"),
            uptime_secs: self.started.elapsed().as_secs(),
            config_path: generation.config.path.display().to_string(),
            reloads: self.reloads.applied.load(Ordering::Relaxed),
            reload_failures: self.reloads.failed.load(Ordering::Relaxed),
            limit: limit_snapshot(&self.global),
            workers,
            services: generation
                .services
                .iter()
                .map(|s| self.service_snapshot(s))
                .collect(),
        }
    }

    fn server_action(
        &self,
        service: &str,
        server: &str,
        action: ServerAction,
    ) -> Result<(), ControlError> {
        let generation = self.generation.load();
        let shared = generation
            .services
            .iter()
            .find(|s| s.config.name == service)
            .ok_or_else(|| ControlError::NotFound(format!("no service named {service:?}")))?;
        let wanted: Option<SocketAddr> = server.parse().ok();
        let index = shared
            .config
            .servers
            .iter()
            .position(|s| Some(s.address) == wanted || s.address.to_string() == server)
            .ok_or_else(|| {
                ControlError::NotFound(format!("service {service:?} has no server {server:?}"))
            })?;
        let state = match action {
            ServerAction::Drain => AdminState::Drain,
            ServerAction::Disable => AdminState::Disabled,
            ServerAction::Enable => AdminState::Enabled,
        };
        let before = shared.balance.servers[index].set_admin(state);
        shared.balance.rebuild_maglev();
        tracing::info!(
            service,
            server,
            from = before.as_str(),
            to = state.as_str(),
            "server admin state changed"
        );
        Ok(())
    }

    fn change_address(&self, service: &str, address: &str) -> Result<SocketAddr, ControlError> {
        self.controller
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .change_address(service, address)
    }

    fn reload(&self) -> Result<String, ControlError> {
        self.controller
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .reload()
    }
}
