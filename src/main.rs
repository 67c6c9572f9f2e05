//! The `shardcore` command: parses the command line and calls the library.

use clap::{Parser, Subcommand};
use shardcore::config::{Config, DEFAULT_CONFIG_TOML};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "shardcore",
    version,
    about = "A clustered time-series database speaking the InfluxDB 1.x HTTP API"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a node (a working single node on 127.0.0.1:8086 with no flags).
    Serve {
        /// TOML configuration file (see `shardcore config`).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Data directory (overrides `data-dir`).
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// HTTP API address (overrides `http.bind-address`); port 0 picks a free port.
        #[arg(long)]
        http_bind: Option<String>,
        /// Executor threads, one per CPU (overrides `cores`; 0 = all online CPUs).
        #[arg(long)]
        cores: Option<usize>,
    },
    /// Print the full default configuration, every key documented.
    Config,
    /// Show the cluster's placement: for every shard group this node has data for, its
    /// shards, their ids and their owners (computed from the configuration).
    Cluster {
        #[command(subcommand)]
        command: ClusterCommand,
    },
    /// Hinted handoff of a running node.
    Hh {
        #[command(subcommand)]
        command: HhCommand,
    },
    /// A running node's counters and latency percentiles (every core merged), as a table.
    Stats {
        /// The node's HTTP address.
        #[arg(long, default_value = "127.0.0.1:8086")]
        host: String,
        /// Print again every this many seconds, with per-second rates of the counters.
        #[arg(long, value_name = "SECONDS")]
        watch: Option<u64>,
    },
    /// Read a (stopped) node's data directory: shard partitions and their counts,
    /// points, or every point as line protocol (`--export`).
    Inspect {
        /// Data directory to read (format 1 or 2).
        data_dir: PathBuf,
        /// Print every point as line protocol in the `influx -import` format.
        #[arg(long, conflicts_with_all = ["db", "measurement", "series"])]
        export: bool,
        /// List the data files: blocks, values, bytes per value per field, codecs.
        #[arg(long, conflicts_with_all = ["export", "db"])]
        files: bool,
        /// With --files: read and decode every block, checking every crc (exit 1 on
        /// any problem).
        #[arg(long, requires = "files")]
        verify: bool,
        /// Print the points of this database (else list shards).
        #[arg(long)]
        db: Option<String>,
        /// Only this measurement (escaped as in line protocol).
        #[arg(long)]
        measurement: Option<String>,
        /// Only this series key, e.g. `cpu,host=a`.
        #[arg(long)]
        series: Option<String>,
    },
}

