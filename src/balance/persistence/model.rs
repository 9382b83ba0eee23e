//! Loom models of the persistence map: every interleaving (within a preemption bound) of a few
//! threads inserting, updating, evicting, removing, reclaiming and looking up, on a map of one
//! two-slot bucket ([`BUCKET_SLOTS`] is 2 under loom), so that every client contends for the same
//! slots. Each model asserts that a lookup returns only a server stored for that very client (no
//! torn or foreign value), that no client is ever in two slots, and that once the threads are
//! joined no insert is lost.
//!
//! Run with a rustc wrapper that gives `--cfg loom` to ringmaster and the crates it builds on,
//! but not to the runtime crates that have loom code of their own and do not build under it
//! (tokio, compio and its `event-listener`): `RUSTC_WRAPPER=/path/to/it
//! CARGO_TARGET_DIR=target/loom-wrap cargo test --release --lib balance::persistence` (no
//! `RUSTFLAGS`; cargo asks the wrapper for the target's cfg too, so `cfg(loom)` dev-dependencies
//! are included). The wrapper:
//!
//! ```sh
//! #!/bin/sh
//! rustc="$1"; shift
//! for a in "$@"; do
//!   if [ "$prev" = "--crate-name" ]; then
//!     case "$a" in tokio|event_listener|concurrent_queue|synchrony|compio*) exec "$rustc" "$@" ;; esac
//!   fi
//!   prev="$a"
//! done
//! exec "$rustc" "$@" --cfg loom
//! ```
//!
//! If one of these fails, loom prints the interleaving that breaks the guarantee. Each of these
//! breakages was tried and is caught: trusting the key without the second state load (a lookup
//! returns the newcomer's server for the evicted client), storing and loading the key words
//! relaxed (same), skipping the bucket's claim counter (a client in two slots), and ignoring a
//! `BUSY` slot with the client's fingerprint (same).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use loom::sync::Arc;
use loom::thread;

use super::*;

/// Bound on preemptions per execution: 3 keeps the six models to about 20 s (release build, 2
/// cores); `LOOM_MAX_PREEMPTIONS=4` explores about six times as many executions (2.0 million)
/// and passes too, in about 2.5 minutes.
const PREEMPTIONS: usize = 3;

/// Runs `f` under every interleaving loom explores, and prints how many there were (with
/// `--nocapture`), so that a model that stops exploring shows up as a drop in that number.
fn model(f: impl Fn() + Sync + Send + 'static) {
    let runs = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = runs.clone();
    let mut builder = loom::model::Builder::new();
    // `LOOM_MAX_PREEMPTIONS` (read by `Builder::new`) overrides the default bound.
    builder.preemption_bound = builder.preemption_bound.or(Some(PREEMPTIONS));
    builder.check(move || {
        counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        f();
    });
    let name = std::thread::current()
        .name()
        .map(str::to_owned)
        .unwrap_or_default();
    println!(
        "{name}: {} executions",
        runs.load(std::sync::atomic::Ordering::Relaxed)
    );
}

fn a() -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1))
}

fn b() -> IpAddr {
    IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1))
}

fn c() -> IpAddr {
    // Same low 64 bits as b(): only the high word tells them apart.
    IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 1, 0, 0, 0, 1))
}

/// A map of one bucket: every client shares its slots.
fn map(timeout: u32) -> Arc<PersistenceMap> {
    let map = PersistenceMap::with_shards(BUCKET_SLOTS, timeout, 1);
    assert_eq!(map.capacity(), BUCKET_SLOTS);
    Arc::new(map)
}

fn assert_single_slots(map: &PersistenceMap) {
    for ip in [a(), b(), c()] {
        assert!(map.slots_holding(ip) <= 1, "{ip} is in two slots");
    }
}

/// Two threads store the same new client at once while a third looks it up: the lookup sees
/// nothing or one of the two servers, and afterwards exactly one of them is stored, in one slot.
#[test]
fn same_client_from_two_threads() {
    model(|| {
        let m = map(100);
        let (m1, m2) = (m.clone(), m.clone());
        let t1 = thread::spawn(move || m1.insert(a(), 1, 0));
        let t2 = thread::spawn(move || m2.insert(a(), 2, 0));
        let seen = m.get(a(), 0);
        assert!(
            matches!(seen, None | Some(1) | Some(2)),
            "lookup saw {seen:?}"
        );
        let (r1, r2) = (t1.join().unwrap(), t2.join().unwrap());
        let now = m.get(a(), 0);
        match (r1, r2) {
            (Insert::Contended, Insert::Contended) => panic!("both inserts gave up"),
            (Insert::Contended, _) => assert_eq!(now, Some(2)),
            (_, Insert::Contended) => assert_eq!(now, Some(1)),
            _ => assert!(matches!(now, Some(1) | Some(2)), "lost insert: {now:?}"),
        }
        assert_eq!(m.evictions(), 0);
        assert_single_slots(&m);
    });
}

