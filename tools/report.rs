//! Counting and reporting of a load run: per-worker tallies, the merged summary as text
//! or JSON, and the latency distribution in HdrHistogram's percentile text format.

use crate::load::{Batch, LoadOptions, RequestError};
use hdrhistogram::Histogram;
use std::collections::BTreeMap;
use std::io::{self, Write};
use std::path::Path;
use std::time::{Duration, Instant};

/// Highest latency recorded exactly: one hour in µs (longer ones saturate).
const MAX_LATENCY_US: u64 = 3_600_000_000;
/// Percentiles printed in the summary.
const PERCENTILES: [(&str, f64); 5] = [
    ("p50", 50.0),
    ("p90", 90.0),
    ("p99", 99.0),
    ("p99.9", 99.9),
    ("p99.99", 99.99),
];

/// What one worker (or the whole run) counted.
pub struct Tally {
    /// HTTP requests sent, retries included.
    pub requests: u64,
    pub retries: u64,
    /// Batches resent once because a kept-alive connection had been closed.
    pub reconnects: u64,
    pub ok_batches: u64,
    pub lines: u64,
    pub values: u64,
    pub raw_bytes: u64,
    pub wire_bytes: u64,
    pub failed_batches: u64,
    pub failed_lines: u64,
    pub errors: BTreeMap<String, u64>,
    /// The first message seen per error kind.
    pub samples: BTreeMap<String, String>,
    /// Latency of acknowledged batches, µs.
    pub latency: Histogram<u64>,
    pub end: Option<Instant>,
    /// Per-batch records, when asked for.
    pub log: Vec<RequestLog>,
}

/// What happened to one batch (a line of `--requests-out`).
pub struct RequestLog {
    pub batch: usize,
    pub worker: usize,
    /// Send time (intended time in open loop) since the run started.
    pub start: Duration,
    pub latency: Duration,
    /// Final HTTP status or error kind.
    pub outcome: String,
    pub retries: u64,
}

fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_LATENCY_US, 3)
        .expect("1 µs..1 h at 3 digits is a valid histogram")
}

impl Tally {
    pub fn new() -> Tally {
        Tally {
            requests: 0,
            retries: 0,
            reconnects: 0,
            ok_batches: 0,
            lines: 0,
            values: 0,
            raw_bytes: 0,
            wire_bytes: 0,
            failed_batches: 0,
            failed_lines: 0,
            errors: BTreeMap::new(),
            samples: BTreeMap::new(),
            latency: new_histogram(),
            end: None,
            log: Vec::new(),
        }
    }

    /// Counts the outcome of one batch.
    pub fn record(&mut self, batch: &Batch, result: Result<(), RequestError>, latency: Duration) {
        match result {
            Ok(()) => {
                self.ok_batches += 1;
                self.lines += batch.lines;
                self.values += batch.values;
                self.raw_bytes += batch.raw_bytes;
                let us = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
                self.latency.saturating_record(us.max(1));
            }
            Err(e) => {
                self.failed_batches += 1;
                self.failed_lines += batch.lines;
                let kind = e.kind();
                self.samples
                    .entry(kind.clone())
                    .or_insert_with(|| e.to_string());
                *self.errors.entry(kind).or_insert(0) += 1;
            }
        }
    }

    pub fn merge(&mut self, other: Tally) {
        self.requests += other.requests;
        self.retries += other.retries;
        self.reconnects += other.reconnects;
        self.ok_batches += other.ok_batches;
        self.lines += other.lines;
        self.values += other.values;
        self.raw_bytes += other.raw_bytes;
        self.wire_bytes += other.wire_bytes;
        self.failed_batches += other.failed_batches;
        self.failed_lines += other.failed_lines;
        self.log.extend(other.log);
        for (k, n) in other.errors {
            *self.errors.entry(k).or_insert(0) += n;
        }
        for (k, m) in other.samples {
            self.samples.entry(k).or_insert(m);
        }
        // Same bounds on both sides: addition cannot fail.
        let _ = self.latency.add(&other.latency);
    }
}

/// The result of a load run.
pub struct Summary {
    pub tally: Tally,
    pub elapsed: Duration,
    pub workers: usize,
    pub batch_lines: u64,
    pub rate: Option<f64>,
    pub gzip: bool,
}

impl Summary {
    pub fn new(tally: Tally, elapsed: Duration, opts: &LoadOptions) -> Summary {
        Summary {
            tally,
            elapsed,
            workers: opts.workers,
            batch_lines: opts.batch_lines,
            rate: opts.rate,
            gzip: opts.gzip,
        }
    }

