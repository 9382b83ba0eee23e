//! Persistence map micro-benchmarks: the lock-free [`PersistenceMap`] beside a
//! `Mutex<HashMap<IpAddr, (u16, u32)>>` doing the same work, in the same run.
//!
//! Run with `cargo bench --bench persistence`. Every new connection of a persistent service
//! looks its client up (and refreshes it), and stores a server for a client it has not seen:
//! the mix is [`GET_PERCENT`] % lookups, the rest inserts, over [`CLIENTS`] clients (nine in ten
//! IPv4, one in ten IPv6) in a map sized at twice that, as the module documentation advises.
//!
//! - `persistence_1_thread`: one worker, no contention: the cost of the operation itself;
//! - `persistence_2_threads`: two workers on the same clients (no kernel steering): the cost
//!   of sharing, for the lock-free map cache-line transfers, for the mutex the lock;
//! - `persistence_2_threads_steered`: each worker only sees the clients the kernel would steer
//!   to it (`shard_of(ip) % 2`), as with `steer = "client-ip"`.
//!
//! Throughput is in operations (one per worker per iteration). Record the machine (CPU model,
//! `nproc`) with the figures; compare only ratios measured in one run.

use std::collections::HashMap;
use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::{Barrier, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Bencher, Criterion, Throughput};
use ringmaster::balance::persistence::PersistenceMap;

/// Distinct clients: a busy site within one timeout; their entries (about 5 MB in the lock-free
/// map, 3.5 MB in the hash map) overflow the L2 cache, as a production table does.
const CLIENTS: u32 = 100_000;
/// Share of lookups in the mix; the rest are inserts (new clients, or a server change).
const GET_PERCENT: u32 = 90;
/// Length of the precomputed operation sequence each worker cycles through (a power of two).
const OPS_LEN: usize = 1 << 16;
/// Persistence timeout of the benchmarked maps.
const TIMEOUT: u32 = 3600;
/// The clock during the benchmark: constant, as a coarse clock is within one second.
const NOW: u32 = 1000;
/// Workers in the multi-thread cases: the cores of the machine these benches were written on.
const WORKERS: usize = 2;

/// One operation of the mix.
#[derive(Clone, Copy)]
enum Op {
    Get(IpAddr),
    Insert(IpAddr, u16),
}

/// The baseline: what a straightforward shared map would be.
type Locked = Mutex<HashMap<IpAddr, (u16, u32), ahash::RandomState>>;

fn client(i: u32) -> IpAddr {
    let scrambled = i.wrapping_mul(2_654_435_761);
    if i % 10 == 9 {
        IpAddr::V6(Ipv6Addr::from(
            (0x2001_0db8u128 << 96) | u128::from(scrambled),
        ))
    } else {
        IpAddr::V4(Ipv4Addr::from(0x0a00_0000u32.wrapping_add(scrambled)))
    }
}

/// A deterministic operation sequence over the clients that `keep` accepts.
fn ops(seed: u64, keep: impl Fn(IpAddr) -> bool) -> Vec<Op> {
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(OPS_LEN);
    while out.len() < OPS_LEN {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let ip = client((x >> 32) as u32 % CLIENTS);
        if !keep(ip) {
            continue;
        }
        out.push(if (x as u32) % 100 < GET_PERCENT {
            Op::Get(ip)
        } else {
            Op::Insert(ip, (x >> 16) as u16 % 256)
        });
    }
    out
}

fn lock_free() -> PersistenceMap {
    let map = PersistenceMap::with_shards(2 * CLIENTS as usize, TIMEOUT, WORKERS);
    for i in 0..CLIENTS {
        let _ = map.insert(client(i), (i % 256) as u16, NOW);
    }
    map
}

fn locked() -> Locked {
    let mut map =
        HashMap::with_capacity_and_hasher(2 * CLIENTS as usize, ahash::RandomState::new());
    for i in 0..CLIENTS {
        map.insert(client(i), ((i % 256) as u16, NOW + TIMEOUT));
    }
    Mutex::new(map)
}

