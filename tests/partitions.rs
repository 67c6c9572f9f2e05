//! Every core stores (issue 14): a shard is stored on each owner node as `P`
//! partitions by series hash, partition `p` on core `p % cores`. Real node processes:
//! the spread over cores, restarts with other core counts (and SIGKILL in between),
//! a 3-node cluster, hinted handoff to a node that came back with another core count,
//! and a format-1 data directory refused with what to do.

mod common;

use common::{Cluster, Node};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

/// How long `eventually` waits for what a test expects.
const WAIT: Duration = Duration::from_secs(30);

const HOUR_NS: i64 = 3_600_000_000_000;
const BASE_NS: i64 = 1_600_000_000_000_000_000;

/// `hosts` series (`cpu,hostname=host_i`: keys that differ only at their end) with
/// three fields, `rows` rows each, one second apart, starting at `first_row`.
fn cpu_lines(hosts: usize, rows: usize, first_row: usize) -> String {
    let mut body = String::new();
    for r in first_row..first_row + rows {
        for h in 0..hosts {
            body.push_str(&format!(
                "cpu,hostname=host_{h} usage_user={r}.5,usage_system={h}i,up=true {}\n",
                BASE_NS + r as i64 * 1_000_000_000
            ));
        }
    }
    body
}

/// Values stored per core of a node.
fn values_per_core(node: &Node) -> BTreeMap<u64, u64> {
    let mut out = BTreeMap::new();
    for s in node.debug_shards() {
        *out.entry(s["core"].as_u64().unwrap()).or_default() += s["values"].as_u64().unwrap();
    }
    out
}

/// The last column of the first row of a one-statement answer.
fn count(node: &Node, db: &str, q: &str) -> i64 {
    let r = node.query_on(db, q).json();
    let row = r["results"][0]["series"][0]["values"][0]
        .as_array()
        .cloned();
    row.and_then(|row| row.last().and_then(|v| v.as_i64()))
        .unwrap_or_else(|| panic!("{q}: {r}"))
}

fn writes_rerouted(node: &Node) -> u64 {
    node.request("GET", "/debug/vars", &[], b"").json()["cluster"]["writesRerouted"]
        .as_u64()
        .unwrap_or(0)
}

/// A 2-core node, one shard group, 1,000 hosts: both cores hold values, each 40-60%;
/// /debug/shards has one entry per (shard, partition) with its core; SHOW SHARDS one
/// row per shard; `shardcore inspect` one line per partition.
#[test]
fn a_two_core_node_stores_on_both_cores() {
    let dir = common::temp_dir();
    let mut node = Node::start_with(dir.path(), &["--cores", "2"]);
    assert_eq!(node.query("CREATE DATABASE db").status, 200);
    let r = node.write("db=db", cpu_lines(1_000, 3, 0).as_bytes());
    assert_eq!(r.status, 204, "{}", r.text());
    let entries = node.debug_shards();
    assert_eq!(entries.len(), 2, "{entries:?}");
    let ids: BTreeSet<u64> = entries.iter().map(|e| e["id"].as_u64().unwrap()).collect();
    assert_eq!(ids.len(), 1, "one shard");
    assert!(*ids.iter().next().unwrap() < 1 << 53, "53-bit shard id");
    for e in &entries {
        assert_eq!(e["partitions"], 2);
        assert_eq!(e["core"], e["partition"]);
    }
    let per_core = values_per_core(&node);
    let total: u64 = per_core.values().sum();
    assert_eq!(total, 9_000);
    for (core, values) in &per_core {
        let share = *values as f64 / total as f64;
        assert!((0.4..=0.6).contains(&share), "core {core}: {per_core:?}");
    }
    let series: u64 = entries.iter().map(|e| e["series"].as_u64().unwrap()).sum();
    assert_eq!(series, 1_000);
    // Queries see the partitions as one shard.
    assert_eq!(
        count(&node, "db", "SELECT count(usage_user) FROM cpu"),
        3_000
    );
    assert_eq!(count(&node, "db", "SHOW SERIES EXACT CARDINALITY"), 1_000);
    let shards = node.query("SHOW SHARDS").json();
    let rows = shards["results"][0]["series"][0]["values"]
        .as_array()
        .unwrap();
    assert_eq!(rows.len(), 1, "{shards}");
    assert_eq!(rows[0][0].as_u64(), ids.iter().next().copied());
    // A field's type is one per shard, across partitions: host_0 and host_1 sit in
    // different partitions or not, the conflict is found either way.
    let r = node.write(
        "db=db",
        format!("cpu,hostname=host_new usage_system=1.5 {BASE_NS}\n").as_bytes(),
    );
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(r.text().contains("field type conflict"), "{}", r.text());
    assert_eq!(writes_rerouted(&node), 0);
    assert!(node.terminate().success());
    let listing = common::inspect_listing(dir.path());
    assert_eq!(listing.lines().count(), 3, "{listing}");
    assert!(
        listing.contains("\t0/2\t") && listing.contains("\t1/2\t"),
        "{listing}"
    );
}

