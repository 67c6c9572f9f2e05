//! The flush task of a core: writes its partitions' heads into data files, so memory
//! stays bounded and the WAL is cut (DESIGN section 6, `[storage]`).
//!
//! Every [`CHECK_INTERVAL`] it looks at the core's head bytes: past
//! `cache-snapshot-bytes` it flushes the largest heads until the core is back under
//! it; a partition with no write for `cache-snapshot-write-cold-ms`, or whose WAL
//! passed `cache-snapshot-wal-bytes`, is flushed whatever its head's size. One flush
//! (see [`crate::tsdb::engine::storage`]):
//!
//! 1. freeze: the head moves aside (reads still see it), the WAL segment ends;
//! 2. the WAL records the frozen head holds are durable (the segment boundary);
//! 3. encode the frozen heads as one data file, a step of [`FLUSH_STEP_VALUES`] at a
//!    time with pauses between (so writes and queries go on), its bytes streaming to
//! 4. `<n>.scd.tmp` (glommio DMA file; buffered off the core where the filesystem
//!    refuses O_DIRECT); fsync, rename to `<n>.scd`, fsync the directory;
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
use crate::metrics::{CoreTimers, Timer};
use crate::tsdb::cache::CacheGauge;
use crate::tsdb::engine::CompactionJob;
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
    /// A partition whose WAL on disk passes this many bytes is flushed (0: never).
    pub wal_bytes: u64,
    /// Compactions write at most this many bytes per second.
    pub compaction_bytes_per_second: u64,
    /// A partition with no write for this long gets a full compaction.
    pub full_compaction_cold: Duration,
}

/// Values a flush encodes between two looks at the rest of the core's work (about a
/// millisecond): a 64 MiB head is encoded in many short steps, not one long stall.
const FLUSH_STEP_VALUES: usize = 20_000;

/// Values a compaction merges between two looks at the rest of the core's work
/// (about a millisecond of work).
const COMPACTION_STEP_VALUES: usize = 5_000;

/// Core time a compaction takes per flush check ([`CHECK_INTERVAL`]) at most: a fifth
/// of the core. Measured (results/compaction-p99-2026-12-06.md): with the byte budget
/// alone a compaction took most of the core between checks, delayed flushes and
/// raised the ingest p99 by 20-65%.
const COMPACTION_CPU_PER_CHECK: Duration = Duration::from_millis(20);

/// Core time per check while the partition being compacted has a backlog (more than
/// [`BACKLOG_FILES`] files: compactions at a fifth of the core are not keeping up
/// with its flushes): half the core, so files stop piling up, at some cost in ingest
/// latency.
const COMPACTION_CPU_BACKLOG: Duration = Duration::from_millis(50);
const BACKLOG_FILES: usize = 2 * crate::tsdb::engine::storage::COMPACT_MAX_FILES;

/// The core time a compaction may take per check in a partition of `files` files.
fn compaction_cpu_cap(files: usize) -> Duration {
    if files > BACKLOG_FILES {
        COMPACTION_CPU_BACKLOG
    } else {
        COMPACTION_CPU_PER_CHECK
    }
}

/// Runs a core's flushes and compactions until shutdown. One task does both, so
/// their manifest writes never race; a compaction advances in small steps between
/// the flush checks, at most `compaction_bytes_per_second` of output.
pub async fn run(
    store: Rc<RefCell<Store>>,
    config: FlushConfig,
    gauge: Arc<CacheGauge>,
    timers: Rc<CoreTimers>,
    shutdown: Arc<Shutdown>,
) {
    let mut compaction: Option<Compacting> = None;
    let mut retries = Retries::default();
    while !shutdown.is_requested() {
        glommio::timer::sleep(CHECK_INTERVAL).await;
        flush_due(&store, &config, &gauge, &timers, &shutdown, &mut retries).await;
        if compaction.is_none() && !shutdown.is_requested() {
            compaction = start_compaction(&store, &config).await;
        }
        if let Some(mut running) = compaction.take() {
            let budget = (config.compaction_bytes_per_second as u128 * CHECK_INTERVAL.as_micros()
                / 1_000_000) as u64;
            match advance(&store, &mut running, budget.max(1)).await {
                Ok(false) => compaction = Some(running),
                Ok(true) => {
                    timers.record(Timer::Compaction, running.started);
                    gauge.compactions.fetch_add(1, Ordering::Relaxed);
                    gauge
                        .compaction_bytes
                        .fetch_add(running.written, Ordering::Relaxed);
                }
                Err(message) => {
                    gauge.compaction_failures.fetch_add(1, Ordering::Relaxed);
                    tracing::error!(shard = running.key.0, partition = running.key.1, %message, "compaction failed; its inputs stay in use");
                    abandon(&store, running).await;
                }
            }
        }
    }
    if let Some(running) = compaction {
        abandon(&store, running).await;
    }
}

