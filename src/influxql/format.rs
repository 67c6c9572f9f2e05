//! Text forms InfluxDB's answers use: Go's float formatting in JSON, RFC3339Nano times,
//! InfluxQL duration literals; and the parsing of time strings in WHERE clauses.

/// Formats a float as Go's `encoding/json` does: shortest round-trip digits, plain
/// decimal for 1e-6 <= |x| < 1e21, otherwise `1e+21` / `1e-7` style.
pub fn go_float(x: f64) -> String {
    let abs = x.abs();
    if abs != 0.0 && !(1e-6..1e21).contains(&abs) {
        let s = format!("{x:e}");
        let (mantissa, exp) = s.split_once('e').expect("exponent form");
        if let Some(neg) = exp.strip_prefix('-') {
            format!("{mantissa}e-{neg}")
        } else {
            format!("{mantissa}e+{exp:0>2}")
        }
    } else {
        format!("{x}")
    }
}

/// An InfluxQL duration literal (`FormatDuration`): the largest unit that divides it.
pub fn influx_duration(ns: i64) -> String {
    if ns == 0 {
        return "0s".into();
    }
    const UNITS: [(i64, &str); 8] = [
        (604_800_000_000_000, "w"),
        (86_400_000_000_000, "d"),
        (3_600_000_000_000, "h"),
        (60_000_000_000, "m"),
        (1_000_000_000, "s"),
        (1_000_000, "ms"),
        (1_000, "u"),
        (1, "ns"),
    ];
    for (div, unit) in UNITS {
        if ns % div == 0 {
            return format!("{}{unit}", ns / div);
        }
    }
    unreachable!("1 divides everything")
}

const NS_PER_S: i64 = 1_000_000_000;

/// Days since 1970-01-01 of a civil date (proleptic Gregorian; Howard Hinnant's
/// algorithm). The load tool's `--start` parsing uses it too.
pub fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// RFC3339 with nanoseconds, trailing zeros of the fraction trimmed, as Go's
/// `time.RFC3339Nano` (`2026-01-05T00:00:00Z`, `2026-01-05T00:00:00.5Z`).
pub fn rfc3339_nano(ns: i64) -> String {
    let secs = ns.div_euclid(NS_PER_S);
    let frac = ns.rem_euclid(NS_PER_S);
    let (y, mo, d) = civil_from_days(secs.div_euclid(86_400));
    let sod = secs.rem_euclid(86_400);
    let mut s = format!(
        "{y:04}-{mo:02}-{d:02}T{:02}:{:02}:{:02}",
        sod / 3600,
        (sod / 60) % 60,
        sod % 60
    );
    if frac != 0 {
        let digits = format!("{frac:09}");
        s.push('.');
        s.push_str(digits.trim_end_matches('0'));
    }
    s.push('Z');
    s
}

/// Parses the time strings InfluxQL accepts in comparisons with `time`:
/// `2006-01-02`, `2006-01-02 15:04:05[.nnn]`, and RFC3339 with `Z` or an offset.
pub fn parse_time(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    let num = |from: usize, len: usize| -> Option<i64> {
        let part = b.get(from..from + len)?;
        if !part.iter().all(u8::is_ascii_digit) {
            return None;
        }
        std::str::from_utf8(part).ok()?.parse().ok()
    };
    let (y, mo, d) = (num(0, 4)?, num(5, 2)?, num(8, 2)?);
    if b.get(4) != Some(&b'-') || b.get(7) != Some(&b'-') || !(1..=12).contains(&mo) {
        return None;
    }
    if !(1..=31).contains(&d) {
        return None;
    }
    let day_ns = days_from_civil(y, mo, d).checked_mul(86_400 * NS_PER_S)?;
    if b.len() == 10 {
        return Some(day_ns);
    }
    if !matches!(b.get(10), Some(b'T' | b' ')) {
        return None;
    }
    let (h, mi, sec) = (num(11, 2)?, num(14, 2)?, num(17, 2)?);
    if b.get(13) != Some(&b':') || b.get(16) != Some(&b':') || h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    let mut i = 19;
    let mut frac: i64 = 0;
    if b.get(i) == Some(&b'.') {
        i += 1;
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        let digits = &s[start..i];
        if digits.is_empty() || digits.len() > 9 {
            return None;
        }
        frac = format!("{digits:0<9}").parse().ok()?;
    }
    let mut offset: i64 = 0;
    match b.get(i) {
        None if b[10] == b' ' => {}
        Some(b'Z') if i + 1 == b.len() => {}
        Some(sign @ (b'+' | b'-')) if b.len() == i + 6 && b[i + 3] == b':' => {
            let (oh, om) = (num(i + 1, 2)?, num(i + 4, 2)?);
            offset = (oh * 3600 + om * 60) * NS_PER_S;
            if *sign == b'+' {
                offset = -offset;
            }
        }
        _ => return None,
    }
    day_ns
        .checked_add((h * 3600 + mi * 60 + sec) * NS_PER_S + frac)?
        .checked_add(offset)
}

