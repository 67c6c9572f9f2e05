//! The flush task of a core: writes its partitions' heads into data files, so memory
//! stays bounded and the WAL is cut (DESIGN section 6, `[storage]`).
//!
//! Every [`CHECK_INTERVAL`] it looks at the core's head bytes: past
//! `cache-snapshot-bytes` it flushes the largest heads until the core is back under
//! it; a partition with no write for `cache-snapshot-write-cold-ms` is flushed
//! whatever its size. One flush (see [`crate::tsdb::engine::storage`]):
//!
//! 1. freeze: the head moves aside (reads still see it), the WAL segment ends;
//! 2. the WAL records the frozen head holds are durable (the segment boundary);
//! 3. encode the frozen heads as one data file image (on the core);
//! 4. write it to `<n>.scd.tmp` (glommio DMA file; buffered where the filesystem
//!    refuses O_DIRECT), fsync, rename to `<n>.scd`, fsync the directory;
//! 5. install: the file replaces the frozen heads in reads;
//! 6. write the manifest naming it (tmp, fsync, rename, fsync);
//! 7. remove the WAL segments below the boundary.
//!
//! A crash between any two steps loses nothing: until step 6 is durable the WAL
//! segments stay and a restart replays them (removing the unnamed file); after it the
//! manifest names a complete file. A failed step leaves the frozen heads in memory
//! and the next flush takes them along.
//!
//! Past `cache-max-bytes` the core's [`CacheGauge`] entry says so and writes get 503
//! ("cache-max-memory-size exceeded", as InfluxDB) until a flush frees room.

use crate::base::shutdown::Shutdown;
use crate::tsdb::cache::CacheGauge;
use crate::tsdb::store::{PartitionKey, Store};
use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How often a core looks at its heads.
pub const CHECK_INTERVAL: Duration = Duration::from_millis(crate::limits::FLUSH_CHECK_INTERVAL_MS);

/// `[storage]` settings the flush task follows.
#[derive(Clone, Copy, Debug)]
pub struct FlushConfig {
    pub snapshot_bytes: usize,
    pub cold: Duration,
}

/// Runs a core's flushes until shutdown.
pub async fn run(
    store: Rc<RefCell<Store>>,
    config: FlushConfig,
    gauge: Arc<CacheGauge>,
    shutdown: Arc<Shutdown>,
) {
    while !shutdown.is_requested() {
        glommio::timer::sleep(CHECK_INTERVAL).await;
        let heads = store.borrow().head_bytes();
        let total: usize = heads.iter().map(|h| h.1).sum();
        let core = store.borrow().core();
        gauge.set(core, total);
        let mut doomed: Vec<PartitionKey> = Vec::new();
        if total > config.snapshot_bytes {
            // The largest heads first, until what is left is under the threshold.
            let mut by_size = heads.clone();
            by_size.sort_by_key(|h| std::cmp::Reverse(h.1));
            let mut left = total;
            for (key, bytes, _, _) in by_size {
                if left <= config.snapshot_bytes / 2 || bytes == 0 {
                    break;
                }
                doomed.push(key);
                left -= bytes;
            }
        }
        for (key, _, last_write, needs_flush) in &heads {
            if *needs_flush && last_write.elapsed() >= config.cold && !doomed.contains(key) {
                doomed.push(*key);
            }
        }
        for key in doomed {
            if shutdown.is_requested() {
                break;
            }
            match flush_partition(&store, key).await {
                Ok(Some(bytes)) => {
                    gauge.flushes.fetch_add(1, Ordering::Relaxed);
                    gauge.flushed_bytes.fetch_add(bytes, Ordering::Relaxed);
                }
                Ok(None) => {}
                Err(message) => {
                    gauge.flush_failures.fetch_add(1, Ordering::Relaxed);
                    tracing::error!(shard = key.0, partition = key.1, %message, "flush failed; the head stays in memory and the WAL keeps its records; retried later");
                }
            }
            let total: usize = store.borrow().head_bytes().iter().map(|h| h.1).sum();
            gauge.set(core, total);
        }
    }
}

/// Where a flush stops early: a test's crash between two steps (see the module doc).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Stop {
    AfterFreeze,
    AfterFileWritten,
    AfterInstall,
    AfterManifest,
    Never,
}

/// Flushes one partition's head into a data file (the steps in the module doc).
/// Returns the file's bytes, or `None` when there was nothing to flush (or the
/// partition went away meanwhile).
pub async fn flush_partition(
    store: &RefCell<Store>,
    key: PartitionKey,
) -> Result<Option<u64>, String> {
    flush_until(store, key, Stop::Never).await
}