fn run_lock_free(map: &PersistenceMap, op: Op) {
    match op {
        Op::Get(ip) => {
            black_box(map.get(ip, NOW));
        }
        Op::Insert(ip, server) => {
            black_box(map.insert(ip, server, NOW));
        }
    }
}

fn run_locked(map: &Locked, op: Op) {
    // A poisoned lock only means another bench thread panicked: keep measuring.
    let mut map = map.lock().unwrap_or_else(|e| e.into_inner());
    match op {
        Op::Get(ip) => {
            let hit = match map.get_mut(&ip) {
                Some((server, expiry)) if *expiry > NOW => {
                    *expiry = NOW + TIMEOUT;
                    Some(*server)
                }
                _ => None,
            };
            black_box(hit);
        }
        Op::Insert(ip, server) => {
            black_box(map.insert(ip, (server, NOW + TIMEOUT)));
        }
    }
}

/// `iters` operations on each of `WORKERS` threads, each cycling through its own sequence;
/// timed from the moment all are ready to the last one's end.
fn parallel<M: Sync>(map: &M, seqs: &[Vec<Op>], iters: u64, run: fn(&M, Op)) -> Duration {
    let ready = Barrier::new(seqs.len() + 1);
    thread::scope(|scope| {
        let handles: Vec<_> = seqs
            .iter()
            .map(|seq| {
                let ready = &ready;
                scope.spawn(move || {
                    ready.wait();
                    for i in 0..iters as usize {
                        run(map, seq[i & (OPS_LEN - 1)]);
                    }
                })
            })
            .collect();
        ready.wait();
        let start = Instant::now();
        for h in handles {
            // A worker that panicked has already printed why; its time is still counted.
            let _ = h.join();
        }
        start.elapsed()
    })
}

fn one_thread(c: &mut Criterion) {
    let seq = ops(1, |_| true);
    let (free, mutex) = (lock_free(), locked());
    let mut group = c.benchmark_group("persistence_1_thread");
    group.throughput(Throughput::Elements(1));
    group.bench_function("lock_free", |b: &mut Bencher| {
        let mut i = 0;
        b.iter(|| {
            run_lock_free(&free, seq[i & (OPS_LEN - 1)]);
            i += 1;
        })
    });
    group.bench_function("mutex_hashmap", |b: &mut Bencher| {
        let mut i = 0;
        b.iter(|| {
            run_locked(&mutex, seq[i & (OPS_LEN - 1)]);
            i += 1;
        })
    });
    group.finish();
}

fn two_threads(c: &mut Criterion, name: &str, free: &PersistenceMap, seqs: &[Vec<Op>]) {
    let mutex = locked();
    let mut group = c.benchmark_group(name);
    group.throughput(Throughput::Elements(seqs.len() as u64));
    group.bench_function("lock_free", |b| {
        b.iter_custom(|iters| parallel(free, seqs, iters, run_lock_free))
    });
    group.bench_function("mutex_hashmap", |b| {
        b.iter_custom(|iters| parallel(&mutex, seqs, iters, run_locked))
    });
    group.finish();
}

fn shared_clients(c: &mut Criterion) {
    let seqs: Vec<Vec<Op>> = (0..WORKERS as u64).map(|w| ops(w + 1, |_| true)).collect();
    two_threads(c, "persistence_2_threads", &lock_free(), &seqs);
}

fn steered_clients(c: &mut Criterion) {
    // IPv6 clients are not steered by the kernel; their shard is the map's keyed hash, so the
    // sequences are split by the very map they run on.
    let free = lock_free();
    let seqs: Vec<Vec<Op>> = (0..WORKERS)
        .map(|w| ops(w as u64 + 1, |ip| free.shard_of(ip) % WORKERS == w))
        .collect();
    two_threads(c, "persistence_2_threads_steered", &free, &seqs);
}

criterion_group!(benches, one_thread, shared_clients, steered_clients);
criterion_main!(benches);