#[derive(Subcommand)]
enum ClusterCommand {
    /// Groups, shards and owners, as SHOW SHARDS lists them.
    Show {
        /// The node's configuration file (membership and data directory).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Data directory (overrides `data-dir`).
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum HhCommand {
    /// Queues per destination: bytes, records, oldest age, delivered, dead-lettered,
    /// purged (from the node's /debug/vars).
    Status {
        /// The node's HTTP address.
        #[arg(long, default_value = "127.0.0.1:8086")]
        host: String,
    },
}

/// Loads the config file (or defaults) with `--data-dir` applied; a bad file is exit 2.
fn load_config(path: Option<PathBuf>, data_dir: Option<PathBuf>) -> Result<Config, ExitCode> {
    let mut cfg = Config::load(path.as_deref()).map_err(|e| {
        eprintln!("shardcore: {e}");
        ExitCode::from(2)
    })?;
    if let Some(d) = data_dir {
        cfg.data_dir = d;
    }
    Ok(cfg)
}

fn init_logging(filter: &str) {
    let filter = std::env::var("RUST_LOG").unwrap_or_else(|_| filter.to_string());
    use std::io::IsTerminal;
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .try_init();
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Config => {
            print!("{DEFAULT_CONFIG_TOML}");
            ExitCode::SUCCESS
        }
        Command::Serve {
            config,
            data_dir,
            http_bind,
            cores,
        } => {
            let mut cfg = match load_config(config, data_dir) {
                Ok(c) => c,
                Err(code) => return code,
            };
            if let Some(b) = http_bind {
                cfg.http.bind_address = b;
            }
            if let Some(c) = cores {
                cfg.cores = c;
            }
            if let Err(e) = cfg.validate() {
                eprintln!("shardcore: {e}");
                return ExitCode::from(2);
            }
            init_logging(&cfg.log_level);
            match shardcore::runtime::run(cfg) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!("{e}");
                    eprintln!("shardcore: {e}");
                    ExitCode::from(1)
                }
            }
        }
        Command::Cluster {
            command: ClusterCommand::Show { config, data_dir },
        } => {
            let cfg = match load_config(config, data_dir) {
                Ok(c) => c,
                Err(code) => return code,
            };
            match shardcore::cluster::describe(&cfg) {
                Ok(rows) => {
                    println!("id\tdatabase\tretention_policy\tshard_group_start\tshard_group_end\tindex\towners");
                    for r in rows {
                        println!(
                            "{}\t{}\t{}\t{}\t{}\t{}\t{}",
                            r.id,
                            r.database,
                            r.retention_policy,
                            r.start_ns,
                            r.end_ns,
                            r.index,
                            r.owners
                                .iter()
                                .map(|o| o.to_string())
                                .collect::<Vec<_>>()
                                .join(",")
                        );
                    }
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("shardcore: {e}");
                    ExitCode::from(1)
                }
            }
        }
        Command::Stats { host, watch } => match stats(&host, watch) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("shardcore: cannot read statistics from {host}: {e}");
                ExitCode::from(1)
            }
        },
        Command::Hh {
            command: HhCommand::Status { host },
        } => match hh_status(&host) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("shardcore: cannot read hinted-handoff status from {host}: {e}");
                ExitCode::from(1)
            }
        },
        Command::Inspect {
            data_dir,
            export,
            files,
            verify,
            db,
            measurement,
            series,
        } => {
            init_logging("warn");
            if export {
                return export_lp(&data_dir);
            }
            if files {
                let stdout = std::io::stdout();
                let mut out = std::io::BufWriter::new(stdout.lock());
                return match shardcore::inspect::files_report(&data_dir, verify, &mut out) {
                    Ok(0) => ExitCode::SUCCESS,
                    Ok(problems) => {
                        drop(out);
                        eprintln!("shardcore: {problems} problems in the data files");
                        ExitCode::from(1)
                    }
                    Err(e) => {
                        eprintln!("shardcore: cannot read {}: {e}", data_dir.display());
                        ExitCode::from(1)
                    }
                };
            }
            inspect(&data_dir, db, measurement, series)
        }
    }
}

fn export_lp(data_dir: &std::path::Path) -> ExitCode {
    let mut shards = match shardcore::inspect::open_shards(data_dir) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("shardcore: cannot read {}: {e}", data_dir.display());
            return ExitCode::from(1);
        }
    };
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    match shardcore::inspect::export(&mut shards, &mut out) {
        Ok(points) => {
            drop(out);
            eprintln!("shardcore: exported {points} points");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("shardcore: export failed: {e}");
            ExitCode::from(1)
        }
    }
}

fn inspect(
    data_dir: &std::path::Path,
    db: Option<String>,
    measurement: Option<String>,
    series: Option<String>,
) -> ExitCode {
    let mut shards = match shardcore::inspect::open_shards(data_dir) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("shardcore: cannot read {}: {e}", data_dir.display());
            return ExitCode::from(1);
        }
    };
    match db {
        None => {
            println!("shard_id\tpartition\tdatabase\tretention_policy\tstart_ns\tend_ns\tseries\tvalues\tbad_wal_bytes\tfiles\tfile_bytes");
            for s in &mut shards {
                let values = s.shard.count_values();
                let st = s.shard.stats();
                println!(
                    "{:016x}\t{}/{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}",
                    st.id,
                    st.partition,
                    st.partitions,
                    st.database,
                    st.retention_policy,
                    st.start_ns,
                    st.end_ns,
                    st.series,
                    values,
                    s.truncated_bytes,
                    st.files,
                    st.file_bytes
                );
            }
        }
        Some(db) => {
            let points = shardcore::inspect::read_points(
                &mut shards,
                &db,
                measurement.as_deref().map(str::as_bytes),
                series.as_deref().map(str::as_bytes),
                i64::MIN,
                i64::MAX,
            );
            for (shard, p) in points {
                println!(
                    "{shard:016x}\t{}\t{}\t{}\t{:?}",
                    p.series_key, p.field, p.timestamp, p.value
                );
            }
        }
    }
    ExitCode::SUCCESS
}

