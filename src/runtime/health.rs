//! Housekeeping off the workers: the health checkers of every service (one per server),
//! connected to the Extended Protection monitor; Maglev tables rebuilt when health changes; and
//! expired persistence entries reclaimed.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crate::backend::health::{
    spawn_checkers, CertificateCallback, CheckKind, HealthConfig, HttpCheck,
};
use crate::config::{CheckType, HealthCheck};
use crate::proxy::SharedService;

/// How often a source-hash service looks for a health change to rebuild its Maglev table.
const MAGLEV_WATCH: Duration = Duration::from_millis(100);
/// How often expired persistence entries are reclaimed (inserts also reuse expired slots).
const PERSISTENCE_RECLAIM: Duration = Duration::from_secs(10);

/// The checker threads of every service; stopping sets the flag and joins them.
pub struct HealthCheckers {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl HealthCheckers {
    /// Stops every checker and waits for them (each sleeps in short slices, so this is prompt).
    pub fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads {
            let _ = t.join();
        }
    }
}

/// Translates `[service.health]` into the checkers' configuration.
fn checker_config(h: &HealthCheck) -> HealthConfig {
    let http = || HttpCheck {
        path: h.path.clone(),
        host: h.host.clone(),
        expect: h.expect.clone(),
        sni: h.sni.clone(),
        verify: h.verify.clone(),
    };
    let check = match h.kind {
        CheckType::Tcp => CheckKind::Tcp,
        CheckType::Http => CheckKind::Http(http()),
        CheckType::Https => CheckKind::Https(http()),
    };
    HealthConfig {
        check,
        interval: h.interval,
        timeout: h.timeout,
        rise: h.rise,
        fall: h.fall,
    }
}

/// Starts the checkers of every service that has `[service.health]`. A service whose checkers
/// cannot start is logged and left unchecked (its servers stay up), never fatal.
pub fn start(services: &[Arc<SharedService>]) -> HealthCheckers {
    let stop = Arc::new(AtomicBool::new(false));
    let mut threads = Vec::new();
    for shared in services {
        if let Some(map) = shared.balance.persistence.clone() {
            let stop = stop.clone();
            let name = shared.config.name.clone();
            let reclaimer = std::thread::Builder::new().name("ringmaster-persist".into()).spawn(move || {
                let mut waited = Duration::ZERO;
                while !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(MAGLEV_WATCH);
                    waited += MAGLEV_WATCH;
                    if waited >= PERSISTENCE_RECLAIM {
                        waited = Duration::ZERO;
                        let freed = map.reclaim(crate::balance::select::now_secs());
                        if freed > 0 {
                            tracing::debug!(service = %name, freed, "expired persistence entries reclaimed");
                        }
                    }
                }
            });
            match reclaimer {
                Ok(t) => threads.push(t),
                Err(e) => {
                    tracing::warn!(service = %shared.config.name, error = %e, "cannot start the persistence reclaimer; inserts still reuse expired entries")
                }
            }
        }
        let service = &shared.config;
        let Some(health) = &service.health else {
            continue;
        };
        let servers: Vec<_> = service
            .servers
            .iter()
            .map(|s| s.address)
            .zip(shared.balance.servers.iter().cloned())
            .collect();
        match spawn_checkers(
            &service.name,
            &servers,
            &checker_config(health),
            certificate_callback(shared, health),
            stop.clone(),
        ) {
            Ok(mut started) => threads.append(&mut started),
            Err(e) => {
                tracing::error!(service = %service.name, error = %e, "health checks not started; its servers stay up")
            }
        }
        if shared.balance.maglev.is_some() {
            let shared = shared.clone();
            let stop = stop.clone();
            let watcher = std::thread::Builder::new()
                .name("ringmaster-maglev".into())
                .spawn(move || {
                    let mut seen: Vec<bool> = shared
                        .balance
                        .servers
                        .iter()
                        .map(|s| s.is_usable())
                        .collect();
                    while !stop.load(Ordering::Relaxed) {
                        std::thread::sleep(MAGLEV_WATCH);
                        let now: Vec<bool> = shared
                            .balance
                            .servers
                            .iter()
                            .map(|s| s.is_usable())
                            .collect();
                        if now != seen {
                            shared.balance.rebuild_maglev();
                            seen = now;
                        }
                    }
                });
            match watcher {
                Ok(t) => threads.push(t),
                Err(e) => {
                    tracing::error!(service = %service.name, error = %e, "cannot start the Maglev rebuilder; down servers are skipped by fallback")
                }
            }
        }
    }
    HealthCheckers { stop, threads }
}

/// For a re-encrypt service with Extended Protection and an `https` check: every checked
/// certificate goes to the EP monitor, compared with the certificate a client asking for the
/// check's SNI gets (a certificate renewed on one server is caught by the next check).
fn certificate_callback(
    shared: &Arc<SharedService>,
    health: &HealthCheck,
) -> Option<CertificateCallback> {
    if health.kind != CheckType::Https {
        return None;
    }
    let (ep, resolver) = (shared.ep.clone()?, shared.resolver.clone()?);
    let sni = health
        .sni
        .as_ref()
        .map(|n| n.to_str().to_ascii_lowercase())
        .or_else(|| health.host.clone())
        .or_else(|| {
            shared
                .config
                .backend_tls
                .as_ref()
                .and_then(|b| b.sni.as_ref())
                .map(|n| n.to_str().to_ascii_lowercase())
        });
    let front = resolver.select(sni.as_deref());
    Some(Arc::new(move |index: usize, der: &[u8]| {
        ep.observe(index, der, &front);
    }))
}
