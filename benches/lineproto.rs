//! Line-protocol parser throughput on a TSBS-like `cpu` dataset.
//!
//! The body is generated here, like TSBS's cpu-only use case: 100 hosts, the 10 TSBS
//! tags (written in TSBS order, i.e. not sorted, so every line needs a canonical key),
//! 10 float fields and nanosecond timestamps every 10 s. One iteration parses a body of
//! 5000 lines (50 rounds of the 100 hosts).
//!
//! Run: `cargo bench --bench lineproto -- --warm-up-time 1 --measurement-time 3`

use bytes::Bytes;
use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use shardcore::lineproto::{parse, Precision};

const HOSTS: usize = 100;
const ROUNDS: usize = 50;
const LINES: usize = HOSTS * ROUNDS;
/// 2016-01-01T00:00:00Z, TSBS's default start.
const START_NS: i64 = 1_451_606_400_000_000_000;
const STEP_NS: i64 = 10_000_000_000;

const REGIONS: &[&str] = &[
    "us-east-1",
    "us-west-1",
    "us-west-2",
    "eu-west-1",
    "eu-central-1",
    "ap-southeast-1",
    "ap-southeast-2",
    "ap-northeast-1",
    "sa-east-1",
];
const OSES: &[&str] = &["Ubuntu16.10", "Ubuntu16.04LTS", "Ubuntu15.10"];
const ARCHES: &[&str] = &["x64", "x86"];
const TEAMS: &[&str] = &["SF", "NYC", "LON", "CHI"];
const ENVIRONMENTS: &[&str] = &["production", "staging", "test"];
const FIELDS: &[&str] = &[
    "usage_user",
    "usage_system",
    "usage_idle",
    "usage_nice",
    "usage_iowait",
    "usage_irq",
    "usage_softirq",
    "usage_steal",
    "usage_guest",
    "usage_guest_nice",
];

/// xorshift64*: deterministic data without a rand dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// The tag set of one host: `,hostname=...,service_environment=...` (TSBS order).
fn host_tags(rng: &mut Rng, host: usize) -> String {
    let region = REGIONS[rng.below(REGIONS.len())];
    let datacenter = format!("{region}{}", ['a', 'b', 'c'][rng.below(3)]);
    format!(
        ",hostname=host_{host},region={region},datacenter={datacenter},rack={},os={},arch={},\
         team={},service={},service_version={},service_environment={}",
        rng.below(100),
        OSES[rng.below(OSES.len())],
        ARCHES[rng.below(ARCHES.len())],
        TEAMS[rng.below(TEAMS.len())],
        rng.below(20),
        rng.below(2),
        ENVIRONMENTS[rng.below(ENVIRONMENTS.len())],
    )
}

/// A TSBS-like cpu body: HOSTS hosts x ROUNDS timestamps, fields as bounded random
/// walks in [0, 100] written with two decimals.
fn tsbs_cpu_body() -> Bytes {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let tags: Vec<String> = (0..HOSTS).map(|h| host_tags(&mut rng, h)).collect();
    let mut values: Vec<[f64; 10]> = (0..HOSTS)
        .map(|_| std::array::from_fn(|_| rng.unit() * 100.0))
        .collect();
    let mut out = String::with_capacity(LINES * 360);
    for round in 0..ROUNDS {
        let ts = START_NS + round as i64 * STEP_NS;
        for (host, tagset) in tags.iter().enumerate() {
            out.push_str("cpu");
            out.push_str(tagset);
            out.push(' ');
            for (i, field) in FIELDS.iter().enumerate() {
                let v = &mut values[host][i];
                *v = (*v + (rng.unit() - 0.5) * 2.0).clamp(0.0, 100.0);
                if i > 0 {
                    out.push(',');
                }
                out.push_str(field);
                out.push('=');
                out.push_str(&format!("{:.2}", *v));
            }
            out.push(' ');
            out.push_str(&ts.to_string());
            out.push('\n');
        }
    }
    Bytes::from(out)
}

/// Parses once outside the timing loop to check the data really is what we measure.
fn checked_body() -> Bytes {
    let body = tsbs_cpu_body();
    let parsed = parse(body.clone(), Precision::Nanosecond, 0);
    assert!(parsed.errors.is_empty(), "{:?}", &parsed.errors[..1]);
    assert_eq!(parsed.points.len(), LINES);
    assert_eq!(parsed.fields.len(), LINES * FIELDS.len());
    assert_eq!(parsed.tags.len(), LINES * 10);
    // Let the allocator settle first: glibc raises its mmap threshold only after the
    // first large frees, and until then every parse maps and faults in fresh pages.
    for _ in 0..20 {
        black_box(parse(body.clone(), Precision::Nanosecond, 0).points.len());
    }
    body
}

fn bench_bytes(c: &mut Criterion) {
    let body = checked_body();
    let mut group = c.benchmark_group("lineproto_bytes");
    group.throughput(Throughput::Bytes(body.len() as u64));
    group.bench_function(format!("parse_tsbs_cpu_{LINES}_lines"), |b| {
        b.iter(|| {
            let parsed = parse(black_box(body.clone()), Precision::Nanosecond, 0);
            black_box(parsed.points.len())
        })
    });
    group.finish();
}

fn bench_lines(c: &mut Criterion) {
    let body = checked_body();
    let mut group = c.benchmark_group("lineproto_lines");
    group.throughput(Throughput::Elements(LINES as u64));
    group.bench_function(format!("parse_tsbs_cpu_{LINES}_lines"), |b| {
        b.iter(|| {
            let parsed = parse(black_box(body.clone()), Precision::Nanosecond, 0);
            black_box(parsed.points.len())
        })
    });
    group.finish();
}

criterion_group!(benches, bench_bytes, bench_lines);
criterion_main!(benches);