    fn per_second(&self, n: u64) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs > 0.0 {
            n as f64 / secs
        } else {
            0.0
        }
    }

    /// (name, ms) for the summary percentiles and the max; empty with no successes.
    fn latency_ms(&self) -> Vec<(&'static str, f64)> {
        let h = &self.tally.latency;
        if h.is_empty() {
            return Vec::new();
        }
        let mut out: Vec<(&'static str, f64)> = PERCENTILES
            .iter()
            .map(|&(name, p)| (name, h.value_at_percentile(p) as f64 / 1000.0))
            .collect();
        out.push(("max", h.max() as f64 / 1000.0));
        out
    }

    /// The human-readable report.
    pub fn text(&self) -> String {
        let t = &self.tally;
        let mode = match self.rate {
            Some(r) => format!("open loop at {r} lines/s (latency from intended send time)"),
            None => "closed loop".to_string(),
        };
        let latency: Vec<String> = self
            .latency_ms()
            .iter()
            .map(|(n, ms)| format!("{n} {ms:.3}"))
            .collect();
        let errors = if t.errors.is_empty() {
            "none".to_string()
        } else {
            let list: Vec<String> = t.errors.iter().map(|(k, n)| format!("{k}: {n}")).collect();
            list.join(", ")
        };
        let mut s = format!(
            "mode        {mode}, {} workers, {} lines/batch{}\n\
             lines       {} ok, {} failed ({} batches ok, {} failed)\n\
             values      {}\n\
             requests    {} ({} retries after 503, {} resent on a new connection)\n\
             bytes       {:.1} MB of line protocol, {:.1} MB on the wire\n\
             elapsed     {:.3} s\n\
             throughput  {:.0} lines/s, {:.0} values/s, {:.1} MB/s\n\
             latency ms  {}\n\
             errors      {errors}\n",
            self.workers,
            self.batch_lines,
            if self.gzip { ", gzip" } else { "" },
            t.lines,
            t.failed_lines,
            t.ok_batches,
            t.failed_batches,
            t.values,
            t.requests,
            t.retries,
            t.reconnects,
            t.raw_bytes as f64 / 1e6,
            t.wire_bytes as f64 / 1e6,
            self.elapsed.as_secs_f64(),
            self.per_second(t.lines),
            self.per_second(t.values),
            self.per_second(t.raw_bytes) / 1e6,
            if latency.is_empty() {
                "n/a".to_string()
            } else {
                latency.join("  ")
            },
        );
        for (kind, message) in &t.samples {
            s.push_str(&format!("  first {kind}: {message}\n"));
        }
        s
    }

    /// The same as one JSON object.
    pub fn json(&self) -> serde_json::Value {
        let t = &self.tally;
        let latency: serde_json::Map<String, serde_json::Value> = self
            .latency_ms()
            .into_iter()
            .map(|(n, ms)| (n.to_string(), serde_json::json!(ms)))
            .collect();
        serde_json::json!({
            "workers": self.workers,
            "batch_lines": self.batch_lines,
            "rate_lines_per_s": self.rate,
            "gzip": self.gzip,
            "lines": t.lines,
            "failed_lines": t.failed_lines,
            "values": t.values,
            "batches_ok": t.ok_batches,
            "batches_failed": t.failed_batches,
            "requests": t.requests,
            "retries": t.retries,
            "reconnects": t.reconnects,
            "bytes": t.raw_bytes,
            "wire_bytes": t.wire_bytes,
            "elapsed_s": self.elapsed.as_secs_f64(),
            "lines_per_s": self.per_second(t.lines),
            "values_per_s": self.per_second(t.values),
            "mb_per_s": self.per_second(t.raw_bytes) / 1e6,
            "latency_ms": latency,
            "errors": t.errors,
            "error_samples": t.samples,
        })
    }

    /// Writes one CSV line per batch, in send order, to find stalls in time.
    pub fn write_requests(&self, path: &Path) -> io::Result<()> {
        let mut log: Vec<&RequestLog> = self.tally.log.iter().collect();
        log.sort_by_key(|r| (r.start, r.batch));
        let mut out = io::BufWriter::new(std::fs::File::create(path)?);
        writeln!(out, "batch,worker,start_ms,latency_ms,outcome,retries")?;
        for r in log {
            writeln!(
                out,
                "{},{},{:.3},{:.3},{},{}",
                r.batch,
                r.worker,
                r.start.as_secs_f64() * 1e3,
                r.latency.as_secs_f64() * 1e3,
                r.outcome,
                r.retries
            )?;
        }
        out.flush()
    }

    /// Writes the latency distribution (ms) in HdrHistogram's percentile format, which
    /// the HdrHistogram plotter reads.
    pub fn write_hdr(&self, path: &Path) -> io::Result<()> {
        let h = &self.tally.latency;
        let mut out = io::BufWriter::new(std::fs::File::create(path)?);
        writeln!(
            out,
            "{:>12} {:>14} {:>10} {:>14}\n",
            "Value", "Percentile", "TotalCount", "1/(1-Percentile)"
        )?;
        let mut total = 0u64;
        for v in h.iter_quantiles(5) {
            total += v.count_since_last_iteration();
            let q = v.quantile_iterated_to();
            let inverse = if q < 1.0 {
                format!("{:>14.2}", 1.0 / (1.0 - q))
            } else {
                String::new()
            };
            let ms = v.value_iterated_to() as f64 / 1000.0;
            writeln!(out, "{ms:>12.3} {q:>14.12} {total:>10} {inverse}")?;
        }
        writeln!(
            out,
            "#[Mean    = {:>12.3}, StdDeviation   = {:>12.3}]",
            h.mean() / 1000.0,
            h.stdev() / 1000.0
        )?;
        writeln!(
            out,
            "#[Max     = {:>12.3}, Total count    = {:>12}]",
            h.max() as f64 / 1000.0,
            h.len()
        )?;
        out.flush()
    }
}
