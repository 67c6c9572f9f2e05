//! Offline inspection of a data directory (`shardcore inspect`): lists shard
//! partitions with their counts, prints stored points, or exports them as line
//! protocol. It replays WALs read-only (a torn tail is reported, not cut), so it is
//! safe beside a stopped node; run it on a copy while the node is running. It reads
//! format 1 directories too (a shard stored whole), which is how their data moves to
//! format 2 (see [`crate::tsdb::layout`]).

use crate::tsdb::engine::wal::WalConfig;
use crate::tsdb::shard::{Shard, StoredPoint};
use std::path::Path;
use std::time::Duration;

/// One shard found on disk, with its points when asked for.
pub struct InspectedShard {
    pub shard: Shard,
    pub truncated_bytes: u64,
}

/// Opens every shard under `data_dir` read-only.
pub fn open_shards(data_dir: &Path) -> std::io::Result<Vec<InspectedShard>> {
    let config = WalConfig {
        fsync_delay: Duration::ZERO,
        segment_size_bytes: u64::MAX,
        max_pending_bytes: u64::MAX,
    };
    let mut out = Vec::new();
    let mut dirs: Vec<_> = crate::tsdb::layout::partitions_on_disk(data_dir)?
        .into_iter()
        .map(|p| p.dir)
        .collect();
    dirs.extend(crate::tsdb::layout::format_one_shards(data_dir));
    for dir in dirs {
        match Shard::open_read_only(&dir, config) {
            Ok((shard, report)) => out.push(InspectedShard {
                shard,
                truncated_bytes: report.truncated_bytes,
            }),
            Err(e) => eprintln!("{}: cannot open: {e}", dir.display()),
        }
    }
    Ok(out)
}

/// Points of `measurement` / `series` in `[start, end]` across all shards of `database`.
pub fn read_points(
    shards: &mut [InspectedShard],
    database: &str,
    measurement: Option<&[u8]>,
    series: Option<&[u8]>,
    start_ns: i64,
    end_ns: i64,
) -> Vec<(u64, StoredPoint)> {
    let mut out = Vec::new();
    for s in shards.iter_mut() {
        if s.shard.meta.database != database {
            continue;
        }
        let id = s.shard.meta.id;
        out.extend(
            s.shard
                .read(measurement, series, start_ns, end_ns)
                .into_iter()
                .map(|p| (id, p)),
        );
    }
    out
}

/// Writes every stored point as line protocol in the `influx -import` format (`# DDL`
/// then `# DML` with a `# CONTEXT-DATABASE:` / `# CONTEXT-RETENTION-POLICY:` per
/// shard), nanosecond timestamps; one line per (series, field, time). Returns the
/// points written.
pub fn export(
    shards: &mut [InspectedShard],
    out: &mut impl std::io::Write,
) -> std::io::Result<u64> {
    let mut databases: Vec<(String, String)> = shards
        .iter()
        .map(|s| {
            (
                s.shard.meta.database.clone(),
                s.shard.meta.retention_policy.clone(),
            )
        })
        .collect();
    databases.sort();
    databases.dedup();
    writeln!(out, "# DDL")?;
    let mut seen = std::collections::BTreeSet::new();
    for (db, rp) in &databases {
        if seen.insert(db.clone()) {
            writeln!(
                out,
                "CREATE DATABASE {}",
                crate::influxql::ast::quote_ident(db)
            )?;
        }
        if rp != "autogen" {
            writeln!(
                out,
                "CREATE RETENTION POLICY {} ON {} DURATION 0s REPLICATION 1",
                crate::influxql::ast::quote_ident(rp),
                crate::influxql::ast::quote_ident(db)
            )?;
        }
    }
    writeln!(out, "# DML")?;
    let mut points = 0u64;
    for s in shards.iter_mut() {
        writeln!(out, "# CONTEXT-DATABASE: {}", s.shard.meta.database)?;
        writeln!(
            out,
            "# CONTEXT-RETENTION-POLICY: {}",
            s.shard.meta.retention_policy
        )?;
        for p in s.shard.read(None, None, i64::MIN, i64::MAX) {
            let mut field = Vec::new();
            crate::lineproto::escape_into(p.field.as_bytes(), b",= ", &mut field);
            writeln!(
                out,
                "{} {}={} {}",
                p.series_key,
                String::from_utf8_lossy(&field),
                p.value.to_line_protocol(),
                p.timestamp
            )?;
            points += 1;
        }
    }
    Ok(points)
}
