//! `shardcore-bench query`: the TSBS devops query types against the cpu-only data set,
//! each run N times with fresh random hosts and time windows, latency percentiles per
//! type.
//!
//! The InfluxQL text is TSBS's (`tsbs_generate_queries`, influx dialect): hosts named
//! `host_<i>` chosen at random from `--hosts`, windows placed at random inside the data
//! set (`--start`, `--rows` x 10 s; a window longer than the data set covers all of it).
//! For VictoriaMetrics the same questions are asked in MetricsQL through
//! `/api/v1/query_range` (VictoriaMetrics stores line-protocol field `f` of measurement
//! `m` as metric `m_f`), the equivalence TSBS's own VictoriaMetrics queries use.
//!
//! Every answer is checked: a non-2xx status or an `"error"` in the body counts as an
//! error of that type and its latency is not recorded.

use crate::cpu_gen::SplitMix64;
use crate::load::{url_encode, Conn, Target};
use hdrhistogram::Histogram;
use std::fmt::Write as _;
use std::time::{Duration, Instant};

/// The cpu-only fields, in TSBS order.
const FIELDS: [&str; 10] = [
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

const MINUTE_NS: i64 = 60_000_000_000;
const HOUR_NS: i64 = 60 * MINUTE_NS;

/// TSBS query types on cpu-only data.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum QueryType {
    /// max of 1 metric, 1 host, 1 hour, by 1 minute.
    #[value(name = "single-groupby-1-1-1")]
    SingleGroupby111,
    /// max of 5 metrics, 1 host, 12 hours, by 1 minute.
    #[value(name = "single-groupby-5-1-12")]
    SingleGroupby5112,
    /// max of all 10 metrics, 1 host, 8 hours, by 1 hour.
    #[value(name = "cpu-max-all-1")]
    CpuMaxAll1,
    /// mean of 1 metric, all hosts, 12 hours, by 1 hour and host.
    #[value(name = "double-groupby-1")]
    DoubleGroupby1,
    /// mean of all 10 metrics, all hosts, 12 hours, by 1 hour and host.
    #[value(name = "double-groupby-all")]
    DoubleGroupbyAll,
    /// the last point of every host.
    #[value(name = "lastpoint")]
    Lastpoint,
    /// points of 1 host with usage_user > 90 in 12 hours.
    #[value(name = "high-cpu-1")]
    HighCpu1,
}

impl QueryType {
    pub const ALL: [QueryType; 7] = [
        QueryType::SingleGroupby111,
        QueryType::SingleGroupby5112,
        QueryType::CpuMaxAll1,
        QueryType::DoubleGroupby1,
        QueryType::DoubleGroupbyAll,
        QueryType::Lastpoint,
        QueryType::HighCpu1,
    ];

    pub fn name(self) -> &'static str {
        match self {
            QueryType::SingleGroupby111 => "single-groupby-1-1-1",
            QueryType::SingleGroupby5112 => "single-groupby-5-1-12",
            QueryType::CpuMaxAll1 => "cpu-max-all-1",
            QueryType::DoubleGroupby1 => "double-groupby-1",
            QueryType::DoubleGroupbyAll => "double-groupby-all",
            QueryType::Lastpoint => "lastpoint",
            QueryType::HighCpu1 => "high-cpu-1",
        }
    }

    /// (metrics, window length) of the type.
    fn shape(self) -> (usize, i64) {
        match self {
            QueryType::SingleGroupby111 => (1, HOUR_NS),
            QueryType::SingleGroupby5112 => (5, 12 * HOUR_NS),
            QueryType::CpuMaxAll1 => (10, 8 * HOUR_NS),
            QueryType::DoubleGroupby1 => (1, 12 * HOUR_NS),
            QueryType::DoubleGroupbyAll => (10, 12 * HOUR_NS),
            QueryType::Lastpoint => (10, 0),
            QueryType::HighCpu1 => (10, 12 * HOUR_NS),
        }
    }
}

/// Query language of the server.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Dialect {
    /// InfluxQL on `/query` (ShardCore, InfluxDB 1.x).
    Influxql,
    /// MetricsQL on `/api/v1/query_range` (VictoriaMetrics).
    Metricsql,
}

/// Where the data set lies, so windows fall inside it.
#[derive(Clone, Copy, Debug)]
pub struct Dataset {
    pub hosts: u64,
    pub start_ns: i64,
    pub end_ns: i64,
}

/// A random window of `len` inside the data set, aligned to the minute (TSBS aligns
/// its random windows the same way); the whole data set when it is shorter.
fn window(rng: &mut SplitMix64, d: &Dataset, len: i64) -> (i64, i64) {
    let span = d.end_ns - d.start_ns;
    if len >= span {
        return (d.start_ns, d.end_ns);
    }
    let slots = ((span - len) / MINUTE_NS).max(0) as u64 + 1;
    let start = d.start_ns + rng.below(slots as usize) as i64 * MINUTE_NS;
    (start, start + len)
}

