//! Stress test of the source-IP persistence map under real threads: no entry lost or torn.
//!
//! Workers each own a disjoint range of clients (half IPv4, half IPv6), which only they write
//! (insert, remove, read back), and all of them also write a set of shared clients, and read
//! each other's clients. Every server index encodes (client, writer, sequence), so a lookup can
//! tell whether what it got was ever stored for that client. Two set-ups:
//! - wide: eight workers, 8,320 clients over thousands of buckets, and a janitor that stores
//!   short-lived clients (already expired for the workers, so the workers' inserts reuse their
//!   slots) and sweeps them with `reclaim`;
//! - hot: four workers and ten clients in a map of one bucket, so that every operation contends
//!   with the others for the same slots (ten clients, plus at most one claim in flight per worker,
//!   fit in its 15 slots: nothing can be evicted).
//!
//! It proves: a worker always reads back exactly the last server it stored for its own clients;
//! any lookup returns only a value stored for that client (never torn, never another client's);
//! and after the threads join, every owned client holds its owner's last value and every shared
//! client a value stored for it. No worker's insert may evict (checked), so any missing entry is
//! a lost one.
//!
//! How it fails: a torn or foreign read panics in the worker with the client and the value; a lost
//! entry panics in the final sweep. Loops are bounded by count and by [`DEADLINE`].

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use ringmaster::balance::persistence::{Insert, PersistenceMap, BUCKET_SLOTS};

/// Operations per worker.
const OPS: u32 = 200_000;
/// Most workers: 3 bits of the encoded value.
const MAX_WORKERS: u32 = 8;
/// Most clients owned by each worker: 10 bits of the encoded value.
const MAX_OWNED: u32 = 1024;
/// Most clients written by every worker: 7 bits of the encoded value.
const MAX_SHARED: u32 = 128;
/// Short-lived clients of the janitor: 10 bits of the encoded value.
const EPHEMERAL: u32 = 1024;
/// Capacity of the wide map: six times its working set, so that no bucket can overflow.
const WIDE_CAPACITY: usize = 1 << 16;
/// The workers' clock: far past the janitor's entries' expiry.
const NOW: u32 = 10_000;
/// Entry timeout: the workers' entries never expire during the test.
const TIMEOUT: u32 = 3600;
/// Bound on the test's duration, whatever the machine.
const DEADLINE: Duration = Duration::from_secs(30);

// Value encodings (u16). Owned: 0 | worker (3) | index (10) | seq (2).
// Shared: 10 | index (7) | worker (3) | seq (4). Ephemeral: 11 | index (10) | seq (4).
fn owned_value(worker: u32, i: u32, seq: u32) -> u16 {
    ((worker << 12) | (i << 2) | (seq & 0x3)) as u16
}
fn is_owned_value(v: u16, worker: u32, i: u32) -> bool {
    u32::from(v) >> 2 == (worker << 10) | i
}
fn shared_value(s: u32, worker: u32, seq: u32) -> u16 {
    (0x8000 | (s << 7) | (worker << 4) | (seq & 0xf)) as u16
}
fn is_shared_value(v: u16, s: u32) -> bool {
    u32::from(v) >> 7 == (0x8000 >> 7) | s
}
fn ephemeral_value(e: u32, seq: u32) -> u16 {
    (0xc000 | (e << 4) | (seq & 0xf)) as u16
}
fn is_ephemeral_value(v: u16, e: u32) -> bool {
    u32::from(v) >> 4 == (0xc000 >> 4) | e
}

fn owned_ip(worker: u32, i: u32) -> IpAddr {
    if i % 2 == 0 {
        IpAddr::V4(Ipv4Addr::new(10, worker as u8, (i >> 8) as u8, i as u8))
    } else {
        IpAddr::V6(Ipv6Addr::new(
            0x2001,
            0xdb8,
            0,
            worker as u16,
            0,
            0,
            0,
            i as u16,
        ))
    }
}
fn shared_ip(s: u32) -> IpAddr {
    if s % 2 == 0 {
        IpAddr::V4(Ipv4Addr::new(192, 168, 0, s as u8))
    } else {
        // Same low 64 bits as owned_ip(0, s): only the high word differs.
        IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0xffff, 0, 0, 0, 0, s as u16))
    }
}
fn ephemeral_ip(e: u32) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(172, 16, (e >> 8) as u8, e as u8))
}

