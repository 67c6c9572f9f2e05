//! Hashes: FNV-1a 64 (stable: series hashes, shard ids, partitions) and a hasher for
//! maps whose keys already are good 64-bit hashes.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

const FNV_OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// FNV-1a 64: the series hash of DESIGN section 2 and our stable id hash.
#[inline]
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    fnv1a64_extend(FNV_OFFSET_BASIS, bytes)
}

/// Continues an FNV-1a 64 hash over more bytes.
#[inline]
pub fn fnv1a64_extend(mut hash: u64, bytes: &[u8]) -> u64 {
    for &b in bytes {
        hash ^= b as u64;
        hash = hash.wrapping_mul(FNV_PRIME);
    }
    hash
}

/// MurmurHash3's 64-bit finalizer: a bijection whose every output bit depends on every
/// input bit. FNV-1a's high bits barely depend on the last bytes hashed (a key's last
/// byte reaches only bits 0-25 and 40-47 of the hash), so keys that differ only at
/// their end (`host=web01` .. `host=web09`) would share `hash >> 32`; partitions take
/// their bits from `mix64(series_hash)` instead.
#[inline]
pub fn mix64(mut k: u64) -> u64 {
    k ^= k >> 33;
    k = k.wrapping_mul(0xff51_afd7_ed55_8ccd);
    k ^= k >> 33;
    k = k.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    k ^= k >> 33;
    k
}

/// Hasher for keys that already are good 64-bit hashes (series key hashes): a `u64`
/// key is taken as it is; bytes are folded in with FNV-1a.
#[derive(Default)]
pub struct IdentityHasher(u64);

impl Hasher for IdentityHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        self.0 = fnv1a64_extend(self.0, bytes);
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// A map keyed by a 64-bit hash, with no second hashing.
pub type HashMapById<V> = HashMap<u64, V, BuildHasherDefault<IdentityHasher>>;
