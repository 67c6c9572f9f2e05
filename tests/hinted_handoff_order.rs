//! The reorder race of issue 4, made deterministic with the destination's fault seam
//! (`SHARDCORE_FAULT_REMOTE_WRITE`): a direct remote write W1 fails (retryable) after a
//! later write W2 of the same shard to the same owner is already in flight, and W2 is
//! applied. W1 is queued for hinted handoff; its replay must not leave the owner with
//! W1's older value. This file is its own test binary because the seam is an
//! environment variable the node processes inherit.

mod common;

use common::Cluster;
use std::time::{Duration, Instant};

const FAST_HH: &str = "write-timeout-ms = 5000\n[hinted-handoff]\nretry-interval-ms = 100\nretry-max-interval-ms = 300\n";
const T: i64 = 1_600_000_000_000_000_000;

fn hh_queued(node: &common::Node) -> u64 {
    let vars = node.request("GET", "/debug/vars", &[], b"").json();
    vars["hintedHandoff"]
        .as_array()
        .map(|queues| {
            queues
                .iter()
                .map(|q| q["queueRecords"].as_u64().unwrap())
                .sum()
        })
        .unwrap_or(0)
}

fn value_on(node: &common::Node) -> serde_json::Value {
    let points = node.dump("db", "&measurement=m");
    assert_eq!(points.len(), 1, "{points:?}");
    points[0].3.clone()
}

#[test]
fn a_failed_older_write_never_replays_over_a_newer_one_applied_directly() {
    // Node 2 holds the first remote write carrying `fault_marker` for 600 ms (W2,
    // behind it in the shard's order on the same connection, waits), then answers it
    // Retryable; every later one goes through.
    std::env::set_var("SHARDCORE_FAULT_REMOTE_WRITE", "fault_marker,600,1");
    let cluster = Cluster::start(2, 1, FAST_HH);
    cluster.query_all("CREATE DATABASE db WITH REPLICATION 2 SHARD DURATION 1h");
    // 2 nodes, rf 2: one shard per group, on both nodes. Consistency one: node 1's own
    // copy answers the client, node 2's goes on in the background.
    let w1 = format!("m,k=a v=1 {T}\nfault_marker v=1 {T}\n");
    let r = cluster
        .node(0)
        .write("db=db&consistency=one", w1.as_bytes());
    assert_eq!(r.status, 204, "{}", r.text());
    std::thread::sleep(Duration::from_millis(150));
    let w2 = format!("m,k=a v=2 {T}\n");
    let r = cluster
        .node(0)
        .write("db=db&consistency=one", w2.as_bytes());
    assert_eq!(r.status, 204, "{}", r.text());
    assert_eq!(value_on(cluster.node(0)), serde_json::json!(2.0));
    // W1 is queued once node 2 answers it, then replayed; wait until the queue is
    // empty again (and stays so across a few replay intervals).
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut empty_since = None;
    loop {
        assert!(Instant::now() < deadline, "the queue never drained");
        if hh_queued(cluster.node(0)) == 0 {
            let since = *empty_since.get_or_insert_with(Instant::now);
            if since.elapsed() > Duration::from_millis(1500) {
                break;
            }
        } else {
            empty_since = None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let vars = cluster
        .node(0)
        .request("GET", "/debug/vars", &[], b"")
        .json();
    let delivered: u64 = vars["hintedHandoff"]
        .as_array()
        .expect("node 1 has a queue for node 2: W1 was queued")
        .iter()
        .map(|q| q["delivered"].as_u64().unwrap())
        .sum();
    assert!(delivered >= 1, "W1 was replayed: {vars}");
    assert_eq!(
        value_on(cluster.node(1)),
        serde_json::json!(2.0),
        "node 2 ended with the older write's value"
    );
}
