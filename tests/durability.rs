//! Crash safety with real processes and real files: restart, SIGKILL under concurrent
//! load, clean shutdown, and hand-made WAL corruption.

mod common;

use common::{temp_dir, wal_segments, Node};
use serde_json::json;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[test]
fn points_and_ddl_survive_a_clean_restart() {
    let dir = temp_dir();
    let mut node = Node::start(dir.path());
    node.create_database("db");
    let r = node.query("CREATE RETENTION POLICY two ON db DURATION 2d REPLICATION 1");
    assert_eq!(r.status, 200);
    let mut body = String::new();
    for i in 0..1000 {
        body.push_str(&format!(
            "cpu,host=h{} v={i},n={i}i {}\n",
            i % 10,
            1_600_000_000 + i
        ));
    }
    let r = node.write("db=db&precision=s", body.as_bytes());
    assert_eq!(r.status, 204, "{}", r.text());
    let before = node.dump("db", "");
    assert_eq!(before.len(), 2000);
    assert!(node.terminate().success(), "clean shutdown exits 0");
    assert!(node.log().contains("shutdown complete"));

    let node = Node::start(dir.path());
    assert_eq!(node.dump("db", ""), before);
    // Field types are known again after recovery: a conflicting write is refused.
    let r = node.write("db=db&precision=s", b"cpu,host=h1 v=1i 1600000000\n");
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(r.text().contains("field type conflict"), "{}", r.text());
    let r = node.query("SHOW RETENTION POLICIES ON db");
    assert_eq!(
        r.json()["results"][0]["series"][0]["values"],
        json!([
            ["autogen", "0s", "168h0m0s", 1, true],
            ["two", "48h0m0s", "24h0m0s", 1, false]
        ])
    );
}

#[test]
fn the_last_write_of_a_point_wins_before_and_after_restart() {
    let dir = temp_dir();
    let mut node = Node::start(dir.path());
    node.create_database("db");
    assert_eq!(
        node.write("db=db", b"lww,k=a v=1 100\nlww,k=a v=2 200\n")
            .status,
        204
    );
    // Same series, field and time: the later write wins, also out of order.
    assert_eq!(node.write("db=db", b"lww,k=a v=10 100\n").status, 204);
    assert_eq!(
        node.write("db=db", b"lww,k=a v=11 100\nlww,k=a v=12 100\n")
            .status,
        204
    );
    let expect = vec![
        ("lww,k=a".to_string(), "v".to_string(), 100, json!(12.0)),
        ("lww,k=a".to_string(), "v".to_string(), 200, json!(2.0)),
    ];
    assert_eq!(node.dump("db", ""), expect);
    node.kill();
    let node = Node::start(dir.path());
    assert_eq!(node.dump("db", ""), expect);
}

