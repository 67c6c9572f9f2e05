//! WAL append throughput (MB/s of encoded records) on ~1 MB records of TSBS cpu lines.
//!
//! - `wal_encode`: [`encode_record`] alone into a reused Vec: the CPU cost (copy +
//!   crc32c), no I/O.
//! - `wal_append/fsync_each`: a glommio executor appends RECORDS records one at a time
//!   and awaits each one's durability, so every record pays its own write + fdatasync.
//! - `wal_append/group_commit`: the same records issued back to back and awaited
//!   together: the flusher writes them in one go and pays one fdatasync.
//! - `std_file/*`: the same bytes through a plain `std::fs::File`: write + fdatasync
//!   per record, one fdatasync per RECORDS records, and no fdatasync at all (page-cache
//!   ceiling; that one rewrites the same 64 MB so it does not flood the disk).
//!
//! - `wal_layout/{per_partition,per_core}_P_partitions_SIZE`: one core's WAL choice
//!   (issue 15): WRITERS concurrent writers each append records of SIZE to P
//!   partitions in turn (a core holding P active shard partitions) and await each
//!   one's durability; with `per_partition` every partition has its own WAL (one
//!   group commit and fdatasync each), with `per_core` all share one. Before each
//!   case the fdatasyncs per 1,000 records are printed.
//!
//! Files go to a fresh temporary directory per measurement (TMPDIR), rolled at the
//! node's default segment size (64 MiB) like the WAL does.
//!
//! Run: `cargo bench --bench wal -- --warm-up-time 1 --measurement-time 5`

// Only the generator is used here; its tests are compiled (cfg(test)) but not run.
#[allow(dead_code, unused_imports)]
#[path = "../tools/cpu_gen.rs"]
mod cpu_gen;

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use shardcore::lineproto::Precision;
use shardcore::tsdb::engine::wal::{encode_record, Wal, WalConfig};
use std::fs::File;
use std::io::{Seek, SeekFrom, Write};
use std::path::Path;
use std::time::{Duration, Instant};

/// Records per iteration of the I/O benches.
const RECORDS: usize = 16;
/// Line-protocol bytes per record (whole lines, at most this).
const RECORD_LINES_BYTES: usize = 1 << 20;
/// The node's default `wal-segment-size-bytes`.
const SEGMENT_BYTES: u64 = 64 * 1024 * 1024;

/// ~1 MB of whole cpu-only lines.
fn cpu_lines() -> Vec<u8> {
    let mut generator = cpu_gen::CpuGenerator::new(100, 42, cpu_gen::TSBS_START_NS);
    let mut out = Vec::with_capacity(RECORD_LINES_BYTES + 1024);
    loop {
        let before = out.len();
        generator.write_line(&mut out);
        if out.len() > RECORD_LINES_BYTES {
            out.truncate(before);
            return out;
        }
    }
}

fn encoded(lines: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(lines.len() + 64);
    encode_record(&mut out, Precision::Nanosecond, 0, |b| {
        b.extend_from_slice(lines)
    });
    out
}

fn configure<'a>(
    c: &'a mut Criterion,
    name: &str,
    bytes: usize,
) -> criterion::BenchmarkGroup<'a, criterion::measurement::WallTime> {
    let mut group = c.benchmark_group(name);
    group.throughput(Throughput::Bytes(bytes as u64));
    group
}

fn bench_encode(c: &mut Criterion) {
    let lines = cpu_lines();
    let record_len = encoded(&lines).len();
    let mut group = configure(c, "wal_encode", record_len);
    let mut out = Vec::with_capacity(record_len);
    group.bench_function("encode_record_1MB", |b| {
        b.iter(|| {
            out.clear();
            encode_record(&mut out, Precision::Nanosecond, 0, |buf| {
                buf.extend_from_slice(black_box(&lines))
            });
            black_box(out.len())
        })
    });
    group.finish();
}

/// How the WAL benches wait for durability.
#[derive(Clone, Copy)]
enum Wait {
    /// Await every record before appending the next: one fdatasync per record.
    Each,
    /// Append all RECORDS, then await them: group commit.
    All,
}

