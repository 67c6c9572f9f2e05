//! Remote query work ends with the query, on real 3-node clusters of one core each: a
//! statement that times out stops the scans it started on peers (the peers' own
//! deadline), a client that goes away mid-query has the coordinator send `Cancel`,
//! which a peer hears while its core is busy scanning (scans run in slices) and which
//! stops the scan, a statement that fails on `max-select-point` across nodes cancels
//! the peers' work, and a large remote answer crosses in pages read from the scan the
//! peer holds, not by scanning again.
//!
//! Its own test binary: it turns on the slow-scan fault seam (`SHARDCORE_FAULT_SLOW_SCAN`)
//! for every node it starts.

mod common;

use common::Cluster;
use std::time::{Duration, Instant};

const BASE_NS: i64 = 1_600_000_000_000_000_000;

fn write(cluster: &Cluster, db: &str, measurement: &str, series: usize, points: usize) {
    let mut body = String::new();
    for s in 0..series {
        for p in 0..points {
            body.push_str(&format!(
                "{measurement},host=h{s:03} v={}i {}\n",
                s * 1000 + p,
                BASE_NS + (p as i64) * 1_000_000_000
            ));
        }
    }
    let r = cluster
        .node(0)
        .write(&format!("db={db}&consistency=all"), body.as_bytes());
    assert_eq!(r.status, 204, "{}", r.text());
}

fn vars(node: &common::Node) -> serde_json::Value {
    node.request("GET", "/debug/vars", &[], b"").json()
}

/// A counter of `/debug/vars`: `queryExecutor` and `store` are InfluxDB-style groups
/// (`values`), `cluster` is ours (flat).
fn counter(node: &common::Node, group: &str, name: &str) -> u64 {
    let vars = vars(node);
    let group = &vars[group];
    group["values"][name]
        .as_u64()
        .or_else(|| group[name].as_u64())
        .unwrap_or_else(|| panic!("no {name} in {group}"))
}

/// A counter summed over the peers (nodes 2 and 3; node 1 coordinates).
fn peers_total(cluster: &Cluster, group: &str, name: &str) -> u64 {
    (1..3).map(|i| counter(cluster.node(i), group, name)).sum()
}

