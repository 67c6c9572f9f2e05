//! Retention enforcement of a core (InfluxDB's retention service): every
//! `[retention] check-interval-ms`, the partitions of every shard whose group ended
//! before `now - duration` of its retention policy are dropped whole: the engine
//! closed, the partition's directory removed.
//!
//! **Invariant:** each core decides for its own partitions, and each node for its own
//! shards, by the same rule on the same replicated policy, so no core or node asks
//! another: a group expires everywhere within one check interval (plus clock skew).
//! A point of an expired group is refused by the write path already (beyond
//! retention), so a dropped partition is never made again by a late write.

use crate::base::shutdown::Shutdown;
use crate::meta::{MetaData, MetaStore};
use crate::metrics::CoreStats;
use crate::tsdb::shard::{Shard, ShardMeta};
use crate::tsdb::store::{self, Store};
use std::cell::RefCell;
use std::path::Path;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

/// Whether a shard's group has expired at `now_ns`: its policy keeps a finite duration
/// and the group ended before `now - duration` (InfluxDB's `EndTime.Before(now -
/// Duration)`). A shard of a database or policy that no longer exists is left to the
/// DROP that removed it.
pub fn expired(meta: &MetaData, shard: &ShardMeta, now_ns: i64) -> bool {
    meta.database(&shard.database)
        .and_then(|db| db.retention_policies.get(&shard.retention_policy))
        .and_then(|rp| rp.oldest_kept_ns(now_ns))
        .is_some_and(|oldest| shard.end_ns < oldest)
}

/// Runs this core's checks until shutdown.
pub async fn run(
    store: Rc<RefCell<Store>>,
    meta: Arc<MetaStore>,
    interval: Duration,
    stats: Rc<CoreStats>,
    shutdown: Arc<Shutdown>,
) {
    while !shutdown.is_requested() {
        glommio::timer::sleep(interval).await;
        if shutdown.is_requested() {
            break;
        }
        check(&store, &meta.snapshot(), &stats).await;
    }
}

/// One check: drops this core's expired partitions; returns how many.
pub async fn check(store: &RefCell<Store>, meta: &MetaData, stats: &CoreStats) -> usize {
    let now = crate::base::time::now_ns();
    let (removed, data_dir, field_types) = {
        let mut s = store.borrow_mut();
        let removed = s.remove_where(|shard| expired(meta, &shard.meta, now));
        (removed, s.data_dir().to_path_buf(), s.field_types().clone())
    };
    if removed.is_empty() {
        return 0;
    }
    let bytes: u64 = removed.iter().map(|s| partition_bytes(&data_dir, s)).sum();
    for s in &removed {
        tracing::info!(
            shard = s.meta.id,
            partition = s.partition.index,
            database = %s.meta.database,
            retention_policy = %s.meta.retention_policy,
            end_ns = s.meta.end_ns,
            "retention: dropping an expired shard partition"
        );
    }
    let n = store::delete_shards(&data_dir, removed, &field_types).await;
    CoreStats::add(&stats.retention_partitions_dropped, n as u64);
    CoreStats::add(&stats.retention_bytes_dropped, bytes);
    n
}

/// Bytes a partition holds on disk (its WAL segments and `shard.json`).
fn partition_bytes(data_dir: &Path, shard: &Shard) -> u64 {
    let dir = Shard::dir(data_dir, shard.meta.id, shard.partition.index);
    let files = |d: &Path| -> u64 {
        std::fs::read_dir(d)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| e.metadata().ok())
            .filter(|m| m.is_file())
            .map(|m| m.len())
            .sum()
    };
    files(&dir) + files(&dir.join("wal"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::meta::RetentionPolicySpec;

    const HOUR: i64 = 3_600_000_000_000;

    #[test]
    fn a_group_expires_once_it_ended_before_now_minus_the_duration() {
        let dir = tempfile::tempdir().unwrap();
        let store = MetaStore::open(dir.path(), 1).unwrap();
        store
            .create_database(
                "db",
                Some(&RetentionPolicySpec {
                    name: Some("short".into()),
                    duration_ns: Some(2 * HOUR),
                    replication: Some(1),
                    shard_group_duration_ns: Some(HOUR),
                }),
            )
            .unwrap();
        store.create_database("forever", None).unwrap();
        let meta = store.snapshot();
        let shard = |db: &str, rp: &str, end: i64| ShardMeta {
            id: 1,
            database: db.into(),
            retention_policy: rp.into(),
            start_ns: end - HOUR,
            end_ns: end,
        };
        let now = 100 * HOUR;
        // Ended exactly at now - duration: kept (InfluxDB's Before is strict).
        assert!(!expired(&meta, &shard("db", "short", now - 2 * HOUR), now));
        assert!(expired(
            &meta,
            &shard("db", "short", now - 2 * HOUR - 1),
            now
        ));
        assert!(!expired(&meta, &shard("db", "short", now), now));
        // Infinite policies and unknown databases or policies never expire here.
        assert!(!expired(&meta, &shard("forever", "autogen", 0), now));
        assert!(!expired(&meta, &shard("gone", "short", 0), now));
        assert!(!expired(&meta, &shard("db", "gone", 0), now));
    }
}
