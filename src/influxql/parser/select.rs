//! SELECT and the SHOW statements over series data.

use super::{ParseError, Parser, Tok};
use crate::influxql::ast::{
    CountClause, Dimension, Expr, Field, Fill, Measurement, Op, Select, ShowSeriesData, ShowWhat,
    Source, VarKind,
};

use crate::influxql::regex::RegexLit;
use crate::limits::{MAX_EXPR_DEPTH, MAX_SUBQUERY_DEPTH};

const EXPR_START: &str = "identifier, string, number, bool";

/// The error for an expression deeper than [`MAX_EXPR_DEPTH`], at the token where it
/// went one level too deep.
fn too_deep(at: &super::Token) -> ParseError {
    ParseError::plain(format!(
        "expression nests too deeply: more than {MAX_EXPR_DEPTH} levels at line {}, char {}",
        at.line, at.char
    ))
}

impl Parser {
    fn is_symbol(&self, c: char) -> bool {
        self.peek().tok == Tok::Symbol(c)
    }

    fn symbol(&mut self, c: char) -> Result<(), ParseError> {
        if self.is_symbol(c) {
            self.pos += 1;
            Ok(())
        } else {
            Err(self.error(&c.to_string()))
        }
    }

    /// The body of a SELECT after the keyword.
    pub(super) fn select_body(&mut self) -> Result<Select, ParseError> {
        self.select_body_with(false)
    }

    /// The body of a continuous query's SELECT: INTO is required.
    pub(super) fn select_body_into_required(&mut self) -> Result<Select, ParseError> {
        self.select_body_with(true)
    }

    fn select_body_with(&mut self, into_required: bool) -> Result<Select, ParseError> {
        let mut s = Select {
            fields: self.fields()?,
            ..Select::default()
        };
        if self.accept("INTO") {
            s.into = Some(self.target()?);
        } else if into_required {
            return Err(self.error("INTO"));
        }
        self.keyword("FROM")?;
        s.sources = self.sources(true)?;
        if self.accept("WHERE") {
            s.condition = Some(self.expr(0)?);
        }
        if self.accept("GROUP") {
            self.keyword("BY")?;
            s.dimensions = self.dimensions()?;
        }
        if self.peek().is_keyword("fill") {
            self.pos += 1;
            s.fill = self.fill()?;
        }
        if self.accept("ORDER") {
            self.keyword("BY")?;
            s.order_desc = self.order()?;
        }
        for clause in [
            CountClause::Limit,
            CountClause::Offset,
            CountClause::SLimit,
            CountClause::SOffset,
        ] {
            if !self.accept(clause.keyword()) {
                continue;
            }
            if let Tok::Param(name) = &self.peek().tok {
                s.count_params.push((clause, name.clone()));
                self.pos += 1;
                continue;
            }
            let n = self.count()?;
            match clause {
                CountClause::Limit => s.limit = n,
                CountClause::Offset => s.offset = n,
                CountClause::SLimit => s.slimit = n,
                CountClause::SOffset => s.soffset = n,
            }
        }
        if self.peek().is_keyword("tz") {
            self.pos += 1;
            self.symbol('(')?;
            match &self.peek().tok {
                Tok::Str(z) => {
                    s.tz = Some(z.clone());
                    self.pos += 1;
                }
                _ => return Err(self.error("string")),
            }
            self.symbol(')')?;
        }
        Ok(s)
    }

    fn count(&mut self) -> Result<usize, ParseError> {
        let at = self.peek().clone();
        let n = self.integer()?;
        usize::try_from(n).map_err(|_| ParseError {
            found: at.found(),
            expected: "integer".into(),
            line: at.line,
            char: at.char,
            plain: None,
        })
    }

    fn fields(&mut self) -> Result<Vec<Field>, ParseError> {
        let mut fields = Vec::new();
        loop {
            let expr = self.expr(0)?;
            let alias = if self.accept("AS") {
                Some(self.ident()?)
            } else {
                None
            };
            fields.push(Field { expr, alias });
            if !self.is_symbol(',') {
                return Ok(fields);
            }
            self.pos += 1;
        }
    }

    /// Precedence climbing over binary operators.
    pub(super) fn expr(&mut self, min_prec: u8) -> Result<Expr, ParseError> {
        Ok(self.expr_depth(min_prec)?.0)
    }

