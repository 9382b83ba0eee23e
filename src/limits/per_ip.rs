//! Connections open per client address, counted by every core in one lock-free table, for
//! `max_connections_per_ip`.
//!
//! **Keys.** An IPv4 address, or the /64 prefix of an IPv6 address: one IPv6 host is given a
//! whole /64 and can pick any address in it, so counting full IPv6 addresses would limit nothing.
//! A key is hashed with a per-process random seed (no one can aim two keys at one bucket); the
//! hash picks a bucket and a 48-bit fingerprint stands for the key.
//!
//! **Layout.** A bucket is one cache line of eight words; a word packs a fingerprint and a 16-bit
//! count, so claiming a word, counting and releasing are each one atomic operation and a key and
//! its count can never be torn apart. A word whose count fell to zero is free for any key.
//!
//! **What it promises.** Counts are exact: a connection remembers the word it incremented and
//! decrements that one. The limit holds except in one race: two cores admitting the same new
//! address at the same instant may claim two words and let it through once more each — the
//! overshoot is at most one per core, like the least-connections pick. A bucket with no free word
//! (nine busy addresses hashed together; rare with the table sized at a bucket for every two
//! connections the process may hold: 32 bytes a connection) lets the connection through uncounted and counts that
//! in [`IpTable::untracked`]: failing open never refuses a client for another's sake.

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crossbeam::utils::CachePadded;

/// Words per bucket: one 64-byte cache line.
const WAYS: usize = 8;
/// Bits of a word holding the count.
const COUNT_BITS: u32 = 16;
const COUNT_MASK: u64 = (1 << COUNT_BITS) - 1;

/// Why a connection was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// The address already has its limit of connections open.
    AtLimit,
}

/// Per-address connection counts shared by every core (hold it in an `Arc`).
#[derive(Debug)]
pub struct IpTable {
    buckets: Box<[CachePadded<[AtomicU64; WAYS]>]>,
    mask: u64,
    hasher: ahash::RandomState,
    refused: AtomicU64,
    untracked: AtomicU64,
}

/// One connection counted against its address until dropped.
#[derive(Debug)]
pub struct IpSlot {
    table: Arc<IpTable>,
    bucket: u32,
    way: u8,
}

impl Drop for IpSlot {
    fn drop(&mut self) {
        // The count of this word is at least one (ours), so this never borrows from the
        // fingerprint above it.
        self.table.buckets[self.bucket as usize][usize::from(self.way)]
            .fetch_sub(1, Ordering::AcqRel);
    }
}

impl IpTable {
    /// A table sized for a process that holds at most `connections` at once. The limit is given
    /// to each [`IpTable::admit`], so a reload can change it while the counts carry on.
    pub fn new(connections: u32) -> Arc<Self> {
        // At most `connections` distinct addresses: two per bucket of eight words on average.
        let buckets = (connections as usize)
            .div_ceil(2)
            .max(1)
            .next_power_of_two();
        Arc::new(Self {
            buckets: (0..buckets)
                .map(|_| CachePadded::new(Default::default()))
                .collect(),
            mask: buckets as u64 - 1,
            hasher: ahash::RandomState::new(),
            refused: AtomicU64::new(0),
            untracked: AtomicU64::new(0),
        })
    }

    /// Connections refused at the limit.
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    /// Connections let through uncounted because their bucket was full.
    pub fn untracked(&self) -> u64 {
        self.untracked.load(Ordering::Relaxed)
    }

    /// Buckets in the table (for tests and memory accounting).
    pub fn buckets(&self) -> usize {
        self.buckets.len()
    }

