//! The engine of one shard partition: a WAL in front of the head, flushed into
//! immutable data files ([`super::file`]) named by the partition's manifest
//! ([`super::manifest`]).
//!
//! ```text
//! <partition>/wal/<n>.wal        segments written since the last flush
//! <partition>/data/<n>.scd       data files, oldest first
//! <partition>/manifest.json      files, WAL boundary, tombstones
//! ```
//!
//! A write is logged and applied to the head; a read merges the files (oldest
//! first), the heads being flushed and the head, and for each (series, field, time)
//! the newest source wins. A flush ([`Storage::freeze`] .. [`Storage::install`],
//! driven by [`crate::tsdb::flush`]) moves the head aside (it stays readable), ends
//! the WAL segment, writes the moved heads as one data file, names it in the
//! manifest, and only then removes the WAL segments it covers. A delete removes
//! values from the heads at once and adds a tombstone for the files it cannot change.
//!
//! Opening reads the manifest, the files' footers and indexes (not their blocks),
//! rebuilds the series index from the file indexes, then replays only the WAL
//! written after the last flush. A file that does not open (crc, footer) is moved to
//! `<partition>/bad/`, logged and counted; the partition opens without it.
//!
//! **Invariant:** only the owning core touches an engine (it is `!Send`).

use super::blocks::{read_block, BlockCache, LazyBlock, ReadCounts};
use super::file::{self, Column, DataFile, FileBuilder, SeriesMeta};
use super::head::Head;
use super::manifest::{Manifest, TombstoneRecord};
use super::merge::{apply_limit, merge_sources, Source};
use super::wal::{self, Wal, WalConfig, WalError};
use super::{
    apply_delete_to, apply_write, validate, Block, Cursor, DeleteRecord, Durable, Engine,
    EngineError, EngineStats, ReadRange, RecoveryReport, SeriesId, SeriesIndex, WriteBatch,
};
use crate::base::LocalFuture;
use crate::lineproto::{self, FieldType, ParsedBody, PointRef, Precision};
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::Instant;

/// A data file in use, with where each series of the shard's index is in it.
struct Loaded {
    file: Rc<DataFile>,
    by_sid: HashMap<SeriesId, u32>,
}

/// A delete the files still hold values of.
struct Tombstone {
    record: TombstoneRecord,
    sids: HashSet<SeriesId>,
}

impl Tombstone {
    fn hides(&self, file: u64, sid: SeriesId, t: i64) -> bool {
        file < self.record.below_file
            && t >= self.record.start_ns
            && t <= self.record.end_ns
            && self.sids.contains(&sid)
    }
}

/// A field's sources for a read, oldest first (a newer one wins a time they share).
type FieldSources = (Box<[u8]>, Vec<Source>);

/// A field's sources, each with its place (files oldest first, then the heads).
type TaggedSources = (Box<[u8]>, Vec<(usize, Source)>);

/// The n-th newest (oldest) distinct time among `sources`, if they hold n.
fn nth_time(sources: &[(usize, Source)], n: usize, newest: bool) -> Option<i64> {
    if n == 0 {
        return None;
    }
    let mut times: Vec<i64> = Vec::new();
    for (_, (t, _)) in sources {
        // Each source is sorted: its n from the wanted end are enough.
        if newest {
            times.extend(t.iter().rev().take(n));
        } else {
            times.extend(t.iter().take(n));
        }
    }
    times.sort_unstable();
    times.dedup();
    if times.len() < n {
        return None;
    }
    Some(if newest {
        times[times.len() - n]
    } else {
        times[n - 1]
    })
}

/// A flush in progress, from [`Storage::freeze`] on.
pub struct FlushTicket {
    /// Resolves to the WAL boundary once everything the frozen heads hold is durable.
    pub roll: LocalFuture<'static, Result<u64, WalError>>,
}

/// The data file a flush writes, built from the frozen heads in steps
/// ([`Storage::encode_step`]) while its bytes are written out ([`FlushImage::take_bytes`]),
/// so neither the core nor memory holds a whole file at once.
pub struct FlushImage {
    pub number: u64,
    pub path: PathBuf,
    pub tmp_path: PathBuf,
    /// The series to write, in key order.
    plan: Vec<(Vec<u8>, SeriesId)>,
    next: usize,
    builder: Option<FileBuilder>,
    /// The series written, in file order.
    sids: Vec<SeriesId>,
    wal_boundary: u64,
    /// Set by [`FlushImage::finish`].
    series: Vec<(SeriesId, SeriesMeta)>,
    footer: Option<file::Footer>,
    /// Bytes of the whole file (known once finished).
    pub size: u64,
    heads: usize,
    /// Values written so far.
    pub values: u64,
}

impl FlushImage {
    /// File bytes built and not yet taken for writing.
    pub fn take_bytes(&mut self) -> Vec<u8> {
        self.builder
            .as_mut()
            .map(FileBuilder::take_bytes)
            .unwrap_or_default()
    }

    /// Whether every series is encoded.
    pub fn encoded(&self) -> bool {
        self.next >= self.plan.len()
    }

    /// Ends the file: the rest of its bytes (index and footer).
    pub fn finish(&mut self) -> Vec<u8> {
        let builder = self.builder.take().expect("finished once");
        let taken = builder.len() - builder.pending_bytes() as u64;
        let (rest, series, footer) = builder.finish(self.wal_boundary);
        self.size = taken + rest.len() as u64;
        self.series = self.sids.drain(..).zip(series).collect();
        self.footer = Some(footer);
        rest
    }
}

/// Counters of the files of one engine.
#[derive(Clone, Copy, Debug, Default)]
pub struct FileStats {
    pub files: u64,
    pub file_bytes: u64,
    pub file_values: u64,
    pub flushes: u64,
    pub compactions: u64,
    pub bad_files: u64,
    /// Blocks read and decoded by queries, and the ones that failed.
    pub block_reads: u64,
    pub block_read_errors: u64,
}

/// Files merged at once, at least and at most (size-tiered: files within
/// [`TIER_RATIO`] of each other's size).
pub const COMPACT_MIN_FILES: usize = 4;
pub const COMPACT_MAX_FILES: usize = 16;
pub const TIER_RATIO: u64 = 4;

