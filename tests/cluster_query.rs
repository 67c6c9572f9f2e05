//! Queries across a cluster of real node processes: every node answers with every
//! shard's data, each shard read from one owner; a dead owner is covered by its
//! replica, and a shard whose owners are all gone fails the query with its id.

mod common;

use common::Cluster;

const HOUR_NS: i64 = 3_600_000_000_000;
const BASE_NS: i64 = 1_600_000_000_000_000_000;
const HOURS: i64 = 6;
const SERIES: usize = 20;

fn load(cluster: &Cluster, db: &str) {
    let mut body = String::new();
    for h in 0..HOURS {
        for s in 0..SERIES {
            body.push_str(&format!(
                "m,host=h{s:02},rack=r{} v={}i {}\n",
                s % 3,
                h * 100 + s as i64,
                BASE_NS + h * HOUR_NS + s as i64
            ));
        }
    }
    let r = cluster
        .node(0)
        .write(&format!("db={db}&consistency=all"), body.as_bytes());
    assert_eq!(r.status, 204, "{}", r.text());
}

const QUERIES: &[&str] = &[
    "SELECT count(v), sum(v), min(v), max(v) FROM m",
    "SELECT sum(v) FROM m GROUP BY rack",
    "SELECT count(v) FROM m WHERE time >= 1600000000000000000 AND time < 1600021600000000000 GROUP BY time(1h)",
    "SELECT v FROM m WHERE host = 'h07'",
    "SHOW TAG VALUES WITH KEY = rack",
    "SHOW SERIES EXACT CARDINALITY",
];

fn expected_totals() -> (i64, i64) {
    let count = HOURS * SERIES as i64;
    let sum: i64 = (0..HOURS)
        .flat_map(|h| (0..SERIES as i64).map(move |s| h * 100 + s))
        .sum();
    (count, sum)
}

#[test]
fn every_node_answers_with_every_shard_and_a_dead_owner_is_covered() {
    let mut cluster = Cluster::start(3, 2, "write-timeout-ms = 3000\n");
    cluster.query_all("CREATE DATABASE q2 WITH REPLICATION 2 SHARD DURATION 1h");
    load(&cluster, "q2");
    let (count, sum) = expected_totals();
    let reference: Vec<serde_json::Value> = QUERIES
        .iter()
        .map(|q| cluster.node(0).answer("q2", q))
        .collect();
    let totals = &reference[0]["results"][0]["series"][0]["values"][0];
    assert_eq!(totals[1], count, "{totals}");
    assert_eq!(totals[2], sum, "{totals}");
    assert_eq!(
        reference[3]["results"][0]["series"][0]["values"]
            .as_array()
            .unwrap()
            .len(),
        HOURS as usize
    );
    // Each shard is read once: no node double counts replicas.
    for i in 1..3 {
        for (q, want) in QUERIES.iter().zip(&reference) {
            assert_eq!(&cluster.node(i).answer("q2", q), want, "node {} {q}", i + 1);
        }
    }
    // With one owner of every shard gone, the other replica answers.
    cluster.node_mut(2).kill();
    cluster.nodes[2] = None;
    for i in 0..2 {
        for (q, want) in QUERIES.iter().zip(&reference) {
            assert_eq!(
                &cluster.node(i).answer("q2", q),
                want,
                "node {} after node 3 died: {q}",
                i + 1
            );
        }
    }
}

#[test]
fn a_shard_whose_owners_are_all_down_fails_the_query_by_name() {
    let mut cluster = Cluster::start(3, 1, "write-timeout-ms = 2000\n");
    cluster.query_all("CREATE DATABASE q1 WITH REPLICATION 1 SHARD DURATION 1h");
    load(&cluster, "q1");
    let (count, _) = expected_totals();
    let before = cluster.node(0).answer("q1", "SELECT count(v) FROM m");
    assert_eq!(before["results"][0]["series"][0]["values"][0][1], count);
    cluster.node_mut(2).kill();
    cluster.nodes[2] = None;
    let after = cluster.node(0).answer("q1", "SELECT count(v) FROM m");
    let error = after["results"][0]["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("shard") && error.contains("no owner answered") && error.contains("node 3"),
        "{after}"
    );
}

#[test]
fn deletes_reach_every_owner() {
    let cluster = Cluster::start(3, 2, "write-timeout-ms = 3000\n");
    cluster.query_all("CREATE DATABASE qd WITH REPLICATION 2 SHARD DURATION 1h");
    load(&cluster, "qd");
    let run = |q: &str| {
        let v = cluster.node(1).answer("qd", q);
        assert!(v["results"][0].get("error").is_none(), "{q}: {v}");
    };
    run("DELETE FROM m WHERE rack = 'r0' AND time < 1600007200000000000");
    run("DROP SERIES FROM m WHERE host = 'h01'");
    // Every node's stored copy agrees: nothing of the deleted points is left anywhere.
    for i in 0..3 {
        for (series, _, ts, _) in cluster.node(i).dump("qd", "") {
            assert!(
                !series.contains("host=h01,"),
                "node {} kept {series}",
                i + 1
            );
            if series.contains("rack=r0") {
                assert!(
                    ts >= BASE_NS + 2 * HOUR_NS,
                    "node {} kept {series} at {ts}",
                    i + 1
                );
            }
        }
    }
    let r0_left = (0..SERIES).filter(|s| s % 3 == 0).count() as i64 * (HOURS - 2);
    for i in 0..3 {
        let v = cluster
            .node(i)
            .answer("qd", "SELECT count(v) FROM m WHERE rack = 'r0'");
        assert_eq!(v["results"][0]["series"][0]["values"][0][1], r0_left, "{v}");
        let v = cluster
            .node(i)
            .answer("qd", "SELECT count(v) FROM m WHERE host = 'h01'");
        assert!(v["results"][0].get("series").is_none(), "{v}");
    }
}

#[test]
fn a_hung_owner_ends_the_query_at_query_timeout() {
    let cluster = Cluster::start(
        3,
        1,
        "write-timeout-ms = 20000\n[query]\nquery-timeout-ms = 700\n",
    );
    cluster.query_all("CREATE DATABASE qt WITH REPLICATION 1 SHARD DURATION 1h");
    load(&cluster, "qt");
    let pid = cluster.node(2).child.id() as i32;
    unsafe { libc::kill(pid, libc::SIGSTOP) };
    let started = std::time::Instant::now();
    let v = cluster.node(0).answer("qt", "SELECT count(v) FROM m");
    let took = started.elapsed();
    unsafe { libc::kill(pid, libc::SIGCONT) };
    // Either the query times out waiting for node 3, or (when dialing node 3 gives up
    // first) it fails because node 3 holds the only copy of some shards; never an
    // answer without node 3's data.
    let error = v["results"][0]["error"].as_str().unwrap_or_default();
    assert!(
        error == "query-timeout limit exceeded" || error.contains("could be incomplete"),
        "{v}"
    );
    assert!(took < std::time::Duration::from_secs(10), "{took:?}");
    // The node keeps serving queries afterwards.
    let v = cluster.node(0).answer("qt", "SELECT count(v) FROM m");
    assert_eq!(
        v["results"][0]["series"][0]["values"][0][1],
        HOURS * SERIES as i64,
        "{v}"
    );
}
