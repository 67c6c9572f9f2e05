//! Statements printed back as InfluxDB's `String()` methods print them: normalised
//! keywords, identifiers quoted only where needed, durations in InfluxQL's units (Go's
//! for CREATE DATABASE ... WITH), passwords `[REDACTED]`. Authorization errors quote
//! statements in this form (`not authorized to execute statement 'SHOW USERS'`), so it
//! must match InfluxDB's byte for byte.
//!
//! Also here: what each statement requires of a user (InfluxDB's
//! `RequiredPrivileges`).

use super::Statement;
use crate::influxql::ast::{
    quote_ident, Dimension, Field, Fill, Measurement, Op, Select, ShowSeriesData, ShowWhat, Source,
};
use crate::influxql::format::{go_duration, go_float, influx_duration};
use crate::meta::Privilege;
use std::fmt::{self, Write};

/// A string literal as InfluxQL quotes it.
fn quote_string(s: &str) -> String {
    format!(
        "'{}'",
        s.replace('\\', "\\\\")
            .replace('\n', "\\n")
            .replace('\'', "\\'")
    )
}

fn measurement(f: &mut fmt::Formatter<'_>, m: &Measurement) -> fmt::Result {
    if let Some(db) = m.database.as_deref().filter(|d| !d.is_empty()) {
        write!(f, "{}.", quote_ident(db))?;
    }
    if let Some(rp) = m.retention_policy.as_deref().filter(|r| !r.is_empty()) {
        f.write_str(&quote_ident(rp))?;
    }
    let qualified = m.database.as_deref().is_some_and(|d| !d.is_empty())
        || m.retention_policy.as_deref().is_some_and(|r| !r.is_empty());
    if qualified {
        f.write_str(".")?;
    }
    if let Some(name) = &m.name {
        f.write_str(&quote_ident(name))?;
    } else if let Some(re) = &m.regex {
        write!(f, "/{}/", re.replace('/', "\\/"))?;
    }
    Ok(())
}

fn sources(f: &mut fmt::Formatter<'_>, sources: &[Source]) -> fmt::Result {
    for (i, s) in sources.iter().enumerate() {
        if i > 0 {
            f.write_str(", ")?;
        }
        match s {
            Source::Measurement(m) => measurement(f, m)?,
            Source::Subquery(sub) => write!(f, "({sub})")?,
        }
    }
    Ok(())
}

fn field(f: &mut fmt::Formatter<'_>, field: &Field) -> fmt::Result {
    write!(f, "{}", field.expr)?;
    if let Some(alias) = &field.alias {
        write!(f, " AS {}", quote_ident(alias))?;
    }
    Ok(())
}

fn dimension(f: &mut fmt::Formatter<'_>, d: &Dimension) -> fmt::Result {
    match d {
        Dimension::Time { interval, offset } => {
            write!(f, "time({}", influx_duration(*interval))?;
            if *offset != 0 {
                write!(f, ", {}", influx_duration(*offset))?;
            }
            f.write_str(")")
        }
        Dimension::Tag(t) => f.write_str(&quote_ident(t)),
        Dimension::Regex(re) => write!(f, "/{}/", re.replace('/', "\\/")),
        Dimension::Wildcard => f.write_str("*"),
    }
}

impl fmt::Display for Select {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SELECT ")?;
        for (i, x) in self.fields.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            field(f, x)?;
        }
        if let Some(into) = &self.into {
            f.write_str(" INTO ")?;
            measurement(f, into)?;
            if into.name.is_none() && into.regex.is_none() {
                f.write_str(":MEASUREMENT")?;
            }
        }
        if !self.sources.is_empty() {
            f.write_str(" FROM ")?;
            sources(f, &self.sources)?;
        }
        if let Some(c) = &self.condition {
            write!(f, " WHERE {c}")?;
        }
        if !self.dimensions.is_empty() {
            f.write_str(" GROUP BY ")?;
            for (i, d) in self.dimensions.iter().enumerate() {
                if i > 0 {
                    f.write_str(", ")?;
                }
                dimension(f, d)?;
            }
        }
        match &self.fill {
            Fill::Null => {}
            Fill::None => f.write_str(" fill(none)")?,
            Fill::Number(x) => write!(f, " fill({})", go_float(*x))?,
            Fill::Integer(x) => write!(f, " fill({x})")?,
            Fill::Previous => f.write_str(" fill(previous)")?,
            Fill::Linear => f.write_str(" fill(linear)")?,
        }
        if self.order_desc {
            f.write_str(" ORDER BY time DESC")?;
        }
        for (n, kw) in [
            (self.limit, "LIMIT"),
            (self.offset, "OFFSET"),
            (self.slimit, "SLIMIT"),
            (self.soffset, "SOFFSET"),
        ] {
            if n > 0 {
                write!(f, " {kw} {n}")?;
            }
        }
        if let Some(tz) = &self.tz {
            write!(f, " TZ('{tz}')")?;
        }
        Ok(())
    }
}

