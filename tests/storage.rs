//! The storage engine with real node processes: heads flushed into compressed data
//! files, WAL segments removed once files cover them, restarts (SIGKILL) that read
//! the files and replay only the WAL after them, last write wins across files and
//! head, deletes over files (tombstones), and the cache-max-bytes 503.

mod common;

use common::Node;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(30);

/// Small heads flush at once; a partition with no write for 300 ms flushes too.
const CONFIG: &str =
    "cores = 2\n[storage]\ncache-snapshot-bytes = 65536\ncache-snapshot-write-cold-ms = 300\n";

type Model = BTreeMap<(String, String, i64), Value>;

/// A line to write: series key, fields (name, value as stored, line-protocol form),
/// timestamp.
type Row = (String, Vec<(&'static str, Value, String)>, i64);

fn data_files(data: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for shard in std::fs::read_dir(data.join("shards")).unwrap().flatten() {
        for part in std::fs::read_dir(shard.path()).unwrap().flatten() {
            if let Ok(files) = std::fs::read_dir(part.path().join("data")) {
                out.extend(
                    files
                        .flatten()
                        .map(|f| f.path())
                        .filter(|p| p.extension().is_some_and(|e| e == "scd")),
                );
            }
        }
    }
    out
}

/// `shardcore inspect DIR --files --verify`: (exit 0, stdout).
fn inspect_files(data: &Path) -> (bool, String) {
    let out = std::process::Command::new(common::BIN)
        .args(["inspect", "--files", "--verify"])
        .arg(data)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

fn check(node: &Node, model: &Model, when: &str) {
    let got: Model = node
        .dump("db", "")
        .into_iter()
        .map(|(s, f, t, v)| ((s, f, t), v))
        .collect();
    assert_eq!(got.len(), model.len(), "{when}: value count");
    for (k, v) in model {
        assert_eq!(got.get(k), Some(v), "{when}: {k:?}");
    }
}

/// Writes `lines` (each with its model entries) and records them.
fn write(node: &Node, model: &mut Model, rows: &[Row]) {
    let mut body = String::new();
    for (series, fields, t) in rows {
        let lp: Vec<String> = fields
            .iter()
            .map(|(f, _, lp)| format!("{f}={lp}"))
            .collect();
        body.push_str(&format!("{series} {} {t}\n", lp.join(",")));
        for (f, v, _) in fields {
            model.insert((series.clone(), f.to_string(), *t), v.clone());
        }
    }
    let r = node.write("db=db", body.as_bytes());
    assert_eq!(r.status, 204, "{}", r.text());
}

fn rows(hosts: std::ops::Range<usize>, times: std::ops::Range<i64>, round: i64) -> Vec<Row> {
    let mut out = Vec::new();
    for h in hosts {
        for i in times.clone() {
            let t = 1_600_000_000_000_000_000 + i * 10_000_000_000;
            let usage = ((i * 7 + h as i64 + round) % 1000) as f64 / 10.0;
            let noisy = f64::from_bits(
                0x3ff0_0000_0000_0000 ^ ((i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 12),
            );
            let n = i * 1000 - h as i64 + round;
            let u = (i as u64) << 40 | h as u64;
            let ok = (i + round) % 3 == 0;
            let s = ["ok", "warn", "crit"][((i + round) % 3) as usize];
            out.push((
                format!("cpu,host=h{h}"),
                vec![
                    ("usage", json!(usage), format!("{usage:?}")),
                    ("noisy", json!(noisy), format!("{noisy:?}")),
                    ("n", json!(n), format!("{n}i")),
                    ("u", json!(u), format!("{u}u")),
                    ("ok", json!(ok), ok.to_string()),
                    ("s", json!(s), format!("\"{s}\"")),
                ],
                t,
            ));
        }
    }
    out
}

/// Data file blocks the node's queries have read (decoded) since start.
fn block_reads(node: &Node) -> u64 {
    node.debug_shards()
        .iter()
        .map(|s| s["block_reads"].as_u64().unwrap())
        .sum()
}

fn flushed(node: &Node) -> bool {
    let shards = node.debug_shards();
    !shards.is_empty()
        && shards.iter().all(|s| {
            s["cache_heap_bytes"].as_u64() == Some(0) && s["files"].as_u64().unwrap_or(0) > 0
        })
}

#[test]
fn heads_flush_into_files_the_wal_is_cut_and_restarts_read_the_files() {
    let dir = common::temp_dir();
    let data = dir.path().join("data");
    let mut node = Node::start_with_config(&data, CONFIG);
    node.create_database("db");
    let mut model = Model::new();
    for batch in 0..4 {
        write(
            &node,
            &mut model,
            &rows(0..40, batch * 50..(batch + 1) * 50, 0),
        );
    }
    // Flushed, and the files cover every WAL segment (all removed).
    common::eventually(WAIT, "every partition's head is flushed", || {
        flushed(&node) && common::wal_segments(&data).is_empty()
    });
    assert!(!data_files(&data).is_empty());
    let wal_bytes = |node: &Node| {
        node.request("GET", "/debug/vars", &[], b"").json()["storage"]["values"]["walBytes"]
            .as_u64()
            .unwrap()
    };
    assert_eq!(wal_bytes(&node), 0, "every segment removed");
    check(&node, &model, "read from files");
    // `shardcore inspect --files --verify`: every block reads back; codecs per field.
    let (ok, report) = inspect_files(&data);
    assert!(ok, "{report}");
    assert!(
        report.contains("verified ") && report.contains(": 0 problems"),
        "{report}"
    );
    for want in [
        "usage\tfloat",
        "n\tinteger",
        "u\tunsigned",
        "ok\tboolean",
        "s\tstring",
        "ts-rle",
        "str-dict",
    ] {
        assert!(report.contains(want), "{want} in {report}");
    }
    // Bytes per value on disk: 8,000 rows x 6 fields.
    let file_bytes: u64 = data_files(&data)
        .iter()
        .map(|p| std::fs::metadata(p).unwrap().len())
        .sum();
    let values = model.len() as u64;
    println!(
        "{values} values in {file_bytes} bytes of data files: {:.2} bytes/value",
        file_bytes as f64 / values as f64
    );
    assert!(
        file_bytes < values * 8,
        "compressed: {file_bytes} bytes for {values} values"
    );

    // New values at old times win over the files' (last write wins), new times add.
    write(&node, &mut model, &rows(0..10, 100..260, 5));
    assert!(wal_bytes(&node) > 0);
    check(&node, &model, "files and head");
    // A delete of a time range of some series, and a DROP SERIES, over files and head.
    let cut = 1_600_000_000_000_000_000 + 120 * 10_000_000_000i64;
    let r = node.query_on(
        "db",
        &format!("DELETE FROM cpu WHERE host = 'h1' AND time < {cut}"),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    model.retain(|(s, _, t), _| !(s == "cpu,host=h1" && *t < cut));
    let r = node.query_on("db", "DROP SERIES FROM cpu WHERE host = 'h2'");
    assert_eq!(r.status, 200, "{}", r.text());
    model.retain(|(s, _, _), _| s != "cpu,host=h2");
    check(&node, &model, "after deletes");
    let series = node.query_on("db", "SHOW SERIES").text();
    assert!(
        !series.contains("host=h2\"") && series.contains("host=h1\""),
        "{series}"
    );

    // SIGKILL with part of the data in files and part only in the WAL.
    node.kill();
    let mut node = Node::start_with_config(&data, CONFIG);
    check(&node, &model, "after SIGKILL and restart");
    let series = node.query_on("db", "SHOW SERIES").text();
    assert!(
        !series.contains("host=h2\"") && series.contains("host=h39\""),
        "{series}"
    );
    let fields = node.query_on("db", "SHOW FIELD KEYS").text();
    for want in [
        "\"usage\",\"float\"",
        "\"n\",\"integer\"",
        "\"u\",\"unsigned\"",
        "\"ok\",\"boolean\"",
        "\"s\",\"string\"",
    ] {
        assert!(fields.contains(want), "{want} in {fields}");
    }
    let r = node.query_on(
        "db",
        "SELECT count(usage), sum(n) FROM cpu WHERE host = 'h5'",
    );
    let want_n: i64 = model
        .iter()
        .filter(|((s, f, _), _)| s == "cpu,host=h5" && f == "n")
        .map(|(_, v)| v.as_i64().unwrap())
        .sum();
    assert!(
        r.text().contains(&format!(",260,{want_n}]")),
        "{} (sum {want_n})",
        r.text()
    );

    // Everything flushed again (the tombstones go into the manifest), killed, back.
    common::eventually(WAIT, "flushed again", || {
        flushed(&node) && common::wal_segments(&data).is_empty()
    });
    node.kill();
    let node = Node::start_with_config(&data, CONFIG);
    check(&node, &model, "after a second flush and SIGKILL");
    assert!(common::wal_segments(&data).is_empty());
}

#[test]
fn writes_past_cache_max_bytes_get_503_until_a_flush_frees_room() {
    let dir = common::temp_dir();
    let data = dir.path().join("data");
    // Flushes only by size (the cold timer is an hour), at the same mark as the limit.
    let config = "cores = 1\n[storage]\ncache-snapshot-bytes = 1048576\ncache-max-bytes = 1048576\ncache-snapshot-write-cold-ms = 3600000\n";
    let node = Node::start_with_config(&data, config);
    node.create_database("db");
    let mut accepted = 0usize;
    let mut refused = None;
    for batch in 0..200 {
        let mut body = String::new();
        for i in 0..2000 {
            body.push_str(&format!(
                "m,host=h{} v={i},w={batch} {}\n",
                i % 50,
                batch * 10_000 + i
            ));
        }
        let r = node.write("db=db", body.as_bytes());
        match r.status {
            204 => accepted += 2000,
            503 => {
                refused = Some(r);
                break;
            }
            other => panic!("{other}: {}", r.text()),
        }
    }
    let r = refused.expect("a write past cache-max-bytes is refused");
    assert!(
        r.text().contains("cache-max-memory-size exceeded"),
        "{}",
        r.text()
    );
    assert_eq!(r.header("Retry-After"), Some("1"));
    // The flush frees room; the same write is then taken; nothing acknowledged is lost.
    common::eventually(WAIT, "writes are taken again", || {
        node.write("db=db", b"m,host=late v=1 1").status == 204
    });
    let r = node.query_on("db", "SELECT count(v) FROM m WHERE host != 'late'");
    assert!(
        r.text().contains(&format!(",{accepted}]")),
        "{accepted}: {}",
        r.text()
    );
    let vars = node.request("GET", "/debug/vars", &[], b"").json();
    assert!(
        vars["storage"]["values"]["cacheFullRejections"]
            .as_u64()
            .unwrap()
            >= 1,
        "{vars}"
    );
}

#[test]
fn a_corrupt_data_file_is_moved_aside_counted_and_the_node_starts() {
    let dir = common::temp_dir();
    let data = dir.path().join("data");
    let mut node = Node::start_with_config(&data, CONFIG);
    node.create_database("db");
    let mut model = Model::new();
    write(&node, &mut model, &rows(0..40, 0..20, 0));
    common::eventually(WAIT, "flushed", || {
        flushed(&node) && common::wal_segments(&data).is_empty()
    });
    assert!(node.terminate().success());
    let files = data_files(&data);
    assert!(files.len() >= 2, "one file per partition: {files:?}");
    // Garble the footer of one file.
    let victim = &files[0];
    let mut bytes = std::fs::read(victim).unwrap();
    let at = bytes.len() - 30;
    bytes[at] ^= 0xff;
    std::fs::write(victim, &bytes).unwrap();
    // And a bit inside a block of another file: that block fails --verify only.
    let other = &files[1];
    let mut bytes = std::fs::read(other).unwrap();
    bytes[200] ^= 0x01;
    std::fs::write(other, &bytes).unwrap();
    let (ok, report) = inspect_files(&data);
    assert!(
        !ok && report.contains("BAD:") && report.contains("BAD BLOCK"),
        "{report}"
    );
    let node = Node::start_with_config(&data, CONFIG);
    assert!(!victim.exists());
    let bad = victim.parent().unwrap().parent().unwrap().join("bad");
    assert!(bad.join(victim.file_name().unwrap()).exists());
    let vars = node.request("GET", "/debug/vars", &[], b"").json();
    assert_eq!(
        vars["storage"]["values"]["badFiles"].as_u64(),
        Some(1),
        "{vars}"
    );
    assert!(node.log().contains("data file does not open"));
    // The other partition's values are all there, and writes go on.
    let got = node.dump("db", "");
    assert!(
        !got.is_empty() && got.len() < model.len(),
        "{} of {}",
        got.len(),
        model.len()
    );
    assert_eq!(node.write("db=db", b"cpu,host=h0 usage=1 1").status, 204);
}

#[test]
fn compactions_bound_the_file_count_under_a_live_load_and_lose_nothing() {
    let dir = common::temp_dir();
    let data = dir.path().join("data");
    // Every check flushes (tiny heads), compactions run as files pile up, and a
    // partition cold for a second gets a full rewrite.
    let config = "cores = 2\n[storage]\ncache-snapshot-bytes = 4096\ncache-snapshot-write-cold-ms = 200\ncompact-full-write-cold-ms = 1000\n";
    let mut node = Node::start_with_config(&data, config);
    node.create_database("db");
    let mut model = Model::new();
    for batch in 0..24 {
        write(
            &node,
            &mut model,
            &rows(0..20, batch * 10..(batch + 1) * 10, 0),
        );
        // Overwrites of older times, so files overlap.
        write(&node, &mut model, &rows(0..3, batch * 5..batch * 5 + 3, 7));
        std::thread::sleep(Duration::from_millis(120));
    }
    check(&node, &model, "during compactions");
    let vars = || node.request("GET", "/debug/vars", &[], b"").json()["storage"]["values"].clone();
    common::eventually(
        WAIT,
        "one file per partition after the full rewrite",
        || {
            let v = vars();
            v["compactions"].as_u64().unwrap_or(0) > 0
                && node
                    .debug_shards()
                    .iter()
                    .all(|s| s["files"].as_u64() == Some(1))
        },
    );
    let v = vars();
    assert_eq!(v["compactionFailures"].as_u64(), Some(0), "{v}");
    check(&node, &model, "after compactions");
    assert_eq!(data_files(&data).len(), node.debug_shards().len());
    let (ok, report) = inspect_files(&data);
    assert!(ok, "{report}");
    node.kill();
    let node = Node::start_with_config(&data, config);
    check(&node, &model, "after SIGKILL");
}

/// `last()` and `first()` alone read one block per series and field from the files
/// (the newest or the oldest), not the series' history; other aggregates read them all.
#[test]
fn last_and_first_read_one_block_per_field_from_the_files() {
    let dir = common::temp_dir();
    let data = dir.path().join("data");
    // No block cache: every block a query needs is read.
    let config = format!("{CONFIG}block-cache-bytes = 0\n");
    let mut node = Node::start_with_config(&data, &config);
    node.create_database("db");
    // 3 series x 5,000 times: five blocks per field per series once flushed.
    let mut body = String::new();
    for h in 0..3 {
        for i in 0..5000 {
            body.push_str(&format!(
                "m,host=h{h} v={i},w={h}i {}\n",
                1_000_000_000 + i * 1_000_000_000i64
            ));
        }
    }
    assert_eq!(node.write("db=db", body.as_bytes()).status, 204);
    common::eventually(WAIT, "flushed", || flushed(&node));
    let before = block_reads(&node);
    let r = node.query_on("db", "SELECT last(v), last(w) FROM m GROUP BY host");
    assert!(r.text().contains("4999,"), "{}", r.text());
    assert_eq!(
        block_reads(&node) - before,
        6,
        "one block per field and series"
    );
    let before = block_reads(&node);
    let r = node.query_on("db", "SELECT first(v) FROM m");
    assert!(
        r.text().contains("[\"1970-01-01T00:00:01Z\",0]"),
        "{}",
        r.text()
    );
    assert_eq!(block_reads(&node) - before, 3);
    let before = block_reads(&node);
    let r = node.query_on("db", "SELECT median(v) FROM m");
    assert!(r.text().contains("2499.5"), "{}", r.text());
    assert_eq!(block_reads(&node) - before, 15, "every block of v");
    // max() compares whole blocks by their statistics and reads only the winner's.
    let before = block_reads(&node);
    let r = node.query_on("db", "SELECT max(v) FROM m");
    assert!(r.text().contains("4999"), "{}", r.text());
    assert_eq!(block_reads(&node) - before, 3, "one block per series");
    // A newer value in the head and an overwrite of the newest file value: still right.
    assert_eq!(
        node.write(
            "db=db",
            b"m,host=h0 v=-1 5000000000000\nm,host=h1 v=-2 6000000000000"
        )
        .status,
        204
    );
    let before = block_reads(&node);
    let r = node.query_on("db", "SELECT last(v) FROM m GROUP BY host");
    let text = r.text();
    assert!(
        text.contains("-1]") && text.contains("-2]") && text.contains("4999]"),
        "{text}"
    );
    // h1's newest value is in the head, newer than any file's: no file block for it;
    // h0's head value ties the file's newest time (and wins), so no block either.
    assert_eq!(block_reads(&node) - before, 1, "only h2's newest block");
    node.kill();
}

/// Blocks queries read go through the core's bounded block cache: asked again, they
/// are not read again; past `block-cache-bytes` the least recently used go, and the
/// cache holds no more than its limit.
#[test]
fn queries_read_blocks_through_a_bounded_cache() {
    let dir = common::temp_dir();
    let data = dir.path().join("data");
    // About 16 decoded 1,000-value blocks per core.
    let config = format!("{CONFIG}block-cache-bytes = 270000\n");
    let mut node = Node::start_with_config(&data, &config);
    node.create_database("db");
    let mut body = String::new();
    for h in 0..4 {
        for i in 0..20_000 {
            body.push_str(&format!(
                "m,host=h{h} v={} {}\n",
                (i * 7 + h) % 1000,
                1_000_000_000 + i * 1_000_000_000i64
            ));
        }
    }
    assert_eq!(node.write("db=db", body.as_bytes()).status, 204);
    common::eventually(WAIT, "flushed", || flushed(&node));
    let storage = |node: &Node, name: &str| -> u64 {
        let vars = node.request("GET", "/debug/vars", &[], b"").json();
        vars["storage"]["values"][name].as_u64().unwrap()
    };
    // One host's last hour: a few blocks, read once, then found in the cache.
    // (median() reads every value: no block statistics answer it.)
    let q = "SELECT count(v), median(v) FROM m WHERE host = 'h1' AND time >= 16000s";
    let first = node.query_on("db", q).text();
    assert!(first.contains("4001"), "{first}");
    let before = block_reads(&node);
    let hits = storage(&node, "blockCacheHits");
    assert_eq!(node.query_on("db", q).text(), first);
    assert_eq!(block_reads(&node), before, "no block read again");
    assert!(storage(&node, "blockCacheHits") > hits);
    // Everything (80,000 values, 1.3 MB decoded) goes through a cache of about 16 per core: evictions,
    // never more than the limit held, and every answer right.
    let all = node
        .query_on("db", "SELECT count(v), median(v) FROM m")
        .text();
    assert!(all.contains("80000"), "{all}");
    assert!(storage(&node, "blockCacheEvictions") > 0);
    assert!(storage(&node, "blockCacheBytes") <= 2 * 270_000);
    assert_eq!(node.query_on("db", q).text(), first);
    node.kill();
}

/// count, sum, mean, min and max over data files answer whole blocks from their
/// statistics: the same answers as over the head, bit for bit, with only the blocks
/// that hold a min or max winner (or start a float sum's segment after another) read.
#[test]
fn aggregates_answer_whole_blocks_from_their_statistics() {
    let dir = common::temp_dir();
    let data = dir.path().join("data");
    // No block cache (every read counts); flushed 3 s after the last write.
    let config =
        "cores = 2\n[storage]\ncache-snapshot-write-cold-ms = 3000\nblock-cache-bytes = 0\n";
    let mut node = Node::start_with_config(&data, config);
    node.create_database("db");
    let mut body = String::new();
    for h in 0..3i64 {
        for i in 0..5000i64 {
            // Repeated minima and maxima, float sums that round, a signed zero.
            let v = match i % 7 {
                0 => "-0".to_string(),
                1 => "0.1".to_string(),
                _ => format!("{}", (i * 37 + h) % 1000) + ".25",
            };
            body.push_str(&format!(
                "m,host=h{h} v={v},w={}i,u={}u {}\n",
                (i * 7919 + h) % 100_003 - 50_000,
                i * 3 + h,
                1_000_000_000 + i * 1_000_000_000i64
            ));
        }
    }
    assert_eq!(node.write("db=db", body.as_bytes()).status, 204);
    let queries = [
        "SELECT count(v), sum(w), sum(u), min(v), max(v), min(w), max(u) FROM m",
        "SELECT count(v), sum(w), min(v), max(w) FROM m GROUP BY host",
        "SELECT mean(v), mean(w), mean(u), sum(v) FROM m GROUP BY host",
        "SELECT count(w), sum(w), mean(w), max(v), min(u) FROM m WHERE time >= 1500s AND time < 4800s GROUP BY time(1000s), host",
        "SELECT count(v), min(v), max(w) FROM m GROUP BY time(2500s) ORDER BY time DESC",
        "SELECT first(v), last(w), count(u) FROM m GROUP BY time(2000s), host",
    ];
    let in_head: Vec<String> = queries
        .iter()
        .map(|q| node.query_on("db", q).text())
        .collect();
    common::eventually(WAIT, "flushed", || flushed(&node));
    for (q, want) in queries.iter().zip(&in_head) {
        assert_eq!(&node.query_on("db", q).text(), want, "{q}");
    }
    // 3 series x 5 blocks per field: count and the integer sums read nothing; each
    // min or max reads the one block holding its winner per series.
    let before = block_reads(&node);
    node.query_on(
        "db",
        "SELECT count(v), sum(w), sum(u), count(u) FROM m GROUP BY host",
    );
    assert_eq!(block_reads(&node) - before, 0);
    let before = block_reads(&node);
    node.query_on("db", "SELECT min(w), max(u) FROM m GROUP BY host");
    assert!(
        block_reads(&node) - before <= 6,
        "read {}",
        block_reads(&node) - before
    );
    // After a restart (indexes only in memory), still the same answers.
    node.kill();
    let node = Node::start_with_config(&data, config);
    for (q, want) in queries.iter().zip(&in_head) {
        assert_eq!(&node.query_on("db", q).text(), want, "{q} after a restart");
    }
}

/// Heads keep most values compressed, so a head far under `cache-snapshot-bytes` can
/// stand for a long WAL: a partition whose WAL passes `cache-snapshot-wal-bytes` is
/// flushed, and the WAL segments it covers go.
#[test]
fn a_long_wal_is_flushed_even_when_the_head_is_small() {
    let dir = common::temp_dir();
    let data = dir.path().join("data");
    let config = "cores = 1\n[storage]\ncache-snapshot-bytes = 1073741824\ncache-snapshot-write-cold-ms = 3600000\ncache-snapshot-wal-bytes = 1000000\nwal-segment-size-bytes = 262144\n";
    let mut node = Node::start_with_config(&data, config);
    node.create_database("db");
    let vars = |node: &Node| {
        node.request("GET", "/debug/vars", &[], b"").json()["storage"]["values"].clone()
    };
    // 40,000 values of one series: a ~2 MB WAL, a head of a few hundred KB.
    for round in 0..8 {
        let mut body = String::new();
        for i in 0..5000i64 {
            let t = (round * 5000 + i) * 1_000_000_000;
            body.push_str(&format!("m,host=a v={},w={}i {t}\n", i % 97, i));
        }
        assert_eq!(node.write("db=db", body.as_bytes()).status, 204);
    }
    common::eventually(WAIT, "a flush for the WAL's size", || {
        vars(&node)["flushes"].as_u64().unwrap() > 0
    });
    common::eventually(WAIT, "covered WAL segments removed", || {
        vars(&node)["walBytes"].as_u64().unwrap() < 1_000_000
    });
    let count = node.query_on("db", "SELECT count(v) FROM m").text();
    assert!(count.contains("40000"), "{count}");
    node.kill();
    let node = Node::start_with_config(&data, config);
    let count = node.query_on("db", "SELECT count(v), sum(w) FROM m").text();
    assert!(count.contains("40000"), "{count}");
}