/// Restarting the same data directory with `--cores 1`, `--cores 2` and `--cores 4`
/// (unpinned), with a SIGKILL before each restart: every acknowledged point reads
/// back, new writes land, and shards keep the partition count they were made with.
#[test]
fn restarts_with_other_core_counts_keep_every_point() {
    let dir = common::temp_dir();
    let data = dir.path().join("data");
    let config = dir.path().join("unpinned.toml");
    // Small io_uring buffers, so four executors fit this machine's locked-memory limit.
    std::fs::write(
        &config,
        "[runtime]\npin-cores = false\nio-memory-bytes = 1048576\n",
    )
    .unwrap();
    let start = |cores: &str| {
        Node::start_with(
            &data,
            &["--cores", cores, "--config", config.to_str().unwrap()],
        )
    };
    let mut node = start("2");
    assert_eq!(
        node.query("CREATE DATABASE db WITH SHARD DURATION 1h")
            .status,
        200
    );
    let mut rows = 0;
    let mut write_rows = |node: &Node, n: usize| {
        let r = node.write("db=db", cpu_lines(300, n, rows).as_bytes());
        assert_eq!(r.status, 204, "{}", r.text());
        rows += n;
        rows
    };
    let mut expected = write_rows(&node, 4);
    node.kill();
    let mut counts = vec!["1", "2", "4", "1"];
    if !memlock_allows(4 * (2 << 20)) {
        eprintln!("skipping the 4-core restart: RLIMIT_MEMLOCK's hard limit is below 8 MiB");
        counts.retain(|c| *c != "4");
    }
    for cores in counts {
        let node = start(cores);
        assert_eq!(
            count(&node, "db", "SELECT count(usage_user) FROM cpu"),
            (expected * 300) as i64,
            "after a restart with {cores} cores"
        );
        assert_eq!(
            node.dump("db", "&measurement=cpu").len(),
            expected * 300 * 3
        );
        let first_group = node
            .debug_shards()
            .into_iter()
            .filter(|e| e["start_ns"].as_i64().unwrap() <= BASE_NS);
        for e in first_group {
            // The first group was made by 2 cores: its partitions stay 2.
            assert_eq!(e["partitions"], 2, "{e}");
            let core = e["partition"].as_u64().unwrap() % cores.parse::<u64>().unwrap();
            assert_eq!(e["core"].as_u64().unwrap(), core);
        }
        expected = write_rows(&node, 2);
        assert_eq!(
            count(&node, "db", "SELECT count(usage_user) FROM cpu"),
            (expected * 300) as i64
        );
        // A new shard group made now has this core count as its partition count.
        let hour = format!(
            "later,host=a v=1 {}\nlater,host=b v=1 {}\n",
            BASE_NS + 10 * HOUR_NS,
            BASE_NS + 10 * HOUR_NS
        );
        if cores == "4" {
            assert_eq!(node.write("db=db", hour.as_bytes()).status, 204);
            let later: Vec<_> = node
                .debug_shards()
                .into_iter()
                .filter(|e| e["start_ns"].as_i64().unwrap() > BASE_NS + HOUR_NS)
                .collect();
            assert!(!later.is_empty());
            assert!(later.iter().all(|e| e["partitions"] == 4), "{later:?}");
        }
        let mut node = node;
        node.kill();
    }
    let node = start("2");
    assert_eq!(count(&node, "db", "SELECT count(v) FROM later"), 2);
    assert_eq!(
        count(&node, "db", "SELECT count(usage_user) FROM cpu"),
        (expected * 300) as i64
    );
}

/// Whether the locked-memory hard limit allows `bytes` (each core locks its io_uring
/// buffers plus its rings).
fn memlock_allows(bytes: u64) -> bool {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we pass.
    let ok = unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut limit) } == 0;
    ok && (limit.rlim_max == libc::RLIM_INFINITY || limit.rlim_max >= bytes)
}