/// A small xorshift generator: deterministic per worker, no dependency.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 32) as u32
    }
}

/// What one worker did, and the last server it stored for each of its clients.
struct Report {
    ops: u32,
    evicted: u32,
    contended: u32,
    last: Vec<Option<u16>>,
    shared_written: Vec<bool>,
}

/// The shape of one run.
#[derive(Clone, Copy)]
struct Setup {
    workers: u32,
    owned: u32,
    shared: u32,
    /// Whether workers also remove shared clients, so that they are stored anew, by several
    /// workers at once, over and over (the race between first inserts of one client).
    remove_shared: bool,
}

fn worker(map: &PersistenceMap, setup: Setup, w: u32, start: Instant) -> Report {
    let Setup {
        workers,
        owned,
        shared,
        remove_shared,
    } = setup;
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ (u64::from(w + 1) << 32));
    let mut last = vec![None; owned as usize];
    let mut shared_written = vec![false; shared as usize];
    let (mut ops, mut evicted, mut contended) = (0, 0, 0);
    while ops < OPS && start.elapsed() < DEADLINE {
        let r = rng.next();
        let seq = ops;
        match r % 100 {
            0..=39 => {
                let i = rng.next() % owned;
                let v = owned_value(w, i, seq);
                let got = map.insert(owned_ip(w, i), v, NOW);
                let expect = if last[i as usize].is_some() {
                    Insert::Updated
                } else {
                    Insert::New
                };
                evicted += u32::from(got == Insert::Evicted);
                assert_eq!(got, expect, "worker {w} insert of its client {i}");
                last[i as usize] = Some(v);
            }
            40..=44 => {
                let i = rng.next() % owned;
                let removed = map.remove(owned_ip(w, i));
                assert_eq!(
                    removed,
                    last[i as usize].is_some(),
                    "worker {w} remove of its client {i}"
                );
                last[i as usize] = None;
            }
            45..=69 => {
                let i = rng.next() % owned;
                let got = map.get(owned_ip(w, i), NOW);
                assert_eq!(got, last[i as usize], "worker {w} read back its client {i}");
            }
            70..=79 => {
                let s = rng.next() % shared;
                match map.insert(shared_ip(s), shared_value(s, w, seq), NOW) {
                    Insert::Evicted => evicted += 1,
                    Insert::Contended => contended += 1,
                    Insert::New | Insert::Updated => {}
                }
                shared_written[s as usize] = true;
            }
            80..=84 if remove_shared => {
                let _ = map.remove(shared_ip(rng.next() % shared));
            }
            80..=89 => {
                let s = rng.next() % shared;
                if let Some(v) = map.get(shared_ip(s), NOW) {
                    assert!(is_shared_value(v, s), "shared client {s} returned {v:#06x}");
                }
            }
            _ => {
                let other = rng.next() % workers;
                let i = rng.next() % owned;
                if let Some(v) = map.get(owned_ip(other, i), NOW) {
                    assert!(
                        is_owned_value(v, other, i),
                        "client {i} of worker {other} returned {v:#06x}"
                    );
                }
            }
        }
        ops += 1;
    }
    Report {
        ops,
        evicted,
        contended,
        last,
        shared_written,
    }
}

/// Stores short-lived clients (expired at `NOW`) and sweeps them, until the workers are done.
fn janitor(map: &PersistenceMap, done: &AtomicBool) -> (u32, usize) {
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    let (mut ops, mut freed) = (0u32, 0usize);
    while !done.load(Ordering::Relaxed) {
        let e = rng.next() % EPHEMERAL;
        let _ = map.insert(ephemeral_ip(e), ephemeral_value(e, ops), 0);
        if let Some(v) = map.get(ephemeral_ip(rng.next() % EPHEMERAL), 0) {
            assert!(v >= 0xc000, "an ephemeral client returned {v:#06x}");
        }
        if let Some(v) = map.get(ephemeral_ip(e), 0) {
            assert!(
                is_ephemeral_value(v, e),
                "ephemeral client {e} returned {v:#06x}"
            );
        }
        if ops % 512 == 0 {
            freed += map.reclaim(NOW);
        }
        ops += 1;
    }
    (ops, freed)
}

