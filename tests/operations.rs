//! Operations statements on real node processes: SHOW QUERIES and KILL QUERY across a
//! cluster (a query hung on a stopped peer, listed and killed from another node), DROP
//! SHARD on every owner, EXPLAIN and EXPLAIN ANALYZE, SHOW DIAGNOSTICS, and the
//! `[monitor]` store writing statistics into `_internal`.

mod common;

use common::{Cluster, Node};
use serde_json::Value;
use std::time::{Duration, Instant};

const HOUR_NS: i64 = 3_600_000_000_000;
const BASE_NS: i64 = 1_600_000_000_000_000_000;

fn load(node: &Node, db: &str, hours: i64) {
    let mut body = String::new();
    for h in 0..hours {
        for s in 0..12 {
            body.push_str(&format!(
                "m,host=h{s:02} v={}i {}\n",
                h * 100 + s,
                BASE_NS + h * HOUR_NS + s
            ));
        }
    }
    let r = node.write(&format!("db={db}&consistency=all"), body.as_bytes());
    assert_eq!(r.status, 204, "{}", r.text());
}

fn ok(r: &common::Response) -> Value {
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    assert!(v["results"][0].get("error").is_none(), "{v}");
    v
}

#[test]
fn a_query_hung_on_a_stopped_peer_is_listed_and_killed_from_another_node() {
    let cluster = Cluster::start(3, 1, "dial-timeout-ms = 15000\nwrite-timeout-ms = 20000\n");
    cluster.query_all("CREATE DATABASE ops WITH REPLICATION 1 SHARD DURATION 1h");
    load(cluster.node(0), "ops", 6);
    let pid = cluster.node(1).child.id() as i32;
    // SAFETY: signalling a child process this test started.
    unsafe { libc::kill(pid, libc::SIGSTOP) };
    let addr = cluster.node(0).addr;
    let started = Instant::now();
    let hung = std::thread::spawn(move || {
        let q = common::urlencode("SELECT count(v) FROM m");
        let r = common::http(addr, "GET", &format!("/query?db=ops&q={q}"), &[], b"").unwrap();
        (r.json(), started.elapsed())
    });
    // Node 3 lists it (asking every node; the stopped one is skipped) ...
    let mut qid = None;
    common::eventually(Duration::from_secs(10), "the hung query listed", || {
        let v = ok(&cluster.node(2).query("SHOW QUERIES"));
        let s = &v["results"][0]["series"][0];
        assert_eq!(
            s["columns"],
            serde_json::json!(["qid", "query", "database", "duration", "status"])
        );
        qid = s["values"].as_array().unwrap().iter().find_map(|row| {
            (row[1] == "SELECT count(v) FROM m" && row[2] == "ops" && row[4] == "running")
                .then(|| row[0].as_u64().unwrap())
        });
        qid.is_some()
    });
    let qid = qid.unwrap();
    // ... and kills it; the client gets InfluxDB's error at once.
    ok(&cluster.node(2).query(&format!("KILL QUERY {qid}")));
    let (answer, took) = hung.join().unwrap();
    // SAFETY: as above.
    unsafe { libc::kill(pid, libc::SIGCONT) };
    assert_eq!(
        answer["results"][0]["error"], "query interrupted",
        "{answer}"
    );
    assert!(took < Duration::from_secs(12), "{took:?}");
    // Gone from the list; killing it again is InfluxDB's error.
    let v = ok(&cluster.node(0).query("SHOW QUERIES"));
    assert!(!v.to_string().contains("count(v)"), "{v}");
    let v = cluster.node(0).query(&format!("KILL QUERY {qid}")).json();
    assert_eq!(
        v["results"][0]["error"],
        format!("no such query id: {qid}"),
        "{v}"
    );
    let v = cluster.node(0).query("KILL QUERY 12345").json();
    assert_eq!(v["results"][0]["error"], "no such query id: 12345", "{v}");
}

#[test]
fn drop_shard_removes_it_on_every_owner() {
    let cluster = Cluster::start(3, 1, "write-timeout-ms = 5000\n");
    cluster.query_all("CREATE DATABASE ds WITH REPLICATION 2 SHARD DURATION 1h");
    load(cluster.node(0), "ds", 3);
    let shards = ok(&cluster.node(0).query("SHOW SHARDS"));
    let ds = shards["results"][0]["series"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "ds")
        .unwrap()
        .clone();
    let rows = ds["values"].as_array().unwrap();
    // The first group's shards.
    let first_group = rows[0][3].clone();
    let doomed: Vec<u64> = rows
        .iter()
        .filter(|r| r[3] == first_group)
        .map(|r| r[0].as_u64().unwrap())
        .collect();
    let count = |i: usize| -> i64 {
        cluster.node(i).answer("ds", "SELECT count(v) FROM m")["results"][0]["series"][0]["values"]
            [0][1]
            .as_i64()
            .unwrap_or(0)
    };
    assert_eq!(count(1), 36);
    for id in &doomed {
        ok(&cluster.node(1).query(&format!("DROP SHARD {id}")));
    }
    for i in 0..3 {
        assert_eq!(count(i), 24, "node {}", i + 1);
        for (series, _, ts, _) in cluster.node(i).dump("ds", "") {
            assert!(ts >= BASE_NS + HOUR_NS, "node {}: {series} at {ts}", i + 1);
        }
    }
    let v = ok(&cluster.node(2).query("SHOW SHARDS"));
    for id in &doomed {
        assert!(!v.to_string().contains(&format!("[{id},")), "{v}");
    }
}

