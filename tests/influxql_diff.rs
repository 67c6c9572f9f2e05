//! Differential test of `/query` against InfluxDB 1.x (issue 5).
//!
//! Starts Debian's `influxd` (1.6.7) on loopback with a temporary data dir, a single
//! ShardCore node, and a 3-node ShardCore cluster (replication 2); writes the same
//! deterministic dataset to all three; then sends every request of
//! `tests/influxql/corpus.txt` to each and compares status, Content-Type and body byte
//! for byte. influxd's answers are the reference.
//!
//! - Queries listed in `tests/influxql/known_diffs.txt` may differ (for now); any other
//!   difference fails the test, and so does a listed query that now matches (the list
//!   only shrinks). An entry is the exact corpus line, optionally prefixed with
//!   `[single] ` or `[cluster] ` when only that target differs.
//! - influxd's answers are written to `tests/influxql/expected.jsonl` (the golden file,
//!   rewritten on a full run when they changed). When `influxd` is not installed or does
//!   not start, the test compares against that file instead.
//!
//! Environment:
//! - `SHARDCORE_DIFF_ONLY=TEXT`: run only corpus lines containing TEXT, and print the
//!   three answers of each (for whoever works on one query).
//! - `SHARDCORE_DIFF_UPDATE=1`: rewrite known_diffs.txt from this run's results.
//! - `SHARDCORE_DIFF_GOLDEN=1`: do not start influxd; compare with expected.jsonl.
//! - `SHARDCORE_DIFF_TARGETS=single`: the ShardCore targets to run (`single`, `cluster`,
//!   comma-separated; default both).
//! - `SHARDCORE_DIFF_VERBOSE=1`: print every query's answers.
//! - `SHARDCORE_DIFF_INFLUXD=PATH`: the influxd binary (default: `influxd` on PATH).
//! - `SHARDCORE_DIFF_DATASET=DIR`: also write the dataset there as line protocol, one
//!   file per (database, retention policy), to load by hand
//!   (`curl --data-binary @diff.autogen.lp ...`).
//!
//! `tools/influxql-diff.sh` runs this test with its output visible.

mod common;

use common::{http, temp_dir, urlencode, Cluster, Node, Response};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// 2026-01-05T00:00:00Z (a Monday), in seconds. The dataset covers 21 days from here.
const T0: i64 = 1_767_571_200;
const NS: i64 = 1_000_000_000;
const DAYS: i64 = 21;
const DB: &str = "diff";
const DB2: &str = "diff2";

// ---------------------------------------------------------------------------------------
// The dataset: deterministic line protocol, identical for every server.

/// splitmix64: a tiny deterministic generator, so the dataset never depends on a crate.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> i64 {
        (self.next() % n) as i64
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
    /// A value with two decimals in [lo, hi).
    fn cents(&mut self, lo: i64, hi: i64) -> f64 {
        (lo * 100 + self.below(((hi - lo) * 100) as u64)) as f64 / 100.0
    }
}

/// One `/write` request body: (database, retention policy, lines).
struct Batch {
    db: &'static str,
    rp: Option<&'static str>,
    lines: Vec<String>,
}

