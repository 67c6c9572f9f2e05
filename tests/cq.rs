//! Continuous queries on real clocks with short intervals: a CQ's output equals the same
//! SELECT run by hand, survives a SIGKILL and restart of a single node with no gap, and
//! in a 3-node rf=2 cluster runs on one node per interval and is taken over, with no
//! gap and no duplicate, when its runner is SIGKILLed. Also SELECT ... INTO and the CQ
//! statements' answers.

mod common;

use common::{Cluster, Node};
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const SECOND_NS: i64 = 1_000_000_000;

fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i64
}

/// Writes one point per host every 40 ms, stamped now, through `write` (which returns
/// whether the write was taken), until `stop`; never in the last 200 ms of a second,
/// so no point of an interval is in flight when the interval's CQ run reads it.
fn writer(
    stop: Arc<AtomicBool>,
    write: impl Fn(usize, &str) -> bool + Send + 'static,
) -> std::thread::JoinHandle<usize> {
    std::thread::spawn(move || {
        let mut written = 0;
        let mut i = 0usize;
        while !stop.load(Ordering::Relaxed) {
            let now = now_ns();
            if now % SECOND_NS > 800_000_000 {
                std::thread::sleep(Duration::from_millis(10));
                continue;
            }
            let body = format!(
                "cpu,host=a v={} {now}\ncpu,host=b v={} {now}\n",
                i % 17,
                (i * 3) % 11
            );
            if write(i, &body) {
                written += 2;
            }
            i += 1;
            std::thread::sleep(Duration::from_millis(40));
        }
        written
    })
}

/// `(host, bucket time) -> [count, mean]` of a result's series (epoch=ns).
fn by_host_and_time(answer: &Value) -> BTreeMap<(String, i64), Vec<Value>> {
    let mut out = BTreeMap::new();
    for s in answer["results"][0]["series"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let host = s["tags"]["host"].as_str().unwrap_or("").to_string();
        let columns: Vec<&str> = s["columns"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c.as_str().unwrap())
            .collect();
        let (count, mean) = (
            columns.iter().position(|c| *c == "count").unwrap(),
            columns.iter().position(|c| *c == "mean").unwrap(),
        );
        for row in s["values"].as_array().unwrap() {
            if row[count].is_null() || row[count] == 0 {
                continue;
            }
            out.insert(
                (host.clone(), row[0].as_i64().unwrap()),
                vec![row[count].clone(), row[mean].clone()],
            );
        }
    }
    out
}

fn answer_ns(node: &Node, db: &str, q: &str) -> Value {
    let r = node.request(
        "GET",
        &format!("/query?db={db}&epoch=ns&q={}", common::urlencode(q)),
        &[],
        b"",
    );
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()
}

/// The CQ's output and the same SELECT run by hand over the output's span must be
/// equal, and the output must have every interval from its first to `last_bucket`
/// (no gap) for both hosts.
fn check_output(node: &Node, db: &str, last_bucket: i64) -> usize {
    // The last interval closes at most a second after `last_bucket`; its run follows
    // within a check (slower on a loaded machine).
    let read = || {
        by_host_and_time(&answer_ns(
            node,
            db,
            "SELECT count, mean FROM cq_out GROUP BY host",
        ))
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    let mut out = read();
    while !["a", "b"]
        .iter()
        .all(|h| out.contains_key(&(h.to_string(), last_bucket)))
        && std::time::Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(200));
        out = read();
    }
    assert!(!out.is_empty(), "the CQ wrote nothing");
    let first = out.keys().map(|(_, t)| *t).min().unwrap();
    let by_hand = by_host_and_time(&answer_ns(
        node,
        db,
        &format!(
            "SELECT count(v), mean(v) FROM cpu WHERE time >= {first} AND time < {} GROUP BY time(1s), host",
            last_bucket + SECOND_NS
        ),
    ));
    let out_in_range: BTreeMap<_, _> = out
        .iter()
        .filter(|((_, t), _)| *t <= last_bucket)
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    assert_eq!(
        out_in_range, by_hand,
        "CQ output vs the same SELECT by hand"
    );
    for host in ["a", "b"] {
        let mut t = first;
        while t <= last_bucket {
            assert!(
                out.contains_key(&(host.to_string(), t)),
                "host {host}: no output for the interval at {t} (first {first}, last {last_bucket})"
            );
            t += SECOND_NS;
        }
    }
    out_in_range.len()
}

