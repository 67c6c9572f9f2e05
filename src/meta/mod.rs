//! Meta store: databases, retention policies and users, persisted in
//! `DATA_DIR/meta.json` (readable by its owner only: it holds password hashes).
//!
//! Readers on every core take an immutable snapshot (`Arc<MetaData>` swapped atomically
//! by `arc-swap`) and never block. Writers (DDL, rare) serialise on a mutex, write the
//! new state to a temp file, fsync it, rename it over `meta.json` and fsync the
//! directory, and only then publish the snapshot: a DDL that answered success survives a
//! crash.
//!
//! Shard groups and shards are not stored here: they are derived by `placement`.

use crate::placement;
use arc_swap::ArcSwap;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

mod cq;
mod users;
pub use cq::ContinuousQuery;
pub use users::{hash_password, verify_password, Principal, Privilege, User, BCRYPT_COST};

pub const HOUR_NS: i64 = 3_600_000_000_000;
/// InfluxDB's minimum retention policy duration (other than infinite).
pub const MIN_RETENTION_NS: i64 = HOUR_NS;
pub const DEFAULT_RP_NAME: &str = "autogen";

/// Errors of meta operations, worded as InfluxDB words them.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MetaError {
    #[error("database name required")]
    DatabaseNameRequired,
    #[error("retention policy name required")]
    RetentionPolicyNameRequired,
    #[error("database not found: {0}")]
    DatabaseNotFound(String),
    #[error("retention policy not found: {0}")]
    RetentionPolicyNotFound(String),
    #[error("retention policy already exists")]
    RetentionPolicyExists,
    #[error("retention policy conflicts with an existing policy")]
    RetentionPolicyConflict,
    #[error("retention policy duration must be at least 1h0m0s")]
    DurationTooLow,
    #[error("retention policy duration must be greater than the shard duration")]
    IncompatibleDurations,
    #[error("replication factor must be greater than 0")]
    ReplicationFactorTooLow,
    #[error("continuous query already exists")]
    ContinuousQueryExists,
    #[error("user already exists")]
    UserExists,
    #[error("user not found")]
    UserNotFound,
    #[error("username required")]
    UsernameRequired,
    #[error("meta store I/O error on {path}: {source}; the change was not applied")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("meta store file {path} is corrupt: {message}; move it aside to start empty")]
    Corrupt { path: PathBuf, message: String },
}

/// A retention policy.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetentionPolicy {
    pub name: String,
    /// 0 means infinite.
    pub duration_ns: i64,
    pub shard_group_duration_ns: i64,
    pub replication: u32,
    /// Creation order within its database (SHOW RETENTION POLICIES lists by it, as
    /// InfluxDB does); 0 for the database's first policy and for older meta files.
    #[serde(default)]
    pub created: u64,
}

impl RetentionPolicy {
    /// The earliest timestamp this policy still keeps at `now_ns` (None: keeps all).
    pub fn oldest_kept_ns(&self, now_ns: i64) -> Option<i64> {
        (self.duration_ns > 0).then(|| now_ns.saturating_sub(self.duration_ns))
    }
}

/// The version of a replicated meta entry: a lamport counter, then the node that made
/// the change. The higher version wins everywhere, so nodes converge.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct Version {
    pub counter: u64,
    pub node: u64,
}

/// A database and its policies. The whole entry is the unit of replication: any change
/// to the database or one of its policies gives the entry a new version.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Database {
    pub name: String,
    #[serde(default)]
    pub version: Version,
    pub default_retention_policy: String,
    pub retention_policies: BTreeMap<String, RetentionPolicy>,
    /// Continuous queries in creation order (`cq.rs`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub continuous_queries: Vec<ContinuousQuery>,
}

impl Database {
    pub fn retention_policy(&self, name: Option<&str>) -> Option<&RetentionPolicy> {
        let name = match name {
            Some(n) if !n.is_empty() => n,
            _ => self.default_retention_policy.as_str(),
        };
        self.retention_policies.get(name)
    }
}