fn dataset() -> Vec<Batch> {
    let mut rng = Rng(0x5348_4152_4443_4f52);
    let mut diff = Vec::new();
    let hour = 3600;
    let day = 24 * hour;

    // cpu: 4 hosts in 3 regions, float fields. server01/02 every 10 minutes on the first
    // day, then every hour; server03 and server04 report at odd offsets. Outages: server02
    // for 33 hours, server03 for all of day 9, server04 stops after day 18; ~8% of the
    // other points are missing at random.
    let hosts = [
        ("server01", "us-east", 0),
        ("server02", "us-east", 0),
        ("server03", "us-west", 600),
        ("server04", "eu-central", 1807),
    ];
    for (i, (host, region, offset)) in hosts.iter().enumerate() {
        let mut t = T0 + offset;
        while t < T0 + DAYS * day {
            let step = if i < 2 && t < T0 + day { 600 } else { hour };
            let rel = t - T0;
            let outage = (i == 1 && (3 * day + 5 * hour..4 * day + 14 * hour).contains(&rel))
                || (i == 2 && rel / day == 9)
                || (i == 3 && rel >= 18 * day);
            let skip = rng.chance(8);
            if !outage && !skip {
                let user = rng.cents(0, 100);
                let system = rng.cents(0, 30);
                diff.push(format!(
                    "cpu,host={host},region={region} usage_user={user},usage_system={system} {}",
                    t * NS
                ));
            }
            t += step;
        }
    }

    // mem: integer and float fields, every 2 hours; `delta` goes negative.
    for host in ["server01", "server02", "server03"] {
        let mut t = T0;
        while t < T0 + DAYS * day {
            if !rng.chance(5) {
                let total: i64 = 8_000_000_000;
                let used = 2_000_000_000 + rng.below(4_000_000_000);
                let pct = (used as f64 * 10000.0 / total as f64).round() / 100.0;
                let delta = rng.below(2001) - 1000;
                diff.push(format!(
                    "mem,host={host} used={used}i,free={}i,used_percent={pct},delta={delta}i {}",
                    total - used,
                    t * NS
                ));
            }
            t += 2 * hour;
        }
    }

    // events: string, boolean and integer fields at irregular times with millisecond
    // parts; booleans in every spelling line protocol accepts.
    let messages = [
        "deploy v1.2.3",
        "disk \\\"full\\\"",
        "cpu, high",
        "restart requested",
        "ok",
        "back\\\\slash",
    ];
    let bools = [
        "t", "T", "true", "True", "TRUE", "f", "F", "false", "False", "FALSE",
    ];
    let kinds = ["deploy", "alert", "restart"];
    let codes = [0, 200, 500, 503];
    let mut t = T0 + 3 * hour;
    while t < T0 + DAYS * day {
        let host = ["server01", "server02", "server03"][rng.below(3) as usize];
        let kind = kinds[rng.below(3) as usize];
        let msg = messages[rng.below(messages.len() as u64) as usize];
        let ok = bools[rng.below(bools.len() as u64) as usize];
        let code = codes[rng.below(4) as usize];
        let ms = rng.below(1000);
        diff.push(format!(
            "events,host={host},kind={kind} message=\"{msg}\",ok={ok},code={code}i {}",
            t * NS + ms * 1_000_000
        ));
        t += 5 * hour + rng.below(6 * 3600);
    }

    // temp: negative floats; `humidity` on some points only, `battery` on every 4th.
    for (sensor, location) in [("s1", "lab"), ("s2", "roof\\ top")] {
        let mut t = T0;
        let mut n = 0;
        while t < T0 + DAYS * day {
            let rel = t - T0;
            if !(sensor == "s2" && rel / day == 12) {
                let mut fields = format!("value={}", rng.cents(-15, 25));
                if rng.chance(60) {
                    let _ = write!(fields, ",humidity={}", rng.cents(20, 90));
                }
                if n % 4 == 0 {
                    let _ = write!(fields, ",battery={}i", 100 - n / 4);
                }
                diff.push(format!(
                    "temp,sensor={sensor},location={location} {fields} {}",
                    t * NS
                ));
            }
            n += 1;
            t += 3 * hour;
        }
    }

    // Names that need quoting or escaping in line protocol, InfluxQL and JSON.
    for d in 0..DAYS {
        let t = (T0 + d * day + 12 * hour) * NS;
        diff.push(format!(
            "disk\\ usage,mount=/var\\ lib,dev=sda\\,1,label=a\\=b used\\ gb={},inodes={}i {t}",
            rng.cents(10, 500),
            rng.below(100_000)
        ));
        diff.push(format!(
            "disk\\ usage,mount=/,dev=sda2,label=plain used\\ gb={},inodes={}i {t}",
            rng.cents(10, 500),
            rng.below(100_000)
        ));
        let (team, site) = if d % 2 == 0 {
            ("R&D", "zürich")
        } else {
            ("ops", "x<y>")
        };
        diff.push(format!(
            "h2o\\,quality,team={team},site={site} ph={},\"quote\"d=1i {t}",
            rng.cents(6, 9)
        ));
    }

    // The second database: other hosts and values, a measurement only it has, and a
    // non-default retention policy.
    let mut diff2 = Vec::new();
    let mut archive = Vec::new();
    for d in 0..DAYS {
        for h in [0, 6, 12, 18] {
            let t = (T0 + d * day + h * hour) * NS;
            for (host, region) in [("server01", "us-east"), ("server05", "ap-south")] {
                diff2.push(format!(
                    "cpu,host={host},region={region} usage_user={},usage_system={} {t}",
                    rng.cents(0, 100),
                    rng.cents(0, 30)
                ));
            }
            diff2.push(format!(
                "load,host=server05 load1={},load5={} {t}",
                rng.cents(0, 8),
                rng.cents(0, 6)
            ));
        }
        archive.push(format!(
            "cpu,host=server01,region=us-east usage_user={} {}",
            rng.cents(0, 100),
            (T0 + d * day) * NS
        ));
        // Only in the archive policy: a series, a field and a measurement the default
        // policy lacks (the SHOW forms that read one policy leave them out).
        archive.push(format!(
            "cpu,host=server09,region=vault usage_user={},spare={d}i {}",
            d as f64 * 1.5,
            (T0 + d * day + 3 * hour) * NS
        ));
        archive.push(format!(
            "vault,kind=cold level={}i {}",
            d % 7,
            (T0 + d * day) * NS
        ));
    }

    // diff2.net: 12 series (3 hosts x 4 interfaces) every 2 h with full-precision
    // floats, so sums and means over many series and shards show the order InfluxDB adds
    // them in. h2/eth1 starts on day 11; h3/eth3 is silent on days 6-8; ~10% missing.
    // Its own generator, so the data above stays as it was.
    let mut net_rng = Rng(0x6e65_745f_7365_7273);
    for host in ["h1", "h2", "h3"] {
        for iface in ["eth0", "eth1", "eth2", "eth3"] {
            let mut t = T0;
            while t < T0 + DAYS * day {
                let rel_day = (t - T0) / day;
                let absent = (host == "h2" && iface == "eth1" && rel_day < 11)
                    || (host == "h3" && iface == "eth3" && (6..9).contains(&rel_day));
                let skip = net_rng.chance(10);
                if !absent && !skip {
                    let bytes = net_rng.below(10_000_000) as f64 / 7.0;
                    let errs = net_rng.below(50);
                    diff2.push(format!(
                        "net,host={host},iface={iface} bytes={bytes},errs={errs}i {}",
                        t * NS
                    ));
                }
                t += 2 * hour;
            }
        }
    }

    let mut batches = Vec::new();
    for chunk in diff.chunks(700) {
        batches.push(Batch {
            db: DB,
            rp: None,
            lines: chunk.to_vec(),
        });
    }
    batches.push(Batch {
        db: DB2,
        rp: None,
        lines: diff2,
    });
    batches.push(Batch {
        db: DB2,
        rp: Some("archive"),
        lines: archive,
    });
    batches
}