/// A series a compaction merges: its key, its id, and where it is in the inputs
/// (input position, series index in that file).
type PlannedSeries = (Box<[u8]>, SeriesId, Vec<(usize, u32)>);

/// A compaction in progress: input files (contiguous in the file list, so the
/// output takes their place in the newest-wins order), the output being built.
pub struct CompactionJob {
    pub number: u64,
    /// Input file numbers, oldest first.
    pub inputs: Vec<u64>,
    /// Series to merge, in key order: key, series, (input position, series index).
    plan: Vec<PlannedSeries>,
    next: usize,
    builder: Option<FileBuilder>,
    /// The series of the output, in its order.
    sids: Vec<SeriesId>,
    pub path: PathBuf,
    pub tmp_path: PathBuf,
    /// Bytes of the inputs.
    pub input_bytes: u64,
    wal_boundary: u64,
}

impl CompactionJob {
    /// Output bytes built and not yet taken for writing.
    pub fn take_bytes(&mut self) -> Vec<u8> {
        self.builder
            .as_mut()
            .map(FileBuilder::take_bytes)
            .unwrap_or_default()
    }

    /// Whether every series is merged.
    pub fn merged(&self) -> bool {
        self.next >= self.plan.len()
    }

    /// Finishes the output: the rest of its bytes, and what installs it.
    pub fn finish(&mut self) -> (Vec<u8>, FinishedCompaction) {
        let builder = self.builder.take().expect("finished once");
        let (rest, series, footer) = builder.finish(self.wal_boundary);
        let finished = FinishedCompaction {
            number: self.number,
            inputs: self.inputs.clone(),
            series: self.sids.drain(..).zip(series).collect(),
            footer,
            path: self.path.clone(),
        };
        (rest, finished)
    }
}

/// A compaction's output, written, ready to replace its inputs.
pub struct FinishedCompaction {
    pub number: u64,
    pub inputs: Vec<u64>,
    series: Vec<(SeriesId, SeriesMeta)>,
    footer: file::Footer,
    pub path: PathBuf,
}

/// The engine (see the module's documentation).
pub struct Storage {
    dir: PathBuf,
    wal: Wal,
    head: Head,
    /// Heads moved aside by flushes that have not installed their file yet, oldest
    /// first (more than one only after a failed flush).
    frozen: Vec<Head>,
    files: Vec<Loaded>,
    tombstones: Vec<Tombstone>,
    wal_boundary: u64,
    next_file: u64,
    /// A flush holds the engine's flush slot from freeze to its manifest write.
    flushing: bool,
    /// A compaction is in progress.
    compacting: bool,
    /// The series of the file a flush is writing (in no head once encoded, in no
    /// file until installed: still alive for the index).
    in_flight: HashSet<SeriesId>,
    /// Records went to the WAL since the last freeze (a delete over files leaves the
    /// head empty but still needs a flush: its tombstone into the manifest).
    logged: bool,
    last_write: Instant,
    stats: FileStats,
    /// Blocks cursors read, and the reads that failed (cursors cannot return errors).
    reads: Rc<ReadCounts>,
    /// The core's cache of decoded blocks (`None`: blocks are decoded at every read).
    block_cache: Option<Rc<BlockCache>>,
}

impl Drop for Storage {
    fn drop(&mut self) {
        // A dropped partition's blocks are of no use to anyone.
        if let Some(cache) = &self.block_cache {
            for f in &self.files {
                cache.forget_file(f.file.uid());
            }
        }
    }
}

fn wal_dir(dir: &Path) -> PathBuf {
    dir.join("wal")
}

fn data_dir(dir: &Path) -> PathBuf {
    dir.join("data")
}

impl Storage {
    /// A new, empty engine in partition directory `dir` (which exists).
    pub fn create(dir: &Path, config: WalConfig) -> Storage {
        Storage::new(dir, Wal::new(wal_dir(dir), 1, config), Head::default())
    }

    fn new(dir: &Path, wal: Wal, head: Head) -> Storage {
        Storage {
            dir: dir.to_path_buf(),
            wal,
            head,
            frozen: Vec::new(),
            files: Vec::new(),
            tombstones: Vec::new(),
            wal_boundary: 0,
            next_file: 1,
            flushing: false,
            compacting: false,
            in_flight: HashSet::new(),
            logged: false,
            last_write: Instant::now(),
            stats: FileStats::default(),
            reads: Rc::default(),
            block_cache: None,
        }
    }

    /// Reads blocks through `cache` from now on.
    pub fn set_block_cache(&mut self, cache: Rc<BlockCache>) {
        self.block_cache = Some(cache);
    }