/// Appends RECORDS records `iters` times to a fresh WAL; times the appends only.
async fn wal_run(iters: u64, lines: &[u8], wait: Wait) -> Duration {
    let dir = tempfile::tempdir().expect("temporary directory");
    let config = WalConfig {
        fsync_delay: Duration::ZERO,
        segment_size_bytes: SEGMENT_BYTES,
        max_pending_bytes: SEGMENT_BYTES,
    };
    let wal = Wal::new(dir.path().to_path_buf(), 1, config);
    let start = Instant::now();
    for _ in 0..iters {
        let mut acks = Vec::with_capacity(RECORDS);
        for _ in 0..RECORDS {
            let ack = wal
                .append(Precision::Nanosecond, 0, |b| b.extend_from_slice(lines))
                .expect("WAL append");
            match wait {
                Wait::Each => ack.await.expect("flusher alive").expect("durable"),
                Wait::All => acks.push(ack),
            }
        }
        for ack in acks {
            ack.await.expect("flusher alive").expect("durable");
        }
    }
    let elapsed = start.elapsed();
    assert_eq!(wal.stats().records, iters * RECORDS as u64);
    // Let the flusher exit before the next measurement builds a new WAL.
    wal.close().await;
    elapsed
}

fn bench_wal(c: &mut Criterion) {
    let lines = cpu_lines();
    let bytes = encoded(&lines).len() * RECORDS;
    let executor = glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
        .io_memory(512 * 1024)
        .make()
        .expect("glommio executor");
    let mut group = configure(c, "wal_append", bytes);
    group.bench_function(format!("fsync_each_{RECORDS}x1MB"), |b| {
        b.iter_custom(|iters| executor.run(wal_run(iters, &lines, Wait::Each)))
    });
    group.bench_function(format!("group_commit_{RECORDS}x1MB"), |b| {
        b.iter_custom(|iters| executor.run(wal_run(iters, &lines, Wait::All)))
    });
    group.finish();
}

/// How the std baseline syncs.
#[derive(Clone, Copy)]
enum SyncMode {
    EachRecord,
    EachIteration,
    /// No sync; rewrites the first segment's worth of bytes in place.
    Never,
}

/// Segment files like the WAL's: append, roll at SEGMENT_BYTES, fsync the directory
/// when a new file appears (unless nothing is synced).
struct Segments<'a> {
    dir: &'a Path,
    file: File,
    number: u64,
    offset: u64,
}

impl<'a> Segments<'a> {
    fn new(dir: &'a Path) -> Segments<'a> {
        let file = File::create(dir.join("1.wal")).expect("create segment");
        Segments {
            dir,
            file,
            number: 1,
            offset: 0,
        }
    }

    fn write(&mut self, record: &[u8], sync: SyncMode) {
        if self.offset >= SEGMENT_BYTES {
            if let SyncMode::Never = sync {
                self.file.seek(SeekFrom::Start(0)).expect("seek");
            } else {
                self.number += 1;
                self.file = File::create(self.dir.join(format!("{}.wal", self.number)))
                    .expect("create segment");
                File::open(self.dir)
                    .and_then(|d| d.sync_all())
                    .expect("fsync dir");
            }
            self.offset = 0;
        }
        self.file.write_all(record).expect("write");
        self.offset += record.len() as u64;
        if let SyncMode::EachRecord = sync {
            self.file.sync_data().expect("fdatasync");
        }
    }
}

fn std_run(iters: u64, record: &[u8], sync: SyncMode) -> Duration {
    let dir = tempfile::tempdir().expect("temporary directory");
    let mut segments = Segments::new(dir.path());
    let start = Instant::now();
    for _ in 0..iters {
        for _ in 0..RECORDS {
            segments.write(record, sync);
        }
        if let SyncMode::EachIteration = sync {
            segments.file.sync_data().expect("fdatasync");
        }
    }
    start.elapsed()
}

fn bench_std(c: &mut Criterion) {
    let record = encoded(&cpu_lines());
    let mut group = configure(c, "std_file", record.len() * RECORDS);
    let cases = [
        ("fdatasync_each", SyncMode::EachRecord),
        ("fdatasync_once", SyncMode::EachIteration),
        ("no_sync_page_cache", SyncMode::Never),
    ];
    for (name, sync) in cases {
        group.bench_function(format!("{name}_{RECORDS}x1MB"), |b| {
            b.iter_custom(|iters| std_run(iters, &record, sync))
        });
    }
    group.finish();
}

/// Modest defaults; `--warm-up-time` / `--measurement-time` on the command line win.
fn config() -> Criterion {
    Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5))
}

