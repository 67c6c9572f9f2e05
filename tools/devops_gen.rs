//! The TSBS `devops` use case: per host and timestamp (10 s apart) one line of each of
//! nine measurements — cpu, diskio, disk, kernel, mem, net, nginx, postgresl, redis —
//! with TSBS's measurement, tag and field names (`tsbs/pkg/data/usecases/devops`). Every
//! line carries the host's ten TSBS tags; diskio, disk, net, nginx and redis add their
//! own. Values are random walks like the cpu-only generator's; counters (integers, `i`
//! suffix) only grow, percentages are floats in 0..100.

use crate::cpu_gen::{host_tags, write_i64, SplitMix64, STEP_NS};

/// How a field's value moves.
#[derive(Clone, Copy)]
enum Kind {
    /// A float percentage, kept in hundredths (0..=10000).
    Percent,
    /// A monotonically growing integer counter.
    Counter,
    /// An integer gauge in 0..=max.
    Gauge(i64),
}

struct Measurement {
    name: &'static str,
    /// Extra tags after the host's (`,key=value...`).
    tags: &'static str,
    fields: &'static [(&'static str, Kind)],
}

use Kind::{Counter as C, Gauge as G, Percent as P};

const MEASUREMENTS: [Measurement; 9] = [
    Measurement {
        name: "cpu",
        tags: "",
        fields: &[
            ("usage_user", P),
            ("usage_system", P),
            ("usage_idle", P),
            ("usage_nice", P),
            ("usage_iowait", P),
            ("usage_irq", P),
            ("usage_softirq", P),
            ("usage_steal", P),
            ("usage_guest", P),
            ("usage_guest_nice", P),
        ],
    },
    Measurement {
        name: "diskio",
        tags: ",serial=123-456-789",
        fields: &[
            ("reads", C),
            ("writes", C),
            ("read_bytes", C),
            ("write_bytes", C),
            ("read_time", C),
            ("write_time", C),
            ("io_time", C),
        ],
    },
    Measurement {
        name: "disk",
        tags: ",path=/dev/sda1,fstype=ext4",
        fields: &[
            ("total", G(1 << 40)),
            ("free", G(1 << 40)),
            ("used", G(1 << 40)),
            ("used_percent", P),
            ("inodes_total", G(1 << 30)),
            ("inodes_free", G(1 << 30)),
            ("inodes_used", G(1 << 30)),
        ],
    },
    Measurement {
        name: "kernel",
        tags: "",
        fields: &[
            ("boot_time", G(2_000_000_000)),
            ("interrupts", C),
            ("context_switches", C),
            ("processes_forked", C),
            ("disk_pages_in", C),
            ("disk_pages_out", C),
        ],
    },
    Measurement {
        name: "mem",
        tags: "",
        fields: &[
            ("total", G(1 << 36)),
            ("available", G(1 << 36)),
            ("used", G(1 << 36)),
            ("free", G(1 << 36)),
            ("cached", G(1 << 36)),
            ("buffered", G(1 << 36)),
            ("used_percent", P),
            ("available_percent", P),
            ("buffered_percent", P),
        ],
    },
    Measurement {
        name: "net",
        tags: ",interface=eth0",
        fields: &[
            ("bytes_sent", C),
            ("bytes_recv", C),
            ("packets_sent", C),
            ("packets_recv", C),
            ("err_in", C),
            ("err_out", C),
            ("drop_in", C),
            ("drop_out", C),
        ],
    },
    Measurement {
        name: "nginx",
        tags: ",port=12345,server=nginx_1",
        fields: &[
            ("accepts", C),
            ("active", G(10_000)),
            ("handled", C),
            ("reading", G(10_000)),
            ("requests", C),
            ("waiting", G(10_000)),
            ("writing", G(10_000)),
        ],
    },
    Measurement {
        name: "postgresl",
        tags: "",
        fields: &[
            ("numbackends", G(1000)),
            ("xact_commit", C),
            ("xact_rollback", C),
            ("blks_read", C),
            ("blks_hit", C),
            ("tup_returned", C),
            ("tup_fetched", C),
            ("tup_inserted", C),
            ("tup_updated", C),
            ("tup_deleted", C),
            ("conflicts", C),
            ("temp_files", C),
            ("temp_bytes", C),
            ("deadlocks", C),
            ("blk_read_time", C),
            ("blk_write_time", C),
        ],
    },
    Measurement {
        name: "redis",
        tags: ",port=6379,server=redis_1",
        fields: &[
            ("uptime_in_seconds", C),
            ("total_connections_received", C),
            ("expired_keys", C),
            ("evicted_keys", C),
            ("keyspace_hits", C),
            ("keyspace_misses", C),
            ("instantaneous_ops_per_sec", G(100_000)),
            ("instantaneous_input_kbps", G(100_000)),
            ("instantaneous_output_kbps", G(100_000)),
            ("connected_clients", G(10_000)),
            ("used_memory", G(1 << 34)),
            ("used_memory_rss", G(1 << 34)),
            ("used_memory_peak", G(1 << 34)),
            ("used_memory_lua", G(1 << 20)),
            ("rdb_changes_since_last_save", C),
            ("sync_full", C),
            ("sync_partial_ok", C),
            ("sync_partial_err", C),
            ("pubsub_channels", G(1000)),
            ("pubsub_patterns", G(1000)),
            ("latest_fork_usec", G(1_000_000)),
            ("connected_slaves", G(10)),
            ("master_repl_offset", C),
            ("repl_backlog_active", G(1)),
            ("repl_backlog_size", G(1 << 24)),
            ("repl_backlog_histlen", G(1 << 24)),
            ("mem_fragmentation_ratio", P),
            ("used_cpu_sys", C),
            ("used_cpu_user", C),
            ("used_cpu_sys_children", C),
            ("used_cpu_user_children", C),
        ],
    },
];

