//! DROP MEASUREMENT, DROP SERIES and DELETE on one core's shards.
//!
//! A [`DeleteRequest`] runs on every core of every node (each core deletes in its own
//! shards); per shard, the series that match at that moment are written to the WAL as a
//! delete record (their keys and the time range) before the answer, so a restart
//! replays exactly the same delete. A node that does not answer fails the statement
//! with its name: its copy keeps the data until the statement runs again.

use crate::influxql::eval::Evaluator;
use crate::influxql::regex::RegexLit;
use crate::tsdb::engine::wal::WalError;
use crate::tsdb::engine::DeleteRecord;
use crate::tsdb::read::scan::parse_series_key;
use crate::tsdb::shard::ShardError;
use crate::tsdb::store::Store;
use serde::{Deserialize, Serialize};
use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DeleteRequest {
    pub database: String,
    /// Unescaped measurement names; with `regexes`, both empty means every measurement.
    pub names: Vec<String>,
    pub regexes: Vec<String>,
    /// The tag condition as InfluxQL text (re-parsed where it runs).
    pub condition: Option<String>,
    pub start_ns: i64,
    pub end_ns: i64,
    /// DROP MEASUREMENT: the measurement's index and field types go too.
    pub drop_measurement: bool,
}

/// Why a delete did not complete (what it removed before stays removed).
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum DeleteError {
    /// The request's condition does not parse (a peer on another version?).
    #[error("bad delete condition: {0}")]
    Condition(String),
    /// A regex of the request does not compile (its text says which and why).
    #[error("{0}")]
    Regex(String),
    /// A shard refused the delete record (its log failed or is closed).
    #[error(transparent)]
    Shard(#[from] ShardError),
    /// The record was taken but did not become durable.
    #[error(transparent)]
    NotDurable(#[from] WalError),
    #[error("the WAL closed before the delete was durable")]
    Closed,
    /// Another core (or node) could not be asked.
    #[error("{0}")]
    Unreachable(String),
}

/// Runs a delete on this core's shards; returns the values removed once every delete
/// record is durable.
pub async fn delete_local(store: &RefCell<Store>, r: &DeleteRequest) -> Result<u64, DeleteError> {
    let condition = match &r.condition {
        Some(text) => {
            let parsed =
                crate::influxql::parser::parse_query(&format!("SELECT x FROM m WHERE {text}"))
                    .map_err(|e| DeleteError::Condition(e.to_string()))?;
            match parsed.into_iter().next() {
                Some(crate::influxql::parser::Statement::Select(s)) => s.condition,
                _ => None,
            }
        }
        None => None,
    };
    let regexes: Vec<RegexLit> = r
        .regexes
        .iter()
        .map(|re| RegexLit::new(re.as_str()))
        .collect();
    let in_condition = condition.iter().flat_map(|c| c.regexes());
    crate::influxql::regex::prepare(regexes.iter().chain(in_condition))
        .await
        .map_err(|(lit, e)| DeleteError::Regex(lit.error_text(&e)))?;
    let wanted = |name: &str| {
        (r.names.is_empty() && regexes.is_empty())
            || r.names.iter().any(|n| n == name)
            || regexes.iter().any(|re| re.is_match(name))
    };
    let mut removed = 0;
    let mut durables = Vec::new();
    {
        let mut store = store.borrow_mut();
        for shard in store.shards_mut() {
            let m = &shard.meta;
            if m.database != r.database || m.end_ns <= r.start_ns || m.start_ns > r.end_ns {
                continue;
            }
            let measurements: Vec<(Vec<u8>, String, BTreeSet<String>)> = shard
                .index()
                .measurements()
                .iter()
                .map(|(raw, index)| {
                    let name =
                        String::from_utf8_lossy(&crate::lineproto::unescape(raw)).into_owned();
                    let tags = index
                        .tags
                        .keys()
                        .map(|k| {
                            String::from_utf8_lossy(&crate::lineproto::unescape(k)).into_owned()
                        })
                        .collect();
                    (raw.to_vec(), name, tags)
                })
                .filter(|(_, name, _)| wanted(name))
                .collect();
            let mut keys = Vec::new();
            let mut dropped = Vec::new();
            for (raw, _, tag_keys) in &measurements {
                let slots: Vec<String> = Vec::new();
                let ev = Evaluator::for_tags(&slots, tag_keys);
                keys.extend(shard.index().matching_series(raw, |key| match &condition {
                    None => true,
                    Some(c) => {
                        let (_, tags) = parse_series_key(&String::from_utf8_lossy(key));
                        let tags: BTreeMap<String, String> = tags.into_iter().collect();
                        ev.matches(c, &tags)
                    }
                }));
                if r.drop_measurement {
                    dropped.push(String::from_utf8_lossy(raw).into_owned());
                }
            }
            if keys.is_empty() && dropped.is_empty() {
                continue;
            }
            let record = DeleteRecord {
                keys,
                start_ns: r.start_ns,
                end_ns: r.end_ns,
                drop_measurements: dropped,
            };
            let (n, durable) = shard.delete(&record)?;
            removed += n;
            durables.push(durable);
        }
    }
    for d in durables {
        match d.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(e.into()),
            Err(_) => return Err(DeleteError::Closed),
        }
    }
    Ok(removed)
}
