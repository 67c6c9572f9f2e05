//! The query engine: SELECT, the SHOW statements over series data, SHOW SHARDS and
//! the deletes (DROP MEASUREMENT, DROP SERIES, DELETE).
//!
//! It reaches the shards only through a [`ShardMapper`] (the cluster layer implements
//! it: this node's cores, then one owner of every other shard), and sees the meta
//! snapshot, its limits and its counters, nothing else. A SELECT plans scans of its
//! measurements (`select`), reduces what comes back on this core (`select`,
//! `functions`) and renders InfluxDB's JSON (`render`, `output`). The statements that
//! change metadata, and the order and bounds of a request's statements, are the
//! statement executor's (`cluster::executor`).

pub mod delete;
pub mod explain;
pub mod functions;
pub mod holt_winters;
pub mod into;
pub mod merge_order;
pub mod output;
pub mod render;
pub mod select;
pub mod series;
pub mod show;

use crate::influxql::ast;
use crate::influxql::parser::{ParseError, Statement};
use crate::meta::MetaData;
use crate::metrics::CoreStats;
use crate::placement::Membership;
use crate::tsdb::read::delete::DeleteRequest;
use crate::tsdb::read::{cancel, scan};
use serde_json::Value;

/// Why a statement failed; the message is what the client sees in `"error"`.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum QueryError {
    /// The statement cannot run as written (InfluxDB's wording where it has one).
    #[error("{0}")]
    Statement(String),
    /// A core or node of this cluster could not be asked (shutting down, gone).
    #[error("{0}")]
    Unreachable(String),
    /// A scan stopped early: the deadline passed, or too many points.
    #[error("{0}")]
    Stopped(#[from] cancel::ScanStop),
    /// A shard could be read from none of its owners.
    #[error("shard {shard}: no owner answered ({detail})")]
    ShardUnavailable { shard: u64, detail: String },
}

impl QueryError {
    pub fn msg(m: impl Into<String>) -> QueryError {
        QueryError::Statement(m.into())
    }
}

/// Options of one `/query` request.
#[derive(Clone, Debug, Default)]
pub struct QueryOptions {
    pub db: Option<String>,
    /// `rp` parameter: the policy of sources that name none.
    pub rp: Option<String>,
    /// `epoch` parameter: `ns`, `u`, `µ`, `ms`, `s`, `m`, `h`; `None`: RFC3339 strings.
    pub epoch: Option<String>,
    /// Bound parameters (`params` JSON object).
    pub params: serde_json::Map<String, Value>,
    /// `chunked=true`: no max-row-limit (chunks bound each piece instead).
    pub chunked: bool,
    /// A GET request: statements that change something run, with InfluxDB's
    /// "deprecated use ... in a read only context" warning.
    pub read_only: bool,
    /// Who asks: the statements are authorized for it before any runs, and SHOW
    /// DATABASES lists only the databases a user who is not an admin holds something on.
    pub principal: crate::meta::Principal,
}

pub use crate::base::LocalFuture;

/// How the query engine reaches the shards: the coordinator's half of InfluxDB's
/// ShardMapper. Each call covers every shard the request names or overlaps, each read
/// from exactly one owner; a shard that no owner could answer for is an error
/// ([`QueryError::ShardUnavailable`]), never a silently partial answer.
pub trait ShardMapper {
    /// The series of one measurement in a time range (or their partial aggregates).
    fn scan<'a>(
        &'a self,
        request: &'a scan::ScanRequest,
    ) -> LocalFuture<'a, Result<Vec<scan::ShardScan>, QueryError>>;
    /// The schema (measurements, tags, fields, series) of a database's shards.
    fn schema<'a>(
        &'a self,
        request: &'a scan::SchemaRequest,
    ) -> LocalFuture<'a, Result<Vec<scan::ShardSchema>, QueryError>>;
    /// A delete on every owner of the shards it touches; the values removed.
    fn delete<'a>(&'a self, request: &'a DeleteRequest)
        -> LocalFuture<'a, Result<u64, QueryError>>;
}

/// `[query]` limits; 0 is unlimited, as InfluxDB.
#[derive(Clone, Copy, Debug, Default)]
pub struct QueryLimits {
    pub max_select_point: usize,
    pub max_select_series: usize,
    pub max_select_buckets: usize,
    pub max_row_limit: usize,
}

impl QueryLimits {
    pub fn from_config(c: &crate::config::QueryConfig) -> QueryLimits {
        QueryLimits {
            max_select_point: c.max_select_point,
            max_select_series: c.max_select_series,
            max_select_buckets: c.max_select_buckets,
            max_row_limit: c.max_row_limit,
        }
    }
}

/// What one statement runs with: the shards (through the mapper), the meta snapshot,
/// the membership (for SHOW SHARDS' owners), its limits and counters, the request's
/// options and the clock.
pub struct QueryContext<'a> {
    pub mapper: &'a dyn ShardMapper,
    pub meta: &'a MetaData,
    pub membership: &'a Membership,
    pub stats: &'a CoreStats,
    pub db: Option<&'a str>,
    pub rp: Option<&'a str>,
    pub params: &'a serde_json::Map<String, Value>,
    pub now_ns: i64,
    pub limits: QueryLimits,
    /// When the statement's work must stop (`query-timeout`, or cancelled).
    pub deadline: cancel::Deadline,
    /// The statement's id in the cluster (peers file its scans under it).
    pub query_id: u64,
}

