//! Time: the clock, the bounds of a timestamp, and window arithmetic.
//!
//! Timestamps are nanoseconds since the Unix epoch in an `i64`, as InfluxDB keeps them.

/// The earliest timestamp InfluxDB accepts: `i64::MIN` and `i64::MIN + 1` are reserved
/// as sentinels (Go's `models.MinNanoTime`).
pub const MIN_TIME_NS: i64 = i64::MIN + 2;
/// The latest timestamp InfluxDB accepts (`models.MaxNanoTime`).
pub const MAX_TIME_NS: i64 = i64::MAX - 1;

/// Wall-clock nanoseconds since the Unix epoch (0 before it, `i64::MAX` past 2262).
pub fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Start of the window of width `every` shifted by `offset` that holds `t`, counting
/// from the Unix epoch: InfluxQL's `GROUP BY time(every, offset)` windows and (offset 0)
/// placement's shard groups.
pub fn window_start(t: i64, every: i64, offset: i64) -> i64 {
    (t - offset).div_euclid(every) * every + offset
}

/// Go's `Time.Truncate(duration)`, which counts from Go's zero time (0001-01-01, a
/// Monday): InfluxDB's shard groups, so its weekly groups start on Mondays. 0 for a
/// duration that is not positive; saturates at `i64::MIN` for the first window.
pub fn go_truncate(t: i64, duration: i64) -> i64 {
    if duration <= 0 {
        return 0;
    }
    const GO_ZERO_TO_UNIX_NS: i128 = 62_135_596_800 * 1_000_000_000;
    let since_zero = t as i128 + GO_ZERO_TO_UNIX_NS;
    (t as i128 - since_zero.rem_euclid(duration as i128)).max(i64::MIN as i128) as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_and_go_truncation() {
        assert_eq!(window_start(125, 60, 0), 120);
        assert_eq!(window_start(-1, 60, 0), -60);
        assert_eq!(window_start(125, 60, 10), 70);
        const WEEK: i64 = 7 * 86_400 * 1_000_000_000;
        // 1970-01-01 was a Thursday; Go's weekly truncation lands on Monday 1969-12-29.
        assert_eq!(go_truncate(0, WEEK), -3 * 86_400 * 1_000_000_000);
        assert_eq!(go_truncate(5, 0), 0);
        assert_eq!(go_truncate(i64::MIN + 2, WEEK), i64::MIN);
        assert!(now_ns() > 1_600_000_000_000_000_000);
    }
}
