//! InfluxQL: a hand-written lexer and a parser for the statements this node executes
//! — SELECT (`select.rs`), SHOW over series data, DELETE / DROP SERIES, database and
//! retention-policy DDL, users and privileges. Other statements are recognised by
//! their leading keywords and reported as not supported, so a multi-statement query
//! still gets one result per statement. `display.rs` prints statements back as
//! InfluxDB does and says what each requires of a user.
//!
//! Errors read as InfluxDB's: `found X, expected Y at line L, char C` (1-based).

use crate::influxql::ast::{Select, ShowSeriesData};
use crate::meta::{Privilege, RetentionPolicySpec};
use std::fmt;

mod display;
mod select;

pub use display::Required;

/// A password from a statement: its `Debug` and `Display` never show it (statements
/// are printed in logs and authorization errors, InfluxDB's `[REDACTED]`).
#[derive(Clone, PartialEq, Eq)]
pub struct Password(pub String);

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[REDACTED]")
    }
}

impl fmt::Display for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[REDACTED]")
    }
}

/// A parse error with InfluxDB's wording.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct ParseError {
    pub found: String,
    pub expected: String,
    pub line: usize,
    pub char: usize,
    /// Errors InfluxDB words without a position (`invalid duration`, ...).
    pub plain: Option<String>,
}

impl ParseError {
    pub fn plain(message: impl Into<String>) -> ParseError {
        ParseError {
            plain: Some(message.into()),
            ..ParseError::default()
        }
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(p) = &self.plain {
            return f.write_str(p);
        }
        write!(
            f,
            "found {}, expected {} at line {}, char {}",
            self.found, self.expected, self.line, self.char
        )
    }
}

/// One parsed statement.
#[derive(Clone, Debug, PartialEq)]
pub enum Statement {
    CreateDatabase {
        name: String,
        retention_policy: Option<RetentionPolicySpec>,
    },
    DropDatabase {
        name: String,
    },
    ShowDatabases,
    CreateRetentionPolicy {
        name: String,
        database: String,
        spec: RetentionPolicySpec,
        default: bool,
    },
    AlterRetentionPolicy {
        name: String,
        database: String,
        spec: RetentionPolicySpec,
        default: bool,
    },
    DropRetentionPolicy {
        name: String,
        database: String,
    },
    ShowRetentionPolicies {
        database: Option<String>,
    },
    Select(Box<Select>),
    DropMeasurement {
        name: String,
    },
    /// DROP SERIES (`delete` false) or DELETE (`delete` true).
    DeleteSeries {
        sources: Vec<crate::influxql::ast::Source>,
        condition: Option<crate::influxql::ast::Expr>,
        delete: bool,
    },
    /// SHOW MEASUREMENTS / TAG KEYS / TAG VALUES / FIELD KEYS / SERIES and cardinalities.
    ShowSeriesData(ShowSeriesData),
    ShowShards,
    /// `SHOW STATS [FOR 'module']`.
    ShowStats {
        module: Option<String>,
    },
    ShowShardGroups,
    /// `CREATE USER name WITH PASSWORD 'p' [WITH ALL PRIVILEGES]`.
    CreateUser {
        name: String,
        password: Password,
        admin: bool,
    },
    DropUser {
        name: String,
    },
    /// `SET PASSWORD FOR name = 'p'`.
    SetPassword {
        name: String,
        password: Password,
    },
    /// `GRANT READ|WRITE|ALL ON db TO user`, or with no database `GRANT ALL
    /// PRIVILEGES TO user` (admin).
    Grant {
        privilege: Privilege,
        database: Option<String>,
        user: String,
    },
    /// `REVOKE ... ON db FROM user`, or with no database `REVOKE ALL PRIVILEGES FROM
    /// user` (admin).
    Revoke {
        privilege: Privilege,
        database: Option<String>,
        user: String,
    },
    ShowUsers,
    ShowGrants {
        user: String,
    },
    /// `CREATE CONTINUOUS QUERY name ON db [RESAMPLE [EVERY d] [FOR d]] BEGIN SELECT
    /// ... INTO ... END`; durations 0 when not given.
    CreateContinuousQuery {
        name: String,
        database: String,
        resample_every_ns: i64,
        resample_for_ns: i64,
        select: Box<Select>,
    },
    DropContinuousQuery {
        name: String,
        database: String,
    },
    ShowContinuousQueries,
    /// `SHOW QUERIES`: the statements running on every node.
    ShowQueries,
    /// `KILL QUERY id [ON host]`.
    KillQuery {
        id: u64,
        host: Option<String>,
    },
    /// `SHOW DIAGNOSTICS [FOR 'module']`.
    ShowDiagnostics {
        module: Option<String>,
    },
    /// `EXPLAIN [ANALYZE] SELECT ...`.
    Explain {
        analyze: bool,
        select: Box<Select>,
    },
    /// `DROP SHARD id`.
    DropShard {
        id: u64,
    },
    /// A valid InfluxQL statement kind this node does not execute yet: its kind (the
    /// leading keywords) and its text, tokens joined by single spaces.
    Unsupported {
        kind: String,
        text: String,
    },
}

#[derive(Clone, Debug, PartialEq)]
enum Tok {
    Ident(String),
    QuotedIdent(String),
    Str(String),
    Number(String),
    Duration(i64, String),
    /// Digits and letters that are no duration (`0xBAD`, `1x`): InfluxDB scans them as
    /// one token and fails with `invalid duration` only where a duration is read.
    BadDuration(String),
    Param(String),
    /// A regex literal right after `=~` / `!~`.
    Regex(String),
    /// A regex literal with no closing slash on its line.
    BadRegex,
    /// An unterminated string or quoted identifier (its text).
    Bad(String),
    Semicolon,
    Symbol(char),
    /// A two-character operator: `!=`, `<>`, `<=`, `>=`, `=~`, `!~`, `::`.
    Op2(&'static str),
    Eof,
}

#[derive(Clone, Debug)]
struct Token {
    tok: Tok,
    line: usize,
    char: usize,
    /// Index of the token's first character in the input's chars (regex re-scan).
    at: usize,
}

impl Token {
    fn found(&self) -> String {
        match &self.tok {
            // InfluxDB's scanner returns a keyword as its token, printed upper-case.
            Tok::Ident(s) if is_keyword(s) => s.to_ascii_uppercase(),
            Tok::Ident(s) => s.clone(),
            // InfluxDB's scanner returns the name without its quotes.
            Tok::QuotedIdent(s) => s.clone(),
            Tok::Str(s) => format!("'{s}'"),
            Tok::Number(s) => s.clone(),
            Tok::Duration(_, s) | Tok::BadDuration(s) => s.clone(),
            Tok::Param(s) => format!("${s}"),
            Tok::Regex(s) => format!("/{s}/"),
            Tok::BadRegex => String::new(),
            Tok::Bad(s) => s.clone(),
            Tok::Semicolon => ";".into(),
            Tok::Symbol(c) => c.to_string(),
            Tok::Op2(s) => s.to_string(),
            Tok::Eof => "EOF".into(),
        }
    }

    /// `found <this token>, expected <expected>` at its position.
    fn error(&self, expected: &str) -> ParseError {
        ParseError {
            found: self.found(),
            expected: expected.into(),
            line: self.line,
            char: self.char,
            plain: None,
        }
    }

