//! Evaluation of InfluxQL expressions over one row of one series: field values by
//! slot, tags by key, InfluxDB's rules for comparisons of mixed kinds (false, not an
//! error), casts and the math functions. Conditions on series keys (tags only) use it
//! on the shards; SELECT's rows use it on the coordinator.

use crate::influxql::ast::{Expr, Op, VarKind};
use crate::influxql::function::Function;
use crate::influxql::gomath;
use crate::influxql::value::{arith, Val};
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// Expressions evaluated against one row of one series.
pub struct Evaluator<'a> {
    slots: HashMap<&'a str, usize>,
    tag_keys: &'a BTreeSet<String>,
    /// Every name is a tag (conditions on series keys: a missing tag reads as "").
    all_tags: bool,
}

impl<'a> Evaluator<'a> {
    /// An evaluator for rows whose values are in `slots` order, of series with these
    /// tag keys.
    pub fn new(slots: &'a [String], tag_keys: &'a BTreeSet<String>) -> Self {
        Evaluator {
            slots: slots
                .iter()
                .enumerate()
                .map(|(i, s)| (s.as_str(), i))
                .collect(),
            tag_keys,
            all_tags: false,
        }
    }

    /// An evaluator for conditions on tags only (SHOW ... WHERE).
    pub fn for_tags(slots: &'a [String], tag_keys: &'a BTreeSet<String>) -> Self {
        Evaluator {
            all_tags: true,
            ..Evaluator::new(slots, tag_keys)
        }
    }

    /// The row slot a plain field reference reads (the hot path of aggregates).
    pub fn slot_of(&self, e: &Expr) -> Option<usize> {
        match e {
            Expr::VarRef {
                name,
                kind: None | Some(VarKind::Field),
            } => self.slots.get(name.as_str()).copied(),
            _ => None,
        }
    }

    /// Whether a tag condition holds for a series with these tags.
    pub fn matches(&self, cond: &Expr, tags: &BTreeMap<String, String>) -> bool {
        self.truthy(cond, 0, &[], tags)
    }

    fn var(
        &self,
        name: &str,
        kind: Option<VarKind>,
        row: &[Val],
        tags: &BTreeMap<String, String>,
    ) -> Val {
        let as_tag = || Val::Str(tags.get(name).cloned().unwrap_or_default());
        match kind {
            Some(VarKind::Tag) => as_tag(),
            _ => match self.slots.get(name) {
                Some(&i) => cast(&row[i], kind),
                None if kind.is_none() && (self.all_tags || self.tag_keys.contains(name)) => {
                    as_tag()
                }
                None => Val::Null,
            },
        }
    }

    /// Value of a row-level expression (no aggregates).
    pub fn eval(&self, e: &Expr, time: i64, row: &[Val], tags: &BTreeMap<String, String>) -> Val {
        match e {
            Expr::VarRef { name, kind } => {
                if name.eq_ignore_ascii_case("time") {
                    return Val::Int(time);
                }
                self.var(name, *kind, row, tags)
            }
            Expr::Number(n) => Val::Float(*n),
            Expr::Integer(i) => Val::Int(*i),
            Expr::Str(s) => Val::Str(s.clone()),
            Expr::Bool(b) => Val::Bool(*b),
            Expr::Duration(d) => Val::Int(*d),
            Expr::Paren(inner) => self.eval(inner, time, row, tags),
            Expr::Call { func, args, .. } => {
                let vals: Vec<Val> = args.iter().map(|a| self.eval(a, time, row, tags)).collect();
                math(*func, &vals)
            }
            Expr::Binary { op, lhs, rhs } => match op {
                Op::And => Val::Bool(
                    self.truthy(lhs, time, row, tags) && self.truthy(rhs, time, row, tags),
                ),
                Op::Or => Val::Bool(
                    self.truthy(lhs, time, row, tags) || self.truthy(rhs, time, row, tags),
                ),
                o if o.is_comparison() => Val::Bool(self.compare(*o, lhs, rhs, time, row, tags)),
                o => arith(
                    *o,
                    &self.eval(lhs, time, row, tags),
                    &self.eval(rhs, time, row, tags),
                ),
            },
            _ => Val::Null,
        }
    }

    pub fn truthy(
        &self,
        e: &Expr,
        time: i64,
        row: &[Val],
        tags: &BTreeMap<String, String>,
    ) -> bool {
        matches!(self.eval(e, time, row, tags), Val::Bool(true))
    }

    /// An operand of a comparison: as [`Self::eval`], except that a key that is
    /// neither a field read nor a tag of the series is a tag with no value (InfluxDB's
    /// index reads a condition on a key a measurement lacks that way: `nosuchtag = ''`
    /// holds for every series).
    fn operand(&self, e: &Expr, time: i64, row: &[Val], tags: &BTreeMap<String, String>) -> Val {
        match e.unparen() {
            Expr::VarRef { name, kind: None }
                if !name.eq_ignore_ascii_case("time")
                    && !self.slots.contains_key(name.as_str()) =>
            {
                Val::Str(tags.get(name).cloned().unwrap_or_default())
            }
            _ => self.eval(e, time, row, tags),
        }
    }

