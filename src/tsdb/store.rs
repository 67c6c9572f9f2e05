//! The shard partitions one core owns.
//!
//! **Invariant:** only the owning core touches a partition's files and memory: a core
//! opens exactly the partition directories with `partition % cores == core`
//! ([`placement::partition_core`]), and every write or read of a partition reaches
//! that core (over the mesh if it arrived elsewhere).

use crate::base::LocalFuture;
use crate::lineproto::{ParsedBody, Precision};
use crate::placement;
use crate::tsdb::cache::CacheGauge;
use crate::tsdb::engine::blocks::BlockCache;
use crate::tsdb::engine::wal::{RecoveryReport, WalConfig};
use crate::tsdb::engine::Durable;
use crate::tsdb::index::NodeFieldTypes;
use crate::tsdb::layout;
use crate::tsdb::shard::{
    ApplyOutcome, Partition, Shard, ShardError, ShardMeta, ShardStats, StoredPoint,
};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;

/// A batch of points for one partition of a shard: a shared parsed body and the indices
/// of the points that belong to it. Moving it between cores moves one `Arc`, not the
/// points.
#[derive(Clone, Debug)]
pub struct ShardBatch {
    pub shard: ShardMeta,
    pub partition: Partition,
    pub body: Arc<ParsedBody>,
    pub points: Vec<u32>,
    pub precision: Precision,
    pub default_time_ns: i64,
}

/// A read of stored points (the inspect API).
#[derive(Clone, Debug)]
pub struct ReadRequest {
    pub database: String,
    pub retention_policy: Option<String>,
    pub measurement: Option<Vec<u8>>,
    pub series_key: Option<Vec<u8>>,
    pub start_ns: i64,
    pub end_ns: i64,
}

/// Totals of recovery over all shards of a core.
#[derive(Clone, Debug, Default)]
pub struct StoreRecovery {
    pub shards: usize,
    pub wal: RecoveryReport,
    pub failed_shards: Vec<String>,
}

/// Which shards each core of the node holds (database, policy, time range). The
/// owning core republishes its list whenever its set of shards changes (a new shard
/// group, a drop: rare); any core reads it without a lock to plan a query, so a scan
/// asks only the cores that hold a shard in range — on a node with several cores a
/// small query then often needs no cross-core round trip at all.
pub struct ShardDirectory {
    cores: Vec<arc_swap::ArcSwap<Vec<ShardMeta>>>,
}

impl ShardDirectory {
    pub fn new(cores: usize) -> Arc<ShardDirectory> {
        Arc::new(ShardDirectory {
            cores: (0..cores).map(|_| Default::default()).collect(),
        })
    }

    fn publish(&self, core: usize, shards: Vec<ShardMeta>) {
        if let Some(slot) = self.cores.get(core) {
            slot.store(Arc::new(shards));
        }
    }

    /// Cores holding a shard of `database` (and `rp`, when given) that overlaps
    /// `[start, end]` (and is one of `ids`, when given), in core order.
    pub fn cores_holding(
        &self,
        database: &str,
        rp: Option<&str>,
        (start, end): (i64, i64),
        ids: Option<&[u64]>,
    ) -> Vec<usize> {
        (0..self.cores.len())
            .filter(|&core| {
                self.cores[core].load().iter().any(|m| {
                    m.database == database
                        && rp.is_none_or(|rp| rp == m.retention_policy)
                        && m.end_ns > start
                        && m.start_ns <= end
                        && ids.is_none_or(|ids| ids.contains(&m.id))
                })
            })
            .collect()
    }
}

/// A partition's key in a store: (shard id, partition index).
pub type PartitionKey = (u64, u32);

/// What the flush task looks at in a partition.
#[derive(Clone, Copy, Debug)]
pub struct HeadState {
    pub key: PartitionKey,
    /// Heap bytes of the head (and heads being flushed).
    pub bytes: usize,
    pub last_write: std::time::Instant,
    /// The head or the WAL holds something no file or manifest does.
    pub needs_flush: bool,
    /// Bytes of the partition's WAL segments on disk.
    pub wal_bytes: u64,
}

