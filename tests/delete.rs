//! DROP MEASUREMENT, DROP SERIES and DELETE on a real node: the data is gone from
//! queries at once, stays gone after a SIGKILL and restart (the WAL replays the delete),
//! and new writes to a deleted series come back.

mod common;

use common::{temp_dir, Node};

fn rows(node: &Node, q: &str) -> Vec<serde_json::Value> {
    let v = node.answer("d", q);
    assert!(v["results"][0].get("error").is_none(), "{q}: {v}");
    v["results"][0]["series"]
        .as_array()
        .map(|s| {
            s.iter()
                .flat_map(|x| x["values"].as_array().unwrap().clone())
                .collect()
        })
        .unwrap_or_default()
}

fn query(node: &Node, q: &str) -> common::Response {
    node.request(
        "GET",
        &format!("/query?db=d&q={}", common::urlencode(q)),
        &[],
        b"",
    )
}

fn ok(node: &Node, q: &str) {
    let r = query(node, q);
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(
        r.json()["results"][0].get("error").is_none(),
        "{q}: {}",
        r.text()
    );
}

#[test]
fn deletes_take_effect_and_survive_a_crash() {
    let dir = temp_dir();
    let mut node = Node::start(dir.path());
    node.create_database("d");
    let mut body = String::new();
    for t in 0..10i64 {
        for host in ["a", "b", "c"] {
            body.push_str(&format!("cpu,host={host} v={t} {}\n", t * 1_000_000_000));
        }
        body.push_str(&format!("mem,host=a used={t}i {}\n", t * 1_000_000_000));
        body.push_str(&format!("disk,host=a free={t}i {}\n", t * 1_000_000_000));
    }
    assert_eq!(node.write("db=d", body.as_bytes()).status, 204);
    assert_eq!(rows(&node, "SELECT count(v) FROM cpu")[0][1], 30);

    ok(&node, "DROP MEASUREMENT mem");
    ok(&node, "DROP SERIES FROM cpu WHERE host = 'b'");
    ok(&node, "DELETE FROM cpu WHERE host = 'a' AND time < 5s");
    ok(&node, "DELETE FROM disk WHERE time >= 8s");
    let check = |node: &Node| {
        let measurements = rows(node, "SHOW MEASUREMENTS");
        assert_eq!(
            measurements,
            vec![serde_json::json!(["cpu"]), serde_json::json!(["disk"])]
        );
        assert!(rows(node, "SELECT * FROM mem").is_empty());
        assert_eq!(
            rows(node, "SELECT count(v) FROM cpu WHERE host = 'a'")[0][1],
            5
        );
        assert!(rows(node, "SELECT v FROM cpu WHERE host = 'b'").is_empty());
        assert_eq!(
            rows(node, "SELECT count(v) FROM cpu WHERE host = 'c'")[0][1],
            10
        );
        assert_eq!(rows(node, "SELECT count(free) FROM disk")[0][1], 8);
        let series = rows(node, "SHOW SERIES FROM cpu");
        assert_eq!(series.len(), 2, "{series:?}");
    };
    check(&node);
    node.kill();
    let node = Node::start(dir.path());
    check(&node);

    // A dropped measurement takes its field types: the field may change type.
    assert_eq!(
        node.write("db=d", b"mem,host=a used=\"full\" 20000000000")
            .status,
        204
    );
    assert_eq!(rows(&node, "SELECT used FROM mem")[0][1], "full");
    // A dropped series comes back with new points.
    assert_eq!(
        node.write("db=d", b"cpu,host=b v=42 30000000000").status,
        204
    );
    assert_eq!(rows(&node, "SELECT v FROM cpu WHERE host = 'b'")[0][1], 42);

    let r = query(&node, "DROP SERIES FROM cpu WHERE time > 0");
    assert!(
        r.text()
            .contains("DROP SERIES doesn't support time in WHERE clause"),
        "{}",
        r.text()
    );
    let r = query(&node, "DELETE");
    assert_eq!(r.status, 400, "{}", r.text());
}