/// Waits until `f` holds (peers finish what they were doing asynchronously).
fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !f() {
        assert!(Instant::now() < deadline, "never: {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_timed_out_query_stops_the_scans_it_started_on_peers() {
    // Scans of `slow` that a peer serves take 40 ms a series: about 30 series per node,
    // 1.2 s a peer, well past the 400 ms query-timeout.
    std::env::set_var("SHARDCORE_FAULT_SLOW_SCAN", "slow,40");
    let cluster = Cluster::start(3, 1, "[query]\nquery-timeout-ms = 400\n");
    cluster.query_all("CREATE DATABASE qc WITH REPLICATION 1 SHARD DURATION 1h");
    write(&cluster, "qc", "slow", 90, 2);
    write(&cluster, "qc", "fast", 90, 2);

    let v = cluster.node(0).answer("qc", "SELECT count(v) FROM slow");
    assert_eq!(
        v["results"][0]["error"], "query-timeout limit exceeded",
        "{v}"
    );
    // The peer that was scanning stopped at the deadline instead of finishing its 1.2 s
    // scan, and it is free again: a query through it answers.
    eventually("a peer stopped its scan", || {
        peers_total(&cluster, "queryExecutor", "scansStopped") >= 1
    });
    for i in 0..3 {
        let v = cluster.node(i).answer("qc", "SELECT count(v) FROM fast");
        assert_eq!(v["results"][0]["series"][0]["values"][0][1], 180, "{v}");
    }
    // The coordinator stops nothing of its own: its local scan is not slowed.
    assert_eq!(counter(cluster.node(0), "queryExecutor", "scansStopped"), 0);
}

#[test]
fn a_large_remote_answer_comes_in_pages_of_the_held_scan() {
    let cluster = Cluster::start(3, 1, "map-page-bytes = 2048\n");
    cluster.query_all("CREATE DATABASE pg WITH REPLICATION 1 SHARD DURATION 1h");
    let (series, points) = (60usize, 20usize);
    write(&cluster, "pg", "m", series, points);
    let v = cluster
        .node(0)
        .answer("pg", "SELECT v FROM m GROUP BY host");
    let got = v["results"][0]["series"]
        .as_array()
        .expect("series")
        .clone();
    assert_eq!(got.len(), series, "{v}");
    for (s, one) in got.iter().enumerate() {
        assert_eq!(one["tags"]["host"], format!("h{s:03}"));
        let values: Vec<i64> = one["values"]
            .as_array()
            .unwrap()
            .iter()
            .map(|row| row[1].as_i64().unwrap())
            .collect();
        let want: Vec<i64> = (0..points).map(|p| (s * 1000 + p) as i64).collect();
        assert_eq!(values, want, "host h{s:03}");
    }
    let first_pages = peers_total(&cluster, "cluster", "mapReq");
    let cursor_pages = peers_total(&cluster, "cluster", "mapCursorPages");
    let rescans = peers_total(&cluster, "cluster", "mapRescans");
    assert!(
        first_pages >= 1,
        "peers were asked: {}",
        vars(cluster.node(1))
    );
    assert!(
        cursor_pages >= 2,
        "~20 series a node at ~2 KiB a page take several pages: {cursor_pages}"
    );
    assert_eq!(rescans, 0, "every page came from the held scan");
}

#[test]
fn max_select_point_reached_across_nodes_cancels_the_peers_work() {
    let cluster = Cluster::start(3, 1, "map-page-bytes = 1024\n");
    cluster.query_all("CREATE DATABASE mp WITH REPLICATION 1 SHARD DURATION 1h");
    let (series, points) = (60usize, 10usize);
    write(&cluster, "mp", "m", series, points);
    // Each node's series: the limit is above any one node's points (no node stops on
    // its own) and below the total (the coordinator, adding pages, must).
    let per_node: Vec<u64> = (0..3)
        .map(|i| counter(cluster.node(i), "store", "numSeries") * points as u64)
        .collect();
    assert_eq!(
        per_node.iter().sum::<u64>(),
        (series * points) as u64,
        "{per_node:?}"
    );
    let limit = per_node.iter().max().unwrap() + 1;
    assert!(limit < (series * points) as u64, "{per_node:?}");
    drop(cluster);

    let cluster = Cluster::start(
        3,
        1,
        &format!("map-page-bytes = 1024\n[query]\nmax-select-point = {limit}\n"),
    );
    cluster.query_all("CREATE DATABASE mp WITH REPLICATION 1 SHARD DURATION 1h");
    write(&cluster, "mp", "m", series, points);
    let v = cluster.node(0).answer("mp", "SELECT v FROM m");
    let error = v["results"][0]["error"].as_str().unwrap_or_default();
    assert!(
        error.starts_with("max-select-point limit exceeed: ("),
        "{v}"
    );
    assert!(error.ends_with(&format!("/{limit})")), "{v}");
    // The peer whose pages crossed the limit hears the coordinator gave up.
    eventually("a peer received a cancel", || {
        peers_total(&cluster, "cluster", "mapCancels") >= 1
    });
    // Under the limit, the same query answers in full.
    let v = cluster
        .node(0)
        .answer("mp", "SELECT count(v) FROM m WHERE host = 'h001'");
    assert_eq!(v["results"][0]["series"][0]["values"][0][1], points, "{v}");
}

#[test]
fn a_client_that_goes_away_cancels_the_work_it_started_on_peers() {
    use std::io::Write;
    // A generous query-timeout: only the client leaving can end the statement early.
    std::env::set_var("SHARDCORE_FAULT_SLOW_SCAN", "slow,40");
    let cluster = Cluster::start(3, 1, "[query]\nquery-timeout-ms = 60000\n");
    cluster.query_all("CREATE DATABASE gone WITH REPLICATION 1 SHARD DURATION 1h");
    write(&cluster, "gone", "slow", 90, 2);

    let mut client = std::net::TcpStream::connect(cluster.node(0).addr).unwrap();
    let q = common::urlencode("SELECT count(v) FROM slow");
    write!(
        client,
        "GET /query?db=gone&q={q} HTTP/1.1\r\nHost: x\r\n\r\n"
    )
    .unwrap();
    std::thread::sleep(Duration::from_millis(200));
    drop(client);
    // The coordinator notices the closed connection, drops the statement and tells the
    // peer it was asking, whose scan (1.2 s of work) stops.
    eventually("a peer heard the cancel and stopped", || {
        (1..3).all(|i| {
            let n = cluster.node(i);
            counter(n, "cluster", "mapCancels") == 0
                || counter(n, "queryExecutor", "scansStopped") >= 1
        }) && peers_total(&cluster, "cluster", "mapCancels") >= 1
    });
}
