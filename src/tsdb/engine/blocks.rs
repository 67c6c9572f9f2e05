//! A bounded cache of decoded data file blocks, one per core, shared by the core's
//! partitions.
//!
//! Why: data file blocks are read with O_DIRECT where the filesystem allows it
//! ([`super::file::DataFile`]), so the page cache neither holds them nor grows
//! with them; this cache is what keeps the blocks queries ask for again and again
//! (a dashboard's last hours) decoded in memory, within `[storage] block-cache-bytes`.
//! Compactions read around it (a merge reads every block once; caching them would
//! evict what queries use).
//!
//! At the limit the least recently used blocks go. A block larger than the limit is
//! returned but not kept; a limit of 0 keeps nothing.
//!
//! **Invariant:** `bytes` is the sum of the entries' sizes, and every entry has
//! exactly one place in `order` (its last use).

use super::file::{BlockMeta, Column, DataFile, FileError, Stats};
use super::Value;
use crate::lineproto::FieldType;
use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// A block's place: the data file's id in this process ([`super::file::DataFile::uid`])
/// and the block's offset in it.
pub type BlockKey = (u64, u64);

/// A decoded block: times and values.
#[derive(Debug)]
pub struct Decoded {
    pub times: Vec<i64>,
    pub column: Column,
}

impl Decoded {
    /// Heap bytes, as the cache counts them.
    pub fn bytes(&self) -> usize {
        std::mem::size_of::<Decoded>() + self.times.len() * 8 + self.column.heap_bytes()
    }
}

/// Counters of every core's cache, node-wide.
#[derive(Debug, Default)]
pub struct BlockCacheCounters {
    pub hits: AtomicU64,
    pub misses: AtomicU64,
    pub evictions: AtomicU64,
    /// Bytes held now by every core's cache.
    pub bytes: AtomicU64,
}

/// Blocks read (decoded) and failed reads of one partition, shared with its
/// [`LazyBlock`]s.
#[derive(Debug, Default)]
pub struct ReadCounts {
    pub reads: Cell<u64>,
    pub errors: Cell<u64>,
}

/// A data file block a read may answer from its statistics (count, sum, min, max)
/// without decoding it, and decode when it cannot: see
/// [`super::ReadRange::whole_blocks`] for when a cursor returns one.
#[derive(Clone)]
pub struct LazyBlock {
    file: Rc<DataFile>,
    pub meta: BlockMeta,
    pub field_type: FieldType,
    cache: Option<Rc<BlockCache>>,
    counts: Rc<ReadCounts>,
}

impl std::fmt::Debug for LazyBlock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LazyBlock")
            .field("file", &self.file.path)
            .field("meta", &self.meta)
            .finish()
    }
}

impl LazyBlock {
    pub fn new(
        file: Rc<DataFile>,
        meta: BlockMeta,
        field_type: FieldType,
        cache: Option<Rc<BlockCache>>,
        counts: Rc<ReadCounts>,
    ) -> LazyBlock {
        LazyBlock {
            file,
            meta,
            field_type,
            cache,
            counts,
        }
    }

    /// Reads the block (through the cache when there is one).
    pub fn decode(&self) -> Result<Rc<Decoded>, FileError> {
        read_block(
            &self.file,
            &self.meta,
            self.field_type,
            self.cache.as_deref(),
            &self.counts,
        )
    }

    /// The block's times and values; none when it does not read (logged and counted,
    /// as a cursor leaves such a block out).
    pub fn values(&self) -> (Vec<i64>, Vec<Value>) {
        match self.decode() {
            Ok(d) => (
                d.times.clone(),
                (0..d.times.len()).map(|i| d.column.value(i)).collect(),
            ),
            Err(e) => {
                tracing::error!(error = %e, "a data file block does not read; its values are left out");
                (Vec::new(), Vec::new())
            }
        }
    }

    pub fn count(&self) -> u64 {
        self.meta.count as u64
    }