/// Two threads store the same new client while a third frees the slot ahead of the free one: the
/// two inserts see different first free slots, and only the bucket's claim counter stops them
/// from storing the client twice.
#[test]
fn same_client_while_a_slot_frees() {
    model(|| {
        let m = map(100);
        m.insert(b(), 9, 0);
        let (m1, m2, m3) = (m.clone(), m.clone(), m.clone());
        let t1 = thread::spawn(move || m1.insert(a(), 1, 0));
        let t2 = thread::spawn(move || m2.insert(a(), 2, 0));
        let t3 = thread::spawn(move || m3.remove(b()));
        let (r1, r2) = (t1.join().unwrap(), t2.join().unwrap());
        assert!(t3.join().unwrap());
        let now = m.get(a(), 0);
        match (r1, r2) {
            (Insert::Contended, Insert::Contended) => panic!("both inserts gave up"),
            (Insert::Contended, _) => assert_eq!(now, Some(2)),
            (_, Insert::Contended) => assert_eq!(now, Some(1)),
            _ => assert!(matches!(now, Some(1) | Some(2)), "lost insert: {now:?}"),
        }
        assert_eq!(m.get(b(), 0), None);
        assert_single_slots(&m);
    });
}

/// Two threads store different clients, one of them twice (an update), while a third looks both
/// up: no lookup returns the other client's server, and both clients are stored at the end.
#[test]
fn different_clients_and_an_update() {
    model(|| {
        let m = map(100);
        let (m1, m2) = (m.clone(), m.clone());
        let t1 = thread::spawn(move || {
            m1.insert(b(), 1, 0);
            m1.insert(b(), 3, 0)
        });
        let t2 = thread::spawn(move || m2.insert(c(), 2, 0));
        let (sb, sc) = (m.get(b(), 0), m.get(c(), 0));
        assert!(matches!(sb, None | Some(1) | Some(3)), "b saw {sb:?}");
        assert!(matches!(sc, None | Some(2)), "c saw {sc:?}");
        t1.join().unwrap();
        t2.join().unwrap();
        assert_eq!(m.get(b(), 0), Some(3), "lost update of b");
        assert_eq!(m.get(c(), 0), Some(2), "lost insert of c");
        assert_eq!(m.evictions(), 0, "two clients fit in two slots");
        assert_single_slots(&m);
    });
}

/// A full bucket: one thread stores a third client, evicting the entry closest to expiry (a),
/// while another looks up the survivor (b) and the main thread reads the victim. The reader of
/// the victim must never get the newcomer's server though the slot's key changes under it.
#[test]
fn eviction_under_a_reader() {
    model(|| {
        let m = map(100);
        assert_eq!(m.insert(a(), 1, 0), Insert::New);
        assert_eq!(m.insert(b(), 2, 1), Insert::New);
        let (m1, m2) = (m.clone(), m.clone());
        let t1 = thread::spawn(move || m1.insert(c(), 3, 2));
        let t2 = thread::spawn(move || m2.get(b(), 2));
        // Read with the clock of a's insert, so that this lookup does not refresh a (which would
        // make b the entry closest to expiry).
        let sa = m.get(a(), 0);
        assert!(matches!(sa, None | Some(1)), "a saw {sa:?}");
        let sc = m.get(c(), 0);
        assert!(matches!(sc, None | Some(3)), "c saw {sc:?}");
        assert_eq!(t1.join().unwrap(), Insert::Evicted);
        assert_eq!(t2.join().unwrap(), Some(2), "the survivor was disturbed");
        assert_eq!(m.get(a(), 2), None);
        assert_eq!(m.get(b(), 2), Some(2));
        assert_eq!(m.get(c(), 2), Some(3));
        assert_eq!(m.evictions(), 1);
        assert_single_slots(&m);
    });
}

/// Expiry: a reclaim sweep, an insert that may reuse the expired slot, and a lookup (with an
/// older clock) that may refresh the entry before it is freed, all at once.
#[test]
fn reclaim_insert_and_refresh() {
    model(|| {
        let m = map(10);
        m.insert(a(), 1, 0); // expires at 10
        let (m1, m2) = (m.clone(), m.clone());
        let t1 = thread::spawn(move || m1.reclaim(10));
        let t2 = thread::spawn(move || m2.insert(b(), 2, 10));
        let sa = m.get(a(), 5);
        assert!(matches!(sa, None | Some(1)), "a saw {sa:?}");
        let freed = t1.join().unwrap();
        assert_eq!(
            t2.join().unwrap(),
            Insert::New,
            "an expired entry is no eviction"
        );
        assert_eq!(m.get(b(), 10), Some(2), "lost insert of b");
        let now = m.get(a(), 10);
        assert!(matches!(now, None | Some(1)), "a is {now:?}");
        if sa.is_none() {
            assert_eq!(now, None, "a came back");
        }
        assert!(freed <= 1);
        assert_eq!(m.evictions(), 0);
        assert_single_slots(&m);
    });
}

/// Remove against an update of the same client: whichever goes first, the outcome is one of the
/// two orders, never the old server.
#[test]
fn remove_against_update() {
    model(|| {
        let m = map(100);
        m.insert(a(), 1, 0);
        let (m1, m2) = (m.clone(), m.clone());
        let t1 = thread::spawn(move || m1.remove(a()));
        let t2 = thread::spawn(move || m2.insert(a(), 2, 0));
        let seen = m.get(a(), 0);
        assert!(
            matches!(seen, None | Some(1) | Some(2)),
            "lookup saw {seen:?}"
        );
        assert!(t1.join().unwrap(), "a was there to remove");
        let r2 = t2.join().unwrap();
        match m.get(a(), 0) {
            None => assert_eq!(r2, Insert::Updated, "update, then remove"),
            Some(2) => assert_eq!(r2, Insert::New, "remove, then insert"),
            other => panic!("a is {other:?}"),
        }
        assert_single_slots(&m);
    });
}