/// Per-core store: this core's partitions of every shard.
pub struct Store {
    core: usize,
    data_dir: PathBuf,
    wal_config: WalConfig,
    shards: HashMap<PartitionKey, Shard>,
    directory: Option<Arc<ShardDirectory>>,
    /// Field types per shard, shared with the other cores' partitions.
    field_types: Arc<NodeFieldTypes>,
    /// Head bytes per core and the `cache-max-bytes` limit, node-wide.
    cache: Option<Arc<CacheGauge>>,
    /// This core's cache of decoded data file blocks, shared by its partitions.
    block_cache: Option<Rc<BlockCache>>,
}

impl Store {
    /// Opens this core's partitions under `DATA_DIR/shards` and replays their WALs.
    pub fn open(
        core: usize,
        cores: usize,
        data_dir: &Path,
        wal_config: WalConfig,
        field_types: Arc<NodeFieldTypes>,
    ) -> std::io::Result<(Store, StoreRecovery)> {
        std::fs::create_dir_all(data_dir.join("shards"))?;
        let mut store = Store {
            core,
            data_dir: data_dir.to_path_buf(),
            wal_config,
            shards: HashMap::new(),
            directory: None,
            field_types,
            cache: None,
            block_cache: None,
        };
        let mut recovery = StoreRecovery::default();
        for found in layout::partitions_on_disk(data_dir)? {
            if placement::partition_core(found.partition, cores) != core {
                continue;
            }
            let (id, dir) = (found.shard_id, found.dir);
            match Shard::repair_interrupted_create(&dir, id) {
                Ok(Some(what)) => {
                    tracing::warn!(shard = %dir.display(), "{what}");
                    if !dir.exists() {
                        continue;
                    }
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(shard = %dir.display(), error = %e, "cannot repair an interrupted shard creation")
                }
            }
            match Shard::open(&dir, wal_config) {
                Ok((mut shard, report)) => {
                    recovery.shards += 1;
                    recovery.wal.segments += report.segments;
                    recovery.wal.records += report.records;
                    recovery.wal.bytes += report.bytes;
                    recovery.wal.truncated_segments += report.truncated_segments;
                    recovery.wal.truncated_bytes += report.truncated_bytes;
                    if shard.meta.id != id || shard.partition.index != found.partition {
                        tracing::error!(shard = %dir.display(), "shard.json names another shard or partition than its directory; it stays offline");
                        recovery.failed_shards.push(format!(
                            "{}: shard.json names another shard or partition",
                            dir.display()
                        ));
                        continue;
                    }
                    shard.share_field_types(store.field_types.of(id));
                    store.shards.insert((id, found.partition), shard);
                }
                Err(error) => {
                    // A shard that cannot be read is left on disk, untouched, and named.
                    let message = error.to_string();
                    tracing::error!(shard = %dir.display(), %message, "cannot open shard; it stays offline");
                    recovery
                        .failed_shards
                        .push(format!("{}: {message}", dir.display()));
                }
            }
        }
        Ok((store, recovery))
    }

    pub fn core(&self) -> usize {
        self.core
    }

    /// Publishes this core's shards to `directory`, now and on every change.
    pub fn attach_directory(&mut self, directory: Arc<ShardDirectory>) {
        self.directory = Some(directory);
        self.publish();
    }

    fn publish(&self) {
        if let Some(d) = &self.directory {
            let mut metas: Vec<ShardMeta> = Vec::new();
            let mut seen = std::collections::HashSet::new();
            for s in self.shards.values() {
                if seen.insert(s.meta.id) {
                    metas.push(s.meta.clone());
                }
            }
            d.publish(self.core, metas);
        }
    }

    /// Shares the node's cache gauge: writes are refused while this core's heads are
    /// past its limit.
    pub fn attach_cache_gauge(&mut self, gauge: Arc<CacheGauge>) {
        self.cache = Some(gauge);
    }

    /// Makes every partition (and every one made later) read data file blocks through
    /// `cache`.
    pub fn attach_block_cache(&mut self, cache: Rc<BlockCache>) {
        for shard in self.shards.values_mut() {
            shard.engine_mut().set_block_cache(cache.clone());
        }
        self.block_cache = Some(cache);
    }