    fn is_keyword(&self, kw: &str) -> bool {
        matches!(&self.tok, Tok::Ident(s) if s.eq_ignore_ascii_case(kw))
    }
}

/// Nanoseconds of a duration unit, as InfluxQL spells them.
fn unit_ns(unit: &str) -> Option<i64> {
    Some(match unit {
        "ns" => 1,
        "u" | "µ" | "us" => 1_000,
        "ms" => 1_000_000,
        "s" => 1_000_000_000,
        "m" => 60_000_000_000,
        "h" => 3_600_000_000_000,
        "d" => 86_400_000_000_000,
        "w" => 604_800_000_000_000,
        _ => return None,
    })
}

fn lex(input: &str) -> Result<Vec<Token>, ParseError> {
    let chars: Vec<char> = input.chars().collect();
    let mut tokens = Vec::new();
    let (mut i, mut line, mut col) = (0usize, 1usize, 1usize);
    let advance = |i: &mut usize, line: &mut usize, col: &mut usize, c: char| {
        *i += 1;
        if c == '\n' {
            *line += 1;
            *col = 1;
        } else {
            *col += 1;
        }
    };
    while i < chars.len() {
        let c = chars[i];
        let (tl, tc, start) = (line, col, i);
        if c.is_whitespace() {
            advance(&mut i, &mut line, &mut col, c);
            continue;
        }
        if c == '-' && chars.get(i + 1) == Some(&'-') {
            while i < chars.len() && chars[i] != '\n' {
                let ch = chars[i];
                advance(&mut i, &mut line, &mut col, ch);
            }
            continue;
        }
        let after_match_op = matches!(
            tokens.last().map(|t: &Token| &t.tok),
            Some(Tok::Op2("=~")) | Some(Tok::Op2("!~"))
        );
        let tok = if c == '/' && after_match_op {
            advance(&mut i, &mut line, &mut col, c);
            let mut re = String::new();
            let mut closed = false;
            // As InfluxDB's ScanDelimited: `\/` is a slash; any other backslash is
            // kept and the character after it read on its own (so `\\/` ends in an
            // escaped slash); a line break or the end leaves the regex unclosed.
            while i < chars.len() {
                let d = chars[i];
                if d == '\n' {
                    break;
                }
                if d == '\\' && chars.get(i + 1) == Some(&'/') {
                    re.push('/');
                    advance(&mut i, &mut line, &mut col, d);
                    advance(&mut i, &mut line, &mut col, '/');
                    continue;
                }
                advance(&mut i, &mut line, &mut col, d);
                if d == '/' {
                    closed = true;
                    break;
                }
                re.push(d);
            }
            if !closed {
                Tok::BadRegex
            } else {
                Tok::Regex(re)
            }
        } else if c.is_ascii_alphabetic() || c == '_' {
            let mut s = String::new();
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '_') {
                s.push(chars[i]);
                let ch = chars[i];
                advance(&mut i, &mut line, &mut col, ch);
            }
            Tok::Ident(s)
        } else if c.is_ascii_digit() {
            let mut digits = String::new();
            while i < chars.len() && (chars[i].is_ascii_digit() || chars[i] == '.') {
                digits.push(chars[i]);
                let ch = chars[i];
                advance(&mut i, &mut line, &mut col, ch);
            }
            if i < chars.len() && (chars[i].is_alphabetic()) {
                // A duration literal: one or more number+unit pairs, e.g. 1h30m.
                let mut text = digits.clone();
                let mut total: Option<i64> = Some(0);
                let mut number = digits;
                loop {
                    let mut unit = String::new();
                    while i < chars.len() && chars[i].is_alphabetic() {
                        unit.push(chars[i]);
                        let ch = chars[i];
                        advance(&mut i, &mut line, &mut col, ch);
                    }
                    text.push_str(&unit);
                    total = total.and_then(|total| {
                        let n: i64 = number.parse().ok()?;
                        n.checked_mul(unit_ns(&unit)?)?.checked_add(total)
                    });
                    if i < chars.len() && chars[i].is_ascii_digit() {
                        number = String::new();
                        while i < chars.len() && chars[i].is_ascii_digit() {
                            number.push(chars[i]);
                            text.push(chars[i]);
                            let ch = chars[i];
                            advance(&mut i, &mut line, &mut col, ch);
                        }
                        continue;
                    }
                    break;
                }
                // The rest of a word (`0xBAD`) belongs to the same token.
                while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '_') {
                    text.push(chars[i]);
                    total = None;
                    let ch = chars[i];
                    advance(&mut i, &mut line, &mut col, ch);
                }
                match total {
                    Some(total) => Tok::Duration(total, text),
                    None => Tok::BadDuration(text),
                }
            } else {
                Tok::Number(digits)
            }
        } else if c == '"' || c == '\'' {
            let quote = c;
            advance(&mut i, &mut line, &mut col, c);
            let mut s = String::new();
            let mut closed = false;
            // As InfluxDB's ScanString: `\n`, `\\`, `\'` and `\"` are the escapes; any
            // other is a bad escape token (reported at the character after the
            // backslash), and a line break or the end ends the string unterminated.
            let mut bad_escape = None;
            while i < chars.len() {
                let d = chars[i];
                if d == '\\' {
                    advance(&mut i, &mut line, &mut col, d);
                    let (el, ec) = (line, col);
                    let Some(&e) = chars.get(i) else {
                        break;
                    };
                    advance(&mut i, &mut line, &mut col, e);
                    match e {
                        'n' => s.push('\n'),
                        '\\' | '\'' | '"' => s.push(e),
                        _ => {
                            bad_escape = Some((format!("\\{e}"), el, ec));
                            break;
                        }
                    }
                    continue;
                }
                if d == '\n' {
                    break;
                }
                advance(&mut i, &mut line, &mut col, d);
                if d == quote {
                    closed = true;
                    break;
                }
                s.push(d);
            }
            if let Some((text, el, ec)) = bad_escape {
                tokens.push(Token {
                    tok: Tok::Bad(text),
                    line: el,
                    char: ec,
                    at: start,
                });
                // Nothing after it can parse: InfluxDB stops at this token too.
                break;
            }
            if !closed {
                // As InfluxDB: an unterminated quote is a bad token the parser reports
                // where it expected something else, one character before the quote.
                tokens.push(Token {
                    tok: Tok::Bad(s),
                    line: tl,
                    char: tc.saturating_sub(1).max(1),
                    at: start,
                });
                continue;
            }
            if quote == '"' {
                Tok::QuotedIdent(s)
            } else {
                Tok::Str(s)
            }
        } else if c == ';' {
            advance(&mut i, &mut line, &mut col, c);
            Tok::Semicolon
        } else if let Some(op) = chars.get(i + 1).and_then(|&n| two_char_op(c, n)) {
            advance(&mut i, &mut line, &mut col, c);
            advance(&mut i, &mut line, &mut col, c);
            Tok::Op2(op)
        } else if c == '$' {
            advance(&mut i, &mut line, &mut col, c);
            let mut s = String::new();
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                s.push(chars[i]);
                let ch = chars[i];
                advance(&mut i, &mut line, &mut col, ch);
            }
            Tok::Param(s)
        } else {
            advance(&mut i, &mut line, &mut col, c);
            Tok::Symbol(c)
        };
        tokens.push(Token {
            tok,
            line: tl,
            char: tc,
            at: start,
        });
    }
    // InfluxDB reports EOF one character past the end, or at the end when the input
    // ends right after a token its scanner ends by looking one character ahead and
    // putting it back (strings, quoted names, numbers, symbols): Go's reader counts
    // the first EOF it reads, and only a token that consumed it moves EOF on by one.
    let ends_token = chars.last().is_some_and(|c| !c.is_whitespace());
    let looked_ahead = ends_token
        && matches!(
            tokens.last().map(|t| &t.tok),
            Some(
                Tok::Str(_)
                    | Tok::QuotedIdent(_)
                    | Tok::Number(_)
                    | Tok::Symbol(_)
                    | Tok::Op2(_)
                    | Tok::Regex(_)
            )
        );
    tokens.push(Token {
        tok: Tok::Eof,
        line,
        char: if looked_ahead { col } else { col + 1 },
        at: chars.len(),
    });
    Ok(tokens)
}

fn two_char_op(a: char, b: char) -> Option<&'static str> {
    Some(match (a, b) {
        ('!', '=') => "!=",
        ('<', '>') => "<>",
        ('<', '=') => "<=",
        ('>', '=') => ">=",
        ('=', '~') => "=~",
        ('!', '~') => "!~",
        (':', ':') => "::",
        _ => return None,
    })
}

pub(crate) struct Parser {
    tokens: Vec<Token>,
    pos: usize,
    chars: Vec<char>,
    /// Recursive descents into an expression under way (bounded by
    /// [`MAX_EXPR_DEPTH`](crate::limits::MAX_EXPR_DEPTH)).
    nesting: usize,
    /// Subqueries open around the current position (bounded by
    /// [`MAX_SUBQUERY_DEPTH`](crate::limits::MAX_SUBQUERY_DEPTH)).
    subqueries: usize,
}

/// Parses a query of one or more `;`-separated statements.
pub fn parse_query(input: &str) -> Result<Vec<Statement>, ParseError> {
    let mut p = Parser::new(input)?;
    let mut statements = Vec::new();
    loop {
        while p.peek().tok == Tok::Semicolon {
            p.pos += 1;
        }
        if p.peek().tok == Tok::Eof {
            break;
        }
        statements.push(p.statement()?);
        match p.peek().tok {
            Tok::Semicolon | Tok::Eof => {}
            _ => return Err(p.error(";")),
        }
    }
    Ok(statements)
}