/// The DDL that creates the databases, per replication factor.
fn setup_ddl(replication: u32) -> Vec<String> {
    vec![
        format!("CREATE DATABASE {DB} WITH REPLICATION {replication}"),
        format!("CREATE DATABASE {DB2} WITH REPLICATION {replication}"),
        format!(
            "CREATE RETENTION POLICY archive ON {DB2} DURATION 0s REPLICATION {replication} SHARD DURATION 1d"
        ),
    ]
}

// ---------------------------------------------------------------------------------------
// The corpus.

#[derive(Clone, Debug)]
struct Query {
    /// The exact corpus line (trimmed): the query's identity in known_diffs and golden.
    line: String,
    db: Option<String>,
    params: Vec<(String, String)>,
    post: bool,
    csv: bool,
    q: String,
}

const OPTION_KEYS: &[&str] = &[
    "db",
    "rp",
    "epoch",
    "chunked",
    "chunk_size",
    "pretty",
    "params",
    "method",
    "accept",
];

fn parse_corpus(text: &str) -> Vec<Query> {
    let mut out = Vec::new();
    let mut seen = BTreeSet::new();
    for (n, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        assert!(
            seen.insert(line.to_string()),
            "corpus line {} is a duplicate: {line}",
            n + 1
        );
        let mut query = Query {
            line: line.to_string(),
            db: Some(DB.to_string()),
            params: Vec::new(),
            post: false,
            csv: false,
            q: String::new(),
        };
        let mut rest = line;
        loop {
            let token = rest.split(' ').next().unwrap_or("");
            let Some((key, value)) = token.split_once('=') else {
                break;
            };
            if !OPTION_KEYS.contains(&key) {
                break;
            }
            match key {
                "db" if value == "-" => query.db = None,
                "db" => query.db = Some(value.to_string()),
                "method" => match value {
                    "get" => query.post = false,
                    "post" => query.post = true,
                    _ => panic!("corpus line {}: method must be get or post", n + 1),
                },
                "accept" => {
                    assert_eq!(value, "csv", "corpus line {}: accept=csv only", n + 1);
                    query.csv = true;
                }
                _ => query.params.push((key.to_string(), value.to_string())),
            }
            rest = rest[token.len()..].trim_start();
        }
        assert!(!rest.is_empty(), "corpus line {} has no query", n + 1);
        query.q = rest.to_string();
        out.push(query);
    }
    out
}

// ---------------------------------------------------------------------------------------
// Answers.

#[derive(Clone, Debug, PartialEq)]
struct Answer {
    status: u16,
    content_type: String,
    body: String,
}

