//! Admission control and shutdown of a real node: the in-flight write bound answers 503
//! with Retry-After, and SIGTERM finishes in-flight writes, syncs and exits 0.

mod common;

use common::{temp_dir, Node};
use std::time::Duration;

/// A node on one core whose WAL waits `delay_ms` before each fsync, so a write stays
/// in flight long enough to observe.
fn slow_node(dir: &std::path::Path, extra_toml: &str) -> Node {
    let config = dir.join("slow.toml");
    std::fs::write(
        &config,
        format!("[storage]\nwal-fsync-delay-ms = 700\n{extra_toml}"),
    )
    .unwrap();
    Node::start_with(
        &dir.join("data"),
        &["--cores", "1", "--config", config.to_str().unwrap()],
    )
}

#[test]
fn writes_past_the_in_flight_bound_get_503_with_retry_after() {
    let dir = temp_dir();
    let node = slow_node(
        dir.path(),
        "[http]\nmax-concurrent-write-requests-per-core = 1\nretry-after-seconds = 3\n",
    );
    node.create_database("db");
    let addr = node.addr;
    let first = std::thread::spawn(move || {
        common::http(addr, "POST", "/write?db=db", &[], b"m v=1 1\n").unwrap()
    });
    std::thread::sleep(Duration::from_millis(250));
    let second = node.write("db=db", b"m v=2 2\n");
    assert_eq!(second.status, 503, "{}", second.text());
    assert_eq!(second.header("Retry-After"), Some("3"));
    assert_eq!(first.join().unwrap().status, 204);
    // Once the first finished, writes are admitted again.
    assert_eq!(node.write("db=db", b"m v=3 3\n").status, 204);
    let times: Vec<i64> = node.dump("db", "").iter().map(|p| p.2).collect();
    assert_eq!(times, vec![1, 3]);
}

#[test]
fn sigterm_finishes_in_flight_writes_and_exits_zero() {
    let dir = temp_dir();
    let mut node = slow_node(dir.path(), "");
    node.create_database("db");
    let addr = node.addr;
    let in_flight = std::thread::spawn(move || {
        common::http(addr, "POST", "/write?db=db", &[], b"m v=1 1\n").unwrap()
    });
    std::thread::sleep(Duration::from_millis(250));
    let status = node.terminate();
    assert!(status.success(), "exit status {status:?}\n{}", node.log());
    assert_eq!(in_flight.join().unwrap().status, 204);
    // New connections are refused after shutdown.
    assert!(common::http(addr, "GET", "/ping", &[], b"").is_err());
    let config = dir.path().join("slow.toml");
    let node = Node::start_with(
        &dir.path().join("data"),
        &["--cores", "1", "--config", config.to_str().unwrap()],
    );
    assert_eq!(node.dump("db", "").len(), 1);
}

#[test]
fn connections_are_spread_evenly_over_cores() {
    let dir = temp_dir();
    let node = Node::start_with(dir.path(), &["--cores", "2"]);
    // Idle keep-alive connections, as a load tool's workers hold them.
    let held: Vec<std::net::TcpStream> = (0..5)
        .map(|_| std::net::TcpStream::connect(node.addr).unwrap())
        .collect();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let vars = node.request("GET", "/debug/vars", &[], b"").json();
        let counts: Vec<u64> = vars["connectionsPerCore"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c.as_u64().unwrap())
            .collect();
        // 5 held + this request's own connection.
        if counts.iter().sum::<u64>() == 6 {
            assert_eq!(counts, vec![3, 3], "uneven spread");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "counts {counts:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
    drop(held);
}