fn rfc3339(ns: i64) -> String {
    // Whole seconds, as TSBS writes its time literals.
    let secs = ns.div_euclid(1_000_000_000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

/// Howard Hinnant's days-to-civil.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// The request path (with query string) of one instance of `kind`.
pub fn instance(
    kind: QueryType,
    dialect: Dialect,
    db: &str,
    rng: &mut SplitMix64,
    d: &Dataset,
) -> String {
    let (metrics, len) = kind.shape();
    let host = format!("host_{}", rng.below(d.hosts.max(1) as usize));
    let (start, end) = window(rng, d, len);
    let fields = &FIELDS[..metrics];
    match dialect {
        Dialect::Influxql => {
            let agg = |f: &str| {
                fields
                    .iter()
                    .map(|x| format!("{f}({x})"))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            let range = format!("time >= '{}' AND time < '{}'", rfc3339(start), rfc3339(end));
            let q = match kind {
                QueryType::SingleGroupby111 | QueryType::SingleGroupby5112 => format!(
                    "SELECT {} FROM cpu WHERE (hostname = '{host}') AND {range} GROUP BY time(1m)",
                    agg("max")
                ),
                QueryType::CpuMaxAll1 => format!(
                    "SELECT {} FROM cpu WHERE (hostname = '{host}') AND {range} GROUP BY time(1h)",
                    agg("max")
                ),
                QueryType::DoubleGroupby1 | QueryType::DoubleGroupbyAll => format!(
                    "SELECT {} FROM cpu WHERE {range} GROUP BY time(1h),hostname",
                    agg("mean")
                ),
                QueryType::Lastpoint => {
                    "SELECT * FROM cpu GROUP BY \"hostname\" ORDER BY time DESC LIMIT 1".to_string()
                }
                QueryType::HighCpu1 => format!(
                    "SELECT * FROM cpu WHERE usage_user > 90.0 AND {range} AND (hostname = '{host}')"
                ),
            };
            format!("/query?db={}&q={}", url_encode(db), url_encode(&q))
        }
        Dialect::Metricsql => {
            let names = if metrics == 1 {
                format!("__name__=\"cpu_{}\"", fields[0])
            } else {
                format!("__name__=~\"cpu_({})\"", fields.join("|"))
            };
            let (q, step) = match kind {
                QueryType::SingleGroupby111 | QueryType::SingleGroupby5112 => (
                    format!(
                        "max(max_over_time({{{names},hostname=\"{host}\"}}[1m])) by (__name__)"
                    ),
                    60,
                ),
                QueryType::CpuMaxAll1 => (
                    format!(
                        "max(max_over_time({{{names},hostname=\"{host}\"}}[1h])) by (__name__)"
                    ),
                    3600,
                ),
                QueryType::DoubleGroupby1 | QueryType::DoubleGroupbyAll => (
                    format!("avg(avg_over_time({{{names}}}[1h])) by (__name__, hostname)"),
                    3600,
                ),
                QueryType::Lastpoint => {
                    // The newest value of every series at the end of the data set.
                    let q = format!("last_over_time({{{names}}}[1d])");
                    return format!(
                        "/api/v1/query?query={}&time={}",
                        url_encode(&q),
                        d.end_ns / 1_000_000_000
                    );
                }
                QueryType::HighCpu1 => (
                    format!("{{__name__=\"cpu_usage_user\",hostname=\"{host}\"}} > 90"),
                    10,
                ),
            };
            format!(
                "/api/v1/query_range?query={}&start={}&end={}&step={step}",
                url_encode(&q),
                start / 1_000_000_000,
                end / 1_000_000_000 - 1
            )
        }
    }
}

/// Results of one query type.
pub struct TypeResult {
    pub kind: QueryType,
    pub micros: Histogram<u64>,
    pub errors: u64,
    pub first_error: Option<String>,
    pub example: String,
}

/// Runs each type `runs` times in turn (after `warmup` untimed runs), one keep-alive
/// connection, one query at a time.
#[allow(clippy::too_many_arguments)]
pub fn run(
    target: &Target,
    types: &[QueryType],
    dialect: Dialect,
    db: &str,
    dataset: &Dataset,
    runs: u32,
    warmup: u32,
    seed: u64,
    timeout: Duration,
) -> Result<Vec<TypeResult>, String> {
    let mut rng = SplitMix64::new(seed);
    let mut conn: Option<Conn> = None;
    let mut out = Vec::new();
    for &kind in types {
        let mut result = TypeResult {
            kind,
            micros: Histogram::new_with_bounds(1, 3_600_000_000, 3).map_err(|e| e.to_string())?,
            errors: 0,
            first_error: None,
            example: String::new(),
        };
        for i in 0..warmup + runs {
            let path = instance(kind, dialect, db, &mut rng, dataset);
            if result.example.is_empty() {
                result.example = path.clone();
            }
            let head = format!(
                "GET {}{path} HTTP/1.1\r\nHost: {}\r\nUser-Agent: shardcore-bench\r\nAccept: application/json\r\n\r\n",
                target.base_path, target.host_header
            );
            let started = Instant::now();
            let mut c = match conn.take() {
                Some(c) => c,
                None => Conn::open(target, timeout).map_err(|e| e.to_string())?,
            };
            let outcome = c.exchange(head.as_bytes(), b"");
            let elapsed = started.elapsed();
            let failure = match outcome {
                Ok(reply) => {
                    let body = String::from_utf8_lossy(&reply.body);
                    let failed = reply.status / 100 != 2 || body.contains("\"error\"");
                    if !reply.close {
                        conn = Some(c);
                    }
                    failed.then(|| {
                        format!(
                            "HTTP {}: {}",
                            reply.status,
                            body.chars().take(300).collect::<String>()
                        )
                    })
                }
                Err(e) => Some(e.to_string()),
            };
            if i < warmup {
                continue;
            }
            match failure {
                None => {
                    let us = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
                    result.micros.saturating_record(us.max(1));
                }
                Some(e) => {
                    result.errors += 1;
                    result.first_error.get_or_insert(e);
                }
            }
        }
        out.push(result);
    }
    Ok(out)
}

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

/// The results as a text table (milliseconds).
pub fn text(results: &[TypeResult]) -> String {
    let mut out = format!(
        "{:<24}{:>6}{:>8}{:>10}{:>10}{:>10}{:>10}{:>10}\n",
        "query type", "runs", "errors", "p50 ms", "p90 ms", "p99 ms", "max ms", "mean ms"
    );
    for r in results {
        let h = &r.micros;
        let _ = writeln!(
            out,
            "{:<24}{:>6}{:>8}{:>10.2}{:>10.2}{:>10.2}{:>10.2}{:>10.2}",
            r.kind.name(),
            h.len(),
            r.errors,
            ms(h.value_at_quantile(0.5)),
            ms(h.value_at_quantile(0.9)),
            ms(h.value_at_quantile(0.99)),
            ms(h.max()),
            h.mean() / 1000.0
        );
        if let Some(e) = &r.first_error {
            let _ = writeln!(out, "  first error: {e}");
        }
    }
    out
}

/// The results as JSON (milliseconds).
pub fn json(results: &[TypeResult]) -> serde_json::Value {
    serde_json::Value::Array(
        results
            .iter()
            .map(|r| {
                let h = &r.micros;
                serde_json::json!({
                    "type": r.kind.name(),
                    "runs": h.len(),
                    "errors": r.errors,
                    "first_error": r.first_error,
                    "p50_ms": ms(h.value_at_quantile(0.5)),
                    "p90_ms": ms(h.value_at_quantile(0.9)),
                    "p99_ms": ms(h.value_at_quantile(0.99)),
                    "max_ms": ms(h.max()),
                    "mean_ms": h.mean() / 1000.0,
                    "example": r.example,
                })
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dataset() -> Dataset {
        Dataset {
            hosts: 100,
            start_ns: 1_451_606_400_000_000_000, // 2016-01-01T00:00:00Z
            end_ns: 1_451_606_400_000_000_000 + 24 * HOUR_NS,
        }
    }

    #[test]
    fn influxql_instances_are_tsbs_shaped_and_inside_the_data_set() {
        let d = dataset();
        let mut rng = SplitMix64::new(1);
        for _ in 0..50 {
            let path = instance(
                QueryType::SingleGroupby5112,
                Dialect::Influxql,
                "benchmark",
                &mut rng,
                &d,
            );
            assert!(
                path.starts_with("/query?db=benchmark&q=SELECT%20max%28usage_user%29"),
                "{path}"
            );
            assert!(path.contains("GROUP%20BY%20time%281m%29"));
            assert!(
                path.contains("usage_iowait") && !path.contains("usage_irq"),
                "5 metrics"
            );
        }
        let mut rng = SplitMix64::new(2);
        for _ in 0..200 {
            let (s, e) = window(&mut rng, &d, 12 * HOUR_NS);
            assert_eq!(e - s, 12 * HOUR_NS);
            assert!(s >= d.start_ns && e <= d.end_ns && (s - d.start_ns) % MINUTE_NS == 0);
        }
        // Longer than the data set: all of it.
        let short = Dataset {
            end_ns: d.start_ns + HOUR_NS,
            ..d
        };
        assert_eq!(
            window(&mut rng, &short, 12 * HOUR_NS),
            (short.start_ns, short.end_ns)
        );
        assert_eq!(
            rfc3339(d.start_ns + 3_723_000_000_000),
            "2016-01-01T01:02:03Z"
        );
    }

    #[test]
    fn the_same_seed_gives_the_same_queries() {
        let d = dataset();
        let all = |seed| {
            let mut rng = SplitMix64::new(seed);
            QueryType::ALL
                .iter()
                .flat_map(|&k| {
                    [Dialect::Influxql, Dialect::Metricsql]
                        .map(|dl| instance(k, dl, "b", &mut rng, &d))
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(all(7), all(7));
        assert_ne!(all(7), all(8));
    }
}
