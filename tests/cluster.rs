//! Three real node processes on loopback forming a cluster: every point lands on exactly
//! its owners (placement computed here with the library), consistency levels with a dead
//! or hung owner, and garbage or a wrong secret on a cluster port.

mod common;

use common::Cluster;
use shardcore::placement::{self, Membership};
use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::time::{Duration, Instant};

/// How long `eventually` waits for what a test expects.
const WAIT: Duration = Duration::from_secs(20);

const HOUR_NS: i64 = 3_600_000_000_000;
const BASE_NS: i64 = 1_600_000_000_000_000_000;

/// Lines for `series` series over `hours` hourly shard groups, tagged with `writer`.
fn lines(writer: usize, series: usize, hours: i64) -> String {
    let mut body = String::new();
    for h in 0..hours {
        for s in 0..series {
            body.push_str(&format!(
                "m,writer=w{writer},s=s{s} v={h} {}\n",
                BASE_NS + h * HOUR_NS + writer as i64
            ));
        }
    }
    body
}

/// Every stored point per node: (series, time) -> set of node ids holding it.
fn holders(cluster: &Cluster, db: &str) -> BTreeMap<(String, i64), BTreeSet<u64>> {
    let mut out: BTreeMap<(String, i64), BTreeSet<u64>> = BTreeMap::new();
    for (i, node) in cluster.nodes.iter().enumerate() {
        let Some(node) = node else { continue };
        for (series, _, ts, _) in node.dump(db, "") {
            out.entry((series, ts)).or_default().insert(i as u64 + 1);
        }
    }
    out
}

fn expected_owners(db: &str, rf: u32, series: &str, ts: i64) -> BTreeSet<u64> {
    common::owners_of(db, rf, series, ts)
}

