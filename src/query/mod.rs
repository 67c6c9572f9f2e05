//! `/query`: parses InfluxQL and executes it, producing InfluxDB's JSON results.
//!
//! Database and retention-policy statements run against the meta store (DROP also
//! drops shards on every core). SELECT and the SHOW statements over series data scan
//! the shards (`scan`), reduce on this core (`select`, `functions`) and render
//! InfluxDB's JSON (`render`). Like InfluxDB, statements run in order and the run stops
//! at the first one that fails; that one carries the error.

pub mod ast;
pub mod cancel;
pub mod delete;
pub mod format;
pub mod functions;
pub mod output;
pub mod parser;
pub mod regex;
pub mod render;
pub mod scan;
pub mod select;
pub mod show;
pub mod tz;
pub mod value;

use crate::meta::MetaError;
use crate::metrics::Timer;
use crate::net::mesh::MeshError;
use crate::node::{CoreContext, CoreStats};
use parser::{ParseError, Statement};
use serde_json::{json, Value};
use std::rc::Rc;

/// Why a statement failed; the message is what the client sees in `"error"`.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum QueryError {
    /// The statement cannot run as written (InfluxDB's wording where it has one).
    #[error("{0}")]
    Statement(String),
    #[error("{0}")]
    Mesh(#[from] MeshError),
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
}

/// What the statements of one request share: the core, options and the clock.
pub struct QueryContext<'a> {
    pub ctx: &'a Rc<CoreContext>,
    pub db: Option<&'a str>,
    pub rp: Option<&'a str>,
    pub params: &'a serde_json::Map<String, Value>,
    pub now_ns: i64,
    /// `[query]` limits; 0 is unlimited, as InfluxDB.
    pub max_select_point: usize,
    pub max_select_series: usize,
    pub max_select_buckets: usize,
    /// When the statement's work must stop (`query-timeout`, or cancelled).
    pub deadline: cancel::Deadline,
    /// The statement's id in the cluster (peers file its scans under it).
    pub query_id: u64,
}

impl QueryContext<'_> {
    /// Scans every shard of the request, local or, in a cluster, on one owner, under
    /// the statement's deadline and `max-select-point`.
    pub async fn scan(&self, r: &scan::ScanRequest) -> Result<Vec<scan::ShardScan>, QueryError> {
        let mut r = r.clone();
        r.deadline = self.deadline.clone();
        r.query_id = self.query_id;
        r.max_points = self.max_select_point;
        crate::cluster::query::scan_cluster(self.ctx, &r).await
    }

    pub async fn schema(
        &self,
        r: &scan::SchemaRequest,
    ) -> Result<Vec<scan::ShardSchema>, QueryError> {
        crate::cluster::query::schema_cluster(self.ctx, r).await
    }
}

fn missing_param(st: &Statement, params: &serde_json::Map<String, Value>) -> Option<String> {
    fn in_select(s: &ast::Select, params: &serde_json::Map<String, Value>) -> Option<String> {
        let mut missing = None;
        let mut check = |e: &ast::Expr| {
            e.walk(&mut |x| {
                if let ast::Expr::BoundParam(p) = x {
                    if !params.contains_key(p) && missing.is_none() {
                        missing = Some(p.clone());
                    }
                }
            })
        };
        s.fields.iter().for_each(|f| check(&f.expr));
        if let Some(c) = &s.condition {
            check(c);
        }
        if let Some((_, p)) = s.count_params.iter().find(|(_, p)| !params.contains_key(p)) {
            missing.get_or_insert(p.clone());
        }
        if missing.is_some() {
            return missing;
        }
        s.sources.iter().find_map(|src| match src {
            ast::Source::Subquery(inner) => in_select(inner, params),
            _ => None,
        })
    }
    match st {
        Statement::Select(s) => in_select(s, params),
        _ => None,
    }
}

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
    options: &QueryOptions,
) -> Result<Vec<Value>, ParseError> {
    Ok(execute_with_kinds(ctx, q, options).await?.0)
}

/// The results of a request's statements and which come from SELECTs, or the parse
/// error that fails it whole.
pub type QueryAnswer = Result<(Vec<Value>, Vec<bool>), ParseError>;