/// Flushes what is due on this core: the largest heads while the core is past
/// `cache-snapshot-bytes`, and cold partitions.
async fn flush_due(
    store: &RefCell<Store>,
    config: &FlushConfig,
    gauge: &CacheGauge,
    timers: &CoreTimers,
    shutdown: &Shutdown,
    retries: &mut Retries,
) {
    let now = Instant::now();
    let heads: Vec<_> = store
        .borrow()
        .head_bytes()
        .into_iter()
        .filter(|h| retries.due(h.key, now))
        .collect();
    let total: usize = heads.iter().map(|h| h.bytes).sum();
    let core = store.borrow().core();
    gauge.set(core, total);
    let mut doomed: Vec<PartitionKey> = Vec::new();
    if total > config.snapshot_bytes {
        // The largest heads first, until what is left is under the threshold.
        let mut by_size = heads.clone();
        by_size.sort_by_key(|h| std::cmp::Reverse(h.bytes));
        let mut left = total;
        for h in by_size {
            if left <= config.snapshot_bytes / 2 || h.bytes == 0 {
                break;
            }
            doomed.push(h.key);
            left -= h.bytes;
        }
    }
    for h in &heads {
        let cold = h.last_write.elapsed() >= config.cold;
        // Sealed heads hold ~10x more values than the WAL's raw lines per byte: the
        // WAL's size bounds what a restart replays.
        let long_wal = config.wal_bytes > 0 && h.wal_bytes > config.wal_bytes;
        if h.needs_flush && (cold || long_wal) && !doomed.contains(&h.key) {
            doomed.push(h.key);
        }
    }
    let mut flushed = 0;
    for key in doomed {
        if shutdown.is_requested() {
            break;
        }
        let started = Instant::now();
        let result = flush_partition(store, key).await;
        retries.record(key, result.is_ok(), Instant::now());
        match result {
            Ok(Some(bytes)) => {
                flushed += 1;
                timers.record(Timer::Flush, started);
                gauge.flushes.fetch_add(1, Ordering::Relaxed);
                gauge.flushed_bytes.fetch_add(bytes, Ordering::Relaxed);
            }
            Ok(None) => {}
            Err(message) => {
                gauge.flush_failures.fetch_add(1, Ordering::Relaxed);
                tracing::error!(shard = key.0, partition = key.1, %message, "flush failed; the head stays in memory and the WAL keeps its records; retried later");
            }
        }
        let total: usize = store.borrow().head_bytes().iter().map(|h| h.bytes).sum();
        gauge.set(core, total);
    }
    if flushed > 0 {
        release_free_memory();
    }
}

/// When a partition whose flush failed (a full disk, an I/O error) is tried again:
/// after 1 s, doubling up to [`RETRY_MAX`], so a lasting failure is retried and
/// logged a few times a minute, not every check.
#[derive(Default)]
struct Retries {
    waits: std::collections::HashMap<PartitionKey, (Instant, Duration)>,
}

const RETRY_MIN: Duration = Duration::from_secs(1);
const RETRY_MAX: Duration = Duration::from_secs(30);

impl Retries {
    /// Whether partition `key` may be flushed at `now`.
    fn due(&self, key: PartitionKey, now: Instant) -> bool {
        self.waits.get(&key).is_none_or(|(next, _)| now >= *next)
    }

