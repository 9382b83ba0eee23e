//! TLS 1.3 handshakes in memory, with ringmaster's own configurations: handshakes per second
//! of one core, for each side separately.
//!
//! Run with `cargo bench --bench tls_handshake`. The server is ringmaster's client-facing config
//! (`tls::server::service_config` + `for_worker`: shared ticketer, one ticket per handshake), the
//! client ringmaster's server-facing one (`tls::client::for_server`, `verify = "none"`, which
//! still checks the handshake signature). Records are moved between a `ClientConnection` and a
//! `ServerConnection` by hand (`write_tls` / `read_tls` / `process_new_packets`), no socket.
//!
//! - `full/<key>/server` and `full/<key>/client`: a full handshake with an RSA-2048 (made by
//!   `openssl`, skipped without it) or ECDSA P-256 (rcgen) server key. Only the time spent in the
//!   named side's calls (creating its connection included) is counted, so `server` is the cost of
//!   a client-facing handshake to ringmaster and `client` that of a backend handshake. Key
//!   exchange is rustls' default, X25519MLKEM768 (post-quantum hybrid) when both ends are rustls;
//! - `full/<key>/server-x25519`: the server side when the client offers X25519 only, as OpenSSL
//!   3.0 clients (h2load, wrk, curl) and the HAProxy comparison do;
//! - `full/<key>/pair`: both sides of the same handshakes, the reference for `tlsstream/<key>`;
//! - `resumed/server`, `resumed/client`: TLS 1.3 resumption with the ticket of the previous
//!   handshake (PSK + ECDHE); the server key plays no part;
//! - `tlsstream/<key>`: a full handshake between two ringmaster `TlsStream`s over an in-memory
//!   pipe, both sides counted: the engine's overhead is this minus `full/<key>/pair`.
//!
//! Times are CPU time of this thread (`CLOCK_THREAD_CPUTIME_ID`), so preemption by other work on
//! a shared machine is not counted (a busy neighbour still slows the caches, and a VM's host
//! may still take the CPU unseen: compare only figures of one run). Each reading is a system call
//! (about 0.3 µs here, some thirty per handshake split over both sides: 2-4 % of a handshake).
//! Throughput is in handshakes (elements). Record the machine (CPU model, `nproc`) with the
//! figures.

#[path = "support/certs.rs"]
mod certs;

use std::sync::Arc;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use rustls::client::Resumption;
use rustls::crypto::{aws_lc_rs, CryptoProvider};
use rustls::{
    ClientConfig, ClientConnection, Connection, ConnectionCommon, ServerConfig, ServerConnection,
};
use rustls_pki_types::ServerName;

use ringmaster::net::transport::memory_pipe;
use ringmaster::tls::certs::TlsCert;
use ringmaster::tls::client::{accept_any, for_server, Verify};
use ringmaster::tls::server::{for_worker, service_config, shared_ticketer, SniResolver};
use ringmaster::tls::stream::TlsStream;

use certs::{ecdsa_cert, rsa_cert, NAME};

/// Bytes each in-memory pipe direction holds: a whole handshake flight fits.
const PIPE_CAPACITY: usize = 64 * 1024;

/// Which side's time a benchmark counts.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Side {
    Client,
    Server,
    /// Client and server together.
    Both,
}

/// Time spent in each side's calls during one or more handshakes.
#[derive(Default)]
struct Spent {
    client: Duration,
    server: Duration,
}

impl Spent {
    fn of(&self, side: Side) -> Duration {
        match side {
            Side::Client => self.client,
            Side::Server => self.server,
            Side::Both => self.server + self.client,
        }
    }
}

/// Runs `f`, adding its duration to `into`.
fn time<T>(into: &mut Duration, f: impl FnOnce() -> T) -> T {
    let start = cpu_now();
    let out = f();
    *into += cpu_now() - start;
    out
}

/// CPU time this thread has used so far. Samples are timed with it rather than the wall clock,
/// so a benchmark on a busy machine is not charged for the time it was preempted; it costs one
/// system call (well under a microsecond) per reading.
fn cpu_now() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime only writes the timespec it is given.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_THREAD_CPUTIME_ID)");
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// Moves every queued record of `from` into `to` and processes it.
fn transfer<A, B>(
    from: &mut ConnectionCommon<A>,
    to: &mut ConnectionCommon<B>,
    buf: &mut Vec<u8>,
    from_time: &mut Duration,
    to_time: &mut Duration,
) -> bool {
    buf.clear();
    time(from_time, || {
        while from.wants_write() {
            from.write_tls(buf).expect("write_tls");
        }
    });
    if buf.is_empty() {
        return false;
    }
    time(to_time, || {
        let mut rest = &buf[..];
        while !rest.is_empty() {
            to.read_tls(&mut rest).expect("read_tls");
            to.process_new_packets().expect("handshake failed");
        }
    });
    true
}