/// Parses one InfluxQL expression, the whole input (`/api/v2/delete` predicates).
pub fn parse_expr(input: &str) -> Result<crate::influxql::ast::Expr, ParseError> {
    let mut p = Parser::new(input)?;
    let expr = p.expr(0)?;
    if p.peek().tok != Tok::Eof {
        return Err(p.error("EOF"));
    }
    Ok(expr)
}

const STATEMENT_KEYWORDS: &str =
    "SELECT, DELETE, SHOW, CREATE, DROP, EXPLAIN, GRANT, REVOKE, ALTER, SET, KILL";

impl Parser {
    fn new(input: &str) -> Result<Parser, ParseError> {
        Ok(Parser {
            tokens: lex(input)?,
            pos: 0,
            chars: input.chars().collect(),
            nesting: 0,
            subqueries: 0,
        })
    }

    fn peek(&self) -> &Token {
        &self.tokens[self.pos.min(self.tokens.len() - 1)]
    }

    fn error(&self, expected: &str) -> ParseError {
        self.peek().error(expected)
    }

    fn keyword(&mut self, kw: &str) -> Result<(), ParseError> {
        if self.peek().is_keyword(kw) {
            self.pos += 1;
            Ok(())
        } else {
            Err(self.error(kw))
        }
    }