/// Three nodes, rf 2, two cores each: every point on exactly its owners, each owner's
/// share spread over both its cores, and nothing re-routed between cores.
#[test]
fn a_cluster_stores_on_every_core_of_every_owner() {
    let cluster = Cluster::start(3, 2, "write-timeout-ms = 5000\n");
    cluster.query_all("CREATE DATABASE db WITH REPLICATION 2 SHARD DURATION 1h");
    for writer in 0..3 {
        let r = cluster.node(writer).write(
            "db=db&consistency=all",
            cpu_lines(400, 2, writer * 2).as_bytes(),
        );
        assert_eq!(r.status, 204, "{}", r.text());
    }
    let mut holders: BTreeMap<(String, i64), BTreeSet<u64>> = BTreeMap::new();
    for i in 0..3 {
        for (series, _, ts, _) in cluster.node(i).dump("db", "") {
            holders
                .entry((series, ts))
                .or_default()
                .insert(i as u64 + 1);
        }
    }
    assert_eq!(holders.len(), 400 * 6);
    for ((series, ts), nodes) in &holders {
        assert_eq!(
            nodes,
            &common::owners_of("db", 2, series, *ts),
            "{series} at {ts}"
        );
    }
    for i in 0..3 {
        let node = cluster.node(i);
        // Each series in one partition of its shard: the partitions' series counts add
        // up to the node's distinct series, and no value is stored twice.
        let dump = node.dump("db", "");
        let series: BTreeSet<&str> = dump.iter().map(|p| p.0.as_str()).collect();
        let points: BTreeSet<(&str, &str, i64)> = dump
            .iter()
            .map(|p| (p.0.as_str(), p.1.as_str(), p.2))
            .collect();
        assert_eq!(
            points.len(),
            dump.len(),
            "node {}: a value stored twice",
            i + 1
        );
        let in_partitions: u64 = node
            .debug_shards()
            .iter()
            .map(|e| e["series"].as_u64().unwrap())
            .sum();
        assert_eq!(in_partitions, series.len() as u64, "node {}", i + 1);
        let per_core = values_per_core(node);
        let total: u64 = per_core.values().sum();
        assert!(total > 0);
        assert_eq!(per_core.len(), 2, "node {}: {per_core:?}", i + 1);
        for (core, values) in &per_core {
            let share = *values as f64 / total as f64;
            assert!(
                (0.35..=0.65).contains(&share),
                "node {} core {core}: {per_core:?} {:?}",
                i + 1,
                node.debug_shards()
            );
        }
        assert_eq!(writes_rerouted(node), 0, "node {}", i + 1);
    }
}

/// Hinted handoff to a node that came back with another core count delivers
/// everything; live writes split by the old count are re-routed by the node (counted).
#[test]
fn hinted_handoff_reaches_a_node_restarted_with_more_cores() {
    let mut cluster = Cluster::start(
        3,
        1,
        "write-timeout-ms = 2000\ndial-timeout-ms = 300\n[hinted-handoff]\nretry-interval-ms = 100\nretry-max-interval-ms = 300\n",
    );
    cluster.query_all("CREATE DATABASE db WITH REPLICATION 3 SHARD DURATION 1h");
    let r = cluster
        .node(0)
        .write("db=db&consistency=all", cpu_lines(200, 1, 0).as_bytes());
    assert_eq!(r.status, 204, "{}", r.text());
    cluster.node_mut(2).kill();
    cluster.nodes[2] = None;
    for (writer, row) in [(0, 1), (1, 2), (0, 3)] {
        let r = cluster
            .node(writer)
            .write("db=db&consistency=one", cpu_lines(200, 1, row).as_bytes());
        assert_eq!(r.status, 204, "{}", r.text());
    }
    let queued = |node: &Node| -> u64 {
        let vars = node.request("GET", "/debug/vars", &[], b"").json();
        vars["hintedHandoff"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|q| q["queueBytes"].as_u64().unwrap_or(0))
            .sum()
    };
    common::eventually(WAIT, "writes for node 3 queued", || {
        queued(cluster.node(0)) + queued(cluster.node(1)) > 0
    });
    cluster.start_node_with_cores(2, 2);
    for i in 0..2 {
        common::eventually(WAIT, "the queues drain", || queued(cluster.node(i)) == 0);
    }
    let on_3 = cluster.node(2).dump("db", "");
    assert_eq!(on_3.len(), 200 * 4 * 3, "every point reached node 3");
    // The shard was made on node 3 with one partition; now node 3 has two cores and
    // its peers split their writes for it in two: the half for core 1 is re-routed.
    let r = cluster
        .node(0)
        .write("db=db&consistency=all", cpu_lines(200, 1, 4).as_bytes());
    assert_eq!(r.status, 204, "{}", r.text());
    assert_eq!(cluster.node(2).dump("db", "").len(), 200 * 5 * 3);
    assert!(writes_rerouted(cluster.node(2)) > 0);
    for e in cluster.node(2).debug_shards() {
        assert_eq!(e["partitions"], 1, "{e}");
        assert_eq!(e["core"], 0, "{e}");
    }
}