/// Concurrent writers of the layout benches (a core's in-flight write requests).
const WRITERS: usize = 32;

/// `iters` records per writer into `partitions` partitions, in per-partition WALs or
/// one shared WAL; returns the time and the fdatasyncs.
async fn layout_run(
    iters: u64,
    lines: std::rc::Rc<Vec<u8>>,
    partitions: usize,
    shared: bool,
) -> (Duration, u64) {
    let dir = tempfile::tempdir().expect("temporary directory");
    let config = WalConfig {
        fsync_delay: Duration::ZERO,
        segment_size_bytes: SEGMENT_BYTES,
        max_pending_bytes: SEGMENT_BYTES,
    };
    let wals: std::rc::Rc<Vec<Wal>> = std::rc::Rc::new(
        (0..if shared { 1 } else { partitions })
            .map(|p| {
                let d = dir.path().join(p.to_string());
                std::fs::create_dir_all(&d).expect("WAL directory");
                Wal::new(d, 1, config)
            })
            .collect(),
    );
    let start = Instant::now();
    let tasks: Vec<_> = (0..WRITERS)
        .map(|w| {
            let (wals, lines) = (wals.clone(), lines.clone());
            glommio::spawn_local(async move {
                for k in 0..iters as usize {
                    let wal = &wals[(w + k) % wals.len()];
                    let ack = wal
                        .append(Precision::Nanosecond, 0, |b| b.extend_from_slice(&lines))
                        .expect("WAL append");
                    ack.await.expect("flusher alive").expect("durable");
                }
            })
        })
        .collect();
    for t in tasks {
        t.await;
    }
    let elapsed = start.elapsed();
    let syncs = wals.iter().map(|w| w.stats().syncs).sum();
    for w in wals.iter() {
        w.close().await;
    }
    (elapsed, syncs)
}

fn bench_layout(c: &mut Criterion) {
    let executor = glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
        .io_memory(512 * 1024)
        .make()
        .expect("glommio executor");
    let all = cpu_lines();
    for (size_name, size) in [("16KB", 16 << 10), ("256KB", 256 << 10)] {
        // Whole lines up to `size`.
        let cut = all[..size]
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(size, |i| i + 1);
        let lines = std::rc::Rc::new(all[..cut].to_vec());
        let mut group = configure(c, "wal_layout", encoded(&lines).len() * WRITERS);
        for partitions in [1usize, 4, 16] {
            for (name, shared) in [("per_partition", false), ("per_core", true)] {
                if partitions == 1 && shared {
                    continue; // the same as one WAL per partition
                }
                let (_, syncs) = executor.run(layout_run(20, lines.clone(), partitions, shared));
                eprintln!(
                    "wal_layout {name} {partitions} partitions {size_name}: {:.0} fdatasyncs per 1000 records",
                    syncs as f64 * 1000.0 / (20 * WRITERS) as f64
                );
                group.bench_function(format!("{name}_{partitions}_partitions_{size_name}"), |b| {
                    b.iter_custom(|iters| {
                        executor
                            .run(layout_run(iters, lines.clone(), partitions, shared))
                            .0
                    })
                });
            }
        }
        group.finish();
    }
}

criterion_group! {
    name = benches;
    config = config();
    targets = bench_encode, bench_wal, bench_std, bench_layout
}
criterion_main!(benches);
