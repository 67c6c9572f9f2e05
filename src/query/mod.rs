//! `/query`: parses InfluxQL and executes it, producing InfluxDB's JSON results.
//!
//! Today the executor runs database and retention-policy statements against the meta
//! store (and drops shards on every core for DROP). Like InfluxDB, it runs statements
//! in order and stops at the first one that fails; that one carries the error.

pub mod parser;

use crate::meta::MetaError;
use crate::node::CoreContext;
use parser::{ParseError, Statement};
use serde_json::{json, Value};
use std::rc::Rc;

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

/// Runs every statement of `q`. A parse error fails the whole query (HTTP 400); a
/// statement error ends the run with that statement's error result.
pub async fn execute(
    ctx: &Rc<CoreContext>,
    q: &str,
    db: Option<&str>,
) -> Result<Vec<Value>, ParseError> {
    let statements = parser::parse_query(q)?;
    let mut results = Vec::with_capacity(statements.len());
    let version_before = ctx.meta.snapshot().version;
    for (id, statement) in statements.iter().enumerate() {
        match execute_statement(ctx, statement, db).await {
            Ok(Some(series)) => results.push(json!({ "statement_id": id, "series": series })),
            Ok(None) => results.push(json!({ "statement_id": id })),
            Err(message) => {
                results.push(json!({ "statement_id": id, "error": message }));
                break;
            }
        }
    }
    // Push DDL to the other nodes at once (best effort; the periodic sync catches up
    // with peers that were not reached).
    if ctx.cluster.is_some() && ctx.meta.snapshot().version != version_before {
        let ctx = ctx.clone();
        glommio::spawn_local(async move {
            crate::cluster::meta_sync::sync_round(&ctx).await;
        })
        .detach();
    }
    Ok(results)
}

async fn execute_statement(
    ctx: &Rc<CoreContext>,
    statement: &Statement,
    db: Option<&str>,
) -> Result<Option<Value>, String> {
    let meta = &ctx.meta;
    let err = |e: MetaError| e.to_string();
    match statement {
        Statement::CreateDatabase {
            name,
            retention_policy,
        } => {
            meta.create_database(name, retention_policy.as_ref())
                .map_err(err)?;
            Ok(None)
        }
        Statement::DropDatabase { name } => {
            meta.drop_database(name).map_err(err)?;
            ctx.drop_shards_everywhere(name, None)
                .await
                .map_err(|e| e.to_string())?;
            Ok(None)
        }
        Statement::ShowDatabases => {
            let snap = meta.snapshot();
            let values: Vec<Value> = snap.databases.keys().map(|n| json!([n])).collect();
            let mut series = json!({ "name": "databases", "columns": ["name"] });
            if !values.is_empty() {
                series["values"] = Value::Array(values);
            }
            Ok(Some(json!([series])))
        }
        Statement::CreateRetentionPolicy {
            database,
            spec,
            default,
            ..
        } => {
            meta.create_retention_policy(database, spec, *default)
                .map_err(err)?;
            Ok(None)
        }
        Statement::AlterRetentionPolicy {
            name,
            database,
            spec,
            default,
        } => {
            meta.alter_retention_policy(database, name, spec, *default)
                .map_err(err)?;
            Ok(None)
        }
        Statement::DropRetentionPolicy { name, database } => {
            meta.drop_retention_policy(database, name).map_err(err)?;
            ctx.drop_shards_everywhere(database, Some(name))
                .await
                .map_err(|e| e.to_string())?;
            Ok(None)
        }
        Statement::ShowRetentionPolicies { database } => {
            let Some(name) = database.as_deref().or(db) else {
                return Err(MetaError::DatabaseNameRequired.to_string());
            };
            let snap = meta.snapshot();
            let database = snap
                .database(name)
                .ok_or_else(|| MetaError::DatabaseNotFound(name.to_string()).to_string())?;
            let values: Vec<Value> = database
                .retention_policies
                .values()
                .map(|rp| {
                    json!([
                        rp.name,
                        go_duration(rp.duration_ns),
                        go_duration(rp.shard_group_duration_ns),
                        rp.replication,
                        rp.name == database.default_retention_policy
                    ])
                })
                .collect();
            let mut series = json!({
                "columns": ["name", "duration", "shardGroupDuration", "replicaN", "default"]
            });
            if !values.is_empty() {
                series["values"] = Value::Array(values);
            }
            Ok(Some(json!([series])))
        }
        Statement::Unsupported { kind } => Err(format!(
            "{kind} statements are not supported by this version of ShardCore yet"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::go_duration;

    #[test]
    fn durations_print_as_go_does() {
        const S: i64 = 1_000_000_000;
        assert_eq!(go_duration(0), "0s");
        assert_eq!(go_duration(168 * 3600 * S), "168h0m0s");
        assert_eq!(go_duration(3600 * S), "1h0m0s");
        assert_eq!(go_duration(90 * S), "1m30s");
        assert_eq!(go_duration(30 * S), "30s");
        assert_eq!(go_duration(1_500_000_000), "1.5s");
        assert_eq!(go_duration(1_500_000), "1.5ms");
        assert_eq!(go_duration(42), "42ns");
        assert_eq!(go_duration(24 * 3600 * S + 61 * S), "24h1m1s");
    }
}