/// [`execute`], also saying which results come from SELECT statements (chunked
/// answers mark a SELECT's series `partial` between chunks, SHOW's not).
///
/// When one core of this node holds every shard of the request's database and it is
/// not this one, the request runs there (one mesh round trip instead of one per
/// schema and scan request); where the data lies never changes an answer.
pub async fn execute_with_kinds(
    ctx: &Rc<CoreContext>,
    q: &str,
    options: &QueryOptions,
) -> QueryAnswer {
    if let Some(core) = options.db.as_deref().and_then(|db| ctx.sole_core(db)) {
        if core != ctx.core {
            let forwarded = ctx
                .mesh
                .call(core, |reply| crate::node::MeshRequest::Query {
                    text: q.to_string(),
                    options: options.clone(),
                    reply,
                })
                .await;
            if let Ok(answer) = forwarded {
                return answer;
            }
        }
    }
    execute_here(ctx, q, options).await
}

/// Every regex literal of a statement.
fn statement_regexes(st: &Statement) -> Vec<&regex::RegexLit> {
    let mut out = Vec::new();
    match st {
        Statement::Select(s) => s.regexes(&mut out),
        Statement::DeleteSeries {
            sources, condition, ..
        } => ast::regexes_of(sources, condition, &[], &mut out),
        Statement::ShowSeriesData(show) => {
            match &show.what {
                ast::ShowWhat::Measurements {
                    filter: Some((_, e)),
                } => out.extend(e.regexes()),
                ast::ShowWhat::TagValues { regex, .. }
                | ast::ShowWhat::TagValuesCardinality { regex, .. } => out.extend(regex),
                _ => {}
            }
            ast::regexes_of(&show.sources, &show.condition, &[], &mut out);
        }
        _ => {}
    }
    out
}

