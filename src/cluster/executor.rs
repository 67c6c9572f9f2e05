//! The statement executor: runs the statements of one `/query` request in order, as
//! InfluxDB's does (the run stops at the first that fails; that one carries the
//! error), each under `query-timeout` and with its own deadline and query id.
//!
//! It parses the text (bounded by `max-query-bytes`), compiles its regexes once (off
//! the core when costly), authorizes every statement for the request's principal
//! before any runs (403 otherwise), runs the statements that change or show metadata
//! itself (databases, retention policies, users and grants — bcrypt in the blocking
//! pool —, SHOW STATS) and hands the others to the query engine
//! (`query::run_statement`) with the cluster's ShardMapper; metadata changes are
//! pushed to the peers at once. A request whose database lives on one other core of
//! this node runs there whole.

use crate::cluster::admin::{Admin, AdminReply, AdminRequest, AdminResponse, QueryRegistry};
use crate::cluster::local::LocalNode;
use crate::cluster::meta_sync::MetaSyncService;
use crate::cluster::points_writer::{Consistency, PointsWriter};
use crate::cluster::shard_mapper::ClusterShardMapper;
use crate::cluster::shard_writer::ShardWriter;
use crate::config::QueryConfig;
use crate::influxql::ast;
use crate::influxql::format::go_duration;
use crate::influxql::parser::{self, ParseError, Statement};
use crate::influxql::{regex, tz};
use crate::meta::{MetaError, MetaStore, Principal, Privilege};
use crate::metrics::{CoreStats, CoreTimers, Timer};
use crate::placement::Membership;
use crate::placement::NodeId;
use crate::query::{
    missing_param, QueryAnswer, QueryContext, QueryLimits, QueryOptions, QueryRefused,
};
use crate::tsdb::read::cancel;
use serde_json::{json, Value};
use std::rc::Rc;
use std::sync::Arc;

/// This core's statement executor, built with what it needs: the node's cores, the
/// cluster's ShardMapper, the meta store (and meta sync, to push DDL), the `[query]`
/// limits and this core's counters.
pub struct StatementExecutor {
    local: Rc<dyn LocalNode>,
    mapper: ClusterShardMapper,
    /// Writes the points of SELECT ... INTO.
    points_writer: Rc<PointsWriter>,
    /// The statements this core runs (SHOW QUERIES, KILL QUERY).
    queries: Rc<QueryRegistry>,
    /// With peers: SHOW QUERIES, KILL QUERY and DROP SHARD reach them through it.
    shard_writer: Option<Rc<ShardWriter>>,
    node_id: NodeId,
    meta: Arc<MetaStore>,
    /// With peers: pushes DDL to them at once.
    meta_sync: Option<Rc<MetaSyncService>>,
    membership: Membership,
    config: QueryConfig,
    stats: Rc<CoreStats>,
    timers: Rc<CoreTimers>,
    /// The HTTP address, the `hostname` tag of SHOW STATS.
    hostname: String,
    /// SHOW DIAGNOSTICS' configuration groups, and when the node started.
    diagnostics: Rc<(Vec<crate::config::DiagnosticsGroup>, std::time::SystemTime)>,
}