/// Runs `setup` on `map` (with the janitor if asked), then checks that every entry is there.
fn run(map: &PersistenceMap, setup: Setup, with_janitor: bool) {
    assert!(setup.workers <= MAX_WORKERS && setup.owned <= MAX_OWNED && setup.shared <= MAX_SHARED);
    let start = Instant::now();
    let done = AtomicBool::new(false);
    let (reports, (janitor_ops, freed)) = thread::scope(|scope| {
        let workers: Vec<_> = (0..setup.workers)
            .map(|w| scope.spawn(move || worker(map, setup, w, start)))
            .collect();
        let janitor = with_janitor.then(|| scope.spawn(|| janitor(map, &done)));
        let reports: Vec<Report> = workers
            .into_iter()
            .map(|h| h.join().expect("worker panicked"))
            .collect();
        done.store(true, Ordering::Relaxed);
        (
            reports,
            janitor.map_or((0, 0), |j| j.join().expect("janitor panicked")),
        )
    });
    let elapsed = start.elapsed();
    let live = map.len(NOW);

    // The janitor may evict its own short-lived clients (they expire first); a worker, never.
    let evicted: u32 = reports.iter().map(|r| r.evicted).sum();
    assert_eq!(
        evicted, 0,
        "a worker's insert evicted: the set-up must leave room for every client"
    );
    for (w, report) in reports.iter().enumerate() {
        for (i, last) in report.last.iter().enumerate() {
            let ip = owned_ip(w as u32, i as u32);
            assert_eq!(
                map.get(ip, NOW),
                *last,
                "client {i} of worker {w} after the join"
            );
            assert_eq!(map.remove(ip), last.is_some());
            assert!(!map.remove(ip), "client {i} of worker {w} was stored twice");
        }
    }
    for s in 0..setup.shared {
        let written = reports.iter().any(|r| r.shared_written[s as usize]);
        let ip = shared_ip(s);
        match map.get(ip, NOW) {
            Some(v) => assert!(is_shared_value(v, s), "shared client {s} holds {v:#06x}"),
            // With removes, whichever came last wins; without, a stored client must be there.
            None => assert!(
                setup.remove_shared || !written,
                "shared client {s} was lost"
            ),
        }
        map.remove(ip);
        assert!(!map.remove(ip), "shared client {s} was stored twice");
    }
    let ops: u32 = reports.iter().map(|r| r.ops).sum();
    let contended: u32 = reports.iter().map(|r| r.contended).sum();
    println!(
        "{} workers: {ops} operations ({contended} contended inserts), janitor {janitor_ops} \
         (freed {freed} expired entries), in {elapsed:.2?}; {} live entries",
        setup.workers, live,
    );
    assert!(
        ops >= setup.workers * OPS / 10,
        "only {ops} operations before the deadline"
    );
}

#[test]
fn wide_no_entry_lost_or_torn() {
    let map = PersistenceMap::with_shards(WIDE_CAPACITY, TIMEOUT, 8);
    run(
        &map,
        Setup {
            workers: 8,
            owned: 1024,
            shared: 128,
            remove_shared: false,
        },
        true,
    );
}

#[test]
fn hot_bucket_no_entry_lost_or_torn() {
    let setup = Setup {
        workers: 4,
        owned: 2,
        shared: 2,
        remove_shared: true,
    };
    let map = PersistenceMap::with_shards(BUCKET_SLOTS, TIMEOUT, 1);
    assert_eq!(map.capacity(), BUCKET_SLOTS, "one bucket");
    let clients = setup.workers * setup.owned + setup.shared;
    assert!(
        (clients + setup.workers) as usize <= BUCKET_SLOTS,
        "room for every client and claim"
    );
    run(&map, setup, false);
}
