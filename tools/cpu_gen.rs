//! Deterministic TSBS-compatible `cpu-only` data in line protocol.
//!
//! One line per host every 10 s, emitted time-major (all hosts at t0, then t0+10s, ...):
//! measurement `cpu`, the 10 TSBS tags in TSBS order (hostname, region, datacenter,
//! rack, os, arch, team, service, service_version, service_environment) and the 10
//! TSBS float fields, nanosecond timestamps. Tag values are drawn per host from the
//! seed like TSBS does; each field is a random walk clamped to [0, 100] with a
//! triangular step of at most ±1.27, kept in fixed point (hundredths) so a value is
//! written with integer math (`58.13`), never through float formatting.
//!
//! The same (hosts, seed, start) gives the same bytes: the only randomness is a
//! splitmix64 stream consumed in a fixed order (all host tags, then all initial values,
//! then the steps line by line).
//!
//! Back of the envelope: a line is ~365 bytes (~170 of tags, ~135 of field names and
//! separators, ~50 of values, 21 of timestamp), so 5000 lines are ~1.8 MB and 1 M
//! lines ~365 MB.

use std::fmt;

/// Fields per generated line (what `values` counts).
pub const FIELDS_PER_LINE: u64 = 10;
/// Time between two rows of one host.
pub const STEP_NS: i64 = 10_000_000_000;
/// 2016-01-01T00:00:00Z, TSBS's default start.
#[allow(dead_code)] // the tests and benches/wal.rs use it
pub const TSBS_START_NS: i64 = 1_451_606_400_000_000_000;

/// The field names with their separators, so a line is a handful of slice copies.
const FIELD_KEYS: [&str; 10] = [
    " usage_user=",
    ",usage_system=",
    ",usage_idle=",
    ",usage_nice=",
    ",usage_iowait=",
    ",usage_irq=",
    ",usage_softirq=",
    ",usage_steal=",
    ",usage_guest=",
    ",usage_guest_nice=",
];

/// TSBS's regions and their datacenters.
const REGIONS: &[(&str, &[&str])] = &[
    (
        "us-east-1",
        &["us-east-1a", "us-east-1b", "us-east-1c", "us-east-1e"],
    ),
    ("us-west-1", &["us-west-1a", "us-west-1b"]),
    ("us-west-2", &["us-west-2a", "us-west-2b", "us-west-2c"]),
    ("eu-west-1", &["eu-west-1a", "eu-west-1b", "eu-west-1c"]),
    ("eu-central-1", &["eu-central-1a", "eu-central-1b"]),
    ("ap-southeast-1", &["ap-southeast-1a", "ap-southeast-1b"]),
    ("ap-southeast-2", &["ap-southeast-2a", "ap-southeast-2b"]),
    ("ap-northeast-1", &["ap-northeast-1a", "ap-northeast-1c"]),
    ("sa-east-1", &["sa-east-1a", "sa-east-1b", "sa-east-1c"]),
];
const OSES: &[&str] = &["Ubuntu16.10", "Ubuntu16.04LTS", "Ubuntu15.10"];
const ARCHES: &[&str] = &["x64", "x86"];
const TEAMS: &[&str] = &["SF", "NYC", "LON", "CHI"];
const ENVIRONMENTS: &[&str] = &["production", "staging", "test"];

/// Field values are hundredths: 0..=MAX_VALUE is 0.00..=100.00.
const MAX_VALUE: i32 = 10_000;

/// "00".."99", for writing two digits at once.
const DIGIT_PAIRS: &[u8; 200] = b"0001020304050607080910111213141516171819\
2021222324252627282930313233343536373839\
4041424344454647484950515253545556575859\
6061626364656667686970717273747576777879\
8081828384858687888990919293949596979899";

/// splitmix64: tiny, fast, and good enough for benchmark data.
#[derive(Clone, Debug)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    pub fn new(seed: u64) -> SplitMix64 {
        SplitMix64(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0; the modulo bias is irrelevant here).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len())]
    }
}

/// Generates the cpu-only use case line by line.
pub struct CpuGenerator {
    /// Per host: `cpu,hostname=host_i,...,service_environment=x` (no trailing space).
    prefixes: Vec<Vec<u8>>,
    /// Per host and field: the current value in hundredths.
    values: Vec<[i32; 10]>,
    rng: SplitMix64,
    host: usize,
    time_ns: i64,
    /// ` <time_ns>\n` of the current round.
    time_suffix: Vec<u8>,
}

