//! Unit tests of the persistence map, single-threaded: the contract of each operation, expiry,
//! refresh, keys, and what happens when a bucket or the whole table is full. The concurrent
//! guarantees are checked by the loom models (`model.rs`) and `tests/persistence_stress.rs`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::*;

/// Timeout used by most tests, in seconds.
const T: u32 = 60;

fn v4(n: u32) -> IpAddr {
    IpAddr::V4(Ipv4Addr::from(0x0a00_0000 | n))
}

fn v6(n: u128) -> IpAddr {
    IpAddr::V6(Ipv6Addr::from(
        0x2001_0db8_0000_0000_0000_0000_0000_0000 | n,
    ))
}

/// A map of exactly one bucket, so that every client competes for the same slots.
fn one_bucket(timeout: u32) -> PersistenceMap {
    let map = PersistenceMap::with_shards(BUCKET_SLOTS, timeout, 1);
    assert_eq!(map.capacity(), BUCKET_SLOTS);
    map
}

#[test]
fn get_after_insert() {
    let map = PersistenceMap::new(1000, T);
    assert_eq!(map.get(v4(1), 10), None);
    assert_eq!(map.insert(v4(1), 7, 10), Insert::New);
    assert_eq!(map.get(v4(1), 10), Some(7));
    assert_eq!(map.insert(v4(1), 7, 10), Insert::Updated, "the same again");
    assert_eq!(map.get(v4(2), 10), None);
    assert_eq!(map.len(10), 1);
    assert!(!map.is_empty(10));
    assert_eq!(map.slots_holding(v4(1)), 1);
}

#[test]
fn entry_expires_after_timeout() {
    let map = PersistenceMap::new(1000, T);
    map.insert(v4(1), 3, 100);
    map.insert(v4(2), 4, 100);
    // No lookup in between (a lookup would refresh): live until 100 + T, excluded.
    assert_eq!(map.get(v4(1), 100 + T - 1), Some(3));
    assert_eq!(map.get(v4(2), 100 + T), None);
    assert_eq!(
        map.len(100 + T),
        1,
        "v4(1) was refreshed at 159, v4(2) is expired"
    );
}

#[test]
fn lookup_refreshes_expiry() {
    let map = PersistenceMap::new(1000, 10);
    map.insert(v4(1), 1, 0);
    assert_eq!(map.get(v4(1), 9), Some(1)); // now live until 19
    assert_eq!(map.get(v4(1), 18), Some(1)); // until 28
    assert_eq!(map.get(v4(1), 27), Some(1)); // until 37
    assert_eq!(map.get(v4(1), 37), None, "idle for a whole timeout");
}

#[test]
fn insert_updates_server_and_expiry() {
    let map = PersistenceMap::new(1000, T);
    assert_eq!(map.insert(v4(1), 1, 0), Insert::New);
    assert_eq!(map.insert(v4(1), 2, 30), Insert::Updated);
    assert_eq!(
        map.get(v4(1), 30 + T - 1),
        Some(2),
        "expiry pushed back to 30 + T"
    );
    assert_eq!(map.slots_holding(v4(1)), 1);
    // Once expired, storing it again is a new entry, in the same slot.
    assert_eq!(map.insert(v4(1), 3, 1000), Insert::New);
    assert_eq!(map.get(v4(1), 1000), Some(3));
    assert_eq!(map.slots_holding(v4(1)), 1);
}

