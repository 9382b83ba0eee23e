//! The re-encrypt relay engine in memory: payload MB/s through ringmaster's TLS ends and relay,
//! with no socket and no io_uring.
//!
//! Run with `cargo bench --bench tls_relay`. The shape is re-encrypt's:
//!
//! ```text
//! client ──pipe── front ⇄ relay() ⇄ back ──pipe── server
//! (rustls         (TlsStream over    (TlsStream over     (rustls
//!  client)         ServerConnection)  ClientConnection)   server)
//! ```
//!
//! `front` uses ringmaster's client-facing config (`tls::server::service_config` +
//! `for_worker`), `back` its server-facing one (`tls::client::for_server`, `verify = "none"`);
//! the outer client and server are driven by [`TlsStream`] too and offer only the cipher suite
//! under test, so both legs use it. Every end runs on this one thread (a current-thread tokio
//! runtime as executor), over [`memory_pipe`]s of [`PIPE_CAPACITY`] bytes per direction.
//!
//! - `bulk_16k`: the server sends 16 KiB writes, the client reads them (a large GET's response);
//! - `pingpong_1k`: the client writes 1 KiB, the server answers 1 KiB once it has all of it
//!   (keep-alive requests); throughput counts both directions' payload, 2 KiB per iteration;
//! - `reencrypt/*` goes through the relay, `direct/*` is the same client and server over one
//!   pipe with nothing between them. Everything runs on one core, so the relay's own cost per
//!   byte — one TLS decrypt, one encrypt, the relay's copies, and the two pipe copies that stand
//!   in for its socket recv + send — is `t(reencrypt) − t(direct)`: ringmaster's MB/s per core
//!   is `1 / (1/reencrypt − 1/direct)` with both figures from the same run.
//!
//! Connections are set up (handshakes included) outside the timed part of each sample, which is
//! timed in CPU time of this thread (`CLOCK_THREAD_CPUTIME_ID`): what one core spends, not
//! counting time the bench was preempted by other work on a shared machine (a busy neighbour
//! still slows the caches, and a VM's host may still take the CPU unseen: compare only figures
//! of one run). The server key type (RSA-2048 made by `openssl` if available, else ECDSA P-256
//! from rcgen) only matters for the untimed handshakes. Record the machine (CPU model, `nproc`)
//! with the figures.

#[path = "support/certs.rs"]
mod certs;

use std::hint::black_box;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkGroup, Criterion, Throughput};
use rustls::crypto::{aws_lc_rs, CryptoProvider};
use rustls::{ClientConfig, ClientConnection, Connection, ServerConfig, ServerConnection};
use rustls_pki_types::ServerName;

use ringmaster::net::transport::{memory_pipe, MemoryEnd};
use ringmaster::net::Endpoint;
use ringmaster::proxy::registry::Registry;
use ringmaster::proxy::relay::relay;
use ringmaster::tls::certs::TlsCert;
use ringmaster::tls::client::{accept_any, for_server, Verify};
use ringmaster::tls::server::{for_worker, service_config, shared_ticketer, SniResolver};
use ringmaster::tls::stream::TlsStream;

use certs::{ecdsa_cert, rsa_cert, NAME};

/// Bytes each pipe direction holds before a writer waits: in the range of a loopback socket's
/// send buffer once autotuned, and several full TLS records, so ends are not woken per record.
const PIPE_CAPACITY: usize = 256 * 1024;
/// The bulk write size: one full TLS record of plaintext.
const BULK_WRITE: usize = 16 * 1024;
/// Request and response size of the ping-pong test.
const PING: usize = 1024;
/// Read buffer of the outer client in the bulk test: the relay's largest buffer
/// (`net::buffers::LARGE`). The ping-pong peers read into [`PING`]-byte buffers.
const READ_BUF: usize = 64 * 1024;

type End = TlsStream<MemoryEnd>;

/// The configurations of one case: the outer peers offer only `suite`.
struct Setup {
    name: &'static str,
    outer_client: Arc<ClientConfig>,
    front: Arc<ServerConfig>,
    back: Arc<ClientConfig>,
    outer_server: Arc<ServerConfig>,
}

/// The four TLS ends of a re-encrypt connection, handshaken.
struct Chain {
    client: End,
    front: End,
    back: End,
    server: End,
}