impl CpuGenerator {
    /// A generator of `hosts` hosts (at least one) starting at `start_ns`.
    pub fn new(hosts: usize, seed: u64, start_ns: i64) -> CpuGenerator {
        let hosts = hosts.max(1);
        let mut rng = SplitMix64::new(seed);
        let prefixes = (0..hosts).map(|h| host_prefix(&mut rng, h)).collect();
        let values = (0..hosts)
            .map(|_| std::array::from_fn(|_| rng.below(MAX_VALUE as usize + 1) as i32))
            .collect();
        let mut generator = CpuGenerator {
            prefixes,
            values,
            rng,
            host: 0,
            time_ns: start_ns,
            time_suffix: Vec::with_capacity(24),
        };
        generator.set_time_suffix();
        generator
    }

    fn set_time_suffix(&mut self) {
        self.time_suffix.clear();
        self.time_suffix.push(b' ');
        write_i64(&mut self.time_suffix, self.time_ns);
        self.time_suffix.push(b'\n');
    }

    /// Appends the next line (time-major order) to `out`.
    pub fn write_line(&mut self, out: &mut Vec<u8>) {
        out.reserve(512);
        out.extend_from_slice(&self.prefixes[self.host]);
        self.step_values();
        for (key, &value) in FIELD_KEYS.iter().zip(self.values[self.host].iter()) {
            out.extend_from_slice(key.as_bytes());
            write_hundredths(out, value);
        }
        out.extend_from_slice(&self.time_suffix);
        self.host += 1;
        if self.host == self.prefixes.len() {
            self.host = 0;
            self.time_ns = self.time_ns.saturating_add(STEP_NS);
            self.set_time_suffix();
        }
    }

    /// Appends the next `n` lines to `out`.
    pub fn write_lines(&mut self, n: u64, out: &mut Vec<u8>) {
        for _ in 0..n {
            self.write_line(out);
        }
    }

    /// One random-walk step for every field of the current host: four 14-bit draws per
    /// u64, each step the difference of two 7-bit uniforms (triangular, ±1.27).
    fn step_values(&mut self) {
        let values = &mut self.values[self.host];
        for chunk in values.chunks_mut(4) {
            let mut bits = self.rng.next_u64();
            for v in chunk {
                let step = (bits & 127) as i32 - ((bits >> 7) & 127) as i32;
                *v = (*v + step).clamp(0, MAX_VALUE);
                bits >>= 14;
            }
        }
    }
}

/// The tag set of one host, drawn in TSBS order, as `,hostname=...` (the devops
/// measurements share it).
pub fn host_tags(rng: &mut SplitMix64, host: usize) -> Vec<u8> {
    let mut prefix = host_prefix(rng, host);
    prefix.drain(..3);
    prefix
}

/// The tag set of one host, drawn in TSBS order.
fn host_prefix(rng: &mut SplitMix64, host: usize) -> Vec<u8> {
    let (region, datacenters) = REGIONS[rng.below(REGIONS.len())];
    let datacenter = rng.pick(datacenters);
    let rack = rng.below(100);
    let os = rng.pick(OSES);
    let arch = rng.pick(ARCHES);
    let team = rng.pick(TEAMS);
    let service = rng.below(20);
    let version = rng.below(2);
    let environment = rng.pick(ENVIRONMENTS);
    format!(
        "cpu,hostname=host_{host},region={region},datacenter={datacenter},rack={rack},\
         os={os},arch={arch},team={team},service={service},service_version={version},\
         service_environment={environment}"
    )
    .into_bytes()
}

/// Writes `v` hundredths (0..=10000) as `I.FF`.
fn write_hundredths(out: &mut Vec<u8>, v: i32) {
    let v = v.clamp(0, MAX_VALUE) as usize;
    let (int, frac) = (v / 100, v % 100);
    if int == 100 {
        out.extend_from_slice(b"100");
    } else if int >= 10 {
        out.extend_from_slice(&DIGIT_PAIRS[int * 2..int * 2 + 2]);
    } else {
        out.push(b'0' + int as u8);
    }
    out.push(b'.');
    out.extend_from_slice(&DIGIT_PAIRS[frac * 2..frac * 2 + 2]);
}

/// Writes a decimal integer without going through `fmt`.
pub fn write_i64(out: &mut Vec<u8>, v: i64) {
    if v < 0 {
        out.push(b'-');
    }
    let mut n = v.unsigned_abs();
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&buf[i..]);
}

/// A `--start` value that is neither nanoseconds nor RFC 3339.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimeParseError(pub String);