    /// Records a flush of `key` that ended at `now`.
    fn record(&mut self, key: PartitionKey, ok: bool, now: Instant) {
        if ok {
            self.waits.remove(&key);
            return;
        }
        let wait = self
            .waits
            .get(&key)
            .map_or(RETRY_MIN, |(_, w)| (*w * 2).min(RETRY_MAX));
        self.waits.insert(key, (now + wait, wait));
    }
}

/// Hands the memory a flush freed back to the system. glibc's allocator keeps freed
/// chunks in per-thread arenas: after flushing 64 MB heads a node held ~260 MB
/// resident with ~25 MB in use (measured, results/storage-2026-12-06.md) until
/// `malloc_trim`. It walks every arena (a few ms), so it runs once per round of
/// flushes, not per flush.
fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns free memory to the system; no pointer is
    // passed and none handed out before is invalidated.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// A compaction in progress on this core, and where its output goes.
struct Compacting {
    key: PartitionKey,
    job: CompactionJob,
    /// Until it is closed for install.
    out: Option<OutFile>,
    written: u64,
    started: Instant,
}

/// A compaction's output file: a DMA stream, or (where O_DIRECT is refused) a plain
/// file written off the core.
enum OutFile {
    Dma(glommio::io::DmaStreamWriter),
    Buffered(Arc<std::fs::File>),
}

impl OutFile {
    async fn create(tmp: &Path) -> std::io::Result<OutFile> {
        let dir: PathBuf = tmp.parent().expect("data files live in a directory").into();
        glommio::executor()
            .spawn_blocking(move || std::fs::create_dir_all(dir))
            .await?;
        Ok(match glommio::io::DmaFile::create(tmp).await {
            Ok(file) => OutFile::Dma(
                glommio::io::DmaStreamWriterBuilder::new(file)
                    .with_buffer_size(crate::limits::DATA_FILE_WRITE_BUFFER_BYTES)
                    .with_write_behind(2)
                    .build(),
            ),
            Err(_) => {
                let tmp = tmp.to_path_buf();
                let file = glommio::executor()
                    .spawn_blocking(move || std::fs::File::create(tmp))
                    .await?;
                OutFile::Buffered(Arc::new(file))
            }
        })
    }

    async fn write(&mut self, bytes: Vec<u8>) -> std::io::Result<()> {
        use futures_lite::AsyncWriteExt;
        match self {
            OutFile::Dma(w) => w.write_all(&bytes).await,
            OutFile::Buffered(f) => {
                let f = f.clone();
                glommio::executor()
                    .spawn_blocking(move || {
                        use std::io::Write;
                        (&*f).write_all(&bytes)
                    })
                    .await
            }
        }
    }

    /// Flushes, fsyncs and closes.
    async fn close(self) -> std::io::Result<()> {
        use futures_lite::AsyncWriteExt;
        match self {
            OutFile::Dma(mut w) => w.close().await,
            OutFile::Buffered(f) => {
                glommio::executor()
                    .spawn_blocking(move || f.sync_all())
                    .await
            }
        }
    }
}

/// Starts a compaction on the first partition of this core that needs one: a size
/// tier of [`crate::tsdb::engine::storage::COMPACT_MIN_FILES`] files, or (cold for
/// `full-write-cold`) more than one file.
async fn start_compaction(store: &RefCell<Store>, config: &FlushConfig) -> Option<Compacting> {
    let job = {
        let mut store = store.borrow_mut();
        let mut found = None;
        for key in store.keys() {
            let Some(shard) = store.shard_mut(key) else {
                continue;
            };
            let engine = shard.engine_mut();
            let cold = engine.last_write().elapsed() >= config.full_compaction_cold
                && !engine.needs_flush();
            if engine.file_count() < 2 {
                continue;
            }
            if let Some(job) = engine.plan_compaction(false) {
                found = Some((key, job));
                break;
            }
            if cold {
                if let Some(job) = engine.plan_compaction(true) {
                    found = Some((key, job));
                    break;
                }
            }
        }
        found
    };
    let (key, job) = job?;
    match OutFile::create(&job.tmp_path).await {
        Ok(out) => Some(Compacting {
            key,
            job,
            out: Some(out),
            written: 0,
            started: Instant::now(),
        }),
        Err(e) => {
            tracing::error!(path = %job.tmp_path.display(), error = %e, "cannot create a compaction's output");
            if let Some(shard) = store.borrow_mut().shard_mut(key) {
                shard.engine_mut().compaction_done();
            }
            None
        }
    }
}