fn provider_with(suite: rustls::SupportedCipherSuite) -> Arc<CryptoProvider> {
    Arc::new(CryptoProvider {
        cipher_suites: vec![suite],
        ..aws_lc_rs::default_provider()
    })
}

fn setup(cert: &TlsCert, name: &'static str, suite: rustls::SupportedCipherSuite) -> Setup {
    let only = provider_with(suite);
    let outer_client = ClientConfig::builder_with_provider(only.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("client versions")
        .dangerous()
        .with_custom_certificate_verifier(accept_any(&only))
        .with_no_client_auth();
    let resolver = Arc::new(SniResolver::new(std::slice::from_ref(cert)).expect("resolver"));
    let front = for_worker(
        &service_config(resolver.clone(), shared_ticketer().expect("ticketer"))
            .expect("front config"),
    );
    let back = for_server(&Verify::None).expect("back config");
    let outer_server = ServerConfig::builder_with_provider(only)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("server versions")
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    Setup {
        name,
        outer_client: Arc::new(outer_client),
        front,
        back,
        outer_server: Arc::new(outer_server),
    }
}

fn client_end(io: MemoryEnd, config: &Arc<ClientConfig>) -> End {
    let name = ServerName::try_from(NAME).expect("server name");
    let conn = ClientConnection::new(config.clone(), name).expect("client connection");
    TlsStream::new(io, Connection::Client(conn), None)
}

fn server_end(io: MemoryEnd, config: &Arc<ServerConfig>) -> End {
    let conn = ServerConnection::new(config.clone()).expect("server connection");
    TlsStream::new(io, Connection::Server(conn), None)
}

async fn handshake_pair(a: &End, b: &End) {
    let (ra, rb) = tokio::join!(a.handshake(), b.handshake());
    ra.expect("handshake");
    rb.expect("handshake");
}

async fn connect(setup: &Setup) -> Chain {
    let (client_io, front_io) = memory_pipe(PIPE_CAPACITY);
    let (back_io, server_io) = memory_pipe(PIPE_CAPACITY);
    let chain = Chain {
        client: client_end(client_io, &setup.outer_client),
        front: server_end(front_io, &setup.front),
        back: client_end(back_io, &setup.back),
        server: server_end(server_io, &setup.outer_server),
    };
    tokio::join!(
        handshake_pair(&chain.client, &chain.front),
        handshake_pair(&chain.back, &chain.server),
    );
    chain
}

/// Writes all of `buf`, `times` times; returns it for the next use.
async fn send(to: &impl Endpoint, times: u64, mut buf: Vec<u8>) -> Vec<u8> {
    for _ in 0..times {
        let (res, b) = to.write_all(buf).await;
        res.expect("write");
        buf = b;
    }
    buf
}

/// Reads exactly `total` bytes (or panics at EOF), reusing `buf`.
async fn receive(from: &impl Endpoint, total: u64, mut buf: Vec<u8>) -> Vec<u8> {
    let mut got = 0;
    while got < total {
        let (res, b) = from.read(buf).await;
        buf = b;
        match res.expect("read") {
            0 => panic!("EOF after {got} of {total} bytes"),
            n => got += n as u64,
        }
    }
    black_box(&buf);
    buf
}

/// Reads until EOF, discarding.
async fn drain(from: &impl Endpoint) {
    let mut buf = Vec::with_capacity(PING);
    loop {
        let (res, b) = from.read(buf).await;
        buf = b;
        if res.expect("read at close") == 0 {
            return;
        }
    }
}

/// Closes both outer ends, so a relay between them returns.
async fn close(client: &End, server: &End) {
    tokio::join!(
        async {
            client.close_write().await.expect("client close");
            drain(client).await;
        },
        async {
            drain(server).await;
            server.close_write().await.expect("server close");
        },
    );
}

/// What one timed sample does between an outer client and server.
#[derive(Clone, Copy)]
enum Work {
    /// `iters` × [`BULK_WRITE`] bytes from the server to the client.
    Bulk,
    /// `iters` × ([`PING`] bytes up, [`PING`] bytes down), one at a time.
    PingPong,
}

async fn timed(work: Work, client: &End, server: &End, iters: u64) -> Duration {
    // Buffers are made before the clock starts and reused, as a proxy's peers would.
    match work {
        Work::Bulk => {
            let (data, into) = (vec![0x5a; BULK_WRITE], Vec::with_capacity(READ_BUF));
            let start = cpu_now();
            let total = iters * BULK_WRITE as u64;
            tokio::join!(send(server, iters, data), receive(client, total, into));
            cpu_now() - start
        }
        Work::PingPong => {
            let (mut request, mut response) = (vec![0x5a; PING], vec![0xa5; PING]);
            let (mut up, mut down) = (Vec::with_capacity(PING), Vec::with_capacity(PING));
            let start = cpu_now();
            for _ in 0..iters {
                request = send(client, 1, request).await;
                up = receive(server, PING as u64, up).await;
                response = send(server, 1, response).await;
                down = receive(client, PING as u64, down).await;
            }
            cpu_now() - start
        }
    }
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

/// One sample through the relay: a fresh connection, `iters` units of `work` timed, a clean close.
async fn through_relay(setup: &Setup, work: Work, iters: u64) -> Duration {
    let chain = connect(setup).await;
    let registry = Rc::new(Registry::new());
    // No descriptors: the sweeper never runs here, and a -1 is skipped by its shutdown.
    let guard = registry.register([-1, -1], Duration::from_secs(3600), None);
    let work = async {
        let elapsed = timed(work, &chain.client, &chain.server, iters).await;
        close(&chain.client, &chain.server).await;
        elapsed
    };
    let (outcome, elapsed) = tokio::join!(relay(&chain.front, &chain.back, &guard), work);
    assert!(outcome.error.is_none(), "relay failed: {:?}", outcome.error);
    elapsed
}

/// The same sample with the client and server connected directly: the baseline.
async fn direct(setup: &Setup, work: Work, iters: u64) -> Duration {
    let (client_io, server_io) = memory_pipe(PIPE_CAPACITY);
    let client = client_end(client_io, &setup.outer_client);
    let server = server_end(server_io, &setup.outer_server);
    handshake_pair(&client, &server).await;
    let elapsed = timed(work, &client, &server, iters).await;
    close(&client, &server).await;
    elapsed
}

/// Checks once that both legs negotiated the suite the case is named after.
fn check_suites(rt: &tokio::runtime::Runtime, setup: &Setup) {
    rt.block_on(async {
        let chain = connect(setup).await;
        for end in [&chain.client, &chain.front, &chain.back, &chain.server] {
            let suite = end
                .with_conn(|c| c.negotiated_cipher_suite())
                .expect("suite");
            let name = format!("{:?}", suite.suite());
            assert!(
                name.replace('_', "-").contains(setup.name),
                "{name} negotiated for {}",
                setup.name
            );
        }
    });
}

fn run_cases(
    group: &mut BenchmarkGroup<'_, criterion::measurement::WallTime>,
    rt: &tokio::runtime::Runtime,
    setups: &[Setup],
    work: Work,
) {
    for setup in setups {
        group.bench_function(format!("reencrypt/{}", setup.name), |b| {
            b.iter_custom(|iters| rt.block_on(through_relay(setup, work, iters)))
        });
        group.bench_function(format!("direct/{}", setup.name), |b| {
            b.iter_custom(|iters| rt.block_on(direct(setup, work, iters)))
        });
    }
}

fn benches(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temp dir");
    let cert = rsa_cert(dir.path()).unwrap_or_else(|| ecdsa_cert(dir.path()));
    let setups = [
        setup(
            &cert,
            "AES-256-GCM",
            aws_lc_rs::cipher_suite::TLS13_AES_256_GCM_SHA384,
        ),
        setup(
            &cert,
            "AES-128-GCM",
            aws_lc_rs::cipher_suite::TLS13_AES_128_GCM_SHA256,
        ),
    ];
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    for setup in &setups {
        check_suites(&rt, setup);
    }

    let mut group = c.benchmark_group("tls_relay_bulk_16k");
    group.throughput(Throughput::Bytes(BULK_WRITE as u64));
    run_cases(&mut group, &rt, &setups, Work::Bulk);
    group.finish();

    let mut group = c.benchmark_group("tls_relay_pingpong_1k");
    group.throughput(Throughput::Bytes(2 * PING as u64));
    run_cases(&mut group, &rt, &setups, Work::PingPong);
    group.finish();
}

criterion_group! {
    name = tls_relay;
    // Few samples, few resamples and no plots: the statistics cost more CPU than the
    // measurements otherwise.
    config = Criterion::default()
        .sample_size(10)
        .nresamples(10_000)
        .without_plots()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    targets = benches
}
criterion_main!(tls_relay);
