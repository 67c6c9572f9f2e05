//! Partial aggregation on the shards must not change a single bit of any answer.
//!
//! Two real nodes get the same random data (awkward floats, integers, several series,
//! three weeks so windows straddle shard-group edges — ShardCore's groups start on
//! Thursdays, InfluxDB's on Mondays). Node A aggregates on the shards (the default);
//! node B is configured with a `max-select-point` limit, which turns partial
//! aggregation off, so it computes every answer from raw points. Every query's JSON must
//! be byte-for-byte the same on both.

mod common;

use common::{temp_dir, Node};

fn lcg(state: &mut u64) -> u64 {
    *state = state
        .wrapping_mul(6_364_136_223_846_793_005)
        .wrapping_add(1_442_695_040_888_963_407);
    *state >> 33
}

#[test]
fn partial_aggregates_answer_exactly_as_raw_points_do() {
    let dir_a = temp_dir();
    let dir_b = temp_dir();
    let config_b = dir_b.path().join("b.toml");
    std::fs::write(&config_b, "[query]\nmax-select-point = 1000000000\n").unwrap();
    let a = Node::start(&dir_a.path().join("data"));
    let b = Node::start_with(
        &dir_b.path().join("data"),
        &["--config", config_b.to_str().unwrap()],
    );
    for node in [&a, &b] {
        node.create_database("db");
    }

    // 2026-01-01T00:00:00Z (a Thursday) plus 21 days of points at random seconds.
    let start: i64 = 1_767_225_600_000_000_000;
    let mut state = 42u64;
    let mut body = String::new();
    for i in 0..6000 {
        let host = ["a", "b", "c"][(lcg(&mut state) % 3) as usize];
        let t = start + (lcg(&mut state) % (21 * 86_400)) as i64 * 1_000_000_000 + i;
        let x = (lcg(&mut state) % 1_000_000) as f64 / 7.0 + 0.1;
        let n = (lcg(&mut state) % 1000) as i64 - 500;
        // Some points lack x: counts per field differ.
        if i % 5 == 0 {
            body.push_str(&format!("m,host={host} n={n}i {t}\n"));
        } else {
            body.push_str(&format!("m,host={host} x={x},n={n}i {t}\n"));
        }
    }
    for node in [&a, &b] {
        let r = node.write("db=db", body.as_bytes());
        assert_eq!(r.status, 204, "{}", r.text());
    }

    let range = "time >= '2026-01-01T00:00:00Z' AND time < '2026-01-22T00:00:00Z'";
    let queries = [
        format!("SELECT mean(x), sum(x), count(x) FROM db..m WHERE {range} GROUP BY time(1h)"),
        format!("SELECT mean(x), sum(x), count(x), min(x), max(x), first(x), last(x) FROM db..m WHERE {range} GROUP BY time(1d), host"),
        format!("SELECT mean(x) FROM db..m WHERE {range} GROUP BY time(7d)"),
        format!("SELECT mean(x) FROM db..m WHERE {range} GROUP BY time(2d)"),
        format!("SELECT sum(x), mean(n), sum(n), count(n), max(n), min(n) FROM db..m WHERE {range} GROUP BY time(13h, 5m)"),
        format!("SELECT mean(x) FROM db..m WHERE {range} GROUP BY time(6h) ORDER BY time DESC"),
        format!("SELECT sum(x) FROM db..m WHERE {range} GROUP BY time(1d), host ORDER BY time DESC LIMIT 3"),
        format!("SELECT mean(x) FROM db..m WHERE {range} AND host = 'b' GROUP BY time(1h) fill(0)"),
        format!("SELECT mean(x) FROM db..m WHERE {range} AND host =~ /a|c/ GROUP BY time(3h) fill(previous)"),
        format!("SELECT derivative(mean(x), 1h), non_negative_difference(max(x)) FROM db..m WHERE {range} GROUP BY time(1d)"),
        format!("SELECT moving_average(sum(n), 3), cumulative_sum(count(x)) FROM db..m WHERE {range} GROUP BY time(1d)"),
        format!("SELECT mean(x) * 2 + max(x) - abs(min(n)) FROM db..m WHERE {range} GROUP BY time(12h)"),
        format!("SELECT count(x) FROM db..m WHERE {range} GROUP BY time(30m) fill(none) SLIMIT 2"),
        "SELECT mean(x), count(n) FROM db..m WHERE time >= '2026-01-03T07:00:00Z' AND time < '2026-01-19T00:00:00Z' GROUP BY time(5d)".to_string(),
        format!("SELECT mean(x) FROM db..m WHERE {range} GROUP BY time(1w)"),
        // No GROUP BY time: one window over the range (7-day groups straddle shards).
        format!("SELECT count(x), sum(x), mean(x), min(x), max(n), first(x), last(x), mean(n), sum(n) FROM db..m WHERE {range}"),
        format!("SELECT mean(x), sum(x) FROM db..m WHERE {range} GROUP BY host"),
        format!("SELECT max(x) FROM db..m WHERE {range}"),
        format!("SELECT last(x) FROM db..m WHERE {range} GROUP BY host"),
        format!("SELECT sum(x) / count(x), spread(n) FROM db..m WHERE {range}"),
        "SELECT mean(x), count(n) FROM db..m".to_string(),
        format!("SELECT sum(x), mean(x) FROM db..m WHERE {range} ORDER BY time DESC"),
    ];
    for q in &queries {
        let ra = a.query(q);
        let rb = b.query(q);
        assert_eq!(ra.status, 200, "{q}: {}", ra.text());
        assert!(!ra.text().contains("\"error\""), "{q}: {}", ra.text());
        assert!(ra.text().contains("\"values\""), "{q}: {}", ra.text());
        assert_eq!(
            ra.text(),
            rb.text(),
            "partial and raw answers differ for {q}"
        );
    }
    // Node A did aggregate on its shards; node B never did.
    let partial_scans = |node: &Node| {
        node.request("GET", "/debug/vars", &[], b"").json()["queryExecutor"]["values"]
            ["partialScans"]
            .as_u64()
            .unwrap()
    };
    // Every query but the one with spread() (not a partial kind: read raw).
    assert!(
        partial_scans(&a) >= queries.len() as u64 - 1,
        "node A used partials"
    );
    assert_eq!(partial_scans(&b), 0, "node B read raw points");
}
