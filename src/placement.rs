//! Placement: the one place that decides shard groups, shards, shard ids, owners and
//! owning cores (DESIGN section 2).
//!
//! **Invariant:** placement is a pure function of (db, rp, group start, membership).
//! Nothing here is stored or negotiated; every node computes the same answer, which is
//! why creating a shard needs no consensus. Changing any output of this module changes
//! where existing data lives: the unit tests pin its outputs for fixed inputs.

use crate::base::hash::{fnv1a64, fnv1a64_extend};

/// How the keys of `keys_differing_at_the_end_spread_evenly` land on 2 partitions
/// without the mix (DESIGN's formula), for the record.
#[cfg(test)]
fn unmixed_partition(series_hash: u64, partitions: u32) -> u32 {
    ((series_hash >> 32) % partitions as u64) as u32
}

/// A node in the cluster membership.
pub type NodeId = u64;

/// The sorted, duplicate-free node list placement works over.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Membership {
    nodes: Vec<NodeId>,
}

impl Membership {
    /// Builds a membership from any order of node ids (sorted and de-duplicated here).
    pub fn new(mut nodes: Vec<NodeId>) -> Membership {
        nodes.sort_unstable();
        nodes.dedup();
        assert!(!nodes.is_empty(), "membership needs at least one node");
        Membership { nodes }
    }

    pub fn single(node: NodeId) -> Membership {
        Membership { nodes: vec![node] }
    }

    pub fn nodes(&self) -> &[NodeId] {
        &self.nodes
    }
}

/// Start of the shard group holding `ts_ns`, as InfluxDB computes it: Go's
/// `Time.Truncate(sgd)`, which counts from Go's zero time (0001-01-01, a Monday), so
/// 7-day groups start on Mondays (counting from 1970 would start them on Thursdays).
/// Durations that divide a day give the same groups either way.
pub fn shard_group_start(ts_ns: i64, group_duration_ns: i64) -> i64 {
    debug_assert!(group_duration_ns > 0);
    crate::base::time::go_truncate(ts_ns, group_duration_ns)
}

/// Shard group duration InfluxDB picks when none is given: RP duration < 2 days -> 1h;
/// <= 6 months -> 1 day; longer or infinite (0) -> 7 days.
pub fn default_shard_group_duration_ns(rp_duration_ns: i64) -> i64 {
    const HOUR: i64 = 3_600_000_000_000;
    const DAY: i64 = 24 * HOUR;
    if rp_duration_ns > 0 && rp_duration_ns < 2 * DAY {
        HOUR
    } else if rp_duration_ns > 0 && rp_duration_ns <= 180 * DAY {
        DAY
    } else {
        7 * DAY
    }
}

/// Replication factor actually used: at least 1, at most the node count.
pub fn effective_replication(rf: u32, node_count: usize) -> usize {
    (rf.max(1) as usize).min(node_count)
}

/// Shards per group: the smallest n with `n * rf` divisible by the node count, so every
/// node owns a share of every group.
pub fn shards_per_group(node_count: usize, rf: usize) -> usize {
    debug_assert!(node_count > 0 && rf > 0);
    node_count / gcd(node_count, rf)
}

