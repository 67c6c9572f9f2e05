//! The head bytes of every core, shared node-wide, against `[storage] cache-max-bytes`.

use crate::tsdb::engine::blocks::BlockCacheCounters;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

/// Head bytes per core, shared node-wide: the HTTP layer refuses writes while a core
/// is past `cache-max-bytes`, and the stores refuse them too (a write from a peer).
#[derive(Debug)]
pub struct CacheGauge {
    per_core: Vec<AtomicUsize>,
    limit: usize,
    /// Writes refused because a core's head was full.
    pub rejections: AtomicU64,
    /// Flushes done, and their data file bytes, node-wide.
    pub flushes: AtomicU64,
    pub flushed_bytes: AtomicU64,
    pub flush_failures: AtomicU64,
    /// Compactions done, their output bytes, and failures, node-wide.
    pub compactions: AtomicU64,
    pub compaction_bytes: AtomicU64,
    pub compaction_failures: AtomicU64,
    /// Every core's block cache (hits, misses, evictions, bytes held).
    pub block_cache: Arc<BlockCacheCounters>,
}

impl CacheGauge {
    pub fn new(cores: usize, limit: usize) -> Arc<CacheGauge> {
        Arc::new(CacheGauge {
            per_core: (0..cores).map(|_| AtomicUsize::new(0)).collect(),
            limit,
            rejections: AtomicU64::new(0),
            flushes: AtomicU64::new(0),
            flushed_bytes: AtomicU64::new(0),
            flush_failures: AtomicU64::new(0),
            compactions: AtomicU64::new(0),
            compaction_bytes: AtomicU64::new(0),
            compaction_failures: AtomicU64::new(0),
            block_cache: Arc::new(BlockCacheCounters::default()),
        })
    }

    pub fn set(&self, core: usize, bytes: usize) {
        if let Some(c) = self.per_core.get(core) {
            c.store(bytes, Ordering::Relaxed);
        }
    }

    /// The limit per core (0: none).
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// The head bytes of the fullest core and the limit, when a core is past it.
    pub fn over(&self) -> Option<(usize, usize)> {
        if self.limit == 0 {
            return None;
        }
        let most = self
            .per_core
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .max()
            .unwrap_or(0);
        (most > self.limit).then_some((most, self.limit))
    }

    /// Head bytes of every core.
    pub fn total(&self) -> usize {
        self.per_core
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .sum()
    }

    /// Counts a refused write.
    pub fn reject(&self) {
        self.rejections.fetch_add(1, Ordering::Relaxed);
    }
}
