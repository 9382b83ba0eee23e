//! Maglev consistent hashing on the client IP, for `schedule = "source-hash"`.
//!
//! Owns the lookup table, the hashes that build and read it, and [`SharedMaglev`], the snapshot
//! that workers read and the health checker replaces.
//!
//! **Why Maglev.** Several ringmaster nodes behind ECMP must send a client to the same real server
//! without talking to each other, and a server going up or down must move only the clients it
//! gains or loses. Maglev (Eisenbud et al., NSDI 2016, §3.4) gives both: the table is a pure
//! function of the server list, lookups are one hash and one array read, and a change of one
//! server out of N moves about 1/N of the clients.
//!
//! **Algorithm.** Each server, named by a stable key (its `address:port` string, never its
//! position in the list), has a preference list over the `M` slots (`M` prime):
//! `slot(j) = (offset + j·skip) mod M` with `offset = h1(key) mod M` and
//! `skip = h2(key) mod (M−1) + 1`, a full permutation because `M` is prime. Servers take turns
//! claiming their next preferred free slot until the table is full. A server of weight `w` takes
//! `w` turns per round, interleaved (in a round of weights 2:1 the order is `a b a`, not `a a b`),
//! so slot shares follow the weights. Turns go in key order, so the table does not depend on the
//! order in which the servers are listed. A client's slot is `h(ip)` scaled onto `0..M`.
//!
//! **Stability is a contract between nodes.** The hashes here are written out (FNV-1a and the
//! MurmurHash3 64-bit finaliser) with fixed seeds, never a per-process random seed and never a
//! library hash whose output may change between versions or CPUs (ahash picks AES or a fallback at
//! run time). Changing [`DEFAULT_TABLE_SIZE`], a seed or a hash reassigns nearly every client, and
//! nodes of one ECMP group must then be upgraded together; `golden_lookups_never_change` pins it.
//!
//! Tables are built off the connection path (about a millisecond for 64 servers at the default
//! size) and never change once built.

use std::net::IpAddr;
use std::sync::Arc;

use arc_swap::{ArcSwap, Guard};

/// Default number of slots: prime, and at least 100 slots per server for up to 655 servers, which
/// keeps each server's share within about 1 % of its weight (paper, §5.3).
pub const DEFAULT_TABLE_SIZE: usize = 65_537;

/// Largest table accepted (prime, 2^24 − 3): 64 MiB of slots, far more than any pool needs.
/// Larger requests are clamped to it.
pub const MAX_TABLE_SIZE: usize = 16_777_213;

/// Smallest table: the permutation needs `M − 1 ≥ 1` possible skips.
const MIN_TABLE_SIZE: usize = 2;

/// Seed of the hash that gives a server's first preferred slot.
const OFFSET_SEED: u64 = 0x6d61_676c_6576_6f66; // "maglevof"
/// Seed of the hash that gives a server's step between preferred slots.
const SKIP_SEED: u64 = 0x6d61_676c_6576_736b; // "maglevsk"
/// Seed of the client-address hash.
const CLIENT_SEED: u64 = 0x636c_6965_6e74_6970; // "clientip"

/// FNV-1a 64-bit offset basis (the published constant).
const FNV_OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
/// FNV-1a 64-bit prime (the published constant).
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// Marks a slot that no server has claimed yet, while the table is being filled.
const EMPTY_SLOT: u32 = u32::MAX;

/// A Maglev lookup table: client IP → index of a real server. Immutable once built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MaglevTable {
    /// `slots[s]` is the index (into the list given to [`MaglevTable::build`]) of the server that
    /// owns slot `s`. Empty when no server is usable.
    slots: Box<[u32]>,
}