impl StatementExecutor {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        local: Rc<dyn LocalNode>,
        mapper: ClusterShardMapper,
        points_writer: Rc<PointsWriter>,
        queries: Rc<QueryRegistry>,
        shard_writer: Option<Rc<ShardWriter>>,
        node_id: NodeId,
        meta: Arc<MetaStore>,
        meta_sync: Option<Rc<MetaSyncService>>,
        membership: Membership,
        config: QueryConfig,
        stats: Rc<CoreStats>,
        timers: Rc<CoreTimers>,
        hostname: String,
        diagnostics: Rc<(Vec<crate::config::DiagnosticsGroup>, std::time::SystemTime)>,
    ) -> StatementExecutor {
        StatementExecutor {
            local,
            mapper,
            points_writer,
            queries,
            shard_writer,
            node_id,
            meta,
            meta_sync,
            membership,
            config,
            stats,
            timers,
            hostname,
            diagnostics,
        }
    }

    /// Runs every statement of `q`: the results, and which come from SELECT statements
    /// (chunked answers mark a SELECT's series `partial` between chunks, SHOW's not). A
    /// parse error fails the whole query (HTTP 400); a statement error ends the run
    /// with that statement's error result.
    ///
    /// When one core of this node holds every shard of the request's database and it
    /// is not this one, the request runs there (one mesh round trip instead of one per
    /// schema and scan request); where the data lies never changes an answer.
    pub async fn execute(&self, q: &str, options: &QueryOptions) -> QueryAnswer {
        if let Some(core) = options
            .db
            .as_deref()
            .and_then(|db| self.local.sole_core(db))
        {
            if core != self.local.core() {
                let forwarded = self
                    .local
                    .query_on(core, q.to_string(), options.clone())
                    .await;
                if let Ok(answer) = forwarded {
                    return answer;
                }
            }
        }
        self.execute_here(q, options).await
    }

    /// Runs a continuous query's `SELECT ... INTO` (its time range set) on this core,
    /// unchecked (the system runs it, as InfluxDB's CQ service does), under
    /// `query-timeout`: the points it wrote.
    pub async fn run_select_into(
        &self,
        database: &str,
        select: &ast::Select,
    ) -> Result<usize, String> {
        let options = QueryOptions {
            db: Some(database.to_string()),
            ..QueryOptions::default()
        };
        let meta = self.meta.snapshot();
        let qc = self.context(&meta, &options, crate::base::time::now_ns());
        let outcome = with_timeout(
            self.config.query_timeout_ms,
            select_into_points(self, &qc, select),
        )
        .await;
        qc.deadline.cancel();
        CoreStats::add(&self.stats.query_statements, 1);
        if outcome.is_err() {
            CoreStats::add(&self.stats.query_errors, 1);
        }
        outcome
    }

    /// What one statement runs with: the request's options over this meta snapshot,
    /// its own deadline (`query-timeout`) and query id.
    fn context<'a>(
        &'a self,
        meta: &'a crate::meta::MetaData,
        options: &'a QueryOptions,
        now: i64,
    ) -> QueryContext<'a> {
        let timeout = self.config.query_timeout_ms;
        QueryContext {
            mapper: &self.mapper,
            meta,
            membership: &self.membership,
            stats: &self.stats,
            db: options.db.as_deref(),
            rp: options.rp.as_deref(),
            params: &options.params,
            now_ns: now,
            limits: QueryLimits::from_config(&self.config),
            deadline: cancel::Deadline::after(
                (timeout > 0).then(|| std::time::Duration::from_millis(timeout)),
            ),
            query_id: self.mapper.next_query_id(),
        }
    }

    /// [`Self::execute`] on this core.
    pub async fn execute_here(&self, q: &str, options: &QueryOptions) -> QueryAnswer {
        execute_here(self, q, options).await
    }
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

