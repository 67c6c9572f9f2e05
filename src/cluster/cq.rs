//! The continuous query service (InfluxDB's `continuous_querier`): on core 0 of every
//! node, every `run-interval-ms`, each CQ that is due runs its `SELECT ... INTO` over
//! the intervals that closed since its last run, through the statement executor (so
//! its points go through the PointsWriter, to every owner).
//!
//! **When a CQ runs** is InfluxDB's rule, to the nanosecond: with GROUP BY time(i),
//! RESAMPLE EVERY e (default i) and FOR f (default i, or e when e > i), a CQ that last
//! ran at `last` runs again once `now >= last + e`, over
//! `[trunc(last + e + i - f - 1, i), trunc(now + i - min(e, i), i))` (offsets shift
//! both), and its last run becomes `trunc(now, e)`; a first run starts from `now`.
//!
//! **Where a CQ runs, in a cluster:** every node computes the same order of the
//! members for a CQ (sorted, rotated by a hash of its database and name); the CQ runs
//! on the first member of that order this node finds alive (itself, or a peer that
//! answered a ping this round). While the preferred runner lives, every node agrees
//! on it; when it stops answering, the next takes over. Runs are recorded in the
//! cluster's metadata (`meta::cq`, merged by latest time, pushed to the peers after
//! each run), so the node taking over resumes from the last recorded run: the
//! intervals the dead runner did not finish are computed then, no gap. A run repeated
//! (the runner died after writing but before its run reached the others, or two
//! nodes briefly disagreed on who is alive) writes the same points again — same
//! measurement, tags and bucket time — so it overwrites, never duplicates.

use crate::base::shutdown::Shutdown;
use crate::base::time::go_truncate;
use crate::cluster::executor::StatementExecutor;
use crate::cluster::meta_sync::MetaSyncService;
use crate::cluster::shard_writer::ShardWriter;
use crate::config::ContinuousQueriesConfig;
use crate::influxql::ast::{Dimension, Expr, Op};
use crate::influxql::parser::{self, Statement};
use crate::meta::{ContinuousQuery, MetaData, MetaStore};
use crate::metrics::CoreStats;
use crate::net::wire::{Ping, Pong};
use crate::placement::{Membership, NodeId};
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

/// Why a CQ run failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CqError {
    #[error("query isn't a valid continuous query: {0}")]
    Invalid(String),
    #[error("continuous queries must be aggregate queries")]
    NotAggregate,
    #[error("{0}")]
    Run(String),
}

/// What one check did with one CQ.
#[derive(Debug, PartialEq, Eq)]
pub enum Ran {
    /// Not due, or no interval closed.
    No,
    /// Ran over `[start, end)` and wrote `points`.
    Yes { start: i64, end: i64, points: usize },
}

/// When and over which range a CQ runs (InfluxDB's `ExecuteContinuousQuery` and
/// `shouldRunContinuousQuery`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Schedule {
    pub interval: i64,
    pub offset: i64,
    /// RESAMPLE EVERY (0: the interval).
    pub every: i64,
    /// RESAMPLE FOR (0: the interval).
    pub for_: i64,
}

impl Schedule {
    /// At `now`, with the last run (`None`: never): `None` when not due, else the
    /// last run to record and the time range `[start, end)` (empty when no interval
    /// closed: then nothing runs, but the last run is still recorded, as InfluxDB).
    pub fn due(&self, now: i64, last: Option<i64>) -> Option<(i64, i64, i64)> {
        let mut every = if self.every != 0 {
            self.every
        } else {
            self.interval
        };
        let next_run = match last {
            Some(last) => {
                let next = last.saturating_add(every);
                if next > now {
                    return None;
                }
                next
            }
            None => now,
        };
        let offset = self.offset;
        let recorded = go_truncate(now - offset, every) + offset;
        let for_ = if self.for_ != 0 {
            self.for_
        } else if self.interval < every {
            every
        } else {
            self.interval
        };
        every = every.min(self.interval);
        let start =
            go_truncate(next_run + self.interval - for_ - offset - 1, self.interval) + offset;
        let end = go_truncate(now + self.interval - every - offset, self.interval) + offset;
        Some((recorded, start, end))
    }
}

/// Core 0's continuous query service.
pub struct ContinuousQueryService {
    executor: Rc<StatementExecutor>,
    meta: Arc<MetaStore>,
    /// With peers: pushes each recorded run at once.
    meta_sync: Option<Rc<MetaSyncService>>,
    /// With peers: the pings that say who is alive.
    shard_writer: Option<Rc<ShardWriter>>,
    membership: Membership,
    node_id: NodeId,
    config: ContinuousQueriesConfig,
    stats: Rc<CoreStats>,
    shutdown: Arc<Shutdown>,
    /// The last run of each CQ this node runs (by run key), as InfluxDB's `lastRuns`;
    /// the metadata's record counts too (the later wins).
    last_runs: RefCell<HashMap<String, i64>>,
}