/// [`flush_partition`], abandoned as a crash would leave it after step `stop`.
pub async fn flush_until(
    store: &RefCell<Store>,
    key: PartitionKey,
    stop: Stop,
) -> Result<Option<u64>, String> {
    let started = Instant::now();
    let ticket = match store.borrow_mut().shard_mut(key) {
        Some(shard) => shard.engine_mut().freeze(),
        None => return Ok(None),
    };
    let Some(ticket) = ticket else {
        return Ok(None);
    };
    let abandon = |why: String| {
        if let Some(shard) = store.borrow_mut().shard_mut(key) {
            shard.engine_mut().abandon_flush();
        }
        why
    };
    let boundary = ticket
        .roll
        .await
        .map_err(|e| abandon(format!("cannot end the WAL segment: {e}")))?;
    if stop == Stop::AfterFreeze {
        return Ok(None);
    }
    let image = match store.borrow_mut().shard_mut(key) {
        Some(shard) => shard.encode_flush(boundary),
        None => return Ok(None),
    };
    let encoded = started.elapsed();
    let Some(mut image) = image else {
        // Only deletes since the last flush: their tombstones go into the manifest.
        let (manifest, dir, wal) = match store.borrow_mut().shard_mut(key) {
            Some(shard) => {
                let engine = shard.engine_mut();
                (
                    engine.manifest(),
                    engine.dir().to_path_buf(),
                    engine.wal().clone(),
                )
            }
            None => return Ok(None),
        };
        finish(store, key, manifest, &dir, &wal, boundary).await?;
        return Ok(None);
    };
    let bytes = std::mem::take(&mut image.bytes);
    let size = image.size;
    let file = match write_file(&image.tmp_path, &image.path, bytes).await {
        Ok(file) => file,
        Err(e) => {
            let tmp = image.tmp_path.clone();
            let _ = glommio::executor()
                .spawn_blocking(move || std::fs::remove_file(tmp))
                .await;
            return Err(abandon(format!(
                "cannot write {}: {e}",
                image.path.display()
            )));
        }
    };
    if stop == Stop::AfterFileWritten {
        return Ok(None);
    }
    let values = image.values;
    let (manifest, dir, wal) = match store.borrow_mut().shard_mut(key) {
        Some(shard) => {
            let engine = shard.engine_mut();
            let manifest = engine.install(image, file);
            (manifest, engine.dir().to_path_buf(), engine.wal().clone())
        }
        None => return Ok(None),
    };
    if stop == Stop::AfterInstall {
        return Ok(None);
    }
    if stop == Stop::AfterManifest {
        let written = glommio::executor()
            .spawn_blocking(move || manifest.write(&dir))
            .await;
        return written.map(|()| None).map_err(|e| e.to_string());
    }
    let wal_bytes = finish(store, key, manifest, &dir, &wal, boundary).await?;
    tracing::debug!(
        shard = key.0,
        partition = key.1,
        values,
        file_bytes = size,
        wal_bytes_removed = wal_bytes,
        encode_ms = encoded.as_millis() as u64,
        total_ms = started.elapsed().as_millis() as u64,
        "flushed"
    );
    Ok(Some(size))
}

/// The last steps of a flush: writes the manifest, then removes the WAL segments
/// below `boundary`, then frees the engine's flush slot. Returns the WAL bytes removed.
async fn finish(
    store: &RefCell<Store>,
    key: PartitionKey,
    manifest: crate::tsdb::engine::manifest::Manifest,
    dir: &Path,
    wal: &crate::tsdb::engine::wal::Wal,
    boundary: u64,
) -> Result<u64, String> {
    let written = {
        let dir = dir.to_path_buf();
        glommio::executor()
            .spawn_blocking(move || manifest.write(&dir))
            .await
    };
    let done = || {
        if let Some(shard) = store.borrow_mut().shard_mut(key) {
            shard.engine_mut().flush_done();
        }
    };
    if let Err(e) = written {
        done();
        return Err(format!(
            "cannot write the manifest in {}: {e} (the WAL keeps the records)",
            dir.display()
        ));
    }
    let removed = wal.remove_below(boundary).await;
    done();
    Ok(match removed {
        Ok(n) => n,
        Err(e) => {
            tracing::warn!(dir = %dir.display(), error = %e, "cannot remove WAL segments a flush covers; removed at the next start");
            0
        }
    })
}