impl MaglevTable {
    /// Builds the table for `servers`, each `(stable key, weight, usable)`, with `size` slots.
    ///
    /// The key names the server across nodes and restarts (use its `address:port` string, e.g.
    /// `"10.0.0.11:443"`); keys should be distinct. A weight of zero counts as one, as in
    /// [`SmoothRoundRobin`](super::SmoothRoundRobin). Unusable servers get no slots, so their
    /// clients move and everyone else's stay; if no server is usable the table is empty and every
    /// lookup is `None`.
    ///
    /// `size` is rounded up to a prime (the permutations need it) and clamped to
    /// `2..=`[`MAX_TABLE_SIZE`]; use [`DEFAULT_TABLE_SIZE`], or a prime of at least 100 slots per
    /// unit of weight. Every node of an ECMP group must use the same size. Runs in about
    /// `O(size · log size)`: call it off the connection path.
    pub fn build<K: AsRef<str>>(servers: &[(K, u32, bool)], size: usize) -> Self {
        let size = table_size(size);
        let mut members: Vec<Member> = servers
            .iter()
            .enumerate()
            .filter(|(_, (_, _, usable))| *usable)
            .filter_map(|(index, (key, weight, _))| {
                Member::new(key.as_ref(), *weight, u32::try_from(index).ok()?, size)
            })
            .collect();
        if members.is_empty() {
            return Self {
                slots: Box::new([]),
            };
        }
        // Key order, so that listing the servers in another order builds the same table; the
        // index breaks ties between duplicate keys deterministically.
        members.sort_by(|a, b| a.key.cmp(b.key).then(a.index.cmp(&b.index)));
        let turns = turn_order(&members, size);

        let mut slots = vec![EMPTY_SLOT; size];
        let mut filled = 0;
        'fill: loop {
            for &m in &turns {
                let member = &mut members[m];
                // The permutation visits every slot and the table is not full yet, so a free
                // slot is found within `size` steps.
                while slots[member.next] != EMPTY_SLOT {
                    member.advance(size);
                }
                slots[member.next] = member.index;
                member.advance(size);
                filled += 1;
                if filled == size {
                    break 'fill;
                }
            }
        }
        Self {
            slots: slots.into_boxed_slice(),
        }
    }

    /// The server for this client, as an index into the list given to [`MaglevTable::build`], or
    /// `None` when no server was usable. IPv4-mapped IPv6 addresses (`::ffff:a.b.c.d`, what a
    /// dual-stack socket reports for an IPv4 client) give the same answer as the IPv4 address.
    #[inline]
    pub fn lookup(&self, ip: IpAddr) -> Option<usize> {
        if self.slots.is_empty() {
            return None;
        }
        let slot = scale(client_hash(ip), self.slots.len());
        self.slots.get(slot).map(|&s| s as usize)
    }

    /// Number of slots (a prime), or 0 for an empty table.
    pub fn size(&self) -> usize {
        self.slots.len()
    }

    /// True when no server was usable: every lookup is `None`.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Slots owned by each server, indexed like the list given to [`MaglevTable::build`]
    /// (`servers` long): each server's share of clients is its count divided by
    /// [`MaglevTable::size`]. For metrics and tests; it walks the whole table.
    pub fn slot_counts(&self, servers: usize) -> Vec<usize> {
        let mut counts = vec![0; servers];
        for &s in self.slots.iter() {
            if let Some(c) = counts.get_mut(s as usize) {
                *c += 1;
            }
        }
        counts
    }
}

/// A [`MaglevTable`] shared by every worker and replaced whole when the usable servers change.
///
/// Workers call [`SharedMaglev::lookup`] (or [`SharedMaglev::load`]) on the connection path: a
/// lock-free `ArcSwap` read. The health checker calls [`SharedMaglev::rebuild`] when a server goes
/// up or down (or a reload changes the list); connections already placed keep their server.
/// Rebuild from one task with the complete, current server list: the last table stored wins.
#[derive(Debug)]
pub struct SharedMaglev {
    table: ArcSwap<MaglevTable>,
    size: usize,
}

impl SharedMaglev {
    /// A shared table built from `servers` (see [`MaglevTable::build`]); later rebuilds use the
    /// same `size`.
    pub fn new<K: AsRef<str>>(servers: &[(K, u32, bool)], size: usize) -> Self {
        Self {
            table: ArcSwap::from_pointee(MaglevTable::build(servers, size)),
            size,
        }
    }

    /// The current table. Cheap and lock-free; hold the guard only for the lookup, not across
    /// an `.await`.
    #[inline]
    pub fn load(&self) -> Guard<Arc<MaglevTable>> {
        self.table.load()
    }