impl Answer {
    fn from_response(r: Response) -> Answer {
        Answer {
            status: r.status,
            content_type: r.header("Content-Type").unwrap_or("").to_string(),
            // Bodies are JSON or CSV; bytes that are not UTF-8 must not compare equal
            // to the replacement characters of a lossy decoding.
            body: match String::from_utf8(r.body) {
                Ok(text) => text,
                Err(e) => format!("<not UTF-8> {}", String::from_utf8_lossy(e.as_bytes())),
            },
        }
    }
}

/// Sends `query` to `addr` exactly as the corpus line says.
fn ask(addr: SocketAddr, query: &Query) -> Answer {
    let mut fields = Vec::new();
    if let Some(db) = &query.db {
        fields.push(format!("db={}", urlencode(db)));
    }
    for (k, v) in &query.params {
        fields.push(format!("{k}={}", urlencode(v)));
    }
    fields.push(format!("q={}", urlencode(&query.q)));
    let encoded = fields.join("&");
    let mut headers = Vec::new();
    if query.csv {
        headers.push(("Accept", "application/csv"));
    }
    let response = if query.post {
        headers.push(("Content-Type", "application/x-www-form-urlencoded"));
        http(addr, "POST", "/query", &headers, encoded.as_bytes())
    } else {
        http(addr, "GET", &format!("/query?{encoded}"), &headers, b"")
    };
    Answer::from_response(response.unwrap_or_else(|e| panic!("{addr}: {}: {e}", query.line)))
}

fn load_golden(path: &Path) -> HashMap<String, Answer> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return HashMap::new();
    };
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let v: Value = serde_json::from_str(l)
                .unwrap_or_else(|e| panic!("{}: bad line ({e}): {l}", path.display()));
            (
                v["query"].as_str().unwrap().to_string(),
                Answer {
                    status: v["status"].as_u64().unwrap() as u16,
                    content_type: v["content_type"].as_str().unwrap().to_string(),
                    body: v["body"].as_str().unwrap().to_string(),
                },
            )
        })
        .collect()
}

fn golden_text(queries: &[Query], answers: &[Answer]) -> String {
    let mut out = String::new();
    for (q, a) in queries.iter().zip(answers) {
        let entry = json!({
            "query": q.line,
            "status": a.status,
            "content_type": a.content_type,
            "body": a.body,
        });
        out.push_str(&serde_json::to_string(&entry).unwrap());
        out.push('\n');
    }
    out
}

// ---------------------------------------------------------------------------------------
// Known differences.

const TARGETS: [&str; 2] = ["single", "cluster"];

/// The single node's heads flush into data files by size during the load.
const SPLIT_CONFIG: &str =
    "[storage]\ncache-snapshot-bytes = 4096\ncache-snapshot-write-cold-ms = 3600000\n";

/// Restarted for the second pass: everything flushes as soon as it is cold.
const FILES_CONFIG: &str =
    "[storage]\ncache-snapshot-bytes = 4096\ncache-snapshot-write-cold-ms = 100\n";

const KNOWN_DIFFS_HEAD: &str = "\
# Corpus lines (tests/influxql/corpus.txt) whose answer from ShardCore may differ from
# InfluxDB 1.6.7's for now. tests/influxql_diff.rs fails when a query not listed here
# differs, and when a listed one matches (remove it: this list only shrinks).
# A line is the exact corpus line; `[single] LINE` or `[cluster] LINE` means only that
# target (the single node, or node 1 of the 3-node rf=2 cluster) may differ.
# Rewrite it from the current results: SHARDCORE_DIFF_UPDATE=1 tools/influxql-diff.sh
# The `[cluster]` SHOW RETENTION POLICIES entries stay: the cluster's databases are made
# with REPLICATION 2, influxd's with 1, so replicaN differs by design.
";

fn parse_known(text: &str) -> BTreeMap<String, BTreeSet<&'static str>> {
    let mut out: BTreeMap<String, BTreeSet<&'static str>> = BTreeMap::new();
    for raw in text.lines() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (targets, query): (Vec<&'static str>, &str) =
            if let Some(q) = line.strip_prefix("[single] ") {
                (vec!["single"], q)
            } else if let Some(q) = line.strip_prefix("[cluster] ") {
                (vec!["cluster"], q)
            } else {
                (TARGETS.to_vec(), line)
            };
        out.entry(query.trim().to_string())
            .or_default()
            .extend(targets);
    }
    out
}