/// ` WITH KEY <op> <keys>` of SHOW TAG VALUES (and its cardinality).
fn with_key(
    out: &mut String,
    op: Op,
    keys: &[String],
    regex: &Option<crate::influxql::regex::RegexLit>,
) {
    let _ = write!(out, " WITH KEY ");
    if let Some(re) = regex {
        let _ = write!(out, "{} /{}/", op.as_str(), re.replace('/', "\\/"));
    } else if keys.len() == 1 {
        let _ = write!(out, "{} {}", op.as_str(), quote_ident(&keys[0]));
    } else {
        let list: Vec<String> = keys.iter().map(|k| quote_ident(k)).collect();
        let _ = write!(out, "IN ({})", list.join(", "));
    }
}

fn show_series_data(s: &ShowSeriesData) -> String {
    let exact = |e: bool| if e { " EXACT" } else { "" };
    let mut out = match &s.what {
        ShowWhat::Measurements { .. } => "SHOW MEASUREMENTS".to_string(),
        ShowWhat::TagKeys => "SHOW TAG KEYS".to_string(),
        ShowWhat::TagValues { .. } => "SHOW TAG VALUES".to_string(),
        ShowWhat::FieldKeys => "SHOW FIELD KEYS".to_string(),
        ShowWhat::Series => "SHOW SERIES".to_string(),
        ShowWhat::MeasurementCardinality { exact: e } => {
            format!("SHOW MEASUREMENT{} CARDINALITY", exact(*e))
        }
        ShowWhat::SeriesCardinality { exact: e } => {
            format!("SHOW SERIES{} CARDINALITY", exact(*e))
        }
        ShowWhat::TagKeyCardinality { exact: e } => {
            format!("SHOW TAG KEY{} CARDINALITY", exact(*e))
        }
        ShowWhat::TagValuesCardinality { exact: e, .. } => {
            format!("SHOW TAG VALUES{} CARDINALITY", exact(*e))
        }
        ShowWhat::FieldKeyCardinality { exact: e } => {
            format!("SHOW FIELD KEY{} CARDINALITY", exact(*e))
        }
    };
    if let Some(db) = &s.database {
        let _ = write!(out, " ON {}", quote_ident(db));
    }
    if let ShowWhat::Measurements {
        filter: Some((op, e)),
    } = &s.what
    {
        let _ = write!(out, " WITH MEASUREMENT {} {e}", op.as_str());
    }
    if !s.sources.is_empty() {
        struct Sources<'a>(&'a [Source]);
        impl fmt::Display for Sources<'_> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                sources(f, self.0)
            }
        }
        let _ = write!(out, " FROM {}", Sources(&s.sources));
    }
    match &s.what {
        ShowWhat::TagValues { op, keys, regex }
        | ShowWhat::TagValuesCardinality {
            op, keys, regex, ..
        } => with_key(&mut out, *op, keys, regex),
        _ => {}
    }
    if let Some(c) = &s.condition {
        let _ = write!(out, " WHERE {c}");
    }
    if s.limit > 0 {
        let _ = write!(out, " LIMIT {}", s.limit);
    }
    if s.offset > 0 {
        let _ = write!(out, " OFFSET {}", s.offset);
    }
    out
}

