//! Offline inspection of a data directory (`shardcore inspect`): lists shard
//! partitions with their counts, prints stored points, exports them as line
//! protocol, or lists the data files (blocks, codecs, bytes per value per field),
//! verifying every crc on request. It replays WALs read-only (a torn tail is reported, not cut), so it is
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

/// The data files under `data_dir` (`shards/<id>/<partition>/data/*.scd`), sorted.
pub fn data_files(data_dir: &Path) -> std::io::Result<Vec<std::path::PathBuf>> {
    let mut out = Vec::new();
    for p in crate::tsdb::layout::partitions_on_disk(data_dir)? {
        let Ok(entries) = std::fs::read_dir(p.dir.join("data")) else {
            continue;
        };
        out.extend(
            entries
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|e| e == "scd")),
        );
    }
    out.sort();
    Ok(out)
}

/// Per field across the files: type, values, bytes, and blocks per codec pair.
#[derive(Default)]
struct FieldTotals {
    field_type: String,
    values: u64,
    bytes: u64,
    codecs: std::collections::BTreeMap<String, u64>,
}

/// Lists the data files of `data_dir` and, per field, values, bytes, bytes per value
/// and the codecs its blocks chose; with `verify`, reads and decodes every block
/// (crc, codec, times against the index). Returns the number of problems found (files
/// that do not open, blocks that do not verify).
pub fn files_report(
    data_dir: &Path,
    verify: bool,
    out: &mut impl std::io::Write,
) -> std::io::Result<u64> {
    use crate::tsdb::engine::codec::codec_name;
    use crate::tsdb::engine::file::DataFile;
    let mut problems = 0u64;
    let mut fields: std::collections::BTreeMap<String, FieldTotals> = Default::default();
    let (mut all_values, mut all_bytes, mut blocks_checked) = (0u64, 0u64, 0u64);
    writeln!(
        out,
        "file\tseries\tblocks\tvalues\tbytes\tbytes_per_value\twal_boundary"
    )?;
    for path in data_files(data_dir)? {
        let file = match DataFile::open(&path) {
            Ok(f) => f,
            Err(e) => {
                problems += 1;
                writeln!(out, "{}\tBAD: {e}", path.display())?;
                continue;
            }
        };
        let values = file.values();
        let blocks: usize = file
            .series
            .iter()
            .flat_map(|s| &s.fields)
            .map(|f| f.blocks.len())
            .sum();
        writeln!(
            out,
            "{}\t{}\t{}\t{}\t{}\t{:.2}\t{}",
            path.display(),
            file.series.len(),
            blocks,
            values,
            file.size,
            file.size as f64 / values.max(1) as f64,
            file.footer.wal_boundary
        )?;
        all_values += values;
        all_bytes += file.size;
        for s in &file.series {
            for f in &s.fields {
                let name =
                    String::from_utf8_lossy(&crate::lineproto::unescape(&f.name)).into_owned();
                let totals = fields.entry(name).or_default();
                totals.field_type = f.field_type.to_string();
                for b in &f.blocks {
                    totals.values += b.count as u64;
                    totals.bytes += b.len as u64;
                    let image = match file.read_block_bytes(b) {
                        Ok(image) => image,
                        Err(e) => {
                            problems += 1;
                            writeln!(out, "{}\tblock at {}: {e}", path.display(), b.offset)?;
                            continue;
                        }
                    };
                    if let Some((t, v)) = DataFile::block_codecs(&image) {
                        let key = format!("{}+{}", codec_name(t), codec_name(v));
                        *totals.codecs.entry(key).or_default() += 1;
                    }
                    if verify {
                        blocks_checked += 1;
                        if let Err(e) = file.read_block(b, f.field_type) {
                            problems += 1;
                            writeln!(
                                out,
                                "{}\tseries {}\tBAD BLOCK: {e}",
                                path.display(),
                                String::from_utf8_lossy(&s.key)
                            )?;
                        }
                    }
                }
            }
        }
    }
    writeln!(
        out,
        "total\t\t\t{all_values}\t{all_bytes}\t{:.2}",
        all_bytes as f64 / all_values.max(1) as f64
    )?;
    writeln!(out)?;
    writeln!(
        out,
        "field\ttype\tvalues\tbytes\tbytes_per_value\tblocks by codec (times+values)"
    )?;
    for (name, t) in &fields {
        let codecs: Vec<String> = t.codecs.iter().map(|(k, n)| format!("{k}:{n}")).collect();
        writeln!(
            out,
            "{name}\t{}\t{}\t{}\t{:.2}\t{}",
            t.field_type,
            t.values,
            t.bytes,
            t.bytes as f64 / t.values.max(1) as f64,
            codecs.join(" ")
        )?;
    }
    if verify {
        writeln!(out)?;
        writeln!(out, "verified {blocks_checked} blocks: {problems} problems")?;
    }
    Ok(problems)
}