fn known_text(queries: &[Query], known: &BTreeMap<String, BTreeSet<&'static str>>) -> String {
    let mut out = KNOWN_DIFFS_HEAD.to_string();
    for q in queries {
        let Some(set) = known.get(&q.line) else {
            continue;
        };
        if set.len() == TARGETS.len() {
            out.push_str(&q.line);
        } else if let Some(t) = set.iter().next() {
            let _ = write!(out, "[{t}] {}", q.line);
        } else {
            continue;
        }
        out.push('\n');
    }
    out
}

// ---------------------------------------------------------------------------------------
// Reporting.

fn clip(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}... ({} bytes in all)", &s[..end], s.len())
}

fn first_difference(a: &str, b: &str) -> usize {
    a.bytes()
        .zip(b.bytes())
        .position(|(x, y)| x != y)
        .unwrap_or(a.len().min(b.len()))
}

fn context(s: &str, at: usize) -> String {
    let mut start = at.saturating_sub(40);
    while !s.is_char_boundary(start) {
        start -= 1;
    }
    let mut end = (at + 40).min(s.len());
    while !s.is_char_boundary(end) {
        end += 1;
    }
    format!("{:?}", &s[start..end])
}

fn describe(query: &Query, target: &str, expected: &Answer, got: &Answer) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "--- {target} differs: {}", query.line);
    if expected.status != got.status {
        let _ = writeln!(
            out,
            "    status: influxd {} / shardcore {}",
            expected.status, got.status
        );
    }
    if expected.content_type != got.content_type {
        let _ = writeln!(
            out,
            "    content-type: influxd {:?} / shardcore {:?}",
            expected.content_type, got.content_type
        );
    }
    if expected.body != got.body {
        let at = first_difference(&expected.body, &got.body);
        let _ = writeln!(out, "    first differing byte: {at}");
        let _ = writeln!(out, "      influxd   ...{}", context(&expected.body, at));
        let _ = writeln!(out, "      shardcore ...{}", context(&got.body, at));
    }
    let _ = writeln!(
        out,
        "    influxd:   {}",
        clip(expected.body.trim_end(), 1500)
    );
    let _ = writeln!(out, "    shardcore: {}", clip(got.body.trim_end(), 1500));
    out
}

fn print_answers(query: &Query, names: &[&str], answers: &[&Answer]) {
    eprintln!("=== {}", query.line);
    for (name, a) in names.iter().zip(answers) {
        eprintln!(
            "  {name:<9} {} {:?} {}",
            a.status,
            a.content_type,
            clip(a.body.trim_end(), 4000)
        );
    }
}

// ---------------------------------------------------------------------------------------
// Loading.

fn post_query(addr: SocketAddr, q: &str) -> Answer {
    let body = format!("q={}", urlencode(q));
    Answer::from_response(
        http(
            addr,
            "POST",
            "/query",
            &[("Content-Type", "application/x-www-form-urlencoded")],
            body.as_bytes(),
        )
        .unwrap_or_else(|e| panic!("{addr}: {q}: {e}")),
    )
}

fn run_ddl(addr: SocketAddr, ddl: &[String]) {
    for q in ddl {
        let a = post_query(addr, q);
        assert!(
            a.status == 200 && !a.body.contains("\"error\""),
            "{addr}: {q}: {} {}",
            a.status,
            a.body
        );
    }
}

fn write_batch(addr: SocketAddr, batch: &Batch, extra: &str) {
    let mut path = format!("/write?db={}", batch.db);
    if let Some(rp) = batch.rp {
        path.push_str(&format!("&rp={rp}"));
    }
    path.push_str(extra);
    let mut body = batch.lines.join("\n");
    body.push('\n');
    let r = http(addr, "POST", &path, &[], body.as_bytes())
        .unwrap_or_else(|e| panic!("{addr}: write: {e}"));
    assert_eq!(
        r.status,
        204,
        "{addr}: write to {}: {}",
        batch.db,
        String::from_utf8_lossy(&r.body)
    );
}

fn load_single(addr: SocketAddr, data: &[Batch]) {
    run_ddl(addr, &setup_ddl(1));
    for batch in data {
        write_batch(addr, batch, "");
    }
}

