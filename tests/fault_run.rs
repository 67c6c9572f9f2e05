//! A short fault run (issue 12): concurrent writers at every consistency level keep a
//! ledger of what the cluster acknowledged, while nodes of a 3-node rf=2 cluster are
//! SIGKILLed and restarted or SIGSTOPped and resumed, one at a time, in an order drawn
//! from a seed. Then every node is up, hinted handoff drains, and every acknowledged
//! point must be on every one of its owners.
//!
//! The seed is printed; `SHARDCORE_FAULT_SEED=<seed> cargo test --release --test
//! fault_run -- --nocapture` replays the same faults (the interleaving with the
//! writers still varies). `SHARDCORE_FAULT_SECONDS` lengthens the run.

mod common;

use common::{http, Cluster};
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const BASE_NS: i64 = 1_700_000_000_000_000_000;
const DB: &str = "fault";
const WRITERS: usize = 4;
const LINES_PER_WRITE: usize = 20;

/// xorshift64*: small, seeded, good enough to pick faults.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn owners(series: &str, ts: i64) -> BTreeSet<u64> {
    common::owners_of(DB, 2, series, ts)
}

fn hh_queue_bytes(node: &common::Node) -> Option<u64> {
    let r = http(node.addr, "GET", "/debug/vars", &[], b"").ok()?;
    let vars: serde_json::Value = serde_json::from_slice(&r.body).ok()?;
    Some(
        vars["hintedHandoff"]
            .as_array()
            .map(|qs| {
                qs.iter()
                    .map(|q| q["queueBytes"].as_u64().unwrap_or(0))
                    .sum()
            })
            .unwrap_or(0),
    )
}

/// One writer: unique points, a random node and consistency level per request; the
/// points of every request answered 204 go into the ledger.
fn writer(
    id: usize,
    seed: u64,
    addrs: Arc<Mutex<Vec<Option<SocketAddr>>>>,
    stop: Arc<AtomicBool>,
    ledger: Arc<Mutex<Vec<(String, i64)>>>,
) -> (usize, usize) {
    let mut rng = Rng(seed ^ (id as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15));
    let (mut acked, mut failed) = (0, 0);
    let mut n = 0i64;
    while !stop.load(Ordering::Relaxed) {
        let node = rng.below(3) as usize;
        let Some(addr) = addrs.lock().unwrap()[node] else {
            continue;
        };
        let consistency = ["any", "one", "quorum", "all"][rng.below(4) as usize];
        let mut points = Vec::with_capacity(LINES_PER_WRITE);
        let mut body = String::new();
        for _ in 0..LINES_PER_WRITE {
            n += 1;
            // Tags in key order: the canonical series key, as stored and hashed.
            let series = format!("fr,s=s{},w=w{id}", rng.below(50));
            // Over two hourly shard groups, so every node owns some of the points.
            let ts = BASE_NS + (n * 7919 % 7_000) * 1_000_000_000 + id as i64;
            body.push_str(&format!("{series} v={n}i {ts}\n"));
            points.push((series, ts));
        }
        let path = format!("/write?db={DB}&consistency={consistency}");
        match http(addr, "POST", &path, &[], body.as_bytes()) {
            Ok(r) if r.status == 204 => {
                acked += 1;
                ledger.lock().unwrap().extend(points);
            }
            _ => failed += 1,
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    (acked, failed)
}

#[test]
fn acknowledged_writes_survive_kills_and_stops_on_every_owner() {
    let seed: u64 = std::env::var("SHARDCORE_FAULT_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
                | 1
        });
    let seconds: u64 = std::env::var("SHARDCORE_FAULT_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(25);
    println!("fault run seed: {seed} (replay: SHARDCORE_FAULT_SEED={seed})");
    let mut cluster = Cluster::start(
        3,
        2,
        "write-timeout-ms = 2000\ndial-timeout-ms = 500\n[hinted-handoff]\nretry-interval-ms = 100\nretry-max-interval-ms = 500\n",
    );
    cluster.query_all(&format!(
        "CREATE DATABASE {DB} WITH REPLICATION 2 SHARD DURATION 1h"
    ));
    let addrs = Arc::new(Mutex::new(
        cluster
            .nodes
            .iter()
            .map(|n| n.as_ref().map(|n| n.addr))
            .collect::<Vec<_>>(),
    ));
    let stop = Arc::new(AtomicBool::new(false));
    let ledger = Arc::new(Mutex::new(Vec::new()));
    let writers: Vec<_> = (0..WRITERS)
        .map(|id| {
            let (addrs, stop, ledger) = (addrs.clone(), stop.clone(), ledger.clone());
            std::thread::spawn(move || writer(id, seed, addrs, stop, ledger))
        })
        .collect();
    let mut rng = Rng(seed);
    let started = Instant::now();
    let mut faults = Vec::new();
    while started.elapsed() < Duration::from_secs(seconds) {
        std::thread::sleep(Duration::from_millis(300 + rng.below(1200)));
        let i = rng.below(3) as usize;
        let pause = Duration::from_millis(300 + rng.below(2000));
        if rng.below(2) == 0 {
            faults.push(format!("kill node {} for {pause:?}", i + 1));
            addrs.lock().unwrap()[i] = None;
            cluster.node_mut(i).kill();
            cluster.nodes[i] = None;
            std::thread::sleep(pause);
            cluster.start_node(i);
            addrs.lock().unwrap()[i] = Some(cluster.node(i).addr);
        } else {
            faults.push(format!("stop node {} for {pause:?}", i + 1));
            let pid = cluster.node(i).child.id() as i32;
            unsafe { libc::kill(pid, libc::SIGSTOP) };
            std::thread::sleep(pause);
            unsafe { libc::kill(pid, libc::SIGCONT) };
        }
    }
    stop.store(true, Ordering::Relaxed);
    let mut totals = (0, 0);
    for w in writers {
        let (acked, failed) = w.join().expect("writer");
        totals.0 += acked;
        totals.1 += failed;
    }
    println!("faults: {}", faults.join(", "));
    println!(
        "writes acknowledged: {}, not acknowledged: {}",
        totals.0, totals.1
    );
    assert!(totals.0 > 0, "no write was acknowledged at all");
    // Every node up: hinted handoff delivers what the faults held back.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let queued: Vec<Option<u64>> = (0..3).map(|i| hh_queue_bytes(cluster.node(i))).collect();
        if queued.iter().all(|q| *q == Some(0)) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "hinted handoff did not drain within 60 s: {queued:?} (seed {seed})"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let held: Vec<BTreeSet<(String, i64)>> = (0..3)
        .map(|i| {
            cluster
                .node(i)
                .dump(DB, "")
                .into_iter()
                .map(|(series, _, ts, _)| (series, ts))
                .collect()
        })
        .collect();
    let ledger = ledger.lock().unwrap();
    let mut missing: BTreeMap<u64, usize> = BTreeMap::new();
    let mut example = None;
    for (series, ts) in ledger.iter() {
        for owner in owners(series, *ts) {
            if !held[owner as usize - 1].contains(&(series.clone(), *ts)) {
                *missing.entry(owner).or_default() += 1;
                example.get_or_insert((series.clone(), *ts, owner));
            }
        }
    }
    println!("acknowledged points: {}", ledger.len());
    assert!(
        missing.is_empty(),
        "acknowledged points missing on their owners (node -> count): {missing:?}, e.g. {example:?}; seed {seed}; faults: {}",
        faults.join(", ")
    );
}
