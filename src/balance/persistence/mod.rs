//! Source-IP persistence: the shared, lock-free map from client IP to server index with expiry.
//!
//! Owns [`PersistenceMap`], used by `persistence = { mode = "source-ip", timeout = "1h" }`: every
//! worker looks a client up on each new connection and records the server it chose, so that one
//! client keeps its server (Exchange passthrough needs it) until it has been idle for `timeout`.
//!
//! # Layout
//!
//! The table is `shards × buckets_per_shard` buckets of [`BUCKET_SLOTS`] slots; a client lives
//! only in the one bucket its address hashes to (a keyed hash, so nobody can aim clients at one
//! bucket). A bucket is 384 bytes, three 128-byte pairs of cache lines:
//!
//! ```text
//! claims: u64                 bumped by every claim of a slot for a new key
//! state[15]: u64              EMPTY(gen) | BUSY(gen, fingerprint) | LIVE(gen, server u16, expiry u32)
//! lo[15], hi[15]: u64         the key: the client's IPv6 address (IPv4 as ::ffff:a.b.c.d)
//! ```
//!
//! That is 25.6 bytes per slot: [`DEFAULT_CAPACITY`] (a million clients) costs about 27 MB.
//!
//! # Why no reader sees a torn or foreign entry
//!
//! The value (server, expiry) is one atomic word with the slot's state, so it is never torn; the
//! 128-bit key is two words, guarded like a seqlock by the `gen` in the state. A key is written
//! only between a claim (`→ BUSY(gen + 1)`, a CAS) and its publication (`→ LIVE(gen + 1)`, a
//! release store), and keys are stored and loaded with release/acquire. A reader loads the state,
//! then the key, then the state again, and trusts the key only when both states are `LIVE` with
//! the same `gen`: had it read a key word of a later claim, the claim's CAS would happen before its
//! second load, which would then see a newer `gen`. Updates and refreshes are a CAS on the state
//! word, so they never disturb a reader's key. (A lookup first compares each slot's low key word
//! without ordering, only to skip slots that cannot match; a match is then read as above.) The
//! `gen` has 14 bits: a stale CAS would need 16,384 claims of one slot between a thread's load
//! and its CAS, ending on the same server and expiry second.
//!
//! # Why a client is never in two slots
//!
//! Two threads inserting the same new client into one bucket could claim two slots. So a claim is
//! two steps: CAS the slot to `BUSY`, then CAS the bucket's `claims` counter from the value read
//! before scanning the bucket. Only one of two overlapping claims passes the second step; the
//! other frees its slot and scans again, and meets the winner. A writer that meets a `BUSY` slot
//! whose fingerprint is its own client's waits for it (a claim is a few stores) — up to
//! [`BUSY_SPINS`] pauses, then gives up with [`Insert::Contended`] rather than block.
//!
//! # When a bucket is full
//!
//! An insert takes, in order of preference: an empty slot, a slot whose entry has expired, or the
//! live entry closest to expiry — the least recently used of the bucket, as HAProxy's stick tables
//! evict their oldest entry. Overwriting a live entry is counted in [`PersistenceMap::evictions`]
//! and reported as [`Insert::Evicted`]. Because a client may only use the 15 slots of its bucket,
//! evictions start before the whole table is full: size `capacity` at about twice the clients
//! expected within one timeout (at half full, about 0.1 % of new clients evict someone).
//!
//! Nothing here locks, allocates after construction, or reads the clock: the caller passes
//! coarse seconds (`now_secs`, e.g. seconds since the process started), which must not go back.

use std::net::IpAddr;

use ahash::RandomState;
use crossbeam::utils::CachePadded;

#[cfg(all(test, loom))]
use loom::{
    hint::spin_loop,
    sync::atomic::{AtomicU64, Ordering},
};
#[cfg(not(all(test, loom)))]
use std::{
    hint::spin_loop,
    sync::atomic::{AtomicU64, Ordering},
};

/// Default capacity: a million client IPs (about 27 MB), more than the clients of any single
/// Exchange site within one hour's timeout, at about half load.
pub const DEFAULT_CAPACITY: usize = 1 << 20;

/// Default shard count for [`PersistenceMap::new`]: a multiple of every power-of-two worker count
/// up to 64, so that `shard_of(ip) % workers` is the worker the kernel steers `ip` to.
pub const DEFAULT_SHARDS: usize = 64;

/// Most shards: more than any machine's cores; each shard costs at least one bucket.
pub const MAX_SHARDS: usize = 1024;

