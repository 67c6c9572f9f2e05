//! Values as the query engine carries them, and their ordering and arithmetic with
//! InfluxQL's rules (integers stay integers until mixed with floats; a comparison of
//! different kinds is false, not an error).

use serde_json::Value as Json;
use std::cmp::Ordering;

#[derive(Clone, Debug, PartialEq, Default)]
pub enum Val {
    #[default]
    Null,
    Float(f64),
    Int(i64),
    Uint(u64),
    Bool(bool),
    Str(String),
}

impl Val {
    pub fn is_null(&self) -> bool {
        matches!(self, Val::Null)
    }

    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Val::Float(x) => Some(*x),
            Val::Int(x) => Some(*x as f64),
            Val::Uint(x) => Some(*x as f64),
            _ => None,
        }
    }

    pub fn is_numeric(&self) -> bool {
        matches!(self, Val::Float(_) | Val::Int(_) | Val::Uint(_))
    }

    pub fn to_json(&self) -> Json {
        match self {
            Val::Null => Json::Null,
            Val::Float(x) if x.is_finite() => serde_json::Number::from_f64(*x)
                .map(Json::Number)
                .unwrap_or(Json::Null),
            Val::Float(_) => Json::Null,
            Val::Int(x) => Json::from(*x),
            Val::Uint(x) => Json::from(*x),
            Val::Bool(b) => Json::Bool(*b),
            Val::Str(s) => Json::String(s.clone()),
        }
    }

    /// Total order used by min/max/top/bottom/distinct/mode between values of one kind;
    /// numbers compare numerically across kinds.
    pub fn cmp_total(&self, other: &Val) -> Ordering {
        match (self, other) {
            (Val::Int(a), Val::Int(b)) => a.cmp(b),
            (Val::Uint(a), Val::Uint(b)) => a.cmp(b),
            (Val::Str(a), Val::Str(b)) => a.cmp(b),
            (Val::Bool(a), Val::Bool(b)) => a.cmp(b),
            (a, b) => match (a.as_f64(), b.as_f64()) {
                (Some(x), Some(y)) => x.total_cmp(&y),
                _ => rank(a).cmp(&rank(b)),
            },
        }
    }
}

fn rank(v: &Val) -> u8 {
    match v {
        Val::Null => 0,
        Val::Bool(_) => 1,
        Val::Float(_) | Val::Int(_) | Val::Uint(_) => 2,
        Val::Str(_) => 3,
    }
}

/// Arithmetic between two values; `Null` when either side is null or not a number.
pub fn arith(op: crate::influxql::ast::Op, a: &Val, b: &Val) -> Val {
    use crate::influxql::ast::Op::*;
    match (a, b) {
        (Val::Int(x), Val::Int(y)) => match op {
            Add => Val::Int(x.wrapping_add(*y)),
            Sub => Val::Int(x.wrapping_sub(*y)),
            Mul => Val::Int(x.wrapping_mul(*y)),
            // Integer division in InfluxQL yields a float.
            Div => {
                if *y == 0 {
                    Val::Float(0.0)
                } else {
                    Val::Float(*x as f64 / *y as f64)
                }
            }
            Mod => {
                if *y == 0 {
                    Val::Null
                } else {
                    Val::Int(x.wrapping_rem(*y))
                }
            }
            BitAnd => Val::Int(x & y),
            BitOr => Val::Int(x | y),
            BitXor => Val::Int(x ^ y),
            _ => Val::Null,
        },
        (Val::Bool(x), Val::Bool(y)) => match op {
            BitAnd => Val::Bool(x & y),
            BitOr => Val::Bool(x | y),
            BitXor => Val::Bool(x ^ y),
            _ => Val::Null,
        },
        _ => match (a.as_f64(), b.as_f64()) {
            (Some(x), Some(y)) => match op {
                Add => Val::Float(x + y),
                Sub => Val::Float(x - y),
                Mul => Val::Float(x * y),
                Div => {
                    if y == 0.0 {
                        Val::Float(0.0)
                    } else {
                        Val::Float(x / y)
                    }
                }
                Mod => Val::Float(x % y),
                _ => Val::Null,
            },
            _ => Val::Null,
        },
    }
}
