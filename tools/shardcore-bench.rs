//! `shardcore-bench`: a load client for any InfluxDB 1.x-compatible `/write` endpoint.
//!
//! - `generate`: deterministic TSBS-compatible cpu-only line protocol to a file/stdout.
//! - `load`: POSTs batches from W threads (blocking sockets, HTTP/1.1 keep-alive, a
//!   hand-written client) and reports throughput and latency percentiles.
//! - `sink`: a do-nothing HTTP server, to measure the client's own ceiling.
//!
//! Back of the envelope: a cpu-only line is ~365 bytes with 10 values, so a
//! 5000-line batch is ~1.8 MB and 1 M lines are ~365 MB (all held in memory during a
//! run, so the client does no generation while measuring). At 1 M lines/s that is
//! ~365 MB/s on the wire, 200 requests/s of 5000 lines; over loopback one blocking
//! connection moves a few GB/s (measured against `sink`: 10-15 M lines/s with 4
//! workers on 2 cores), so the server is what gets measured. Generation runs at
//! 4-6 M lines/s on one core (fixed-point values, no float formatting).

mod attack;
mod ceilings;
mod chart;
mod cpu_gen;
mod devops_gen;
mod http1;
mod load;
mod query;
mod report;
mod sink;

use clap::{Args, Parser, Subcommand, ValueEnum};
use cpu_gen::parse_start;
use load::{Batch, LoadError, LoadOptions};
use std::io::{self, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

#[derive(Parser)]
#[command(
    name = "shardcore-bench",
    version,
    about = "Load generator and client for InfluxDB 1.x-compatible /write endpoints"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Write deterministic TSBS-compatible line protocol.
    Generate(GenerateArgs),
    /// POST line protocol to /write and report throughput and latency.
    Load(Box<LoadArgs>),
    /// Run the TSBS query types (cpu-only) and report latency percentiles per type.
    Query(QueryArgs),
    /// SVG charts (throughput over time, latency percentile spectrum) of load runs
    /// from their `--requests-out` logs, one line per run.
    Chart(ChartArgs),
    /// Side-by-side ingest comparison (ShardCore 1 node and 3-node cluster, InfluxDB
    /// 1.6.7, VictoriaMetrics): runs tools/compare-ingest.sh with these arguments.
    Compare {
        /// Arguments for tools/compare-ingest.sh (`-- --help` lists them).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// This machine's physical ceilings: memcpy, loopback TCP, sequential write and
    /// fdatasync rate (in --dir, which should be on the disk the data dir uses).
    Ceilings {
        /// Directory for the disk measurements (temporary files, removed after).
        #[arg(long, default_value = ".")]
        dir: PathBuf,
    },
    /// Write latency of a normal client without and then with hostile clients (idle
    /// connections, slow bodies, slowloris) beside it, in one run.
    Attack(AttackArgs),
    /// A minimal HTTP server answering 204 to everything (the client's ceiling).
    Sink {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:9999")]
        listen: String,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum UseCase {
    /// TSBS cpu-only: measurement `cpu`, 10 tags, 10 float fields, one row per host per 10 s.
    CpuOnly,
    /// TSBS devops: cpu, diskio, disk, kernel, mem, net, nginx, postgresl, redis; one
    /// line of each per host per 10 s (lines = hosts x rows x 9).
    Devops,
}

/// What data to generate.
#[derive(Args)]
struct DataArgs {
    /// Data set (TSBS use case).
    #[arg(long, value_enum, default_value = "cpu-only")]
    use_case: UseCase,
    /// Number of hosts (series per timestamp).
    #[arg(long, default_value_t = 100)]
    hosts: u64,
    /// Rows per host (timestamps, 10 s apart); lines = hosts x rows.
    #[arg(long, default_value_t = 1000)]
    rows: u64,
    /// PRNG seed: the same seed gives the same bytes.
    #[arg(long, default_value_t = 123)]
    seed: u64,
    /// First timestamp: RFC 3339 or nanoseconds since the epoch.
    #[arg(long, default_value = "2016-01-01T00:00:00Z")]
    start: String,
}

#[derive(Args)]
struct GenerateArgs {
    #[command(flatten)]
    data: DataArgs,
    /// Output file (default stdout).
    #[arg(long)]
    out: Option<PathBuf>,
}

#[derive(Args)]
struct LoadArgs {
    /// Base URL of the server.
    #[arg(long, default_value = "http://127.0.0.1:8086")]
    url: String,
    /// Database to write to.
    #[arg(long, default_value = "benchmark")]
    db: String,
    /// Line-protocol file to send (instead of generating data).
    #[arg(long)]
    file: Option<PathBuf>,
    #[command(flatten)]
    data: DataArgs,
    /// Concurrent connections, one thread each.
    #[arg(long, default_value_t = 4)]
    workers: usize,
    /// Lines per request.
    #[arg(long, default_value_t = 5000)]
    batch_lines: u64,
    /// `consistency` query parameter.
    #[arg(long, default_value = "one")]
    consistency: String,
    /// `precision` query parameter.
    #[arg(long, default_value = "ns")]
    precision: String,
    /// Gzip bodies (compressed before timing starts).
    #[arg(long)]
    gzip: bool,
    /// Gzip level, 0-9.
    #[arg(long, default_value_t = 1)]
    gzip_level: u32,
    /// Open loop: send at this many lines/s; latency is measured from each batch's
    /// intended send time (coordinated omission corrected).
    #[arg(long)]
    rate: Option<f64>,
    /// Send `CREATE DATABASE <db>` to /query first.
    #[arg(long)]
    create_db: bool,
    /// Print the result as one JSON object.
    #[arg(long)]
    json: bool,
    /// Write the latency distribution (HdrHistogram percentile text, ms) to this file.
    #[arg(long)]
    hdr_out: Option<PathBuf>,
    /// Write one CSV line per batch (start, latency, status) to this file.
    #[arg(long)]
    requests_out: Option<PathBuf>,
    /// Retries of a batch answered 503 (each after its Retry-After).
    #[arg(long, default_value_t = 10)]
    max_retries: u32,
    /// Connect/read/write timeout per request, seconds.
    #[arg(long, default_value_t = 60)]
    timeout_s: u64,
    /// User to write as (HTTP Basic), with --password.
    #[arg(long)]
    username: Option<String>,
    /// Password of --username.
    #[arg(long, default_value = "")]
    password: String,
    /// For an https --url: PEM file of the CA (or self-signed certificate) that the
    /// server's certificate is verified against.
    #[arg(long)]
    tls_ca: Option<PathBuf>,
    /// Send the data as Prometheus remote write does (`/api/v1/prom/write`, snappy
    /// protobuf, one series per point and numeric field); counts are samples.
    #[arg(long, conflicts_with = "gzip")]
    prometheus: bool,
}

#[derive(Args)]
struct AttackArgs {
    /// Base URL of the server.
    #[arg(long, default_value = "http://127.0.0.1:8086")]
    url: String,
    /// Database the normal client writes to (created first).
    #[arg(long, default_value = "attack")]
    db: String,
    /// Seconds of each phase (without, then with the hostile clients).
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Lines per write of the normal client.
    #[arg(long, default_value_t = 100)]
    batch_lines: usize,
    /// Connections that send nothing.
    #[arg(long, default_value_t = 4000)]
    idle: usize,
    /// Writes that send their body one byte a second.
    #[arg(long, default_value_t = 200)]
    slow_bodies: usize,
    /// Connections that send a header byte every 500 ms.
    #[arg(long, default_value_t = 50)]
    slowloris: usize,
}

#[derive(Args)]
struct QueryArgs {
    /// Base URL of the server.
    #[arg(long, default_value = "http://127.0.0.1:8086")]
    url: String,
    /// Database holding the cpu-only data set.
    #[arg(long, default_value = "benchmark")]
    db: String,
    /// The data set that was loaded (hosts, rows, start): windows and hosts are drawn
    /// inside it.
    #[command(flatten)]
    data: DataArgs,
    /// Query types, comma-separated (default: all seven).
    #[arg(long, value_enum, value_delimiter = ',')]
    types: Vec<query::QueryType>,
    /// Timed queries per type.
    #[arg(long, default_value_t = 20)]
    runs: u32,
    /// Untimed queries per type before the timed ones.
    #[arg(long, default_value_t = 2)]
    warmup: u32,
    /// Query language: InfluxQL on /query, or MetricsQL on /api/v1/query_range.
    #[arg(long, value_enum, default_value = "influxql")]
    dialect: query::Dialect,
    /// Per-query timeout, seconds.
    #[arg(long, default_value_t = 120)]
    timeout_s: u64,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct ChartArgs {
    /// Runs as NAME=requests.csv (the load tool's --requests-out), one line each.
    #[arg(required = true)]
    runs: Vec<String>,
    /// Lines per batch of those runs (--batch-lines).
    #[arg(long, default_value_t = 5000)]
    batch_lines: u64,
    /// Directory for the SVG files.
    #[arg(long, default_value = ".")]
    out_dir: PathBuf,
    /// File name prefix (e.g. `ingest-2026-11-22-`).
    #[arg(long, default_value = "")]
    prefix: String,
    /// Chart title.
    #[arg(long, default_value = "Ingest")]
    title: String,
}

/// Failures of a subcommand.
#[derive(Debug)]
enum BenchError {
    Start(cpu_gen::TimeParseError),
    Output { what: String, source: io::Error },
    Load(LoadError),
    Query(String),
}

impl std::fmt::Display for BenchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BenchError::Start(e) => write!(f, "{e}"),
            BenchError::Output { what, source } => write!(f, "cannot write {what}: {source}"),
            BenchError::Load(e) => write!(f, "{e}"),
            BenchError::Query(e) => write!(f, "query: {e}"),
        }
    }
}

impl From<LoadError> for BenchError {
    fn from(e: LoadError) -> BenchError {
        BenchError::Load(e)
    }
}

fn output_error(what: impl Into<String>) -> impl FnOnce(io::Error) -> BenchError {
    let what = what.into();
    move |source| BenchError::Output { what, source }
}

fn main() -> ExitCode {
    let result = match Cli::parse().command {
        Command::Generate(args) => generate(&args),
        Command::Load(args) => run_load(&args),
        Command::Query(args) => run_queries(&args),
        Command::Chart(args) => run_chart(&args),
        Command::Ceilings { dir } => ceilings::measure(&dir)
            .map(|c| print!("{}", ceilings::markdown(&c)))
            .map_err(output_error(format!("measuring in {}", dir.display()))),
        Command::Compare { args } => run_compare(&args),
        Command::Attack(args) => {
            let options = attack::AttackOptions {
                url: args.url,
                db: args.db,
                seconds: args.seconds,
                batch_lines: args.batch_lines,
                idle: args.idle,
                slow_bodies: args.slow_bodies,
                slowloris: args.slowloris,
            };
            attack::run(&options)
                .map(|phases| print!("{}", attack::report(&phases)))
                .map_err(|e| BenchError::Query(format!("attack: {e}")))
        }
        Command::Sink { listen } => {
            sink::run(&listen).map_err(output_error(format!("sink on {listen}")))
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("shardcore-bench: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `generate`: streams the data set in ~1 MB chunks.
fn generate(args: &GenerateArgs) -> Result<(), BenchError> {
    let start_ns = parse_start(&args.data.start).map_err(BenchError::Start)?;
    let what = args
        .out
        .as_ref()
        .map_or("stdout".to_string(), |p| p.display().to_string());
    let mut out: Box<dyn Write> = match &args.out {
        Some(path) => Box::new(std::fs::File::create(path).map_err(output_error(what.clone()))?),
        None => Box::new(io::stdout().lock()),
    };
    let started = Instant::now();
    let devops = matches!(args.data.use_case, UseCase::Devops);
    let mut generator = load::Generator::new(devops, args.data.hosts, args.data.seed, start_ns);
    let total = args
        .data
        .hosts
        .saturating_mul(args.data.rows)
        .saturating_mul(generator.lines_per_row());
    let (mut left, mut bytes) = (total, 0u64);
    let mut buf = Vec::with_capacity(2 << 20);
    while left > 0 {
        let n = left.min(3000);
        buf.clear();
        generator.write_lines(n, &mut buf);
        out.write_all(&buf).map_err(output_error(what.clone()))?;
        bytes += buf.len() as u64;
        left -= n;
    }
    out.flush().map_err(output_error(what))?;
    let secs = started.elapsed().as_secs_f64().max(1e-9);
    eprintln!(
        "generated {total} lines, {:.1} MB in {secs:.3} s ({:.0} lines/s, {:.0} MB/s)",
        bytes as f64 / 1e6,
        total as f64 / secs,
        bytes as f64 / 1e6 / secs
    );
    Ok(())
}

/// Builds (and gzips) every batch before timing starts.
fn prepare_batches(args: &LoadArgs) -> Result<Vec<Batch>, BenchError> {
    let started = Instant::now();
    let lines = args.batch_lines.max(1);
    let mut batches = match &args.file {
        Some(path) => load::file_batches(path, lines)?,
        None => {
            let start_ns = parse_start(&args.data.start).map_err(BenchError::Start)?;
            let d = &args.data;
            let devops = matches!(d.use_case, UseCase::Devops);
            load::generated_batches(devops, d.hosts, d.rows, d.seed, start_ns, lines)
        }
    };
    if args.gzip {
        load::gzip_batches(&mut batches, args.gzip_level);
    }
    if args.prometheus {
        load::prometheus_batches(&mut batches);
    }
    let raw: u64 = batches.iter().map(|b| b.raw_bytes).sum();
    let wire: usize = batches.iter().map(|b| b.body.len()).sum();
    let count: u64 = batches.iter().map(|b| b.lines).sum();
    eprintln!(
        "prepared {} batches, {count} lines, {:.1} MB ({:.1} MB to send) in {:.2} s",
        batches.len(),
        raw as f64 / 1e6,
        wire as f64 / 1e6,
        started.elapsed().as_secs_f64()
    );
    Ok(batches)
}

/// `load`: prepare, run, report.
fn run_load(args: &LoadArgs) -> Result<(), BenchError> {
    if args.rate.is_some_and(|r| !(r > 0.0 && r.is_finite())) {
        return Err(
            LoadError::Options("--rate must be a positive number of lines/s".into()).into(),
        );
    }
    let target = load::parse_url_with_ca(&args.url, args.tls_ca.as_deref())?;
    let batches = prepare_batches(args)?;
    let opts = LoadOptions {
        db: args.db.clone(),
        precision: args.precision.clone(),
        consistency: args.consistency.clone(),
        workers: args.workers,
        batch_lines: args.batch_lines,
        rate: args.rate,
        max_retries: args.max_retries,
        gzip: args.gzip,
        create_db: args.create_db,
        timeout: Duration::from_secs(args.timeout_s.max(1)),
        log_requests: args.requests_out.is_some(),
        authorization: args
            .username
            .as_deref()
            .map(|u| load::basic_authorization(u, &args.password)),
        prometheus: args.prometheus,
    };
    let summary = load::run(&target, &opts, &batches)?;
    if let Some(path) = &args.hdr_out {
        summary
            .write_hdr(path)
            .map_err(output_error(path.display().to_string()))?;
    }
    if let Some(path) = &args.requests_out {
        summary
            .write_requests(path)
            .map_err(output_error(path.display().to_string()))?;
    }
    if args.json {
        println!("{}", summary.json());
    } else {
        print!("{}", summary.text());
    }
    Ok(())
}

/// `query`: the TSBS query types, latency per type.
fn run_queries(args: &QueryArgs) -> Result<(), BenchError> {
    let target = load::parse_url(&args.url)?;
    let start_ns = parse_start(&args.data.start).map_err(BenchError::Start)?;
    let dataset = query::Dataset {
        hosts: args.data.hosts,
        start_ns,
        end_ns: start_ns + args.data.rows as i64 * 10_000_000_000,
    };
    let types = if args.types.is_empty() {
        query::QueryType::ALL.to_vec()
    } else {
        args.types.clone()
    };
    let results = query::run(
        &target,
        &types,
        args.dialect,
        &args.db,
        &dataset,
        args.runs.max(1),
        args.warmup,
        args.data.seed,
        Duration::from_secs(args.timeout_s.max(1)),
    )
    .map_err(BenchError::Query)?;
    if args.json {
        println!("{}", query::json(&results));
    } else {
        print!("{}", query::text(&results));
    }
    Ok(())
}

/// `chart`: reads the request logs and writes the two SVG charts.
fn run_chart(args: &ChartArgs) -> Result<(), BenchError> {
    let mut runs = Vec::new();
    for spec in &args.runs {
        let Some((name, path)) = spec.split_once('=') else {
            return Err(BenchError::Query(format!(
                "chart: expected NAME=requests.csv, got {spec:?}"
            )));
        };
        let log = chart::read_log(name, std::path::Path::new(path))
            .map_err(output_error(format!("reading {path}")))?;
        runs.push(log);
    }
    let files = chart::write_charts(
        &runs,
        args.batch_lines as f64,
        &args.out_dir,
        &args.prefix,
        &args.title,
    )
    .map_err(output_error(args.out_dir.display().to_string()))?;
    for f in files {
        println!("{}", f.display());
    }
    Ok(())
}

/// `compare`: the comparison script of this checkout, with the given arguments.
fn run_compare(args: &[String]) -> Result<(), BenchError> {
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tools/compare-ingest.sh");
    let status = std::process::Command::new("bash")
        .arg(&script)
        .args(args)
        .status()
        .map_err(output_error(format!("running {}", script.display())))?;
    if status.success() {
        Ok(())
    } else {
        Err(BenchError::Query(format!(
            "{} failed ({status})",
            script.display()
        )))
    }
}