    /// [`Self::expr`] and the depth of the tree it built (a leaf is 1). Every descent
    /// adds a level to the tree, so bounding the tree bounds this parser's recursion
    /// and that of everything that walks the tree later.
    fn expr_depth(&mut self, min_prec: u8) -> Result<(Expr, usize), ParseError> {
        self.descend()?;
        let result = self.binary_chain(min_prec);
        self.nesting -= 1;
        result
    }

    fn binary_chain(&mut self, min_prec: u8) -> Result<(Expr, usize), ParseError> {
        let (mut lhs, mut depth) = self.unary_depth()?;
        loop {
            let Some(op) = self.peek_op() else {
                return Ok((lhs, depth));
            };
            if op.precedence() <= min_prec {
                return Ok((lhs, depth));
            }
            let at = self.peek().clone();
            self.pos += 1;
            let (rhs, rhs_depth) = if matches!(op, Op::EqRegex | Op::NeqRegex) {
                (Expr::Regex(self.regex()?), 1)
            } else {
                self.expr_depth(op.precedence())?
            };
            // A left-leaning chain (`a OR b OR c ...`) deepens the tree without any
            // recursion here: check its depth as it grows.
            depth = 1 + depth.max(rhs_depth);
            if depth > MAX_EXPR_DEPTH {
                return Err(too_deep(&at));
            }
            lhs = Expr::binary(op, lhs, rhs);
        }
    }

    /// One more level of recursive descent, or the error when it is one too many.
    fn descend(&mut self) -> Result<(), ParseError> {
        if self.nesting >= MAX_EXPR_DEPTH {
            return Err(too_deep(self.peek()));
        }
        self.nesting += 1;
        Ok(())
    }

    fn peek_op(&self) -> Option<Op> {
        Some(match &self.peek().tok {
            Tok::Symbol('+') => Op::Add,
            Tok::Symbol('-') => Op::Sub,
            Tok::Symbol('*') => Op::Mul,
            Tok::Symbol('/') => Op::Div,
            Tok::Symbol('%') => Op::Mod,
            Tok::Symbol('&') => Op::BitAnd,
            Tok::Symbol('|') => Op::BitOr,
            Tok::Symbol('^') => Op::BitXor,
            Tok::Symbol('=') => Op::Eq,
            Tok::Symbol('<') => Op::Lt,
            Tok::Symbol('>') => Op::Gt,
            Tok::Op2("!=") | Tok::Op2("<>") => Op::Neq,
            Tok::Op2("<=") => Op::Lte,
            Tok::Op2(">=") => Op::Gte,
            Tok::Op2("=~") => Op::EqRegex,
            Tok::Op2("!~") => Op::NeqRegex,
            Tok::Ident(w) if w.eq_ignore_ascii_case("AND") => Op::And,
            Tok::Ident(w) if w.eq_ignore_ascii_case("OR") => Op::Or,
            _ => return None,
        })
    }

    fn unary(&mut self) -> Result<Expr, ParseError> {
        Ok(self.unary_depth()?.0)
    }

    /// A unary expression and its depth.
    fn unary_depth(&mut self) -> Result<(Expr, usize), ParseError> {
        let t = self.peek().clone();
        match &t.tok {
            Tok::Symbol('(') => {
                self.pos += 1;
                let (e, depth) = self.expr_depth(0)?;
                self.symbol(')')?;
                Ok((Expr::Paren(Box::new(e)), depth + 1))
            }
            Tok::Symbol('-') => {
                self.pos += 1;
                match self.peek().tok.clone() {
                    Tok::Number(n) => {
                        self.pos += 1;
                        number_literal(&format!("-{n}"))
                            .map(|e| (e, 1))
                            .ok_or_else(|| bad(&t, "number"))
                    }
                    Tok::Duration(d, _) => {
                        self.pos += 1;
                        Ok((Expr::Duration(-d), 1))
                    }
                    Tok::BadDuration(_) => Err(ParseError::plain("invalid duration")),
                    _ => {
                        self.descend()?;
                        let inner = self.unary_depth();
                        self.nesting -= 1;
                        let (e, depth) = inner?;
                        Ok((Expr::binary(Op::Mul, Expr::Integer(-1), e), depth + 1))
                    }
                }
            }
            _ => self.operand(&t),
        }
    }