async fn execute_here(ctx: &StatementExecutor, q: &str, options: &QueryOptions) -> QueryAnswer {
    let max_bytes = ctx.config.max_query_bytes;
    if max_bytes > 0 && q.len() > max_bytes {
        return Err(ParseError::plain(format!(
            "query too large: {} bytes, more than max-query-bytes ({max_bytes})",
            q.len()
        ))
        .into());
    }
    let statements = Rc::new(parser::parse_query(q)?);
    // Regexes compile once, before anything runs, a costly one off this core; one that
    // does not compile fails the query as a parse error, as in InfluxDB.
    for st in statements.iter() {
        if let Err((lit, e)) = regex::prepare(statement_regexes(st)).await {
            return Err(ParseError::plain(lit.error_text(&e)).into());
        }
    }
    // A bound parameter without a value, or an unknown time zone, fails the whole
    // query as a parse error, as InfluxDB.
    for st in statements.iter() {
        if let Statement::Select(s) = st {
            if let Some(name) = &s.tz {
                if tz::Zone::load(name).is_none() {
                    return Err(
                        ParseError::plain(format!("unable to find time zone {name}")).into(),
                    );
                }
            }
        }
        if let Some(name) = missing_param(st, &options.params) {
            return Err(ParseError::plain(format!("missing parameter: {name}")).into());
        }
        if let Some(message) = crate::query::unbindable_param(st, &options.params) {
            return Err(ParseError::plain(message).into());
        }
    }
    // Every statement is authorized before any runs (InfluxDB's QueryAuthorizer).
    crate::influxql::authorize::authorize_query(
        &ctx.meta.snapshot(),
        &options.principal,
        &statements,
        options.db.as_deref(),
    )
    .map_err(QueryRefused::Forbidden)?;
    let mut results = Vec::with_capacity(statements.len());
    let mut kinds = Vec::with_capacity(statements.len());
    let version_before = ctx.meta.snapshot().version;
    let now = crate::base::time::now_ns();
    let timeout = ctx.config.query_timeout_ms;
    let database: Option<Rc<str>> = options.db.as_deref().map(Rc::from);
    for (id, statement) in statements.iter().enumerate() {
        let started = std::time::Instant::now();
        let meta = ctx.meta.snapshot();
        let qc = ctx.context(&meta, options, now);
        let mut registration = ctx.queries.register(
            qc.query_id,
            statements.clone(),
            id,
            database.clone(),
            qc.deadline.clone(),
        );
        let outcome = futures_lite::future::or(
            with_timeout(timeout, execute_statement(ctx, &qc, statement, options)),
            async {
                let _ = (&mut registration.killed).await;
                Err("query interrupted".to_string())
            },
        )
        .await;
        drop(registration);
        // Whatever ended the statement, nothing it started may go on.
        qc.deadline.cancel();
        ctx.timers.record(statement_timer(statement), started);
        CoreStats::add(&ctx.stats.query_statements, 1);
        if outcome.is_err() {
            CoreStats::add(&ctx.stats.query_errors, 1);
        }
        match outcome {
            Ok(Some(series)) => {
                let mut result = json!({ "statement_id": id, "series": series });
                // SELECT ... INTO with GET: InfluxDB's read-only warning, the statement
                // printed with its sources and target qualified.
                if let (true, Statement::Select(sel)) = (options.read_only, statement) {
                    if sel.into.is_some() {
                        let mut shown = (**sel).clone();
                        if let Some(db) = options.db.as_deref() {
                            let _ = qualify_select(&meta, db, &mut shown);
                        }
                        result["messages"] = json!([{
                            "level": "warning",
                            "text": format!("deprecated use of '{shown}' in a read only context, please use a POST request instead"),
                        }]);
                    }
                }
                results.push(result);
                kinds.push(matches!(statement, Statement::Select(_)));
            }
            Ok(None) if options.read_only && warns_when_read_only(statement) => {
                let text = format!(
                    "deprecated use of '{statement}' in a read only context, please use a POST request instead"
                );
                results.push(json!({
                    "statement_id": id,
                    "messages": [{ "level": "warning", "text": text }],
                }));
                kinds.push(false);
            }
            Ok(None) => {
                results.push(json!({ "statement_id": id }));
                kinds.push(false);
            }
            Err(message) => {
                results.push(json!({ "statement_id": id, "error": message }));
                kinds.push(false);
                // InfluxDB then sends "not executed" for each statement left, under the
                // failed statement's id: chunked, one more line each; otherwise the
                // last result of an id replaces the others, so the failure reads
                // "not executed" (1.6 to 1.8 alike).
                let left = statements.len() - 1 - id;
                if left > 0 {
                    if options.chunked {
                        for _ in 0..left {
                            results.push(json!({ "statement_id": id, "error": "not executed" }));
                            kinds.push(false);
                        }
                    } else {
                        results[id]["error"] = json!("not executed");
                    }
                }
                break;
            }
        }
    }
    // Push DDL to the other nodes at once (best effort; the periodic sync catches up
    // with peers that were not reached).
    if let Some(sync) = &ctx.meta_sync {
        if ctx.meta.snapshot().version != version_before {
            sync.push();
        }
    }
    Ok((results, kinds))
}