    /// Opens the engine in partition directory `dir`: the manifest's files (series
    /// into `index`), then the WAL after them (cutting a torn tail when `truncate`;
    /// with `truncate` false nothing on disk changes).
    pub fn open(
        dir: &Path,
        config: WalConfig,
        truncate: bool,
        index: &mut dyn SeriesIndex,
    ) -> Result<(Storage, RecoveryReport), EngineError> {
        let open_error = |message: String| EngineError::Open {
            dir: dir.display().to_string(),
            message,
        };
        let manifest = Manifest::read(dir).map_err(open_error)?;
        let mut engine = Storage::new(dir, Wal::new(wal_dir(dir), 1, config), Head::default());
        engine.wal_boundary = manifest.wal_boundary;
        engine.next_file = manifest.next_file.max(1);
        for &number in &manifest.files {
            let path = file::file_path(&data_dir(dir), number);
            match DataFile::open(&path) {
                Ok(f) => {
                    let by_sid = register_series(&f.series, index);
                    engine.next_file = engine.next_file.max(number + 1);
                    engine.files.push(Loaded {
                        file: Rc::new(f),
                        by_sid,
                    });
                }
                Err(e) => {
                    engine.stats.bad_files += 1;
                    tracing::error!(error = %e, "data file does not open; moved aside");
                    if truncate {
                        move_aside(dir, &path);
                    }
                }
            }
        }
        if truncate {
            remove_unlisted(dir, &manifest.files);
        }
        for record in manifest.tombstones {
            let sids = index.series_of_keys(&record.keys).into_iter().collect();
            engine.tombstones.push(Tombstone { record, sids });
        }
        let dead: Vec<SeriesId> = engine
            .files
            .iter()
            .flat_map(|f| f.by_sid.keys().copied())
            .collect::<HashSet<_>>()
            .into_iter()
            .filter(|&sid| !engine.alive(sid))
            .collect();
        index.remove_series(&dead, &[]);
        let head = &mut engine.head;
        let files = &mut engine.files;
        let tombstones = &mut engine.tombstones;
        let next_file = engine.next_file;
        let (report, next) =
            wal::recover_from(&wal_dir(dir), truncate, manifest.wal_boundary, |record| {
                if record.kind == wal::KIND_DELETE {
                    match serde_json::from_slice::<DeleteRecord>(record.lines) {
                        Ok(delete) => {
                            let (_, series) =
                                apply_delete_to(head, &mut [], &delete, index, |sids| {
                                    add_tombstone(
                                        files, tombstones, next_file, &delete, sids, false,
                                    )
                                });
                            let gone: Vec<SeriesId> = series
                                .into_iter()
                                .filter(|&s| {
                                    !head.has_series(s) && !alive_in_files(files, tombstones, s)
                                })
                                .collect();
                            index.remove_series(&gone, &delete.drop_measurements);
                        }
                        Err(e) => {
                            tracing::error!(error = %e, "unreadable delete record in WAL; skipped")
                        }
                    }
                    return;
                }
                if record.kind != wal::KIND_WRITE {
                    return;
                }
                let body = bytes::Bytes::copy_from_slice(record.lines);
                let parsed = lineproto::parse(body, record.precision, record.default_time_ns);
                let all: Vec<u32> = (0..parsed.points.len() as u32).collect();
                // The same checks as a live write, so field types are known after a restart.
                let mut rejected = Vec::new();
                let knows =
                    |sid, body: &ParsedBody, point: &PointRef| head.knows_fields(sid, body, point);
                let accepted = validate(index, &knows, &parsed, &all, &mut rejected);
                apply_write(head, &parsed, &accepted, index);
            })
            .map_err(|e| open_error(e.to_string()))?;
        engine.wal = Wal::new(wal_dir(dir), next, config);
        engine.wal.set_disk_bytes(report.bytes);
        engine.logged = report.records > 0;
        engine.stats.files = engine.files.len() as u64;
        Ok((engine, report))
    }

    fn alive(&self, sid: SeriesId) -> bool {
        self.in_flight.contains(&sid)
            || self.head.has_series(sid)
            || self.frozen.iter().any(|h| h.has_series(sid))
            || alive_in_files(&self.files, &self.tombstones, sid)
    }

    /// Starts a flush: moves the head aside (still read) and ends the WAL segment.
    /// `None` when there is nothing to flush or a flush is in progress.
    pub fn freeze(&mut self) -> Option<FlushTicket> {
        if self.flushing || !self.needs_flush() {
            return None;
        }
        self.flushing = true;
        self.logged = false;
        if !self.head.is_empty() {
            self.frozen.push(std::mem::take(&mut self.head));
        }
        Some(FlushTicket {
            roll: self.wal.roll(),
        })
    }

    /// Whether the head or the WAL holds something no file or manifest does.
    pub fn needs_flush(&self) -> bool {
        self.logged || !self.head.is_empty() || !self.frozen.is_empty()
    }

    /// Gives up a flush before its file is installed (the frozen heads stay and go
    /// out with the next flush).
    pub fn abandon_flush(&mut self) {
        self.flushing = false;
        self.logged = true;
        self.in_flight.clear();
    }

    /// Plans the data file of the frozen heads (series keys from `key_of`, in key
    /// order), with `wal_boundary` from the ticket; [`Storage::encode_step`] encodes it.
    /// `None` when the frozen heads hold no value (only deletes since the last flush:
    /// no file, a manifest with their tombstones).
    pub fn encode_frozen(
        &mut self,
        wal_boundary: u64,
        key_of: &dyn Fn(SeriesId) -> Vec<u8>,
    ) -> Option<FlushImage> {
        if self.frozen.iter().all(Head::is_empty) {
            self.frozen.clear();
            self.wal_boundary = self.wal_boundary.max(wal_boundary);
            return None;
        }
        let number = self.next_file;
        self.next_file += 1;
        let sids: HashSet<SeriesId> = self.frozen.iter().flat_map(|h| h.series_ids()).collect();
        self.in_flight = sids.clone();
        let mut plan: Vec<(Vec<u8>, SeriesId)> =
            sids.into_iter().map(|sid| (key_of(sid), sid)).collect();
        plan.sort();
        let data = data_dir(&self.dir);
        Some(FlushImage {
            number,
            path: file::file_path(&data, number),
            tmp_path: data.join(format!("{number:016x}.scd.tmp")),
            plan,
            next: 0,
            builder: Some(FileBuilder::new(number)),
            sids: Vec::new(),
            wal_boundary,
            series: Vec::new(),
            footer: None,
            size: 0,
            heads: self.frozen.len(),
            values: 0,
        })
    }

    /// Encodes the image's next series from the frozen heads (newer head winning a
    /// time both hold) until about `budget` values are done. A delete meanwhile has
    /// removed its values from the frozen heads (the series not yet encoded) or left
    /// a tombstone that covers this file (the ones already encoded).
    pub fn encode_step(&mut self, image: &mut FlushImage, budget: usize) {
        let mut done = 0;
        while image.next < image.plan.len() && done < budget {
            let (key, sid) = &image.plan[image.next];
            image.next += 1;
            let mut columns: Vec<(Box<[u8]>, Vec<i64>, Column)> = Vec::new();
            let heads = image.heads.min(self.frozen.len());
            for head in &mut self.frozen[..heads] {
                for (name, times, values) in head.export(*sid) {
                    match columns.iter_mut().find(|c| c.0 == name) {
                        Some(c) => merge_into(c, times, values),
                        None => columns.push((name, times, values)),
                    }
                }
            }
            columns.sort_by(|a, b| a.0.cmp(&b.0));
            let values: usize = columns.iter().map(|c| c.1.len()).sum();
            done += values.max(1);
            let builder = image.builder.as_mut().expect("encoding");
            let before = builder.series_count();
            builder.add_series(key, columns.iter().map(|(n, t, v)| (&n[..], &t[..], v)));
            // A series a delete emptied is left out of the file.
            if builder.series_count() > before {
                image.sids.push(*sid);
                image.values += values as u64;
            }
        }
    }