impl QueryContext<'_> {
    /// Scans every shard of the request under the statement's deadline and
    /// `max-select-point`.
    pub async fn scan(&self, r: &scan::ScanRequest) -> Result<Vec<scan::ShardScan>, QueryError> {
        let mut r = r.clone();
        r.deadline = self.deadline.clone();
        r.query_id = self.query_id;
        r.max_points = self.limits.max_select_point;
        self.mapper.scan(&r).await
    }

    pub async fn schema(
        &self,
        r: &scan::SchemaRequest,
    ) -> Result<Vec<scan::ShardSchema>, QueryError> {
        self.mapper.schema(r).await
    }
}

/// The results of a request's statements and which come from SELECTs, or why it was
/// refused whole.
pub type QueryAnswer = Result<(Vec<Value>, Vec<bool>), QueryRefused>;

/// Why a request ran no statement at all.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum QueryRefused {
    /// It does not parse (HTTP 400, `error parsing query: ...`).
    Parse(ParseError),
    /// A statement needs a privilege the user lacks (HTTP 403, `error authorizing
    /// query: ...`).
    Forbidden(String),
}

impl From<ParseError> for QueryRefused {
    fn from(e: ParseError) -> Self {
        QueryRefused::Parse(e)
    }
}

/// Runs a statement of the query engine's (SELECT, SHOW over series data, SHOW
/// SHARDS / SHARD GROUPS, DROP MEASUREMENT, DROP SERIES, DELETE): its JSON series
/// (`None`: a statement with no series), or the error the client sees. `None` for a
/// statement that is not the query engine's.
pub async fn run_statement(
    qc: &QueryContext<'_>,
    statement: &Statement,
    options: &QueryOptions,
) -> Option<Result<Option<Value>, String>> {
    Some(match statement {
        Statement::Select(sel) => match select::execute(qc, sel).await {
            Ok(series) => {
                let zone = sel.tz.as_deref().and_then(crate::influxql::tz::Zone::load);
                let row_limit = if options.chunked {
                    0
                } else {
                    qc.limits.max_row_limit
                };
                Ok(render::series_json(
                    &series,
                    options.epoch.as_deref(),
                    row_limit,
                    zone.as_ref(),
                ))
            }
            Err(e) => Err(e.to_string()),
        },
        Statement::DropMeasurement { name } => {
            let source = ast::Source::Measurement(ast::Measurement {
                database: None,
                retention_policy: None,
                name: Some(name.clone()),
                regex: None,
            });
            run_delete(qc, &[source], None, true, false).await
        }
        Statement::DeleteSeries {
            sources,
            condition,
            delete,
        } => run_delete(qc, sources, condition.as_ref(), false, *delete).await,
        Statement::ShowShards | Statement::ShowShardGroups => {
            let groups = matches!(statement, Statement::ShowShardGroups);
            show::shards(qc, groups)
                .await
                .map(|series| render::series_json(&series, None, 0, None))
                .map_err(|e| e.to_string())
        }
        Statement::Explain { analyze, select } => explain::explain(qc, select, *analyze)
            .await
            .map(|series| render::series_json(&series, None, 0, None))
            .map_err(|e| e.to_string()),
        Statement::ShowSeriesData(show) => show::execute(qc, show)
            .await
            .map(|series| render::series_json(&series, None, 0, None))
            .map_err(|e| e.to_string()),
        _ => return None,
    })
}

async fn run_delete(
    qc: &QueryContext<'_>,
    sources: &[ast::Source],
    condition: Option<&ast::Expr>,
    drop_measurement: bool,
    time_allowed: bool,
) -> Result<Option<Value>, String> {
    let r = delete::request(qc, sources, condition, drop_measurement, time_allowed)
        .map_err(|e| e.to_string())?;
    qc.mapper.delete(&r).await.map_err(|e| e.to_string())?;
    Ok(None)
}

/// The first bound parameter a statement names that `params` lacks.
pub fn missing_param(st: &Statement, params: &serde_json::Map<String, Value>) -> Option<String> {
    first_param_where(st, &|p| !params.contains_key(p))
}

/// Why a bound parameter the statement names cannot be bound: a JSON array or object
/// (InfluxDB's `unable to bind parameter with type []interface {}` / `map[...]`).
pub fn unbindable_param(st: &Statement, params: &serde_json::Map<String, Value>) -> Option<String> {
    let go_type = |p: &str| match params.get(p) {
        Some(Value::Array(_)) => Some("[]interface {}"),
        Some(Value::Object(_)) => Some("map[string]interface {}"),
        _ => None,
    };
    let name = first_param_where(st, &|p| go_type(p).is_some())?;
    Some(format!(
        "missing parameter: unable to bind parameter with type {}",
        go_type(&name)?
    ))
}

/// The first bound parameter of a statement (fields, condition, counts, subqueries)
/// for which `pick` holds.
fn first_param_where(st: &Statement, pick: &dyn Fn(&str) -> bool) -> Option<String> {
    fn in_select(s: &ast::Select, pick: &dyn Fn(&str) -> bool) -> Option<String> {
        let mut found = None;
        let mut check = |e: &ast::Expr| {
            e.walk(&mut |x| {
                if let ast::Expr::BoundParam(p) = x {
                    if pick(p) && found.is_none() {
                        found = Some(p.clone());
                    }
                }
            })
        };
        s.fields.iter().for_each(|f| check(&f.expr));
        if let Some(c) = &s.condition {
            check(c);
        }
        if let Some((_, p)) = s.count_params.iter().find(|(_, p)| pick(p)) {
            found.get_or_insert(p.clone());
        }
        if found.is_some() {
            return found;
        }
        s.sources.iter().find_map(|src| match src {
            ast::Source::Subquery(inner) => in_select(inner, pick),
            _ => None,
        })
    }
    match st {
        Statement::Select(s) => in_select(s, pick),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use crate::influxql::format::go_duration;

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