/// Formats nanoseconds as Go's `time.Duration.String()` does (`168h0m0s`, `1m30s`, `0s`).
pub fn go_duration(ns: i64) -> String {
    if ns == 0 {
        return "0s".into();
    }
    let neg = ns < 0;
    let u = ns.unsigned_abs();
    let mut out = String::new();
    if neg {
        out.push('-');
    }
    if u < 1_000_000_000 {
        // Sub-second: the largest unit that keeps the integer part non-zero.
        let (unit, div) = if u < 1_000 {
            ("ns", 1)
        } else if u < 1_000_000 {
            ("µs", 1_000)
        } else {
            ("ms", 1_000_000)
        };
        out.push_str(&trim_fraction(u / div, u % div, div));
        out.push_str(unit);
        return out;
    }
    let secs = u / 1_000_000_000;
    let frac = u % 1_000_000_000;
    let (h, m, s) = (secs / 3600, (secs / 60) % 60, secs % 60);
    if h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if h > 0 || m > 0 {
        out.push_str(&format!("{m}m"));
    }
    out.push_str(&trim_fraction(s, frac, 1_000_000_000));
    out.push('s');
    out
}

fn trim_fraction(int: u64, frac: u64, div: u64) -> String {
    if frac == 0 {
        return int.to_string();
    }
    let width = (div as f64).log10() as usize;
    let digits = format!("{frac:0width$}");
    format!("{int}.{}", digits.trim_end_matches('0'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_as_go_json() {
        assert_eq!(go_float(1.0), "1");
        assert_eq!(go_float(-2.5), "-2.5");
        assert_eq!(go_float(0.1), "0.1");
        assert_eq!(go_float(1e21), "1e+21");
        assert_eq!(go_float(1.5e-7), "1.5e-7");
        assert_eq!(go_float(1e-10), "1e-10");
        assert_eq!(go_float(123456789012.0), "123456789012");
        assert_eq!(go_float(0.0), "0");
    }

    #[test]
    fn times_round_trip() {
        assert_eq!(rfc3339_nano(0), "1970-01-01T00:00:00Z");
        let t = parse_time("2026-01-05T10:20:30.5Z").unwrap();
        assert_eq!(rfc3339_nano(t), "2026-01-05T10:20:30.5Z");
        assert_eq!(parse_time("2026-01-05").unwrap() % 86_400_000_000_000, 0);
        assert_eq!(
            parse_time("2026-01-05T01:00:00+01:00"),
            parse_time("2026-01-05T00:00:00Z")
        );
        assert_eq!(
            parse_time("2026-01-05 00:00:00"),
            parse_time("2026-01-05T00:00:00Z")
        );
        assert_eq!(rfc3339_nano(-1), "1969-12-31T23:59:59.999999999Z");
        assert!(parse_time("2026-13-05").is_none());
        assert!(parse_time("yesterday").is_none());
    }

    #[test]
    fn durations_as_influxql() {
        assert_eq!(influx_duration(3_600_000_000_000), "1h");
        assert_eq!(influx_duration(90_000_000_000), "90s");
        assert_eq!(influx_duration(604_800_000_000_000), "1w");
    }
}
