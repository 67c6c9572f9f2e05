//! A statement's result: named series of rows, as InfluxDB's JSON carries them.

use crate::influxql::value::Val;
use std::collections::BTreeMap;

/// One result series: time is column 0, as nanoseconds (`Val::Int`) until rendered.
#[derive(Clone, Debug, PartialEq)]
pub struct ResultSeries {
    pub name: String,
    /// Group-by tags; `None` when the statement has no GROUP BY tags.
    pub tags: Option<BTreeMap<String, String>>,
    pub columns: Vec<String>,
    pub values: Vec<Vec<Val>>,
}
