//! Node statistics: `/metrics` (Prometheus text format, checked strictly), the merged
//! `/debug/vars`, `SHOW STATS` and `shardcore stats`, on a real 2-core node whose
//! client connections are spread over both cores.

mod common;

use common::{temp_dir, Node, BIN};
use std::collections::{HashMap, HashSet};

/// One sample of the text format: metric name, labels, value.
#[derive(Debug)]
struct Sample {
    name: String,
    labels: Vec<(String, String)>,
    value: f64,
}

fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// Parses Prometheus text format 0.0.4 strictly: every sample belongs to a family
/// declared by `# TYPE` before it (summaries own `_sum` and `_count`), each family is
/// declared once, label values are quoted, values are floats; counters end in `_total`
/// and summaries carry `quantile` labels plus `_sum`/`_count` per label set.
fn parse_prometheus(text: &str) -> Vec<Sample> {
    let mut types: HashMap<String, String> = HashMap::new();
    let mut samples = Vec::new();
    assert!(text.ends_with('\n'), "the exposition ends with a newline");
    for (n, line) in text.lines().enumerate() {
        let at = || format!("line {}: {line}", n + 1);
        if let Some(rest) = line.strip_prefix("# ") {
            let mut parts = rest.splitn(3, ' ');
            let kind = parts.next().unwrap();
            let name = parts.next().unwrap_or_else(|| panic!("{}", at()));
            assert!(valid_name(name), "{}", at());
            match kind {
                "HELP" => assert!(parts.next().is_some_and(|h| !h.is_empty()), "{}", at()),
                "TYPE" => {
                    let t = parts.next().unwrap_or_else(|| panic!("{}", at()));
                    assert!(
                        ["counter", "gauge", "summary", "histogram", "untyped"].contains(&t),
                        "{}",
                        at()
                    );
                    assert!(
                        types.insert(name.to_string(), t.to_string()).is_none(),
                        "TYPE twice: {}",
                        at()
                    );
                    if t == "counter" {
                        assert!(name.ends_with("_total"), "counter without _total: {}", at());
                    }
                }
                _ => panic!("unknown comment {}", at()),
            }
            continue;
        }
        assert!(!line.is_empty(), "empty line: {}", at());
        let (head, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("{}", at()));
        let value: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("bad value: {}", at()));
        let (name, labels) = match head.split_once('{') {
            None => (head.to_string(), Vec::new()),
            Some((name, rest)) => {
                let body = rest.strip_suffix('}').unwrap_or_else(|| panic!("{}", at()));
                let labels = body
                    .split(',')
                    .map(|kv| {
                        let (k, v) = kv.split_once('=').unwrap_or_else(|| panic!("{}", at()));
                        assert!(valid_name(k), "{}", at());
                        let v = v
                            .strip_prefix('"')
                            .and_then(|v| v.strip_suffix('"'))
                            .unwrap_or_else(|| panic!("unquoted label: {}", at()));
                        (k.to_string(), v.to_string())
                    })
                    .collect();
                (name.to_string(), labels)
            }
        };
        assert!(valid_name(&name), "{}", at());
        let family = [
            name.as_str(),
            name.trim_end_matches("_sum"),
            name.trim_end_matches("_count"),
        ]
        .into_iter()
        .find(|f| types.contains_key(*f))
        .unwrap_or_else(|| panic!("sample before its TYPE: {}", at()));
        if types[family] == "summary" && family == name {
            assert!(labels.iter().any(|(k, _)| k == "quantile"), "{}", at());
        }
        samples.push(Sample {
            name,
            labels,
            value,
        });
    }
    // Every summary label set has its _sum and _count.
    for (family, t) in &types {
        if t != "summary" {
            continue;
        }
        let sets: HashSet<Vec<(String, String)>> = samples
            .iter()
            .filter(|s| &s.name == family)
            .map(|s| {
                s.labels
                    .iter()
                    .filter(|(k, _)| k != "quantile")
                    .cloned()
                    .collect()
            })
            .collect();
        for set in sets {
            for suffix in ["_sum", "_count"] {
                let want = format!("{family}{suffix}");
                assert!(
                    samples.iter().any(|s| s.name == want && s.labels == set),
                    "{want} {set:?} missing"
                );
            }
        }
    }
    samples
}

fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> f64 {
    samples
        .iter()
        .find(|s| {
            s.name == name
                && s.labels.len() == labels.len()
                && labels
                    .iter()
                    .all(|(k, v)| s.labels.iter().any(|(sk, sv)| sk == k && sv == v))
        })
        .unwrap_or_else(|| panic!("no sample {name} {labels:?}"))
        .value
}