    fn compare(
        &self,
        op: Op,
        lhs: &Expr,
        rhs: &Expr,
        time: i64,
        row: &[Val],
        tags: &BTreeMap<String, String>,
    ) -> bool {
        if let (Op::EqRegex | Op::NeqRegex, Expr::Regex(re)) = (op, rhs.unparen()) {
            return match self.operand(lhs, time, row, tags) {
                Val::Str(s) => re.is_match(&s) == (op == Op::EqRegex),
                Val::Null => op == Op::NeqRegex,
                _ => false,
            };
        }
        let (a, b) = (
            self.operand(lhs, time, row, tags),
            self.operand(rhs, time, row, tags),
        );
        let ord = match (&a, &b) {
            (Val::Null, _) | (_, Val::Null) => return false,
            // Strings compare only for equality in InfluxQL: `s > 'x'` is false.
            (Val::Str(x), Val::Str(y)) => {
                return match op {
                    Op::Eq => x == y,
                    Op::Neq => x != y,
                    _ => false,
                }
            }
            (Val::Bool(x), Val::Bool(y)) => {
                return match op {
                    Op::Eq => x == y,
                    Op::Neq => x != y,
                    _ => false,
                }
            }
            _ => match (a.as_f64(), b.as_f64()) {
                (Some(_), Some(_)) => a.cmp_total(&b),
                _ => return false,
            },
        };
        match op {
            Op::Eq => ord.is_eq(),
            Op::Neq => !ord.is_eq(),
            Op::Lt => ord.is_lt(),
            Op::Lte => ord.is_le(),
            Op::Gt => ord.is_gt(),
            Op::Gte => ord.is_ge(),
            _ => false,
        }
    }
}

fn cast(v: &Val, kind: Option<VarKind>) -> Val {
    match (kind, v) {
        (Some(VarKind::Float), Val::Int(i)) => Val::Float(*i as f64),
        (Some(VarKind::Float), Val::Uint(i)) => Val::Float(*i as f64),
        (Some(VarKind::Float), Val::Float(_)) => v.clone(),
        (Some(VarKind::Integer), Val::Float(f)) => Val::Int(*f as i64),
        (Some(VarKind::Integer), Val::Int(_)) => v.clone(),
        (Some(VarKind::Integer), Val::Uint(u)) => Val::Int(*u as i64),
        (Some(VarKind::String), Val::Str(_)) => v.clone(),
        (Some(VarKind::Boolean), Val::Bool(_)) => v.clone(),
        (Some(VarKind::Float | VarKind::Integer | VarKind::String | VarKind::Boolean), _) => {
            Val::Null
        }
        _ => v.clone(),
    }
}

/// A math function applied to values (`abs`, `floor`, `round`, `pow`, ...).
pub fn math(func: Option<Function>, args: &[Val]) -> Val {
    let x = match args.first() {
        Some(v) => v,
        None => return Val::Null,
    };
    if x.is_null() {
        return Val::Null;
    }
    let int_keep = |f: fn(f64) -> f64| match x {
        Val::Int(i) => Val::Int(*i),
        Val::Uint(u) => Val::Uint(*u),
        _ => x.as_f64().map(|v| Val::Float(f(v))).unwrap_or(Val::Null),
    };
    let float = |f: fn(f64) -> f64| x.as_f64().map(|v| Val::Float(f(v))).unwrap_or(Val::Null);
    match func {
        Some(Function::Abs) => match x {
            Val::Int(i) => Val::Int(i.wrapping_abs()),
            Val::Uint(u) => Val::Uint(*u),
            _ => float(f64::abs),
        },
        Some(Function::Floor) => int_keep(f64::floor),
        Some(Function::Ceil) => int_keep(f64::ceil),
        Some(Function::Round) => int_keep(|v| {
            // Go's math.Round: half away from zero.
            v.round()
        }),
        // Go's math, as InfluxDB computes them (`gomath`).
        Some(Function::Sqrt) => float(f64::sqrt),
        Some(Function::Ln) => float(gomath::log),
        Some(Function::Log2) => float(gomath::log2),
        Some(Function::Log10) => float(gomath::log10),
        Some(Function::Exp) => float(gomath::exp),
        Some(Function::Sin) => float(gomath::sin),
        Some(Function::Cos) => float(gomath::cos),
        Some(Function::Tan) => float(gomath::tan),
        Some(Function::Asin) => float(gomath::asin),
        Some(Function::Acos) => float(gomath::acos),
        Some(Function::Atan) => float(gomath::atan),
        Some(f @ (Function::Log | Function::Pow | Function::Atan2)) => {
            match (x.as_f64(), args.get(1).and_then(Val::as_f64)) {
                (Some(a), Some(b)) => Val::Float(match f {
                    Function::Log => gomath::log(a) / gomath::log(b),
                    Function::Pow => gomath::pow(a, b),
                    _ => gomath::atan2(a, b),
                }),
                _ => Val::Null,
            }
        }
        _ => Val::Null,
    }
}