/// Prints the hinted-handoff queues of the node at `host`, one row per (destination,
/// core) queue (`/debug/vars` merges every core).
fn hh_status(host: &str) -> Result<(), String> {
    let vars = get_json(host, "/debug/vars")?;
    println!("core\tnode\tqueue_bytes\trecords\toldest_age_s\tdelivered\treplay_failures\tdead_lettered\tpurged\tfull_rejections");
    for q in vars["hintedHandoff"].as_array().into_iter().flatten() {
        println!(
            "{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}",
            q["core"],
            q["node"],
            q["queueBytes"],
            q["queueRecords"],
            q["oldestAgeSeconds"]
                .as_f64()
                .map_or("-".to_string(), |a| format!("{a:.1}")),
            q["delivered"],
            q["replayFailures"],
            q["deadLettered"],
            q["purged"],
            q["fullRejections"]
        );
    }
    Ok(())
}

/// `shardcore stats`: the statistics groups of `/debug/vars` and the latency table;
/// with `watch`, again every `watch` seconds with counter rates.
fn stats(host: &str, watch: Option<u64>) -> Result<(), String> {
    let mut previous: Option<(std::time::Instant, serde_json::Value)> = None;
    loop {
        let vars = get_json(host, "/debug/vars")?;
        let now = std::time::Instant::now();
        if watch.is_some() {
            // Clear the terminal and go home, like `watch`.
            print!("\x1b[2J\x1b[H");
        }
        print!(
            "{}",
            stats_table(
                host,
                &vars,
                previous
                    .as_ref()
                    .map(|(t, v)| (now.duration_since(*t).as_secs_f64(), v))
            )
        );
        let Some(every) = watch else {
            return Ok(());
        };
        previous = Some((now, vars));
        std::thread::sleep(std::time::Duration::from_secs(every.max(1)));
    }
}

/// The text `shardcore stats` prints for one reading (`previous`: seconds since the
/// last reading and that reading, for rates).
fn stats_table(
    host: &str,
    vars: &serde_json::Value,
    previous: Option<(f64, &serde_json::Value)>,
) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "node {host}  uptime {}s  cores {}",
        vars["system"]["uptime"], vars["cores"]
    );
    let _ = writeln!(
        out,
        "\n{:<16}{:<24}{:>16}{:>12}",
        "GROUP", "STAT", "VALUE", "PER SEC"
    );
    let Some(map) = vars.as_object() else {
        return out;
    };
    for (key, group) in map {
        let Some(values) = group.get("values").and_then(|v| v.as_object()) else {
            continue;
        };
        let name = group["name"].as_str().unwrap_or(key);
        for (stat, value) in values {
            let rate = previous
                .and_then(|(secs, prev)| {
                    let before = prev[key]["values"][stat].as_f64()?;
                    let now = value.as_f64()?;
                    (secs > 0.0 && now >= before).then(|| format!("{:.1}", (now - before) / secs))
                })
                .unwrap_or_default();
            let _ = writeln!(
                out,
                "{name:<16}{stat:<24}{:>16}{rate:>12}",
                value.to_string()
            );
        }
    }
    let _ = writeln!(
        out,
        "\n{:<16}{:>10}{:>10}{:>10}{:>10}{:>10}{:>12}",
        "LATENCY (us)", "COUNT", "P50", "P90", "P99", "P99.9", "MAX"
    );
    for (timer, l) in vars["latencyMicros"].as_object().into_iter().flatten() {
        let _ = writeln!(
            out,
            "{timer:<16}{:>10}{:>10}{:>10}{:>10}{:>10}{:>12}",
            l["count"].to_string(),
            l["p50"].to_string(),
            l["p90"].to_string(),
            l["p99"].to_string(),
            l["p999"].to_string(),
            l["max"].to_string()
        );
    }
    out
}

/// A minimal HTTP/1.1 GET of a JSON document.
fn get_json(host: &str, path: &str) -> Result<serde_json::Value, String> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(host).map_err(|e| e.to_string())?;
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| e.to_string())?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).map_err(|e| e.to_string())?;
    let body_at = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or("malformed HTTP answer")?;
    serde_json::from_slice(&raw[body_at + 4..]).map_err(|e| e.to_string())
}