/// `SELECT ... INTO`: runs the SELECT, writes its rows as points of the target
/// (`query::into`) through the PointsWriter (consistency one, as InfluxDB's
/// IntoWriter), and answers InfluxDB's `result` series: how many points were written.
async fn select_into(
    ctx: &StatementExecutor,
    qc: &QueryContext<'_>,
    sel: &ast::Select,
    options: &QueryOptions,
) -> Result<Option<Value>, String> {
    let points = select_into_points(ctx, qc, sel).await?;
    let result = crate::query::series::ResultSeries {
        name: "result".into(),
        tags: None,
        columns: vec!["time".into(), "written".into()],
        values: vec![vec![
            crate::influxql::value::Val::Int(0),
            crate::influxql::value::Val::Int(points as i64),
        ]],
    };
    Ok(crate::query::render::series_json(
        &[result],
        options.epoch.as_deref(),
        0,
        None,
    ))
}

/// The work of [`select_into`]: the points written.
async fn select_into_points(
    ctx: &StatementExecutor,
    qc: &QueryContext<'_>,
    sel: &ast::Select,
) -> Result<usize, String> {
    let Some(target) = &sel.into else {
        return Err("SELECT INTO without a target".into());
    };
    let snap = ctx.meta.snapshot();
    let db = target
        .database
        .as_deref()
        .or(qc.db)
        .ok_or_else(|| MetaError::DatabaseNameRequired.to_string())?;
    let database = snap
        .database(db)
        .ok_or_else(|| MetaError::DatabaseNotFound(db.to_string()).to_string())?;
    let rp = match target.retention_policy.as_deref() {
        Some(rp) if !database.retention_policies.contains_key(rp) => {
            return Err(MetaError::RetentionPolicyNotFound(rp.to_string()).to_string())
        }
        Some(rp) => rp.to_string(),
        None => database.default_retention_policy.clone(),
    };
    let mut plain = sel.clone();
    plain.into = None;
    let series = crate::query::select::execute(qc, &plain)
        .await
        .map_err(|e| e.to_string())?;
    let (lines, points) = crate::query::into::line_protocol(&series, target.name.as_deref());
    if points > 0 {
        let outcome = ctx
            .points_writer
            .write(
                db,
                Some(&rp),
                crate::lineproto::Precision::Nanosecond,
                Consistency::One,
                bytes::Bytes::from(lines),
            )
            .await
            .map_err(|e| e.to_string())?;
        let dropped = outcome.points_dropped() + outcome.parse_errors.len();
        if dropped > 0 {
            let reason = outcome
                .rejected
                .first()
                .cloned()
                .or_else(|| outcome.parse_errors.first().map(|e| e.to_string()))
                .unwrap_or_else(|| "points beyond retention policy".to_string());
            return Err(format!("partial write: {reason} dropped={dropped}"));
        }
    }
    Ok(points)
}