/// Largest capacity (larger requests are clamped): 2^28 clients, about 7 GB, four times the
/// config's own maximum, so that no request can overflow the size computation.
pub const MAX_CAPACITY: usize = 1 << 28;

/// Slots per bucket: the 15 state words and the bucket's claim counter fill one 128-byte pair of
/// cache lines (which the adjacent-line prefetcher loads together), and 15-way buckets keep
/// evictions rare up to about half load.
#[cfg(not(all(test, loom)))]
pub const BUCKET_SLOTS: usize = 15;
/// Slots per bucket under loom: two, so that a three-key model exercises eviction while the
/// number of interleavings stays small.
#[cfg(all(test, loom))]
pub const BUCKET_SLOTS: usize = 2;

// `Bucket::find` keeps one bit per slot in a `u32`.
const _: () = assert!(BUCKET_SLOTS <= u32::BITS as usize);

/// How many times an insert pauses for another thread's claim of the same client before it gives
/// up with [`Insert::Contended`]: 1 to 15 µs of `PAUSE` and rescans, depending on the CPU, far
/// more than the few stores a claim takes, so it is reached only when that thread was descheduled
/// in the middle of its claim.
#[cfg(not(all(test, loom)))]
pub const BUSY_SPINS: u32 = 256;
/// Under loom, every pause is a yield that loom explores: two are enough to cover both outcomes.
#[cfg(all(test, loom))]
pub const BUSY_SPINS: u32 = 2;

/// The cBPF steering program's multiplier (`ld [SKF_NET_OFF+12]; mul 0x9E3779B1; rsh 16; mod N`).
const STEER_MUL: u32 = 0x9E37_79B1;
/// The steering program's right shift.
const STEER_SHIFT: u32 = 16;

/// The top 96 bits of an IPv4-mapped IPv6 address (`::ffff:0:0/96`), as a `u128` prefix.
const V4_MAPPED_PREFIX: u128 = 0xffff;

/// What [`PersistenceMap::insert`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Insert {
    /// The client had no live entry; it has one now (in a free or expired slot).
    New,
    /// The client's live entry now holds this server, and its expiry was pushed back.
    Updated,
    /// The client's bucket was full of live entries: the one closest to expiry was overwritten
    /// (counted in [`PersistenceMap::evictions`]).
    Evicted,
    /// Nothing was stored: another thread was storing this same client at this instant and did
    /// not finish within [`BUSY_SPINS`] pauses (it was descheduled); its entry stands. (Or, about
    /// once in 2^26 such meetings, the other client only shared this one's 32-bit fingerprint.)
    Contended,
}

/// Where a client's entry may live.
struct Place<'a> {
    key: u128,
    bucket: &'a Bucket,
    shard: usize,
    fp: u32,
}

/// The slot an insert will claim for a new entry, best first.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Target {
    /// A free slot.
    Empty,
    /// An expired entry.
    Expired,
    /// The live entry that expires first (the least recently used).
    Victim(u32),
}

/// Client IP → server index with expiry, shared by all workers (`Send + Sync`), lock-free.
///
/// See the module documentation for the layout, the guarantees and what happens when full.
pub struct PersistenceMap {
    buckets: Box<[Bucket]>,
    buckets_per_shard: usize,
    shards: usize,
    timeout_secs: u32,
    hasher: RandomState,
    /// Evictions per shard, each on its own cache line so that cores do not share one counter.
    evictions: Box<[CachePadded<AtomicU64>]>,
}

impl std::fmt::Debug for PersistenceMap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PersistenceMap")
            .field("capacity", &self.capacity())
            .field("shards", &self.shards)
            .field("timeout_secs", &self.timeout_secs)
            .finish_non_exhaustive()
    }
}

impl PersistenceMap {
    /// A map for at least `capacity` clients (rounded up to whole buckets in every shard; see
    /// [`capacity`](Self::capacity)), whose entries expire `timeout_secs` after their last use,
    /// with [`DEFAULT_SHARDS`] shards.
    ///
    /// A timeout of 0 makes every entry expired as soon as it is stored.
    pub fn new(capacity: usize, timeout_secs: u32) -> Self {
        Self::with_shards(capacity, timeout_secs, DEFAULT_SHARDS)
    }

