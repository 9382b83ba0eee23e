//! One bucket of the persistence map and the encoding of its slots' state words: the layout and
//! the seqlock read described in the parent module's documentation.

use super::BUCKET_SLOTS;

#[cfg(all(test, loom))]
use loom::sync::atomic::{AtomicU64, Ordering};
#[cfg(not(all(test, loom)))]
use std::sync::atomic::{AtomicU64, Ordering};

// State word: tag (2 bits) | gen (14 bits) | payload (48 bits).
// LIVE payload: server (16 bits) | expiry (32 bits). BUSY payload: fingerprint (32 bits).
/// Bit position of the tag.
pub(super) const TAG_SHIFT: u32 = 62;
/// Tag of a free slot (all-zero memory is an empty table).
pub(super) const TAG_EMPTY: u64 = 0;
/// Tag of a slot being claimed: its key is being written.
pub(super) const TAG_BUSY: u64 = 1;
/// Tag of a slot holding an entry (live, or expired and not yet reclaimed).
pub(super) const TAG_LIVE: u64 = 2;
/// Bit position of the generation, bumped by every claim so a reader can tell the key changed.
pub(super) const GEN_SHIFT: u32 = 48;
/// Generation mask: 14 bits, what is left beside the tag and a 48-bit live payload.
pub(super) const GEN_MASK: u64 = (1 << 14) - 1;
/// Bit position of the server index in a live state.
pub(super) const SERVER_SHIFT: u32 = 32;
/// Mask of the expiry (seconds) in a live state.
pub(super) const EXPIRY_MASK: u64 = u32::MAX as u64;
/// Mask of the fingerprint in a busy state.
pub(super) const FP_MASK: u64 = u32::MAX as u64;

pub(super) const fn tag(s: u64) -> u64 {
    s >> TAG_SHIFT
}
pub(super) const fn gen(s: u64) -> u64 {
    (s >> GEN_SHIFT) & GEN_MASK
}
pub(super) const fn server(s: u64) -> u16 {
    (s >> SERVER_SHIFT) as u16
}
pub(super) const fn expiry(s: u64) -> u32 {
    (s & EXPIRY_MASK) as u32
}
pub(super) const fn empty(gen: u64) -> u64 {
    (TAG_EMPTY << TAG_SHIFT) | ((gen & GEN_MASK) << GEN_SHIFT)
}
pub(super) const fn busy(gen: u64, fp: u32) -> u64 {
    (TAG_BUSY << TAG_SHIFT) | ((gen & GEN_MASK) << GEN_SHIFT) | fp as u64
}
pub(super) const fn live(gen: u64, server: u16, expiry: u32) -> u64 {
    (TAG_LIVE << TAG_SHIFT)
        | ((gen & GEN_MASK) << GEN_SHIFT)
        | ((server as u64) << SERVER_SHIFT)
        | expiry as u64
}
pub(super) const fn busy_fp(s: u64) -> u32 {
    (s & FP_MASK) as u32
}

/// One bucket: see the module documentation for the layout and the protocol.
#[repr(C, align(128))]
pub(super) struct Bucket {
    /// Bumped by every successful claim of a slot for a new key, so that two claims of the same
    /// client cannot both succeed.
    pub(super) claims: AtomicU64,
    /// The slots' state words (tag, gen, and server and expiry or a fingerprint).
    pub(super) state: [AtomicU64; BUCKET_SLOTS],
    /// Low 64 bits of each slot's key (compared first: they differ most between clients).
    pub(super) lo: [AtomicU64; BUCKET_SLOTS],
    /// High 64 bits of each slot's key (zero-and-`ffff` for IPv4).
    pub(super) hi: [AtomicU64; BUCKET_SLOTS],
}

impl Bucket {
    pub(super) fn new() -> Self {
        Self {
            claims: AtomicU64::new(0),
            state: std::array::from_fn(|_| AtomicU64::new(empty(0))),
            lo: std::array::from_fn(|_| AtomicU64::new(0)),
            hi: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }

    /// The slot that holds `key` (live or expired) and its state, read as a seqlock: the key
    /// words are trusted only if the state had the same generation before and after them.
    pub(super) fn find(&self, key: u128) -> Option<(usize, u64)> {
        // A hint first, without branches: the slots whose low key word is this client's. A
        // lookup of an absent client reads only the `lo` lines of its bucket, and the scan does
        // not mispredict on where the client sits.
        let lo = key as u64;
        let mut candidates = 0u32;
        for (i, word) in self.lo.iter().enumerate() {
            candidates |= u32::from(word.load(Ordering::Relaxed) == lo) << i;
        }
        while candidates != 0 {
            let i = candidates.trailing_zeros() as usize;
            candidates &= candidates - 1;
            if let Some(s) = self.confirm(i, self.state[i].load(Ordering::Acquire), key) {
                return Some((i, s));
            }
        }
        None
    }

    /// Whether slot `i`, whose state `s1` was loaded with acquire ordering, holds `key`: if so,
    /// its state now (see [`find`](Self::find)).
    pub(super) fn confirm(&self, i: usize, s1: u64, key: u128) -> Option<u64> {
        if tag(s1) != TAG_LIVE || self.lo[i].load(Ordering::Acquire) != key as u64 {
            return None;
        }
        if self.hi[i].load(Ordering::Acquire) != (key >> 64) as u64 {
            return None;
        }
        let s2 = self.state[i].load(Ordering::Acquire);
        (tag(s2) == TAG_LIVE && gen(s2) == gen(s1)).then_some(s2)
    }

    /// Frees slot `i` if it holds an entry that expired at `now_secs`; true if it did.
    pub(super) fn reclaim_slot(&self, i: usize, now_secs: u32) -> bool {
        let s = self.state[i].load(Ordering::Acquire);
        tag(s) == TAG_LIVE
            && expiry(s) <= now_secs
            && self.state[i]
                .compare_exchange(s, empty(gen(s)), Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
    }
}