/// Qualifies every measurement of a continuous query's SELECT (sources, subqueries'
/// sources, the target) with database (`default_db` when it names none) and policy
/// (the database's default), each checked to exist: InfluxDB's normalisation of a CQ
/// before it is stored.
fn qualify_select(
    meta: &crate::meta::MetaData,
    default_db: &str,
    sel: &mut ast::Select,
) -> Result<(), String> {
    fn qualify(
        meta: &crate::meta::MetaData,
        default_db: &str,
        m: &mut ast::Measurement,
    ) -> Result<(), String> {
        let db = m.database.clone().unwrap_or_else(|| default_db.to_string());
        let database = meta
            .database(&db)
            .ok_or_else(|| MetaError::DatabaseNotFound(db.clone()).to_string())?;
        let rp = m
            .retention_policy
            .clone()
            .unwrap_or_else(|| database.default_retention_policy.clone());
        if !database.retention_policies.contains_key(&rp) {
            return Err(MetaError::RetentionPolicyNotFound(format!("{db}.{rp}")).to_string());
        }
        m.database = Some(db);
        m.retention_policy = Some(rp);
        Ok(())
    }
    for source in &mut sel.sources {
        match source {
            ast::Source::Measurement(m) => qualify(meta, default_db, m)?,
            ast::Source::Subquery(inner) => {
                let mut inner_sel = (**inner).clone();
                qualify_select(meta, default_db, &mut inner_sel)?;
                *inner = Arc::new(inner_sel);
            }
        }
    }
    if let Some(target) = &mut sel.into {
        qualify(meta, default_db, target)?;
    }
    Ok(())
}

/// SHOW DIAGNOSTICS [FOR 'module']: build, configuration, network, runtime and system
/// groups, one row each, by name (InfluxDB's layout; our configuration's keys).
fn show_diagnostics(ctx: &StatementExecutor, module: Option<&str>) -> Option<Value> {
    let (config, started) = &*ctx.diagnostics;
    let now = std::time::SystemTime::now();
    let ns = |t: std::time::SystemTime| {
        t.duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as i64)
    };
    let uptime = now.duration_since(*started).unwrap_or_default();
    let mut groups: Vec<(&str, Vec<(&str, Value)>)> = config
        .iter()
        .map(|(name, values)| (*name, values.clone()))
        .collect();
    groups.push((
        "build",
        vec![
            ("Branch", json!("")),
            ("Build Time", json!("")),
            ("Commit", json!("")),
            ("Version", json!(env!("CARGO_PKG_VERSION"))),
        ],
    ));
    groups.push((
        "network",
        vec![("hostname", json!(crate::base::hostname()))],
    ));
    groups.push((
        "runtime",
        vec![
            ("ARCH", json!(std::env::consts::ARCH)),
            ("CORES", json!(ctx.local.cores())),
            ("OS", json!(std::env::consts::OS)),
        ],
    ));
    groups.push((
        "system",
        vec![
            ("PID", json!(std::process::id())),
            (
                "currentTime",
                json!(crate::influxql::format::rfc3339_nano(ns(now))),
            ),
            (
                "started",
                json!(crate::influxql::format::rfc3339_nano(ns(*started))),
            ),
            ("uptime", json!(go_duration(uptime.as_nanos() as i64))),
        ],
    ));
    groups.sort_by(|a, b| a.0.cmp(b.0));
    let series: Vec<Value> = groups
        .into_iter()
        .filter(|(name, _)| module.is_none_or(|m| m == *name))
        .map(|(name, mut values)| {
            values.sort_by(|a, b| a.0.cmp(b.0));
            json!({
                "name": name,
                "columns": values.iter().map(|(k, _)| *k).collect::<Vec<_>>(),
                "values": [values.into_iter().map(|(_, v)| v).collect::<Vec<_>>()],
            })
        })
        .collect();
    (!series.is_empty()).then_some(Value::Array(series))
}

/// An admin request to a peer (`cluster::admin`), answered live (a dead peer fails
/// within the dial timeout).
async fn admin(
    ctx: &StatementExecutor,
    node: NodeId,
    request: AdminRequest,
) -> Result<AdminResponse, String> {
    let Some(writer) = &ctx.shard_writer else {
        return Err(format!("node {node} is not a member of this cluster"));
    };
    let reply: AdminReply = writer
        .request_live(node, 0, &Admin::new(&request))
        .await
        .map_err(|e| format!("node {node}: {e}"))?;
    match reply.response()? {
        AdminResponse::Error(e) => Err(format!("node {node}: {e}")),
        other => Ok(other),
    }
}

