//! DROP MEASUREMENT, DROP SERIES and DELETE: the statement as a [`DeleteRequest`], which
//! the ShardMapper runs on every owner of the affected shards (`tsdb::read::delete`).

use crate::influxql::ast::{Expr, Source};
use crate::query::select::split_time;
use crate::query::{QueryContext, QueryError};
use crate::tsdb::read::delete::DeleteRequest;

/// Builds the request of a DROP / DELETE statement.
pub fn request(
    q: &QueryContext<'_>,
    sources: &[Source],
    condition: Option<&Expr>,
    drop_measurement: bool,
    time_allowed: bool,
) -> Result<DeleteRequest, QueryError> {
    let Some(database) = q.db else {
        return Err(QueryError::msg("database name required"));
    };
    if q.meta.database(database).is_none() {
        return Err(QueryError::msg(format!("database not found: {database}")));
    }
    let (range, rest) = split_time(condition, q.now_ns)?;
    if !time_allowed && range != (i64::MIN + 2, i64::MAX - 1) {
        return Err(QueryError::msg(
            "DROP SERIES doesn't support time in WHERE clause",
        ));
    }
    let mut names = Vec::new();
    let mut regexes = Vec::new();
    for s in sources {
        match s {
            Source::Measurement(m) => match (&m.name, &m.regex) {
                (Some(n), _) => names.push(n.clone()),
                (None, Some(r)) => regexes.push(r.as_str().to_string()),
                _ => {}
            },
            Source::Subquery(_) => {
                return Err(QueryError::msg("subqueries are not allowed in a delete"))
            }
        }
    }
    if let Some(c) = &rest {
        let mut field = None;
        c.walk(&mut |e| {
            if let Expr::VarRef {
                kind: Some(crate::influxql::ast::VarKind::Field),
                name,
            } = e
            {
                field = Some(name.clone());
            }
        });
        if field.is_some() {
            return Err(QueryError::msg(
                "fields not supported in WHERE clause during deletion",
            ));
        }
    }
    Ok(DeleteRequest {
        database: database.to_string(),
        names,
        regexes,
        condition: rest.map(|c| c.to_string()),
        start_ns: range.0,
        end_ns: range.1,
        drop_measurement,
    })
}