    /// Puts a written and synced data file in use in place of the heads it holds;
    /// returns the manifest to write (the caller writes it, then removes the WAL
    /// segments below the boundary, then calls [`Storage::flush_done`]).
    pub fn install(&mut self, image: FlushImage, file: std::fs::File) -> Manifest {
        let by_sid = image
            .series
            .iter()
            .enumerate()
            .map(|(i, (sid, _))| (*sid, i as u32))
            .collect();
        let footer = image.footer.expect("a finished image");
        let data = DataFile::from_parts(
            image.path,
            footer,
            image.series.into_iter().map(|(_, m)| m).collect(),
            image.size,
            file,
        );
        self.frozen.drain(..image.heads.min(self.frozen.len()));
        self.in_flight.clear();
        self.wal_boundary = self.wal_boundary.max(footer.wal_boundary);
        self.files.push(Loaded {
            file: Rc::new(data),
            by_sid,
        });
        self.stats.flushes += 1;
        self.stats.files = self.files.len() as u64;
        self.manifest()
    }

    /// Starts a compaction: the oldest run of at least [`COMPACT_MIN_FILES`] files of
    /// one size tier, or with `full` (a cold shard: no write for long) every file when
    /// there are two or more, into blocks of [`file::COLD_BLOCK_VALUES`]. `None` when
    /// nothing qualifies or a compaction is in progress.
    pub fn plan_compaction(&mut self, full: bool) -> Option<CompactionJob> {
        if self.compacting || self.files.len() < 2 {
            return None;
        }
        let sizes: Vec<u64> = self.files.iter().map(|f| f.file.size).collect();
        let window = if full {
            0..sizes.len()
        } else {
            size_tiered_window(&sizes)?
        };
        let inputs: Vec<u64> = self.files[window.clone()]
            .iter()
            .map(|f| f.file.footer.number)
            .collect();
        // Every series of the inputs, in key order, with where it is in each input.
        let mut entries: Vec<(&[u8], SeriesId, usize, u32)> = Vec::new();
        for (pos, f) in self.files[window.clone()].iter().enumerate() {
            for (&sid, &at) in &f.by_sid {
                entries.push((&f.file.series[at as usize].key, sid, pos, at));
            }
        }
        entries.sort_unstable_by(|a, b| a.0.cmp(b.0).then(a.2.cmp(&b.2)));
        let mut plan: Vec<PlannedSeries> = Vec::new();
        for (key, sid, pos, at) in entries {
            match plan.last_mut() {
                Some(last) if *last.0 == *key => last.2.push((pos, at)),
                _ => plan.push((key.into(), sid, vec![(pos, at)])),
            }
        }
        let number = self.next_file;
        self.next_file += 1;
        self.compacting = true;
        let data = data_dir(&self.dir);
        let block_values = if full {
            file::COLD_BLOCK_VALUES
        } else {
            file::BLOCK_VALUES
        };
        Some(CompactionJob {
            number,
            inputs,
            plan,
            next: 0,
            builder: Some(FileBuilder::with_block_values(number, block_values)),
            sids: Vec::new(),
            path: file::file_path(&data, number),
            tmp_path: data.join(format!("{number:016x}.scd.tmp")),
            input_bytes: sizes[window.clone()].iter().sum(),
            wal_boundary: self.files[window]
                .iter()
                .map(|f| f.file.footer.wal_boundary)
                .max()
                .unwrap_or(0),
        })
    }

    /// Merges the job's next series (tombstones applied, the newest input winning a
    /// time several hold) until about `budget` values are done. Fails when an input
    /// is gone (the job is then abandoned).
    pub fn compact_step(&mut self, job: &mut CompactionJob, budget: usize) -> Result<(), String> {
        let positions: Vec<usize> = job
            .inputs
            .iter()
            .map(|n| self.files.iter().position(|f| f.file.footer.number == *n))
            .collect::<Option<_>>()
            .ok_or("an input file of the compaction is gone")?;
        let mut done = 0;
        while job.next < job.plan.len() && done < budget {
            let (key, sid, parts) = &job.plan[job.next];
            job.next += 1;
            let mut fields: Vec<(Box<[u8]>, FieldType, Vec<Source>)> = Vec::new();
            for &(pos, at) in parts {
                let f = &self.files[positions[pos]];
                let number = f.file.footer.number;
                let tombs: Vec<&Tombstone> = self
                    .tombstones
                    .iter()
                    .filter(|t| number < t.record.below_file && t.sids.contains(sid))
                    .collect();
                for field in &f.file.series[at as usize].fields {
                    let (mut times, mut values) = (Vec::new(), Vec::new());
                    for b in &field.blocks {
                        let (t, v) = match f.file.read_block(b, field.field_type) {
                            Ok(x) => x,
                            Err(e) => {
                                self.reads.errors.set(self.reads.errors.get() + 1);
                                tracing::error!(error = %e, "a data file block does not read; the compaction leaves its values out");
                                continue;
                            }
                        };
                        for (t, v) in t.into_iter().zip(v.into_values()) {
                            if !tombs.iter().any(|ts| ts.hides(number, *sid, t)) {
                                times.push(t);
                                values.push(v);
                            }
                        }
                    }
                    done += times.len();
                    match fields.iter_mut().find(|(n, _, _)| *n == field.name) {
                        Some((_, _, sources)) => sources.push((times, values)),
                        None => fields.push((
                            field.name.clone(),
                            field.field_type,
                            vec![(times, values)],
                        )),
                    }
                }
            }
            let columns: Vec<(Box<[u8]>, Vec<i64>, Column)> = fields
                .into_iter()
                .map(|(name, t, sources)| {
                    let (times, values) = merge_sources(sources);
                    (name, times, Column::from_values(t, values))
                })
                .collect();
            let builder = job.builder.as_mut().expect("building");
            let before = builder.series_count();
            builder.add_series(key, columns.iter().map(|(n, t, v)| (&n[..], &t[..], v)));
            // A series every value of which a tombstone hid is not in the output.
            if builder.series_count() > before {
                job.sids.push(*sid);
            }
        }
        Ok(())
    }