fn gcd(mut a: usize, mut b: usize) -> usize {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// Shard ids fit in this many bits, so JavaScript clients (doubles) read them exactly
/// and Go clients parse them as int64 (`SHOW SHARDS`).
pub const SHARD_ID_BITS: u32 = 53;

/// The stable id of shard `index` of the group starting at `group_start_ns`: the top
/// 53 bits of an FNV-1a 64 hash of (db, rp, group start, index) (the top bits are the
/// ones every input byte reaches).
pub fn shard_id(db: &str, rp: &str, group_start_ns: i64, index: u32) -> u64 {
    let mut h = fnv1a64(db.as_bytes());
    h = fnv1a64_extend(h, &[0]);
    h = fnv1a64_extend(h, rp.as_bytes());
    h = fnv1a64_extend(h, &[0]);
    h = fnv1a64_extend(h, &group_start_ns.to_be_bytes());
    h = fnv1a64_extend(h, &index.to_be_bytes());
    h >> (64 - SHARD_ID_BITS)
}

/// Which shard of its group a series belongs to.
#[inline]
pub fn shard_index(series_hash: u64, shards_per_group: usize) -> u32 {
    (series_hash % shards_per_group as u64) as u32
}

/// What partitioning needs of a series hash: the high 32 bits of its [`mix64`] (the
/// series hash itself chooses the shard: `series_hash % shards`).
///
/// **Deviation from DESIGN section 2** (`(series_hash >> 32) % P`): FNV-1a's high bits
/// hardly depend on a key's last bytes, so series whose keys differ only at the end
/// (`m,host=h0` .. `m,host=h999`: every one on one partition of two, measured in
/// `keys_differing_at_the_end_spread_evenly`) would not spread. Mixing first spreads
/// them; TSBS keys spread either way.
#[inline]
pub fn partition_key(series_hash: u64) -> u32 {
    (crate::base::hash::mix64(series_hash) >> 32) as u32
}

/// The partition of a shard that stores a series, on each owner node:
/// `partition_key % partitions`, `partitions` being the node's core count when the
/// shard was first created there (persisted with the shard).
#[inline]
pub fn partition_of(key: u32, partitions: u32) -> u32 {
    key % partitions.max(1)
}

/// The core of a node that holds partition `partition`: `partition % cores`. A node
/// restarted with another core count re-homes partitions by this modulo; it never
/// rewrites them.
#[inline]
pub fn partition_core(partition: u32, cores: usize) -> usize {
    partition as usize % cores.max(1)
}

/// Splits a batch's points by partition: `keys[i]` is the partition key of `points[i]`
/// ([`partition_key`]); the points of each partition keep their order. Partitions in
/// ascending order, only those with points.
pub fn split_by_partition(points: &[u32], keys: &[u32], partitions: u32) -> Vec<(u32, Vec<u32>)> {
    debug_assert_eq!(points.len(), keys.len());
    let partitions = partitions.max(1);
    if partitions == 1 {
        return vec![(0, points.to_vec())];
    }
    let mut parts: Vec<Vec<u32>> = vec![Vec::new(); partitions as usize];
    for (&point, &key) in points.iter().zip(keys) {
        parts[partition_of(key, partitions) as usize].push(point);
    }
    parts
        .into_iter()
        .enumerate()
        .filter(|(_, p)| !p.is_empty())
        .map(|(i, p)| (i as u32, p))
        .collect()
}

/// Rotation of the owner ring for a group, derived from its start, so consecutive groups
/// do not put shard 0 on the same node.
fn rotation(group_start_ns: i64, node_count: usize) -> usize {
    (fnv1a64(&group_start_ns.to_be_bytes()) % node_count as u64) as usize
}

/// The owners of shard `index`: `rf` consecutive nodes of the sorted list, starting at
/// `index * rf` plus the group's rotation.
pub fn shard_owners(
    membership: &Membership,
    group_start_ns: i64,
    index: u32,
    rf: usize,
) -> Vec<NodeId> {
    let n = membership.nodes.len();
    let first = index as usize * rf + rotation(group_start_ns, n);
    (0..rf).map(|k| membership.nodes[(first + k) % n]).collect()
}

/// One shard of a group: id, index and owners.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShardPlacement {
    pub id: u64,
    pub index: u32,
    pub owners: Vec<NodeId>,
}

/// Every shard of one shard group.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupPlacement {
    pub start_ns: i64,
    pub end_ns: i64,
    pub shards: Vec<ShardPlacement>,
}