/// Advances a compaction by about `budget` output bytes, in steps with pauses
/// between them; installs it once every series is merged. `Ok(true)` when done.
async fn advance(
    store: &RefCell<Store>,
    running: &mut Compacting,
    budget: u64,
) -> Result<bool, String> {
    let key = running.key;
    let mut spent = 0u64;
    let mut cpu = Duration::ZERO;
    let files = store
        .borrow_mut()
        .shard_mut(key)
        .map_or(0, |s| s.engine().file_count());
    let cap = compaction_cpu_cap(files);
    while spent < budget && cpu < cap {
        let step = Instant::now();
        let stepped = match store.borrow_mut().shard_mut(key) {
            Some(shard) => shard
                .engine_mut()
                .compact_step(&mut running.job, COMPACTION_STEP_VALUES),
            None => Err("the partition went away".to_string()),
        };
        cpu += step.elapsed();
        stepped?;
        let bytes = running.job.take_bytes();
        spent += bytes.len() as u64;
        running.written += bytes.len() as u64;
        if !bytes.is_empty() {
            running
                .out
                .as_mut()
                .expect("open until installed")
                .write(bytes)
                .await
                .map_err(|e| format!("cannot write {}: {e}", running.job.tmp_path.display()))?;
        }
        if running.job.merged() {
            break;
        }
        glommio::timer::sleep(crate::tsdb::read::cancel::SCAN_PAUSE).await;
    }
    if !running.job.merged() {
        return Ok(false);
    }
    // Merged: the rest of the output, synced, renamed, installed, named, inputs gone.
    let (rest, finished) = running.job.finish();
    running.written += rest.len() as u64;
    let mut out = running.out.take().expect("open until installed");
    let tmp = running.job.tmp_path.clone();
    let failed = |what: &str, e: std::io::Error| format!("cannot {what} {}: {e}", tmp.display());
    if !rest.is_empty() {
        out.write(rest).await.map_err(|e| failed("write", e))?;
    }
    out.close().await.map_err(|e| failed("sync", e))?;
    let path = finished.path.clone();
    let file = rename_into_place(&tmp, &path)
        .await
        .map_err(|e| failed("rename", e))?;
    let inputs: Vec<u64> = finished.inputs.clone();
    let installed = match store.borrow_mut().shard_mut(key) {
        Some(shard) => {
            let engine = shard.engine_mut();
            engine
                .install_compaction(finished, file, running.written)
                .map(|m| (m, engine.dir().to_path_buf()))
        }
        None => Err("the partition went away".to_string()),
    };
    let (manifest, dir) = match installed {
        Ok(x) => x,
        Err(e) => {
            let _ = glommio::executor()
                .spawn_blocking(move || std::fs::remove_file(path))
                .await;
            return Err(e);
        }
    };
    {
        let at = dir.clone();
        glommio::executor()
            .spawn_blocking(move || manifest.write(&at))
            .await
            .map_err(|e| {
                // Installed in memory; the next manifest written names it. The inputs
                // stay on disk until then.
                format!("cannot write the manifest in {}: {e}", dir.display())
            })?;
    }
    let removed = glommio::executor()
        .spawn_blocking(move || -> std::io::Result<()> {
            let data = dir.join("data");
            for n in inputs {
                std::fs::remove_file(crate::tsdb::engine::file::file_path(&data, n))?;
            }
            std::fs::File::open(&data)?.sync_all()
        })
        .await;
    if let Err(e) = removed {
        tracing::warn!(error = %e, "cannot remove a compaction's inputs; removed at the next start (no manifest names them)");
    }
    if let Some(shard) = store.borrow_mut().shard_mut(key) {
        shard.engine_mut().compaction_done();
    }
    tracing::debug!(
        shard = key.0,
        partition = key.1,
        bytes = running.written,
        ms = running.started.elapsed().as_millis() as u64,
        "compacted"
    );
    Ok(true)
}