    /// The smallest and largest value (`None` for a type without statistics).
    pub fn min_max(&self) -> Option<(Value, Value)> {
        match self.meta.stats {
            Stats::Float { min, max, .. } => Some((Value::Float(min), Value::Float(max))),
            Stats::Integer { min, max, .. } => Some((Value::Integer(min), Value::Integer(max))),
            Stats::Unsigned { min, max, .. } => Some((Value::Unsigned(min), Value::Unsigned(max))),
            Stats::None => None,
        }
    }
}

/// Reads and decodes `meta` of `file`, through `cache` when given; counts the read
/// (and a failure) in `counts`.
pub fn read_block(
    file: &DataFile,
    meta: &BlockMeta,
    field_type: FieldType,
    cache: Option<&BlockCache>,
    counts: &ReadCounts,
) -> Result<Rc<Decoded>, FileError> {
    let read = || {
        counts.reads.set(counts.reads.get() + 1);
        file.read_block(meta, field_type)
            .map(|(times, column)| Decoded { times, column })
    };
    let got = match cache {
        Some(cache) => cache.get_or_read((file.uid(), meta.offset), read),
        None => read().map(Rc::new),
    };
    if got.is_err() {
        counts.errors.set(counts.errors.get() + 1);
    }
    got
}

#[derive(Default)]
struct Lru {
    entries: HashMap<BlockKey, (Rc<Decoded>, u64)>,
    /// Last use -> key, oldest first.
    order: BTreeMap<u64, BlockKey>,
    tick: u64,
    bytes: usize,
}

/// See the module documentation.
pub struct BlockCache {
    limit: usize,
    lru: RefCell<Lru>,
    counters: Arc<BlockCacheCounters>,
}

impl BlockCache {
    pub fn new(limit: usize, counters: Arc<BlockCacheCounters>) -> Rc<BlockCache> {
        Rc::new(BlockCache {
            limit,
            lru: RefCell::new(Lru::default()),
            counters,
        })
    }

    /// The block at `key`, from the cache or else from `read` (then kept).
    pub fn get_or_read<E>(
        &self,
        key: BlockKey,
        read: impl FnOnce() -> Result<Decoded, E>,
    ) -> Result<Rc<Decoded>, E> {
        {
            let mut lru = self.lru.borrow_mut();
            let lru = &mut *lru;
            lru.tick += 1;
            let tick = lru.tick;
            if let Some((block, used)) = lru.entries.get_mut(&key) {
                lru.order.remove(used);
                *used = tick;
                lru.order.insert(tick, key);
                self.counters.hits.fetch_add(1, Ordering::Relaxed);
                return Ok(block.clone());
            }
        }
        self.counters.misses.fetch_add(1, Ordering::Relaxed);
        let block = Rc::new(read()?);
        let size = block.bytes();
        if size > self.limit {
            return Ok(block);
        }
        let mut lru = self.lru.borrow_mut();
        let mut evicted = 0usize;
        while lru.bytes + size > self.limit {
            let Some((_, old)) = lru.order.pop_first() else {
                break;
            };
            if let Some((gone, _)) = lru.entries.remove(&old) {
                let gone = gone.bytes();
                lru.bytes -= gone;
                evicted += gone;
                self.counters.evictions.fetch_add(1, Ordering::Relaxed);
            }
        }
        let tick = lru.tick;
        lru.entries.insert(key, (block.clone(), tick));
        lru.order.insert(tick, key);
        lru.bytes += size;
        self.counters
            .bytes
            .fetch_add(size as u64, Ordering::Relaxed);
        self.counters
            .bytes
            .fetch_sub(evicted as u64, Ordering::Relaxed);
        Ok(block)
    }

    /// Forgets the blocks of data file `uid` (removed by a compaction or a drop).
    pub fn forget_file(&self, uid: u64) {
        let mut lru = self.lru.borrow_mut();
        let lru = &mut *lru;
        let gone: Vec<(BlockKey, u64)> = lru
            .entries
            .iter()
            .filter(|(k, _)| k.0 == uid)
            .map(|(k, (_, used))| (*k, *used))
            .collect();
        let mut freed = 0usize;
        for (key, used) in gone {
            if let Some((block, _)) = lru.entries.remove(&key) {
                freed += block.bytes();
            }
            lru.order.remove(&used);
        }
        lru.bytes -= freed;
        self.counters
            .bytes
            .fetch_sub(freed as u64, Ordering::Relaxed);
    }

