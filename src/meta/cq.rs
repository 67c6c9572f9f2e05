//! Continuous queries in the meta store: each database's CQs (name and normalised
//! statement text, as InfluxDB keeps them in `DatabaseInfo`), and when each last ran.
//!
//! The CQs ride in their database's entry (a create or drop is a change of the
//! database, replicated with it). The last runs are kept apart, in `MetaData::cq_runs`:
//! the node running a CQ records each run there, and a merge keeps the later of two
//! times, so a node taking a CQ over resumes where the last runner stopped without
//! ever contending with DDL on the database's entry. A run is keyed by the CQ's
//! creation version too: a CQ dropped and made again starts afresh.

use super::{Key, MetaData, MetaError, MetaStore, Version};
use serde::{Deserialize, Serialize};

/// One continuous query of a database.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContinuousQuery {
    pub name: String,
    /// The statement as InfluxDB stores it: `CREATE CONTINUOUS QUERY ... END`, its
    /// sources and target qualified with database and policy.
    pub query: String,
    /// The version of the change that made it (its identity across drop and create).
    #[serde(default)]
    pub created: Version,
}

impl ContinuousQuery {
    /// Its key in `MetaData::cq_runs`.
    pub fn run_key(&self, database: &str) -> String {
        format!(
            "{database}\u{1f}{}\u{1f}{}.{}",
            self.name, self.created.counter, self.created.node
        )
    }
}

impl MetaData {
    /// When the CQ last ran (the time its run was for, ns), as far as this node knows.
    pub fn cq_last_run(&self, database: &str, cq: &ContinuousQuery) -> Option<i64> {
        self.cq_runs.get(&cq.run_key(database)).copied()
    }

    /// Merges another node's last runs (the later time wins) and forgets runs of CQs
    /// that no longer exist. Whether anything changed.
    pub(super) fn merge_cq_runs(&mut self, other: &MetaData) -> bool {
        let mut changed = false;
        for (key, &at) in &other.cq_runs {
            let ours = self.cq_runs.entry(key.clone()).or_insert(i64::MIN);
            if at > *ours {
                *ours = at;
                changed = true;
            }
        }
        changed | self.prune_cq_runs()
    }

    /// Drops the runs of CQs that no longer exist; whether any went.
    pub(super) fn prune_cq_runs(&mut self) -> bool {
        let live: std::collections::BTreeSet<String> = self
            .databases
            .values()
            .flat_map(|db| db.continuous_queries.iter().map(|cq| cq.run_key(&db.name)))
            .collect();
        let before = self.cq_runs.len();
        self.cq_runs.retain(|k, _| live.contains(k));
        before != self.cq_runs.len()
    }
}

impl MetaStore {
    /// `CREATE CONTINUOUS QUERY`: `query` is the normalised statement text. The same
    /// name with the same text again is a success (InfluxDB's rule), another text is
    /// `continuous query already exists`.
    pub fn create_continuous_query(
        &self,
        database: &str,
        name: &str,
        query: &str,
    ) -> Result<(), MetaError> {
        let node = self.node_id;
        self.update(|meta| {
            let created = Version {
                counter: meta.clock + 1,
                node,
            };
            let db = meta
                .databases
                .get_mut(database)
                .ok_or_else(|| MetaError::DatabaseNotFound(database.to_string()))?;
            if let Some(existing) = db.continuous_queries.iter().find(|cq| cq.name == name) {
                return if existing.query == query {
                    Ok((vec![], ()))
                } else {
                    Err(MetaError::ContinuousQueryExists)
                };
            }
            db.continuous_queries.push(ContinuousQuery {
                name: name.to_string(),
                query: query.to_string(),
                created,
            });
            Ok((vec![Key::Database(database.to_string())], ()))
        })
    }

    /// `DROP CONTINUOUS QUERY`: a missing CQ, or database, is not an error (InfluxDB
    /// 1.6 answers success too).
    pub fn drop_continuous_query(&self, database: &str, name: &str) -> Result<bool, MetaError> {
        self.update(|meta| {
            let Some(db) = meta.databases.get_mut(database) else {
                return Ok((vec![], false));
            };
            let before = db.continuous_queries.len();
            db.continuous_queries.retain(|cq| cq.name != name);
            let dropped = db.continuous_queries.len() != before;
            if dropped {
                meta.prune_cq_runs();
            }
            Ok((Key::database_if(dropped, database), dropped))
        })
    }

    /// Records that a CQ ran for the time `at` (ns). Persisted like any change, but
    /// versionless: merges keep the latest time.
    pub fn record_cq_run(&self, run_key: &str, at: i64) -> Result<(), MetaError> {
        let _guard = self.write_lock.lock().unwrap_or_else(|p| p.into_inner());
        let current = self.current.load_full();
        if current.cq_runs.get(run_key).is_some_and(|&t| t >= at) {
            return Ok(());
        }
        let mut next = (*current).clone();
        next.cq_runs.insert(run_key.to_string(), at);
        next.prune_cq_runs();
        next.version += 1;
        self.persist(&next)?;
        self.current.store(std::sync::Arc::new(next));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cqs_are_created_once_dropped_and_their_runs_merge_by_latest() {
        let (da, dbb) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let a = MetaStore::open(da.path(), 1).unwrap();
        let b = MetaStore::open(dbb.path(), 2).unwrap();
        assert!(matches!(
            a.create_continuous_query("db", "cq", "Q"),
            Err(MetaError::DatabaseNotFound(_))
        ));
        a.create_database("db", None).unwrap();
        a.create_continuous_query("db", "cq", "Q").unwrap();
        a.create_continuous_query("db", "cq", "Q").unwrap();
        assert!(matches!(
            a.create_continuous_query("db", "cq", "Q2"),
            Err(MetaError::ContinuousQueryExists)
        ));
        let cq = a.snapshot().databases["db"].continuous_queries[0].clone();
        assert_eq!(cq.created.node, 1);
        a.record_cq_run(&cq.run_key("db"), 100).unwrap();
        a.record_cq_run(&cq.run_key("db"), 50).unwrap();
        b.merge(&a.snapshot()).unwrap();
        assert_eq!(b.snapshot().cq_last_run("db", &cq), Some(100));
        b.record_cq_run(&cq.run_key("db"), 200).unwrap();
        a.merge(&b.snapshot()).unwrap();
        assert_eq!(a.snapshot().cq_last_run("db", &cq), Some(200));
        // Persisted.
        let reopened = MetaStore::open(da.path(), 1).unwrap();
        assert_eq!(reopened.snapshot().cq_last_run("db", &cq), Some(200));
        // A drop forgets the runs; the same name made again starts afresh.
        assert!(a.drop_continuous_query("db", "cq").unwrap());
        assert!(!a.drop_continuous_query("db", "cq").unwrap());
        assert!(!a.drop_continuous_query("nodb", "cq").unwrap());
        assert!(a.snapshot().cq_runs.is_empty());
        a.create_continuous_query("db", "cq", "Q").unwrap();
        let again = a.snapshot().databases["db"].continuous_queries[0].clone();
        assert_eq!(a.snapshot().cq_last_run("db", &again), None);
        // B's stale run of the old CQ does not come back.
        a.merge(&b.snapshot()).unwrap();
        assert!(a.snapshot().cq_runs.is_empty());
    }
}