impl fmt::Display for TimeParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid start time {:?}: expected nanoseconds since the epoch or RFC 3339 \
             (e.g. 2016-01-01T00:00:00Z)",
            self.0
        )
    }
}

impl std::error::Error for TimeParseError {}

/// Parses nanoseconds since the epoch or an RFC 3339 time
/// (`YYYY-MM-DDTHH:MM:SS[.fraction](Z|+HH:MM|-HH:MM)`).
pub fn parse_start(s: &str) -> Result<i64, TimeParseError> {
    let err = || TimeParseError(s.to_string());
    if let Ok(ns) = s.parse::<i64>() {
        return Ok(ns);
    }
    let b = s.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
        return Err(err());
    }
    if b[13] != b':' || b[16] != b':' {
        return Err(err());
    }
    let num = |r: std::ops::Range<usize>| -> Result<i64, TimeParseError> {
        let part = &s[r];
        if part.bytes().all(|c| c.is_ascii_digit()) {
            part.parse::<i64>().map_err(|_| err())
        } else {
            Err(err())
        }
    };
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || minute > 59 {
        return Err(err());
    }
    if second > 60 {
        return Err(err());
    }
    let (frac_ns, rest) = parse_fraction(&s[19..]).ok_or_else(err)?;
    let offset_s = parse_offset(rest).ok_or_else(err)?;
    let days = shardcore::influxql::format::days_from_civil(year, month, day);
    let secs = days * 86_400 + hour * 3600 + minute * 60 + second - offset_s;
    secs.checked_mul(1_000_000_000)
        .and_then(|ns| ns.checked_add(frac_ns))
        .ok_or_else(err)
}

/// `.123456789` -> (ns, rest); no fraction -> (0, input).
fn parse_fraction(s: &str) -> Option<(i64, &str)> {
    let Some(digits) = s.strip_prefix('.') else {
        return Some((0, s));
    };
    let len = digits.bytes().take_while(|c| c.is_ascii_digit()).count();
    if len == 0 {
        return None;
    }
    let mut ns = 0i64;
    for (i, c) in digits.bytes().take(len).enumerate() {
        if i < 9 {
            ns = ns * 10 + i64::from(c - b'0');
        }
    }
    for _ in len..9 {
        ns *= 10;
    }
    Some((ns, &digits[len..]))
}

/// `Z` -> 0, `+HH:MM` / `-HH:MM` -> seconds east of UTC.
fn parse_offset(s: &str) -> Option<i64> {
    if s == "Z" || s == "z" {
        return Some(0);
    }
    let b = s.as_bytes();
    if b.len() != 6 || b[3] != b':' {
        return None;
    }
    let sign = match b[0] {
        b'+' => 1,
        b'-' => -1,
        _ => return None,
    };
    let hours: i64 = s[1..3].parse().ok()?;
    let minutes: i64 = s[4..6].parse().ok()?;
    Some(sign * (hours * 3600 + minutes * 60))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_times_parse() {
        assert_eq!(parse_start("2016-01-01T00:00:00Z"), Ok(TSBS_START_NS));
        assert_eq!(parse_start("1451606400000000000"), Ok(TSBS_START_NS));
        assert_eq!(
            parse_start("2016-01-01T01:00:00.5+01:00"),
            Ok(TSBS_START_NS + 500_000_000)
        );
        assert!(parse_start("2016-13-01T00:00:00Z").is_err());
        assert!(parse_start("yesterday").is_err());
    }

    #[test]
    fn same_seed_same_bytes_and_shape() {
        let mut a = Vec::new();
        let mut b = Vec::new();
        CpuGenerator::new(3, 7, 0).write_lines(9, &mut a);
        CpuGenerator::new(3, 7, 0).write_lines(9, &mut b);
        assert_eq!(a, b);
        let text = String::from_utf8(a).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 9);
        assert!(lines[0].starts_with("cpu,hostname=host_0,region="));
        assert!(lines[3].starts_with("cpu,hostname=host_0,"));
        assert!(lines[3].ends_with(" 10000000000"));
        assert_eq!(lines[4].split(' ').nth(1).unwrap().split(',').count(), 10);
    }

    #[test]
    fn hundredths_format() {
        let mut out = Vec::new();
        for v in [0, 5, 99, 100, 1234, 9999, 10_000] {
            write_hundredths(&mut out, v);
            out.push(b' ');
        }
        assert_eq!(out, b"0.00 0.05 0.99 1.00 12.34 99.99 100.00 ");
    }
}