    /// Puts a written compaction output in place of its inputs (at their place in the
    /// newest-wins order) and drops the tombstones no file needs any more; returns the
    /// manifest to write (then the inputs are removed, then
    /// [`Storage::compaction_done`]).
    pub fn install_compaction(
        &mut self,
        done: FinishedCompaction,
        file: std::fs::File,
        size: u64,
    ) -> Result<Manifest, String> {
        let positions: Vec<usize> = done
            .inputs
            .iter()
            .map(|n| self.files.iter().position(|f| f.file.footer.number == *n))
            .collect::<Option<_>>()
            .ok_or("an input file of the compaction is gone")?;
        let first = *positions.iter().min().expect("inputs");
        let by_sid = done
            .series
            .iter()
            .enumerate()
            .map(|(i, (sid, _))| (*sid, i as u32))
            .collect();
        let data = DataFile::from_parts(
            done.path,
            done.footer,
            done.series.into_iter().map(|(_, m)| m).collect(),
            size,
            file,
        );
        let inputs: HashSet<u64> = done.inputs.iter().copied().collect();
        if let Some(cache) = &self.block_cache {
            for f in self
                .files
                .iter()
                .filter(|f| inputs.contains(&f.file.footer.number))
            {
                cache.forget_file(f.file.uid());
            }
        }
        self.files
            .retain(|f| !inputs.contains(&f.file.footer.number));
        self.files.insert(
            first,
            Loaded {
                file: Rc::new(data),
                by_sid,
            },
        );
        let files = &self.files;
        self.tombstones.retain(|t| {
            files
                .iter()
                .any(|f| f.file.footer.number < t.record.below_file)
        });
        self.stats.compactions += 1;
        self.stats.files = self.files.len() as u64;
        Ok(self.manifest())
    }

    /// Ends a compaction (installed, failed or abandoned).
    pub fn compaction_done(&mut self) {
        self.compacting = false;
    }

    /// Data files in use.
    pub fn file_count(&self) -> usize {
        self.files.len()
    }

    /// Ends a flush (its manifest is written or failed).
    pub fn flush_done(&mut self) {
        self.flushing = false;
    }

    /// The manifest that describes the files in use now.
    pub fn manifest(&self) -> Manifest {
        Manifest {
            files: self.files.iter().map(|f| f.file.footer.number).collect(),
            wal_boundary: self.wal_boundary,
            next_file: self.next_file,
            tombstones: self.tombstones.iter().map(|t| t.record.clone()).collect(),
        }
    }

    /// Heap bytes of the head and the heads being flushed.
    pub fn head_bytes(&self) -> usize {
        self.head.heap_bytes() + self.frozen.iter().map(Head::heap_bytes).sum::<usize>()
    }

    pub fn file_stats(&self) -> FileStats {
        FileStats {
            file_bytes: self.files.iter().map(|f| f.file.size).sum(),
            file_values: self.files.iter().map(|f| f.file.values()).sum(),
            block_read_errors: self.reads.errors.get(),
            block_reads: self.reads.reads.get(),
            ..self.stats
        }
    }