    fn accept(&mut self, kw: &str) -> bool {
        if self.peek().is_keyword(kw) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn ident(&mut self) -> Result<String, ParseError> {
        match &self.peek().tok {
            Tok::Ident(s) if !is_reserved(s) => {
                let s = s.clone();
                self.pos += 1;
                Ok(s)
            }
            Tok::QuotedIdent(s) => {
                let s = s.clone();
                self.pos += 1;
                Ok(s)
            }
            _ => Err(self.error("identifier")),
        }
    }

    fn duration(&mut self) -> Result<i64, ParseError> {
        match &self.peek().tok {
            Tok::Duration(ns, _) => {
                let ns = *ns;
                self.pos += 1;
                Ok(ns)
            }
            Tok::Ident(s) if s.eq_ignore_ascii_case("INF") => {
                self.pos += 1;
                Ok(0)
            }
            Tok::BadDuration(_) => Err(ParseError::plain("invalid duration")),
            _ => Err(self.error("duration")),
        }
    }

    fn integer(&mut self) -> Result<i64, ParseError> {
        match &self.peek().tok {
            Tok::Number(s) if !s.contains('.') => {
                let v = s.parse().map_err(|_| self.error("integer"))?;
                self.pos += 1;
                Ok(v)
            }
            _ => Err(self.error("integer")),
        }
    }

    fn replication(&mut self) -> Result<u32, ParseError> {
        let at = self.peek().clone();
        let n = self.integer()?;
        if n < 1 || n > u32::MAX as i64 {
            return Err(ParseError {
                found: at.found(),
                expected: "number > 0".into(),
                line: at.line,
                char: at.char,
                plain: None,
            });
        }
        Ok(n as u32)
    }

    /// Skips the rest of a statement we only recognise; `start` is the index of its
    /// first token.
    fn unsupported(&mut self, kind: String, start: usize) -> Statement {
        while !matches!(self.peek().tok, Tok::Semicolon | Tok::Eof) {
            self.pos += 1;
        }
        let text = self.tokens[start..self.pos]
            .iter()
            .map(|t| match &t.tok {
                Tok::Ident(s) if is_keyword(s) => s.to_ascii_uppercase(),
                _ => t.found(),
            })
            .collect::<Vec<_>>()
            .join(" ");
        Statement::Unsupported { kind, text }
    }

    /// An unsigned 64-bit integer (KILL QUERY, DROP SHARD), as InfluxDB's ParseUInt64.
    fn unsigned(&mut self) -> Result<u64, ParseError> {
        let at = self.peek().clone();
        match &at.tok {
            Tok::Number(s) if !s.contains('.') => {
                let n = s.parse::<u64>().map_err(|_| {
                    ParseError::plain(format!(
                        "strconv.ParseUint: parsing {s:?}: value out of range at line {}, char {}",
                        at.line, at.char
                    ))
                })?;
                self.pos += 1;
                Ok(n)
            }
            _ => Err(self.error("integer")),
        }
    }

    /// The rest of `CREATE CONTINUOUS QUERY` after `QUERY`, as InfluxDB's parser: the
    /// SELECT must have INTO, an aggregate one a GROUP BY time(...), and RESAMPLE FOR
    /// must cover the interval.
    fn create_continuous_query(&mut self) -> Result<Statement, ParseError> {
        let name = self.ident()?;
        self.keyword("ON")?;
        let database = self.ident()?;
        let (mut every, mut for_) = (0, 0);
        if self.accept("RESAMPLE") {
            if self.accept("EVERY") {
                every = self.resample_duration()?;
            }
            if self.accept("FOR") {
                for_ = self.resample_duration()?;
            }
            if every == 0 && for_ == 0 {
                return Err(self.error("EVERY, FOR"));
            }
        }
        self.keyword("BEGIN")?;
        self.keyword("SELECT")?;
        let select = self.select_body_into_required()?;
        let interval = select.group_by_interval();
        if !select.is_raw() && interval == 0 {
            // InfluxDB steps back over the SELECT's last token and reports it.
            return Err(self.tokens[self.pos.saturating_sub(1)].error("GROUP BY time(...)"));
        }
        self.keyword("END")?;
        if for_ != 0 {
            let least = interval.max(every);
            if least > for_ {
                return Err(ParseError::plain(format!(
                    "FOR duration must be >= GROUP BY time duration: must be a minimum of {}, got {}",
                    crate::influxql::format::influx_duration(least),
                    crate::influxql::format::influx_duration(for_)
                )));
            }
        }
        Ok(Statement::CreateContinuousQuery {
            name,
            database,
            resample_every_ns: every,
            resample_for_ns: for_,
            select: Box::new(select),
        })
    }

    /// A duration of RESAMPLE: only a duration literal (not INF).
    fn resample_duration(&mut self) -> Result<i64, ParseError> {
        match &self.peek().tok {
            Tok::Duration(ns, _) => {
                let ns = *ns;
                self.pos += 1;
                Ok(ns)
            }
            // RESAMPLE's durations report where they are (InfluxDB's parseResample).
            Tok::BadDuration(_) => Err(ParseError::plain(format!(
                "invalid duration at line {}, char {}",
                self.peek().line,
                self.peek().char
            ))),
            _ => Err(self.error("duration")),
        }
    }

    /// A string literal (passwords).
    fn string(&mut self) -> Result<String, ParseError> {
        match &self.peek().tok {
            Tok::Str(s) => {
                let s = s.clone();
                self.pos += 1;
                Ok(s)
            }
            _ => Err(self.error("string")),
        }
    }

    /// `READ`, `WRITE` or `ALL [PRIVILEGES]` of GRANT and REVOKE.
    fn privilege(&mut self) -> Result<Privilege, ParseError> {
        if self.accept("READ") {
            Ok(Privilege::Read)
        } else if self.accept("WRITE") {
            Ok(Privilege::Write)
        } else if self.accept("ALL") {
            self.accept("PRIVILEGES");
            Ok(Privilege::All)
        } else {
            Err(self.error("READ, WRITE, ALL [PRIVILEGES]"))
        }
    }

    /// The rest of GRANT (`to` = "TO") or REVOKE (`to` = "FROM") after its keyword,
    /// as InfluxDB parses it: after READ or WRITE only ON may follow; after ALL, ON
    /// or straight to the user (admin).
    fn grant_or_revoke(
        &mut self,
        to: &str,
    ) -> Result<(Privilege, Option<String>, String), ParseError> {
        let privilege = self.privilege()?;
        if privilege != Privilege::All || self.peek().is_keyword("ON") {
            self.keyword("ON")?;
            let database = self.ident()?;
            self.keyword(to)?;
            let user = self.ident()?;
            return Ok((privilege, Some(database), user));
        }
        if !self.accept(to) {
            return Err(self.error(&format!("ON, {to}")));
        }
        let user = self.ident()?;
        Ok((privilege, None, user))
    }

    fn statement(&mut self) -> Result<Statement, ParseError> {
        let start = self.pos;
        let first = self.peek().clone();
        let Tok::Ident(word) = &first.tok else {
            return Err(self.error(STATEMENT_KEYWORDS));
        };
        match word.to_ascii_uppercase().as_str() {
            "CREATE" => {
                self.pos += 1;
                self.create(start)
            }
            "DROP" => {
                self.pos += 1;
                self.drop_statement(start)
            }
            "SHOW" => {
                self.pos += 1;
                self.show(start)
            }
            "ALTER" => {
                self.pos += 1;
                self.keyword("RETENTION")?;
                self.keyword("POLICY")?;
                self.alter_retention_policy()
            }
            "SELECT" => {
                self.pos += 1;
                Ok(Statement::Select(Box::new(self.select_body()?)))
            }
            "DELETE" => {
                self.pos += 1;
                self.delete_series(true)
            }
            "GRANT" => {
                self.pos += 1;
                let (privilege, database, user) = self.grant_or_revoke("TO")?;
                Ok(Statement::Grant {
                    privilege,
                    database,
                    user,
                })
            }
            "REVOKE" => {
                self.pos += 1;
                let (privilege, database, user) = self.grant_or_revoke("FROM")?;
                Ok(Statement::Revoke {
                    privilege,
                    database,
                    user,
                })
            }
            "SET" => {
                self.pos += 1;
                self.keyword("PASSWORD")?;
                self.keyword("FOR")?;
                let name = self.ident()?;
                if self.peek().tok != Tok::Symbol('=') {
                    return Err(self.error("="));
                }
                self.pos += 1;
                let password = Password(self.string()?);
                Ok(Statement::SetPassword { name, password })
            }
            "EXPLAIN" => {
                self.pos += 1;
                let analyze = self.accept("ANALYZE");
                self.keyword("SELECT")?;
                Ok(Statement::Explain {
                    analyze,
                    select: Box::new(self.select_body()?),
                })
            }
            "KILL" => {
                self.pos += 1;
                self.keyword("QUERY")?;
                let id = self.unsigned()?;
                let host = if self.accept("ON") {
                    Some(self.ident()?)
                } else {
                    None
                };
                Ok(Statement::KillQuery { id, host })
            }
            _ => Err(self.error(STATEMENT_KEYWORDS)),
        }
    }

    fn create(&mut self, start: usize) -> Result<Statement, ParseError> {
        if self.accept("USER") {
            let name = self.ident()?;
            self.keyword("WITH")?;
            self.keyword("PASSWORD")?;
            let password = Password(self.string()?);
            let mut admin = false;
            if self.accept("WITH") {
                self.keyword("ALL")?;
                self.keyword("PRIVILEGES")?;
                admin = true;
            }
            return Ok(Statement::CreateUser {
                name,
                password,
                admin,
            });
        }
        if self.accept("DATABASE") {
            let name = self.ident()?;
            let mut retention_policy = None;
            if self.accept("WITH") {
                let mut spec = RetentionPolicySpec::default();
                let mut any = false;
                loop {
                    if self.policy_clause(&mut spec)? {
                        any = true;
                        continue;
                    }
                    if self.accept("NAME") {
                        spec.name = Some(self.ident()?);
                    } else if !any {
                        return Err(self.error("DURATION, NAME, REPLICATION, SHARD"));
                    } else {
                        break;
                    }
                    any = true;
                }
                retention_policy = Some(spec);
            }
            return Ok(Statement::CreateDatabase {
                name,
                retention_policy,
            });
        }
        if self.accept("RETENTION") {
            self.keyword("POLICY")?;
            let name = self.ident()?;
            self.keyword("ON")?;
            let database = self.ident()?;
            self.keyword("DURATION")?;
            let duration = self.duration()?;
            self.keyword("REPLICATION")?;
            let replication = self.replication()?;
            let mut spec = RetentionPolicySpec {
                name: Some(name.clone()),
                duration_ns: Some(duration),
                replication: Some(replication),
                shard_group_duration_ns: None,
            };
            if self.accept("SHARD") {
                self.keyword("DURATION")?;
                spec.shard_group_duration_ns = Some(self.duration()?);
            }
            let default = self.accept("DEFAULT");
            return Ok(Statement::CreateRetentionPolicy {
                name,
                database,
                spec,
                default,
            });
        }
        if self.accept("CONTINUOUS") {
            self.keyword("QUERY")?;
            return self.create_continuous_query();
        }
        if self.accept("SUBSCRIPTION") {
            return Ok(self.unsupported("CREATE SUBSCRIPTION".into(), start));
        }
        Err(self.error("CONTINUOUS, DATABASE, USER, RETENTION, SUBSCRIPTION"))
    }

    fn drop_statement(&mut self, start: usize) -> Result<Statement, ParseError> {
        if self.accept("USER") {
            return Ok(Statement::DropUser {
                name: self.ident()?,
            });
        }
        if self.accept("DATABASE") {
            return Ok(Statement::DropDatabase {
                name: self.ident()?,
            });
        }
        if self.accept("RETENTION") {
            self.keyword("POLICY")?;
            let name = self.ident()?;
            self.keyword("ON")?;
            let database = self.ident()?;
            return Ok(Statement::DropRetentionPolicy { name, database });
        }
        if self.accept("MEASUREMENT") {
            return Ok(Statement::DropMeasurement {
                name: self.ident()?,
            });
        }
        if self.accept("SERIES") {
            return self.delete_series(false);
        }
        if self.accept("CONTINUOUS") {
            self.keyword("QUERY")?;
            let name = self.ident()?;
            self.keyword("ON")?;
            let database = self.ident()?;
            return Ok(Statement::DropContinuousQuery { name, database });
        }
        if self.accept("SHARD") {
            return Ok(Statement::DropShard {
                id: self.unsigned()?,
            });
        }
        if self.accept("SUBSCRIPTION") {
            return Ok(self.unsupported("DROP SUBSCRIPTION".into(), start));
        }
        Err(self.error(
            "CONTINUOUS, DATABASE, MEASUREMENT, RETENTION, SERIES, SHARD, SUBSCRIPTION, USER",
        ))
    }

    fn show(&mut self, start: usize) -> Result<Statement, ParseError> {
        if self.accept("DATABASES") {
            return Ok(Statement::ShowDatabases);
        }
        if self.accept("USERS") {
            return Ok(Statement::ShowUsers);
        }
        if self.accept("GRANTS") {
            self.keyword("FOR")?;
            return Ok(Statement::ShowGrants {
                user: self.ident()?,
            });
        }
        if self.accept("RETENTION") {
            self.keyword("POLICIES")?;
            let database = if self.accept("ON") {
                Some(self.ident()?)
            } else {
                None
            };
            return Ok(Statement::ShowRetentionPolicies { database });
        }
        if let Some(show) = self.show_series_data()? {
            return Ok(Statement::ShowSeriesData(show));
        }
        if self.accept("SHARDS") {
            return Ok(Statement::ShowShards);
        }
        if self.accept("STATS") {
            let module = if self.accept("FOR") {
                match self.peek().tok.clone() {
                    Tok::Str(s) => {
                        self.pos += 1;
                        Some(s)
                    }
                    _ => return Err(self.error("string")),
                }
            } else {
                None
            };
            return Ok(Statement::ShowStats { module });
        }
        if self.accept("CONTINUOUS") {
            self.keyword("QUERIES")?;
            return Ok(Statement::ShowContinuousQueries);
        }
        if self.accept("QUERIES") {
            return Ok(Statement::ShowQueries);
        }
        if self.accept("DIAGNOSTICS") {
            let module = if self.accept("FOR") {
                Some(self.string()?)
            } else {
                None
            };
            return Ok(Statement::ShowDiagnostics { module });
        }
        if self.peek().is_keyword("SHARD") && self.tokens[self.pos + 1].tok != Tok::Eof {
            if let Tok::Ident(w) = &self.tokens[self.pos + 1].tok {
                if w.eq_ignore_ascii_case("GROUPS") {
                    self.pos += 2;
                    return Ok(Statement::ShowShardGroups);
                }
            }
        }
        for kind in [
            "CONTINUOUS",
            "DIAGNOSTICS",
            "FIELD",
            "GRANTS",
            "MEASUREMENT",
            "MEASUREMENTS",
            "QUERIES",
            "SERIES",
            "SHARD",
            "SHARDS",
            "STATS",
            "SUBSCRIPTIONS",
            "TAG",
        ] {
            if self.accept(kind) {
                return Ok(self.unsupported(format!("SHOW {kind}"), start));
            }
        }
        Err(self.error("CONTINUOUS, DATABASES, DIAGNOSTICS, FIELD, GRANTS, MEASUREMENT, MEASUREMENTS, QUERIES, RETENTION, SERIES, SHARD, SHARDS, STATS, SUBSCRIPTIONS, TAG, USERS"))
    }

    /// One `DURATION d`, `REPLICATION n` or `SHARD DURATION d` clause of a policy
    /// (CREATE DATABASE ... WITH, ALTER RETENTION POLICY) into `spec`; false when the
    /// next token starts none of them.
    fn policy_clause(&mut self, spec: &mut RetentionPolicySpec) -> Result<bool, ParseError> {
        if self.accept("DURATION") {
            spec.duration_ns = Some(self.duration()?);
        } else if self.accept("REPLICATION") {
            spec.replication = Some(self.replication()?);
        } else if self.accept("SHARD") {
            self.keyword("DURATION")?;
            spec.shard_group_duration_ns = Some(self.duration()?);
        } else {
            return Ok(false);
        }
        Ok(true)
    }

    fn alter_retention_policy(&mut self) -> Result<Statement, ParseError> {
        let name = self.ident()?;
        self.keyword("ON")?;
        let database = self.ident()?;
        let mut spec = RetentionPolicySpec::default();
        let mut default = false;
        let mut any = false;
        loop {
            if self.policy_clause(&mut spec)? {
                any = true;
                continue;
            }
            if self.accept("DEFAULT") {
                default = true;
            } else if !any {
                return Err(self.error("DURATION, REPLICATION, SHARD, DEFAULT"));
            } else {
                break;
            }
            any = true;
        }
        Ok(Statement::AlterRetentionPolicy {
            name,
            database,
            spec,
            default,
        })
    }
}

pub(crate) use crate::influxql::ast::is_reserved;

/// A word InfluxDB's scanner returns as a keyword token (the reserved words and the
/// operator and boolean words).
fn is_keyword(word: &str) -> bool {
    is_reserved(word)
        || ["AND", "OR", "TRUE", "FALSE"]
            .iter()
            .any(|k| k.eq_ignore_ascii_case(word))
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: i64 = 3_600_000_000_000;

    fn one(q: &str) -> Statement {
        let mut v = parse_query(q).unwrap();
        assert_eq!(v.len(), 1, "{q}");
        v.remove(0)
    }

    #[test]
    fn database_statements() {
        assert_eq!(
            one("CREATE DATABASE mydb"),
            Statement::CreateDatabase {
                name: "mydb".into(),
                retention_policy: None
            }
        );
        assert_eq!(
            one("create database \"my-db\" WITH DURATION 3d REPLICATION 2 SHARD DURATION 1h30m NAME \"short\""),
            Statement::CreateDatabase {
                name: "my-db".into(),
                retention_policy: Some(RetentionPolicySpec {
                    name: Some("short".into()),
                    duration_ns: Some(72 * H),
                    replication: Some(2),
                    shard_group_duration_ns: Some(H + H / 2),
                })
            }
        );
        assert_eq!(
            one("DROP DATABASE x"),
            Statement::DropDatabase { name: "x".into() }
        );
        assert_eq!(one("SHOW DATABASES"), Statement::ShowDatabases);
        assert_eq!(
            parse_query("CREATE DATABASE a; CREATE DATABASE b;")
                .unwrap()
                .len(),
            2
        );
    }

    #[test]
    fn retention_policy_statements() {
        assert_eq!(
            one("CREATE RETENTION POLICY rp1 ON db DURATION INF REPLICATION 1 SHARD DURATION 1w DEFAULT"),
            Statement::CreateRetentionPolicy {
                name: "rp1".into(),
                database: "db".into(),
                spec: RetentionPolicySpec {
                    name: Some("rp1".into()),
                    duration_ns: Some(0),
                    replication: Some(1),
                    shard_group_duration_ns: Some(168 * H),
                },
                default: true
            }
        );
        assert_eq!(
            one("ALTER RETENTION POLICY rp1 ON db DURATION 2h DEFAULT"),
            Statement::AlterRetentionPolicy {
                name: "rp1".into(),
                database: "db".into(),
                spec: RetentionPolicySpec {
                    duration_ns: Some(2 * H),
                    ..Default::default()
                },
                default: true
            }
        );
        assert_eq!(
            one("DROP RETENTION POLICY rp1 ON db"),
            Statement::DropRetentionPolicy {
                name: "rp1".into(),
                database: "db".into()
            }
        );
        assert_eq!(
            one("SHOW RETENTION POLICIES ON db"),
            Statement::ShowRetentionPolicies {
                database: Some("db".into())
            }
        );
        assert_eq!(
            one("SHOW RETENTION POLICIES"),
            Statement::ShowRetentionPolicies { database: None }
        );
    }

    #[test]
    fn operations_and_continuous_query_statements_parse_as_influxdb() {
        let v = parse_query("kill   query 12 ; SHOW DATABASES; create subscription s ON db.rp DESTINATIONS ALL 'udp://x'").unwrap();
        assert_eq!(
            v,
            vec![
                Statement::KillQuery { id: 12, host: None },
                Statement::ShowDatabases,
                Statement::Unsupported {
                    kind: "CREATE SUBSCRIPTION".into(),
                    text: "CREATE SUBSCRIPTION s ON db . rp DESTINATIONS ALL 'udp://x'".into(),
                },
            ]
        );
        for (q, printed) in [
            ("KILL QUERY 7 ON \"h:1\"", "KILL QUERY 7 ON \"h:1\""),
            ("drop shard 99", "DROP SHARD 99"),
            ("show diagnostics for 'build'", "SHOW DIAGNOSTICS FOR 'build'"),
            ("show queries", "SHOW QUERIES"),
            ("show continuous queries", "SHOW CONTINUOUS QUERIES"),
            ("explain analyze select v from m", "EXPLAIN ANALYZE SELECT v FROM m"),
            (
                "create continuous query c on db resample every 1m for 2h begin select mean(v) into db.rp.:measurement from /m/ group by time(1h) end",
                "CREATE CONTINUOUS QUERY c ON db RESAMPLE EVERY 1m FOR 2h BEGIN SELECT mean(v) INTO db.rp.:MEASUREMENT FROM /m/ GROUP BY time(1h) END",
            ),
            (
                "CREATE CONTINUOUS QUERY c ON db BEGIN SELECT v INTO rp.:MEASUREMENT FROM m END",
                "CREATE CONTINUOUS QUERY c ON db BEGIN SELECT v INTO rp.:MEASUREMENT FROM m END",
            ),
            ("drop continuous query \"a b\" on db", "DROP CONTINUOUS QUERY \"a b\" ON db"),
        ] {
            let st = parse_query(q).unwrap_or_else(|e| panic!("{q}: {e}"));
            assert_eq!(st[0].to_string(), printed, "{q}");
        }
        for (q, err) in [
            (
                "KILL QUERY x",
                "found x, expected integer at line 1, char 12",
            ),
            (
                "EXPLAIN DELETE FROM m",
                "found DELETE, expected SELECT at line 1, char 9",
            ),
            (
                "SELECT v INTO a.b.c.d FROM m",
                "too many segments in \"a\".\"b\".\"c\".d at line 1, char 1",
            ),
            (
                "CREATE CONTINUOUS QUERY c ON db BEGIN SELECT v INTO :MEASUREMENT FROM m END",
                "found :, expected identifier at line 1, char 53",
            ),
        ] {
            assert_eq!(parse_query(q).unwrap_err().to_string(), err, "{q}");
        }
    }

    #[test]
    fn user_statements_parse_as_influxdb() {
        assert_eq!(
            one("CREATE USER \"a b\" WITH PASSWORD 'p\\'w' WITH ALL PRIVILEGES"),
            Statement::CreateUser {
                name: "a b".into(),
                password: Password("p'w".into()),
                admin: true
            }
        );
        assert_eq!(
            one("grant all privileges on db to bob"),
            Statement::Grant {
                privilege: Privilege::All,
                database: Some("db".into()),
                user: "bob".into()
            }
        );
        assert_eq!(
            one("REVOKE ALL FROM bob"),
            Statement::Revoke {
                privilege: Privilege::All,
                database: None,
                user: "bob".into()
            }
        );
        assert!(!format!("{:?}", one("SET PASSWORD FOR bob = 'hunter2'")).contains("hunter2"));
        // InfluxDB's own parser tests' texts.
        for (q, e) in [
            ("SHOW GRANTS", "found EOF, expected FOR at line 1, char 13"),
            (
                "SHOW GRANTS FOR",
                "found EOF, expected identifier at line 1, char 17",
            ),
            (
                "DROP USER",
                "found EOF, expected identifier at line 1, char 11",
            ),
            (
                "CREATE USER testuser",
                "found EOF, expected WITH at line 1, char 22",
            ),
            (
                "CREATE USER testuser WITH",
                "found EOF, expected PASSWORD at line 1, char 27",
            ),
            (
                "CREATE USER testuser WITH PASSWORD",
                "found EOF, expected string at line 1, char 36",
            ),
            (
                "CREATE USER testuser WITH PASSWORD 'pwd' WITH",
                "found EOF, expected ALL at line 1, char 47",
            ),
            (
                "CREATE USER testuser WITH PASSWORD 'pwd' WITH ALL",
                "found EOF, expected PRIVILEGES at line 1, char 51",
            ),
            (
                "CREATE USER WITH PASSWORD pwd1337",
                "found WITH, expected identifier at line 1, char 13",
            ),
            (
                "CREATE USER read WITH PASSWORD 'x'",
                "found READ, expected identifier at line 1, char 13",
            ),
            (
                "CREATE USER bob WITH PASSWORD \"x\"",
                "found x, expected string at line 1, char 31",
            ),
            ("SET", "found EOF, expected PASSWORD at line 1, char 5"),
            ("SET PASSWORD", "found EOF, expected FOR at line 1, char 14"),
            (
                "SET PASSWORD something",
                "found something, expected FOR at line 1, char 14",
            ),
            (
                "SET PASSWORD FOR",
                "found EOF, expected identifier at line 1, char 18",
            ),
            (
                "SET PASSWORD FOR dejan",
                "found EOF, expected = at line 1, char 24",
            ),
            (
                "SET PASSWORD FOR dejan =",
                "found EOF, expected string at line 1, char 25",
            ),
            (
                "SET PASSWORD FOR dejan = bla",
                "found bla, expected string at line 1, char 26",
            ),
            (
                "GRANT",
                "found EOF, expected READ, WRITE, ALL [PRIVILEGES] at line 1, char 7",
            ),
            (
                "GRANT BOGUS",
                "found BOGUS, expected READ, WRITE, ALL [PRIVILEGES] at line 1, char 7",
            ),
            ("GRANT READ", "found EOF, expected ON at line 1, char 12"),
            ("GRANT READ TO", "found TO, expected ON at line 1, char 12"),
            (
                "GRANT READ ON",
                "found EOF, expected identifier at line 1, char 15",
            ),
            (
                "GRANT READ ON testdb",
                "found EOF, expected TO at line 1, char 22",
            ),
            (
                "GRANT READ ON testdb TO",
                "found EOF, expected identifier at line 1, char 25",
            ),
            ("GRANT ALL", "found EOF, expected ON, TO at line 1, char 11"),
            (
                "GRANT ALL PRIVILEGES",
                "found EOF, expected ON, TO at line 1, char 22",
            ),
            (
                "GRANT ALL FROM",
                "found FROM, expected ON, TO at line 1, char 11",
            ),
            (
                "GRANT ALL TO",
                "found EOF, expected identifier at line 1, char 14",
            ),
            (
                "REVOKE",
                "found EOF, expected READ, WRITE, ALL [PRIVILEGES] at line 1, char 8",
            ),
            ("REVOKE READ", "found EOF, expected ON at line 1, char 13"),
            (
                "REVOKE READ FROM",
                "found FROM, expected ON at line 1, char 13",
            ),
            (
                "REVOKE READ ON testdb",
                "found EOF, expected FROM at line 1, char 23",
            ),
            (
                "REVOKE READ ON testdb FROM",
                "found EOF, expected identifier at line 1, char 28",
            ),
            (
                "REVOKE ALL",
                "found EOF, expected ON, FROM at line 1, char 12",
            ),
            (
                "REVOKE ALL TO",
                "found TO, expected ON, FROM at line 1, char 12",
            ),
            (
                "REVOKE ALL ON testdb TO",
                "found TO, expected FROM at line 1, char 22",
            ),
            (
                "REVOKE ALL FROM",
                "found EOF, expected identifier at line 1, char 17",
            ),
        ] {
            assert_eq!(parse_query(q).unwrap_err().to_string(), e, "{q}");
        }
    }

    #[test]
    fn errors_name_found_expected_and_position() {
        let e = parse_query("CREATE DATABSE x").unwrap_err();
        assert_eq!(
            e.to_string(),
            "found DATABSE, expected CONTINUOUS, DATABASE, USER, RETENTION, SUBSCRIPTION at line 1, char 8"
        );
        let e = parse_query("CREATE DATABASE").unwrap_err();
        assert_eq!(
            e.to_string(),
            "found EOF, expected identifier at line 1, char 17"
        );
        let e = parse_query("FOO").unwrap_err();
        assert!(e
            .to_string()
            .starts_with("found FOO, expected SELECT, DELETE, SHOW"));
        let e =
            parse_query("CREATE RETENTION POLICY r ON db DURATION 1h REPLICATION 0").unwrap_err();
        assert_eq!(
            e.to_string(),
            "found 0, expected number > 0 at line 1, char 57"
        );
        let e = parse_query("CREATE DATABASE db WITH DURATION 1x").unwrap_err();
        assert_eq!(e.to_string(), "invalid duration");
        let e = parse_query("SHOW DATABASES\nDROP DATABASE x").unwrap_err();
        assert_eq!((e.line, e.char), (2, 1));
    }
}

#[cfg(test)]
mod select_tests {
    use super::*;
    use crate::influxql::ast::*;

