//! Offline inspection of a data directory (`shardcore inspect`): lists shards with
//! their counts, or prints stored points. It replays WALs read-only (a torn tail is
//! reported, not cut), so it is safe beside a stopped node; run it on a copy while the
//! node is running.

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
    let dir = data_dir.join("shards");
    if !dir.exists() {
        return Ok(out);
    }
    let mut entries: Vec<_> = std::fs::read_dir(dir)?.collect::<Result<_, _>>()?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        match Shard::open_read_only(&entry.path(), config) {
            Ok((shard, report)) => out.push(InspectedShard {
                shard,
                truncated_bytes: report.truncated_bytes,
            }),
            Err(e) => eprintln!("{}: cannot open: {e}", entry.path().display()),
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