    /// Each partition's head bytes, last write, WAL bytes, and whether it needs a flush.
    pub fn head_bytes(&self) -> Vec<HeadState> {
        self.shards
            .iter()
            .map(|(k, s)| {
                let e = s.engine();
                HeadState {
                    key: *k,
                    bytes: e.head_bytes(),
                    last_write: e.last_write(),
                    needs_flush: e.needs_flush(),
                    wal_bytes: e.wal().stats().disk_bytes,
                }
            })
            .collect()
    }

    /// Writes a batch to its partition, creating the partition on first use. Returns
    /// the outcome and the durability receiver to await before acknowledging.
    /// Refused while the core's heads are past `cache-max-bytes`.
    pub fn write(
        &mut self,
        batch: &ShardBatch,
    ) -> Result<(ApplyOutcome, Option<Durable>), ShardError> {
        let mut cache_bytes = 0;
        if let Some(gauge) = self.cache.as_ref().filter(|g| g.limit() > 0) {
            cache_bytes = self.shards.values().map(|s| s.engine().head_bytes()).sum();
            gauge.set(self.core, cache_bytes);
            if cache_bytes > gauge.limit() {
                gauge.reject();
                return Err(ShardError::CacheFull {
                    bytes: cache_bytes,
                    limit: gauge.limit(),
                });
            }
        }
        let key = (batch.shard.id, batch.partition.index);
        if !self.shards.contains_key(&key) {
            // Another partition of the same id here must be the same shard.
            if let Some(other) = self.shards.values().find(|s| s.meta.id == batch.shard.id) {
                check_same_shard(&other.meta, &batch.shard)?;
            }
            let mut shard = Shard::create(
                &self.data_dir,
                batch.shard.clone(),
                batch.partition,
                self.wal_config,
            )?;
            shard.share_field_types(self.field_types.of(batch.shard.id));
            if let Some(cache) = &self.block_cache {
                shard.engine_mut().set_block_cache(cache.clone());
            }
            self.shards.insert(key, shard);
            self.publish();
        }
        let shard = self.shards.get_mut(&key).expect("just ensured");
        check_same_shard(&shard.meta, &batch.shard)?;
        let before = shard.engine().head_bytes();
        let written = shard.write(
            &batch.body,
            &batch.points,
            batch.precision,
            batch.default_time_ns,
        );
        if let Some(gauge) = self.cache.as_ref().filter(|g| g.limit() > 0) {
            // So the HTTP layer refuses the next write at once (503) when this one
            // filled the cache.
            let after = cache_bytes + shard.engine().head_bytes();
            gauge.set(self.core, after.saturating_sub(before));
        }
        written
    }

    pub fn shard_stats(&self) -> Vec<ShardStats> {
        let mut v: Vec<_> = self.shards.values().map(|s| s.stats()).collect();
        v.sort_by_key(|s| (s.start_ns, s.id, s.partition));
        v
    }