    fn select(q: &str) -> Select {
        match parse_query(q)
            .unwrap_or_else(|e| panic!("{q}: {e}"))
            .remove(0)
        {
            Statement::Select(s) => *s,
            other => panic!("{q}: {other:?}"),
        }
    }

    fn var(name: &str) -> Expr {
        Expr::VarRef {
            name: name.into(),
            kind: None,
        }
    }

    #[test]
    fn every_select_form_parses() {
        // (query, field names, sources, dimensions, fill, desc, limit, offset, slimit, soffset)
        let forms = [
            "SELECT * FROM cpu",
            "SELECT *::field, *::tag FROM cpu",
            "SELECT a AS x, b + 2 * c, -d, (a - b) / 2 FROM cpu",
            "SELECT mean(a), percentile(a, 95), top(a, host, 3), count(distinct(b)) FROM cpu",
            "SELECT DISTINCT a FROM cpu",
            "SELECT derivative(mean(a), 1s), non_negative_difference(max(b)) FROM cpu GROUP BY time(1m)",
            "SELECT moving_average(a, 3), cumulative_sum(a), elapsed(a, 1ms), integral(a, 1h) FROM cpu",
            "SELECT abs(a), floor(a), round(a), pow(a, 2), atan2(a, b) FROM cpu",
            "SELECT a::integer, b::float, c::string, d::boolean, host::tag, e::field FROM cpu",
            "SELECT a FROM cpu, mem, /^disk/, db.rp.m, db..m, rp.m, \"my db\".\"my rp\".\"my m\"",
            "SELECT mean(x) FROM (SELECT a + b AS x FROM cpu WHERE host = 'a') GROUP BY host",
            "SELECT a FROM cpu WHERE time >= '2026-01-01T00:00:00Z' AND time < now() - 1h30m",
            "SELECT a FROM cpu WHERE host = 'a' OR (host != 'b' AND region =~ /us-.*/ AND dc !~ /x\\/y/)",
            "SELECT a FROM cpu WHERE a > 1.5 AND b <= -2 AND c = true AND d <> 'x' AND time > 1000",
            "SELECT mean(a) FROM cpu GROUP BY time(10m, 5m), host, /reg/ fill(previous)",
            "SELECT mean(a) FROM cpu GROUP BY * fill(none)",
            "SELECT mean(a) FROM cpu GROUP BY time(1h) fill(-1.5)",
            "SELECT mean(a) FROM cpu GROUP BY time(1h) fill(linear) ORDER BY time DESC LIMIT 10 OFFSET 2 SLIMIT 3 SOFFSET 1 tz('UTC')",
            "SELECT a FROM cpu WHERE host = $host AND time > $start",
            "select A from \"cpu\" where \"host\"='a' order by time asc",
        ];
        for q in forms {
            select(q);
        }
        let s = select("SELECT a AS x, b + 2 * c, -d FROM cpu");
        let names: Vec<String> = s.fields.iter().map(Field::name).collect();
        assert_eq!(names, ["x", "b_c", "d"]);
        assert_eq!(
            s.fields[1].expr,
            Expr::binary(
                Op::Add,
                var("b"),
                Expr::binary(Op::Mul, Expr::Integer(2), var("c"))
            )
        );
        let s =
            select("SELECT mean(a) FROM cpu GROUP BY time(10m, 5m), host, /reg/ fill(previous)");
        assert_eq!(
            s.dimensions,
            vec![
                Dimension::Time {
                    interval: 600_000_000_000,
                    offset: 300_000_000_000
                },
                Dimension::Tag("host".into()),
                Dimension::Regex("reg".into())
            ]
        );
        assert_eq!(s.fill, Fill::Previous);
        let s = select("SELECT mean(a) FROM cpu GROUP BY time(1h) fill(linear) ORDER BY time DESC LIMIT 10 OFFSET 2 SLIMIT 3 SOFFSET 1 tz('UTC')");
        assert_eq!(
            (s.order_desc, s.limit, s.offset, s.slimit, s.soffset),
            (true, 10, 2, 3, 1)
        );
        assert_eq!(s.tz.as_deref(), Some("UTC"));
        let s = select("SELECT a FROM cpu, db.rp.m, db..m, rp.m, /^disk/");
        let sources: Vec<Measurement> = s
            .sources
            .into_iter()
            .map(|s| match s {
                Source::Measurement(m) => m,
                Source::Subquery(_) => panic!("no subquery"),
            })
            .collect();
        let m = |db: Option<&str>, rp: Option<&str>, name: Option<&str>, re: Option<&str>| {
            Measurement {
                database: db.map(Into::into),
                retention_policy: rp.map(Into::into),
                name: name.map(Into::into),
                regex: re.map(Into::into),
            }
        };
        assert_eq!(
            sources,
            vec![
                m(None, None, Some("cpu"), None),
                m(Some("db"), Some("rp"), Some("m"), None),
                m(Some("db"), None, Some("m"), None),
                m(None, Some("rp"), Some("m"), None),
                m(None, None, None, Some("^disk")),
            ]
        );
        let s = select("SELECT a FROM cpu WHERE dc !~ /x\\/y/");
        assert_eq!(
            s.condition,
            Some(Expr::binary(
                Op::NeqRegex,
                var("dc"),
                Expr::Regex("x/y".into())
            ))
        );
    }

