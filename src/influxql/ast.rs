//! The InfluxQL syntax tree for SELECT and the SHOW statements over series data.
//!
//! Names follow InfluxDB's `influxql` package where a user would recognise them
//! (VarRef, Call, BinaryExpr, Dimension, Fill), so reading one beside the other is easy.

use crate::influxql::function::Function;
use crate::influxql::regex::RegexLit;
use std::fmt;

/// A binary operator, in InfluxQL's precedence classes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    Add,
    Sub,
    Mul,
    Div,
    Mod,
    BitAnd,
    BitOr,
    BitXor,
    And,
    Or,
    Eq,
    Neq,
    Lt,
    Lte,
    Gt,
    Gte,
    EqRegex,
    NeqRegex,
}

impl Op {
    /// Higher binds tighter (InfluxQL's `Token.Precedence`).
    pub fn precedence(self) -> u8 {
        match self {
            Op::Or => 1,
            Op::And => 2,
            Op::Eq | Op::Neq | Op::Lt | Op::Lte | Op::Gt | Op::Gte | Op::EqRegex | Op::NeqRegex => {
                4
            }
            Op::Add | Op::Sub | Op::BitOr | Op::BitXor => 5,
            Op::Mul | Op::Div | Op::Mod | Op::BitAnd => 6,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Op::Add => "+",
            Op::Sub => "-",
            Op::Mul => "*",
            Op::Div => "/",
            Op::Mod => "%",
            Op::BitAnd => "&",
            Op::BitOr => "|",
            Op::BitXor => "^",
            Op::And => "AND",
            Op::Or => "OR",
            Op::Eq => "=",
            Op::Neq => "!=",
            Op::Lt => "<",
            Op::Lte => "<=",
            Op::Gt => ">",
            Op::Gte => ">=",
            Op::EqRegex => "=~",
            Op::NeqRegex => "!~",
        }
    }

    pub fn is_comparison(self) -> bool {
        self.precedence() == 4
    }
}

/// A `::type` cast on a variable reference.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum VarKind {
    Field,
    Tag,
    Float,
    Integer,
    String,
    Boolean,
}

impl VarKind {
    pub fn parse(s: &str) -> Option<VarKind> {
        Some(match s.to_ascii_lowercase().as_str() {
            "field" => VarKind::Field,
            "tag" => VarKind::Tag,
            "float" => VarKind::Float,
            "integer" => VarKind::Integer,
            "string" => VarKind::String,
            "boolean" => VarKind::Boolean,
            _ => return None,
        })
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum Expr {
    VarRef {
        name: String,
        kind: Option<VarKind>,
    },
    Call {
        /// As written, lower-cased (column names use it).
        name: String,
        /// The function it names, resolved once by the parser; `None`: unknown.
        func: Option<Function>,
        args: Vec<Expr>,
    },
    Number(f64),
    Integer(i64),
    Str(String),
    Bool(bool),
    Regex(RegexLit),
    Duration(i64),
    /// `*`, optionally `*::field` / `*::tag`.
    Wildcard(Option<VarKind>),
    Binary {
        op: Op,
        lhs: Box<Expr>,
        rhs: Box<Expr>,
    },
    Paren(Box<Expr>),
    /// `$name`, replaced from `params` before planning.
    BoundParam(String),
}

impl Expr {
    /// A call of `name` (lower-case), its function resolved.
    pub fn call(name: impl Into<String>, args: Vec<Expr>) -> Expr {
        let name = name.into();
        Expr::Call {
            func: Function::parse(&name),
            name,
            args,
        }
    }

    /// The function of a call expression (parentheses stripped), when it names one.
    pub fn function(&self) -> Option<Function> {
        self.unparen().function_here()
    }

    /// The function of this very expression when it is a call of a known function.
    pub fn function_here(&self) -> Option<Function> {
        match self {
            Expr::Call { func, .. } => *func,
            _ => None,
        }
    }

    pub fn binary(op: Op, lhs: Expr, rhs: Expr) -> Expr {
        Expr::Binary {
            op,
            lhs: Box::new(lhs),
            rhs: Box::new(rhs),
        }
    }

    /// Strips any number of enclosing parentheses.
    pub fn unparen(&self) -> &Expr {
        let mut e = self;
        while let Expr::Paren(inner) = e {
            e = inner;
        }
        e
    }

    /// Visits this expression and every sub-expression, parents first.
    pub fn walk<'a>(&'a self, f: &mut impl FnMut(&'a Expr)) {
        f(self);
        match self {
            Expr::Call { args, .. } => args.iter().for_each(|a| a.walk(f)),
            Expr::Binary { lhs, rhs, .. } => {
                lhs.walk(f);
                rhs.walk(f);
            }
            Expr::Paren(e) => e.walk(f),
            _ => {}
        }
    }
}

impl Expr {
    /// Every regex literal in this expression.
    pub fn regexes(&self) -> Vec<&RegexLit> {
        let mut out = Vec::new();
        self.walk(&mut |e| {
            if let Expr::Regex(r) = e {
                out.push(r);
            }
        });
        out
    }
}

/// Every regex literal of a statement's parts: sources (subqueries included), fields,
/// condition, dimensions.
pub fn regexes_of<'a>(
    sources: &'a [Source],
    exprs: impl IntoIterator<Item = &'a Expr>,
    dimensions: &'a [Dimension],
    out: &mut Vec<&'a RegexLit>,
) {
    for source in sources {
        match source {
            Source::Measurement(m) => out.extend(m.regex.as_ref()),
            Source::Subquery(inner) => inner.regexes(out),
        }
    }
    for e in exprs {
        out.extend(e.regexes());
    }
    for d in dimensions {
        if let Dimension::Regex(r) = d {
            out.push(r);
        }
    }
}

impl Select {
    /// Every regex literal of this statement and its subqueries.
    pub fn regexes<'a>(&'a self, out: &mut Vec<&'a RegexLit>) {
        let exprs = self.fields.iter().map(|f| &f.expr).chain(&self.condition);
        regexes_of(&self.sources, exprs, &self.dimensions, out);
    }
}