#[test]
fn ipv4_and_ipv6_keys() {
    let map = PersistenceMap::new(1000, T);
    let mapped: IpAddr = "::ffff:10.0.0.1".parse().unwrap();
    let compatible: IpAddr = "::10.0.0.1".parse().unwrap();
    assert_eq!(map.insert(v4(1), 1, 0), Insert::New);
    assert_eq!(
        map.insert(mapped, 2, 0),
        Insert::Updated,
        "::ffff:a.b.c.d is a.b.c.d"
    );
    assert_eq!(map.get(v4(1), 0), Some(2));
    assert_eq!(map.shard_of(mapped), map.shard_of(v4(1)));
    assert_eq!(
        map.insert(compatible, 3, 0),
        Insert::New,
        "::a.b.c.d is another address"
    );
    assert_eq!(map.insert(v6(1), 4, 0), Insert::New);
    assert_eq!(
        map.insert(v6(0x1_0000_0000_0000_0001), 5, 0),
        Insert::New,
        "same low 64 bits"
    );
    assert_eq!(
        map.insert(IpAddr::V6(Ipv6Addr::UNSPECIFIED), 6, 0),
        Insert::New
    );
    assert_eq!(
        map.insert(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 7, 0),
        Insert::New
    );
    assert_eq!(map.get(v4(1), 0), Some(2));
    assert_eq!(map.get(compatible, 0), Some(3));
    assert_eq!(map.get(v6(1), 0), Some(4));
    assert_eq!(map.get(v6(0x1_0000_0000_0000_0001), 0), Some(5));
    assert_eq!(map.get(IpAddr::V6(Ipv6Addr::UNSPECIFIED), 0), Some(6));
    assert_eq!(map.get(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0), Some(7));
    assert_eq!(map.len(0), 6);
}

#[test]
fn remove_forgets_a_client() {
    let map = PersistenceMap::new(1000, T);
    map.insert(v6(9), 1, 0);
    assert!(map.remove(v6(9)));
    assert_eq!(map.get(v6(9), 0), None);
    assert!(!map.remove(v6(9)));
    assert_eq!(map.insert(v6(9), 2, 0), Insert::New);
    assert_eq!(map.get(v6(9), 0), Some(2));
}

#[test]
fn full_bucket_evicts_the_entry_closest_to_expiry() {
    let map = one_bucket(1_000_000);
    let n = BUCKET_SLOTS as u32;
    for i in 0..n {
        assert_eq!(map.insert(v4(i), i as u16, i), Insert::New);
    }
    assert_eq!(map.evictions(), 0);
    // v4(0) is used again: now v4(1) is the least recently used.
    assert_eq!(map.get(v4(0), n), Some(0));
    assert_eq!(map.insert(v4(100), 100, n), Insert::Evicted);
    assert_eq!(map.evictions(), 1);
    assert_eq!(map.get(v4(1), n), None, "the entry closest to expiry went");
    assert_eq!(map.get(v4(0), n), Some(0));
    assert_eq!(map.get(v4(100), n), Some(100));
    // Beyond capacity: each new client evicts the oldest; the newest are all there.
    for i in 200..200 + 3 * n {
        assert_eq!(map.insert(v4(i), i as u16, i), Insert::Evicted);
    }
    assert_eq!(map.evictions(), 1 + 3 * u64::from(n));
    for i in 200 + 2 * n..200 + 3 * n {
        assert_eq!(map.get(v4(i), 300), Some(i as u16));
    }
    assert_eq!(map.len(300), BUCKET_SLOTS);
}

#[test]
fn full_table_keeps_the_newest_entries() {
    let map = PersistenceMap::with_shards(4096, 1_000_000, 4);
    let cap = map.capacity() as u32;
    // Four times the capacity: 60 clients per 15-slot bucket on average, so that every bucket
    // (placed by a random hash) fills up.
    let total = 4 * cap;
    for i in 0..total {
        let _ = map.insert(v4(i), (i % 500) as u16, i);
    }
    assert_eq!(
        map.len(total),
        map.capacity(),
        "every slot holds a live entry"
    );
    assert_eq!(
        map.evictions(),
        u64::from(total - cap),
        "one eviction per client beyond capacity"
    );
    // Each bucket keeps its most recent clients: the last tenth of a capacity of them (1.5 per
    // bucket on average) are all present.
    for i in total - cap / 10..total {
        assert_eq!(map.get(v4(i), total), Some((i % 500) as u16), "client {i}");
    }
}