fn load_cluster(cluster: &Cluster, data: &[Batch]) {
    let first = cluster.node(0).addr;
    run_ddl(first, &setup_ddl(2));
    // Wait until every node has the databases (DDL replicates through meta sync).
    let want = post_query(first, &format!("SHOW RETENTION POLICIES ON {DB2}"));
    let deadline = Instant::now() + Duration::from_secs(30);
    for i in 1..cluster.nodes.len() {
        let addr = cluster.node(i).addr;
        while post_query(addr, &format!("SHOW RETENTION POLICIES ON {DB2}")) != want {
            assert!(
                Instant::now() < deadline,
                "node {} never saw the databases",
                i + 1
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    // Writes go through every node in turn; consistency=all so both owners have each point.
    for (i, batch) in data.iter().enumerate() {
        let addr = cluster.node(i % cluster.nodes.len()).addr;
        write_batch(addr, batch, "&consistency=all");
    }
}

// ---------------------------------------------------------------------------------------
// The test.

/// Flushes of heads into data files the node has done.
fn flushes(node: &Node) -> u64 {
    let vars = node.request("GET", "/debug/vars", &[], b"").json();
    vars["storage"]["values"]["flushes"].as_u64().unwrap_or(0)
}

fn env_flag(name: &str) -> bool {
    std::env::var(name).is_ok_and(|v| !v.is_empty() && v != "0")
}

#[test]
fn influxql_answers_match_influxdb() {
    let started = Instant::now();
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/influxql");
    let corpus_path = dir.join("corpus.txt");
    let known_path = dir.join("known_diffs.txt");
    let golden_path = dir.join("expected.jsonl");

    let corpus_text = std::fs::read_to_string(&corpus_path).expect("read corpus.txt");
    let corpus = parse_corpus(&corpus_text);
    let only = std::env::var("SHARDCORE_DIFF_ONLY")
        .ok()
        .filter(|s| !s.is_empty());
    let selected: Vec<Query> = match &only {
        Some(text) => corpus
            .iter()
            .filter(|q| q.line.contains(text.as_str()))
            .cloned()
            .collect(),
        None => corpus.clone(),
    };
    assert!(
        !selected.is_empty(),
        "no corpus line contains {:?}",
        only.as_deref().unwrap_or("")
    );
    let update = env_flag("SHARDCORE_DIFF_UPDATE");
    let verbose = env_flag("SHARDCORE_DIFF_VERBOSE") || only.is_some();
    let targets: Vec<&'static str> = match std::env::var("SHARDCORE_DIFF_TARGETS") {
        Ok(list) if !list.trim().is_empty() => {
            let names: Vec<&str> = list.split(',').map(str::trim).collect();
            for n in &names {
                assert!(
                    TARGETS.contains(n),
                    "unknown target {n:?} in SHARDCORE_DIFF_TARGETS"
                );
            }
            TARGETS
                .iter()
                .copied()
                .filter(|t| names.contains(t))
                .collect()
        }
        _ => TARGETS.to_vec(),
    };
    let known_text_before = std::fs::read_to_string(&known_path).unwrap_or_default();
    let known = parse_known(&known_text_before);
    let corpus_lines: BTreeSet<&str> = corpus.iter().map(|q| q.line.as_str()).collect();
    let orphans: Vec<&String> = known
        .keys()
        .filter(|k| !corpus_lines.contains(k.as_str()))
        .collect();

    // The reference: a live influxd, or the golden file.
    let influxd = if env_flag("SHARDCORE_DIFF_GOLDEN") {
        eprintln!(
            "SHARDCORE_DIFF_GOLDEN is set: comparing with {}",
            golden_path.display()
        );
        None
    } else {
        match common::start_influxd("") {
            Ok(s) => Some(s),
            Err(reason) => {
                eprintln!(
                    "influxd unavailable: {reason}\n\
                     comparing with the golden file {} instead",
                    golden_path.display()
                );
                None
            }
        }
    };
    let golden = load_golden(&golden_path);
    let data = dataset();
    if let Ok(out) = std::env::var("SHARDCORE_DIFF_DATASET") {
        std::fs::create_dir_all(&out).expect("create SHARDCORE_DIFF_DATASET");
        let mut files: BTreeMap<String, String> = BTreeMap::new();
        for b in &data {
            let text = files
                .entry(format!("{}.{}.lp", b.db, b.rp.unwrap_or("autogen")))
                .or_default();
            for l in &b.lines {
                text.push_str(l);
                text.push('\n');
            }
        }
        for (name, text) in files {
            std::fs::write(Path::new(&out).join(&name), text).expect("write dataset");
        }
        eprintln!("dataset written to {out}");
    }
    let points: usize = data.iter().map(|b| b.lines.len()).sum();

    // The ShardCore targets.
    let single_dir = temp_dir();
    // The single node flushes its heads into data files by size in the middle of the
    // load (its data is split between files and heads when the queries run); a second
    // pass below asks again once everything is in files.
    let single = targets
        .contains(&"single")
        .then(|| Node::start_with_config(single_dir.path(), SPLIT_CONFIG));
    let cluster = targets
        .contains(&"cluster")
        .then(|| Cluster::start(3, 2, "write-timeout-ms = 10000\n"));
    if let Some(s) = &influxd {
        load_single(s.addr, &data);
    }
    if let Some(node) = &single {
        // Half, a flush of what the heads hold, the rest into fresh heads.
        let half = data.len() / 2;
        load_single(node.addr, &data[..half]);
        let deadline = Instant::now() + Duration::from_secs(30);
        while flushes(node) == 0 {
            assert!(
                Instant::now() < deadline,
                "the single node flushes mid-load"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        load_single(node.addr, &data[half..]);
    }
    if let Some(c) = &cluster {
        load_cluster(c, &data);
    }
    eprintln!(
        "dataset: {points} points in {} write requests; servers loaded after {:.1?}",
        data.len(),
        started.elapsed()
    );

    let mut reference_answers = Vec::new();
    let mut failures = String::new();
    let mut missing_golden = Vec::new();
    let mut new_known: BTreeMap<String, BTreeSet<&'static str>> = BTreeMap::new();
    let mut unexpected = 0usize;
    let mut stale = Vec::new();
    let mut matched: BTreeMap<&str, usize> = BTreeMap::new();
    let mut golden_changed = 0usize;
    let mut unstable = Vec::new();
    let mut single_answers: Vec<(Query, Answer)> = Vec::new();
    if let Some(node) = &single {
        eprintln!(
            "single node: {} flushes into data files during the load",
            flushes(node)
        );
    }
    for query in &selected {
        let reference = match &influxd {
            Some(s) => {
                let a = ask(s.addr, query);
                // Asked twice: an answer that changes from run to run cannot be a
                // reference (integral() over several series does, in 1.6.7).
                let again = ask(s.addr, query);
                if again != a {
                    unstable.push(describe(query, "influxd itself", &a, &again));
                }
                if golden.get(&query.line).is_some_and(|g| g != &a) {
                    golden_changed += 1;
                }
                a
            }
            None => match golden.get(&query.line) {
                Some(a) => a.clone(),
                None => {
                    missing_golden.push(query.line.clone());
                    continue;
                }
            },
        };
        let mut got = Vec::new();
        if let Some(node) = &single {
            let answer = ask(node.addr, query);
            single_answers.push((query.clone(), answer.clone()));
            got.push(("single", answer));
        }
        if let Some(c) = &cluster {
            got.push(("cluster", ask(c.node(0).addr, query)));
        }
        if verbose {
            let mut names = vec!["influxd"];
            let mut answers = vec![&reference];
            for (name, a) in &got {
                names.push(name);
                answers.push(a);
            }
            print_answers(query, &names, &answers);
        }
        let allowed: BTreeSet<&'static str> = known
            .get(&query.line)
            .map(|s| s.iter().copied().filter(|t| targets.contains(t)).collect())
            .unwrap_or_default();
        let mut differing = BTreeSet::new();
        for (name, answer) in &got {
            if answer == &reference {
                *matched.entry(name).or_default() += 1;
            } else {
                differing.insert(*name);
                if !allowed.contains(name) {
                    unexpected += 1;
                    failures.push_str(&describe(query, name, &reference, answer));
                }
            }
        }
        if verbose {
            for (name, answer) in got.iter().filter(|(n, _)| differing.contains(n)) {
                let at = first_difference(&reference.body, &answer.body);
                eprintln!(
                    "  {name} differs (status {} / {}) at byte {at}: influxd ...{} shardcore ...{}",
                    reference.status,
                    answer.status,
                    context(&reference.body, at),
                    context(&answer.body, at)
                );
            }
        }
        let gone: Vec<&str> = allowed
            .iter()
            .copied()
            .filter(|t| !differing.contains(t))
            .collect();
        if !gone.is_empty() {
            stale.push(if differing.is_empty() {
                format!("remove: {}", query.line)
            } else {
                let still: Vec<String> = differing.iter().map(|t| format!("[{t}]")).collect();
                format!(
                    "now matches on {}; keep only `{} {}`",
                    gone.join(", "),
                    still.join(" "),
                    query.line
                )
            });
        }
        if !differing.is_empty() {
            new_known.insert(query.line.clone(), differing);
        }
        reference_answers.push((query.clone(), reference));
    }

    // The golden file: rewritten from a live influxd on a full run.
    if influxd.is_some() && only.is_none() {
        let (qs, answers): (Vec<Query>, Vec<Answer>) = reference_answers.iter().cloned().unzip();
        let text = golden_text(&qs, &answers);
        let before = std::fs::read_to_string(&golden_path).unwrap_or_default();
        if text != before {
            std::fs::write(&golden_path, text).expect("write expected.jsonl");
            eprintln!(
                "wrote {} ({golden_changed} answers changed, {} queries)",
                golden_path.display(),
                qs.len()
            );
        }
    }

    // Summary.
    let ran = selected.len() - missing_golden.len();
    eprintln!(
        "{} queries ({} in the corpus), reference: {}, in {:.1?}",
        ran,
        corpus.len(),
        if influxd.is_some() {
            "influxd"
        } else {
            "golden file"
        },
        started.elapsed()
    );
    for t in &targets {
        eprintln!(
            "  {t:<8} {} of {ran} match influxd",
            matched.get(t).copied().unwrap_or(0)
        );
    }

    if update {
        // Keep entries of queries (and targets) this run did not look at.
        let ran_lines: BTreeSet<&str> = reference_answers
            .iter()
            .map(|(q, _)| q.line.as_str())
            .collect();
        let mut merged: BTreeMap<String, BTreeSet<&'static str>> = BTreeMap::new();
        for q in &corpus {
            let mut set: BTreeSet<&'static str> = known.get(&q.line).cloned().unwrap_or_default();
            if ran_lines.contains(q.line.as_str()) {
                set.retain(|t| !targets.contains(t));
                if let Some(d) = new_known.get(&q.line) {
                    set.extend(d.iter().copied());
                }
            }
            if !set.is_empty() {
                merged.insert(q.line.clone(), set);
            }
        }
        let text = known_text(&corpus, &merged);
        if text != known_text_before {
            std::fs::write(&known_path, &text).expect("write known_diffs.txt");
        }
        eprintln!(
            "SHARDCORE_DIFF_UPDATE: wrote {} ({} entries)",
            known_path.display(),
            merged.len()
        );
        for u in &unstable {
            eprintln!("WARNING: influxd's answer is not stable:\n{u}");
        }
        return;
    }

    let mut problems = Vec::new();
    // Second pass: the single node restarted (the WAL replayed), everything flushed
    // into data files: every answer as with the split data.
    if let Some(mut node) = single {
        assert!(node.terminate().success());
        let node = Node::start_with_config(single_dir.path(), FILES_CONFIG);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let shards = node.request("GET", "/debug/shards", &[], b"").json();
            let heads: u64 = shards["shards"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|s| s["cache_heap_bytes"].as_u64().unwrap_or(0))
                .sum();
            if heads == 0 {
                break;
            }
            assert!(Instant::now() < deadline, "the heads flush: {shards}");
            std::thread::sleep(Duration::from_millis(100));
        }
        let mut changed = 0;
        for (query, before) in &single_answers {
            let after = ask(node.addr, query);
            if &after != before {
                changed += 1;
                eprintln!(
                    "{}",
                    describe(query, "single, all in files", before, &after)
                );
            }
        }
        eprintln!(
            "  single, all in data files: {} of {} answers as before",
            single_answers.len() - changed,
            single_answers.len()
        );
        if changed > 0 {
            problems.push(format!(
                "{changed} answers changed once the data was all in files (above)"
            ));
        }
    }
    if unexpected > 0 {
        eprintln!("\n{failures}");
        problems.push(format!(
            "{unexpected} answers differ from influxd and are not in known_diffs.txt (above)"
        ));
    }
    if !stale.is_empty() {
        eprintln!("\nThese known differences are gone; update known_diffs.txt:");
        for s in &stale {
            eprintln!("  {s}");
        }
        problems.push(format!(
            "{} entries of known_diffs.txt now match",
            stale.len()
        ));
    }
    if !unstable.is_empty() {
        eprintln!("\ninfluxd answered these twice, differently; fix or drop them in the corpus:");
        for u in &unstable {
            eprintln!("{u}");
        }
        problems.push(format!(
            "{} queries have no stable influxd answer",
            unstable.len()
        ));
    }
    if !missing_golden.is_empty() {
        eprintln!("\nNo golden answer (run once with influxd installed to record them):");
        for m in &missing_golden {
            eprintln!("  {m}");
        }
        problems.push(format!(
            "{} queries have no answer in expected.jsonl",
            missing_golden.len()
        ));
    }
    if !orphans.is_empty() && only.is_none() {
        eprintln!("\nknown_diffs.txt lists lines that are not in the corpus:");
        for o in &orphans {
            eprintln!("  {o}");
        }
        problems.push(format!(
            "{} orphan entries in known_diffs.txt",
            orphans.len()
        ));
    }
    assert!(
        problems.is_empty(),
        "{}\n(SHARDCORE_DIFF_UPDATE=1 rewrites known_diffs.txt from this run)",
        problems.join("; ")
    );
}