#[test]
fn every_acknowledged_point_survives_sigkill_under_concurrent_load() {
    let dir = temp_dir();
    let mut node = Node::start(dir.path());
    node.create_database("db");
    let addr = node.addr;
    let stop = Arc::new(AtomicBool::new(false));
    // Per client: the batches the server acknowledged (204).
    let acked: Arc<Mutex<HashMap<usize, Vec<usize>>>> = Arc::default();
    let clients: Vec<_> = (0..4)
        .map(|client| {
            let stop = stop.clone();
            let acked = acked.clone();
            std::thread::spawn(move || {
                for batch in 0..100_000usize {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let mut body = String::new();
                    for j in 0..50 {
                        let ts = 1_600_000_000_000_000_000i64 + (batch * 50 + j) as i64;
                        body.push_str(&format!(
                            "load,client=c{client},s=s{} v={batch} {ts}\n",
                            j % 5
                        ));
                    }
                    match common::http(addr, "POST", "/write?db=db", &[], body.as_bytes()) {
                        Ok(r) if r.status == 204 => {
                            acked.lock().unwrap().entry(client).or_default().push(batch)
                        }
                        _ => break,
                    }
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(1500));
    node.kill();
    stop.store(true, Ordering::SeqCst);
    for c in clients {
        c.join().unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    let total: usize = acked.values().map(|v| v.len()).sum();
    assert!(
        total > 10,
        "the clients should have written something ({total})"
    );

    let node = Node::start(dir.path());
    let stored = node.dump("db", "&measurement=load");
    let mut by_point: HashMap<(String, i64), f64> = HashMap::new();
    for (series, field, ts, value) in stored {
        assert_eq!(field, "v");
        by_point.insert((series, ts), value.as_f64().unwrap());
    }
    for (client, batches) in &acked {
        for &batch in batches {
            for j in 0..50 {
                let ts = 1_600_000_000_000_000_000i64 + (batch * 50 + j) as i64;
                let key = (format!("load,client=c{client},s=s{}", j % 5), ts);
                if by_point.get(&key) != Some(&(batch as f64)) {
                    eprintln!("LOG AFTER RESTART:\n{}", node.log());
                    let mut same: Vec<_> = by_point
                        .keys()
                        .filter(|k| k.0 == key.0)
                        .map(|k| k.1 - 1_600_000_000_000_000_000i64)
                        .collect();
                    same.sort();
                    eprintln!(
                        "stored times of {}: {} values, first {:?} last {:?}",
                        key.0,
                        same.len(),
                        same.first(),
                        same.last()
                    );
                    eprintln!("acked batches of client {client}: {}", batches.len());
                }
                assert_eq!(
                    by_point.get(&key),
                    Some(&(batch as f64)),
                    "acknowledged point {key:?} lost after SIGKILL"
                );
            }
        }
    }
}

#[test]
fn torn_wal_tail_is_cut_and_everything_before_is_kept() {
    let dir = temp_dir();
    let mut node = Node::start_with(dir.path(), &["--cores", "1"]);
    node.create_database("db");
    for i in 0..5 {
        let r = node.write("db=db", format!("t,k=v f={i} {i}\n").as_bytes());
        assert_eq!(r.status, 204);
    }
    assert!(node.terminate().success());
    let segments = wal_segments(dir.path());
    assert_eq!(segments.len(), 1);
    let seg = &segments[0];
    // A torn record: a header promising more bytes than follow.
    let mut bytes = std::fs::read(seg).unwrap();
    let good_len = records_len(&bytes);
    bytes.truncate(good_len); // drop any O_DIRECT block padding
    bytes.extend_from_slice(&[200, 0, 0, 0, 1, 2, 3, 4, b'x', b'y']);
    std::fs::write(seg, &bytes).unwrap();

    let mut node = Node::start_with(dir.path(), &["--cores", "1"]);
    assert!(
        node.log().contains("torn or corrupt tail"),
        "{}",
        node.log()
    );
    assert_eq!(std::fs::metadata(seg).unwrap().len() as usize, good_len);
    let points = node.dump("db", "");
    assert_eq!(
        points.iter().map(|p| p.2).collect::<Vec<_>>(),
        vec![0, 1, 2, 3, 4]
    );
    // The node keeps taking writes after recovery, into a new segment.
    let r = node.write("db=db", b"t,k=v f=5 5\n");
    assert_eq!(r.status, 204);
    assert!(node.terminate().success());
    assert_eq!(wal_segments(dir.path()).len(), 2);
}

#[test]
fn corrupt_record_is_cut_with_its_successors_and_earlier_records_kept() {
    let dir = temp_dir();
    let mut node = Node::start_with(dir.path(), &["--cores", "1"]);
    node.create_database("db");
    let r = node.write("db=db", b"c v=1 1\nc v=2 2\n");
    assert_eq!(r.status, 204);
    let seg = wal_segments(dir.path())[0].clone();
    let r = node.write("db=db", b"c v=3 3\n");
    assert_eq!(r.status, 204);
    let r = node.write("db=db", b"c v=4 4\n");
    assert_eq!(r.status, 204);
    assert!(node.terminate().success());
    // Flip a bit inside the second record's payload.
    let mut bytes = std::fs::read(&seg).unwrap();
    let (starts, _) = record_starts(&bytes);
    assert_eq!(starts.len(), 3, "one record per write");
    assert_eq!(starts[1] % 4096, 0, "each commit starts in a fresh block");
    bytes[starts[1] + 12] ^= 0x01;
    std::fs::write(&seg, &bytes).unwrap();

    let node = Node::start_with(dir.path(), &["--cores", "1"]);
    assert!(node.log().contains("truncating"), "{}", node.log());
    let times: Vec<i64> = node.dump("db", "").iter().map(|p| p.2).collect();
    assert_eq!(times, vec![1, 2]);
}

#[test]
fn shards_are_spread_over_cores_and_found_after_restart_with_fewer_cores() {
    let dir = temp_dir();
    let mut node = Node::start_with(dir.path(), &["--cores", "2"]);
    let r = node.query("CREATE DATABASE db WITH SHARD DURATION 1h");
    assert_eq!(r.status, 200);
    // 48 hourly shard groups -> 48 shards of one series each: each shard's one
    // partition that holds data is on core `partition % 2`.
    let mut body = String::new();
    for h in 0..48i64 {
        body.push_str(&format!("m,h={h} v={h} {}\n", 1_600_000_000 + h * 3600));
    }
    assert_eq!(node.write("db=db&precision=s", body.as_bytes()).status, 204);
    let shards = node.request("GET", "/debug/shards", &[], b"").json();
    let shards = shards["shards"].as_array().unwrap().clone();
    assert_eq!(shards.len(), 48);
    for s in &shards {
        assert_eq!(
            s["core"].as_u64().unwrap(),
            s["partition"].as_u64().unwrap() % 2
        );
        assert_eq!(s["partitions"], 2);
        assert_eq!(s["values"], 1);
    }
    assert!(shards.iter().any(|s| s["core"] == 0) && shards.iter().any(|s| s["core"] == 1));
    assert!(node.terminate().success());

    let node = Node::start_with(dir.path(), &["--cores", "1"]);
    assert_eq!(node.dump("db", "").len(), 48);
    let listing = common::inspect_listing(dir.path());
    assert_eq!(listing.lines().count(), 49, "{listing}");
}

/// Where each record of a WAL segment image starts, and where the last one ends. The
/// format: `len u32 LE | crc u32 LE | payload`; each commit starts at a multiple of
/// 4,096 bytes, zero padding before it (a zero length is padding, never a record).
fn record_starts(bytes: &[u8]) -> (Vec<usize>, usize) {
    const BLOCK: usize = 4096;
    let (mut starts, mut pos, mut end) = (Vec::new(), 0, 0);
    while pos + 8 <= bytes.len() {
        let len = u32::from_le_bytes(bytes[pos..pos + 4].try_into().unwrap()) as usize;
        if len == 0 {
            match bytes[pos..].iter().position(|&b| b != 0) {
                Some(nonzero) if (pos + nonzero) / BLOCK * BLOCK > pos => {
                    pos = (pos + nonzero) / BLOCK * BLOCK;
                    continue;
                }
                _ => break,
            }
        }
        if pos + 8 + len > bytes.len() {
            break;
        }
        starts.push(pos);
        pos += 8 + len;
        end = pos;
    }
    (starts, end)
}

/// Length of the valid records at the start of a WAL segment image.
fn records_len(bytes: &[u8]) -> usize {
    record_starts(bytes).1
}
