//! Time zones for `tz('Area/City')`: the system's TZif files (`/usr/share/zoneinfo`,
//! or `$ZONEINFO`), the same source Go's `time.LoadLocation` reads for InfluxDB. Only
//! the transition table is used; instants past its last transition keep the last
//! offset (Debian ships "fat" files with transitions listed to 2037).

use crate::influxql::format::rfc3339_nano;
use std::path::PathBuf;

const NS: i64 = 1_000_000_000;

/// A loaded zone: UTC offsets (seconds) in force from each transition on.
#[derive(Clone, Debug, PartialEq)]
pub struct Zone {
    pub name: String,
    transitions: Vec<i64>,
    offsets: Vec<i32>,
    /// Offset before the first transition.
    initial: i32,
}

fn be_u32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

impl Zone {
    pub fn utc() -> Zone {
        Zone {
            name: "UTC".into(),
            transitions: Vec::new(),
            offsets: Vec::new(),
            initial: 0,
        }
    }

    /// Loads `name` (e.g. `America/Chicago`); `None` when it is not a known zone.
    pub fn load(name: &str) -> Option<Zone> {
        if name == "UTC" || name == "Etc/UTC" || name.is_empty() {
            return Some(Zone::utc());
        }
        let valid = name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "/_+-".contains(c))
            && !name.contains("..")
            && !name.starts_with('/');
        if !valid {
            return None;
        }
        let root = std::env::var_os("ZONEINFO")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("/usr/share/zoneinfo"));
        let bytes = std::fs::read(root.join(name)).ok()?;
        Zone::parse(name, &bytes)
    }

    /// Parses a TZif file (version 1, or the 64-bit block of version 2 and later).
    pub fn parse(name: &str, b: &[u8]) -> Option<Zone> {
        if b.get(0..4)? != b"TZif" {
            return None;
        }
        let version = *b.get(4)?;
        let counts = |at: usize| -> Option<[usize; 6]> {
            let mut c = [0usize; 6];
            for (i, v) in c.iter_mut().enumerate() {
                *v = be_u32(b, at + 20 + 4 * i)? as usize;
            }
            Some(c)
        };
        let [isut, isstd, leap, time, typ, chars] = counts(0)?;
        let v1_len = time * 5 + typ * 6 + chars + leap * 8 + isstd + isut;
        let (base, wide) = if version >= b'2' {
            (44 + v1_len, true)
        } else {
            (0, false)
        };
        let [_, _, _, time, typ, _] = counts(base)?;
        let mut at = base + 44;
        let width = if wide { 8 } else { 4 };
        let mut transitions = Vec::with_capacity(time);
        for _ in 0..time {
            let t = if wide {
                i64::from_be_bytes(b.get(at..at + 8)?.try_into().ok()?)
            } else {
                i32::from_be_bytes(b.get(at..at + 4)?.try_into().ok()?) as i64
            };
            transitions.push(t);
            at += width;
        }
        let indices: Vec<u8> = b.get(at..at + time)?.to_vec();
        at += time;
        let mut types = Vec::with_capacity(typ);
        for _ in 0..typ {
            let off = i32::from_be_bytes(b.get(at..at + 4)?.try_into().ok()?);
            let dst = *b.get(at + 4)? != 0;
            types.push((off, dst));
            at += 6;
        }
        let offsets = indices
            .iter()
            .map(|&i| types.get(i as usize).map(|t| t.0))
            .collect::<Option<Vec<i32>>>()?;
        // Before the first transition: the first standard-time type, as Go does.
        let initial = types
            .iter()
            .find(|t| !t.1)
            .or(types.first())
            .map(|t| t.0)
            .unwrap_or(0);
        Some(Zone {
            name: name.to_string(),
            transitions,
            offsets,
            initial,
        })
    }

    /// UTC offset in nanoseconds at instant `t_ns`.
    pub fn offset_ns(&self, t_ns: i64) -> i64 {
        let secs = t_ns.div_euclid(NS);
        let i = self.transitions.partition_point(|&t| t <= secs);
        let off = if i == 0 {
            self.initial
        } else {
            self.offsets[i - 1]
        };
        off as i64 * NS
    }

    /// RFC3339 with nanoseconds in this zone: `2026-01-04T18:00:00-06:00`, `Z` at UTC.
    pub fn format(&self, t_ns: i64) -> String {
        let off = self.offset_ns(t_ns);
        if off == 0 {
            return rfc3339_nano(t_ns);
        }
        let local = rfc3339_nano(t_ns + off);
        let base = local.trim_end_matches('Z');
        let mins = (off / NS / 60).abs();
        let sign = if off < 0 { '-' } else { '+' };
        format!("{base}{sign}{:02}:{:02}", mins / 60, mins % 60)
    }

    /// The window containing `t` for GROUP BY time(every, offset), as InfluxDB's
    /// `IteratorOptions.Window` computes it in a zone: truncated in local time, the
    /// start corrected once if the offset differs there.
    pub fn window_start(&self, t: i64, every: i64, offset: i64) -> i64 {
        let t = t - offset;
        let zone = self.offset_ns(t);
        let dt = (t + zone).rem_euclid(every);
        let mut start = t - dt;
        let start_off = self.offset_ns(start);
        let o = zone - start_off;
        if o != 0 && o.abs() < every {
            start += o;
        }
        start + offset
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_and_formats_from_the_system_zones() {
        let Some(chicago) = Zone::load("America/Chicago") else {
            eprintln!("skipped: no /usr/share/zoneinfo (install tzdata)");
            return;
        };
        let t = crate::influxql::format::parse_time("2026-01-05T00:00:00Z").unwrap();
        assert_eq!(chicago.offset_ns(t), -6 * 3600 * NS);
        assert_eq!(chicago.format(t), "2026-01-04T18:00:00-06:00");
        let july = crate::influxql::format::parse_time("2026-07-05T00:00:00Z").unwrap();
        assert_eq!(chicago.offset_ns(july), -5 * 3600 * NS);
        let day = 86_400 * NS;
        assert_eq!(
            chicago.format(chicago.window_start(t, day, 0)),
            "2026-01-04T00:00:00-06:00"
        );
        assert!(Zone::load("Nowhere/Land").is_none());
        assert!(Zone::load("../etc/passwd").is_none());
        assert_eq!(Zone::utc().format(0), "1970-01-01T00:00:00Z");
    }
}