#[test]
fn insert_reuses_expired_slots_without_eviction() {
    let map = one_bucket(10);
    for i in 0..BUCKET_SLOTS as u32 {
        map.insert(v4(i), 1, 0);
    }
    for i in 100..100 + BUCKET_SLOTS as u32 {
        assert_eq!(map.insert(v4(i), 2, 10), Insert::New);
    }
    assert_eq!(map.evictions(), 0);
    assert_eq!(map.len(10), BUCKET_SLOTS);
}

#[test]
fn reclaim_frees_expired_entries() {
    let map = PersistenceMap::new(10_000, 100);
    for i in 0..1000 {
        map.insert(v4(i), 1, 0);
    }
    for i in 1000u32..1500 {
        map.insert(v6(u128::from(i)), 2, 50);
    }
    assert_eq!(map.reclaim(99), 0);
    assert_eq!(map.reclaim(100), 1000);
    assert_eq!(map.reclaim(100), 0);
    assert_eq!(map.len(100), 500);
    assert_eq!(map.get(v4(5), 100), None);
    assert_eq!(map.get(v6(1200), 100), Some(2));
    assert_eq!(map.reclaim(u32::MAX), 500);
    assert!(map.is_empty(0));
}

#[test]
fn shard_of_is_the_steering_program() {
    let workers = 4;
    let map = PersistenceMap::with_shards(10_000, 100, 2 * workers);
    for n in [1u32, 2, 3, 0x7f00_0001, 0xc0a8_0101, u32::MAX] {
        let ip = Ipv4Addr::from(n);
        let steered = ((n.wrapping_mul(0x9E37_79B1) >> 16) % workers as u32) as usize;
        assert_eq!(map.shard_of(IpAddr::V4(ip)) % workers, steered, "{ip}");
        assert_eq!(
            map.shard_of(IpAddr::V6(ip.to_ipv6_mapped())),
            map.shard_of(IpAddr::V4(ip))
        );
    }
    assert_eq!(map.shards(), 2 * workers);
    // An entry lives in its shard: sweeping that shard alone frees it.
    let shard = map.shard_of(v4(77));
    map.insert(v4(77), 1, 0);
    assert_eq!(map.reclaim_shard((shard + 1) % map.shards(), 1000), 0);
    assert_eq!(map.reclaim_shard(shard, 1000), 1);
    assert_eq!(map.reclaim_shard(map.shards(), 1000), 0, "no such shard");
}

/// IPv6 clients of one site share their first 64 bits: they must still spread over every shard,
/// or the site would be confined to one shard's share of the capacity.
#[test]
fn ipv6_clients_of_one_site_use_every_shard() {
    let map = PersistenceMap::with_shards(64 * BUCKET_SLOTS * 4, 1000, 64);
    let mut used = [0usize; 64];
    for i in 0..6400u128 {
        used[map.shard_of(v6(i))] += 1;
    }
    assert!(used.iter().all(|&n| (50..150).contains(&n)), "{used:?}");
    for i in 0..map.capacity() as u128 / 2 {
        map.insert(v6(i), 1, 0);
    }
    assert!(
        map.evictions() < map.capacity() as u64 / 100,
        "{} evictions",
        map.evictions()
    );
}

#[test]
fn capacity_is_rounded_up() {
    assert!(PersistenceMap::new(1000, 1).capacity() >= 1000);
    assert_eq!(
        PersistenceMap::with_shards(0, 1, 1).capacity(),
        BUCKET_SLOTS
    );
    assert_eq!(PersistenceMap::with_shards(100, 1, 0).shards(), 1);
    assert_eq!(
        PersistenceMap::with_shards(100, 1, usize::MAX).shards(),
        MAX_SHARDS
    );
    let map = PersistenceMap::new(DEFAULT_CAPACITY, 3600);
    assert!(map.capacity() >= DEFAULT_CAPACITY);
    assert!(map.capacity() < DEFAULT_CAPACITY + DEFAULT_SHARDS * BUCKET_SLOTS);
    // The memory the module documentation states: 384-byte buckets of 15 slots.
    assert_eq!(std::mem::size_of::<Bucket>(), 384);
    let bytes = map.capacity() / BUCKET_SLOTS * std::mem::size_of::<Bucket>();
    assert!((26_000_000..28_000_000).contains(&bytes), "{bytes} bytes");
}

