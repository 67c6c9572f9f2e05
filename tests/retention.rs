//! Retention enforcement with real node processes: shard groups that ended before now
//! minus their policy's duration are dropped on every core (files and all), within a
//! check interval, and stay gone across a restart; newer groups are kept.

mod common;

use common::Node;
use std::time::Duration;

/// How long `eventually` waits for what a test expects.
const WAIT: Duration = Duration::from_secs(20);

const HOUR_NS: i64 = 3_600_000_000_000;

fn retention_counter(node: &Node, name: &str) -> u64 {
    let vars = node.request("GET", "/debug/vars", &[], b"").json();
    vars["retention"]["values"][name].as_u64().unwrap_or(0)
}

#[test]
fn expired_shard_groups_are_dropped_on_every_core_and_stay_gone() {
    let dir = common::temp_dir();
    let data = dir.path().join("data");
    let config = "[retention]\ncheck-interval-ms = 200\n";
    let mut node = Node::start_with_config(&data, config);
    assert_eq!(
        node.query("CREATE DATABASE db WITH SHARD DURATION 1h")
            .status,
        200
    );
    // Old data (three and four hours ago) and recent data (ten minutes ago), 200
    // series each, so both cores hold partitions of every group.
    let now = shardcore::base::time::now_ns();
    let mut body = String::new();
    for (age, tag) in [
        (4 * HOUR_NS, "old"),
        (3 * HOUR_NS, "old"),
        (HOUR_NS / 6, "new"),
    ] {
        for h in 0..200 {
            body.push_str(&format!("m,age={tag},h=h{h} v=1 {}\n", now - age));
        }
    }
    let r = node.write("db=db", body.as_bytes());
    assert_eq!(r.status, 204, "{}", r.text());
    let before = node.debug_shards();
    assert!(before.len() >= 6, "three groups on two cores: {before:?}");
    // Nothing has expired under an infinite policy.
    std::thread::sleep(Duration::from_millis(600));
    assert_eq!(node.debug_shards().len(), before.len());
    // Keep two hours: the groups that ended more than two hours ago go.
    let r = node.query("ALTER RETENTION POLICY autogen ON db DURATION 2h");
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(
        r.json()["results"][0].get("error").is_none(),
        "{}",
        r.text()
    );
    common::eventually(WAIT, "the expired groups are dropped", || {
        node.debug_shards()
            .iter()
            .all(|e| e["end_ns"].as_i64().unwrap() >= now - 2 * HOUR_NS)
    });
    let left = node.debug_shards();
    assert!(!left.is_empty());
    let points = node.dump("db", "");
    assert_eq!(points.len(), 200);
    assert!(points.iter().all(|p| p.0.contains("age=new")), "{points:?}");
    assert!(retention_counter(&node, "partitionsDropped") >= 4);
    assert!(retention_counter(&node, "bytesDropped") > 0);
    // Their directories are gone from disk, and a restart does not bring them back.
    let on_disk = std::fs::read_dir(data.join("shards")).unwrap().count();
    let ids: std::collections::BTreeSet<u64> =
        left.iter().map(|e| e["id"].as_u64().unwrap()).collect();
    assert_eq!(on_disk, ids.len());
    assert!(node.terminate().success());
    let node = Node::start_with_config(&data, config);
    assert_eq!(node.dump("db", "").len(), 200);
    let r = node.query_on("db", "SELECT count(v) FROM m");
    assert!(r.text().contains("200"), "{}", r.text());
}