    /// Like [`new`](Self::new) with `shards` shards (clamped to `1..=`[`MAX_SHARDS`]; capacity
    /// to [`MAX_CAPACITY`]). Pass the number of workers (or a multiple of it) when the kernel
    /// steers client IPs to workers: then worker `w` only touches the shards `s` with
    /// `s % workers == w` for its IPv4 clients.
    pub fn with_shards(capacity: usize, timeout_secs: u32, shards: usize) -> Self {
        let shards = shards.clamp(1, MAX_SHARDS);
        let capacity = capacity.min(MAX_CAPACITY);
        let buckets_per_shard = capacity.div_ceil(shards * BUCKET_SLOTS).max(1);
        Self {
            buckets: (0..shards * buckets_per_shard)
                .map(|_| Bucket::new())
                .collect(),
            buckets_per_shard,
            shards,
            timeout_secs,
            hasher: hasher(),
            evictions: (0..shards)
                .map(|_| CachePadded::new(AtomicU64::new(0)))
                .collect(),
        }
    }

    /// The shard that holds `ip`. For an IPv4 client (or IPv4-mapped IPv6) it is the steering
    /// program's `(ip.wrapping_mul(0x9E3779B1) >> 16) % shards`, so with `shards` equal to the
    /// number of workers (or a multiple of it) a client's entry lives in a shard of the worker the
    /// kernel steered it to. The program steers IPv4 only; an IPv6 client's shard comes from the
    /// keyed hash of its whole address. (Following the word the program would load from an IPv6
    /// header, bytes 4..8 of the address, would put every client of one site, which share their
    /// first 64 bits, into one shard and its 1/`shards` of the capacity.)
    pub fn shard_of(&self, ip: IpAddr) -> usize {
        let key = normalise(ip);
        self.shard_for(key, self.hasher.hash_one(key))
    }

    /// Number of shards.
    pub fn shards(&self) -> usize {
        self.shards
    }

    /// Number of slots: the most entries the map can hold (at least the capacity asked for).
    pub fn capacity(&self) -> usize {
        self.buckets.len() * BUCKET_SLOTS
    }

    /// The timeout, in seconds, after an entry's last use.
    pub fn timeout_secs(&self) -> u32 {
        self.timeout_secs
    }

    /// The server of `ip` if its entry is live at `now_secs`, and pushes its expiry back to
    /// `now_secs + timeout` (as HAProxy refreshes on use: a client active all day keeps its
    /// server). The refresh writes at most once per second per client, and is skipped if another
    /// thread writes the entry at the same instant.
    pub fn get(&self, ip: IpAddr, now_secs: u32) -> Option<u16> {
        let place = self.place(ip);
        let b = place.bucket;
        // A client is in at most one slot: the first found decides.
        let (i, s) = b.find(place.key)?;
        if expiry(s) <= now_secs {
            return None;
        }
        let fresh = now_secs.saturating_add(self.timeout_secs);
        if fresh > expiry(s) {
            let refreshed = live(gen(s), server(s), fresh);
            // A failure means another thread wrote this slot just now; the answer stands.
            let _ = b.state[i].compare_exchange(s, refreshed, Ordering::AcqRel, Ordering::Relaxed);
        }
        Some(server(s))
    }