#[test]
fn explain_diagnostics_and_the_internal_store() {
    let dir = common::temp_dir();
    let data = dir.path().join("data");
    let node = Node::start_with_config(
        &data,
        "[monitor]\nstore-enabled = true\nstore-interval-ms = 300\n",
    );
    node.create_database("ex");
    load(&node, "ex", 2);
    let plan = |q: &str| -> Vec<String> {
        let v = ok(&node.query_on("ex", q));
        v["results"][0]["series"][0]["values"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r[0].as_str().unwrap().to_string())
            .collect()
    };
    let lines = plan("EXPLAIN SELECT mean(v) FROM m WHERE host = 'h01' GROUP BY time(1h)");
    let text = lines.join("\n");
    assert!(text.contains("EXPRESSION 1: mean(v)"), "{text}");
    assert!(text.contains("SCAN ex.autogen.m"), "{text}");
    assert!(
        text.contains("AGGREGATION: partial aggregates on the shards"),
        "{text}"
    );
    assert!(
        text.contains("TAG CONDITION ON THE SHARDS: host = 'h01'"),
        "{text}"
    );
    assert!(text.contains("NUMBER OF SHARDS: 1"), "{text}");
    assert!(text.contains("NUMBER OF SERIES: 1"), "{text}");
    assert!(!text.contains("TOTAL TIME"), "{text}");
    let lines = plan("EXPLAIN ANALYZE SELECT v FROM m");
    let text = lines.join("\n");
    assert!(
        text.contains("AGGREGATION: raw points to the coordinator"),
        "{text}"
    );
    assert!(text.contains("VALUES READ: 24"), "{text}");
    assert!(text.contains("NUMBER OF SERIES: 12"), "{text}");
    assert!(text.contains("RESULT: 1 series, 24 rows"), "{text}");
    assert!(text.contains("TOTAL TIME: "), "{text}");
    let v = ok(&node.query_on("ex", "EXPLAIN ANALYZE SELECT v FROM m"));
    assert_eq!(
        v["results"][0]["series"][0]["columns"],
        serde_json::json!(["EXPLAIN ANALYZE"])
    );
    // SHOW DIAGNOSTICS: InfluxDB's groups by name, one row each.
    let v = ok(&node.query("SHOW DIAGNOSTICS"));
    let names: Vec<&str> = v["results"][0]["series"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    for want in [
        "build",
        "config-cqs",
        "config-httpd",
        "network",
        "runtime",
        "system",
    ] {
        assert!(names.contains(&want), "{names:?}");
    }
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted);
    let v = ok(&node.query("SHOW DIAGNOSTICS FOR 'system'"));
    let s = &v["results"][0]["series"];
    assert_eq!(s.as_array().unwrap().len(), 1, "{v}");
    assert_eq!(
        s[0]["columns"],
        serde_json::json!(["PID", "currentTime", "started", "uptime"])
    );
    assert_eq!(s[0]["values"][0][0], node.child.id());
    // The monitor store: _internal.monitor (7 days) with this node's statistics.
    common::eventually(Duration::from_secs(20), "statistics in _internal", || {
        let v = node.answer("_internal", "SELECT last(queryReq) FROM httpd");
        v["results"][0]["series"][0]["values"][0][1]
            .as_i64()
            .is_some_and(|n| n > 0)
    });
    let v = ok(&node.query("SHOW RETENTION POLICIES ON _internal"));
    assert_eq!(
        v["results"][0]["series"][0]["values"][0],
        serde_json::json!(["monitor", "168h0m0s", "24h0m0s", 1, true])
    );
    let v = node.answer("_internal", "SHOW TAG KEYS FROM cq");
    let keys = v.to_string();
    assert!(keys.contains("hostname") && keys.contains("nodeID"), "{v}");
    let v = node.answer("_internal", "SHOW MEASUREMENTS");
    for m in ["cq", "httpd", "queryExecutor", "write"] {
        assert!(v.to_string().contains(&format!("[\"{m}\"]")), "{m}: {v}");
    }
}