/// Places a whole shard group.
pub fn place_group(
    db: &str,
    rp: &str,
    group_start_ns: i64,
    group_duration_ns: i64,
    replication: u32,
    membership: &Membership,
) -> GroupPlacement {
    let n = membership.nodes.len();
    let rf = effective_replication(replication, n);
    let count = shards_per_group(n, rf);
    let shards = (0..count as u32)
        .map(|index| ShardPlacement {
            id: shard_id(db, rp, group_start_ns, index),
            index,
            owners: shard_owners(membership, group_start_ns, index, rf),
        })
        .collect();
    GroupPlacement {
        start_ns: group_start_ns,
        end_ns: group_start_ns.saturating_add(group_duration_ns),
        shards,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PINNED_TELEGRAF_ID: u64 = 8_480_967_268_371_986;
    /// (partition of 2, of 4, of 64) for the keys of `partitions_are_pinned`.
    const PINNED_PARTITIONS: [(u32, u32, u32); 4] = [(1, 1, 41), (1, 3, 47), (0, 0, 16), (1, 1, 9)];

    const HOUR: i64 = 3_600_000_000_000;
    const DAY: i64 = 24 * HOUR;

    #[test]
    fn group_start_floors_including_negative_times() {
        assert_eq!(shard_group_start(0, HOUR), 0);
        assert_eq!(shard_group_start(HOUR - 1, HOUR), 0);
        assert_eq!(shard_group_start(HOUR, HOUR), HOUR);
        assert_eq!(shard_group_start(-1, HOUR), -HOUR);
        // Weekly groups start on Mondays, as InfluxDB's (Go's Truncate from year 1):
        // 2023-11-14T22:15:23Z (a Tuesday) is in the group of Monday 2023-11-13.
        assert_eq!(
            shard_group_start(1_700_000_123_000_000_000, 7 * DAY),
            1_699_833_600_000_000_000
        );
        // Around 1970-01-01 (a Thursday): the group of Monday 1969-12-29.
        assert_eq!(shard_group_start(0, 7 * DAY), -3 * DAY);
        assert_eq!(shard_group_start(4 * DAY, 7 * DAY), 4 * DAY);
        assert_eq!(shard_group_start(4 * DAY - 1, 7 * DAY), -3 * DAY);
        // Durations dividing a day give the same groups as counting from 1970.
        assert_eq!(
            shard_group_start(1_700_000_123_000_000_000, DAY),
            1_699_920_000_000_000_000
        );
        // The earliest time saturates instead of wrapping.
        assert_eq!(shard_group_start(i64::MIN + 2, 7 * DAY), i64::MIN);
    }

    #[test]
    fn default_group_durations_follow_influxdb() {
        assert_eq!(default_shard_group_duration_ns(0), 7 * DAY);
        assert_eq!(default_shard_group_duration_ns(HOUR), HOUR);
        assert_eq!(default_shard_group_duration_ns(2 * DAY - 1), HOUR);
        assert_eq!(default_shard_group_duration_ns(2 * DAY), DAY);
        assert_eq!(default_shard_group_duration_ns(180 * DAY), DAY);
        assert_eq!(default_shard_group_duration_ns(181 * DAY), 7 * DAY);
    }

    #[test]
    fn shards_per_group_is_smallest_divisible() {
        assert_eq!(shards_per_group(1, 1), 1);
        assert_eq!(shards_per_group(3, 2), 3);
        assert_eq!(shards_per_group(3, 3), 1);
        assert_eq!(shards_per_group(4, 2), 2);
        assert_eq!(shards_per_group(6, 4), 3);
        assert_eq!(shards_per_group(5, 1), 5);
        for nodes in 1..12 {
            for rf in 1..=nodes {
                let n = shards_per_group(nodes, rf);
                assert_eq!(n * rf % nodes, 0);
                assert!((1..n).all(|m| m * rf % nodes != 0));
            }
        }
    }

    #[test]
    fn shard_ids_are_pinned() {
        // These values fix where data lives on disk and in the cluster: never change them.
        // (Cross-checked against an independent FNV-1a implementation.)
        assert_eq!(shard_id("db", "autogen", 0, 0), 0xfba0_9385_7841_3cb0 >> 11);
        assert_eq!(
            shard_id("telegraf", "autogen", 1_699_833_600_000_000_000, 1),
            PINNED_TELEGRAF_ID
        );
        assert_ne!(shard_id("db", "rp", 0, 0), shard_id("dbr", "p", 0, 0));
        // 53 bits: exact as a JavaScript number, a valid Go int64.
        for i in 0..1000 {
            assert!(shard_id("db", "autogen", i * HOUR, i as u32) < 1 << 53);
        }
    }

    #[test]
    fn owners_are_pinned_and_rotate() {
        let m = Membership::new(vec![3, 1, 2]);
        let g = place_group("db", "autogen", 0, DAY, 2, &m);
        assert_eq!(g.shards.len(), 3);
        let owners: Vec<_> = g.shards.iter().map(|s| s.owners.clone()).collect();
        assert_eq!(owners, vec![vec![2, 3], vec![1, 2], vec![3, 1]]);
        let g2 = place_group("db", "autogen", DAY, DAY, 2, &m);
        let owners2: Vec<_> = g2.shards.iter().map(|s| s.owners.clone()).collect();
        assert_eq!(owners2, vec![vec![3, 1], vec![2, 3], vec![1, 2]]);
        // Every node owns exactly shards*rf/nodes shards of each group.
        for g in [&g, &g2] {
            for node in m.nodes() {
                let owned = g.shards.iter().filter(|s| s.owners.contains(node)).count();
                assert_eq!(owned, 2);
            }
        }
    }

    #[test]
    fn single_node_places_one_shard_owned_locally() {
        let m = Membership::single(1);
        let g = place_group("db", "autogen", 0, 7 * DAY, 3, &m);
        assert_eq!(g.shards.len(), 1);
        assert_eq!(g.shards[0].owners, vec![1]);
        assert_eq!(g.end_ns, 7 * DAY);
    }

    /// The partition function's outputs for fixed series keys: changing them moves
    /// stored series to other partitions, so they are pinned like the shard ids.
    #[test]
    fn partitions_are_pinned() {
        let key = |k: &str| partition_key(crate::base::hash::fnv1a64(k.as_bytes()));
        let cases = [
            "cpu,host=a",
            "cpu,host=b",
            "mem,host=a,region=us-west",
            "cpu,arch=x64,datacenter=us-east-1a,hostname=host_0,os=Ubuntu16.10,rack=67,region=us-east-1,service=18,service_environment=production,service_version=1,team=NYC",
        ];
        let got: Vec<(u32, u32, u32)> = cases
            .iter()
            .map(|c| {
                (
                    partition_of(key(c), 2),
                    partition_of(key(c), 4),
                    partition_of(key(c), 64),
                )
            })
            .collect();
        assert_eq!(got, PINNED_PARTITIONS);
        assert_eq!(partition_of(7, 0), 0, "no partitions means one");
        assert_eq!(partition_core(5, 4), 1);
        assert_eq!(partition_core(5, 8), 5);
        assert_eq!(partition_core(3, 1), 0);
    }

    /// Series spread over partitions within +-10% for TSBS-style host sets (100..100,000
    /// hosts): within 10% of the mean where a partition gets at least 400 series (a
    /// binomial spread of at most 5%), and each partition's share within 10 percentage
    /// points of the mean share for the small sets on 2 or 4 partitions (100 series
    /// over 2 partitions spread by +-5 for any hash).
    #[test]
    fn tsbs_hosts_spread_evenly_over_partitions() {
        for hosts in [100usize, 1_000, 10_000, 100_000] {
            let keys: Vec<u32> = (0..hosts)
                .map(|h| partition_key(crate::base::hash::fnv1a64(tsbs_cpu_key(h).as_bytes())))
                .collect();
            for partitions in [2u32, 4, 8, 16, 32, 64] {
                let mean = hosts as f64 / partitions as f64;
                let mut counts = vec![0usize; partitions as usize];
                for &k in &keys {
                    counts[partition_of(k, partitions) as usize] += 1;
                }
                let worst = counts
                    .iter()
                    .map(|&c| (c as f64 - mean).abs())
                    .fold(0.0, f64::max);
                if mean >= 400.0 {
                    assert!(
                        worst <= 0.10 * mean,
                        "{hosts} hosts over {partitions} partitions: {counts:?}"
                    );
                } else if partitions <= 4 {
                    assert!(
                        worst <= 0.10 * hosts as f64,
                        "{hosts} hosts over {partitions} partitions: {counts:?}"
                    );
                }
            }
        }
    }

    /// Keys that differ only in their last bytes (the common `host=web01` pattern)
    /// spread as well as TSBS's; DESIGN's unmixed formula puts them all on one
    /// partition (printed for ARCHITECTURE.md's note).
    #[test]
    fn keys_differing_at_the_end_spread_evenly() {
        for (hosts, partitions) in [(1_000usize, 2u32), (1_000, 4), (10_000, 8), (100_000, 64)] {
            let hashes: Vec<u64> = (0..hosts)
                .map(|h| crate::base::hash::fnv1a64(format!("m,host=h{h}").as_bytes()))
                .collect();
            let mean = hosts as f64 / partitions as f64;
            let mut mixed = vec![0usize; partitions as usize];
            let mut unmixed = vec![0usize; partitions as usize];
            for &h in &hashes {
                mixed[partition_of(partition_key(h), partitions) as usize] += 1;
                unmixed[unmixed_partition(h, partitions) as usize] += 1;
            }
            let worst = |c: &[usize]| {
                c.iter()
                    .map(|&c| (c as f64 - mean).abs() / mean)
                    .fold(0.0, f64::max)
            };
            println!("{hosts} keys over {partitions}: mixed worst {:.1}%, unmixed worst {:.1}% {unmixed:?}", 100.0 * worst(&mixed), 100.0 * worst(&unmixed));
            assert!(
                worst(&mixed) <= 0.10,
                "{hosts} over {partitions}: {mixed:?}"
            );
        }
    }

    /// A TSBS `cpu` series key of host `h` (canonical: tags sorted), with the tags that
    /// vary per host in TSBS varying here too.
    fn tsbs_cpu_key(h: usize) -> String {
        const REGIONS: [&str; 3] = ["us-east-1", "eu-central-1", "ap-northeast-1"];
        let region = REGIONS[h % 3];
        format!(
            "cpu,arch=x{arch},datacenter={region}{dc},hostname=host_{h},os=Ubuntu16.{os},rack={rack},region={region},service={service},service_environment={env},service_version={version},team={team}",
            arch = if h % 2 == 0 { "64" } else { "86" },
            dc = ["a", "b", "c"][h % 3],
            os = h % 3,
            rack = h % 100,
            service = h % 20,
            env = ["production", "staging", "test"][h % 3],
            version = h % 2,
            team = ["SF", "NYC", "LON", "CHI"][h % 4],
        )
    }

    proptest::proptest! {
        /// For any node list and rf: every shard has rf distinct owners from the list, and
        /// every node owns exactly shards*rf/nodes shards of each group.
        #[test]
        fn prop_every_shard_has_rf_distinct_owners_and_every_node_owns_shards(
            nodes in proptest::collection::btree_set(1u64..1000, 1..12),
            rf in 1u32..6,
            start_hours in -100_000i64..100_000,
        ) {
            let membership = Membership::new(nodes.iter().copied().collect());
            let start = start_hours * HOUR;
            let group = place_group("db", "rp", start, HOUR, rf, &membership);
            let n = nodes.len();
            let rf = effective_replication(rf, n);
            for shard in &group.shards {
                let distinct: std::collections::BTreeSet<_> = shard.owners.iter().collect();
                proptest::prop_assert_eq!(shard.owners.len(), rf);
                proptest::prop_assert_eq!(distinct.len(), rf);
                proptest::prop_assert!(shard.owners.iter().all(|o| nodes.contains(o)));
            }
            for node in &nodes {
                let owned = group.shards.iter().filter(|s| s.owners.contains(node)).count();
                proptest::prop_assert_eq!(owned, group.shards.len() * rf / n);
                proptest::prop_assert!(owned > 0);
            }
            // Same inputs, same answer (nothing but the inputs decides).
            proptest::prop_assert_eq!(&group, &place_group("db", "rp", start, HOUR, rf as u32, &membership));
        }
    }

    #[test]
    fn split_keeps_order_within_each_partition() {
        let parts = split_by_partition(&[10, 11, 12, 13, 14], &[4, 3, 2, 1, 7], 2);
        assert_eq!(parts, vec![(0, vec![10, 12]), (1, vec![11, 13, 14])]);
        assert_eq!(
            split_by_partition(&[1, 2], &[5, 6], 1),
            vec![(0, vec![1, 2])]
        );
        assert_eq!(split_by_partition(&[], &[], 4), vec![]);
    }

    #[test]
    fn series_to_shard_index_is_modulo() {
        assert_eq!(shard_index(10, 3), 1);
        assert_eq!(shard_index(u64::MAX, 3), (u64::MAX % 3) as u32);
        assert_eq!(shard_index(12345, 1), 0);
    }
}