    /// A literal, a variable, a wildcard, a regex or a call, and its depth.
    fn operand(&mut self, t: &super::Token) -> Result<(Expr, usize), ParseError> {
        let leaf = match &t.tok {
            Tok::Symbol('*') => {
                self.pos += 1;
                Expr::Wildcard(self.cast()?)
            }
            Tok::Symbol('/') | Tok::Regex(_) | Tok::BadRegex => Expr::Regex(self.regex()?),
            Tok::Number(n) => {
                self.pos += 1;
                number_literal(n).ok_or_else(|| bad(t, "number"))?
            }
            Tok::Duration(d, _) => {
                self.pos += 1;
                Expr::Duration(*d)
            }
            Tok::BadDuration(_) => return Err(ParseError::plain("invalid duration")),
            Tok::Str(s) => {
                self.pos += 1;
                Expr::Str(s.clone())
            }
            Tok::Param(p) => {
                self.pos += 1;
                Expr::BoundParam(p.clone())
            }
            Tok::Ident(w) if w.eq_ignore_ascii_case("true") => {
                self.pos += 1;
                Expr::Bool(true)
            }
            Tok::Ident(w) if w.eq_ignore_ascii_case("false") => {
                self.pos += 1;
                Expr::Bool(false)
            }
            Tok::Ident(w) if w.eq_ignore_ascii_case("DISTINCT") => {
                self.pos += 1;
                let (arg, depth) = if self.is_symbol('(') {
                    self.pos += 1;
                    let arg = self.expr_depth(0)?;
                    self.symbol(')')?;
                    arg
                } else {
                    let name = self.ident()?;
                    (Expr::VarRef { name, kind: None }, 1)
                };
                let call = Expr::call("distinct", vec![arg]);
                return Ok((call, depth + 1));
            }
            Tok::Ident(name) if !super::is_reserved(name) => {
                self.pos += 1;
                if !self.is_symbol('(') {
                    return Ok((
                        Expr::VarRef {
                            name: name.clone(),
                            kind: self.cast()?,
                        },
                        1,
                    ));
                }
                self.pos += 1;
                let mut args = Vec::new();
                let mut depth = 0;
                if !self.is_symbol(')') {
                    loop {
                        let (arg, arg_depth) = self.expr_depth(0)?;
                        args.push(arg);
                        depth = depth.max(arg_depth);
                        if !self.is_symbol(',') {
                            break;
                        }
                        self.pos += 1;
                    }
                }
                self.symbol(')')?;
                let call = Expr::call(name.to_ascii_lowercase(), args);
                return Ok((call, depth + 1));
            }
            Tok::QuotedIdent(name) => {
                self.pos += 1;
                Expr::VarRef {
                    name: name.clone(),
                    kind: self.cast()?,
                }
            }
            _ => return Err(self.error(EXPR_START)),
        };
        Ok((leaf, 1))
    }

    fn cast(&mut self) -> Result<Option<VarKind>, ParseError> {
        if self.peek().tok != Tok::Op2("::") {
            return Ok(None);
        }
        self.pos += 1;
        let kind = match &self.peek().tok {
            Tok::Ident(w) => VarKind::parse(w),
            _ => None,
        };
        match kind {
            Some(k) => {
                self.pos += 1;
                Ok(Some(k))
            }
            None => Err(self.error("float, integer, string, boolean, field, tag")),
        }
    }

    /// A regex literal `/.../` starting at the current `/` token: re-scanned from the
    /// input, since its inside is not InfluxQL tokens.
    pub(super) fn regex(&mut self) -> Result<RegexLit, ParseError> {
        // InfluxDB's `bad regex: ` (its literal text is lost), one character before.
        let bad_regex = |at: &super::Token| {
            ParseError::plain(format!(
                "bad regex:  at line {}, char {}",
                at.line,
                at.char.saturating_sub(1).max(1)
            ))
        };
        if self.peek().tok == Tok::BadRegex {
            return Err(bad_regex(self.peek()));
        }
        if let Tok::Regex(re) = &self.peek().tok {
            let (re, at) = (re.clone(), self.peek().clone());
            self.pos += 1;
            return check_regex(re, &at);
        }
        if !self.is_symbol('/') {
            return Err(self.error("regex"));
        }
        let at = self.peek().clone();
        let start = self.peek().at + 1;
        let mut i = start;
        let mut out = String::new();
        loop {
            match self.chars.get(i) {
                None | Some('\n') => return Err(bad_regex(&at)),
                Some('\\') if self.chars.get(i + 1) == Some(&'/') => {
                    out.push('/');
                    i += 2;
                }
                Some('\\') => {
                    out.push('\\');
                    i += 1;
                }
                Some('/') => break,
                Some(&c) => {
                    out.push(c);
                    i += 1;
                }
            }
        }
        // Skip every token that started inside the literal, and the closing slash.
        while self.peek().tok != Tok::Eof && self.peek().at <= i {
            self.pos += 1;
        }
        check_regex(out, &at)
    }