impl fmt::Display for Statement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let q = |s: &str| quote_ident(s);
        match self {
            Statement::CreateDatabase {
                name,
                retention_policy,
            } => {
                write!(f, "CREATE DATABASE {}", q(name))?;
                if let Some(rp) = retention_policy {
                    f.write_str(" WITH")?;
                    if let Some(d) = rp.duration_ns {
                        write!(f, " DURATION {}", go_duration(d))?;
                    }
                    if let Some(r) = rp.replication {
                        write!(f, " REPLICATION {r}")?;
                    }
                    if let Some(s) = rp.shard_group_duration_ns.filter(|&s| s > 0) {
                        write!(f, " SHARD DURATION {}", go_duration(s))?;
                    }
                    if let Some(n) = rp.name.as_deref().filter(|n| !n.is_empty()) {
                        write!(f, " NAME {}", q(n))?;
                    }
                }
                Ok(())
            }
            Statement::DropDatabase { name } => write!(f, "DROP DATABASE {}", q(name)),
            Statement::ShowDatabases => f.write_str("SHOW DATABASES"),
            Statement::CreateRetentionPolicy {
                name,
                database,
                spec,
                default,
            } => {
                write!(
                    f,
                    "CREATE RETENTION POLICY {} ON {} DURATION {} REPLICATION {}",
                    q(name),
                    q(database),
                    influx_duration(spec.duration_ns.unwrap_or(0)),
                    spec.replication.unwrap_or(1)
                )?;
                if let Some(s) = spec.shard_group_duration_ns.filter(|&s| s > 0) {
                    write!(f, " SHARD DURATION {}", influx_duration(s))?;
                }
                if *default {
                    f.write_str(" DEFAULT")?;
                }
                Ok(())
            }
            Statement::AlterRetentionPolicy {
                name,
                database,
                spec,
                default,
            } => {
                write!(f, "ALTER RETENTION POLICY {} ON {}", q(name), q(database))?;
                if let Some(d) = spec.duration_ns {
                    write!(f, " DURATION {}", influx_duration(d))?;
                }
                if let Some(r) = spec.replication {
                    write!(f, " REPLICATION {r}")?;
                }
                if let Some(s) = spec.shard_group_duration_ns {
                    write!(f, " SHARD DURATION {}", influx_duration(s))?;
                }
                if *default {
                    f.write_str(" DEFAULT")?;
                }
                Ok(())
            }
            Statement::DropRetentionPolicy { name, database } => {
                write!(f, "DROP RETENTION POLICY {} ON {}", q(name), q(database))
            }
            Statement::ShowRetentionPolicies { database } => {
                f.write_str("SHOW RETENTION POLICIES")?;
                if let Some(db) = database {
                    write!(f, " ON {}", q(db))?;
                }
                Ok(())
            }
            Statement::Select(s) => write!(f, "{s}"),
            Statement::DropMeasurement { name } => write!(f, "DROP MEASUREMENT {}", q(name)),
            Statement::DeleteSeries {
                sources: from,
                condition,
                delete,
            } => {
                f.write_str(if *delete { "DELETE" } else { "DROP SERIES" })?;
                if !from.is_empty() {
                    f.write_str(" FROM ")?;
                    sources(f, from)?;
                }
                if let Some(c) = condition {
                    write!(f, " WHERE {c}")?;
                }
                Ok(())
            }
            Statement::ShowSeriesData(s) => f.write_str(&show_series_data(s)),
            Statement::ShowShards => f.write_str("SHOW SHARDS"),
            Statement::ShowStats { module } => {
                f.write_str("SHOW STATS")?;
                if let Some(m) = module {
                    write!(f, " FOR {}", quote_string(m))?;
                }
                Ok(())
            }
            Statement::ShowShardGroups => f.write_str("SHOW SHARD GROUPS"),
            Statement::CreateUser {
                name,
                password,
                admin,
            } => {
                write!(f, "CREATE USER {} WITH PASSWORD {password}", q(name))?;
                if *admin {
                    f.write_str(" WITH ALL PRIVILEGES")?;
                }
                Ok(())
            }
            Statement::DropUser { name } => write!(f, "DROP USER {}", q(name)),
            Statement::SetPassword { name, password } => {
                write!(f, "SET PASSWORD FOR {} = {password}", q(name))
            }
            Statement::Grant {
                privilege,
                database: Some(db),
                user,
            } => write!(f, "GRANT {privilege} ON {} TO {}", q(db), q(user)),
            Statement::Grant {
                database: None,
                user,
                ..
            } => write!(f, "GRANT ALL PRIVILEGES TO {}", q(user)),
            Statement::Revoke {
                privilege,
                database: Some(db),
                user,
            } => write!(f, "REVOKE {privilege} ON {} FROM {}", q(db), q(user)),
            Statement::Revoke {
                database: None,
                user,
                ..
            } => write!(f, "REVOKE ALL PRIVILEGES FROM {}", q(user)),
            Statement::ShowUsers => f.write_str("SHOW USERS"),
            Statement::ShowGrants { user } => write!(f, "SHOW GRANTS FOR {}", q(user)),
            Statement::CreateContinuousQuery {
                name,
                database,
                resample_every_ns,
                resample_for_ns,
                select,
            } => {
                write!(f, "CREATE CONTINUOUS QUERY {} ON {} ", q(name), q(database))?;
                if *resample_every_ns > 0 || *resample_for_ns > 0 {
                    f.write_str("RESAMPLE ")?;
                    if *resample_every_ns > 0 {
                        write!(f, "EVERY {} ", influx_duration(*resample_every_ns))?;
                    }
                    if *resample_for_ns > 0 {
                        write!(f, "FOR {} ", influx_duration(*resample_for_ns))?;
                    }
                }
                write!(f, "BEGIN {select} END")
            }
            Statement::DropContinuousQuery { name, database } => {
                write!(f, "DROP CONTINUOUS QUERY {} ON {}", q(name), q(database))
            }
            Statement::ShowContinuousQueries => f.write_str("SHOW CONTINUOUS QUERIES"),
            Statement::ShowQueries => f.write_str("SHOW QUERIES"),
            Statement::KillQuery { id, host } => {
                write!(f, "KILL QUERY {id}")?;
                if let Some(h) = host {
                    write!(f, " ON {}", q(h))?;
                }
                Ok(())
            }
            Statement::ShowDiagnostics { module } => {
                f.write_str("SHOW DIAGNOSTICS")?;
                if let Some(m) = module {
                    write!(f, " FOR {}", quote_string(m))?;
                }
                Ok(())
            }
            Statement::Explain { analyze, select } => {
                f.write_str("EXPLAIN ")?;
                if *analyze {
                    f.write_str("ANALYZE ")?;
                }
                write!(f, "{select}")
            }
            Statement::DropShard { id } => write!(f, "DROP SHARD {id}"),
            Statement::Unsupported { text, .. } => f.write_str(text),
        }
    }
}