/// SHOW QUERIES: the statements running on every core of every node that answers
/// (InfluxDB's columns; ids are cluster-wide, so KILL QUERY works from any node).
async fn show_queries(ctx: &StatementExecutor) -> Result<Option<Value>, String> {
    let mut all = ctx
        .local
        .running_queries()
        .await
        .map_err(|e| e.to_string())?;
    // Every peer at once, each for at most SHOW_QUERIES_PEER_WAIT_MS.
    let wait = std::time::Duration::from_millis(crate::limits::SHOW_QUERIES_PEER_WAIT_MS);
    let asks: Vec<_> = ctx
        .shard_writer
        .iter()
        .flat_map(|w| w.peer_ids())
        .map(|node| {
            Box::pin(futures_lite::future::or(
                admin(ctx, node, AdminRequest::Queries),
                async move {
                    glommio::timer::sleep(wait).await;
                    Err(format!("node {node}: no answer within {wait:?}"))
                },
            ))
        })
        .collect();
    for answer in crate::cluster::shard_mapper::join_all(asks).await {
        match answer {
            Ok(AdminResponse::Queries(q)) => all.extend(q),
            Ok(_) => {}
            Err(e) => tracing::debug!(error = %e, "SHOW QUERIES: a peer did not answer"),
        }
    }
    all.sort_by_key(|q| q.qid);
    let values: Vec<Value> = all
        .iter()
        .map(|q| {
            json!([
                q.qid,
                q.query,
                q.database,
                go_duration(q.duration_ns as i64),
                q.status
            ])
        })
        .collect();
    Ok(Some(json!([{
        "columns": ["qid", "query", "database", "duration", "status"],
        "values": values,
    }])))
}

/// `run` under a timeout of `timeout_ms` (0: none). On timeout the statement's future
/// is dropped, which cancels what it asked of peers; the caller's deadline flag stops
/// this node's cores.
async fn with_timeout<T>(
    timeout_ms: u64,
    run: impl std::future::Future<Output = Result<T, String>>,
) -> Result<T, String> {
    if timeout_ms == 0 {
        return run.await;
    }
    futures_lite::future::or(run, async {
        glommio::timer::sleep(std::time::Duration::from_millis(timeout_ms)).await;
        Err("query-timeout limit exceeded".to_string())
    })
    .await
}

