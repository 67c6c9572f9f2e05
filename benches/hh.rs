//! Hinted-handoff enqueue throughput beside a plain sequential file write on the same
//! disk (issue 4 aims at >= 80% of it): 16 records of 1 MiB of line protocol, each made
//! durable before the next (`pwrite` + `fdatasync` for the queue, `write` +
//! `fdatasync` for the file).

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use shardcore::hh::{Limits, Queue};
use std::io::Write;
use std::time::Duration;

const RECORD_BYTES: usize = 1 << 20;
const RECORDS: usize = 16;

fn record() -> Vec<u8> {
    let line = b"cpu,hostname=host_1,region=eu-west-1 usage_user=12.5,usage_system=3.25 1451606400000000000\n";
    line.iter().copied().cycle().take(RECORD_BYTES).collect()
}

/// A fresh queue whose first segment is already created (fallocate) outside the timing,
/// as a live queue keeps a spare segment ready.
fn warm_queue() -> (tempfile::TempDir, Queue) {
    let dir = tempfile::tempdir().unwrap();
    let limits = Limits {
        segment_size_bytes: 64 << 20,
        ..Limits::default()
    };
    let (mut queue, _) = Queue::open(&dir.path().join("q"), limits).unwrap();
    queue.append(u64::MAX, &[b"warm"]).unwrap();
    queue.flush().unwrap();
    (dir, queue)
}

fn bench(c: &mut Criterion) {
    let data = record();
    let mut group = c.benchmark_group("hh_enqueue");
    group.throughput(Throughput::Bytes((RECORD_BYTES * RECORDS) as u64));
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(5));
    group.bench_function("queue_append_flush_16x1MiB", |b| {
        b.iter_batched(
            warm_queue,
            |(dir, mut queue)| {
                for i in 0..RECORDS {
                    queue.append(i as u64, &[&data]).unwrap();
                    queue.flush().unwrap();
                }
                drop(queue);
                drop(dir);
            },
            criterion::BatchSize::PerIteration,
        )
    });
    group.bench_function("queue_append_fdatasync_job_16x1MiB", |b| {
        b.iter_batched(
            warm_queue,
            |(dir, mut queue)| {
                for i in 0..RECORDS {
                    queue.append(i as u64, &[&data]).unwrap();
                    // The off-core form (FlushJob::run is what a blocking thread runs).
                    if let Some(job) = queue.start_flush().unwrap() {
                        let done = job.run();
                        queue.finish_flush(done).unwrap();
                    }
                }
                drop(queue);
                drop(dir);
            },
            criterion::BatchSize::PerIteration,
        )
    });
    group.bench_function("plain_file_write_fdatasync_16x1MiB", |b| {
        b.iter_batched(
            || {
                let dir = tempfile::tempdir().unwrap();
                let file = std::fs::File::create(dir.path().join("plain")).unwrap();
                (dir, file)
            },
            |(dir, mut file)| {
                for _ in 0..RECORDS {
                    file.write_all(&data).unwrap();
                    file.sync_data().unwrap();
                }
                drop(file);
                drop(dir);
            },
            criterion::BatchSize::PerIteration,
        )
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