    /// The values of `sid`'s fields in the files, in range, tombstones applied: one
    /// source per file, tagged with the file's place (oldest first). With a per-series
    /// limit the files are visited from the wanted end and a file whose values of a
    /// field cannot reach the n newest (oldest) of what is already in `out` (the heads
    /// first) is not read: "the latest value" of a series whose newest values are in
    /// the head reads no file at all.
    fn file_sources(
        &self,
        sid: SeriesId,
        range: &ReadRange<'_>,
        out: &mut Vec<TaggedSources>,
        lazy: &mut Vec<(Box<[u8]>, Vec<LazyBlock>)>,
    ) {
        let whole_blocks = range.whole_blocks && range.limit.is_none();
        let order: Box<dyn Iterator<Item = (usize, &Loaded)>> = match range.limit {
            Some((_, true)) => Box::new(self.files.iter().enumerate().rev()),
            _ => Box::new(self.files.iter().enumerate()),
        };
        for (place, f) in order {
            let Some(&at) = f.by_sid.get(&sid) else {
                continue;
            };
            let number = f.file.footer.number;
            let tombs: Vec<&Tombstone> = self
                .tombstones
                .iter()
                .filter(|t| number < t.record.below_file && t.sids.contains(&sid))
                .collect();
            for field in &f.file.series[at as usize].fields {
                if range
                    .fields
                    .is_some_and(|w| !w.iter().any(|n| **n == *field.name))
                {
                    continue;
                }
                if let (Some((n, newest)), Some(first), Some(last)) =
                    (range.limit, field.blocks.first(), field.blocks.last())
                {
                    let collected = out.iter().find(|(name, _)| *name == field.name);
                    if let Some(t) = collected.and_then(|(_, s)| nth_time(s, n, newest)) {
                        // Newest first: every later file is older, so a tie loses too.
                        let beaten = if newest {
                            last.max_ns <= t
                        } else {
                            first.min_ns > t
                        };
                        if beaten {
                            continue;
                        }
                    }
                }
                // With a per-series limit, blocks from the wanted end only until it
                // is met: a source's newest (oldest) n values hold every value of the
                // merged newest (oldest) n it has (see [`Storage::cursor`]).
                let in_range: Vec<&file::BlockMeta> = field
                    .blocks
                    .iter()
                    .filter(|b| b.max_ns >= range.start_ns && b.min_ns <= range.end_ns)
                    .collect();
                let newest = matches!(range.limit, Some((_, true)));
                let want = range.limit.map_or(usize::MAX, |(n, _)| n);
                let mut runs: Vec<Source> = Vec::new();
                let mut have = 0usize;
                let numeric = matches!(
                    field.field_type,
                    FieldType::Float | FieldType::Integer | FieldType::Unsigned
                );
                let others = if whole_blocks && numeric {
                    self.other_files_blocks(sid, place, &field.name)
                } else {
                    Vec::new()
                };
                let head_times: Vec<&[i64]> = out
                    .iter()
                    .filter(|(name, _)| whole_blocks && *name == field.name)
                    .flat_map(|(_, sources)| sources)
                    .filter(|(p, _)| *p >= self.files.len())
                    .map(|(_, (t, _))| &t[..])
                    .collect();
                let mut unread: Vec<LazyBlock> = Vec::new();
                let order: Box<dyn Iterator<Item = &&file::BlockMeta>> = if newest {
                    Box::new(in_range.iter().rev())
                } else {
                    Box::new(in_range.iter())
                };
                for b in order {
                    if have >= want {
                        break;
                    }
                    let overlaps = |lo: i64, hi: i64| lo <= b.max_ns && hi >= b.min_ns;
                    if whole_blocks
                        && numeric
                        && b.min_ns >= range.start_ns
                        && b.max_ns <= range.end_ns
                        && !tombs
                            .iter()
                            .any(|t| overlaps(t.record.start_ns, t.record.end_ns))
                        && !others.iter().any(|blocks| {
                            let k = blocks.partition_point(|x| x.max_ns < b.min_ns);
                            blocks.get(k).is_some_and(|x| x.min_ns <= b.max_ns)
                        })
                        && !head_times.iter().any(|t| {
                            let k = t.partition_point(|&x| x < b.min_ns);
                            t.get(k).is_some_and(|&x| x <= b.max_ns)
                        })
                    {
                        unread.push(LazyBlock::new(
                            f.file.clone(),
                            (*b).clone(),
                            field.field_type,
                            self.block_cache.clone(),
                            self.reads.clone(),
                        ));
                        continue;
                    }
                    let cache = self.block_cache.as_deref();
                    let block = match read_block(&f.file, b, field.field_type, cache, &self.reads) {
                        Ok(x) => x,
                        Err(e) => {
                            tracing::error!(error = %e, "a data file block does not read; its values are left out");
                            continue;
                        }
                    };
                    let (mut bt, mut bv) = (Vec::new(), Vec::new());
                    for (i, &t) in block.times.iter().enumerate() {
                        if t < range.start_ns || t > range.end_ns {
                            continue;
                        }
                        if tombs.iter().any(|ts| ts.hides(number, sid, t)) {
                            continue;
                        }
                        bt.push(t);
                        bv.push(block.column.value(i));
                    }
                    have += bt.len();
                    runs.push((bt, bv));
                }
                if newest {
                    runs.reverse();
                }
                let (mut times, mut values): Source = (Vec::new(), Vec::new());
                for (t, v) in runs {
                    times.extend(t);
                    values.extend(v);
                }
                if !unread.is_empty() {
                    match lazy.iter_mut().find(|(n, _)| *n == field.name) {
                        Some((_, blocks)) => blocks.extend(unread),
                        None => lazy.push((field.name.clone(), unread)),
                    }
                }
                if times.is_empty() {
                    continue;
                }
                match out.iter_mut().find(|(n, _)| *n == field.name) {
                    Some((_, sources)) => sources.push((place, (times, values))),
                    None => out.push((field.name.clone(), vec![(place, (times, values))])),
                }
            }
        }
    }
}

impl Storage {
    /// The blocks of `sid`'s field `name` in every file but the one at `place`.
    fn other_files_blocks(
        &self,
        sid: SeriesId,
        place: usize,
        name: &[u8],
    ) -> Vec<&[file::BlockMeta]> {
        self.files
            .iter()
            .enumerate()
            .filter(|(p, _)| *p != place)
            .filter_map(|(_, f)| {
                let at = *f.by_sid.get(&sid)?;
                let field = f.file.series[at as usize]
                    .fields
                    .iter()
                    .find(|x| *x.name == *name)?;
                Some(&field.blocks[..])
            })
            .collect()
    }
}

/// Whether series `sid` has a value left in `files` (a block not wholly under one
/// tombstone counts as holding one).
fn alive_in_files(files: &[Loaded], tombstones: &[Tombstone], sid: SeriesId) -> bool {
    files.iter().any(|f| {
        let Some(&at) = f.by_sid.get(&sid) else {
            return false;
        };
        let number = f.file.footer.number;
        f.file.series[at as usize].fields.iter().any(|field| {
            field.blocks.iter().any(|b| {
                !tombstones
                    .iter()
                    .any(|t| t.hides(number, sid, b.min_ns) && t.hides(number, sid, b.max_ns))
            })
        })
    })
}

/// The oldest run of at least [`COMPACT_MIN_FILES`] (at most [`COMPACT_MAX_FILES`])
/// adjacent files whose sizes are within [`TIER_RATIO`] of each other.
fn size_tiered_window(sizes: &[u64]) -> Option<std::ops::Range<usize>> {
    for start in 0..sizes.len() {
        let (mut lo, mut hi) = (sizes[start].max(1), sizes[start].max(1));
        let mut end = start + 1;
        while end < sizes.len() && end - start < COMPACT_MAX_FILES {
            let s = sizes[end].max(1);
            if s.max(hi) > s.min(lo).saturating_mul(TIER_RATIO) {
                break;
            }
            lo = lo.min(s);
            hi = hi.max(s);
            end += 1;
        }
        if end - start >= COMPACT_MIN_FILES {
            return Some(start..end);
        }
    }
    None
}

/// Adds a tombstone for `delete` when a file holds one of `sids`, or a flush is
/// writing one (`flushing`: the series it already encoded are in no head any more).
fn add_tombstone(
    files: &[Loaded],
    tombstones: &mut Vec<Tombstone>,
    below_file: u64,
    delete: &DeleteRecord,
    sids: &[SeriesId],
    flushing: bool,
) {
    if sids.is_empty()
        || !(flushing
            || files
                .iter()
                .any(|f| sids.iter().any(|s| f.by_sid.contains_key(s))))
    {
        return;
    }
    tombstones.push(Tombstone {
        record: TombstoneRecord {
            keys: delete.keys.clone(),
            start_ns: delete.start_ns,
            end_ns: delete.end_ns,
            below_file,
        },
        sids: sids.iter().copied().collect(),
    });
}