/// Writes `bytes` to `tmp` durably, renames it to `path`, syncs the directory, and
/// opens the file for reads.
async fn write_file(tmp: &Path, path: &Path, bytes: Vec<u8>) -> std::io::Result<std::fs::File> {
    use futures_lite::AsyncWriteExt;
    let dir: PathBuf = path
        .parent()
        .expect("data files live in a directory")
        .into();
    {
        let dir = dir.clone();
        glommio::executor()
            .spawn_blocking(move || std::fs::create_dir_all(dir))
            .await?;
    }
    let bytes = match glommio::io::DmaFile::create(tmp).await {
        Ok(file) => {
            let mut writer = glommio::io::DmaStreamWriterBuilder::new(file)
                .with_buffer_size(crate::limits::DATA_FILE_WRITE_BUFFER_BYTES)
                .with_write_behind(2)
                .build();
            writer.write_all(&bytes).await?;
            // Closing flushes the tail, fsyncs and truncates to the exact length.
            writer.close().await?;
            None
        }
        // O_DIRECT refused (tmpfs and friends): buffered, off the core.
        Err(_) => Some(bytes),
    };
    let (tmp, path) = (tmp.to_path_buf(), path.to_path_buf());
    glommio::executor()
        .spawn_blocking(move || -> std::io::Result<std::fs::File> {
            if let Some(bytes) = bytes {
                use std::io::Write;
                let mut f = std::fs::File::create(&tmp)?;
                f.write_all(&bytes)?;
                f.sync_all()?;
            }
            std::fs::rename(&tmp, &path)?;
            std::fs::File::open(&dir)?.sync_all()?;
            std::fs::File::open(&path)
        })
        .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lineproto::{self, Precision};
    use crate::tsdb::engine::wal::WalConfig;
    use crate::tsdb::shard::{Partition, ShardMeta, Value};
    use crate::tsdb::store::ShardBatch;

    fn config() -> WalConfig {
        WalConfig {
            fsync_delay: Duration::ZERO,
            segment_size_bytes: 1 << 20,
            max_pending_bytes: 1 << 20,
        }
    }

    fn open(dir: &Path) -> Store {
        let types = Arc::new(crate::tsdb::index::NodeFieldTypes::default());
        Store::open(0, 1, dir, config(), types).unwrap().0
    }

    async fn write(store: &RefCell<Store>, lines: &str) {
        let body = Arc::new(lineproto::parse(
            bytes::Bytes::from(lines.to_string()),
            Precision::Nanosecond,
            0,
        ));
        let batch = ShardBatch {
            shard: ShardMeta {
                id: 1,
                database: "db".into(),
                retention_policy: "autogen".into(),
                start_ns: 0,
                end_ns: 1 << 62,
            },
            partition: Partition::WHOLE,
            points: (0..body.points.len() as u32).collect(),
            body,
            precision: Precision::Nanosecond,
            default_time_ns: 0,
        };
        let (_, durable) = store.borrow_mut().write(&batch).unwrap();
        durable.unwrap().await.unwrap().unwrap();
    }

    fn contents(store: &RefCell<Store>) -> Vec<(String, String, i64, Value)> {
        let mut store = store.borrow_mut();
        let shard = store.shard_mut((1, 0)).unwrap();
        shard
            .read(None, None, i64::MIN, i64::MAX)
            .into_iter()
            .map(|p| (p.series_key, p.field, p.timestamp, p.value))
            .collect()
    }

    /// A crash after any step of a flush (and a restart) loses no acknowledged value
    /// and keeps last-write-wins between what the file holds and what came later.
    #[test]
    fn a_flush_cut_short_after_any_step_loses_nothing() {
        for stop in [
            Stop::AfterFreeze,
            Stop::AfterFileWritten,
            Stop::AfterInstall,
            Stop::AfterManifest,
            Stop::Never,
        ] {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().to_path_buf();
            glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
                .spawn(move || async move {
                    let store = RefCell::new(open(&path));
                    write(&store, "m,h=a v=1,s=\"x\" 10\nm,h=b v=2 10\nm,h=a v=3 20\n").await;
                    flush_until(&store, (1, 0), stop).await.unwrap();
                    // Newer writes: one overwrites a value the flush took.
                    write(&store, "m,h=a v=9 10\nm,h=c v=4 30\n").await;
                    let before = contents(&store);
                    drop(store);
                    let store = RefCell::new(open(&path));
                    assert_eq!(contents(&store), before, "{stop:?}");
                    assert_eq!(before.len(), 5, "{before:?}");
                    assert!(before.contains(&("m,h=a".into(), "v".into(), 10, Value::Float(9.0))));
                    // The next flush after the restart finishes the job.
                    flush_partition(&store, (1, 0)).await.unwrap();
                    drop(store);
                    let store = RefCell::new(open(&path));
                    assert_eq!(contents(&store), before, "{stop:?}, flushed again");
                    let shard_dir = crate::tsdb::layout::partition_dir(&path, 1, 0);
                    let wal: Vec<_> = std::fs::read_dir(shard_dir.join("wal")).unwrap().collect();
                    assert!(wal.is_empty(), "{stop:?}: {wal:?}");
                    let data: Vec<_> = std::fs::read_dir(shard_dir.join("data"))
                        .unwrap()
                        .flatten()
                        .map(|e| e.file_name().to_string_lossy().into_owned())
                        .collect();
                    assert!(
                        data.iter().all(|n| n.ends_with(".scd")),
                        "{stop:?}: {data:?}"
                    );
                })
                .unwrap()
                .join()
                .unwrap();
        }
    }
}
