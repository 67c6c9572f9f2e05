//! Placement: the one place that decides shard groups, shards, shard ids, owners and
//! owning cores (DESIGN section 2).
//!
//! **Invariant:** placement is a pure function of (db, rp, group start, membership).
//! Nothing here is stored or negotiated; every node computes the same answer, which is
//! why creating a shard needs no consensus. Changing any output of this module changes
//! where existing data lives: the unit tests pin its outputs for fixed inputs.

use crate::base::hash::{fnv1a64, fnv1a64_extend};

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

/// Start of the shard group holding `ts_ns`: `floor(ts / sgd) * sgd` (also for negative
/// timestamps, which floor towards minus infinity).
pub fn shard_group_start(ts_ns: i64, group_duration_ns: i64) -> i64 {
    debug_assert!(group_duration_ns > 0);
    crate::base::time::window_start(ts_ns, group_duration_ns, 0)
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

/// The stable 64-bit id of shard `index` of the group starting at `group_start_ns`.
pub fn shard_id(db: &str, rp: &str, group_start_ns: i64, index: u32) -> u64 {
    let mut h = fnv1a64(db.as_bytes());
    h = fnv1a64_extend(h, &[0]);
    h = fnv1a64_extend(h, rp.as_bytes());
    h = fnv1a64_extend(h, &[0]);
    h = fnv1a64_extend(h, &group_start_ns.to_be_bytes());
    h = fnv1a64_extend(h, &index.to_be_bytes());
    h
}

/// Which shard of its group a series belongs to.
#[inline]
pub fn shard_index(series_hash: u64, shards_per_group: usize) -> u32 {
    (series_hash % shards_per_group as u64) as u32
}

/// The core of a node that owns a shard.
#[inline]
pub fn owning_core(shard_id: u64, cores: usize) -> usize {
    (shard_id % cores as u64) as usize
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

    const HOUR: i64 = 3_600_000_000_000;
    const DAY: i64 = 24 * HOUR;

    #[test]
    fn group_start_floors_including_negative_times() {
        assert_eq!(shard_group_start(0, HOUR), 0);
        assert_eq!(shard_group_start(HOUR - 1, HOUR), 0);
        assert_eq!(shard_group_start(HOUR, HOUR), HOUR);
        assert_eq!(shard_group_start(-1, HOUR), -HOUR);
        assert_eq!(
            shard_group_start(1_700_000_123_000_000_000, 7 * DAY),
            1_699_488_000_000_000_000
        );
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
        assert_eq!(shard_id("db", "autogen", 0, 0), 0xfba0_9385_7841_3cb0);
        assert_eq!(
            shard_id("telegraf", "autogen", 1_699_488_000_000_000_000, 1),
            0x2d55_b6c1_0ec1_a0a6
        );
        assert_ne!(shard_id("db", "rp", 0, 0), shard_id("dbr", "p", 0, 0));
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
        assert_eq!(
            owning_core(g.shards[0].id, 2),
            (g.shards[0].id % 2) as usize
        );
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
    fn series_to_shard_index_is_modulo() {
        assert_eq!(shard_index(10, 3), 1);
        assert_eq!(shard_index(u64::MAX, 3), (u64::MAX % 3) as u32);
        assert_eq!(shard_index(12345, 1), 0);
    }
}