/// One complete handshake, the server's session ticket included (so the client can resume
/// next time). Returns the connections, handshaken.
fn handshake(
    client_config: &Arc<ClientConfig>,
    server_config: &Arc<ServerConfig>,
    buf: &mut Vec<u8>,
    spent: &mut Spent,
) -> (ClientConnection, ServerConnection) {
    let name = ServerName::try_from(NAME).expect("server name");
    let mut client = time(&mut spent.client, || {
        ClientConnection::new(client_config.clone(), name).expect("client connection")
    });
    let mut server = time(&mut spent.server, || {
        ServerConnection::new(server_config.clone()).expect("server connection")
    });
    loop {
        let up = transfer(
            &mut *client,
            &mut *server,
            buf,
            &mut spent.client,
            &mut spent.server,
        );
        let down = transfer(
            &mut *server,
            &mut *client,
            buf,
            &mut spent.server,
            &mut spent.client,
        );
        if !up && !down {
            break;
        }
    }
    assert!(!client.is_handshaking() && !server.is_handshaking());
    (client, server)
}

/// Client configurations derived from ringmaster's backend one.
fn client_config(resume: bool, provider: Option<Arc<CryptoProvider>>) -> Arc<ClientConfig> {
    let mut config = match provider {
        None => (*for_server(&Verify::None).expect("client config")).clone(),
        Some(provider) => ClientConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(ringmaster::tls::PROTOCOL_VERSIONS)
            .expect("versions")
            .dangerous()
            .with_custom_certificate_verifier(accept_any(&provider))
            .with_no_client_auth(),
    };
    if !resume {
        config.resumption = Resumption::disabled();
    }
    Arc::new(config)
}

fn server_config(cert: &TlsCert) -> Arc<ServerConfig> {
    let resolver = Arc::new(SniResolver::new(std::slice::from_ref(cert)).expect("resolver"));
    for_worker(&service_config(resolver, shared_ticketer().expect("ticketer")).expect("config"))
}

/// Prints once what a case negotiates, so the figures can be read correctly.
fn describe(case: &str, client: &Arc<ClientConfig>, server: &Arc<ServerConfig>) {
    let (c, _) = handshake(client, server, &mut Vec::new(), &mut Spent::default());
    eprintln!(
        "{case}: {:?}, {:?}, {:?}",
        c.protocol_version().expect("version"),
        c.negotiated_cipher_suite().expect("suite").suite(),
        c.negotiated_key_exchange_group().expect("group").name(),
    );
}

fn benches(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut keys = vec![("ecdsa-p256", ecdsa_cert(dir.path()))];
    if let Some(rsa) = rsa_cert(dir.path()) {
        keys.push(("rsa-2048", rsa));
    }
    let full = client_config(false, None);
    let x25519_only = client_config(
        false,
        Some(Arc::new(CryptoProvider {
            kx_groups: vec![aws_lc_rs::kx_group::X25519],
            ..aws_lc_rs::default_provider()
        })),
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");

    let mut group = c.benchmark_group("tls_handshake");
    group.throughput(Throughput::Elements(1));
    for (key, cert) in &keys {
        let server = server_config(cert);
        describe(&format!("full/{key}"), &full, &server);
        describe(&format!("full/{key}/server-x25519"), &x25519_only, &server);
        for (id, client, side) in [
            ("server", &full, Side::Server),
            ("client", &full, Side::Client),
            ("server-x25519", &x25519_only, Side::Server),
            ("pair", &full, Side::Both),
        ] {
            group.bench_function(format!("full/{key}/{id}"), |b| {
                let mut buf = Vec::new();
                b.iter_custom(|iters| {
                    let mut spent = Spent::default();
                    for _ in 0..iters {
                        handshake(client, &server, &mut buf, &mut spent);
                    }
                    spent.of(side)
                })
            });
        }
    }

    let (_, cert) = &keys[0];
    let server = server_config(cert);
    let resuming = client_config(true, None);
    // The first handshake is full and leaves a ticket; each resumed one leaves the next.
    handshake(&resuming, &server, &mut Vec::new(), &mut Spent::default());
    describe("resumed", &resuming, &server);
    for (id, side) in [("server", Side::Server), ("client", Side::Client)] {
        group.bench_function(format!("resumed/{id}"), |b| {
            let mut buf = Vec::new();
            b.iter_custom(|iters| {
                let mut spent = Spent::default();
                for _ in 0..iters {
                    let (client, _) = handshake(&resuming, &server, &mut buf, &mut spent);
                    assert_eq!(
                        client.handshake_kind(),
                        Some(rustls::HandshakeKind::Resumed)
                    );
                }
                spent.of(side)
            })
        });
    }

    for (key, cert) in &keys {
        let server = server_config(cert);
        group.bench_function(format!("tlsstream/{key}"), |b| {
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let start = cpu_now();
                    for _ in 0..iters {
                        let (a, b) = memory_pipe(PIPE_CAPACITY);
                        let name = ServerName::try_from(NAME).expect("server name");
                        let conn = ClientConnection::new(full.clone(), name).expect("client");
                        let client = TlsStream::new(a, Connection::Client(conn), None);
                        let conn = ServerConnection::new(server.clone()).expect("server");
                        let srv = TlsStream::new(b, Connection::Server(conn), None);
                        let (rc, rs) = tokio::join!(client.handshake(), srv.handshake());
                        rc.expect("client handshake");
                        rs.expect("server handshake");
                    }
                    cpu_now() - start
                })
            })
        });
    }
    group.finish();
}

criterion_group! {
    name = tls_handshake;
    // Few samples, few resamples and no plots: the statistics cost more CPU than the
    // measurements otherwise.
    config = Criterion::default()
        .sample_size(10)
        .nresamples(10_000)
        .without_plots()
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1));
    targets = benches
}
criterion_main!(tls_handshake);