fn cq_stat(node: &Node, column: &str) -> i64 {
    let a = node.answer("", "SHOW STATS FOR 'cq'");
    let s = &a["results"][0]["series"][0];
    let i = s["columns"]
        .as_array()
        .unwrap()
        .iter()
        .position(|c| c == column)
        .unwrap();
    s["values"][0][i].as_i64().unwrap()
}

const CQ: &str = "CREATE CONTINUOUS QUERY cq ON cqdb BEGIN SELECT count(v), mean(v) INTO cq_out FROM cpu GROUP BY time(1s), host END";

#[test]
fn a_cq_equals_its_select_by_hand_and_fills_the_gap_of_a_crash() {
    let dir = common::temp_dir();
    let config = "[continuous-queries]\nrun-interval-ms = 100\n";
    let data = dir.path().join("data");
    let mut node = Node::start_with_config(&data, config);
    node.create_database("cqdb");
    let r = node.query(CQ);
    assert!(
        r.json()["results"][0].get("error").is_none(),
        "{}",
        r.text()
    );
    let addr = node.addr;
    let stop = Arc::new(AtomicBool::new(false));
    let up = Arc::new(AtomicBool::new(true));
    let handle = {
        let up = up.clone();
        writer(stop.clone(), move |_, body| {
            up.load(Ordering::Relaxed)
                && common::http(addr, "POST", "/write?db=cqdb", &[], body.as_bytes())
                    .is_ok_and(|r| r.status == 204)
        })
    };
    std::thread::sleep(Duration::from_secs(3));
    // SIGKILL; down for 3 s.
    up.store(false, Ordering::Relaxed);
    stop.store(true, Ordering::Relaxed);
    handle.join().unwrap();
    node.kill();
    let down_from = now_ns();
    std::thread::sleep(Duration::from_secs(3));
    // Restarted with a slow first check, so the points of the down time written back
    // now are in before it: the CQ resumes from its recorded last run and computes
    // the down time too (InfluxDB's CQ service, whose last runs live in memory, would
    // start afresh from the current interval).
    let slow = "[continuous-queries]\nrun-interval-ms = 1500\n";
    let mut node = Node::start_with_config(&data, slow);
    let down_to = now_ns();
    let mut backfill = String::new();
    let mut t = down_from;
    while t < down_to {
        backfill.push_str(&format!("cpu,host=a v=5 {t}\ncpu,host=b v=7 {t}\n"));
        t += 100_000_000;
    }
    let r = node.write("db=cqdb", backfill.as_bytes());
    assert_eq!(r.status, 204, "{}", r.text());
    let addr2 = node.addr;
    let stop = Arc::new(AtomicBool::new(false));
    let handle = writer(stop.clone(), move |_, body| {
        common::http(addr2, "POST", "/write?db=cqdb", &[], body.as_bytes())
            .is_ok_and(|r| r.status == 204)
    });
    std::thread::sleep(Duration::from_secs(4));
    stop.store(true, Ordering::Relaxed);
    handle.join().unwrap();
    let last_bucket = now_ns() / SECOND_NS * SECOND_NS;
    std::thread::sleep(Duration::from_millis(2500));
    let rows = check_output(&node, "cqdb", last_bucket);
    assert!(rows >= 2 * 9, "{rows} output rows");
    // The CQ survives the restart as InfluxDB stores it.
    let a = node.answer("", "SHOW CONTINUOUS QUERIES");
    assert_eq!(
        a["results"][0]["series"][0]["values"][0][1],
        "CREATE CONTINUOUS QUERY cq ON cqdb BEGIN SELECT count(v), mean(v) INTO cqdb.autogen.cq_out FROM cqdb.autogen.cpu GROUP BY time(1s), host END"
    );
    assert!(cq_stat(&node, "queryOk") >= 3);
    assert_eq!(cq_stat(&node, "queryFail"), 0);
    // Dropped: no more runs.
    let r = node.query("DROP CONTINUOUS QUERY cq ON cqdb");
    assert!(
        r.json()["results"][0].get("error").is_none(),
        "{}",
        r.text()
    );
    let ok = cq_stat(&node, "queryOk");
    std::thread::sleep(Duration::from_millis(3500));
    assert_eq!(cq_stat(&node, "queryOk"), ok);
    node.kill();
}

