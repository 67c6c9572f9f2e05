//! InfluxQL, the language: its syntax tree, parser, regex literals, values, the
//! evaluation of expressions over a row and tags, and InfluxDB's text formats (floats,
//! durations, RFC 3339 times, time zones), and Go's math functions (`gomath`), so answers
//! match InfluxDB's to the bit. Vocabulary: the query engine, the shards'
//! read side and the statement executor all speak it; it imports nothing above it.

pub mod ast;
pub mod authorize;
pub mod eval;
pub mod format;
pub mod function;
pub mod gomath;
pub mod goregex;
pub mod gosort;
pub mod parser;
pub mod regex;
pub mod tz;
pub mod value;