    /// The server for this client in the current table (see [`MaglevTable::lookup`]).
    #[inline]
    pub fn lookup(&self, ip: IpAddr) -> Option<usize> {
        self.table.load().lookup(ip)
    }

    /// Builds a table for `servers` and publishes it; lookups that already started finish on
    /// the old table. Indices in `servers` must mean what the caller's server list means.
    pub fn rebuild<K: AsRef<str>>(&self, servers: &[(K, u32, bool)]) {
        self.table
            .store(Arc::new(MaglevTable::build(servers, self.size)));
    }
}

/// A usable server while the table is being filled.
struct Member<'a> {
    key: &'a str,
    /// Position in the caller's list: what the table stores.
    index: u32,
    weight: u32,
    /// The next slot in this server's preference list.
    next: usize,
    skip: usize,
}

impl<'a> Member<'a> {
    fn new(key: &'a str, weight: u32, index: u32, size: usize) -> Option<Self> {
        let m = u64::try_from(size).ok()?;
        let offset = usize::try_from(key_hash(key, OFFSET_SEED) % m).ok()?;
        let skip = usize::try_from(key_hash(key, SKIP_SEED) % (m - 1) + 1).ok()?;
        Some(Self {
            key,
            index,
            weight: weight.max(1),
            next: offset,
            skip,
        })
    }

    /// Moves to the next slot of the preference list: `next = (next + skip) mod size`.
    #[inline]
    fn advance(&mut self, size: usize) {
        self.next += self.skip;
        if self.next >= size {
            self.next -= size;
        }
    }
}

/// The order of turns in one round, as positions in `members`: pass `p` gives a turn to every
/// member whose (gcd-reduced) weight exceeds `p`. Weights 2:1 give `a b a`; 1:1 gives `a b`.
/// Never longer than `size`, since a round that long fills the table on its own.
fn turn_order(members: &[Member<'_>], size: usize) -> Vec<usize> {
    let divisor = members.iter().fold(0, |g, m| gcd(g, m.weight)).max(1);
    let mut active: Vec<(usize, u32)> = members
        .iter()
        .enumerate()
        .map(|(i, m)| (i, m.weight / divisor))
        .collect();
    let mut turns = Vec::new();
    let mut pass = 0;
    while !active.is_empty() && turns.len() < size {
        active.retain(|&(_, w)| w > pass);
        turns.extend(active.iter().map(|&(i, _)| i));
        pass += 1;
    }
    turns.truncate(size);
    turns
}

fn gcd(mut a: u32, mut b: u32) -> u32 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// The prime table size used for a requested `size`.
fn table_size(size: usize) -> usize {
    let mut n = size.clamp(MIN_TABLE_SIZE, MAX_TABLE_SIZE);
    // MAX_TABLE_SIZE is prime, so this stops at or below it.
    while !is_prime(n) {
        n += 1;
    }
    n
}

/// Trial division; at most ~2,000 divisions for sizes up to `MAX_TABLE_SIZE`.
fn is_prime(n: usize) -> bool {
    if n < 2 {
        return false;
    }
    let mut d = 2;
    while d * d <= n {
        if n % d == 0 {
            return false;
        }
        d += 1;
    }
    true
}

/// MurmurHash3's 64-bit finaliser: a bijection whose every output bit depends on every input bit.
#[inline]
fn fmix64(mut k: u64) -> u64 {
    k ^= k >> 33;
    k = k.wrapping_mul(0xff51_afd7_ed55_8ccd);
    k ^= k >> 33;
    k = k.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    k ^= k >> 33;
    k
}

/// FNV-1a over the key's bytes from a seeded basis, then [`fmix64`] (FNV alone mixes the last
/// bytes poorly, and keys differ mostly in their last bytes).
fn key_hash(key: &str, seed: u64) -> u64 {
    let h = key.bytes().fold(FNV_OFFSET_BASIS ^ seed, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(FNV_PRIME)
    });
    fmix64(h)
}