/// A data directory written before partitions (format 1) is refused at start with what
/// to do, untouched; `shardcore inspect --export` reads it.
#[test]
fn a_format_one_data_directory_is_refused_and_exportable() {
    let dir = common::temp_dir();
    let data = dir.path().join("data");
    // Make a format-2 directory, then rearrange it into format 1's shape (one
    // directory per shard, `shard.json` and `wal/` directly in it), as an older
    // ShardCore left it.
    let mut node = Node::start_with(&data, &["--cores", "1"]);
    assert_eq!(node.query("CREATE DATABASE db").status, 200);
    let body = "m,host=a v=1.5 1000000000\nm,host=b w=2i 2000000000\ns,host=c t=\"x \\\"y\\\"\" 3000000000\n";
    let r = node.write("db=db", body.as_bytes());
    assert_eq!(r.status, 204, "{}", r.text());
    assert!(node.terminate().success());
    for shard in std::fs::read_dir(data.join("shards")).unwrap().flatten() {
        let part = shard.path().join("0");
        std::fs::rename(part.join("wal"), shard.path().join("wal")).unwrap();
        std::fs::rename(part.join("shard.json"), shard.path().join("shard.json")).unwrap();
        std::fs::remove_dir(&part).unwrap();
    }
    std::fs::remove_file(data.join("FORMAT")).unwrap();
    let out = std::process::Command::new(common::BIN)
        .args(["serve", "--cores", "1", "--data-dir"])
        .arg(&data)
        .args(["--http-bind", "127.0.0.1:0"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("format 1") && stderr.contains("--export"),
        "{stderr}"
    );
    assert!(
        !data.join("FORMAT").exists(),
        "the directory is left as it was"
    );
    let out = std::process::Command::new(common::BIN)
        .arg("inspect")
        .arg(&data)
        .arg("--export")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let dump = String::from_utf8_lossy(&out.stdout);
    assert!(dump.contains("# DML\n# CONTEXT-DATABASE: db\n"), "{dump}");
    for line in [
        "m,host=a v=1.5 1000000000",
        "m,host=b w=2i 2000000000",
        "s,host=c t=\"x \\\"y\\\"\" 3000000000",
    ] {
        assert!(dump.contains(line), "{line} missing from\n{dump}");
    }
    // The dump loads into a fresh node as it is.
    let fresh = Node::start_with(&dir.path().join("fresh"), &["--cores", "2"]);
    assert_eq!(fresh.query("CREATE DATABASE db").status, 200);
    let dml: String = dump
        .lines()
        .filter(|l| !l.starts_with('#') && !l.starts_with("CREATE"))
        .map(|l| format!("{l}\n"))
        .collect();
    assert_eq!(fresh.write("db=db", dml.as_bytes()).status, 204);
    assert_eq!(fresh.dump("db", "").len(), 3);
}

/// A node restarted with fewer cores replays the hinted-handoff queues its missing
/// cores left behind (core c adopts those of cores c + k * cores): every write
/// acknowledged at consistency `any` reaches the owner that was down.
#[test]
fn hinted_handoff_queues_of_missing_cores_are_replayed() {
    let mut cluster = Cluster::start(
        3,
        2,
        "write-timeout-ms = 2000\ndial-timeout-ms = 300\n[hinted-handoff]\nretry-interval-ms = 100\nretry-max-interval-ms = 300\n",
    );
    cluster.query_all("CREATE DATABASE db WITH REPLICATION 3 SHARD DURATION 1h");
    cluster.node_mut(2).kill();
    cluster.nodes[2] = None;
    for row in 0..3 {
        let r = cluster
            .node(0)
            .write("db=db&consistency=any", cpu_lines(200, 1, row).as_bytes());
        assert_eq!(r.status, 204, "{}", r.text());
    }
    // Node 1's queues for node 3 hold records on both of its cores.
    let queued_per_core = |node: &Node| -> BTreeMap<u64, u64> {
        let vars = node.request("GET", "/debug/vars", &[], b"").json();
        let mut out = BTreeMap::new();
        for q in vars["hintedHandoff"].as_array().into_iter().flatten() {
            *out.entry(q["core"].as_u64().unwrap()).or_default() +=
                q["queueBytes"].as_u64().unwrap_or(0);
        }
        out
    };
    let before = queued_per_core(cluster.node(0));
    assert!(before.get(&1).copied().unwrap_or(0) > 0, "{before:?}");
    assert!(before.get(&0).copied().unwrap_or(0) > 0, "{before:?}");
    cluster.node_mut(0).kill();
    cluster.start_node_with_cores(0, 1);
    assert!(
        cluster
            .node(0)
            .log()
            .contains("adopted the hinted-handoff queue"),
        "{}",
        cluster.node(0).log()
    );
    cluster.start_node(2);
    common::eventually(WAIT, "node 1's queues drain", || {
        queued_per_core(cluster.node(0)).values().sum::<u64>() == 0
    });
    assert_eq!(cluster.node(2).dump("db", "").len(), 200 * 3 * 3);
}