    /// Records that `ip` uses `server`, live until `now_secs + timeout`. Never blocks and never
    /// allocates: when the client's bucket is full of live entries it overwrites the one closest
    /// to expiry ([`Insert::Evicted`]).
    pub fn insert(&self, ip: IpAddr, server_index: u16, now_secs: u32) -> Insert {
        let place = self.place(ip);
        let b = place.bucket;
        let until = now_secs.saturating_add(self.timeout_secs);
        let mut evicted = false;
        let mut pauses = 0;
        'scan: loop {
            let claims = b.claims.load(Ordering::Acquire);
            let mut best: Option<(Target, usize, u64)> = None;
            for i in 0..BUCKET_SLOTS {
                let s = b.state[i].load(Ordering::Acquire);
                if let Some(s) = b.confirm(i, s, place.key) {
                    let stored = live(gen(s), server_index, until);
                    if stored == s && expiry(s) > now_secs {
                        return Insert::Updated; // already so: spare the cache line a write
                    }
                    if b.state[i]
                        .compare_exchange(s, stored, Ordering::AcqRel, Ordering::Relaxed)
                        .is_err()
                    {
                        continue 'scan; // updated, refreshed or freed meanwhile: look again
                    }
                    return if expiry(s) > now_secs {
                        Insert::Updated
                    } else {
                        Insert::New
                    };
                }
                let target = match tag(s) {
                    TAG_EMPTY => Target::Empty,
                    TAG_LIVE if expiry(s) <= now_secs => Target::Expired,
                    TAG_LIVE => Target::Victim(expiry(s)),
                    _ if busy_fp(s) == place.fp => {
                        // Probably the same client, being claimed by another thread right now.
                        if !pause(&mut pauses) {
                            return Insert::Contended;
                        }
                        continue 'scan;
                    }
                    _ => continue, // another client being claimed
                };
                if best.is_none_or(|(t, _, _)| target < t) {
                    best = Some((target, i, s));
                }
            }
            let Some((target, i, seen)) = best else {
                // Every slot is being claimed by another thread: wait for one, within bounds.
                if !pause(&mut pauses) {
                    return Insert::Contended;
                }
                continue 'scan;
            };
            let claim = busy(gen(seen) + 1, place.fp);
            if b.state[i]
                .compare_exchange(seen, claim, Ordering::AcqRel, Ordering::Relaxed)
                .is_err()
            {
                continue 'scan;
            }
            if matches!(target, Target::Victim(_)) {
                evicted = true;
                self.evictions[place.shard].fetch_add(1, Ordering::Relaxed);
            }
            if b.claims
                .compare_exchange(
                    claims,
                    claims.wrapping_add(1),
                    Ordering::AcqRel,
                    Ordering::Relaxed,
                )
                .is_err()
            {
                // Another claim in this bucket since the scan, perhaps of this client: free the
                // slot (its victim, if any, is gone) and scan again.
                b.state[i].store(empty(gen(claim)), Ordering::Release);
                continue 'scan;
            }
            b.lo[i].store(place.key as u64, Ordering::Release);
            b.hi[i].store((place.key >> 64) as u64, Ordering::Release);
            b.state[i].store(live(gen(claim), server_index, until), Ordering::Release);
            return if evicted {
                Insert::Evicted
            } else {
                Insert::New
            };
        }
    }

    /// Forgets `ip` (e.g. its server went down); true if it had an entry, live or expired.
    pub fn remove(&self, ip: IpAddr) -> bool {
        let place = self.place(ip);
        let b = place.bucket;
        // A failed CAS means the entry was refreshed, updated or freed meanwhile: look again.
        while let Some((i, s)) = b.find(place.key) {
            if b.state[i]
                .compare_exchange(s, empty(gen(s)), Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
            {
                return true;
            }
        }
        false
    }

    /// Frees every entry expired at `now_secs`; returns how many. A sweep of the whole table
    /// (about 27 MB at the default capacity): call it periodically, off the connection path, or
    /// use [`reclaim_shard`](Self::reclaim_shard) from each worker. Inserts also reuse expired
    /// slots, so this only keeps [`len`](Self::len) and lookups tidy.
    pub fn reclaim(&self, now_secs: u32) -> usize {
        (0..self.shards)
            .map(|s| self.reclaim_shard(s, now_secs))
            .sum()
    }

    /// Like [`reclaim`](Self::reclaim) for one shard (`shard < shards()`; others free nothing),
    /// so that each worker can sweep the shards of the clients it is steered.
    pub fn reclaim_shard(&self, shard: usize, now_secs: u32) -> usize {
        let start = shard.saturating_mul(self.buckets_per_shard);
        let end = start.saturating_add(self.buckets_per_shard);
        let buckets = self.buckets.get(start..end).unwrap_or_default();
        buckets
            .iter()
            .map(|b| {
                (0..BUCKET_SLOTS)
                    .filter(|&i| b.reclaim_slot(i, now_secs))
                    .count()
            })
            .sum()
    }

    /// For a reload that changed the server list: a new map, built aside, with this one's
    /// entries where the entry for old server `i` points to `moves[i]`, or is left out when that
    /// is `None` (the server was removed). This map is not touched, so a reload that fails later
    /// leaves the running configuration's entries as they were. A sweep of the whole table, off
    /// the connection path; an entry written to this map during the sweep may be missed (that
    /// client is scheduled afresh by the new configuration).
    pub fn remapped(&self, moves: &[Option<u16>]) -> Self {
        let copy = Self {
            buckets: (0..self.buckets.len()).map(|_| Bucket::new()).collect(),
            buckets_per_shard: self.buckets_per_shard,
            shards: self.shards,
            timeout_secs: self.timeout_secs,
            hasher: self.hasher.clone(),
            evictions: (0..self.shards)
                .map(|_| CachePadded::new(AtomicU64::new(0)))
                .collect(),
        };
        for (from, to) in self.buckets.iter().zip(copy.buckets.iter()) {
            for i in 0..BUCKET_SLOTS {
                // The seqlock read of `confirm`: state, key, state again, same generation.
                let s1 = from.state[i].load(Ordering::Acquire);
                if tag(s1) != TAG_LIVE {
                    continue;
                }
                let (lo, hi) = (
                    from.lo[i].load(Ordering::Acquire),
                    from.hi[i].load(Ordering::Acquire),
                );
                let s2 = from.state[i].load(Ordering::Acquire);
                if tag(s2) != TAG_LIVE || gen(s2) != gen(s1) {
                    continue;
                }
                let Some(server) = moves.get(usize::from(server(s2))).copied().flatten() else {
                    continue;
                };
                // Same hasher and layout: the entry belongs in the same slot of the copy, which
                // no other thread sees before the copy is published.
                to.lo[i].store(lo, Ordering::Relaxed);
                to.hi[i].store(hi, Ordering::Relaxed);
                to.state[i].store(live(gen(s2), server, expiry(s2)), Ordering::Release);
            }
        }
        copy
    }

    /// Live entries at `now_secs`, by a sweep of the whole table (for metrics, not the hot path).
    /// Exact when nothing writes meanwhile; under concurrent writes, a count that each slot
    /// contributed to at some instant during the sweep.
    pub fn len(&self, now_secs: u32) -> usize {
        self.buckets
            .iter()
            .flat_map(|b| b.state.iter())
            .filter(|s| {
                let s = s.load(Ordering::Relaxed);
                tag(s) == TAG_LIVE && expiry(s) > now_secs
            })
            .count()
    }

    /// True when no entry is live at `now_secs` (a sweep, like [`len`](Self::len)).
    pub fn is_empty(&self, now_secs: u32) -> bool {
        self.len(now_secs) == 0
    }

    /// Live entries overwritten to make room since the map was made.
    pub fn evictions(&self) -> u64 {
        self.evictions
            .iter()
            .map(|e| e.load(Ordering::Relaxed))
            .sum()
    }

    fn place(&self, ip: IpAddr) -> Place<'_> {
        let key = normalise(ip);
        let h = self.hasher.hash_one(key);
        let shard = self.shard_for(key, h);
        // Lemire's multiply-shift maps the low 32 bits onto the shard's buckets without a
        // power-of-two size; the high 32 bits are the fingerprint, independent of the bucket.
        let in_shard = ((h & u64::from(u32::MAX)) * self.buckets_per_shard as u64) >> 32;
        let index = shard * self.buckets_per_shard + in_shard as usize;
        Place {
            key,
            bucket: &self.buckets[index],
            shard,
            fp: (h >> 32) as u32,
        }
    }
}