    #[test]
    fn show_forms_parse() {
        for q in [
            "SHOW MEASUREMENTS",
            "SHOW MEASUREMENTS ON db WITH MEASUREMENT =~ /cpu.*/ WHERE host = 'a' LIMIT 2 OFFSET 1",
            "SHOW MEASUREMENTS WITH MEASUREMENT = cpu",
            "SHOW TAG KEYS FROM cpu WHERE host = 'a'",
            "SHOW TAG VALUES FROM cpu WITH KEY = host",
            "SHOW TAG VALUES WITH KEY IN (host, region)",
            "SHOW TAG VALUES WITH KEY =~ /h.*/ WHERE region = 'us'",
            "SHOW TAG VALUES WITH KEY != host",
            "SHOW FIELD KEYS FROM cpu",
            "SHOW SERIES FROM cpu WHERE host = 'a' LIMIT 5",
            "SHOW MEASUREMENT CARDINALITY",
            "SHOW MEASUREMENT EXACT CARDINALITY ON db",
            "SHOW SERIES CARDINALITY FROM cpu",
            "SHOW SERIES EXACT CARDINALITY",
            "SHOW TAG KEY CARDINALITY",
            "SHOW TAG VALUES EXACT CARDINALITY WITH KEY = host",
            "SHOW FIELD KEY CARDINALITY",
        ] {
            match parse_query(q)
                .unwrap_or_else(|e| panic!("{q}: {e}"))
                .remove(0)
            {
                Statement::ShowSeriesData(_) => {}
                other => panic!("{q}: {other:?}"),
            }
        }
    }