impl ContinuousQueryService {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        executor: Rc<StatementExecutor>,
        meta: Arc<MetaStore>,
        meta_sync: Option<Rc<MetaSyncService>>,
        shard_writer: Option<Rc<ShardWriter>>,
        membership: Membership,
        node_id: NodeId,
        config: ContinuousQueriesConfig,
        stats: Rc<CoreStats>,
        shutdown: Arc<Shutdown>,
    ) -> ContinuousQueryService {
        ContinuousQueryService {
            executor,
            meta,
            meta_sync,
            shard_writer,
            membership,
            node_id,
            config,
            stats,
            shutdown,
            last_runs: RefCell::new(HashMap::new()),
        }
    }

    /// Checks every `run-interval-ms` until shutdown.
    pub async fn run(self: Rc<Self>) {
        let interval = Duration::from_millis(self.config.run_interval_ms);
        loop {
            if self.shutdown.sleep(interval).await {
                return;
            }
            self.check(crate::base::time::now_ns()).await;
        }
    }

    /// One check: runs every CQ that is due and is this node's to run.
    pub async fn check(&self, now: i64) {
        let meta = self.meta.snapshot();
        let cqs: Vec<(String, ContinuousQuery)> = meta
            .databases
            .values()
            .flat_map(|db| {
                db.continuous_queries
                    .iter()
                    .map(|cq| (db.name.clone(), cq.clone()))
            })
            .collect();
        if cqs.is_empty() {
            self.last_runs.borrow_mut().clear();
            return;
        }
        let alive = self.alive_peers().await;
        for (db, cq) in cqs {
            let key = cq.run_key(&db);
            if runner(&self.membership, &db, &cq.name, |n| {
                n == self.node_id || alive.contains(&n)
            }) != Some(self.node_id)
            {
                // Another node runs it: when this one takes over it starts from the
                // metadata's record, not from a run of its own long ago.
                self.last_runs.borrow_mut().remove(&key);
                continue;
            }
            match self.execute(&meta, &db, &cq, &key, now).await {
                Ok(Ran::No) => {}
                Ok(Ran::Yes { start, end, points }) => {
                    CoreStats::add(&self.stats.cq_query_ok, 1);
                    CoreStats::add(&self.stats.cq_points_written, points as u64);
                    if self.config.log_enabled {
                        tracing::info!(
                            database = db,
                            name = cq.name,
                            start,
                            end,
                            points,
                            "continuous query ran"
                        );
                    }
                }
                Err(e) => {
                    CoreStats::add(&self.stats.cq_query_fail, 1);
                    tracing::warn!(database = db, name = cq.name, error = %e, "continuous query failed");
                }
            }
        }
    }

    /// The peers that answer a ping now (all at once; a dead peer costs at most the
    /// dial timeout).
    async fn alive_peers(&self) -> Vec<NodeId> {
        let Some(writer) = &self.shard_writer else {
            return Vec::new();
        };
        let mut pings = Vec::new();
        for peer in writer.peer_ids() {
            let writer = writer.clone();
            pings.push((
                peer,
                glommio::spawn_local(async move {
                    writer.request_live::<_, Pong>(peer, 0, &Ping).await.is_ok()
                }),
            ));
        }
        let mut alive = Vec::new();
        for (peer, ping) in pings {
            if ping.await {
                alive.push(peer);
            }
        }
        alive
    }

    /// Runs one CQ if it is due (InfluxDB's `ExecuteContinuousQuery`).
    async fn execute(
        &self,
        meta: &MetaData,
        db: &str,
        cq: &ContinuousQuery,
        key: &str,
        now: i64,
    ) -> Result<Ran, CqError> {
        let statements =
            parser::parse_query(&cq.query).map_err(|e| CqError::Invalid(e.to_string()))?;
        let Some(Statement::CreateContinuousQuery {
            select,
            resample_every_ns,
            resample_for_ns,
            ..
        }) = statements.into_iter().next()
        else {
            return Err(CqError::Invalid(cq.query.clone()));
        };
        let interval = select.group_by_interval();
        if interval <= 0 {
            return Ok(Ran::No);
        }
        if select.is_raw() {
            return Err(CqError::NotAggregate);
        }
        let offset = select
            .dimensions
            .iter()
            .find_map(|d| match d {
                Dimension::Time { offset, .. } if *offset != i64::MIN => Some(*offset),
                _ => None,
            })
            .unwrap_or(0);
        let schedule = Schedule {
            interval,
            offset,
            every: resample_every_ns,
            for_: resample_for_ns,
        };
        let local = self.last_runs.borrow().get(key).copied();
        let last = local.max(meta.cq_last_run(db, cq));
        let Some((recorded, start, end)) = schedule.due(now, last) else {
            return Ok(Ran::No);
        };
        self.last_runs
            .borrow_mut()
            .insert(key.to_string(), recorded);
        if end <= start {
            return Ok(Ran::No);
        }
        let mut select = *select;
        let (_, rest) = crate::query::select::split_time(select.condition.as_ref(), now)
            .map_err(|e| CqError::Run(e.to_string()))?;
        let time = |op, t| {
            let var = Expr::VarRef {
                name: "time".into(),
                kind: None,
            };
            Expr::binary(op, var, Expr::Integer(t))
        };
        let range = Expr::binary(Op::And, time(Op::Gte, start), time(Op::Lt, end));
        select.condition = Some(match rest {
            Some(rest) => Expr::binary(Op::And, Expr::Paren(Box::new(rest)), range),
            None => range,
        });
        let outcome = self.executor.run_select_into(db, &select).await;
        // Recorded whatever the outcome (InfluxDB does not retry a failed interval
        // either); a runner that dies before this line leaves the interval to the
        // node taking over.
        self.record(key, recorded).await;
        let points = outcome.map_err(CqError::Run)?;
        Ok(Ran::Yes { start, end, points })
    }

    /// Records a run in the metadata (off the core: it is an fsync) and pushes it to
    /// the peers.
    async fn record(&self, key: &str, at: i64) {
        let (meta, key_owned) = (self.meta.clone(), key.to_string());
        let saved = glommio::executor()
            .spawn_blocking(move || meta.record_cq_run(&key_owned, at))
            .await;
        match saved {
            Ok(()) => {
                if let Some(sync) = &self.meta_sync {
                    sync.push();
                }
            }
            Err(e) => tracing::warn!(key, error = %e, "continuous query run not recorded"),
        }
    }
}