fn check_placement(rf: u32, cores: usize) {
    let cluster = Cluster::start(3, cores, "write-timeout-ms = 5000\n");
    let db = format!("rf{rf}");
    cluster.query_all(&format!(
        "CREATE DATABASE {db} WITH REPLICATION {rf} SHARD DURATION 1h"
    ));
    for writer in 0..3 {
        let r = cluster.node(writer).write(
            &format!("db={db}&consistency=all"),
            lines(writer, 20, 4).as_bytes(),
        );
        assert_eq!(r.status, 204, "node {}: {}", writer + 1, r.text());
    }
    // A second database with one replica, written through every node too.
    cluster.query_all("CREATE DATABASE single WITH REPLICATION 1 SHARD DURATION 1h");
    for writer in 0..3 {
        let r = cluster
            .node(writer)
            .write("db=single", lines(writer, 10, 2).as_bytes());
        assert_eq!(r.status, 204, "{}", r.text());
    }
    let single = holders(&cluster, "single");
    assert_eq!(single.len(), 3 * 10 * 2);
    for ((series, ts), nodes) in &single {
        assert_eq!(
            nodes,
            &expected_owners("single", 1, series, *ts),
            "{series} at {ts}"
        );
    }
    let held = holders(&cluster, &db);
    assert_eq!(held.len(), 3 * 20 * 4, "every point stored somewhere");
    for ((series, ts), nodes) in &held {
        assert_eq!(
            nodes,
            &expected_owners(&db, rf, series, *ts),
            "{series} at {ts} is on the wrong nodes"
        );
    }
    // Every node owns a share of the data.
    for node in 1..=3u64 {
        assert!(
            held.values().any(|n| n.contains(&node)),
            "node {node} owns nothing"
        );
    }
    // `shardcore cluster show` prints the same owners, per shard of every group.
    let out = std::process::Command::new(common::BIN)
        .args(["cluster", "show", "--config"])
        .arg(&cluster.configs[0])
        .arg("--data-dir")
        .arg(cluster.dirs[0].path().join("data"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    let rows: Vec<Vec<&str>> = text
        .lines()
        .skip(1)
        .map(|l| l.split('\t').collect::<Vec<_>>())
        .filter(|r| r[1] == db)
        .collect();
    let shards_per_group = if rf == 2 { 3 } else { 1 };
    assert_eq!(rows.len(), 4 * shards_per_group, "{text}");
    let membership = Membership::new(vec![1, 2, 3]);
    for row in rows {
        let start: i64 = row[3].parse().unwrap();
        let group = placement::place_group(&db, "autogen", start, HOUR_NS, rf, &membership);
        let index: usize = row[5].parse().unwrap();
        let owners: Vec<String> = group.shards[index]
            .owners
            .iter()
            .map(|o| o.to_string())
            .collect();
        assert_eq!(row[6], owners.join(","), "{text}");
        assert_eq!(row[0], group.shards[index].id.to_string());
    }
}

#[test]
fn three_nodes_rf2_every_point_on_exactly_its_owners() {
    check_placement(2, 2);
}

#[test]
fn three_nodes_rf3_every_point_on_every_node() {
    check_placement(3, 1);
}

#[test]
fn consistency_levels_with_a_dead_owner() {
    let mut cluster = Cluster::start(3, 1, "write-timeout-ms = 3000\ndial-timeout-ms = 500\n");
    cluster.query_all("CREATE DATABASE db WITH REPLICATION 2 SHARD DURATION 1h");
    cluster.node_mut(2).kill();
    cluster.nodes[2] = None;
    let body = lines(0, 30, 2);
    for level in ["all", "quorum"] {
        let r = cluster
            .node(0)
            .write(&format!("db=db&consistency={level}"), body.as_bytes());
        assert_eq!(r.status, 500, "{level}: {}", r.text());
        let err = r.json()["error"].as_str().unwrap().to_string();
        assert!(
            err.starts_with(&format!(
                "partial write: consistency {level} needs 2 of 2 owners, 1 acknowledged"
            )),
            "{err}"
        );
        assert!(err.contains("node 3"), "{err}");
    }
    for level in ["one", "any"] {
        let r = cluster
            .node(1)
            .write(&format!("db=db&consistency={level}"), body.as_bytes());
        assert_eq!(r.status, 204, "{level}: {}", r.text());
    }
    // Points whose owners are both alive are on both of them.
    let held = holders(&cluster, "db");
    for ((series, ts), nodes) in &held {
        let owners = expected_owners("db", 2, series, *ts);
        let alive: BTreeSet<u64> = owners.iter().copied().filter(|&n| n != 3).collect();
        assert_eq!(nodes, &alive, "{series} at {ts}");
    }
}

#[test]
fn a_hung_owner_times_out_and_does_not_block_lower_levels() {
    let cluster = Cluster::start(3, 1, "write-timeout-ms = 2000\ndial-timeout-ms = 500\n");
    cluster.query_all("CREATE DATABASE db WITH REPLICATION 2 SHARD DURATION 1h");
    // One write first, so pooled connections to node 3 exist before it hangs.
    let body = lines(0, 30, 2);
    assert_eq!(
        cluster
            .node(0)
            .write("db=db&consistency=all", body.as_bytes())
            .status,
        204
    );
    let pid = cluster.node(2).child.id() as i32;
    unsafe { libc::kill(pid, libc::SIGSTOP) };
    let started = Instant::now();
    let r = cluster
        .node(0)
        .write("db=db&consistency=all", lines(1, 30, 2).as_bytes());
    let took = started.elapsed();
    let err = r.json()["error"].as_str().unwrap_or_default().to_string();
    assert_eq!(r.status, 500, "{}", r.text());
    assert!(
        err.starts_with("timeout: consistency all needs 2 of 2 owners, 1 acknowledged"),
        "{err}"
    );
    assert!(
        took < Duration::from_secs(10),
        "the write must end near write-timeout"
    );
    // A write at consistency one returns as soon as one owner answered.
    let r = cluster
        .node(1)
        .write("db=db&consistency=one", lines(2, 30, 2).as_bytes());
    assert_eq!(r.status, 204, "{}", r.text());
    unsafe { libc::kill(pid, libc::SIGCONT) };
    // The node comes back: once the hinted-handoff backlog drained, writes at `all`
    // succeed again (before that they queue behind it, and do not count as its ack).
    for i in 0..2 {
        common::eventually(WAIT, "the hinted-handoff queues drain", || {
            hh_queue_bytes(cluster.node(i)) == 0
        });
    }
    let r = cluster
        .node(0)
        .write("db=db&consistency=all", lines(3, 30, 2).as_bytes());
    assert_eq!(r.status, 204, "{}", r.text());
}

#[test]
fn garbage_and_wrong_secrets_are_dropped_and_the_cluster_keeps_serving() {
    let cluster = Cluster::start(3, 1, "");
    cluster.query_all("CREATE DATABASE db WITH REPLICATION 2 SHARD DURATION 1h");
    let port = cluster.cluster_ports[0];
    // Garbage: an invalid frame type.
    let mut garbage = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    garbage
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    garbage.write_all(&[0xEE; 64]).unwrap();
    let mut buf = Vec::new();
    let _ = garbage.read_to_end(&mut buf); // closed by the node (maybe after an Error frame)
                                           // A wrong secret: a well-formed Hello, then a bogus proof.
    let mut liar = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    liar.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut hello = Vec::new();
    let payload = [
        &1u16.to_be_bytes()[..],
        &9u64.to_be_bytes(),
        &1u16.to_be_bytes(),
    ]
    .concat();
    frame(&mut hello, 0x01, &payload);
    liar.write_all(&hello).unwrap();
    let mut challenge = vec![0u8; 18 + 2 + 8 + 2 + 32];
    liar.read_exact(&mut challenge).unwrap();
    assert_eq!(challenge[0], 0x02, "a Challenge frame");
    let mut proof = Vec::new();
    frame(&mut proof, 0x03, &[7u8; 32]);
    liar.write_all(&proof).unwrap();
    let mut rest = Vec::new();
    let _ = liar.read_to_end(&mut rest);
    assert!(
        rest.is_empty() || rest[0] == 0x7f,
        "only an Error frame before the close"
    );
    // The cluster still writes at consistency all.
    let r = cluster
        .node(0)
        .write("db=db&consistency=all", lines(0, 10, 2).as_bytes());
    assert_eq!(r.status, 204, "{}", r.text());
    let vars = cluster
        .node(0)
        .request("GET", "/debug/vars", &[], b"")
        .json();
    assert!(vars["cluster"]["rejectedConnections"].as_u64().is_some());
}

/// Encodes a frame as DESIGN section 4 fixes it (big-endian, crc32c of the payload).
fn frame(out: &mut Vec<u8>, kind: u8, payload: &[u8]) {
    out.push(kind);
    out.push(0);
    out.extend_from_slice(&0u64.to_be_bytes());
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(&crc32c::crc32c(payload).to_be_bytes());
    out.extend_from_slice(payload);
}

fn databases(node: &common::Node) -> Vec<String> {
    let r = node.query("SHOW DATABASES").json();
    r["results"][0]["series"][0]["values"]
        .as_array()
        .map(|v| {
            v.iter()
                .map(|x| x[0].as_str().unwrap().to_string())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn ddl_on_one_node_reaches_all_and_a_down_node_converges() {
    let mut cluster = Cluster::start(3, 1, "meta-sync-interval-ms = 300\n");
    let r = cluster.node(0).query(
        "CREATE DATABASE shared WITH REPLICATION 2 SHARD DURATION 1h; CREATE DATABASE doomed",
    );
    assert_eq!(r.status, 200);
    for i in 0..3 {
        common::eventually(WAIT, "CREATE DATABASE on every node", || {
            databases(cluster.node(i)) == vec!["doomed", "shared"]
        });
    }
    // A write through another node right away works (no 404 race).
    let r = cluster
        .node(1)
        .write("db=shared&consistency=all", lines(0, 10, 1).as_bytes());
    assert_eq!(r.status, 204, "{}", r.text());
    // Node 3 is down while node 2 changes the schema.
    cluster.node_mut(2).kill();
    cluster.nodes[2] = None;
    let r = cluster.node(1).query("DROP DATABASE doomed; CREATE DATABASE later; CREATE RETENTION POLICY week ON shared DURATION 7d REPLICATION 2");
    assert_eq!(r.status, 200, "{}", r.text());
    common::eventually(WAIT, "the DDL on node 1", || {
        databases(cluster.node(0)) == vec!["later", "shared"]
    });
    cluster.start_node(2);
    common::eventually(WAIT, "node 3 converging after restart", || {
        databases(cluster.node(2)) == vec!["later", "shared"]
    });
    let rps = cluster
        .node(2)
        .query("SHOW RETENTION POLICIES ON shared")
        .json();
    assert_eq!(
        rps["results"][0]["series"][0]["values"][1][0], "week",
        "{rps}"
    );
}

#[test]
fn a_write_right_after_ddl_elsewhere_is_not_a_404() {
    let cluster = Cluster::start(3, 1, "meta-sync-interval-ms = 600000\n");
    // The periodic sync is far away: only the DDL push or the write's own sync round
    // can bring the database to the other nodes in time.
    let r = cluster
        .node(0)
        .query("CREATE DATABASE fresh WITH REPLICATION 2");
    assert_eq!(r.status, 200);
    for i in [1, 2] {
        let r = cluster
            .node(i)
            .write("db=fresh&consistency=all", lines(i, 5, 1).as_bytes());
        assert_eq!(r.status, 204, "node {}: {}", i + 1, r.text());
    }
    let r = cluster.node(1).write("db=never-created", b"m v=1\n");
    assert_eq!(r.status, 404);
    assert_eq!(r.json()["error"], "database not found: \"never-created\"");
}

/// Queued hinted-handoff bytes on a one-core node.
fn hh_queue_bytes(node: &common::Node) -> u64 {
    hh_progress(node).0
}

const FAST_HH: &str = "write-timeout-ms = 2000\ndial-timeout-ms = 300\n[hinted-handoff]\nretry-interval-ms = 100\nretry-max-interval-ms = 300\n";

#[test]
fn a_node_that_was_down_gets_every_missed_write_by_hinted_handoff() {
    let mut cluster = Cluster::start(3, 1, FAST_HH);
    cluster.query_all("CREATE DATABASE db WITH REPLICATION 2 SHARD DURATION 1h");
    cluster.node_mut(2).kill();
    cluster.nodes[2] = None;
    // 20k points at consistency one through A and B while C is down.
    for writer in 0..2 {
        for chunk in 0..5 {
            let r = cluster.node(writer).write(
                "db=db&consistency=one",
                lines(writer * 10 + chunk, 1000, 2).as_bytes(),
            );
            assert_eq!(r.status, 204, "{}", r.text());
        }
    }
    // consistency=one answers before the write to C failed and was queued.
    common::eventually(WAIT, "writes for C queued", || {
        hh_queue_bytes(cluster.node(0)) + hh_queue_bytes(cluster.node(1)) > 0
    });
    // `shardcore hh status` shows node 3's queue on both nodes.
    for i in 0..2 {
        let out = std::process::Command::new(common::BIN)
            .args(["hh", "status", "--host", &cluster.node(i).addr.to_string()])
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        let text = String::from_utf8_lossy(&out.stdout);
        let row: Vec<&str> = text
            .lines()
            .find(|l| l.split('\t').nth(1) == Some("3"))
            .unwrap_or_else(|| panic!("no queue for node 3:\n{text}"))
            .split('\t')
            .collect();
        assert!(row[2].parse::<u64>().unwrap() > 0, "{text}");
    }
    cluster.start_node(2);
    for i in 0..2 {
        common::eventually(WAIT, "the queues drain", || {
            hh_queue_bytes(cluster.node(i)) == 0
        });
    }
    let held = holders(&cluster, "db");
    assert_eq!(held.len(), 2 * 5 * 1000 * 2);
    for ((series, ts), nodes) in &held {
        assert_eq!(
            nodes,
            &expected_owners("db", 2, series, *ts),
            "{series} at {ts}"
        );
    }
    // Each point once: C's dump has no duplicates (last write wins per series/time).
    let on_c = cluster.node(2).dump("db", "");
    let distinct: BTreeSet<_> = on_c.iter().map(|p| (p.0.clone(), p.2)).collect();
    assert_eq!(distinct.len(), on_c.len());
}

#[test]
fn a_replay_never_overwrites_a_newer_value_with_an_older_one() {
    let mut cluster = Cluster::start(3, 1, FAST_HH);
    cluster.query_all("CREATE DATABASE db WITH REPLICATION 3 SHARD DURATION 1h");
    let point = |v: i64| format!("ord,k=a v={v} {BASE_NS}\n");
    assert_eq!(
        cluster
            .node(0)
            .write("db=db&consistency=all", point(1).as_bytes())
            .status,
        204
    );
    cluster.node_mut(2).kill();
    cluster.nodes[2] = None;
    assert_eq!(
        cluster
            .node(0)
            .write("db=db&consistency=one", point(2).as_bytes())
            .status,
        204
    );
    // consistency=one answers before the write to C failed and was queued.
    common::eventually(WAIT, "v2 queued for C", || {
        hh_queue_bytes(cluster.node(0)) > 0
    });
    cluster.start_node(2);
    common::eventually(WAIT, "the queue drains", || {
        hh_queue_bytes(cluster.node(0)) == 0
    });
    let on_c = cluster.node(2).dump("db", "&measurement=ord");
    assert_eq!(on_c.len(), 1);
    assert_eq!(
        on_c[0].3.as_f64(),
        Some(2.0),
        "node 3 ended with the old value"
    );
}

/// (queued bytes, delivered records) of a one-core node's queues.
fn hh_progress(node: &common::Node) -> (u64, u64) {
    let vars = node.request("GET", "/debug/vars", &[], b"").json();
    let queues = vars["hintedHandoff"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    (
        queues
            .iter()
            .map(|q| q["queueBytes"].as_u64().unwrap())
            .sum(),
        queues
            .iter()
            .map(|q| q["delivered"].as_u64().unwrap())
            .sum(),
    )
}

#[test]
fn sigkill_during_replay_loses_and_skips_nothing() {
    // A slow replay (64 KiB/s) so node 1 can be killed in the middle of it.
    let slow = format!("{FAST_HH}retry-rate-limit-bytes-per-second = 65536\n");
    let mut cluster = Cluster::start(3, 1, &slow);
    cluster.query_all("CREATE DATABASE db WITH REPLICATION 2 SHARD DURATION 1h");
    cluster.node_mut(2).kill();
    cluster.nodes[2] = None;
    for chunk in 0..12 {
        let r = cluster
            .node(0)
            .write("db=db&consistency=one", lines(chunk, 200, 1).as_bytes());
        assert_eq!(r.status, 204, "{}", r.text());
    }
    common::eventually(WAIT, "writes for node 3 queued", || {
        hh_progress(cluster.node(0)).0 > 0
    });
    cluster.start_node(2);
    common::eventually(WAIT, "replay under way", || {
        let (queued, delivered) = hh_progress(cluster.node(0));
        delivered > 0 && queued > 0
    });
    cluster.node_mut(0).kill();
    cluster.start_node(0);
    common::eventually(WAIT, "the queue drains after the restart", || {
        hh_progress(cluster.node(0)).0 == 0
    });
    let held = holders(&cluster, "db");
    assert_eq!(held.len(), 12 * 200);
    for ((series, ts), nodes) in &held {
        assert_eq!(
            nodes,
            &expected_owners("db", 2, series, *ts),
            "{series} at {ts}"
        );
    }
    let on_c = cluster.node(2).dump("db", "");
    let distinct: BTreeSet<_> = on_c.iter().map(|p| (p.0.clone(), p.2)).collect();
    assert_eq!(distinct.len(), on_c.len(), "a point present twice");
}

#[test]
fn a_full_queue_answers_by_consistency_level_and_breaks_nothing_else() {
    let small = format!("{FAST_HH}max-size-bytes = 65536\nsegment-size-bytes = 65536\n");
    let mut cluster = Cluster::start(3, 1, &small);
    cluster.query_all("CREATE DATABASE db WITH REPLICATION 2 SHARD DURATION 1h");
    cluster.node_mut(2).kill();
    cluster.nodes[2] = None;
    // Fill node 1's queue for node 3 (each batch ~20 KiB for node 3's shards).
    let mut refused = None;
    for chunk in 0..40 {
        let r = cluster
            .node(0)
            .write("db=db&consistency=any", lines(chunk, 200, 1).as_bytes());
        if r.status != 204 {
            refused = Some(r);
            break;
        }
    }
    let r = refused.expect("the queue never filled");
    assert_eq!(r.status, 500);
    let err = r.json()["error"].as_str().unwrap().to_string();
    assert!(err.starts_with("partial write: consistency any"), "{err}");
    assert!(err.contains("hinted handoff refused it"), "{err}");
    // consistency one still succeeds (node 1 or 2 takes each batch), and other nodes
    // keep serving.
    let r = cluster
        .node(0)
        .write("db=db&consistency=one", lines(99, 200, 1).as_bytes());
    assert_eq!(r.status, 204, "{}", r.text());
    let r = cluster
        .node(1)
        .write("db=db&consistency=one", lines(98, 200, 1).as_bytes());
    assert_eq!(r.status, 204, "{}", r.text());
}

/// The `cluster.shardWriter` counters of a one-core node.
fn shard_writer_vars(node: &common::Node) -> serde_json::Value {
    node.request("GET", "/debug/vars", &[], b"").json()["cluster"]["shardWriter"].clone()
}

#[test]
fn many_concurrent_writes_pipeline_on_one_connection_per_peer_and_all_arrive() {
    let cluster = Cluster::start(3, 1, "pool-max-connections = 1\n");
    cluster.query_all("CREATE DATABASE db WITH REPLICATION 2 SHARD DURATION 1h");
    let node = cluster.node(0);
    // One write first: its connections (one per peer) are all the load below may use.
    let r = node.write("db=db&consistency=all", lines(99, 50, 2).as_bytes());
    assert_eq!(r.status, 204, "{}", r.text());
    let dials_before = shard_writer_vars(node)["dials"].as_u64().unwrap();
    // 16 clients x 4 writes at consistency all: every batch must reach both owners.
    std::thread::scope(|scope| {
        for client in 0..16 {
            scope.spawn(move || {
                for round in 0..4 {
                    let body = lines(client * 4 + round, 50, 2);
                    let r = node.write("db=db&consistency=all", body.as_bytes());
                    assert_eq!(r.status, 204, "{}", r.text());
                }
            });
        }
    });
    let held = holders(&cluster, "db");
    assert_eq!(held.len(), 65 * 50 * 2);
    for ((series, ts), nodes) in &held {
        assert_eq!(
            nodes,
            &expected_owners("db", 2, series, *ts),
            "{series} at {ts}"
        );
    }
    let vars = shard_writer_vars(node);
    assert_eq!(
        vars["dials"], dials_before,
        "one connection per peer: {vars}"
    );
    assert_eq!(vars["connectionsFailed"], 0, "{vars}");
    assert_eq!(vars["writeFailures"], 0, "{vars}");
    assert!(vars["peakInFlight"].as_u64().unwrap() > 1, "{vars}");
    assert_eq!(vars["inFlight"], 0, "{vars}");
}

/// Series `m,s=s{i},writer=w{writer}` (hour 0) whose only owner (rf 1) is `owner`.
fn series_owned_by(owner: u64, writer: usize, count: usize) -> Vec<String> {
    (0..)
        .map(|i| format!("m,s=s{i},writer=w{writer}"))
        .filter(|key| expected_owners("db", 1, key, BASE_NS) == BTreeSet::from([owner]))
        .take(count)
        .collect()
}

fn body_of(series: &[String], value: usize) -> String {
    series
        .iter()
        .map(|key| format!("{key} v={value} {BASE_NS}\n"))
        .collect()
}

#[test]
fn a_hung_peer_times_out_its_pipelined_requests_while_the_other_peer_writes_on() {
    let mut cluster = Cluster::start(
        3,
        1,
        "pool-max-connections = 1\nwrite-timeout-ms = 2000\ndial-timeout-ms = 500\n",
    );
    cluster.query_all("CREATE DATABASE db WITH REPLICATION 1 SHARD DURATION 1h");
    let to_node2 = series_owned_by(2, 0, 20);
    let to_node3: Vec<Vec<String>> = (1..=4).map(|w| series_owned_by(3, w, 20)).collect();
    // Connections to both peers exist before node 3 hangs.
    for series in [&to_node2, &to_node3[0]] {
        let r = cluster
            .node(0)
            .write("db=db&consistency=all", body_of(series, 0).as_bytes());
        assert_eq!(r.status, 204, "{}", r.text());
    }
    let pid = cluster.node(2).child.id() as i32;
    unsafe { libc::kill(pid, libc::SIGSTOP) };
    let node = cluster.node(0);
    std::thread::scope(|scope| {
        let hung: Vec<_> = to_node3
            .iter()
            .map(|series| {
                scope.spawn(move || {
                    let started = Instant::now();
                    let r = node.write("db=db&consistency=one", body_of(series, 1).as_bytes());
                    (r, started.elapsed())
                })
            })
            .collect();
        // Node 2's writes go on meanwhile, on their own connection.
        std::thread::sleep(Duration::from_millis(300));
        for round in 1..=5 {
            let started = Instant::now();
            let r = node.write(
                "db=db&consistency=one",
                body_of(&to_node2, round).as_bytes(),
            );
            assert_eq!(r.status, 204, "{}", r.text());
            assert!(
                started.elapsed() < Duration::from_secs(1),
                "{:?}",
                started.elapsed()
            );
        }
        for handle in hung {
            let (r, took) = handle.join().unwrap();
            assert_eq!(r.status, 500, "{}", r.text());
            let err = r.json()["error"].as_str().unwrap().to_string();
            assert!(
                err.starts_with("timeout: consistency one needs 1 of 1 owners, 0 acknowledged"),
                "{err}"
            );
            // All were in flight on the one connection; they end with the first timeout.
            assert!(took < Duration::from_millis(3_500), "{took:?}");
        }
    });
    let vars = shard_writer_vars(node);
    assert!(vars["connectionsFailed"].as_u64().unwrap() >= 1, "{vars}");
    unsafe { libc::kill(pid, libc::SIGCONT) };
    common::eventually(WAIT, "the hinted-handoff queue drains", || {
        hh_queue_bytes(cluster.node(0)) == 0
    });
    let on_2: BTreeSet<String> = cluster
        .node(1)
        .dump("db", "")
        .into_iter()
        .map(|p| p.0)
        .collect();
    assert_eq!(on_2, to_node2.iter().cloned().collect());
    let on_3: BTreeSet<String> = cluster
        .node_mut(2)
        .dump("db", "")
        .into_iter()
        .map(|p| p.0)
        .collect();
    assert_eq!(on_3, to_node3.iter().flatten().cloned().collect());
}

#[test]
fn pipelined_writes_of_one_shard_are_applied_in_the_order_sent() {
    // The client may have every write in flight, so it never waits for a slot and
    // sends in spawn order.
    writes_of_one_shard_apply_in_send_order(1, 256, false);
}

#[test]
fn writes_of_one_shard_share_a_lane_across_a_pool_of_connections() {
    // Three connections allowed and only 4 requests in flight on each: without the
    // shard lane, writes spread over three connections (three dials) and nothing orders
    // them at the peer (on loopback they still mostly arrive in order, so the dial
    // count is what this test pins); with it they all queue for the one lane.
    writes_of_one_shard_apply_in_send_order(3, 4, true);
}

fn writes_of_one_shard_apply_in_send_order(
    pool_max_connections: usize,
    max_inflight: usize,
    expect_waits: bool,
) {
    use shardcore::cluster::shard_writer::{RemoteBatch, ShardWriter};
    use shardcore::config::{ClusterConfig, Peer};
    use shardcore::net::wire::WriteShardStatus;
    use shardcore::tsdb::shard::ShardMeta;
    // The race this guards against: the WAL flusher waits 1 ms (fsync delay) before it
    // takes the buffer; a request arriving then finds the buffer over its (tiny) bound
    // and waits for room, while one arriving during the sync that follows finds it
    // empty and could append first. Requests 700 µs apart hit both windows; without
    // the service's per-shard order this test fails in most runs.
    let cluster = Cluster::start(
        2,
        1,
        "max-inflight-requests-per-connection = 256\n[storage]\nwal-max-pending-bytes = 4096\nwal-fsync-delay-ms = 1\n",
    );
    cluster.query_all("CREATE DATABASE ord WITH REPLICATION 1 SHARD DURATION 1h");
    let membership = Membership::new(vec![1, 2]);
    let group = placement::place_group("ord", "autogen", BASE_NS, HOUR_NS, 1, &membership);
    let shard = group.shards.iter().find(|s| s.owners == [2]).unwrap();
    let meta = ShardMeta {
        id: shard.id,
        database: "ord".into(),
        retention_policy: "autogen".into(),
        start_ns: group.start_ns,
        end_ns: group.end_ns,
    };
    // Each batch (~50 KB) is over the WAL bound.
    let padding: String = (0..2000)
        .map(|i| format!("pad,k=p{i} v=1 {BASE_NS}\n"))
        .collect();
    let peer = Peer {
        node_id: 2,
        address: format!("127.0.0.1:{}", cluster.cluster_ports[1])
            .parse()
            .unwrap(),
    };
    let config = ClusterConfig {
        pool_max_connections,
        max_inflight_requests_per_connection: max_inflight,
        ..ClusterConfig::default()
    };
    // Write i sets key i % KEYS to i: each key must end with its last write's value.
    const WRITES: usize = 200;
    const KEYS: usize = 20;
    glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
        .make()
        .unwrap()
        .run(async move {
            let writer = std::rc::Rc::new(ShardWriter::new(
                1,
                1,
                b"test-secret".to_vec(),
                config,
                &[peer],
            ));
            let warm_up = RemoteBatch {
                shard: meta.clone(),
                partition: 0,
                precision: 0,
                default_time_ns: 0,
                lines: vec![format!("ord,k=k0 v=-1 {BASE_NS}\n").into()],
            };
            writer.write(2, &warm_up).await.expect("warm-up write");
            let tasks: Vec<_> = (0..WRITES)
                .map(|i| {
                    let batch = RemoteBatch {
                        shard: meta.clone(),
                        partition: 0,
                        precision: 0,
                        default_time_ns: 0,
                        lines: vec![
                            padding.clone().into(),
                            format!("ord,k=k{} v={i} {BASE_NS}\n", i % KEYS).into(),
                        ],
                    };
                    let writer = writer.clone();
                    // Sent a little apart, so that frames arrive while earlier requests
                    // wait for room in the WAL.
                    let send_at = Duration::from_micros(700 * i as u64);
                    glommio::spawn_local(async move {
                        glommio::timer::sleep(send_at).await;
                        writer.write(2, &batch).await
                    })
                })
                .collect();
            for task in tasks {
                let status = task.await.expect("remote write");
                assert!(matches!(status, WriteShardStatus::Ok { .. }), "{status:?}");
            }
            let stats = writer.stats();
            assert!(stats.peak_in_flight > 1, "{stats:?}");
            assert_eq!(stats.dials, 1, "one lane, one connection: {stats:?}");
            assert_eq!(stats.pool_waits > 0, expect_waits, "{stats:?}");
        });
    let points = cluster.node(1).dump("ord", "&measurement=ord");
    assert_eq!(points.len(), KEYS);
    for (series, _, _, value) in points {
        let key: usize = series.rsplit("=k").next().unwrap().parse().unwrap();
        let last = WRITES - KEYS + key;
        assert_eq!(
            value,
            serde_json::json!(last as f64),
            "{series}: an older write was applied last"
        );
    }
}