#[test]
fn in_a_cluster_one_node_runs_a_cq_and_another_takes_over_without_gap() {
    let mut cluster = Cluster::start(
        3,
        1,
        "write-timeout-ms = 3000\n[continuous-queries]\nrun-interval-ms = 100\n",
    );
    cluster.query_all("CREATE DATABASE cqdb WITH REPLICATION 2");
    let r = cluster.node(0).query(CQ);
    assert!(
        r.json()["results"][0].get("error").is_none(),
        "{}",
        r.text()
    );
    common::eventually(
        Duration::from_secs(20),
        "the CQ reaching every node",
        || {
            (0..3).all(|i| {
                cluster.node(i).answer("", "SHOW CONTINUOUS QUERIES")["results"][0]["series"][0]
                    ["values"]
                    .is_array()
            })
        },
    );
    let addrs: Vec<std::net::SocketAddr> = (0..3).map(|i| cluster.node(i).addr).collect();
    let down = Arc::new(std::sync::Mutex::new(None::<usize>));
    let stop = Arc::new(AtomicBool::new(false));
    let handle = {
        let down = down.clone();
        writer(stop.clone(), move |i, body| {
            let skip = *down.lock().unwrap();
            let n = (0..3)
                .map(|k| (i + k) % 3)
                .find(|&n| Some(n) != skip)
                .unwrap();
            common::http(
                addrs[n],
                "POST",
                "/write?db=cqdb&consistency=one",
                &[],
                body.as_bytes(),
            )
            .is_ok_and(|r| r.status == 204)
        })
    };
    // Steady state: exactly one node runs the CQ, once per interval.
    std::thread::sleep(Duration::from_secs(3));
    let before: Vec<i64> = (0..3)
        .map(|i| cq_stat(cluster.node(i), "queryOk"))
        .collect();
    std::thread::sleep(Duration::from_secs(4));
    let after: Vec<i64> = (0..3)
        .map(|i| cq_stat(cluster.node(i), "queryOk"))
        .collect();
    let runs: Vec<i64> = (0..3).map(|i| after[i] - before[i]).collect();
    let runners: Vec<usize> = (0..3).filter(|&i| runs[i] > 0).collect();
    assert_eq!(runners.len(), 1, "runs per node over 4 s: {runs:?}");
    let runner = runners[0];
    assert!(
        (3..=5).contains(&runs[runner]),
        "one run per 1 s interval over 4 s: {runs:?}"
    );
    // SIGKILL the runner; another takes over.
    *down.lock().unwrap() = Some(runner);
    cluster.node_mut(runner).kill();
    cluster.nodes[runner] = None;
    std::thread::sleep(Duration::from_secs(2));
    let survivors: Vec<usize> = (0..3).filter(|&i| i != runner).collect();
    let before: Vec<i64> = survivors
        .iter()
        .map(|&i| cq_stat(cluster.node(i), "queryOk"))
        .collect();
    std::thread::sleep(Duration::from_secs(4));
    let runs: Vec<i64> = survivors
        .iter()
        .zip(&before)
        .map(|(&i, b)| cq_stat(cluster.node(i), "queryOk") - b)
        .collect();
    assert_eq!(
        runs.iter().filter(|&&r| r > 0).count(),
        1,
        "one survivor runs the CQ: {runs:?}"
    );
    assert!(
        runs.iter().any(|r| (3..=5).contains(r)),
        "once per interval: {runs:?}"
    );
    stop.store(true, Ordering::Relaxed);
    handle.join().unwrap();
    let last_bucket = now_ns() / SECOND_NS * SECOND_NS;
    std::thread::sleep(Duration::from_millis(1500));
    // No gap across the kill, values equal to the SELECT by hand (a repeated run
    // overwrote its points: one row per host and interval).
    for &i in &survivors {
        let rows = check_output(cluster.node(i), "cqdb", last_bucket);
        assert!(rows >= 2 * 10, "{rows} output rows");
    }
}