/// The node that runs a CQ: the first member, in the CQ's own order (sorted, rotated
/// by a hash of its database and name, so CQs spread over the nodes), for which
/// `alive` holds.
pub fn runner(
    membership: &Membership,
    db: &str,
    name: &str,
    alive: impl Fn(NodeId) -> bool,
) -> Option<NodeId> {
    let nodes = membership.nodes();
    let mut key = db.as_bytes().to_vec();
    key.push(0);
    key.extend_from_slice(name.as_bytes());
    let first = (crate::base::hash::fnv1a64(&key) % nodes.len() as u64) as usize;
    (0..nodes.len())
        .map(|i| nodes[(first + i) % nodes.len()])
        .find(|&n| alive(n))
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: i64 = 1_000_000_000;
    const M: i64 = 60 * S;

    #[test]
    fn schedules_follow_influxdb() {
        let plain = Schedule {
            interval: M,
            offset: 0,
            every: 0,
            for_: 0,
        };
        // First run mid-interval: nothing closed yet, the run is recorded at the
        // interval's start.
        assert_eq!(
            plain.due(10 * M + 30 * S, None),
            Some((10 * M, 10 * M, 10 * M))
        );
        // Not due before the next boundary.
        assert_eq!(plain.due(10 * M + 59 * S, Some(10 * M)), None);
        // At it: the interval that just closed.
        assert_eq!(
            plain.due(11 * M + S, Some(10 * M)),
            Some((11 * M, 10 * M, 11 * M))
        );
        // After a gap (a takeover): every interval since the last run.
        assert_eq!(
            plain.due(15 * M + S, Some(10 * M)),
            Some((15 * M, 10 * M, 15 * M))
        );
        // RESAMPLE FOR 3m: the last three intervals each time.
        let resample_for = Schedule {
            for_: 3 * M,
            ..plain
        };
        assert_eq!(
            resample_for.due(11 * M, Some(10 * M)),
            Some((11 * M, 8 * M, 11 * M))
        );
        // RESAMPLE EVERY 30s on 1m: runs every 30s, the current interval included.
        let every = Schedule {
            every: 30 * S,
            ..plain
        };
        assert_eq!(every.due(10 * M + 20 * S, Some(10 * M)), None);
        assert_eq!(
            every.due(10 * M + 31 * S, Some(10 * M)),
            Some((10 * M + 30 * S, 10 * M, 11 * M))
        );
        // RESAMPLE EVERY 2m on 1m: every other minute, both intervals.
        let slow = Schedule {
            every: 2 * M,
            ..plain
        };
        assert_eq!(slow.due(11 * M, Some(10 * M)), None);
        assert_eq!(
            slow.due(12 * M, Some(10 * M)),
            Some((12 * M, 10 * M, 12 * M))
        );
        // An offset shifts the boundaries.
        let shifted = Schedule {
            offset: 15 * S,
            ..plain
        };
        assert_eq!(
            shifted.due(11 * M + 16 * S, Some(10 * M + 15 * S)),
            Some((11 * M + 15 * S, 10 * M + 15 * S, 11 * M + 15 * S))
        );
    }

    #[test]
    fn every_node_picks_the_same_runner_and_the_next_takes_over() {
        let m = Membership::new(vec![1, 2, 3]);
        let all = runner(&m, "db", "cq", |_| true).unwrap();
        let without = runner(&m, "db", "cq", |n| n != all).unwrap();
        assert_ne!(all, without);
        assert_eq!(runner(&m, "db", "cq", |n| n == without), Some(without));
        assert_eq!(runner(&m, "db", "cq", |_| false), None);
        // CQs spread over the nodes.
        let runners: std::collections::BTreeSet<NodeId> = (0..30)
            .filter_map(|i| runner(&m, "db", &format!("cq{i}"), |_| true))
            .collect();
        assert_eq!(runners.len(), 3);
    }
}
