//! Built-in bounds that are not configuration: each with its unit in the name and the
//! reason for its value. Configurable bounds live in `config` (`max-body-size-bytes`,
//! `max-connections-per-core`, ...).
//!
//! Recursion: the InfluxQL parser, planner, evaluator and renderer walk expression
//! trees recursively. Instead of turning every walker iterative, the parser refuses a
//! tree deeper than [`MAX_EXPR_DEPTH`] (and subqueries nested deeper than
//! [`MAX_SUBQUERY_DEPTH`]), and every core runs on a stack of [`CORE_STACK_BYTES`],
//! sized so that the deepest accepted statement fits with room to spare (measured:
//! see the constants). A query over the bounds gets a parse error, never a crash.

/// Stack of each core's executor thread. Only the pages a deep statement touches are
/// committed; the rest is address space. Measured on the release build (x86_64): the
/// deepest expression the parser accepts runs in under a quarter of it, through every
/// walker (parse, plan, evaluate, render, drop), alongside the deepest subquery chain.
pub const CORE_STACK_BYTES: usize = 64 << 20;

/// Deepest expression tree the parser accepts: nested parentheses, function calls,
/// unary minus signs and chains of binary operators (`a OR b OR c ...` is a chain as
/// deep as it is long) all count one level each. InfluxDB has no such bound (Go stacks
/// grow); 10000 covers machine-generated conditions of thousands of terms.
pub const MAX_EXPR_DEPTH: usize = 10_000;

/// Deepest chain of subqueries (`SELECT ... FROM (SELECT ... FROM (...))`).
pub const MAX_SUBQUERY_DEPTH: usize = 1_000;