/// [`execute_with_kinds`] on this core.
pub async fn execute_here(ctx: &Rc<CoreContext>, q: &str, options: &QueryOptions) -> QueryAnswer {
    let max_bytes = ctx.config.query.max_query_bytes;
    if max_bytes > 0 && q.len() > max_bytes {
        return Err(ParseError::plain(format!(
            "query too large: {} bytes, more than max-query-bytes ({max_bytes})",
            q.len()
        )));
    }
    let statements = parser::parse_query(q)?;
    // Regexes compile once, before anything runs, a costly one off this core; one that
    // does not compile fails the query as a parse error, as in InfluxDB.
    for st in &statements {
        if let Err((lit, e)) = regex::prepare(statement_regexes(st)).await {
            return Err(ParseError::plain(lit.error_text(&e)));
        }
    }
    // A bound parameter without a value, or an unknown time zone, fails the whole
    // query as a parse error, as InfluxDB.
    for st in &statements {
        if let Statement::Select(s) = st {
            if let Some(name) = &s.tz {
                if tz::Zone::load(name).is_none() {
                    return Err(ParseError::plain(format!(
                        "unable to find time zone {name}"
                    )));
                }
            }
        }
        if let Some(name) = missing_param(st, &options.params) {
            return Err(ParseError::plain(format!("missing parameter: {name}")));
        }
    }
    let mut results = Vec::with_capacity(statements.len());
    let mut kinds = Vec::with_capacity(statements.len());
    let version_before = ctx.meta.snapshot().version;
    let now = crate::base::time::now_ns();
    let timeout = ctx.config.query.query_timeout_ms;
    for (id, statement) in statements.iter().enumerate() {
        let started = std::time::Instant::now();
        let qc = QueryContext {
            ctx,
            db: options.db.as_deref(),
            rp: options.rp.as_deref(),
            params: &options.params,
            now_ns: now,
            max_select_point: ctx.config.query.max_select_point,
            max_select_series: ctx.config.query.max_select_series,
            max_select_buckets: ctx.config.query.max_select_buckets,
            deadline: cancel::Deadline::after(
                (timeout > 0).then(|| std::time::Duration::from_millis(timeout)),
            ),
            query_id: crate::cluster::query::next_query_id(ctx),
        };
        let run = execute_statement(&qc, statement, options);
        let outcome = if timeout == 0 {
            run.await
        } else {
            // On timeout the statement's future is dropped, which cancels what it
            // asked of peers; the flag (below) stops this node's cores.
            futures_lite::future::or(run, async {
                glommio::timer::sleep(std::time::Duration::from_millis(timeout)).await;
                Err("query-timeout limit exceeded".to_string())
            })
            .await
        };
        // Whatever ended the statement, nothing it started may go on.
        qc.deadline.cancel();
        ctx.timers.record(statement_timer(statement), started);
        CoreStats::add(&ctx.stats.query_statements, 1);
        if outcome.is_err() {
            CoreStats::add(&ctx.stats.query_errors, 1);
        }
        match outcome {
            Ok(Some(series)) => {
                results.push(json!({ "statement_id": id, "series": series }));
                kinds.push(matches!(statement, Statement::Select(_)));
            }
            Ok(None) => {
                results.push(json!({ "statement_id": id }));
                kinds.push(false);
            }
            Err(message) => {
                results.push(json!({ "statement_id": id, "error": message }));
                kinds.push(false);
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
    Ok((results, kinds))
}

/// The histogram a statement's time goes to.
fn statement_timer(statement: &Statement) -> Timer {
    match statement {
        Statement::Select(_) => Timer::QuerySelect,
        Statement::DeleteSeries { .. } | Statement::DropMeasurement { .. } => Timer::QueryDelete,
        Statement::ShowDatabases
        | Statement::ShowRetentionPolicies { .. }
        | Statement::ShowSeriesData(_)
        | Statement::ShowShards
        | Statement::ShowShardGroups
        | Statement::ShowStats { .. } => Timer::QueryShow,
        _ => Timer::QueryOther,
    }
}

/// `SHOW STATS [FOR 'module']`: the node's statistics groups, every core merged, one
/// series per group (InfluxDB's monitor layout).
async fn show_stats(ctx: &Rc<CoreContext>, module: Option<&str>) -> Result<Option<Value>, String> {
    let (snapshot, gauges) = ctx.node_metrics().await.map_err(|e| e.to_string())?;
    let series: Vec<Value> =
        crate::metrics::stats_groups(&snapshot, &gauges, &ctx.http_addr.to_string())
            .into_iter()
            .filter(|g| module.is_none_or(|m| m == g.name))
            .map(|g| {
                let mut s = json!({ "name": g.name });
                if !g.tags.is_empty() {
                    s["tags"] = g.tags_json();
                }
                s["columns"] = json!(g.values.iter().map(|(k, _)| k).collect::<Vec<_>>());
                s["values"] = json!([g.values.iter().map(|(_, v)| v).collect::<Vec<_>>()]);
                s
            })
            .collect();
    Ok(if series.is_empty() {
        None
    } else {
        Some(Value::Array(series))
    })
}

async fn execute_statement(
    qc: &QueryContext<'_>,
    statement: &Statement,
    options: &QueryOptions,
) -> Result<Option<Value>, String> {
    let ctx = qc.ctx;
    let db = qc.db;
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
            let mut policies: Vec<&crate::meta::RetentionPolicy> =
                database.retention_policies.values().collect();
            policies.sort_by_key(|p| (p.created, p.name.clone()));
            let values: Vec<Value> = policies
                .into_iter()
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
        Statement::Select(sel) => {
            let series = select::execute(qc, sel).await.map_err(|e| e.to_string())?;
            let zone = sel.tz.as_deref().and_then(tz::Zone::load);
            Ok(render::series_json(
                &series,
                options.epoch.as_deref(),
                if options.chunked {
                    0
                } else {
                    ctx.config.query.max_row_limit
                },
                zone.as_ref(),
            ))
        }
        Statement::DropMeasurement { name } => {
            let source = ast::Source::Measurement(ast::Measurement {
                database: None,
                retention_policy: None,
                name: Some(name.clone()),
                regex: None,
            });
            let r = delete::request(qc, &[source], None, true, false).map_err(|e| e.to_string())?;
            crate::cluster::query::delete_cluster(ctx, &r)
                .await
                .map_err(|e| e.to_string())?;
            Ok(None)
        }
        Statement::DeleteSeries {
            sources,
            condition,
            delete,
        } => {
            let r = delete::request(qc, sources, condition.as_ref(), false, *delete)
                .map_err(|e| e.to_string())?;
            crate::cluster::query::delete_cluster(ctx, &r)
                .await
                .map_err(|e| e.to_string())?;
            Ok(None)
        }
        Statement::ShowStats { module } => show_stats(ctx, module.as_deref()).await,
        Statement::ShowShards | Statement::ShowShardGroups => {
            let groups = matches!(statement, Statement::ShowShardGroups);
            show::shards(qc, groups)
                .await
                .map(|series| render::series_json(&series, None, 0, None))
                .map_err(|e| e.to_string())
        }
        Statement::ShowSeriesData(show) => {
            let series = show::execute(qc, show).await.map_err(|e| e.to_string())?;
            Ok(render::series_json(&series, None, 0, None))
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