/// Merges a newer column into an older one of the same field (newer wins per time).
fn merge_into(older: &mut (Box<[u8]>, Vec<i64>, Column), times: Vec<i64>, values: Column) {
    if older.2.field_type() != values.field_type() {
        // One type per field and shard; a mismatch cannot be written. Keep the newer.
        older.1 = times;
        older.2 = values;
        return;
    }
    let old_times = std::mem::take(&mut older.1);
    let old_values = std::mem::replace(&mut older.2, Column::new(values.field_type()));
    let field_type = values.field_type();
    let (t, v) = merge_sources(vec![
        (old_times, old_values.into_values()),
        (times, values.into_values()),
    ]);
    older.1 = t;
    older.2 = Column::from_values(field_type, v);
}

/// Registers the series of a file's index in `index` (as if each had been written
/// with a value of every field), returning where each is in the file.
fn register_series(series: &[SeriesMeta], index: &mut dyn SeriesIndex) -> HashMap<SeriesId, u32> {
    let mut lines = Vec::new();
    for s in series {
        lines.extend_from_slice(&s.key);
        for (i, f) in s.fields.iter().enumerate() {
            lines.push(if i == 0 { b' ' } else { b',' });
            lines.extend_from_slice(&f.name);
            lines.extend_from_slice(match f.field_type {
                FieldType::Float => b"=0",
                FieldType::Integer => b"=0i",
                FieldType::Unsigned => b"=0u",
                FieldType::Boolean => b"=f",
                FieldType::String => b"=\"\"",
            });
        }
        lines.extend_from_slice(b" 0\n");
    }
    let body = lineproto::parse(bytes::Bytes::from(lines), Precision::Nanosecond, 0);
    let all: Vec<u32> = (0..body.points.len() as u32).collect();
    let mut rejected = Vec::new();
    let knows_nothing = |_: SeriesId, _: &ParsedBody, _: &PointRef| false;
    let accepted = validate(index, &knows_nothing, &body, &all, &mut rejected);
    for reason in rejected {
        tracing::error!(%reason, "a data file's series disagrees with the field types before it; its values are not read");
    }
    let mut by_sid = HashMap::with_capacity(series.len());
    let mut at = 0usize;
    for (i, known) in accepted {
        let sid = index.resolve(&body, i, known);
        // The parser keeps lines in order; find this point's series in the file.
        let key = body.series_key(&body.points[i as usize]);
        while at < series.len() && *series[at].key != *key {
            at += 1;
        }
        if at < series.len() {
            by_sid.insert(sid, at as u32);
        }
    }
    by_sid
}

/// Moves a file that does not open to `<partition>/bad/`.
fn move_aside(dir: &Path, path: &Path) {
    let bad = dir.join("bad");
    let moved = std::fs::create_dir_all(&bad)
        .and_then(|()| std::fs::rename(path, bad.join(path.file_name().unwrap_or_default())));
    if let Err(e) = moved {
        tracing::error!(file = %path.display(), error = %e, "cannot move a bad data file aside");
    }
}