    #[test]
    fn shard_and_delete_statements_parse() {
        assert_eq!(one("SHOW SHARDS"), Statement::ShowShards);
        assert_eq!(one("SHOW STATS"), Statement::ShowStats { module: None });
        assert_eq!(
            one("SHOW STATS FOR 'httpd'"),
            Statement::ShowStats {
                module: Some("httpd".into())
            }
        );
        assert_eq!(one("SHOW SHARD GROUPS"), Statement::ShowShardGroups);
        assert_eq!(
            one("DROP MEASUREMENT \"disk usage\""),
            Statement::DropMeasurement {
                name: "disk usage".into()
            }
        );
        assert!(matches!(
            one("DROP SERIES FROM cpu WHERE host = 'a'"),
            Statement::DeleteSeries { delete: false, .. }
        ));
        assert!(matches!(
            one("DELETE WHERE time < '2026-01-01'"),
            Statement::DeleteSeries { delete: true, .. }
        ));
        assert_eq!(
            parse_query("DROP SERIES").unwrap_err().to_string(),
            "found EOF, expected FROM, WHERE at line 1, char 13"
        );
    }

    fn one(q: &str) -> Statement {
        let mut v = parse_query(q).unwrap();
        assert_eq!(v.len(), 1, "{q}");
        v.remove(0)
    }

    #[test]
    fn select_errors_read_as_influxdb() {
        let cases = [
            (
                "SELECT",
                "found EOF, expected identifier, string, number, bool at line 1, char 8",
            ),
            (
                "SELECT FROM cpu",
                "found FROM, expected identifier, string, number, bool at line 1, char 8",
            ),
            ("SELECT a", "found EOF, expected FROM at line 1, char 10"),
            (
                "SELECT a FROM",
                "found EOF, expected identifier at line 1, char 15",
            ),
            (
                "SELECT * FROM \"cpu",
                "found cpu, expected identifier at line 1, char 14",
            ),
            (
                "SELECT * FROM cpu WHERE host = 'a",
                "found a, expected identifier, string, number, bool at line 1, char 31",
            ),
            (
                "SELECT * FROM cpu GROUP BY time(1h) fill(bogus)",
                "expected number argument in fill()",
            ),
            (
                "SELECT * FROM cpu WHERE time > now() - 1x",
                "invalid duration",
            ),
            (
                "SELECT a FROM cpu ORDER BY host",
                "only ORDER BY time supported at this time",
            ),
            (
                "SELECT a FROM cpu LIMIT x",
                "found x, expected integer at line 1, char 25",
            ),
            (
                "SELECT a FROM cpu WHERE a =~ 'x'",
                "found 'x', expected regex at line 1, char 30",
            ),
        ];
        for (q, want) in cases {
            match parse_query(q) {
                Err(e) => assert_eq!(e.to_string(), want, "{q}"),
                Ok(s) => panic!("{q} parsed: {s:?}"),
            }
        }
        let e = parse_query("SELECT * FROM cpu WHERE host =~ /[/").unwrap_err();
        assert!(e.to_string().starts_with("error parsing regexp:"), "{e}");
    }
}

/// No input panics the parser, however deep or long: arbitrary text, token soup, and
/// generated deep and long expressions and subquery chains, each parsed on a thread
/// with a core's stack (the parser's recursion is bounded by the depth limits, not by
/// luck). Accepted statements print as InfluxQL that parses to the same statement.
#[cfg(test)]
mod property_tests {
    use super::*;
    use crate::limits::{CORE_STACK_BYTES, MAX_EXPR_DEPTH, MAX_SUBQUERY_DEPTH};
    use proptest::prelude::*;
    use proptest::test_runner::{Config, TestRunner};

    /// Runs `cases` cases of `strategy` through `check` on a core-sized stack.
    fn run_on_core_stack<S>(
        cases: u32,
        strategy: S,
        check: fn(S::Value) -> Result<(), TestCaseError>,
    ) where
        S: Strategy + Send + 'static,
        S::Value: Send,
    {
        std::thread::Builder::new()
            .stack_size(CORE_STACK_BYTES)
            .spawn(move || {
                let mut runner = TestRunner::new(Config {
                    cases,
                    failure_persistence: None,
                    ..Config::default()
                });
                if let Err(e) = runner.run(&strategy, check) {
                    panic!("{e}");
                }
            })
            .expect("spawn")
            .join()
            .expect("the property holds");
    }

