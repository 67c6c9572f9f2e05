//! Keeps the line-protocol lines whose shard is (or is not) owned by one node, by the
//! cluster's own placement. `tools/forward-overhead.sh` uses it to build a data set that
//! a coordinating node must forward entirely.
//!
//! Usage: `lines_by_owner --db DB --nodes 1,2,3 --rf 1 --shard-duration-ns NS
//!         (--owned-by N | --not-owned-by N) < in.lp > out.lp`
//! (`--rp` defaults to autogen; precision is ns; lines without a timestamp are dropped.)

use bytes::Bytes;
use shardcore::lineproto::{self, Precision};
use shardcore::placement::{self, Membership};
use std::collections::HashMap;
use std::io::{BufRead, Write};
use std::process::ExitCode;

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("lines_by_owner: {e}");
            ExitCode::from(2)
        }
    }
}

fn run() -> Result<(), String> {
    let mut args = std::env::args().skip(1);
    let (mut db, mut rp, mut nodes, mut rf, mut sgd) =
        (None, "autogen".to_string(), Vec::new(), 1u32, None);
    let mut owner: Option<(u64, bool)> = None;
    while let Some(flag) = args.next() {
        let value = args.next().ok_or(format!("{flag} needs a value"))?;
        let number = |v: &str| {
            v.parse::<i64>()
                .map_err(|_| format!("{flag}: not a number"))
        };
        match flag.as_str() {
            "--db" => db = Some(value),
            "--rp" => rp = value,
            "--nodes" => {
                nodes = value
                    .split(',')
                    .map(|n| n.parse::<u64>().map_err(|_| "--nodes: ids".to_string()))
                    .collect::<Result<_, _>>()?
            }
            "--rf" => rf = number(&value)? as u32,
            "--shard-duration-ns" => sgd = Some(number(&value)?),
            "--owned-by" => owner = Some((number(&value)? as u64, true)),
            "--not-owned-by" => owner = Some((number(&value)? as u64, false)),
            other => return Err(format!("unknown option {other}")),
        }
    }
    let db = db.ok_or("--db is required")?;
    let sgd = sgd.ok_or("--shard-duration-ns is required")?;
    let (node, keep_owned) = owner.ok_or("--owned-by or --not-owned-by is required")?;
    let membership = Membership::new(nodes);
    let mut groups = HashMap::new();
    let stdin = std::io::stdin().lock();
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    for line in stdin.split(b'\n') {
        let line = line.map_err(|e| e.to_string())?;
        let parsed = lineproto::parse(Bytes::from(line), Precision::Nanosecond, 0);
        let Some(point) = parsed.points.first().filter(|p| p.has_timestamp) else {
            continue;
        };
        let start = placement::shard_group_start(point.timestamp, sgd);
        let group = groups
            .entry(start)
            .or_insert_with(|| placement::place_group(&db, &rp, start, sgd, rf, &membership));
        let index = placement::shard_index(parsed.series_hash(point), group.shards.len());
        let owned = group.shards[index as usize].owners.contains(&node);
        if owned == keep_owned {
            out.write_all(&parsed.body).map_err(|e| e.to_string())?;
            out.write_all(b"\n").map_err(|e| e.to_string())?;
        }
    }
    out.flush().map_err(|e| e.to_string())
}
