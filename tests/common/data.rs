//! Deterministic data and digests: [`Pattern`], a pseudo-random byte stream named by a seed
//! that both ends of a transfer can regenerate, and [`Received`], the byte count and SHA-256
//! a receiver compares with [`Pattern::expected`].

use sha2::{Digest as _, Sha256};
use std::collections::HashMap;
use std::fmt;
use std::io::{self, Read, Write};
use std::sync::{Mutex, OnceLock};

use super::CHUNK;

/// A SHA-256 digest, printed in hex.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Digest(pub [u8; 32]);

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in &self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

/// SHA-256 of a byte slice.
pub fn sha256(data: &[u8]) -> Digest {
    Digest(Sha256::digest(data).into())
}

/// What one side of a transfer received: byte count and SHA-256.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Received {
    /// Bytes received.
    pub bytes: u64,
    /// SHA-256 of those bytes, in order.
    pub sha256: Digest,
}

/// Reads until EOF, hashing everything. A reset or timeout is an error (with the count so far).
pub fn read_to_eof(stream: &mut impl Read) -> io::Result<Received> {
    read_to_eof_counting(stream, &mut 0)
}

/// [`read_to_eof`] that also leaves the count of bytes read in `bytes` when it fails.
pub(super) fn read_to_eof_counting(
    stream: &mut impl Read,
    bytes: &mut u64,
) -> io::Result<Received> {
    let mut hasher = Sha256::new();
    *bytes = 0;
    let mut buf = vec![0u8; CHUNK];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => {
                return Ok(Received {
                    bytes: *bytes,
                    sha256: Digest(hasher.finalize().into()),
                })
            }
            Ok(n) => {
                hasher.update(&buf[..n]);
                *bytes += n as u64;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(io::Error::new(e.kind(), format!("{e} after {bytes} bytes"))),
        }
    }
}

/// xorshift64: the generator behind [`Pattern`].
fn xorshift64(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

/// Bytes of the pseudo-random pool that [`Pattern`] chunks are cut from.
const POOL_LEN: usize = 1 << 20;

/// 1 MiB of xorshift output, generated once per test binary: cutting chunks from it keeps data
/// generation at memcpy speed in unoptimised test builds (xorshift per byte is ~10x slower).
fn pool() -> &'static [u8] {
    static POOL: OnceLock<Vec<u8>> = OnceLock::new();
    POOL.get_or_init(|| {
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        let mut pool = Vec::with_capacity(POOL_LEN);
        while pool.len() < POOL_LEN {
            pool.extend_from_slice(&xorshift64(&mut state).to_le_bytes());
        }
        pool
    })
}

/// A deterministic pseudo-random byte stream of `len` bytes named by `seed`.
///
/// Chunk `i` (of [`CHUNK`] bytes) is a slice of the xorshift pool at an offset chosen by another
/// xorshift of `(seed, i)`, stamped with `seed` and `i` in its first 16 bytes: so no two chunks
/// are equal and a lost, repeated, reordered or altered chunk changes the stream's SHA-256.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Pattern {
    /// Names the stream; two seeds give unrelated streams.
    pub seed: u64,
    /// Length in bytes.
    pub len: u64,
}

impl Pattern {
    /// The stream `seed` of `len` bytes.
    pub fn new(seed: u64, len: u64) -> Pattern {
        Pattern { seed, len }
    }

    /// Fills `out` with chunk `index` (its length says how many bytes of the chunk to produce).
    fn fill_chunk(&self, index: u64, out: &mut [u8]) {
        let mut state = (self.seed ^ index.wrapping_mul(0xA24B_AED4_963E_E407)) | 1;
        xorshift64(&mut state);
        let offset = (xorshift64(&mut state) % (POOL_LEN - CHUNK) as u64) as usize;
        out.copy_from_slice(&pool()[offset..offset + out.len()]);
        let mut stamp = [0u8; 16];
        stamp[..8].copy_from_slice(&self.seed.to_le_bytes());
        stamp[8..].copy_from_slice(&index.to_le_bytes());
        let n = out.len().min(16);
        out[..n].copy_from_slice(&stamp[..n]);
    }

    /// Calls `f` with each chunk in order, reusing one buffer.
    pub fn for_each_chunk<E>(&self, mut f: impl FnMut(&[u8]) -> Result<(), E>) -> Result<(), E> {
        let mut buf = vec![0u8; CHUNK];
        let mut sent = 0u64;
        let mut index = 0u64;
        while sent < self.len {
            let n = (self.len - sent).min(CHUNK as u64) as usize;
            self.fill_chunk(index, &mut buf[..n]);
            f(&buf[..n])?;
            sent += n as u64;
            index += 1;
        }
        Ok(())
    }

    /// The whole stream in memory (for small patterns).
    pub fn bytes(&self) -> Vec<u8> {
        let mut all = Vec::with_capacity(self.len as usize);
        self.for_each_chunk(|c| {
            all.extend_from_slice(c);
            Ok::<(), ()>(())
        })
        .expect("infallible");
        all
    }

    /// Writes the whole stream to `w`.
    pub fn write_to(&self, w: &mut impl Write) -> io::Result<()> {
        let mut sent = 0u64;
        self.for_each_chunk(|c| {
            w.write_all(c).map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!("{e} after sending {sent} of {} bytes", self.len),
                )
            })?;
            sent += c.len() as u64;
            Ok(())
        })
    }

    /// What a receiver of the whole stream must have: its length and SHA-256 (computed once per
    /// pattern per test binary: hashing is slow in unoptimised builds).
    pub fn expected(&self) -> Received {
        static CACHE: OnceLock<Mutex<HashMap<Pattern, Digest>>> = OnceLock::new();
        let cache = CACHE.get_or_init(|| Mutex::new(HashMap::new()));
        if let Some(d) = cache.lock().expect("digest cache").get(self) {
            return Received {
                bytes: self.len,
                sha256: *d,
            };
        }
        let mut hasher = Sha256::new();
        self.for_each_chunk(|c| {
            hasher.update(c);
            Ok::<(), ()>(())
        })
        .expect("infallible");
        let d = Digest(hasher.finalize().into());
        cache.lock().expect("digest cache").insert(*self, d);
        Received {
            bytes: self.len,
            sha256: d,
        }
    }
}