/// An immutable snapshot of all meta data.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetaData {
    /// Bumped by every local change or merge that changed something.
    pub version: u64,
    /// The lamport clock: the highest counter this node has made or seen.
    #[serde(default)]
    pub clock: u64,
    pub databases: BTreeMap<String, Database>,
    /// Dropped databases, kept so a drop wins over older copies still on other nodes.
    #[serde(default)]
    pub tombstones: BTreeMap<String, Version>,
    /// Users by name (`users.rs`).
    #[serde(default)]
    pub users: BTreeMap<String, User>,
    /// Dropped users, as `tombstones`.
    #[serde(default)]
    pub user_tombstones: BTreeMap<String, Version>,
    /// When each continuous query last ran (`cq.rs`), by `ContinuousQuery::run_key`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub cq_runs: BTreeMap<String, i64>,
}

/// A replicated entry a change touched: it gets the change's version.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Key {
    Database(String),
    User(String),
}

impl Key {
    /// The database's entry when `changed`, else nothing.
    fn database_if(changed: bool, name: &str) -> Vec<Key> {
        if changed {
            vec![Key::Database(name.to_string())]
        } else {
            vec![]
        }
    }
}

/// What a merge changed locally that the storage must follow.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MergeOutcome {
    pub changed: bool,
    /// (database, None) for a dropped database, (database, Some(rp)) for a dropped policy.
    pub dropped: Vec<(String, Option<String>)>,
}

impl MetaData {
    pub fn database(&self, name: &str) -> Option<&Database> {
        self.databases.get(name)
    }

    /// The version a name has here: its live entry's, or its tombstone's.
    fn version_of(&self, name: &str) -> Option<Version> {
        self.databases
            .get(name)
            .map(|d| d.version)
            .or_else(|| self.tombstones.get(name).copied())
    }

    /// Merges another node's state: per database name, the higher version wins (live
    /// entry or tombstone). Returns what changed here.
    pub fn merge(&mut self, other: &MetaData) -> MergeOutcome {
        let mut outcome = MergeOutcome::default();
        let mut seen = self.clock.max(other.clock);
        let names: std::collections::BTreeSet<&String> = other
            .databases
            .keys()
            .chain(other.tombstones.keys())
            .collect();
        for name in names {
            let Some(theirs) = other.version_of(name) else {
                continue;
            };
            seen = seen.max(theirs.counter);
            if self.version_of(name).is_some_and(|ours| ours >= theirs) {
                continue;
            }
            outcome.changed = true;
            let before = self.databases.remove(name);
            self.tombstones.remove(name);
            match other.databases.get(name) {
                Some(db) => {
                    if let Some(old) = &before {
                        for rp in old.retention_policies.keys() {
                            if !db.retention_policies.contains_key(rp) {
                                outcome.dropped.push((name.clone(), Some(rp.clone())));
                            }
                        }
                    }
                    self.databases.insert(name.clone(), db.clone());
                }
                None => {
                    if before.is_some() {
                        outcome.dropped.push((name.clone(), None));
                    }
                    self.tombstones.insert(name.clone(), theirs);
                }
            }
        }
        let (users_changed, users_seen) = self.merge_users(other);
        outcome.changed |= users_changed;
        outcome.changed |= self.merge_cq_runs(other);
        seen = seen.max(users_seen);
        if seen > self.clock {
            self.clock = seen;
            outcome.changed = true;
        }
        outcome
    }
}

/// Settings of a retention policy as given in a statement; `None` means "not given".
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RetentionPolicySpec {
    pub name: Option<String>,
    pub duration_ns: Option<i64>,
    pub replication: Option<u32>,
    pub shard_group_duration_ns: Option<i64>,
}

impl RetentionPolicySpec {
    /// Builds the policy, applying InfluxDB's defaults and checks.
    fn build(&self, name: String) -> Result<RetentionPolicy, MetaError> {
        let duration_ns = self.duration_ns.unwrap_or(0);
        validate_duration(duration_ns)?;
        let replication = self.replication.unwrap_or(1);
        if replication == 0 {
            return Err(MetaError::ReplicationFactorTooLow);
        }
        let shard_group_duration_ns =
            normalise_shard_duration(self.shard_group_duration_ns, duration_ns)?;
        Ok(RetentionPolicy {
            name,
            duration_ns,
            shard_group_duration_ns,
            replication,
            created: 0,
        })
    }
}