    /// Bytes held now.
    pub fn bytes(&self) -> usize {
        self.lru.borrow().bytes
    }

    /// Blocks held now.
    pub fn len(&self) -> usize {
        self.lru.borrow().entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Drop for BlockCache {
    fn drop(&mut self) {
        let bytes = self.lru.get_mut().bytes as u64;
        self.counters.bytes.fetch_sub(bytes, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block(n: usize) -> Decoded {
        Decoded {
            times: (0..n as i64).collect(),
            column: Column::Float(vec![1.0; n]),
        }
    }

    fn read(cache: &BlockCache, key: BlockKey, n: usize, reads: &mut usize) -> Rc<Decoded> {
        cache
            .get_or_read::<()>(key, || {
                *reads += 1;
                Ok(block(n))
            })
            .unwrap()
    }

    #[test]
    fn keeps_blocks_within_the_limit_and_evicts_the_least_recently_used() {
        let counters = Arc::new(BlockCacheCounters::default());
        let size = block(100).bytes();
        let cache = BlockCache::new(size * 3, counters.clone());
        let mut reads = 0;
        for k in 0..3 {
            read(&cache, (1, k), 100, &mut reads);
        }
        assert_eq!((reads, cache.len(), cache.bytes()), (3, 3, size * 3));
        // Use block 0 again: block 1 is now the least recently used.
        read(&cache, (1, 0), 100, &mut reads);
        assert_eq!(reads, 3);
        read(&cache, (1, 3), 100, &mut reads);
        assert_eq!((reads, cache.len()), (4, 3));
        read(&cache, (1, 0), 100, &mut reads);
        read(&cache, (1, 2), 100, &mut reads);
        assert_eq!(reads, 4, "blocks 0 and 2 stayed");
        read(&cache, (1, 1), 100, &mut reads);
        assert_eq!(reads, 5, "block 1 was evicted");
        assert_eq!(counters.hits.load(Ordering::Relaxed), 3);
        assert_eq!(counters.misses.load(Ordering::Relaxed), 5);
        assert_eq!(counters.evictions.load(Ordering::Relaxed), 2);
        assert_eq!(counters.bytes.load(Ordering::Relaxed), (size * 3) as u64);
        assert!(cache.bytes() <= size * 3);
    }

    #[test]
    fn a_block_over_the_limit_is_returned_not_kept_and_errors_are_not_cached() {
        let counters = Arc::new(BlockCacheCounters::default());
        let cache = BlockCache::new(block(10).bytes(), counters.clone());
        let mut reads = 0;
        assert_eq!(read(&cache, (1, 0), 1000, &mut reads).times.len(), 1000);
        assert!(cache.is_empty());
        assert!(cache.get_or_read((1, 1), || Err("bad block")).is_err());
        assert!(cache.is_empty());
        let none = BlockCache::new(0, counters);
        read(&none, (1, 0), 1, &mut reads);
        assert!(none.is_empty());
    }

    #[test]
    fn forgetting_a_file_frees_its_blocks_only() {
        let counters = Arc::new(BlockCacheCounters::default());
        let cache = BlockCache::new(1 << 20, counters.clone());
        let mut reads = 0;
        for k in 0..4 {
            read(&cache, (1, k), 10, &mut reads);
            read(&cache, (2, k), 10, &mut reads);
        }
        cache.forget_file(1);
        assert_eq!(cache.len(), 4);
        assert_eq!(cache.bytes(), 4 * block(10).bytes());
        assert_eq!(counters.bytes.load(Ordering::Relaxed), cache.bytes() as u64);
        read(&cache, (2, 3), 10, &mut reads);
        assert_eq!(reads, 8);
        drop(cache);
        assert_eq!(counters.bytes.load(Ordering::Relaxed), 0);
    }
}