/// Lines per host per timestamp.
pub const LINES_PER_ROW: u64 = MEASUREMENTS.len() as u64;

/// Generates the devops use case line by line (time-major: every host's nine lines
/// for one timestamp, then the next timestamp).
pub struct DevopsGenerator {
    /// Per host: `,hostname=host_i,...` (the host's TSBS tags).
    tags: Vec<Vec<u8>>,
    /// Per host, per measurement, per field: the current value.
    values: Vec<Vec<Vec<i64>>>,
    rng: SplitMix64,
    host: usize,
    measurement: usize,
    time_ns: i64,
}

impl DevopsGenerator {
    pub fn new(hosts: usize, seed: u64, start_ns: i64) -> DevopsGenerator {
        let hosts = hosts.max(1);
        let mut rng = SplitMix64::new(seed);
        let tags = (0..hosts).map(|h| host_tags(&mut rng, h)).collect();
        let values = (0..hosts)
            .map(|_| {
                MEASUREMENTS
                    .iter()
                    .map(|m| {
                        m.fields
                            .iter()
                            .map(|(_, kind)| match kind {
                                Kind::Percent => rng.below(10_001) as i64,
                                Kind::Counter => rng.below(1_000_000) as i64,
                                Kind::Gauge(max) => (rng.next_u64() % (*max as u64 + 1)) as i64,
                            })
                            .collect()
                    })
                    .collect()
            })
            .collect();
        DevopsGenerator {
            tags,
            values,
            rng,
            host: 0,
            measurement: 0,
            time_ns: start_ns,
        }
    }

    /// Appends the next line to `out`.
    pub fn write_line(&mut self, out: &mut Vec<u8>) {
        let m = &MEASUREMENTS[self.measurement];
        out.extend_from_slice(m.name.as_bytes());
        out.extend_from_slice(&self.tags[self.host]);
        out.extend_from_slice(m.tags.as_bytes());
        let values = &mut self.values[self.host][self.measurement];
        for (i, ((key, kind), v)) in m.fields.iter().zip(values.iter_mut()).enumerate() {
            let bits = self.rng.next_u64();
            let step = (bits & 255) as i64 - ((bits >> 8) & 255) as i64;
            out.push(if i == 0 { b' ' } else { b',' });
            out.extend_from_slice(key.as_bytes());
            out.push(b'=');
            match kind {
                Kind::Percent => {
                    *v = (*v + step).clamp(0, 10_000);
                    write_i64(out, *v / 100);
                    out.push(b'.');
                    out.push(b'0' + (*v % 100 / 10) as u8);
                    out.push(b'0' + (*v % 10) as u8);
                }
                Kind::Counter => {
                    *v = v.saturating_add(step.abs());
                    write_i64(out, *v);
                    out.push(b'i');
                }
                Kind::Gauge(max) => {
                    *v = (*v + step).clamp(0, *max);
                    write_i64(out, *v);
                    out.push(b'i');
                }
            }
        }
        out.push(b' ');
        write_i64(out, self.time_ns);
        out.push(b'\n');
        self.measurement += 1;
        if self.measurement == MEASUREMENTS.len() {
            self.measurement = 0;
            self.host += 1;
            if self.host == self.tags.len() {
                self.host = 0;
                self.time_ns = self.time_ns.saturating_add(STEP_NS);
            }
        }
    }

    pub fn write_lines(&mut self, n: u64, out: &mut Vec<u8>) {
        for _ in 0..n {
            self.write_line(out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devops_lines_have_tsbs_measurements_and_are_deterministic() {
        let lines = |seed| {
            let mut g = DevopsGenerator::new(2, seed, 0);
            let mut out = Vec::new();
            g.write_lines(2 * LINES_PER_ROW * 2, &mut out);
            String::from_utf8(out).unwrap()
        };
        let text = lines(5);
        assert_eq!(text, lines(5));
        assert_ne!(text, lines(6));
        let all: Vec<&str> = text.lines().collect();
        assert_eq!(all.len(), 36);
        let names: Vec<&str> = all[..9]
            .iter()
            .map(|l| l.split(',').next().unwrap())
            .collect();
        assert_eq!(
            names,
            [
                "cpu",
                "diskio",
                "disk",
                "kernel",
                "mem",
                "net",
                "nginx",
                "postgresl",
                "redis"
            ]
        );
        assert!(all[0].starts_with("cpu,hostname=host_0,region="));
        assert!(all[9].starts_with("cpu,hostname=host_1,"));
        assert!(all[1].contains(",serial=123-456-789 reads="));
        assert!(
            all[18].ends_with(" 10000000000"),
            "second timestamp 10 s later"
        );
        // Every line parses as line protocol with its measurement's field count.
        for l in &all {
            let m = MEASUREMENTS
                .iter()
                .find(|m| l.starts_with(&format!("{},", m.name)))
                .unwrap();
            let fields = l.split(' ').nth(1).unwrap();
            assert_eq!(fields.split(',').count(), m.fields.len(), "{l}");
        }
    }
}