/// Ends a compaction that failed: its output goes, its inputs stay.
async fn abandon(store: &RefCell<Store>, running: Compacting) {
    if let Some(out) = running.out {
        let _ = out.close().await;
    }
    let tmp = running.job.tmp_path.clone();
    let _ = glommio::executor()
        .spawn_blocking(move || std::fs::remove_file(tmp))
        .await;
    if let Some(shard) = store.borrow_mut().shard_mut(running.key) {
        shard.engine_mut().compaction_done();
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
    let file = match write_image(store, key, &mut image).await {
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
    let size = image.size;
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

/// Encodes `image` in steps of [`FLUSH_STEP_VALUES`] (pausing between them, so writes
/// and queries go on) while its bytes stream to `<n>.scd.tmp`; then fsync, rename,
/// fsync the directory, and open the file for reads.
async fn write_image(
    store: &RefCell<Store>,
    key: PartitionKey,
    image: &mut crate::tsdb::engine::FlushImage,
) -> Result<std::fs::File, String> {
    let tmp = image.tmp_path.clone();
    let failed = |what: &str, e: std::io::Error| format!("cannot {what} {}: {e}", tmp.display());
    let mut out = OutFile::create(&tmp)
        .await
        .map_err(|e| failed("create", e))?;
    loop {
        match store.borrow_mut().shard_mut(key) {
            Some(shard) => shard.engine_mut().encode_step(image, FLUSH_STEP_VALUES),
            None => return Err("the partition went away".into()),
        }
        let bytes = image.take_bytes();
        if !bytes.is_empty() {
            out.write(bytes).await.map_err(|e| failed("write", e))?;
        }
        if image.encoded() {
            break;
        }
        glommio::timer::sleep(crate::tsdb::read::cancel::SCAN_PAUSE).await;
    }
    let rest = image.finish();
    out.write(rest).await.map_err(|e| failed("write", e))?;
    out.close().await.map_err(|e| failed("sync", e))?;
    rename_into_place(&image.tmp_path, &image.path)
        .await
        .map_err(|e| failed("rename", e))
}

/// Renames a written and synced `tmp` to `path`, syncs the directory (the name
/// survives a crash), and opens the file for reads; off the core.
async fn rename_into_place(tmp: &Path, path: &Path) -> std::io::Result<std::fs::File> {
    let (tmp, path) = (tmp.to_path_buf(), path.to_path_buf());
    glommio::executor()
        .spawn_blocking(move || -> std::io::Result<std::fs::File> {
            std::fs::rename(&tmp, &path)?;
            let dir = path.parent().expect("data files live in a directory");
            std::fs::File::open(dir)?.sync_all()?;
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

    fn flush_config() -> FlushConfig {
        FlushConfig {
            snapshot_bytes: 1 << 20,
            cold: Duration::from_secs(3600),
            wal_bytes: 0,
            compaction_bytes_per_second: 1 << 20,
            full_compaction_cold: Duration::from_secs(3600),
        }
    }

    /// Runs compactions on the store until none is due.
    async fn compact_all(store: &RefCell<Store>, config: &FlushConfig) -> usize {
        let mut done = 0;
        while let Some(mut running) = start_compaction(store, config).await {
            while !advance(store, &mut running, 1 << 30).await.unwrap() {}
            done += 1;
        }
        done
    }

    fn file_count(store: &RefCell<Store>) -> usize {
        store
            .borrow_mut()
            .shard_mut((1, 0))
            .unwrap()
            .engine()
            .file_count()
    }

    /// Six flushed files with overwrites across them and deletes (tombstones) over
    /// them compact into one; reads are the same before, after, and after a restart;
    /// the tombstones and the inputs are gone.
    #[test]
    fn compactions_take_more_of_the_core_only_behind_a_backlog() {
        assert_eq!(compaction_cpu_cap(0), COMPACTION_CPU_PER_CHECK);
        assert_eq!(compaction_cpu_cap(BACKLOG_FILES), COMPACTION_CPU_PER_CHECK);
        assert_eq!(
            compaction_cpu_cap(BACKLOG_FILES + 1),
            COMPACTION_CPU_BACKLOG
        );
        assert!(
            COMPACTION_CPU_BACKLOG < CHECK_INTERVAL,
            "flushes still get their turn"
        );
    }

    #[test]
    fn compaction_merges_files_keeps_the_newest_value_and_applies_tombstones() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_path_buf();
        glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
            .spawn(move || async move {
                let store = RefCell::new(open(&path));
                for round in 0..6 {
                    let mut lines = String::new();
                    for h in 0..20 {
                        for t in 0..50 {
                            // Rounds overlap in time: later rounds overwrite.
                            let t = round * 25 + t;
                            lines.push_str(&format!("m,h=h{h} v={round}.5,n={t}i {t}\n"));
                        }
                    }
                    if round == 3 {
                        lines.push_str("other,h=x s=\"only here\" 7\n");
                    }
                    write(&store, &lines).await;
                    flush_partition(&store, (1, 0)).await.unwrap();
                }
                assert_eq!(file_count(&store), 6);
                let delete = crate::tsdb::engine::DeleteRecord {
                    keys: vec!["m,h=h3".into(), "other,h=x".into()],
                    start_ns: 0,
                    end_ns: 60,
                    drop_measurements: vec![],
                };
                let (_, durable) = store
                    .borrow_mut()
                    .shard_mut((1, 0))
                    .unwrap()
                    .delete(&delete)
                    .unwrap();
                durable.await.unwrap().unwrap();
                let before = contents(&store);
                assert!(before.iter().all(|p| !(p.0 == "m,h=h3" && p.2 <= 60)));
                assert!(before.contains(&("m,h=h0".into(), "v".into(), 30, Value::Float(1.5))));
                assert_eq!(compact_all(&store, &flush_config()).await, 1);
                assert_eq!(file_count(&store), 1);
                assert_eq!(contents(&store), before);
                let shard_dir = crate::tsdb::layout::partition_dir(&path, 1, 0);
                let manifest = crate::tsdb::engine::manifest::Manifest::read(&shard_dir).unwrap();
                assert_eq!(manifest.files.len(), 1);
                assert!(manifest.tombstones.is_empty(), "{manifest:?}");
                let on_disk = std::fs::read_dir(shard_dir.join("data")).unwrap().count();
                assert_eq!(on_disk, 1);
                // The deleted-everywhere series is gone from the index.
                let series: Vec<String> = {
                    let store = store.borrow();
                    let shard = store.shards().next().unwrap();
                    shard
                        .index()
                        .all_series()
                        .filter(|&id| {
                            shard
                                .index()
                                .measurements()
                                .values()
                                .any(|m| m.series.contains(&id))
                        })
                        .map(|id| {
                            String::from_utf8_lossy(shard.index().series_key(id)).into_owned()
                        })
                        .collect()
                };
                assert!(!series.contains(&"other,h=x".to_string()), "{series:?}");
                drop(store);
                let store = RefCell::new(open(&path));
                assert_eq!(contents(&store), before);
                // Nothing more to do; a cold partition with one file is left alone.
                let cold = FlushConfig {
                    full_compaction_cold: Duration::ZERO,
                    ..flush_config()
                };
                assert_eq!(compact_all(&store, &cold).await, 0);
                // Two more files, cold: the full compaction makes one again.
                write(&store, "m,h=h0 v=9 1000\n").await;
                flush_partition(&store, (1, 0)).await.unwrap();
                write(&store, "m,h=h0 v=8 1000\n").await;
                flush_partition(&store, (1, 0)).await.unwrap();
                assert_eq!(file_count(&store), 3);
                assert_eq!(
                    compact_all(&store, &flush_config()).await,
                    0,
                    "three files: no tier yet"
                );
                assert_eq!(compact_all(&store, &cold).await, 1);
                assert_eq!(file_count(&store), 1);
                let after = contents(&store);
                assert!(after.contains(&("m,h=h0".into(), "v".into(), 1000, Value::Float(8.0))));
                assert_eq!(after.len(), before.len() + 1);
            })
            .unwrap()
            .join()
            .unwrap();
    }

    #[test]
    fn failed_flushes_back_off_from_one_second_to_thirty() {
        let mut r = Retries::default();
        let t0 = Instant::now();
        let key = (1, 0);
        assert!(r.due(key, t0));
        let mut waits = Vec::new();
        let mut now = t0;
        for _ in 0..8 {
            r.record(key, false, now);
            let (next, wait) = r.waits[&key];
            assert!(!r.due(key, now) && r.due(key, next));
            assert!(r.due((2, 0), now), "other partitions are not held back");
            waits.push(wait.as_secs());
            now = next;
        }
        assert_eq!(waits, vec![1, 2, 4, 8, 16, 30, 30, 30]);
        r.record(key, true, now);
        assert!(r.due(key, now));
    }

    /// A delete that lands between two steps of a flush's encoding holds both for the
    /// series already encoded (a tombstone covers the new file) and for those not yet
    /// (removed from the frozen head), before and after a restart.
    #[test]
    fn a_delete_during_a_sliced_flush_holds_for_every_series() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_path_buf();
        glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
            .spawn(move || async move {
                let store = RefCell::new(open(&path));
                let mut lines = String::new();
                for h in ["a", "b", "c"] {
                    for t in 0..10 {
                        lines.push_str(&format!("m,h={h} v={t} {t}\n"));
                    }
                }
                write(&store, &lines).await;
                let key = (1, 0);
                let ticket = store
                    .borrow_mut()
                    .shard_mut(key)
                    .unwrap()
                    .engine_mut()
                    .freeze()
                    .unwrap();
                let boundary = ticket.roll.await.unwrap();
                let mut image = store
                    .borrow_mut()
                    .shard_mut(key)
                    .unwrap()
                    .encode_flush(boundary)
                    .unwrap();
                // One series (h=a) encoded, then the delete of h=a and h=c.
                store
                    .borrow_mut()
                    .shard_mut(key)
                    .unwrap()
                    .engine_mut()
                    .encode_step(&mut image, 1);
                assert!(!image.encoded());
                let delete = crate::tsdb::engine::DeleteRecord {
                    keys: vec!["m,h=a".into(), "m,h=c".into()],
                    start_ns: 0,
                    end_ns: 4,
                    drop_measurements: vec![],
                };
                let (_, durable) = store
                    .borrow_mut()
                    .shard_mut(key)
                    .unwrap()
                    .delete(&delete)
                    .unwrap();
                durable.await.unwrap().unwrap();
                // h=a keeps values (in the file being written): still indexed.
                let indexed = |store: &RefCell<Store>, h: &[u8]| {
                    let store = store.borrow();
                    let shard = store.shards().next().unwrap();
                    shard.index().series_with_tag(b"m", b"h", h).len()
                };
                assert_eq!(indexed(&store, b"a"), 1);
                let file = write_image(&store, key, &mut image).await.unwrap();
                let (manifest, dir, wal) = {
                    let mut s = store.borrow_mut();
                    let engine = s.shard_mut(key).unwrap().engine_mut();
                    let m = engine.install(image, file);
                    (m, engine.dir().to_path_buf(), engine.wal().clone())
                };
                finish(&store, key, manifest, &dir, &wal, boundary)
                    .await
                    .unwrap();
                let want: Vec<(String, i64)> = ["a", "b", "c"]
                    .iter()
                    .flat_map(|h| (0..10).map(move |t| (format!("m,h={h}"), t)))
                    .filter(|(k, t)| k == "m,h=b" || *t > 4)
                    .collect();
                let got = |store: &RefCell<Store>| -> Vec<(String, i64)> {
                    contents(store).into_iter().map(|p| (p.0, p.2)).collect()
                };
                assert_eq!(got(&store), want);
                assert_eq!(indexed(&store, b"a") + indexed(&store, b"c"), 2);
                drop(store);
                let store = RefCell::new(open(&path));
                assert_eq!(got(&store), want, "after a restart");
            })
            .unwrap()
            .join()
            .unwrap();
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