    pub(super) fn sources(&mut self, allow_subquery: bool) -> Result<Vec<Source>, ParseError> {
        let mut out = Vec::new();
        loop {
            if allow_subquery && self.is_symbol('(') {
                if self.subqueries >= MAX_SUBQUERY_DEPTH {
                    return Err(ParseError::plain(format!(
                        "subqueries nest too deeply: more than {MAX_SUBQUERY_DEPTH} levels at line {}, char {}",
                        self.peek().line,
                        self.peek().char
                    )));
                }
                self.pos += 1;
                self.keyword("SELECT")?;
                self.subqueries += 1;
                let inner = self.select_body();
                self.subqueries -= 1;
                let inner = inner?;
                self.symbol(')')?;
                out.push(Source::Subquery(std::sync::Arc::new(inner)));
            } else {
                out.push(Source::Measurement(self.measurement_ref()?));
            }
            if !self.is_symbol(',') {
                return Ok(out);
            }
            self.pos += 1;
        }
    }

    /// `m`, `rp.m`, `db.rp.m`, `db..m`, or any of those ending in `/regex/`.
    fn measurement_ref(&mut self) -> Result<Measurement, ParseError> {
        let mut parts: Vec<Option<String>> = Vec::new();
        loop {
            if self.is_symbol('/') {
                let re = self.regex()?;
                return Ok(measurement_from(parts, None, Some(re)));
            }
            if self.is_symbol('.') {
                parts.push(None);
                self.pos += 1;
                continue;
            }
            let name = match &self.peek().tok {
                Tok::Ident(s) | Tok::QuotedIdent(s) => s.clone(),
                _ => return Err(self.error("identifier")),
            };
            self.pos += 1;
            if self.is_symbol('.') && parts.len() < 2 {
                self.pos += 1;
                parts.push(Some(name));
                continue;
            }
            return Ok(measurement_from(parts, Some(name), None));
        }
    }

    /// The target of INTO, as InfluxDB's parseTarget: up to three segments, the last
    /// of which may be `:MEASUREMENT` (the source measurement's name; `name` None).
    fn target(&mut self) -> Result<Measurement, ParseError> {
        let mut parts: Vec<String> = vec![self.ident()?];
        let mut source_name = false;
        while self.is_symbol('.') {
            self.pos += 1;
            if self.is_symbol(':') {
                source_name = true;
                break;
            }
            if self.is_symbol('.') {
                parts.push(String::new());
                continue;
            }
            parts.push(self.ident()?);
        }
        if parts.len() > 3 {
            // InfluxDB's QuoteIdent: every segment but the last quoted (the last only
            // where it needs it); its error carries no position (line 1, char 1).
            let last = parts.len() - 1;
            let quoted: Vec<String> = parts
                .iter()
                .enumerate()
                .map(|(i, p)| {
                    if i < last && !p.is_empty() {
                        format!("\"{}\"", p.replace('"', "\\\""))
                    } else {
                        crate::influxql::ast::quote_ident(p)
                    }
                })
                .collect();
            return Err(ParseError::plain(format!(
                "too many segments in {} at line 1, char 1",
                quoted.join(".")
            )));
        }
        if parts.len() < 3 && (source_name || self.is_symbol(':')) {
            self.symbol(':')?;
            self.keyword("MEASUREMENT")?;
            parts.push(String::new());
        }
        // The last segment names the measurement, the one before the policy, the
        // first (of three) the database; empty segments name nothing.
        let mut segments = parts
            .into_iter()
            .rev()
            .map(|s| (!s.is_empty()).then_some(s));
        Ok(Measurement {
            name: segments.next().flatten(),
            retention_policy: segments.next().flatten(),
            database: segments.next().flatten(),
            regex: None,
        })
    }

    fn dimensions(&mut self) -> Result<Vec<Dimension>, ParseError> {
        let mut out = Vec::new();
        loop {
            if self.is_symbol('*') {
                self.pos += 1;
                out.push(Dimension::Wildcard);
            } else if self.is_symbol('/') {
                out.push(Dimension::Regex(self.regex()?));
            } else if self.peek().is_keyword("time")
                && self.tokens[self.pos + 1].tok == Tok::Symbol('(')
            {
                self.pos += 2;
                let interval = match self.expr(0)? {
                    Expr::Duration(d) => d,
                    _ => return Err(self.error("duration")),
                };
                let mut offset = 0;
                if self.is_symbol(',') {
                    self.pos += 1;
                    offset = match self.expr(0)? {
                        Expr::Duration(d) => d,
                        Expr::Call { name, .. } if name == "now" => i64::MIN,
                        _ => return Err(self.error("duration")),
                    };
                }
                self.symbol(')')?;
                out.push(Dimension::Time { interval, offset });
            } else {
                out.push(Dimension::Tag(self.ident()?));
            }
            if !self.is_symbol(',') {
                return Ok(out);
            }
            self.pos += 1;
        }
    }