/// One privilege a statement requires (InfluxDB's `ExecutionPrivilege`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Required {
    /// Only an admin may run it.
    Admin,
    /// `privilege` on `database`; `None`: the request's `db` parameter.
    On {
        privilege: Privilege,
        database: Option<String>,
    },
}

fn read_on(database: Option<&String>) -> Required {
    Required::On {
        privilege: Privilege::Read,
        database: database.cloned(),
    }
}

/// READ on every measurement source (their database, or the request's), recursing
/// into subqueries.
fn sources_required(from: &[Source], out: &mut Vec<Required>) {
    for s in from {
        match s {
            Source::Measurement(m) => out.push(read_on(m.database.as_ref())),
            Source::Subquery(sub) => select_required(sub, out),
        }
    }
}

fn select_required(s: &Select, out: &mut Vec<Required>) {
    sources_required(&s.sources, out);
    if let Some(into) = &s.into {
        out.push(Required::On {
            privilege: Privilege::Write,
            database: into.database.clone(),
        });
    }
}

impl Statement {
    /// What a user must hold to run this statement, in InfluxDB's order (the first
    /// unmet one is the one its 403 names). Empty: anyone may (SHOW DATABASES, which
    /// shows each user only the databases it holds something on).
    pub fn required_privileges(&self) -> Vec<Required> {
        let param = |privilege| Required::On {
            privilege,
            database: None,
        };
        let mut out = Vec::new();
        match self {
            Statement::Select(s) | Statement::Explain { select: s, .. } => {
                select_required(s, &mut out)
            }
            Statement::ShowDatabases => {}
            Statement::CreateContinuousQuery {
                database, select, ..
            } => {
                out.push(read_on(Some(database)));
                if let Some(db) = select.into.as_ref().and_then(|m| m.database.clone()) {
                    out.push(Required::On {
                        privilege: Privilege::Write,
                        database: Some(db),
                    });
                }
            }
            Statement::DropContinuousQuery { database, .. } => out.push(Required::On {
                privilege: Privilege::Write,
                database: Some(database.clone()),
            }),
            Statement::ShowContinuousQueries | Statement::ShowQueries => {
                out.push(param(Privilege::Read))
            }
            Statement::KillQuery { .. }
            | Statement::ShowDiagnostics { .. }
            | Statement::DropShard { .. } => out.push(Required::Admin),
            Statement::ShowRetentionPolicies { database } => out.push(read_on(database.as_ref())),
            Statement::ShowSeriesData(show) => match &show.what {
                // InfluxDB asks only for its FROM sources here (nothing without FROM).
                ShowWhat::SeriesCardinality { exact: true }
                | ShowWhat::MeasurementCardinality { exact: true }
                | ShowWhat::TagKeyCardinality { .. }
                | ShowWhat::TagValuesCardinality { .. }
                | ShowWhat::FieldKeyCardinality { .. } => sources_required(&show.sources, &mut out),
                _ => out.push(read_on(show.database.as_ref())),
            },
            Statement::DeleteSeries { .. } => out.push(param(Privilege::Write)),
            Statement::DropRetentionPolicy { database, .. } => out.push(Required::On {
                privilege: Privilege::Write,
                database: Some(database.clone()),
            }),
            Statement::CreateDatabase { .. }
            | Statement::DropDatabase { .. }
            | Statement::CreateRetentionPolicy { .. }
            | Statement::AlterRetentionPolicy { .. }
            | Statement::DropMeasurement { .. }
            | Statement::ShowShards
            | Statement::ShowShardGroups
            | Statement::ShowStats { .. }
            | Statement::CreateUser { .. }
            | Statement::DropUser { .. }
            | Statement::SetPassword { .. }
            | Statement::Grant { .. }
            | Statement::Revoke { .. }
            | Statement::ShowUsers
            | Statement::ShowGrants { .. } => out.push(Required::Admin),
            // Not executed here yet; required as InfluxDB requires them.
            // CREATE / DROP SUBSCRIPTION, SHOW SUBSCRIPTIONS: admin, as InfluxDB.
            Statement::Unsupported { .. } => out.push(Required::Admin),
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::super::parse_query;

    fn text(q: &str) -> String {
        parse_query(q).unwrap()[0].to_string()
    }

    #[test]
    fn statements_print_as_influxdb_prints_them() {
        for (input, printed) in [
            ("show users", "SHOW USERS"),
            ("grant all on db2 to allu", "GRANT ALL PRIVILEGES ON db2 TO allu"),
            ("GRANT ALL TO allu", "GRANT ALL PRIVILEGES TO allu"),
            ("revoke read on db1 from alice", "REVOKE READ ON db1 FROM alice"),
            ("REVOKE ALL PRIVILEGES FROM \"a b\"", "REVOKE ALL PRIVILEGES FROM \"a b\""),
            (
                "create user evil with password 'x' with all privileges",
                "CREATE USER evil WITH PASSWORD [REDACTED] WITH ALL PRIVILEGES",
            ),
            ("SET PASSWORD FOR allu = 'pw'", "SET PASSWORD FOR allu = [REDACTED]"),
            ("SHOW GRANTS FOR \"read\"", "SHOW GRANTS FOR \"read\""),
            ("select * from cpu", "SELECT * FROM cpu"),
            ("SELECT * FROM db1..cpu, db2..cpu", "SELECT * FROM db1..cpu, db2..cpu"),
            ("SELECT * INTO db1..copy FROM cpu", "SELECT * INTO db1..copy FROM cpu"),
            ("DELETE FROM tmp WHERE host='y'", "DELETE FROM tmp WHERE host = 'y'"),
            ("DROP SERIES FROM tmp WHERE host = 'x'", "DROP SERIES FROM tmp WHERE host = 'x'"),
            (
                "ALTER RETENTION POLICY autogen ON db1 DURATION INF",
                "ALTER RETENTION POLICY autogen ON db1 DURATION 0s",
            ),
            (
                "CREATE RETENTION POLICY rp ON db1 DURATION 60m REPLICATION 1",
                "CREATE RETENTION POLICY rp ON db1 DURATION 1h REPLICATION 1",
            ),
            ("SHOW TAG VALUES WITH KEY = \"host\"", "SHOW TAG VALUES WITH KEY = host"),
            ("SHOW MEASUREMENTS ON db2", "SHOW MEASUREMENTS ON db2"),
            ("show measurement cardinality", "SHOW MEASUREMENT CARDINALITY"),
            ("SHOW RETENTION POLICIES", "SHOW RETENTION POLICIES"),
            ("kill query 1", "KILL QUERY 1"),
            ("drop shard 999", "DROP SHARD 999"),
            (
                "SELECT mean(value) FROM cpu WHERE time > now() - 1h GROUP BY time(10m), host fill(none) LIMIT 2",
                "SELECT mean(value) FROM cpu WHERE time > now() - 1h GROUP BY time(10m), host fill(none) LIMIT 2",
            ),
        ] {
            assert_eq!(text(input), printed, "{input}");
        }
    }
}