fn validate_duration(duration_ns: i64) -> Result<(), MetaError> {
    if duration_ns != 0 && duration_ns < MIN_RETENTION_NS {
        return Err(MetaError::DurationTooLow);
    }
    Ok(())
}

/// A shard duration of 0 or none means the default for the policy duration; below one
/// hour it is raised to one hour, as InfluxDB does.
fn normalise_shard_duration(given: Option<i64>, duration_ns: i64) -> Result<i64, MetaError> {
    let sgd = match given {
        None | Some(0) => placement::default_shard_group_duration_ns(duration_ns),
        Some(d) => d.max(HOUR_NS),
    };
    if given.is_some_and(|d| d != 0) && duration_ns != 0 && sgd > duration_ns {
        return Err(MetaError::IncompatibleDurations);
    }
    Ok(sgd)
}

/// The persisted, shared meta store.
pub struct MetaStore {
    path: PathBuf,
    node_id: u64,
    current: ArcSwap<MetaData>,
    write_lock: Mutex<()>,
}

impl MetaStore {
    /// Opens (or creates) `DATA_DIR/meta.json`.
    pub fn open(data_dir: &Path, node_id: u64) -> Result<MetaStore, MetaError> {
        let path = data_dir.join("meta.json");
        let data = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| MetaError::Corrupt {
                path: path.clone(),
                message: e.to_string(),
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => MetaData::default(),
            Err(source) => return Err(MetaError::Io { path, source }),
        };
        Ok(MetaStore {
            path,
            node_id,
            current: ArcSwap::from_pointee(data),
            write_lock: Mutex::new(()),
        })
    }

    /// The current snapshot; cheap, lock-free.
    pub fn snapshot(&self) -> Arc<MetaData> {
        self.current.load_full()
    }

    /// Applies `change` to a copy of the current state, persists it and publishes it.
    /// `change` names the entries it changed (none: nothing is written); each (or its
    /// tombstone) gets the next lamport version.
    fn update<T>(
        &self,
        change: impl FnOnce(&mut MetaData) -> Result<(Vec<Key>, T), MetaError>,
    ) -> Result<T, MetaError> {
        let _guard = self.write_lock.lock().unwrap_or_else(|p| p.into_inner());
        let mut next = (*self.current.load_full()).clone();
        let (changed, result) = change(&mut next)?;
        if !changed.is_empty() {
            next.clock += 1;
            let version = Version {
                counter: next.clock,
                node: self.node_id,
            };
            for key in changed {
                match key {
                    Key::Database(name) => match next.databases.get_mut(&name) {
                        Some(db) => {
                            db.version = version;
                            next.tombstones.remove(&name);
                        }
                        None => {
                            next.tombstones.insert(name, version);
                        }
                    },
                    Key::User(name) => match next.users.get_mut(&name) {
                        Some(user) => {
                            if user.created == Version::default() {
                                user.created = version;
                            }
                            user.version = version;
                            next.user_tombstones.remove(&name);
                        }
                        None => {
                            next.user_tombstones.insert(name, version);
                        }
                    },
                }
            }
            next.version += 1;
            self.persist(&next)?;
            self.current.store(Arc::new(next));
        }
        Ok(result)
    }

    /// Merges a peer's meta (MetaSync). Persists and publishes when something changed;
    /// the caller drops the shards of what the merge dropped.
    pub fn merge(&self, other: &MetaData) -> Result<MergeOutcome, MetaError> {
        let _guard = self.write_lock.lock().unwrap_or_else(|p| p.into_inner());
        let mut next = (*self.current.load_full()).clone();
        let outcome = next.merge(other);
        if outcome.changed {
            next.version += 1;
            self.persist(&next)?;
            self.current.store(Arc::new(next));
        }
        Ok(outcome)
    }