    fn fill(&mut self) -> Result<Fill, ParseError> {
        self.symbol('(')?;
        let t = self.peek().clone();
        let fill = match &t.tok {
            Tok::Ident(w) if w.eq_ignore_ascii_case("null") => Fill::Null,
            Tok::Ident(w) if w.eq_ignore_ascii_case("none") => Fill::None,
            Tok::Ident(w) if w.eq_ignore_ascii_case("previous") => Fill::Previous,
            Tok::Ident(w) if w.eq_ignore_ascii_case("linear") => Fill::Linear,
            Tok::Number(_) | Tok::Symbol('-') => match self.unary()? {
                Expr::Integer(i) => Fill::Integer(i),
                Expr::Number(n) => Fill::Number(n),
                _ => return Err(ParseError::plain("expected number argument in fill()")),
            },
            _ => return Err(ParseError::plain("expected number argument in fill()")),
        };
        if !matches!(fill, Fill::Integer(_) | Fill::Number(_)) {
            self.pos += 1;
        }
        if self.is_symbol(',') {
            // InfluxDB parses fill(...) as a call and wants exactly one argument.
            return Err(ParseError::plain(
                "fill requires an argument, e.g.: 0, null, none, previous, linear",
            ));
        }
        self.symbol(')')?;
        Ok(fill)
    }

    fn order(&mut self) -> Result<bool, ParseError> {
        if !self.peek().is_keyword("time") {
            if matches!(self.peek().tok, Tok::Ident(_) | Tok::QuotedIdent(_)) {
                return Err(ParseError::plain(
                    "only ORDER BY time supported at this time",
                ));
            }
            return Err(self.error("identifier"));
        }
        self.pos += 1;
        if self.accept("DESC") {
            return Ok(true);
        }
        self.accept("ASC");
        Ok(false)
    }