/// One output field: an expression and its optional alias.
#[derive(Clone, Debug, PartialEq)]
pub struct Field {
    pub expr: Expr,
    pub alias: Option<String>,
}

impl Field {
    /// The column name InfluxDB gives this field (`Field.Name()` in influxql).
    pub fn name(&self) -> String {
        if let Some(a) = &self.alias {
            return a.clone();
        }
        expr_name(&self.expr)
    }
}

fn expr_name(e: &Expr) -> String {
    match e {
        Expr::Call { name, .. } => name.clone(),
        Expr::VarRef { name, .. } => name.clone(),
        Expr::Paren(inner) => expr_name(inner),
        Expr::Binary { .. } => {
            let mut names = Vec::new();
            binary_names(e, &mut names);
            names.join("_")
        }
        _ => String::new(),
    }
}

fn binary_names(e: &Expr, out: &mut Vec<String>) {
    match e {
        Expr::Call { name, .. } => out.push(name.clone()),
        Expr::VarRef { name, .. } => out.push(name.clone()),
        Expr::Binary { lhs, rhs, .. } => {
            binary_names(lhs, out);
            binary_names(rhs, out);
        }
        Expr::Paren(inner) => binary_names(inner, out),
        _ => {}
    }
}

/// A measurement source: by name or regex, optionally `db.rp.` qualified.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Measurement {
    pub database: Option<String>,
    pub retention_policy: Option<String>,
    pub name: Option<String>,
    pub regex: Option<RegexLit>,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Source {
    Measurement(Measurement),
    /// Shared, so that copying a statement does not copy the subqueries below it (a
    /// statement is copied once per level when it runs: a deep chain would otherwise
    /// cost the square of its depth).
    Subquery(std::sync::Arc<Select>),
}

#[derive(Clone, Debug, PartialEq)]
pub enum Dimension {
    Time { interval: i64, offset: i64 },
    Tag(String),
    Regex(RegexLit),
    Wildcard,
}

#[derive(Clone, Debug, PartialEq, Default)]
pub enum Fill {
    #[default]
    Null,
    None,
    Number(f64),
    Integer(i64),
    Previous,
    Linear,
}

#[derive(Clone, Debug, PartialEq, Default)]
pub struct Select {
    pub fields: Vec<Field>,
    pub into: Option<Measurement>,
    pub sources: Vec<Source>,
    pub condition: Option<Expr>,
    pub dimensions: Vec<Dimension>,
    pub fill: Fill,
    pub order_desc: bool,
    pub limit: usize,
    pub offset: usize,
    pub slimit: usize,
    pub soffset: usize,
    pub tz: Option<String>,
    /// `LIMIT $n` and friends: the clause and the bound parameter that sets it.
    pub count_params: Vec<(CountClause, String)>,
}

impl Select {
    /// The GROUP BY time interval (0: none), as InfluxDB's `GroupByInterval`.
    pub fn group_by_interval(&self) -> i64 {
        self.dimensions
            .iter()
            .find_map(|d| match d {
                Dimension::Time { interval, .. } => Some(*interval),
                _ => None,
            })
            .unwrap_or(0)
    }

    /// Whether no field calls a function (InfluxDB's `IsRawQuery`).
    pub fn is_raw(&self) -> bool {
        !self.fields.iter().any(|f| {
            let mut call = false;
            f.expr.walk(&mut |e| call |= matches!(e, Expr::Call { .. }));
            call
        })
    }
}

/// The clauses that take a count.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CountClause {
    Limit,
    Offset,
    SLimit,
    SOffset,
}

impl CountClause {
    pub fn keyword(self) -> &'static str {
        match self {
            CountClause::Limit => "LIMIT",
            CountClause::Offset => "OFFSET",
            CountClause::SLimit => "SLIMIT",
            CountClause::SOffset => "SOFFSET",
        }
    }
}