/// The client's hash; an IPv4-mapped IPv6 address hashes as its IPv4 address.
#[inline]
fn client_hash(ip: IpAddr) -> u64 {
    let v6 = match ip {
        IpAddr::V4(v4) => return fmix64(u64::from(u32::from(v4)) ^ CLIENT_SEED),
        IpAddr::V6(v6) => v6,
    };
    if let Some(v4) = v6.to_ipv4_mapped() {
        return fmix64(u64::from(u32::from(v4)) ^ CLIENT_SEED);
    }
    let bits = u128::from(v6);
    // Truncations are the point: the high and low halves of the address.
    let (high, low) = ((bits >> 64) as u64, bits as u64);
    fmix64(fmix64(high ^ CLIENT_SEED) ^ low)
}

/// Maps a uniform 64-bit hash onto `0..n` without a division (Lemire's multiply-shift).
#[inline]
fn scale(hash: u64, n: usize) -> usize {
    // n ≤ MAX_TABLE_SIZE, so the product's high half is < n and fits in usize.
    ((u128::from(hash) * n as u128) >> 64) as usize
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    type Servers = Vec<(String, u32, bool)>;

    fn servers(n: usize) -> Servers {
        (0..n)
            .map(|i| (format!("10.0.0.{}:443", 11 + i), 1, true))
            .collect()
    }

    /// Client addresses as a real population looks: consecutive addresses of a few networks.
    fn clients(n: usize) -> Vec<IpAddr> {
        (0..n as u32)
            .map(|i| IpAddr::V4(Ipv4Addr::from(0xc0a8_0000 + i * 7)))
            .collect()
    }

    fn assign(table: &MaglevTable, clients: &[IpAddr]) -> Vec<Option<usize>> {
        clients.iter().map(|&ip| table.lookup(ip)).collect()
    }

    /// Fraction of clients whose server differs between `before` and `after`, where `key` maps
    /// an assignment to the server's name (indices may differ between the two lists).
    fn moved(before: &[Option<usize>], after: &[Option<usize>], a: &Servers, b: &Servers) -> f64 {
        let name = |s: &Servers, i: Option<usize>| i.map(|i| s[i].0.clone());
        let n = before
            .iter()
            .zip(after)
            .filter(|(x, y)| name(a, **x) != name(b, **y))
            .count();
        n as f64 / before.len() as f64
    }

    #[test]
    fn same_servers_build_the_same_table() {
        let s = servers(7);
        assert_eq!(
            MaglevTable::build(&s, DEFAULT_TABLE_SIZE),
            MaglevTable::build(&s, DEFAULT_TABLE_SIZE)
        );
    }

    /// Fails if a hash, a seed, the scaling or the fill order changes: that would reassign
    /// clients between nodes running different versions. Change these values only on purpose,
    /// with a note in the release that ECMP groups must be upgraded together.
    #[test]
    fn golden_lookups_never_change() {
        let t = MaglevTable::build(&servers(4), DEFAULT_TABLE_SIZE);
        let got: Vec<usize> = [
            "192.0.2.1",
            "192.0.2.2",
            "198.51.100.7",
            "203.0.113.200",
            "10.1.2.3",
            "172.16.0.1",
            "2001:db8::1",
            "2001:db8::2",
        ]
        .iter()
        .map(|s| t.lookup(s.parse().expect("ip")).expect("usable"))
        .collect();
        assert_eq!(got, GOLDEN);
        assert_eq!(t.slot_counts(4), vec![16_385, 16_384, 16_384, 16_384]);
    }
    // Checked against an independent Python rendering of the algorithm in the module doc.
    const GOLDEN: [usize; 8] = [3, 2, 3, 2, 0, 2, 3, 3];

    #[test]
    fn server_order_in_the_list_does_not_matter() {
        let s = servers(5);
        let mut r = s.clone();
        r.reverse();
        let (a, b) = (
            MaglevTable::build(&s, DEFAULT_TABLE_SIZE),
            MaglevTable::build(&r, DEFAULT_TABLE_SIZE),
        );
        for ip in clients(1_000) {
            let (x, y) = (a.lookup(ip).expect("a"), b.lookup(ip).expect("b"));
            assert_eq!(s[x].0, r[y].0, "{ip}");
        }
    }

    #[test]
    fn equal_servers_get_equal_slots_and_clients() {
        let t = MaglevTable::build(&servers(4), DEFAULT_TABLE_SIZE);
        // Round-robin turns: slot counts differ by at most one.
        let slots = t.slot_counts(4);
        assert!(slots.iter().max().expect("4") - slots.iter().min().expect("4") <= 1);
        let mut per = [0usize; 4];
        let ips = clients(100_000);
        for &ip in &ips {
            per[t.lookup(ip).expect("usable")] += 1;
        }
        for (i, &n) in per.iter().enumerate() {
            let share = n as f64 / ips.len() as f64;
            assert!(
                (share - 0.25).abs() <= 0.025,
                "server {i}: {share} ({per:?})"
            );
        }
    }

    #[test]
    fn weights_are_respected() {
        let mut s = servers(2);
        s[0].1 = 2;
        let t = MaglevTable::build(&s, DEFAULT_TABLE_SIZE);
        let slots = t.slot_counts(2);
        let share = slots[0] as f64 / t.size() as f64;
        assert!((share - 2.0 / 3.0).abs() < 0.001, "{slots:?}");
        let ips = clients(100_000);
        let heavy = ips.iter().filter(|&&ip| t.lookup(ip) == Some(0)).count();
        let share = heavy as f64 / ips.len() as f64;
        assert!((share - 2.0 / 3.0).abs() < 0.02, "{share}");

        // 3:2:1 with a common factor: same shares as without it.
        let w = |ws: [u32; 3]| {
            let s: Servers = servers(3)
                .into_iter()
                .zip(ws)
                .map(|((k, _, u), w)| (k, w, u))
                .collect();
            MaglevTable::build(&s, DEFAULT_TABLE_SIZE)
        };
        assert_eq!(w([3, 2, 1]), w([30, 20, 10]));
        let slots = w([3, 2, 1]).slot_counts(3);
        for (i, expected) in [3.0 / 6.0, 2.0 / 6.0, 1.0 / 6.0].iter().enumerate() {
            let share = slots[i] as f64 / DEFAULT_TABLE_SIZE as f64;
            assert!((share - expected).abs() < 0.001, "{slots:?}");
        }
    }

    /// The criterion: a 5th server takes about 1/5 of the clients, nearly all from
    /// the others in proportion, and moves no more than 25 % of them in all.
    #[test]
    fn adding_a_fifth_server_moves_about_a_fifth() {
        let (four, five) = (servers(4), servers(5));
        let ips = clients(1_000);
        let before = assign(&MaglevTable::build(&four, DEFAULT_TABLE_SIZE), &ips);
        let after = assign(&MaglevTable::build(&five, DEFAULT_TABLE_SIZE), &ips);
        let m = moved(&before, &after, &four, &five);
        assert!(m <= 0.25, "moved {m}");
        let to_new = after.iter().filter(|&&s| s == Some(4)).count() as f64 / 1_000.0;
        assert!((0.15..=0.25).contains(&to_new), "new server took {to_new}");
        // Clients that moved went to the new server, apart from Maglev's small churn.
        assert!(m - to_new <= 0.03, "moved {m}, to the new one {to_new}");
    }

    #[test]
    fn removing_one_of_five_moves_about_a_fifth() {
        let five = servers(5);
        let four: Servers = five[..2].iter().chain(&five[3..]).cloned().collect();
        let ips = clients(10_000);
        let before = assign(&MaglevTable::build(&five, DEFAULT_TABLE_SIZE), &ips);
        let after = assign(&MaglevTable::build(&four, DEFAULT_TABLE_SIZE), &ips);
        let m = moved(&before, &after, &five, &four);
        assert!((0.15..=0.25).contains(&m), "moved {m}");
    }

    #[test]
    fn unusable_server_loses_its_clients_and_no_one_else_moves() {
        let mut s = servers(5);
        let ips = clients(10_000);
        let before = assign(&MaglevTable::build(&s, DEFAULT_TABLE_SIZE), &ips);
        s[2].2 = false;
        let t = MaglevTable::build(&s, DEFAULT_TABLE_SIZE);
        assert_eq!(t.slot_counts(5)[2], 0);
        let after = assign(&t, &ips);
        assert!(after.iter().all(|&a| a.is_some() && a != Some(2)));
        let others: Vec<_> = before
            .iter()
            .zip(&after)
            .filter(|(b, _)| **b != Some(2))
            .collect();
        let stayed = others.iter().filter(|(b, a)| b == a).count() as f64 / others.len() as f64;
        assert!(stayed >= 0.95, "only {stayed} of the others stayed");

        // Back up: the original table again, so every client returns.
        s[2].2 = true;
        assert_eq!(
            assign(&MaglevTable::build(&s, DEFAULT_TABLE_SIZE), &ips),
            before
        );
    }

    #[test]
    fn no_usable_server_means_no_answer() {
        let mut s = servers(3);
        for server in &mut s {
            server.2 = false;
        }
        let ip = IpAddr::V4(Ipv4Addr::LOCALHOST);
        let t = MaglevTable::build(&s, DEFAULT_TABLE_SIZE);
        assert!(t.is_empty());
        assert_eq!(t.lookup(ip), None);
        assert_eq!(
            MaglevTable::build::<&str>(&[], DEFAULT_TABLE_SIZE).lookup(ip),
            None
        );
    }

    #[test]
    fn ipv4_mapped_ipv6_hashes_as_ipv4() {
        let t = MaglevTable::build(&servers(16), DEFAULT_TABLE_SIZE);
        for v4 in clients(1_000) {
            let IpAddr::V4(a) = v4 else { unreachable!() };
            assert_eq!(t.lookup(IpAddr::V6(a.to_ipv6_mapped())), t.lookup(v4));
        }
        // Native IPv6 clients spread too.
        let per = t.slot_counts(16);
        assert!(per.iter().all(|&n| n > 0));
        let v6: Vec<_> = (0..1_000u128)
            .map(|i| t.lookup(IpAddr::V6(Ipv6Addr::from((0x2001_0db8u128 << 96) | i))))
            .collect();
        assert!((0..16).all(|s| v6.contains(&Some(s))));
    }

    #[test]
    fn sizes_are_rounded_up_to_primes_and_fully_filled() {
        for (asked, got) in [
            (0, 2),
            (1, 2),
            (100, 101),
            (65_536, 65_537),
            (usize::MAX, MAX_TABLE_SIZE),
        ] {
            assert_eq!(table_size(asked), got, "{asked}");
        }
        let t = MaglevTable::build(&servers(3), 1_000);
        assert_eq!(t.size(), 1_009);
        assert_eq!(t.slot_counts(3).iter().sum::<usize>(), 1_009);
        // More servers than slots: the table still fills and every answer is a server.
        let t = MaglevTable::build(&servers(10), 2);
        assert_eq!(t.slot_counts(10).iter().sum::<usize>(), 2);
    }

    #[test]
    fn extreme_weights_build_quickly() {
        let s = vec![
            ("a:1".to_string(), u32::MAX, true),
            ("b:1".to_string(), 1, true),
        ];
        let t = MaglevTable::build(&s, DEFAULT_TABLE_SIZE);
        // One pass gives every server a turn, then the heavy one takes the rest.
        assert_eq!(t.slot_counts(2), vec![DEFAULT_TABLE_SIZE - 1, 1]);
        let s = vec![("a:1", 0, true), ("b:1", 1, true)];
        let counts = MaglevTable::build(&s, DEFAULT_TABLE_SIZE).slot_counts(2);
        assert!(
            counts[0].abs_diff(counts[1]) <= 1,
            "weight 0 counts as 1: {counts:?}"
        );
    }

    #[test]
    fn shared_table_is_replaced_by_rebuild() {
        let mut s = servers(3);
        let shared = SharedMaglev::new(&s, DEFAULT_TABLE_SIZE);
        let ips = clients(1_000);
        let on_one: Vec<IpAddr> = ips
            .iter()
            .copied()
            .filter(|&ip| shared.lookup(ip) == Some(1))
            .collect();
        assert!(!on_one.is_empty());
        let old = shared.load_full_for_test();
        s[1].2 = false;
        shared.rebuild(&s);
        assert!(on_one.iter().all(|&ip| shared.lookup(ip) != Some(1)));
        // A reader holding the old snapshot still sees it.
        assert_eq!(old.lookup(on_one[0]), Some(1));
        assert_eq!(shared.load().size(), DEFAULT_TABLE_SIZE);
    }

    impl SharedMaglev {
        fn load_full_for_test(&self) -> Arc<MaglevTable> {
            self.table.load_full()
        }
    }
}
