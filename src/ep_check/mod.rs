//! `ringmaster ep-check`: the Extended Protection report. For every re-encrypt service with
//! `extended_protection = true`, each real server is handshaken once and the `tls-server-end-point`
//! hash (RFC 5929) of the certificate it presents is compared with the hash of the service's own
//! (default) certificate. Exchange binds NTLM/Kerberos to that hash: any server whose hash differs
//! fails every Extended Protection login that the balancer sends to it.
//!
//! [`probe()`] is one blocking handshake with one server (std sockets, no runtime), cheap enough to
//! call from a plain thread at start-up; [`run`] probes every server of every checked service in
//! parallel and returns a [`Report`] whose [`Report::render`] is what the command prints.
//!
//! The server's certificate is captured *before* it is verified, so a certificate that the
//! service's `[service.backend_tls]` would refuse is still hashed and reported (as `untrusted`),
//! with the reason and what to change.
//!
//! This file owns the report's types and [`run`]; `probe` owns the handshake and the capturing
//! verifier; `report` owns the verdict and fix of each server and the printed text.

mod probe;
mod report;

use std::net::SocketAddr;
use std::path::PathBuf;

use crate::config::{Config, Mode, Service};
use crate::tls::channel_binding::{tls_server_end_point, EndPointHash};

pub use probe::{probe, ProbeResult, VerifyFailure, HANDSHAKE_TIMEOUT};

/// Servers probed at the same time by [`run`]: each probe is one thread and one socket, and a dead
/// server costs a whole `connect_timeout`, so a large pool is probed in waves of this many.
const MAX_PARALLEL_PROBES: usize = 32;

/// The outcome for one server.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Status {
    /// The server presents the service's certificate: Extended Protection works through it.
    Match,
    /// The server presents another certificate: Extended Protection logins through it fail.
    Mismatch,
    /// The service's backend verification refuses the server's certificate (the reason): the
    /// balancer cannot reach it at all.
    Untrusted(String),
    /// No certificate could be obtained (the reason).
    Unreachable(String),
}

/// One server of one checked service.
#[derive(Debug, Clone)]
pub struct ServerCheck {
    /// The service's name.
    pub service: String,
    /// The real server.
    pub server: SocketAddr,
    /// Hash of the service's default certificate (what clients see).
    pub front: EndPointHash,
    /// The file the service's certificate comes from.
    pub front_file: PathBuf,
    /// What the handshake showed, when a certificate was seen.
    pub probe: Option<ProbeResult>,
    /// The verdict.
    pub status: Status,
    /// What to do about it (empty for [`Status::Match`]).
    pub fix: String,
}

/// The whole `ep-check` result.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// The configuration file checked.
    pub config: PathBuf,
    /// One entry per server of each re-encrypt service with Extended Protection.
    pub checks: Vec<ServerCheck>,
    /// Services with Extended Protection that have nothing to compare (passthrough).
    pub passthrough: Vec<String>,
    /// Services with Extended Protection that cannot be checked or cannot work, with the reason
    /// and the fix (each makes [`Report::all_good`] false).
    pub problems: Vec<String>,
    /// Services without `extended_protection` (not checked).
    pub skipped: Vec<String>,
}

/// Checks every service of `config` that has `extended_protection = true`: each server of a
/// re-encrypt service is probed (in parallel) and compared with the service's certificate.
pub fn run(config: &Config) -> Report {
    let mut report = Report {
        config: config.path.clone(),
        ..Report::default()
    };
    let mut jobs: Vec<(&Service, usize, EndPointHash, PathBuf)> = Vec::new();
    for service in &config.services {
        if !service.extended_protection {
            report.skipped.push(service.name.clone());
            continue;
        }
        match service.mode {
            Mode::Passthrough => report.passthrough.push(service.name.clone()),
            Mode::Offload => report.problems.push(format!(
                "{}: offload ends TLS at the balancer, so Extended Protection cannot work; use mode = \"reencrypt\" or \"passthrough\"",
                service.name
            )),
            Mode::Reencrypt => {
                let Some(cert) = service.tls.as_ref().and_then(|tls| tls.certificates.first()) else {
                    report.problems.push(format!("{}: reencrypt service without a certificate; add certificate and key", service.name));
                    continue;
                };
                match tls_server_end_point(cert.end_entity().as_ref()) {
                    Ok(front) => {
                        for index in 0..service.servers.len() {
                            jobs.push((service, index, front.clone(), cert.certificate.clone()));
                        }
                    }
                    Err(e) => report.problems.push(format!(
                        "{}: the service's certificate {} cannot be hashed ({e}); replace it",
                        service.name,
                        cert.certificate.display()
                    )),
                }
            }
        }
    }
    for wave in jobs.chunks(MAX_PARALLEL_PROBES) {
        let probes: Vec<Result<ProbeResult, String>> = std::thread::scope(|scope| {
            let handles: Vec<_> = wave
                .iter()
                .map(|(service, index, _, _)| scope.spawn(move || probe(service, *index)))
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join()
                        .unwrap_or_else(|_| Err("the probe panicked".into()))
                })
                .collect()
        });
        for ((service, index, front, front_file), outcome) in wave.iter().zip(probes) {
            report.checks.push(report::judge(
                service,
                *index,
                front.clone(),
                front_file.clone(),
                outcome,
            ));
        }
    }
    report
}