    fn persist(&self, data: &MetaData) -> Result<(), MetaError> {
        let io = |source| MetaError::Io {
            path: self.path.clone(),
            source,
        };
        let tmp = self.path.with_extension("json.tmp");
        let bytes = serde_json::to_vec_pretty(data).expect("meta data serialises");
        let mut file = {
            use std::os::unix::fs::OpenOptionsExt;
            std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&tmp)
                .map_err(io)?
        };
        file.write_all(&bytes).map_err(io)?;
        file.sync_all().map_err(io)?;
        std::fs::rename(&tmp, &self.path).map_err(io)?;
        if let Some(dir) = self.path.parent() {
            std::fs::File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(io)?;
        }
        Ok(())
    }

    /// `CREATE DATABASE name [WITH ...]`. Creating an existing database is a no-op unless
    /// the given policy conflicts with the existing one.
    pub fn create_database(
        &self,
        name: &str,
        rp: Option<&RetentionPolicySpec>,
    ) -> Result<(), MetaError> {
        if name.is_empty() {
            return Err(MetaError::DatabaseNameRequired);
        }
        let spec = rp.cloned().unwrap_or_default();
        let rp_name = spec
            .name
            .clone()
            .unwrap_or_else(|| DEFAULT_RP_NAME.to_string());
        let policy = spec.build(rp_name.clone())?;
        self.update(|meta| {
            if let Some(existing) = meta.databases.get(name) {
                if rp.is_none() {
                    return Ok((vec![], ()));
                }
                return match existing.retention_policies.get(&rp_name) {
                    Some(p) if *p == policy && existing.default_retention_policy == rp_name => {
                        Ok((vec![], ()))
                    }
                    _ => Err(MetaError::RetentionPolicyConflict),
                };
            }
            let mut rps = BTreeMap::new();
            rps.insert(rp_name.clone(), policy);
            meta.databases.insert(
                name.to_string(),
                Database {
                    name: name.to_string(),
                    version: Version::default(),
                    default_retention_policy: rp_name,
                    retention_policies: rps,
                    continuous_queries: Vec::new(),
                },
            );
            Ok((vec![Key::Database(name.to_string())], ()))
        })
    }

    /// `DROP DATABASE name`; dropping a missing database succeeds. Returns whether it
    /// existed. Every user's privileges on it go too (a database made again later
    /// starts with no grants, as in InfluxDB).
    pub fn drop_database(&self, name: &str) -> Result<bool, MetaError> {
        self.update(|meta| {
            let existed = meta.databases.remove(name).is_some();
            meta.prune_cq_runs();
            let mut changed = Vec::new();
            if existed {
                changed.push(Key::Database(name.to_string()));
            }
            for user in meta.users.values_mut() {
                if user.privileges.remove(name).is_some() {
                    changed.push(Key::User(user.name.clone()));
                }
            }
            Ok((changed, existed))
        })
    }

    /// `CREATE RETENTION POLICY name ON db DURATION d REPLICATION n [SHARD DURATION s] [DEFAULT]`.
    pub fn create_retention_policy(
        &self,
        db: &str,
        spec: &RetentionPolicySpec,
        make_default: bool,
    ) -> Result<(), MetaError> {
        let name = spec
            .name
            .clone()
            .filter(|n| !n.is_empty())
            .ok_or(MetaError::RetentionPolicyNameRequired)?;
        let policy = spec.build(name.clone())?;
        self.update(|meta| {
            let database = meta
                .databases
                .get_mut(db)
                .ok_or_else(|| MetaError::DatabaseNotFound(db.to_string()))?;
            if let Some(existing) = database.retention_policies.get(&name) {
                let same_default = !make_default || database.default_retention_policy == name;
                let same = RetentionPolicy {
                    created: existing.created,
                    ..policy.clone()
                };
                if *existing == same && same_default {
                    return Ok((vec![], ()));
                }
                return Err(MetaError::RetentionPolicyExists);
            }
            let created = database
                .retention_policies
                .values()
                .map(|p| p.created + 1)
                .max()
                .unwrap_or(0);
            database
                .retention_policies
                .insert(name.clone(), RetentionPolicy { created, ..policy });
            if make_default {
                database.default_retention_policy = name;
            }
            Ok((vec![Key::Database(db.to_string())], ()))
        })
    }

    /// `ALTER RETENTION POLICY name ON db [DURATION d] [REPLICATION n] [SHARD DURATION s] [DEFAULT]`.
    pub fn alter_retention_policy(
        &self,
        db: &str,
        name: &str,
        spec: &RetentionPolicySpec,
        make_default: bool,
    ) -> Result<(), MetaError> {
        self.update(|meta| {
            let database = meta
                .databases
                .get_mut(db)
                .ok_or_else(|| MetaError::DatabaseNotFound(db.to_string()))?;
            let policy = database
                .retention_policies
                .get_mut(name)
                .ok_or_else(|| MetaError::RetentionPolicyNotFound(name.to_string()))?;
            let mut next = policy.clone();
            if let Some(d) = spec.duration_ns {
                validate_duration(d)?;
                next.duration_ns = d;
            }
            if let Some(r) = spec.replication {
                if r == 0 {
                    return Err(MetaError::ReplicationFactorTooLow);
                }
                next.replication = r;
            }
            if let Some(s) = spec.shard_group_duration_ns {
                next.shard_group_duration_ns = normalise_shard_duration(Some(s), next.duration_ns)?;
            }
            if next.duration_ns != 0 && next.shard_group_duration_ns > next.duration_ns {
                return Err(MetaError::IncompatibleDurations);
            }
            let changed =
                next != *policy || (make_default && database.default_retention_policy != name);
            *policy = next;
            if make_default {
                database.default_retention_policy = name.to_string();
            }
            Ok((Key::database_if(changed, db), ()))
        })
    }

    /// `DROP RETENTION POLICY name ON db`; a missing policy is not an error.
    pub fn drop_retention_policy(&self, db: &str, name: &str) -> Result<bool, MetaError> {
        self.update(|meta| {
            let database = meta
                .databases
                .get_mut(db)
                .ok_or_else(|| MetaError::DatabaseNotFound(db.to_string()))?;
            let existed = database.retention_policies.remove(name).is_some();
            Ok((Key::database_if(existed, db), existed))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: i64 = 24 * HOUR_NS;

    #[test]
    fn create_database_makes_autogen_and_persists() {
        let dir = tempfile::tempdir().unwrap();
        let store = MetaStore::open(dir.path(), 1).unwrap();
        store.create_database("db", None).unwrap();
        store.create_database("db", None).unwrap();
        let reopened = MetaStore::open(dir.path(), 1).unwrap();
        let snap = reopened.snapshot();
        let db = snap.database("db").unwrap();
        assert_eq!(db.default_retention_policy, "autogen");
        let rp = db.retention_policy(None).unwrap();
        assert_eq!(rp.duration_ns, 0);
        assert_eq!(rp.shard_group_duration_ns, 7 * DAY);
        assert_eq!(rp.replication, 1);
        assert_eq!(snap.version, 1);
    }

    #[test]
    fn create_database_with_policy_and_conflicts() {
        let dir = tempfile::tempdir().unwrap();
        let store = MetaStore::open(dir.path(), 1).unwrap();
        let spec = RetentionPolicySpec {
            name: Some("week".into()),
            duration_ns: Some(7 * DAY),
            replication: Some(2),
            shard_group_duration_ns: None,
        };
        store.create_database("db", Some(&spec)).unwrap();
        store.create_database("db", Some(&spec)).unwrap();
        let other = RetentionPolicySpec {
            duration_ns: Some(8 * DAY),
            ..spec.clone()
        };
        assert!(matches!(
            store.create_database("db", Some(&other)),
            Err(MetaError::RetentionPolicyConflict)
        ));
        let snap = store.snapshot();
        let rp = snap.database("db").unwrap().retention_policy(None).unwrap();
        assert_eq!(rp.name, "week");
        assert_eq!(rp.shard_group_duration_ns, DAY);
    }

    #[test]
    fn replicated_meta_converges_and_drops_win_over_older_copies() {
        let (da, db_, dc) = (
            tempfile::tempdir().unwrap(),
            tempfile::tempdir().unwrap(),
            tempfile::tempdir().unwrap(),
        );
        let a = MetaStore::open(da.path(), 1).unwrap();
        let b = MetaStore::open(db_.path(), 2).unwrap();
        let c = MetaStore::open(dc.path(), 3).unwrap();
        a.create_database("x", None).unwrap();
        a.create_database("y", None).unwrap();
        b.merge(&a.snapshot()).unwrap();
        c.merge(&a.snapshot()).unwrap();
        // B drops y and adds a policy to x; C (partitioned) still has the old copies.
        b.drop_database("y").unwrap();
        let spec = RetentionPolicySpec {
            name: Some("week".into()),
            duration_ns: Some(7 * DAY),
            replication: Some(1),
            shard_group_duration_ns: None,
        };
        b.create_retention_policy("x", &spec, false).unwrap();
        // Merging in any order converges to B's newer state.
        let outcome = c.merge(&b.snapshot()).unwrap();
        assert_eq!(outcome.dropped, vec![("y".to_string(), None)]);
        a.merge(&c.snapshot()).unwrap();
        for store in [&a, &b, &c] {
            let snap = store.snapshot();
            assert!(snap.database("y").is_none());
            assert!(snap
                .database("x")
                .unwrap()
                .retention_policies
                .contains_key("week"));
        }
        // An old copy merged back does not resurrect y.
        let stale_dir = tempfile::tempdir().unwrap();
        let stale = MetaStore::open(stale_dir.path(), 9).unwrap();
        stale.create_database("y", None).unwrap();
        let outcome = a.merge(&stale.snapshot()).unwrap();
        assert!(outcome.dropped.is_empty());
        assert!(
            a.snapshot().database("y").is_none(),
            "the drop is newer than y@9's create"
        );
        // A new create after the drop wins.
        a.create_database("y", None).unwrap();
        b.merge(&a.snapshot()).unwrap();
        assert!(b.snapshot().database("y").is_some());
        // Dropping a policy remotely is reported for the storage to follow.
        a.drop_retention_policy("x", "week").unwrap();
        let outcome = c.merge(&a.snapshot()).unwrap();
        assert_eq!(
            outcome.dropped,
            vec![("x".to_string(), Some("week".to_string()))]
        );
    }

    #[test]
    fn retention_policy_rules() {
        let dir = tempfile::tempdir().unwrap();
        let store = MetaStore::open(dir.path(), 1).unwrap();
        store.create_database("db", None).unwrap();
        let short = RetentionPolicySpec {
            name: Some("short".into()),
            duration_ns: Some(HOUR_NS / 2),
            replication: Some(1),
            shard_group_duration_ns: None,
        };
        assert!(matches!(
            store.create_retention_policy("db", &short, false),
            Err(MetaError::DurationTooLow)
        ));
        let bad_sgd = RetentionPolicySpec {
            name: Some("x".into()),
            duration_ns: Some(2 * HOUR_NS),
            replication: Some(1),
            shard_group_duration_ns: Some(DAY),
        };
        assert!(matches!(
            store.create_retention_policy("db", &bad_sgd, false),
            Err(MetaError::IncompatibleDurations)
        ));
        let ok = RetentionPolicySpec {
            name: Some("two_days".into()),
            duration_ns: Some(2 * DAY),
            replication: Some(1),
            shard_group_duration_ns: None,
        };
        store.create_retention_policy("db", &ok, true).unwrap();
        let snap = store.snapshot();
        let db = snap.database("db").unwrap();
        assert_eq!(db.default_retention_policy, "two_days");
        assert_eq!(
            db.retention_policy(None).unwrap().shard_group_duration_ns,
            DAY
        );
        store
            .alter_retention_policy(
                "db",
                "two_days",
                &RetentionPolicySpec {
                    duration_ns: Some(0),
                    ..Default::default()
                },
                false,
            )
            .unwrap();
        assert_eq!(
            store.snapshot().database("db").unwrap().retention_policies["two_days"].duration_ns,
            0
        );
        assert!(store.drop_retention_policy("db", "two_days").unwrap());
        assert!(!store.drop_retention_policy("db", "two_days").unwrap());
        assert!(matches!(
            store.drop_retention_policy("nodb", "x"),
            Err(MetaError::DatabaseNotFound(_))
        ));
        assert!(store.drop_database("db").unwrap());
        assert!(!store.drop_database("db").unwrap());
    }
}