/// The statements InfluxDB warns about when a GET request runs them (its statement
/// executor's `ReadOnlyWarning`; DELETE is not among them).
fn warns_when_read_only(statement: &Statement) -> bool {
    matches!(
        statement,
        Statement::CreateDatabase { .. }
            | Statement::DropDatabase { .. }
            | Statement::CreateRetentionPolicy { .. }
            | Statement::AlterRetentionPolicy { .. }
            | Statement::DropRetentionPolicy { .. }
            | Statement::DropMeasurement { .. }
            | Statement::DeleteSeries { delete: false, .. }
            | Statement::CreateUser { .. }
            | Statement::DropUser { .. }
            | Statement::SetPassword { .. }
            | Statement::Grant { .. }
            | Statement::Revoke { .. }
            | Statement::CreateContinuousQuery { .. }
            | Statement::DropContinuousQuery { .. }
            | Statement::KillQuery { .. }
            | Statement::DropShard { .. }
    )
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

/// bcrypt of a password, on glommio's blocking pool (~60 ms of CPU the core keeps).
async fn off_core_hash(password: String) -> String {
    glommio::executor()
        .spawn_blocking(move || crate::meta::hash_password(&password))
        .await
}

/// Whether a password matches a bcrypt hash, on glommio's blocking pool.
async fn off_core_verify(password: String, hash: String) -> bool {
    glommio::executor()
        .spawn_blocking(move || crate::meta::verify_password(&password, &hash))
        .await
}

/// `SHOW STATS [FOR 'module']`: the node's statistics groups, every core merged, one
/// series per group (InfluxDB's monitor layout).
async fn show_stats(
    ctx: &StatementExecutor,
    module: Option<&str>,
) -> Result<Option<Value>, String> {
    let (snapshot, gauges) = ctx.local.metrics().await.map_err(|e| e.to_string())?;
    let series: Vec<Value> = crate::metrics::stats_groups(&snapshot, &gauges, &ctx.hostname)
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
    ctx: &StatementExecutor,
    qc: &QueryContext<'_>,
    statement: &Statement,
    options: &QueryOptions,
) -> Result<Option<Value>, String> {
    if let Statement::Select(sel) = statement {
        if sel.into.is_some() {
            return select_into(ctx, qc, sel, options).await;
        }
    }
    if let Some(done) = crate::query::run_statement(qc, statement, options).await {
        return done;
    }
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
            ctx.local
                .drop_shards(name, None)
                .await
                .map_err(|e| e.to_string())?;
            Ok(None)
        }
        Statement::ShowDatabases => {
            let snap = meta.snapshot();
            // A user who is not an admin sees the databases it holds something on.
            let visible = |name: &str| match &options.principal {
                Principal::Open => true,
                Principal::Anonymous => false,
                Principal::User(user) => snap.user(user).is_some_and(|u| {
                    u.authorize_database(Privilege::Read, name)
                        || u.authorize_database(Privilege::Write, name)
                }),
            };
            let values: Vec<Value> = snap
                .databases
                .keys()
                .filter(|n| visible(n))
                .map(|n| json!([n]))
                .collect();
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
            ctx.local
                .drop_shards(database, Some(name))
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
        Statement::ShowStats { module } => show_stats(ctx, module.as_deref()).await,
        Statement::CreateUser {
            name,
            password,
            admin,
        } => {
            if let Some(user) = meta.snapshot().user(name) {
                // InfluxDB: the same password and admin flag again is a success.
                let same = user.admin == *admin
                    && off_core_verify(password.0.clone(), user.hash.clone()).await;
                return if same {
                    Ok(None)
                } else {
                    Err(MetaError::UserExists.to_string())
                };
            }
            if name.is_empty() {
                return Err(MetaError::UsernameRequired.to_string());
            }
            let hash = off_core_hash(password.0.clone()).await;
            meta.create_user(name, hash, *admin).map_err(err)?;
            Ok(None)
        }
        Statement::DropUser { name } => {
            meta.drop_user(name).map_err(err)?;
            Ok(None)
        }
        Statement::SetPassword { name, password } => {
            if meta.snapshot().user(name).is_none() {
                return Err(MetaError::UserNotFound.to_string());
            }
            let hash = off_core_hash(password.0.clone()).await;
            meta.set_password(name, hash).map_err(err)?;
            Ok(None)
        }
        Statement::Grant {
            privilege,
            database,
            user,
        } => {
            match database {
                Some(db) => meta.grant(user, db, *privilege),
                None => meta.set_admin(user, true),
            }
            .map_err(err)?;
            Ok(None)
        }
        Statement::Revoke {
            privilege,
            database,
            user,
        } => {
            match database {
                Some(db) => meta.revoke(user, db, *privilege),
                None => meta.set_admin(user, false),
            }
            .map_err(err)?;
            Ok(None)
        }
        Statement::ShowUsers => {
            let snap = meta.snapshot();
            let values: Vec<Value> = snap
                .users_in_order()
                .iter()
                .map(|u| json!([u.name, u.admin]))
                .collect();
            let mut series = json!({ "columns": ["user", "admin"] });
            if !values.is_empty() {
                series["values"] = Value::Array(values);
            }
            Ok(Some(json!([series])))
        }
        Statement::ShowGrants { user } => {
            let snap = meta.snapshot();
            let user = snap
                .user(user)
                .ok_or_else(|| err(MetaError::UserNotFound))?;
            let values: Vec<Value> = user
                .privileges
                .iter()
                .map(|(db, p)| json!([db, p.as_str()]))
                .collect();
            let mut series = json!({ "columns": ["database", "privilege"] });
            if !values.is_empty() {
                series["values"] = Value::Array(values);
            }
            Ok(Some(json!([series])))
        }
        Statement::CreateContinuousQuery { name, database, .. } => {
            // Stored as InfluxDB stores it: every source and the target qualified with
            // database and policy (checked to exist) — with the request's database when
            // it names one, as InfluxDB — printed back as text.
            let mut stored = statement.clone();
            if let Statement::CreateContinuousQuery { select, .. } = &mut stored {
                qualify_select(&meta.snapshot(), qc.db.unwrap_or(database), select)?;
            }
            meta.create_continuous_query(database, name, &stored.to_string())
                .map_err(err)?;
            Ok(None)
        }
        Statement::DropContinuousQuery { name, database } => {
            meta.drop_continuous_query(database, name).map_err(err)?;
            Ok(None)
        }
        Statement::ShowContinuousQueries => {
            let snap = meta.snapshot();
            let series: Vec<Value> = snap
                .databases
                .values()
                .map(|d| {
                    let mut s = json!({ "name": d.name, "columns": ["name", "query"] });
                    if !d.continuous_queries.is_empty() {
                        s["values"] = d
                            .continuous_queries
                            .iter()
                            .map(|cq| json!([cq.name, cq.query]))
                            .collect();
                    }
                    s
                })
                .collect();
            Ok((!series.is_empty()).then_some(Value::Array(series)))
        }
        Statement::ShowQueries => show_queries(ctx).await,
        Statement::KillQuery { id, .. } => {
            let (node, _) = crate::cluster::admin::query_home(*id);
            let killed = if node == ctx.node_id {
                ctx.local.kill_query(*id).await.map_err(|e| e.to_string())?
            } else if !ctx.membership.nodes().contains(&node) {
                false
            } else {
                match admin(ctx, node, AdminRequest::Kill { qid: *id }).await? {
                    AdminResponse::Killed(k) => k,
                    other => return Err(format!("node {node}: unexpected answer {other:?}")),
                }
            };
            if killed {
                Ok(None)
            } else {
                Err(format!("no such query id: {id}"))
            }
        }
        Statement::DropShard { id } => {
            ctx.local.drop_shard(*id).await.map_err(|e| e.to_string())?;
            let mut missed = Vec::new();
            for node in ctx.shard_writer.iter().flat_map(|w| w.peer_ids()) {
                match admin(ctx, node, AdminRequest::DropShard { id: *id }).await {
                    Ok(AdminResponse::Dropped(_)) => {}
                    Ok(other) => missed.push(format!("node {node}: {other:?}")),
                    Err(e) => missed.push(e),
                }
            }
            if missed.is_empty() {
                Ok(None)
            } else {
                Err(format!(
                    "shard {id} dropped here but not everywhere ({}); run DROP SHARD again once every node is up",
                    missed.join("; ")
                ))
            }
        }
        Statement::ShowDiagnostics { module } => Ok(show_diagnostics(ctx, module.as_deref())),
        // The query engine's (run above).
        Statement::Explain { .. } => Ok(None),
        // Subscriptions cannot be made here (CREATE SUBSCRIPTION is refused), so there
        // are none: InfluxDB's answer for none.
        Statement::Unsupported { kind, .. } if kind == "SHOW SUBSCRIPTIONS" => Ok(None),
        Statement::Unsupported { kind, .. } => Err(format!(
            "{kind} statements are not supported by this version of ShardCore yet"
        )),
        // The query engine's (run above).
        Statement::Select(_)
        | Statement::DropMeasurement { .. }
        | Statement::DeleteSeries { .. }
        | Statement::ShowShards
        | Statement::ShowShardGroups
        | Statement::ShowSeriesData(_) => Ok(None),
    }
}