/// Removes data files no manifest names (a flush cut short before its manifest: the
/// WAL still holds their values) and temporary files.
fn remove_unlisted(dir: &Path, listed: &[u64]) {
    let Ok(entries) = std::fs::read_dir(data_dir(dir)) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let stale = match file::file_number(&name) {
            Some(n) => !listed.contains(&n),
            None => name.ends_with(".tmp"),
        };
        if stale {
            tracing::info!(file = %entry.path().display(), "removing a data file no manifest names");
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

impl Engine for Storage {
    fn check_writable(&self) -> Result<(), EngineError> {
        Ok(self.wal.check_writable()?)
    }

    fn knows_fields(&self, sid: SeriesId, body: &ParsedBody, point: &PointRef) -> bool {
        self.head.knows_fields(sid, body, point)
    }

    fn write(
        &mut self,
        batch: &WriteBatch<'_>,
        index: &mut dyn SeriesIndex,
    ) -> Result<Durable, EngineError> {
        let body = batch.body;
        let durable = self
            .wal
            .append(batch.precision, batch.default_time_ns, |out| {
                // One copy per run of adjacent lines, each run '\n'-terminated.
                for run in body.line_runs(batch.points.iter().map(|p| p.0)) {
                    out.extend_from_slice(&body.body[run]);
                    out.push(b'\n');
                }
            })?;
        apply_write(&mut self.head, body, batch.points, index);
        self.last_write = Instant::now();
        self.logged = true;
        Ok(durable)
    }

    fn delete(
        &mut self,
        record: &DeleteRecord,
        index: &mut dyn SeriesIndex,
    ) -> Result<(u64, Durable), EngineError> {
        let json = serde_json::to_vec(record).expect("delete records serialise");
        let durable = self
            .wal
            .append_kind(wal::KIND_DELETE, Precision::Nanosecond, 0, |out| {
                out.extend_from_slice(&json)
            })?;
        self.logged = true;
        self.last_write = Instant::now();
        let files = &self.files;
        let tombstones_before = self.tombstones.len();
        let tombstones = &mut self.tombstones;
        let below = self.next_file;
        let flushing = self.flushing;
        let (mut removed, series) =
            apply_delete_to(&mut self.head, &mut self.frozen, record, index, |sids| {
                add_tombstone(files, tombstones, below, record, sids, flushing)
            });
        // Values in files under the new tombstone (whole blocks only: a count).
        if let Some(t) = self
            .tombstones
            .last()
            .filter(|_| self.tombstones.len() > tombstones_before)
        {
            for f in &self.files {
                for (&sid, &at) in &f.by_sid {
                    if !t.sids.contains(&sid) {
                        continue;
                    }
                    for field in &f.file.series[at as usize].fields {
                        removed += field
                            .blocks
                            .iter()
                            .filter(|b| b.min_ns >= record.start_ns && b.max_ns <= record.end_ns)
                            .map(|b| b.count as u64)
                            .sum::<u64>();
                    }
                }
            }
        }
        // The series the delete left with no value anywhere leave the index.
        let gone: Vec<SeriesId> = series.into_iter().filter(|&s| !self.alive(s)).collect();
        index.remove_series(&gone, &record.drop_measurements);
        Ok((removed, durable))
    }

    fn cursor<'a>(&'a mut self, sid: SeriesId, range: &ReadRange<'a>) -> Cursor<'a> {
        let in_files = self.files.iter().any(|f| f.by_sid.contains_key(&sid));
        if !in_files && self.frozen.is_empty() {
            return self.head.cursor(sid, range);
        }
        // Each source is read with the limit too: a value among the merged newest
        // (oldest) n is among the newest (oldest) n of every source holding its time
        // (no source has more distinct times beyond it than all of them together).
        // The heads first (they may make files unnecessary), tagged after the files.
        let mut tagged: Vec<TaggedSources> = Vec::new();
        let files = self.files.len();
        for (i, head) in self
            .frozen
            .iter_mut()
            .chain(std::iter::once(&mut self.head))
            .enumerate()
        {
            for block in head.cursor(sid, range) {
                let source = (files + i, (block.times, block.values));
                match tagged.iter_mut().find(|(n, _)| **n == *block.field) {
                    Some((_, sources)) => sources.push(source),
                    None => tagged.push((block.field.into(), vec![source])),
                }
            }
        }
        let mut lazy: Vec<(Box<[u8]>, Vec<LazyBlock>)> = Vec::new();
        self.file_sources(sid, range, &mut tagged, &mut lazy);
        for (name, _) in &lazy {
            if !tagged.iter().any(|(n, _)| n == name) {
                tagged.push((name.clone(), Vec::new()));
            }
        }
        let fields: Vec<(FieldSources, Vec<LazyBlock>)> = tagged
            .into_iter()
            .map(|(name, mut sources)| {
                sources.sort_by_key(|s| s.0);
                let mut unread = lazy
                    .iter_mut()
                    .find(|(n, _)| *n == name)
                    .map(|(_, blocks)| std::mem::take(blocks))
                    .unwrap_or_default();
                unread.sort_by_key(|b| b.meta.min_ns);
                ((name, sources.into_iter().map(|s| s.1).collect()), unread)
            })
            .collect();
        let limit = range.limit;
        Box::new(
            fields
                .into_iter()
                .filter_map(move |((name, sources), lazy)| {
                    let (mut times, mut values) = merge_sources(sources);
                    apply_limit(&mut times, &mut values, limit);
                    (!times.is_empty() || !lazy.is_empty()).then(|| Block {
                        field: std::borrow::Cow::Owned(name.into_vec()),
                        times,
                        values,
                        lazy,
                    })
                }),
        )
    }

    fn tidy(&mut self, go_on: &mut dyn FnMut(usize) -> bool) -> bool {
        self.head.tidy(go_on)
    }

    fn count_values(&mut self) -> u64 {
        if self.files.is_empty() && self.frozen.is_empty() {
            return self.head.count_values();
        }
        let mut sids: HashSet<SeriesId> = self.head.series_ids().collect();
        for h in &self.frozen {
            sids.extend(h.series_ids());
        }
        for f in &self.files {
            sids.extend(f.by_sid.keys().copied());
        }
        let range = ReadRange {
            start_ns: i64::MIN,
            end_ns: i64::MAX,
            fields: None,
            limit: None,
            whole_blocks: false,
        };
        sids.into_iter()
            .map(|sid| {
                self.cursor(sid, &range)
                    .map(|b| b.times.len() as u64)
                    .sum::<u64>()
            })
            .sum()
    }

    fn stats(&self) -> EngineStats {
        EngineStats {
            values: self.head.values()
                + self.frozen.iter().map(Head::values).sum::<u64>()
                + self.files.iter().map(|f| f.file.values()).sum::<u64>(),
            heap_bytes: self.head_bytes(),
            wal: self.wal.stats(),
        }
    }

    fn wait_for_room(&self) -> LocalFuture<'static, ()> {
        let wal = self.wal.clone();
        Box::pin(async move { wal.wait_for_room().await })
    }

    fn flush(&self) -> LocalFuture<'static, Result<(), EngineError>> {
        let wal = self.wal.clone();
        Box::pin(async move { Ok(wal.flush().await?) })
    }

    fn close(&self) -> LocalFuture<'static, ()> {
        let wal = self.wal.clone();
        Box::pin(async move { wal.close().await })
    }

    fn freeze(&mut self) -> Option<FlushTicket> {
        Storage::freeze(self)
    }

    fn abandon_flush(&mut self) {
        Storage::abandon_flush(self)
    }

    fn encode_frozen(
        &mut self,
        wal_boundary: u64,
        key_of: &dyn Fn(SeriesId) -> Vec<u8>,
    ) -> Option<FlushImage> {
        Storage::encode_frozen(self, wal_boundary, key_of)
    }

    fn encode_step(&mut self, image: &mut FlushImage, budget: usize) {
        Storage::encode_step(self, image, budget)
    }

    fn manifest(&self) -> Manifest {
        Storage::manifest(self)
    }

    fn needs_flush(&self) -> bool {
        Storage::needs_flush(self)
    }

    fn install(&mut self, image: FlushImage, file: std::fs::File) -> Manifest {
        Storage::install(self, image, file)
    }

    fn flush_done(&mut self) {
        Storage::flush_done(self)
    }

    fn dir(&self) -> &Path {
        &self.dir
    }

    fn wal(&self) -> &Wal {
        &self.wal
    }

    fn last_write(&self) -> Instant {
        self.last_write
    }

    fn head_bytes(&self) -> usize {
        Storage::head_bytes(self)
    }

    fn file_stats(&self) -> FileStats {
        Storage::file_stats(self)
    }

    fn plan_compaction(&mut self, full: bool) -> Option<CompactionJob> {
        Storage::plan_compaction(self, full)
    }

    fn compact_step(&mut self, job: &mut CompactionJob, budget: usize) -> Result<(), String> {
        Storage::compact_step(self, job, budget)
    }

    fn install_compaction(
        &mut self,
        done: FinishedCompaction,
        file: std::fs::File,
        size: u64,
    ) -> Result<Manifest, String> {
        Storage::install_compaction(self, done, file, size)
    }

    fn compaction_done(&mut self) {
        Storage::compaction_done(self)
    }

    fn file_count(&self) -> usize {
        Storage::file_count(self)
    }

    fn set_block_cache(&mut self, cache: Rc<BlockCache>) {
        Storage::set_block_cache(self, cache)
    }
}