#[test]
fn select_into_and_cq_statements_answer_as_influxdb() {
    let dir = common::temp_dir();
    let node = Node::start(&dir.path().join("data"));
    node.create_database("p1");
    node.create_database("p2");
    let r = node.write(
        "db=p1",
        b"cpu,host=a,region=w v=1,s=\"x\" 10000000000\ncpu,host=b,region=w v=2,i=3i 10000000000\ncpu,host=a,region=e v=3,b=true 20000000000\n",
    );
    assert_eq!(r.status, 204, "{}", r.text());
    let text = |db: &str, q: &str| {
        let r = node.query_on(db, q);
        assert_eq!(r.status, 200, "{}", r.text());
        r.text().trim_end().to_string()
    };
    // Expected answers are influxd 1.6.7's to the same requests.
    for (db, q, expected) in [
        (
            "p1",
            "SELECT * INTO cpu2 FROM cpu",
            r#"{"results":[{"statement_id":0,"series":[{"name":"result","columns":["time","written"],"values":[["1970-01-01T00:00:00Z",3]]}]}]}"#,
        ),
        (
            "p1",
            "SELECT * FROM cpu2",
            r#"{"results":[{"statement_id":0,"series":[{"name":"cpu2","columns":["time","b","host","i","region","s","v"],"values":[["1970-01-01T00:00:10Z",null,"b",3,"w","x",2],["1970-01-01T00:00:20Z",true,"a",null,"e",null,3]]}]}]}"#,
        ),
        (
            "p1",
            "SELECT mean(v) INTO p2..fillz FROM cpu WHERE time >= 0 AND time < 40s GROUP BY time(10s), host fill(0)",
            r#"{"results":[{"statement_id":0,"series":[{"name":"result","columns":["time","written"],"values":[["1970-01-01T00:00:00Z",8]]}]}]}"#,
        ),
        (
            "p2",
            "SELECT * FROM fillz WHERE host = 'b'",
            r#"{"results":[{"statement_id":0,"series":[{"name":"fillz","columns":["time","host","mean"],"values":[["1970-01-01T00:00:00Z","b",0],["1970-01-01T00:00:10Z","b",2],["1970-01-01T00:00:20Z","b",0],["1970-01-01T00:00:30Z","b",0]]}]}]}"#,
        ),
        (
            "p1",
            "SELECT v INTO nodb..x FROM cpu",
            r#"{"results":[{"statement_id":0,"error":"database not found: nodb"}]}"#,
        ),
        (
            "p1",
            "SELECT v INTO p2.norp.x FROM cpu",
            r#"{"results":[{"statement_id":0,"error":"retention policy not found: norp"}]}"#,
        ),
        (
            "p1",
            "SELECT s INTO p2..conf FROM cpu; SELECT v AS s INTO p2..conf FROM cpu",
            r#"{"results":[{"statement_id":0,"series":[{"name":"result","columns":["time","written"],"values":[["1970-01-01T00:00:00Z",1]]}]},{"statement_id":1,"error":"partial write: field type conflict: input field \"s\" on measurement \"conf\" is type float, already exists as type string dropped=3"}]}"#,
        ),
        (
            "p1",
            "CREATE CONTINUOUS QUERY \"cq 2\" ON p1 RESAMPLE EVERY 2m FOR 1h BEGIN SELECT mean(v) AS m, max(v) INTO p2.autogen.:MEASUREMENT FROM /c.*/ WHERE host = 'a' GROUP BY time(30m, 5m), * fill(0) END",
            r#"{"results":[{"statement_id":0}]}"#,
        ),
        (
            "p1",
            "CREATE CONTINUOUS QUERY cq4 ON p1 BEGIN SELECT mean(v) INTO x FROM (SELECT v FROM cpu) GROUP BY time(1m) END",
            r#"{"results":[{"statement_id":0}]}"#,
        ),
        (
            "p1",
            "CREATE CONTINUOUS QUERY cq4 ON p1 BEGIN SELECT mean(v) INTO y FROM cpu GROUP BY time(1m) END",
            r#"{"results":[{"statement_id":0,"error":"continuous query already exists"}]}"#,
        ),
        (
            "p1",
            "SHOW CONTINUOUS QUERIES",
            r#"{"results":[{"statement_id":0,"series":[{"name":"p1","columns":["name","query"],"values":[["cq 2","CREATE CONTINUOUS QUERY \"cq 2\" ON p1 RESAMPLE EVERY 2m FOR 1h BEGIN SELECT mean(v) AS m, max(v) INTO p2.autogen.:MEASUREMENT FROM p1.autogen./c.*/ WHERE host = 'a' GROUP BY time(30m, 5m), * fill(0) END"],["cq4","CREATE CONTINUOUS QUERY cq4 ON p1 BEGIN SELECT mean(v) INTO p1.autogen.x FROM (SELECT v FROM p1.autogen.cpu) GROUP BY time(1m) END"]]},{"name":"p2","columns":["name","query"]}]}]}"#,
        ),
        (
            "p1",
            "CREATE CONTINUOUS QUERY cq5 ON p1 BEGIN SELECT mean(v) INTO p2.nor.x FROM cpu GROUP BY time(1m) END",
            r#"{"results":[{"statement_id":0,"error":"retention policy not found: p2.nor"}]}"#,
        ),
        (
            "p1",
            "CREATE CONTINUOUS QUERY cq5 ON nodb BEGIN SELECT mean(v) INTO x FROM cpu GROUP BY time(1m) END",
            r#"{"results":[{"statement_id":0,"error":"database not found: nodb"}]}"#,
        ),
        (
            "p1",
            "DROP CONTINUOUS QUERY cq4 ON p1; DROP CONTINUOUS QUERY cq4 ON p1; DROP CONTINUOUS QUERY cq4 ON nodb",
            r#"{"results":[{"statement_id":0},{"statement_id":1},{"statement_id":2}]}"#,
        ),
    ] {
        assert_eq!(text(db, q), expected, "{q}");
    }
    // Parse errors, as influxd's.
    for (q, expected) in [
        (
            "CREATE CONTINUOUS QUERY cq3 ON p1 BEGIN SELECT mean(v) INTO cpu_1m FROM cpu END",
            "found cpu, expected GROUP BY time(...) at line 1, char 73",
        ),
        (
            "CREATE CONTINUOUS QUERY cq3 ON p1 BEGIN SELECT mean(v) FROM cpu GROUP BY time(1m) END",
            "found FROM, expected INTO at line 1, char 56",
        ),
        (
            "CREATE CONTINUOUS QUERY cq3 ON p1 RESAMPLE FOR 30s BEGIN SELECT mean(v) INTO x FROM cpu GROUP BY time(1m) END",
            "FOR duration must be >= GROUP BY time duration: must be a minimum of 1m, got 30s",
        ),
        (
            "CREATE CONTINUOUS QUERY cq3 ON p1 RESAMPLE BEGIN SELECT mean(v) INTO x FROM cpu GROUP BY time(1m) END",
            "found BEGIN, expected EVERY, FOR at line 1, char 44",
        ),
    ] {
        let r = node.query_on("p1", q);
        assert_eq!(r.status, 400, "{}", r.text());
        assert_eq!(
            r.json()["error"],
            format!("error parsing query: {expected}"),
            "{q}"
        );
    }
}