    /// Displays a statement's parts that are expressions, to compare two parses.
    fn shown(statements: &[Statement]) -> Vec<String> {
        let mut out = Vec::new();
        for st in statements {
            if let Statement::Select(s) = st {
                out.extend(s.fields.iter().map(|f| f.expr.to_string()));
                out.extend(s.condition.iter().map(|c| c.to_string()));
            }
        }
        out
    }

    fn round_trips(q: &str) -> Result<(), TestCaseError> {
        let Ok(statements) = parse_query(q) else {
            return Ok(());
        };
        for st in &statements {
            if let Statement::Select(s) = st {
                if let Some(c) = &s.condition {
                    let text = format!("SELECT x FROM m WHERE {c}");
                    let again = parse_query(&text)
                        .map_err(|e| TestCaseError::fail(format!("{text}: {e}")))?;
                    let Statement::Select(again) = &again[0] else {
                        return Err(TestCaseError::fail("not a SELECT"));
                    };
                    prop_assert_eq!(
                        again.condition.as_ref().map(|c| c.to_string()),
                        Some(c.to_string())
                    );
                }
            }
        }
        let _ = shown(&statements);
        Ok(())
    }

    #[test]
    fn arbitrary_text_never_panics() {
        run_on_core_stack(3000, any::<Vec<u8>>(), |bytes| {
            let text = String::from_utf8_lossy(&bytes).into_owned();
            let _ = parse_query(&text);
            // `/api/v2/delete` predicates take the expression entry point.
            let _ = parse_expr(&text);
            Ok(())
        });
    }

    const TOKENS: &[&str] = &[
        "SELECT",
        "FROM",
        "WHERE",
        "GROUP",
        "BY",
        "time(1h)",
        "fill(none)",
        "ORDER",
        "DESC",
        "LIMIT",
        "1",
        "SLIMIT",
        "AND",
        "OR",
        "(",
        ")",
        ",",
        "m",
        "f",
        "\"q\"",
        "'s'",
        "=",
        "!=",
        "=~",
        "!~",
        "/a.*/",
        "/",
        "<",
        ">=",
        "+",
        "-",
        "*",
        "%",
        "::field",
        "::tag",
        "mean(",
        "abs(",
        "count(",
        "distinct",
        "$p",
        "1.5",
        "-2",
        "10s",
        "now()",
        "true",
        "SHOW",
        "TAG",
        "VALUES",
        "WITH",
        "KEY",
        "SERIES",
        "DELETE",
        "DROP",
        "MEASUREMENT",
        ";",
        "INTO",
        "tz('UTC')",
        "\"",
        "'",
        "--",
        "\n",
    ];

    #[test]
    fn token_soup_never_panics_and_what_parses_round_trips() {
        let soup =
            prop::collection::vec(prop::sample::select(TOKENS), 0..60).prop_map(|t| t.join(" "));
        run_on_core_stack(3000, soup, |q| round_trips(&q));
        let select = prop::collection::vec(prop::sample::select(TOKENS), 0..40)
            .prop_map(|t| format!("SELECT f FROM m WHERE {}", t.join(" ")));
        run_on_core_stack(3000, select, |q| round_trips(&q));
    }

    /// One of the shapes that make a deep tree, `n` levels of it, around `leaf`.
    fn deep(shape: u8, n: usize) -> String {
        let leaf = "f > 0";
        match shape % 7 {
            0 => format!("{}{leaf}{}", "(".repeat(n), ")".repeat(n)),
            1 => vec![leaf; n.max(1)].join(" OR "),
            2 => vec![leaf; n.max(1)].join(" AND "),
            3 => format!("{}f{} > 0", "abs(".repeat(n), ")".repeat(n)),
            // (`--` would start a comment.)
            4 => format!("{}f{} > 0", "-(".repeat(n), ")".repeat(n)),
            5 => format!("{}{leaf}{}", "f > 0 OR (".repeat(n), ")".repeat(n)),
            _ => vec!["f"; n.max(1)].join(" + ") + " > 0",
        }
    }

    #[test]
    fn deep_and_long_expressions_are_parsed_or_refused_never_crash() {
        let generated = (
            any::<u8>(),
            0..MAX_EXPR_DEPTH + 2_000,
            any::<bool>(),
            any::<u16>(),
        );
        run_on_core_stack(120, generated, |(shape, n, truncate, cut)| {
            let mut q = format!("SELECT f FROM m WHERE {}", deep(shape, n));
            if truncate {
                let at = cut as usize % q.len();
                let at = (0..=at).rev().find(|&i| q.is_char_boundary(i)).unwrap_or(0);
                q.truncate(at);
            }
            match parse_query(&q) {
                Ok(_) => {}
                Err(e) => {
                    let e = e.to_string();
                    // A well-formed statement is refused only for its depth.
                    if !truncate {
                        prop_assert!(e.contains("nests too deeply"), "{}", e);
                        prop_assert!(n + 2 > MAX_EXPR_DEPTH / 2, "refused at {} levels: {}", n, e);
                    }
                }
            }
            Ok(())
        });
    }

    #[test]
    fn the_documented_bounds_are_exact() {
        run_on_core_stack(1, Just(()), |()| {
            let chain =
                |n: usize| format!("SELECT f FROM m WHERE {}", vec!["f > 0"; n].join(" OR "));
            // n comparisons chained: 2 levels for the first, one more per operator.
            prop_assert!(parse_query(&chain(MAX_EXPR_DEPTH - 1)).is_ok());
            let e = parse_query(&chain(MAX_EXPR_DEPTH)).unwrap_err().to_string();
            prop_assert!(
                e.starts_with(
                    "expression nests too deeply: more than 10000 levels at line 1, char "
                ),
                "{}",
                e
            );
            let nested = |n: usize| {
                format!(
                    "SELECT f FROM {}m{}",
                    "(SELECT f FROM ".repeat(n),
                    ")".repeat(n)
                )
            };
            prop_assert!(parse_query(&nested(MAX_SUBQUERY_DEPTH)).is_ok());
            let e = parse_query(&nested(MAX_SUBQUERY_DEPTH + 1))
                .unwrap_err()
                .to_string();
            prop_assert!(
                e.starts_with("subqueries nest too deeply: more than 1000 levels"),
                "{}",
                e
            );
            // Far past the bounds the parser stops early instead of recursing.
            let e = parse_query(&format!("SELECT {}", "(".repeat(1_000_000))).unwrap_err();
            prop_assert!(e.to_string().contains("nests too deeply"));
            Ok(())
        });
    }

    #[test]
    fn nested_subqueries_with_deep_conditions_never_crash() {
        let generated = (0..MAX_SUBQUERY_DEPTH + 50, any::<u8>(), 0..3_000usize);
        run_on_core_stack(40, generated, |(levels, shape, n)| {
            let q = format!(
                "SELECT f FROM {}m WHERE {}{}",
                "(SELECT f FROM ".repeat(levels),
                deep(shape, n),
                ")".repeat(levels)
            );
            match parse_query(&q) {
                Ok(_) => prop_assert!(levels <= MAX_SUBQUERY_DEPTH),
                Err(e) => prop_assert!(
                    levels > MAX_SUBQUERY_DEPTH || e.to_string().contains("nests too deeply"),
                    "{}",
                    e
                ),
            }
            Ok(())
        });
    }

    #[test]
    fn regex_literals_never_panic_the_checker() {
        let pattern = prop::collection::vec(
            prop::sample::select(
                &[
                    "a", "\\w", "\\d", "(", ")", "[", "]", "*", "+", "?", "{2}", "{1,3}", "|", "^",
                    "$", ".", "\\", "\\p{L}", "(?i)", "\\/", "é",
                ][..],
            ),
            0..80,
        )
        .prop_map(|p| p.concat());
        run_on_core_stack(3000, pattern, |p| {
            let q = format!("SELECT f FROM m WHERE host =~ /{}/", p.replace('/', "\\/"));
            let _ = parse_query(&q);
            let _ = crate::influxql::regex::compile(&p);
            Ok(())
        });
    }
}
