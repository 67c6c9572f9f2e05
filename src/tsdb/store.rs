//! The shards one core owns.
//!
//! **Invariant:** only the owning core touches a shard's files and memory: a core opens
//! exactly the shard directories with `shard_id % cores == core`, and every write or read
//! of a shard reaches that core (over the mesh if it arrived elsewhere).

use crate::base::LocalFuture;
use crate::lineproto::{ParsedBody, Precision};
use crate::placement;
use crate::tsdb::engine::wal::{RecoveryReport, WalConfig};
use crate::tsdb::engine::Durable;
use crate::tsdb::shard::{ApplyOutcome, Shard, ShardError, ShardMeta, ShardStats, StoredPoint};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A batch of points for one shard: a shared parsed body and the indices of the points
/// that belong to this shard. Moving it between cores moves one `Arc`, not the points.
#[derive(Clone, Debug)]
pub struct ShardBatch {
    pub shard: ShardMeta,
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

/// Per-core store.
pub struct Store {
    core: usize,
    data_dir: PathBuf,
    wal_config: WalConfig,
    shards: HashMap<u64, Shard>,
    directory: Option<Arc<ShardDirectory>>,
}

impl Store {
    /// Opens this core's shards under `DATA_DIR/shards` and replays their WALs.
    pub fn open(
        core: usize,
        cores: usize,
        data_dir: &Path,
        wal_config: WalConfig,
    ) -> std::io::Result<(Store, StoreRecovery)> {
        let shards_dir = data_dir.join("shards");
        std::fs::create_dir_all(&shards_dir)?;
        let mut store = Store {
            core,
            data_dir: data_dir.to_path_buf(),
            wal_config,
            shards: HashMap::new(),
            directory: None,
        };
        let mut recovery = StoreRecovery::default();
        for entry in std::fs::read_dir(&shards_dir)? {
            let entry = entry?;
            let name = entry.file_name();
            let Ok(id) = u64::from_str_radix(&name.to_string_lossy(), 16) else {
                continue;
            };
            if placement::owning_core(id, cores) != core {
                continue;
            }
            match Shard::repair_interrupted_create(&entry.path(), id) {
                Ok(Some(what)) => {
                    tracing::warn!(shard = %entry.path().display(), "{what}");
                    if !entry.path().exists() {
                        continue;
                    }
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(shard = %entry.path().display(), error = %e, "cannot repair an interrupted shard creation")
                }
            }
            match Shard::open(&entry.path(), wal_config) {
                Ok((shard, report)) => {
                    recovery.shards += 1;
                    recovery.wal.segments += report.segments;
                    recovery.wal.records += report.records;
                    recovery.wal.bytes += report.bytes;
                    recovery.wal.truncated_segments += report.truncated_segments;
                    recovery.wal.truncated_bytes += report.truncated_bytes;
                    store.shards.insert(id, shard);
                }
                Err(error) => {
                    // A shard that cannot be read is left on disk, untouched, and named.
                    let message = error.to_string();
                    tracing::error!(shard = %entry.path().display(), %message, "cannot open shard; it stays offline");
                    recovery
                        .failed_shards
                        .push(format!("{}: {message}", entry.path().display()));
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
            d.publish(
                self.core,
                self.shards.values().map(|s| s.meta.clone()).collect(),
            );
        }
    }

    /// Writes a batch to its shard, creating the shard on first use. Returns the outcome
    /// and the durability receiver to await before acknowledging.
    pub fn write(
        &mut self,
        batch: &ShardBatch,
    ) -> Result<(ApplyOutcome, Option<Durable>), ShardError> {
        if !self.shards.contains_key(&batch.shard.id) {
            let shard = Shard::create(&self.data_dir, batch.shard.clone(), self.wal_config)?;
            self.shards.insert(batch.shard.id, shard);
            self.publish();
        }
        let shard = self.shards.get_mut(&batch.shard.id).expect("just ensured");
        shard.write(
            &batch.body,
            &batch.points,
            batch.precision,
            batch.default_time_ns,
        )
    }

    pub fn shard_stats(&self) -> Vec<ShardStats> {
        let mut v: Vec<_> = self.shards.values().map(|s| s.stats()).collect();
        v.sort_by_key(|s| (s.start_ns, s.id));
        v
    }

    /// Resolves once shard `id`'s engine has room for more writes (holds no borrow
    /// of the store).
    pub fn room_in(&self, id: u64) -> Option<LocalFuture<'static, ()>> {
        self.shards.get(&id).map(|s| s.engine().wait_for_room())
    }

    pub fn shards(&self) -> impl Iterator<Item = &Shard> {
        self.shards.values()
    }

    pub fn shards_mut(&mut self) -> impl Iterator<Item = &mut Shard> {
        self.shards.values_mut()
    }

    pub fn shard_mut(&mut self, id: u64) -> Option<&mut Shard> {
        self.shards.get_mut(&id)
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
        for (id, shard) in self.shards.iter_mut() {
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

    /// Takes the shards of a dropped database (or retention policy) out of the store.
    /// The caller finishes the job with [`delete_shards`] without holding the store.
    pub fn remove_shards(&mut self, database: &str, rp: Option<&str>) -> Vec<Shard> {
        let ids: Vec<u64> = self
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
}

/// Closes removed shards' WALs and deletes their directories.
pub async fn delete_shards(data_dir: &Path, shards: Vec<Shard>) -> usize {
    let n = shards.len();
    for shard in shards {
        shard.engine().close().await;
        let dir = Shard::dir(data_dir, shard.meta.id);
        if let Err(e) = std::fs::remove_dir_all(&dir) {
            tracing::warn!(dir = %dir.display(), error = %e, "cannot remove dropped shard directory");
        }
    }
    n
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