#[test]
fn zero_timeout_expires_at_once() {
    let map = PersistenceMap::new(100, 0);
    assert_eq!(map.insert(v4(1), 1, 5), Insert::New);
    assert_eq!(map.get(v4(1), 5), None);
    assert_eq!(map.insert(v4(1), 1, 5), Insert::New);
}

#[test]
fn clock_near_its_end_saturates() {
    let map = PersistenceMap::new(100, T);
    map.insert(v4(1), 1, u32::MAX - 1);
    assert_eq!(map.get(v4(1), u32::MAX - 1), Some(1));
}

#[test]
fn a_slot_survives_generation_wraparound() {
    let map = one_bucket(T);
    for round in 0..(GEN_MASK as u32 + 10) {
        assert_eq!(
            map.insert(v4(round % 3), (round % 7) as u16, 0),
            Insert::New
        );
        assert_eq!(map.get(v4(round % 3), 0), Some((round % 7) as u16));
        assert!(map.remove(v4(round % 3)));
    }
    assert!(map.is_empty(0));
}

#[test]
fn insert_gives_up_on_a_claim_that_never_finishes() {
    let map = one_bucket(T);
    // A thread claiming slot 0 for v4(1) and descheduled before it wrote the key.
    let place = map.place(v4(1));
    place.bucket.state[0].store(busy(1, place.fp), Ordering::Relaxed);
    assert_eq!(map.insert(v4(1), 1, 0), Insert::Contended);
    assert_eq!(map.get(v4(1), 0), None);
    // Other clients use the other slots meanwhile.
    assert_eq!(map.insert(v4(2), 2, 0), Insert::New);
    assert_eq!(map.get(v4(2), 0), Some(2));
}

/// The rate stated in the module documentation: at half load about 0.1 % of new clients evict
/// someone (15-way buckets; a Poisson tail).
#[test]
fn evictions_are_rare_at_half_load() {
    let map = PersistenceMap::new(1 << 16, 1_000_000);
    let clients = map.capacity() as u32 / 2;
    for i in 0..clients {
        map.insert(v4(i), 1, 0);
    }
    let rate = map.evictions() as f64 / f64::from(clients);
    assert!(
        rate < 0.003,
        "{:.3} % of inserts evicted at half load",
        rate * 100.0
    );
}

#[test]
fn map_is_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<PersistenceMap>();
}

/// A reload's remapping is built aside: the copy points each client to its server's new index
/// (or forgets it when its server is gone), and the running map is left exactly as it was.
#[test]
fn remapped_builds_a_copy_and_leaves_the_running_map_alone() {
    let map = PersistenceMap::new(1000, 60);
    let ips: Vec<IpAddr> = (1..=30u8).map(|i| IpAddr::from([10, 0, 0, i])).collect();
    for (k, &ip) in ips.iter().enumerate() {
        map.insert(ip, (k % 3) as u16, 5);
    }
    // Server 0 moves to index 1, server 1 is removed, server 2 moves to index 0.
    let copy = map.remapped(&[Some(1), None, Some(0)]);
    for (k, &ip) in ips.iter().enumerate() {
        assert_eq!(
            map.get(ip, 6),
            Some((k % 3) as u16),
            "the running map changed"
        );
        let want = [Some(1), None, Some(0)][k % 3];
        assert_eq!(copy.get(ip, 6), want, "{ip} in the copy");
    }
    assert_eq!(copy.len(6), 20);
    assert_eq!(copy.timeout_secs(), map.timeout_secs());
    // The copy is a map of its own: writes to it do not show in the running one.
    copy.insert(ips[1], 7, 6);
    assert_eq!(map.get(ips[1], 6), Some(1));
}