    /// Counts a connection from `ip`: `Ok(Some(slot))` while it has fewer than `limit` (at most
    /// 65,535), `Ok(None)` when let through uncounted (full bucket), `Err` at the limit (counted
    /// in [`IpTable::refused`]).
    pub fn admit(self: &Arc<Self>, ip: IpAddr, limit: u32) -> Result<Option<IpSlot>, Refused> {
        let limit = limit.clamp(1, COUNT_MASK as u32);
        let hash = self.hasher.hash_one(key_of(ip));
        let bucket = (hash & self.mask) as usize;
        // 48 bits of fingerprint above the count; never zero, so an untouched word is free.
        let fingerprint = ((hash >> 16) << COUNT_BITS) | (1 << COUNT_BITS);
        let words = &self.buckets[bucket];
        loop {
            let mut total = 0u32;
            let mut mine = None;
            let mut free = None;
            for (way, word) in words.iter().enumerate() {
                let w = word.load(Ordering::Acquire);
                let count = (w & COUNT_MASK) as u32;
                if w & !COUNT_MASK == fingerprint && count > 0 {
                    total += count;
                    mine.get_or_insert((way, w));
                } else if count == 0 && free.is_none() {
                    free = Some((way, w));
                }
            }
            if total >= limit {
                self.refused.fetch_add(1, Ordering::Relaxed);
                return Err(Refused::AtLimit);
            }
            let (way, current, next) = match (mine, free) {
                (Some((way, w)), _) => (way, w, w + 1),
                (None, Some((way, w))) => (way, w, fingerprint | 1),
                (None, None) => {
                    self.untracked.fetch_add(1, Ordering::Relaxed);
                    return Ok(None);
                }
            };
            if words[way]
                .compare_exchange(current, next, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
            {
                return Ok(Some(IpSlot {
                    table: self.clone(),
                    bucket: bucket as u32,
                    way: way as u8,
                }));
            }
        }
    }

    /// Connections counted for `ip` now (for tests and the admin API).
    pub fn count(&self, ip: IpAddr) -> u32 {
        let hash = self.hasher.hash_one(key_of(ip));
        let fingerprint = ((hash >> 16) << COUNT_BITS) | (1 << COUNT_BITS);
        self.buckets[(hash & self.mask) as usize]
            .iter()
            .map(|w| w.load(Ordering::Acquire))
            .filter(|w| w & !COUNT_MASK == fingerprint)
            .map(|w| (w & COUNT_MASK) as u32)
            .sum()
    }
}

/// What is counted for `ip`: the IPv4 address (or the one mapped in IPv6), else the IPv6 /64.
fn key_of(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v4) => u128::from(u32::from(v4)),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => u128::from(u32::from(v4)),
            None => (u128::from(v6) >> 64) << 64 | 1,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    #[test]
    fn an_address_gets_its_limit_and_no_more_while_others_are_served() {
        let table = IpTable::new(1000);
        let held: Vec<IpSlot> = (0..3)
            .map(|_| {
                table
                    .admit(ip("127.0.0.2"), 3)
                    .expect("under")
                    .expect("tracked")
            })
            .collect();
        assert_eq!(
            table.admit(ip("127.0.0.2"), 3).unwrap_err(),
            Refused::AtLimit
        );
        assert_eq!(table.refused(), 1);
        assert!(
            table.admit(ip("127.0.0.3"), 3).is_ok(),
            "another address is served"
        );
        assert_eq!(table.count(ip("127.0.0.2")), 3);
        drop(held);
        assert_eq!(table.count(ip("127.0.0.2")), 0);
        assert!(table.admit(ip("127.0.0.2"), 3).is_ok(), "slots come back");
    }

    #[test]
    fn ipv6_is_counted_per_64_and_mapped_ipv4_as_ipv4() {
        let table = IpTable::new(1000);
        let _a = table.admit(ip("2001:db8:1:2::1"), 1).expect("first");
        assert!(
            table.admit(ip("2001:db8:1:2:ffff::9"), 1).is_err(),
            "same /64"
        );
        assert!(table.admit(ip("2001:db8:1:3::1"), 1).is_ok(), "another /64");
        let _v4 = table.admit(ip("192.0.2.7"), 1).expect("v4");
        assert!(
            table.admit(ip("::ffff:192.0.2.7"), 1).is_err(),
            "mapped = the same address"
        );
    }

    #[test]
    fn a_full_bucket_fails_open_and_counts_it() {
        // One bucket: the ninth distinct address has no word left.
        let table = IpTable::new(1);
        assert_eq!(table.buckets(), 1);
        let held: Vec<IpSlot> = (1..=8)
            .map(|i| {
                table
                    .admit(ip(&format!("10.0.0.{i}")), 5)
                    .expect("ok")
                    .expect("tracked")
            })
            .collect();
        assert!(matches!(table.admit(ip("10.0.0.9"), 5), Ok(None)));
        assert_eq!(table.untracked(), 1);
        drop(held);
        assert!(
            matches!(table.admit(ip("10.0.0.9"), 5), Ok(Some(_))),
            "freed words are reused"
        );
    }

    #[test]
    fn counts_stay_exact_under_concurrent_admits_and_releases() {
        let table = IpTable::new(10_000);
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let table = table.clone();
                std::thread::spawn(move || {
                    for round in 0..2_000u32 {
                        let a = ip(&format!("10.1.{}.{}", t, round % 50));
                        let slots: Vec<_> =
                            (0..3).filter_map(|_| table.admit(a, 1000).ok()).collect();
                        drop(slots);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().expect("thread");
        }
        for t in 0..4 {
            for last in 0..50 {
                assert_eq!(table.count(ip(&format!("10.1.{t}.{last}"))), 0);
            }
        }
    }
}