    /// SHOW MEASUREMENTS / TAG KEYS / TAG VALUES / FIELD KEYS / SERIES and the
    /// cardinality forms; `None` when the words after SHOW are none of those.
    pub(super) fn show_series_data(&mut self) -> Result<Option<ShowSeriesData>, ParseError> {
        let start = self.pos;
        let what = if self.accept("MEASUREMENTS") {
            ShowWhat::Measurements { filter: None }
        } else if self.accept("MEASUREMENT") {
            let exact = self.exact_cardinality()?;
            ShowWhat::MeasurementCardinality { exact }
        } else if self.accept("SERIES") {
            if self.peek().is_keyword("EXACT") || self.peek().is_keyword("CARDINALITY") {
                let exact = self.exact_cardinality()?;
                ShowWhat::SeriesCardinality { exact }
            } else {
                ShowWhat::Series
            }
        } else if self.accept("FIELD") {
            if self.accept("KEYS") {
                ShowWhat::FieldKeys
            } else {
                self.keyword("KEY")?;
                let exact = self.exact_cardinality()?;
                ShowWhat::FieldKeyCardinality { exact }
            }
        } else if self.accept("TAG") {
            if self.accept("KEYS") {
                ShowWhat::TagKeys
            } else if self.accept("KEY") {
                let exact = self.exact_cardinality()?;
                ShowWhat::TagKeyCardinality { exact }
            } else if self.accept("VALUES") {
                if self.peek().is_keyword("EXACT") || self.peek().is_keyword("CARDINALITY") {
                    let exact = self.exact_cardinality()?;
                    ShowWhat::TagValuesCardinality {
                        exact,
                        op: Op::Eq,
                        keys: Vec::new(),
                        regex: None,
                    }
                } else {
                    ShowWhat::TagValues {
                        op: Op::Eq,
                        keys: Vec::new(),
                        regex: None,
                    }
                }
            } else {
                return Err(self.error("KEYS, VALUES"));
            }
        } else {
            self.pos = start;
            return Ok(None);
        };
        let mut show = ShowSeriesData {
            what,
            database: None,
            sources: Vec::new(),
            condition: None,
            limit: 0,
            offset: 0,
        };
        if self.accept("ON") {
            show.database = Some(self.ident()?);
        }
        let takes_from = !matches!(show.what, ShowWhat::Measurements { .. });
        if takes_from && self.accept("FROM") {
            show.sources = self.sources(false)?;
        }
        match &mut show.what {
            ShowWhat::Measurements { filter } if self.accept("WITH") => {
                self.keyword("MEASUREMENT")?;
                match self.peek_op() {
                    Some(op @ (Op::Eq | Op::Neq)) => {
                        self.pos += 1;
                        let name = self.ident()?;
                        *filter = Some((op, Expr::Str(name)));
                    }
                    Some(op @ (Op::EqRegex | Op::NeqRegex)) => {
                        self.pos += 1;
                        *filter = Some((op, Expr::Regex(self.regex()?)));
                    }
                    _ => return Err(self.error("=, !=, =~, !~")),
                }
            }
            ShowWhat::TagValues { op, keys, regex }
            | ShowWhat::TagValuesCardinality {
                op, keys, regex, ..
            } => {
                self.keyword("WITH")?;
                self.keyword("KEY")?;
                if self.accept("IN") {
                    self.symbol('(')?;
                    loop {
                        keys.push(self.ident()?);
                        if !self.is_symbol(',') {
                            break;
                        }
                        self.pos += 1;
                    }
                    self.symbol(')')?;
                    *op = Op::Eq;
                } else {
                    match self.peek_op() {
                        Some(o @ (Op::Eq | Op::Neq)) => {
                            self.pos += 1;
                            *op = o;
                            keys.push(self.ident()?);
                        }
                        Some(o @ (Op::EqRegex | Op::NeqRegex)) => {
                            self.pos += 1;
                            *op = o;
                            *regex = Some(self.regex()?);
                        }
                        _ => return Err(self.error("=, !=, =~, !~")),
                    }
                }
            }
            _ => {}
        }
        if self.accept("WHERE") {
            show.condition = Some(self.expr(0)?);
        }
        if self.accept("LIMIT") {
            show.limit = self.count()?;
        }
        if self.accept("OFFSET") {
            show.offset = self.count()?;
        }
        Ok(Some(show))
    }

    /// `DROP SERIES` / `DELETE` after the keywords: `[FROM sources] [WHERE cond]`, at
    /// least one of the two.
    pub(super) fn delete_series(&mut self, delete: bool) -> Result<super::Statement, ParseError> {
        let mut sources = Vec::new();
        let mut condition = None;
        if self.accept("FROM") {
            sources = self.sources(false)?;
        }
        if self.accept("WHERE") {
            condition = Some(self.expr(0)?);
        }
        if sources.is_empty() && condition.is_none() {
            return Err(self.error("FROM, WHERE"));
        }
        Ok(super::Statement::DeleteSeries {
            sources,
            condition,
            delete,
        })
    }

    fn exact_cardinality(&mut self) -> Result<bool, ParseError> {
        let exact = self.accept("EXACT");
        self.keyword("CARDINALITY")?;
        Ok(exact)
    }
}

/// A regex must be valid and within the bounds of `influxql::regex`; the error reads as
/// InfluxDB's (Go's wording of the reason differs). It is compiled later, once, before
/// the statement runs.
fn check_regex(re: String, at: &super::Token) -> Result<RegexLit, ParseError> {
    let lit = RegexLit::at(re, at.line, at.char);
    match crate::influxql::regex::check(lit.as_str()) {
        Ok(()) => Ok(lit),
        Err(e) => Err(ParseError::plain(lit.error_text(&e))),
    }
}

fn number_literal(text: &str) -> Option<Expr> {
    if text.contains('.') {
        text.parse().ok().map(Expr::Number)
    } else {
        match text.parse::<i64>() {
            Ok(i) => Some(Expr::Integer(i)),
            Err(_) => text.parse().ok().map(Expr::Number),
        }
    }
}

fn bad(t: &super::Token, expected: &str) -> ParseError {
    t.error(expected)
}

fn measurement_from(
    parts: Vec<Option<String>>,
    name: Option<String>,
    regex: Option<RegexLit>,
) -> Measurement {
    let (database, retention_policy) = match parts.len() {
        0 => (None, None),
        1 => (None, parts.into_iter().next().flatten()),
        _ => {
            let mut it = parts.into_iter();
            (it.next().flatten(), it.next().flatten())
        }
    };
    Measurement {
        database,
        retention_policy,
        name,
        regex,
    }
}