#[test]
fn statistics_are_merged_across_cores_and_move_with_writes() {
    let dir = temp_dir();
    let node = Node::start(dir.path());
    node.create_database("db");

    let before = parse_prometheus(&node.request("GET", "/metrics", &[], b"").text());
    assert_eq!(
        value(&before, "shardcore_http_write_requests_total", &[]),
        0.0
    );
    assert_eq!(value(&before, "shardcore_cores", &[]), 2.0);

    // Each request is its own connection, handed to the least-loaded core: over 6
    // requests both cores serve some.
    for i in 0..4 {
        let body = format!("cpu,host=h{i} v={i} {i}\ncpu,host=x v=1 {i}\n");
        assert_eq!(node.write("db=db", body.as_bytes()).status, 204);
    }
    for i in 0..2 {
        let body = format!("mem,host=h{i} v={i} {i}\n");
        assert_eq!(
            node.write("db=db&consistency=all", body.as_bytes()).status,
            204
        );
    }
    assert_eq!(node.write("db=db", b"bad line\ncpu v=1 9\n").status, 400);
    let r = node.query("SELECT count(v) FROM db..cpu");
    assert_eq!(r.status, 200, "{}", r.text());

    let resp = node.request("GET", "/metrics", &[], b"");
    assert_eq!(resp.status, 200);
    assert!(resp
        .header("content-type")
        .is_some_and(|c| c.starts_with("text/plain; version=0.0.4")));
    let after = parse_prometheus(&resp.text());
    assert_eq!(
        value(&after, "shardcore_http_write_requests_total", &[]),
        7.0
    );
    assert_eq!(value(&after, "shardcore_http_write_ok_total", &[]), 6.0);
    assert_eq!(value(&after, "shardcore_points_written_total", &[]), 11.0);
    assert_eq!(value(&after, "shardcore_lines_unparsed_total", &[]), 1.0);
    assert_eq!(
        value(
            &after,
            "shardcore_write_request_duration_seconds_count",
            &[("consistency", "one")]
        ),
        5.0
    );
    assert_eq!(
        value(
            &after,
            "shardcore_write_request_duration_seconds_count",
            &[("consistency", "all")]
        ),
        2.0
    );
    assert!(
        value(
            &after,
            "shardcore_write_request_duration_seconds_sum",
            &[("consistency", "one")]
        ) > 0.0
    );
    let p99 = value(
        &after,
        "shardcore_write_request_duration_seconds",
        &[("consistency", "one"), ("quantile", "0.99")],
    );
    assert!(p99 > 0.0 && p99 < 60.0, "{p99}");
    // (11 points: the valid line of the 400 answer was kept, as InfluxDB does.)
    // Six accepted batches (one per write) were appended and synced on the owning core.
    assert!(value(&after, "shardcore_wal_write_duration_seconds_count", &[]) >= 6.0);
    assert_eq!(
        value(
            &after,
            "shardcore_query_statement_duration_seconds_count",
            &[("statement", "select")]
        ),
        1.0
    );
    assert_eq!(value(&after, "shardcore_series", &[]), 8.0);

    // /debug/vars: whichever core answers, the totals are the node's.
    let mut answered_by = HashSet::new();
    for _ in 0..6 {
        let vars = node.request("GET", "/debug/vars", &[], b"").json();
        answered_by.insert(vars["core"].as_u64().unwrap());
        assert_eq!(vars["write"]["values"]["req"], 7, "{vars}");
        assert_eq!(vars["write"]["values"]["writeOk"], 6);
        let httpd = vars
            .as_object()
            .unwrap()
            .iter()
            .find(|(k, _)| k.starts_with("httpd:"))
            .map(|(_, v)| v.clone())
            .expect("httpd group");
        assert_eq!(httpd["values"]["pointsWrittenOK"], 11);
        assert_eq!(vars["latencyMicros"]["writeAll"]["count"], 2);
        assert!(vars["system"]["uptime"].is_u64());
    }
    assert_eq!(answered_by.len(), 2, "both cores answered /debug/vars");

    // SHOW STATS: InfluxDB's layout, one series per group; FOR filters by module.
    let r = node.query("SHOW STATS");
    let series = r.json()["results"][0]["series"].as_array().unwrap().clone();
    let names: Vec<&str> = series.iter().map(|s| s["name"].as_str().unwrap()).collect();
    for want in ["httpd", "write", "queryExecutor", "store", "latency"] {
        assert!(names.contains(&want), "{names:?}");
    }
    let r = node.query("SHOW STATS FOR 'write'");
    let series = &r.json()["results"][0]["series"];
    assert_eq!(series.as_array().unwrap().len(), 1, "{series}");
    let columns: Vec<&str> = series[0]["columns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    let mut sorted = columns.clone();
    sorted.sort();
    assert_eq!(columns, sorted, "columns sorted as InfluxDB sorts them");
    let req_at = columns.iter().position(|c| *c == "req").unwrap();
    assert_eq!(series[0]["values"][0][req_at], 7);

    // `shardcore stats` prints the same numbers as a table.
    let out = std::process::Command::new(BIN)
        .args(["stats", "--host", &node.addr.to_string()])
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    let write_req = text
        .lines()
        .find(|l| l.starts_with("write ") && l.split_whitespace().nth(1) == Some("req"))
        .unwrap_or_else(|| panic!("{text}"));
    assert_eq!(write_req.split_whitespace().nth(2), Some("7"), "{text}");
    let write_all = text
        .lines()
        .find(|l| l.starts_with("writeAll "))
        .unwrap_or_else(|| panic!("{text}"));
    assert_eq!(write_all.split_whitespace().nth(1), Some("2"), "{text}");
}