/// Which SHOW over series data, and its clauses.
#[derive(Clone, Debug, PartialEq)]
pub struct ShowSeriesData {
    pub what: ShowWhat,
    pub database: Option<String>,
    pub sources: Vec<Source>,
    pub condition: Option<Expr>,
    pub limit: usize,
    pub offset: usize,
}

#[derive(Clone, Debug, PartialEq)]
pub enum ShowWhat {
    /// `SHOW MEASUREMENTS [WITH MEASUREMENT =~ /re/ | = name]`.
    Measurements {
        filter: Option<(Op, Expr)>,
    },
    TagKeys,
    /// `SHOW TAG VALUES WITH KEY = k | IN (a, b) | =~ /re/ | != k | !~ /re/`.
    TagValues {
        op: Op,
        keys: Vec<String>,
        regex: Option<RegexLit>,
    },
    FieldKeys,
    Series,
    MeasurementCardinality {
        exact: bool,
    },
    SeriesCardinality {
        exact: bool,
    },
    TagKeyCardinality {
        exact: bool,
    },
    TagValuesCardinality {
        exact: bool,
        op: Op,
        keys: Vec<String>,
        regex: Option<RegexLit>,
    },
    FieldKeyCardinality {
        exact: bool,
    },
}

impl fmt::Display for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Expr::VarRef { name, kind } => {
                write!(f, "{}", quote_ident(name))?;
                if let Some(k) = kind {
                    let k = match k {
                        VarKind::Field => "field",
                        VarKind::Tag => "tag",
                        VarKind::Float => "float",
                        VarKind::Integer => "integer",
                        VarKind::String => "string",
                        VarKind::Boolean => "boolean",
                    };
                    write!(f, "::{k}")?;
                }
                Ok(())
            }
            Expr::Call { name, args, .. } => {
                write!(f, "{name}(")?;
                for (i, a) in args.iter().enumerate() {
                    if i > 0 {
                        write!(f, ", ")?;
                    }
                    write!(f, "{a}")?;
                }
                write!(f, ")")
            }
            Expr::Number(n) => write!(f, "{}", crate::influxql::format::go_float(*n)),
            Expr::Integer(n) => write!(f, "{n}"),
            Expr::Str(s) => write!(f, "'{}'", s.replace('\\', "\\\\").replace('\'', "\\'")),
            Expr::Bool(b) => write!(f, "{b}"),
            Expr::Regex(r) => write!(f, "/{}/", r.replace('/', "\\/")),
            Expr::Duration(d) => write!(f, "{}", crate::influxql::format::influx_duration(*d)),
            Expr::Wildcard(None) => write!(f, "*"),
            Expr::Wildcard(Some(VarKind::Tag)) => write!(f, "*::tag"),
            Expr::Wildcard(Some(_)) => write!(f, "*::field"),
            Expr::Binary { op, lhs, rhs } => write!(f, "{lhs} {} {rhs}", op.as_str()),
            Expr::Paren(e) => write!(f, "({e})"),
            Expr::BoundParam(p) => write!(f, "${p}"),
        }
    }
}

/// Quotes an identifier when InfluxQL needs it.
pub fn quote_ident(s: &str) -> String {
    let plain = !s.is_empty()
        && s.chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !is_reserved(s);
    if plain {
        s.to_string()
    } else {
        format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
    }
}

/// InfluxQL keywords that cannot be used as unquoted identifiers.
pub fn is_reserved(word: &str) -> bool {
    const RESERVED: &[&str] = &[
        "ALL",
        "ALTER",
        "ANALYZE",
        "ANY",
        "AS",
        "ASC",
        "BEGIN",
        "BY",
        "CARDINALITY",
        "CREATE",
        "CONTINUOUS",
        "DATABASE",
        "DATABASES",
        "DEFAULT",
        "DELETE",
        "DESC",
        "DESTINATIONS",
        "DIAGNOSTICS",
        "DISTINCT",
        "DROP",
        "DURATION",
        "END",
        "EVERY",
        "EXACT",
        "EXPLAIN",
        "FIELD",
        "FOR",
        "FROM",
        "GRANT",
        "GRANTS",
        "GROUP",
        "GROUPS",
        "IN",
        "INF",
        "INSERT",
        "INTO",
        "KEY",
        "KEYS",
        "KILL",
        "LIMIT",
        "MEASUREMENT",
        "MEASUREMENTS",
        "NAME",
        "OFFSET",
        "ON",
        "ORDER",
        "PASSWORD",
        "POLICY",
        "POLICIES",
        "PRIVILEGES",
        "QUERIES",
        "QUERY",
        "READ",
        "REPLICATION",
        "RESAMPLE",
        "RETENTION",
        "REVOKE",
        "SELECT",
        "SERIES",
        "SET",
        "SHARD",
        "SHARDS",
        "SLIMIT",
        "SOFFSET",
        "STATS",
        "SUBSCRIPTION",
        "SUBSCRIPTIONS",
        "TAG",
        "TO",
        "USER",
        "USERS",
        "VALUES",
        "WHERE",
        "WITH",
        "WRITE",
    ];
    RESERVED.iter().any(|k| k.eq_ignore_ascii_case(word))
}