    /// Resolves once partition `key`'s engine has room for more writes (holds no
    /// borrow of the store).
    pub fn room_in(&self, key: PartitionKey) -> Option<LocalFuture<'static, ()>> {
        self.shards.get(&key).map(|s| s.engine().wait_for_room())
    }

    /// This core's partitions, in no particular order.
    pub fn shards(&self) -> impl Iterator<Item = &Shard> {
        self.shards.values()
    }

    pub fn shards_mut(&mut self) -> impl Iterator<Item = &mut Shard> {
        self.shards.values_mut()
    }

    /// This core's partitions' keys, sorted.
    pub fn keys(&self) -> Vec<PartitionKey> {
        let mut keys: Vec<_> = self.shards.keys().copied().collect();
        keys.sort_unstable();
        keys
    }

    pub fn shard_mut(&mut self, key: PartitionKey) -> Option<&mut Shard> {
        self.shards.get_mut(&key)
    }

    /// Reads points from every shard of `database` (and `rp`, if given).
    pub fn read(
        &mut self,
        database: &str,
        rp: Option<&str>,
        measurement: Option<&[u8]>,
        series_key: Option<&[u8]>,
        start_ns: i64,
        end_ns: i64,
    ) -> Vec<(u64, StoredPoint)> {
        let mut out = Vec::new();
        for ((id, _), shard) in self.shards.iter_mut() {
            if shard.meta.database != database
                || rp.is_some_and(|r| r != shard.meta.retention_policy)
                || shard.meta.end_ns <= start_ns
                || shard.meta.start_ns > end_ns
            {
                continue;
            }
            for p in shard.read(measurement, series_key, start_ns, end_ns) {
                out.push((*id, p));
            }
        }
        out
    }

    /// Takes the partitions `doomed` picks out of the store (retention); the caller
    /// finishes the job with [`delete_shards`] without holding the store.
    pub fn remove_where(&mut self, doomed: impl Fn(&Shard) -> bool) -> Vec<Shard> {
        let keys: Vec<PartitionKey> = self
            .shards
            .iter()
            .filter(|(_, s)| doomed(s))
            .map(|(k, _)| *k)
            .collect();
        if keys.is_empty() {
            return Vec::new();
        }
        let removed = keys.iter().filter_map(|k| self.shards.remove(k)).collect();
        self.publish();
        removed
    }

    /// Takes the partitions of a dropped database (or retention policy) out of the
    /// store. The caller finishes the job with [`delete_shards`] without holding the
    /// store.
    pub fn remove_shards(&mut self, database: &str, rp: Option<&str>) -> Vec<Shard> {
        let ids: Vec<PartitionKey> = self
            .shards
            .iter()
            .filter(|(_, s)| {
                s.meta.database == database && rp.is_none_or(|r| r == s.meta.retention_policy)
            })
            .map(|(id, _)| *id)
            .collect();
        let removed = ids.iter().filter_map(|id| self.shards.remove(id)).collect();
        self.publish();
        removed
    }

    /// Takes the partitions of shard `id` out of the store (DROP SHARD); the caller
    /// finishes the job with [`delete_shards`].
    pub fn remove_shard(&mut self, id: u64) -> Vec<Shard> {
        self.remove_where(|s| s.meta.id == id)
    }

    /// Closes every shard's engine (at shutdown; holds no borrow of the store while
    /// it waits).
    pub fn close_all(&self) -> impl std::future::Future<Output = ()> + 'static {
        let closing: Vec<_> = self.shards.values().map(|s| s.engine().close()).collect();
        async move {
            for close in closing {
                close.await;
            }
        }
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    pub fn field_types(&self) -> &Arc<NodeFieldTypes> {
        &self.field_types
    }
}

/// Closes removed partitions' WALs and deletes their directories, and a shard's
/// directory once its last partition is gone (whichever core removes the last one;
/// `remove_dir` refuses a directory another partition still holds). Returns the
/// partitions removed.
pub async fn delete_shards(
    data_dir: &Path,
    shards: Vec<Shard>,
    field_types: &NodeFieldTypes,
) -> usize {
    let n = shards.len();
    for shard in shards {
        shard.engine().close().await;
        let (id, partition) = (shard.meta.id, shard.partition.index);
        drop(shard);
        field_types.forget_unused(id);
        let dir = Shard::dir(data_dir, id, partition);
        if let Err(e) = std::fs::remove_dir_all(&dir) {
            tracing::warn!(dir = %dir.display(), error = %e, "cannot remove dropped shard directory");
        }
        let _ = std::fs::remove_dir(layout::shard_dir(data_dir, id));
    }
    n
}

/// Refuses a batch whose shard identity differs from the partition's with the same id
/// (an id collision), instead of mixing two shards.
fn check_same_shard(have: &ShardMeta, wanted: &ShardMeta) -> Result<(), ShardError> {
    if have.database == wanted.database
        && have.retention_policy == wanted.retention_policy
        && have.start_ns == wanted.start_ns
    {
        return Ok(());
    }
    let name =
        |m: &ShardMeta| format!("{}.{} group {}", m.database, m.retention_policy, m.start_ns);
    Err(ShardError::IdTaken {
        id: wanted.id,
        wanted: name(wanted),
        taken: name(have),
    })
}

/// Waits until a batch appended to shard `shard_id` (whose append returned `durable`)
/// is durable.
pub async fn wait_durable(shard_id: u64, durable: Option<Durable>) -> Result<(), ShardError> {
    if let Some(durable) = durable {
        durable.await.map_err(|_| {
            ShardError::from(crate::tsdb::engine::wal::WalError::Closed {
                dir: format!("shard {shard_id}"),
            })
        })??;
    }
    Ok(())
}