#[cfg(test)]
impl PersistenceMap {
    /// How many slots hold `ip` (live or expired); at most one, whatever the interleaving.
    fn slots_holding(&self, ip: IpAddr) -> usize {
        let place = self.place(ip);
        let b = place.bucket;
        (0..BUCKET_SLOTS)
            .filter(|&i| {
                b.confirm(i, b.state[i].load(Ordering::Acquire), place.key)
                    .is_some()
            })
            .count()
    }
}

impl PersistenceMap {
    /// See [`shard_of`](Self::shard_of); `h` is the keyed hash of `key`.
    fn shard_for(&self, key: u128, h: u64) -> usize {
        if key >> 32 == V4_MAPPED_PREFIX {
            let ip = key as u32;
            (ip.wrapping_mul(STEER_MUL) >> STEER_SHIFT) as usize % self.shards
        } else {
            // Lemire's multiply-shift on the fingerprint half of the hash.
            (((h >> 32) * self.shards as u64) >> 32) as usize
        }
    }
}

/// Counts one pause for another thread's claim; false once [`BUSY_SPINS`] are spent.
fn pause(pauses: &mut u32) -> bool {
    *pauses += 1;
    spin_loop();
    *pauses <= BUSY_SPINS
}

/// The key of a client: its IPv6 address, with IPv4 as IPv4-mapped (`::ffff:a.b.c.d`), so that
/// a client seen through an IPv4 socket and a dual-stack IPv6 socket is one client.
fn normalise(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v4) => u128::from(v4.to_ipv6_mapped()),
        IpAddr::V6(v6) => u128::from(v6),
    }
}

/// The keyed hash that places clients in buckets: random per process, so that no one can choose
/// addresses that all land in one bucket and evict each other.
#[cfg(not(all(test, loom)))]
fn hasher() -> RandomState {
    RandomState::new()
}

/// Under loom every execution must make the same choices: a fixed key.
#[cfg(all(test, loom))]
fn hasher() -> RandomState {
    RandomState::with_seeds(1, 2, 3, 4)
}

mod bucket;

#[cfg(all(test, not(loom)))]
use bucket::GEN_MASK;
use bucket::{busy, busy_fp, empty, expiry, gen, live, server, tag, Bucket, TAG_EMPTY, TAG_LIVE};

#[cfg(all(test, not(loom)))]
mod tests;

#[cfg(all(test, loom))]
mod model;
