//! InfluxQL regex literals (`=~ /re/`, `FROM /re/`, `GROUP BY /re/`, `WITH KEY =~ /re/`):
//! bounded when parsed, compiled once per literal, off the core when compiling costs.
//!
//! A regex is user input that can cost far more to compile than to send: 1 MB of pattern
//! held a core for ~0.5 s and left 200 MB of RSS, and 1 KB of `\pL` (each a class of
//! hundreds of ranges) takes ~200 ms to compile without a size limit. So:
//! - the parser checks the syntax (regex-syntax's parser and translator, no automaton:
//!   microseconds to a few ms at the bounds) and refuses a pattern longer than
//!   [`MAX_REGEX_BYTES`] or with more than [`MAX_REGEX_CLASSES`] Unicode classes,
//!   with Go's wording (`error parsing regexp: expression too large`);
//! - the automaton is built with a program size limit ([`REGEX_PROGRAM_BYTES`]), so
//!   memory and time stay bounded whatever the pattern;
//! - [`prepare`] compiles the literals of a statement before it runs, a costly one in
//!   glommio's blocking thread pool, so the core keeps serving writes meanwhile; each
//!   literal ([`RegexLit`]) keeps its compiled form, so no row, series or shard
//!   compiles it again.

use regex::Regex;
use std::sync::{Arc, OnceLock};

use crate::limits::CHEAP_REGEX_BYTES;
pub use crate::limits::{MAX_REGEX_BYTES, MAX_REGEX_CLASSES, REGEX_PROGRAM_BYTES};

/// Why a regex literal was refused; the text is what the client sees.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("error parsing regexp: {reason}")]
pub struct RegexError {
    reason: String,
    /// The part of the pattern Go's regexp names for this error (None: the pattern).
    shown: Option<String>,
}

impl RegexError {
    fn new(reason: impl Into<String>) -> RegexError {
        RegexError {
            reason: reason.into(),
            shown: None,
        }
    }
}

/// A regex literal of a statement: its pattern, where it was written, and (once
/// compiled) its automaton, shared by every copy of the statement.
pub struct RegexLit {
    pattern: String,
    /// Line and character of the literal (for errors), 0 when built by code.
    at: (usize, usize),
    compiled: Arc<OnceLock<Result<Arc<Regex>, RegexError>>>,
}

impl RegexLit {
    pub fn new(pattern: impl Into<String>) -> RegexLit {
        RegexLit::at(pattern, 0, 0)
    }

    pub fn at(pattern: impl Into<String>, line: usize, char: usize) -> RegexLit {
        RegexLit {
            pattern: pattern.into(),
            at: (line, char),
            compiled: Arc::new(OnceLock::new()),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.pattern
    }

    /// The compiled regex (compiled here, on first use, if [`prepare`] did not).
    pub fn regex(&self) -> Result<&Regex, &RegexError> {
        self.compiled
            .get_or_init(|| compile(&self.pattern).map(Arc::new))
            .as_ref()
            .map(|r| &**r)
    }

    /// Whether `text` matches; a pattern that does not compile matches nothing.
    pub fn is_match(&self, text: &str) -> bool {
        self.regex().is_ok_and(|r| r.is_match(text))
    }

    fn is_compiled(&self) -> bool {
        self.compiled.get().is_some()
    }

    /// The error a parser reports for this literal (with its position when known).
    pub fn error_text(&self, error: &RegexError) -> String {
        let shown = shorten(error.shown.as_deref().unwrap_or(&self.pattern));
        match self.at {
            (0, _) => format!("{error}: `{shown}`"),
            // InfluxDB reports a regex's error one character before the literal.
            (line, char) => format!(
                "{error}: `{shown}` at line {line}, char {}",
                char.saturating_sub(1).max(1)
            ),
        }
    }
}

impl Clone for RegexLit {
    fn clone(&self) -> Self {
        RegexLit {
            pattern: self.pattern.clone(),
            at: self.at,
            compiled: self.compiled.clone(),
        }
    }
}

impl PartialEq for RegexLit {
    fn eq(&self, other: &Self) -> bool {
        self.pattern == other.pattern
    }
}

impl std::fmt::Debug for RegexLit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "/{}/", self.pattern)
    }
}

impl std::ops::Deref for RegexLit {
    type Target = str;
    fn deref(&self) -> &str {
        &self.pattern
    }
}

impl From<&str> for RegexLit {
    fn from(s: &str) -> Self {
        RegexLit::new(s)
    }
}

impl From<String> for RegexLit {
    fn from(s: String) -> Self {
        RegexLit::new(s)
    }
}

/// A long pattern shown in an error: its first 64 characters and how long it was.
fn shorten(pattern: &str) -> String {
    match pattern.char_indices().nth(64) {
        None => pattern.to_string(),
        Some((cut, _)) => format!("{}... ({} bytes)", &pattern[..cut], pattern.len()),
    }
}

/// Checks a pattern without building its automaton: length, Go's syntax, classes.
/// Cheap enough for the parser (linear scans and regex-syntax's parse).
pub fn check(pattern: &str) -> Result<(), RegexError> {
    for_rust(pattern).map(|_| ())
}

/// The pattern as the Rust crate must read it to match what Go's regexp matches (see
/// `goregex`), once checked: a fault Go reports is worded as Go words it.
fn for_rust(pattern: &str) -> Result<String, RegexError> {
    if pattern.len() > MAX_REGEX_BYTES {
        return Err(RegexError::new(format!(
            "expression too large: {} bytes, more than {MAX_REGEX_BYTES}",
            pattern.len()
        )));
    }
    let rust = crate::influxql::goregex::translate(pattern).map_err(|e| RegexError {
        reason: e.code.to_string(),
        shown: Some(e.expr),
    })?;
    // What Go accepts and the Rust crate still refuses (nesting past its limit) keeps
    // the crate's reason.
    let ast = regex_syntax::ast::parse::Parser::new()
        .parse(&rust)
        .map_err(|e| RegexError::new(last_line(&e.to_string())))?;
    if count_classes(&ast) > MAX_REGEX_CLASSES {
        return Err(RegexError::new(format!(
            "expression too large: more than {MAX_REGEX_CLASSES} Unicode classes"
        )));
    }
    regex_syntax::hir::translate::Translator::new()
        .translate(&rust, &ast)
        .map_err(|e| RegexError::new(last_line(&e.to_string())))?;
    Ok(rust)
}

/// The reason line of a regex-syntax error (its first lines repeat the pattern).
fn last_line(detail: &str) -> String {
    let last = detail.lines().last().unwrap_or("").trim();
    last.strip_prefix("error: ").unwrap_or(last).to_string()
}

/// Perl and Unicode classes of a pattern, inside brackets too.
fn count_classes(ast: &regex_syntax::ast::Ast) -> usize {
    use regex_syntax::ast::{Ast, ClassSetItem, Visitor};
    struct Count(usize);
    impl Visitor for Count {
        type Output = usize;
        type Err = ();
        fn finish(self) -> Result<usize, ()> {
            Ok(self.0)
        }
        fn visit_pre(&mut self, ast: &Ast) -> Result<(), ()> {
            if matches!(ast, Ast::ClassPerl(_) | Ast::ClassUnicode(_)) {
                self.0 += 1;
            }
            Ok(())
        }
        fn visit_class_set_item_pre(&mut self, item: &ClassSetItem) -> Result<(), ()> {
            if matches!(item, ClassSetItem::Perl(_) | ClassSetItem::Unicode(_)) {
                self.0 += 1;
            }
            Ok(())
        }
    }
    regex_syntax::ast::visit(ast, Count(0)).unwrap_or(usize::MAX)
}

/// Checks and compiles a pattern under the size limits.
pub fn compile(pattern: &str) -> Result<Regex, RegexError> {
    let rust = for_rust(pattern)?;
    regex::RegexBuilder::new(&rust)
        .size_limit(REGEX_PROGRAM_BYTES)
        .build()
        .map_err(|e| match e {
            regex::Error::CompiledTooBig(_) => RegexError::new("expression too large"),
            other => RegexError::new(last_line(&other.to_string())),
        })
}

/// Whether compiling `pattern` on the core is cheap (short, no expanding classes, no
/// counted repetition).
fn is_cheap(pattern: &str) -> bool {
    pattern.len() <= CHEAP_REGEX_BYTES
        && !pattern.contains('{')
        && !pattern.contains("\\p")
        && !pattern.contains("\\P")
}

/// Compiles every literal not compiled yet: cheap ones here, the rest in the core's
/// blocking thread pool (one at a time), so a large pattern never holds the core.
/// Returns the first literal that failed, with its error.
pub async fn prepare<'a>(
    literals: impl IntoIterator<Item = &'a RegexLit>,
) -> Result<(), (RegexLit, RegexError)> {
    for lit in literals {
        if !lit.is_compiled() {
            if is_cheap(&lit.pattern) {
                let _ = lit.regex();
            } else {
                let pattern = lit.pattern.clone();
                let compiled = glommio::executor()
                    .spawn_blocking(move || compile(&pattern).map(Arc::new))
                    .await;
                let _ = lit.compiled.set(compiled);
            }
        }
        if let Err(e) = lit.regex() {
            return Err((lit.clone(), e.clone()));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_are_checked_before_compiling() {
        assert!(check("^(a|b)$").is_ok());
        let long = "a".repeat(MAX_REGEX_BYTES + 1);
        let e = check(&long).unwrap_err().to_string();
        assert!(
            e.starts_with("error parsing regexp: expression too large"),
            "{e}"
        );
        let classes = "\\pL".repeat(MAX_REGEX_CLASSES + 1);
        let e = check(&classes).unwrap_err().to_string();
        assert!(e.contains("Unicode classes"), "{e}");
        let bracketed = "[\\pL\\p{Greek}]".repeat(MAX_REGEX_CLASSES / 2 + 1);
        assert!(check(&bracketed).is_err());
        assert!(check(&"\\pL".repeat(MAX_REGEX_CLASSES)).is_ok());
        // Go's \w is ASCII: as many as fit in the length bound.
        assert!(check(&"\\w".repeat(MAX_REGEX_CLASSES * 4)).is_ok());
        // Go's words where the two engines' errors correspond.
        let e = check("[").unwrap_err().to_string();
        assert_eq!(e, "error parsing regexp: missing closing ]");
        let e = check("\\p{NoSuchClass}").unwrap_err().to_string();
        assert_eq!(e, "error parsing regexp: invalid character class range");
        let e = check("a(?=b)").unwrap_err().to_string();
        assert_eq!(
            e,
            "error parsing regexp: invalid or unsupported Perl syntax"
        );
    }

    #[test]
    fn a_program_too_large_fails_within_the_limit() {
        // Accepted by `check` (few classes), refused by the program size limit.
        let pattern = "(\\pL{30}){33}";
        assert!(check(pattern).is_ok());
        let started = std::time::Instant::now();
        let e = compile(pattern).unwrap_err().to_string();
        assert_eq!(e, "error parsing regexp: expression too large");
        // Not a timing assertion on speed, a guard against unbounded work.
        assert!(started.elapsed() < std::time::Duration::from_secs(30));
    }

    #[test]
    fn a_literal_compiles_once_and_copies_share_it() {
        let lit = RegexLit::at("^cpu[0-9]+$", 1, 20);
        let copy = lit.clone();
        assert!(lit.is_match("cpu12"));
        assert!(copy.is_compiled());
        assert!(!copy.is_match("mem"));
        let bad = RegexLit::at("(", 2, 5);
        let e = bad.regex().unwrap_err().clone();
        // Go's text, one character before the literal as InfluxDB reports it.
        assert_eq!(
            bad.error_text(&e),
            "error parsing regexp: missing closing ): `(` at line 2, char 4"
        );
        let bad = RegexLit::at("x[a", 1, 9);
        let e = bad.regex().unwrap_err().clone();
        assert_eq!(
            bad.error_text(&e),
            "error parsing regexp: missing closing ]: `[a` at line 1, char 8"
        );
        assert!(!bad.is_match("("));
    }

    #[test]
    fn long_patterns_are_shortened_in_errors() {
        let lit = RegexLit::new("x".repeat(100));
        let text = lit.error_text(&RegexError::new("expression too large"));
        assert!(text.ends_with("... (100 bytes)`"), "{text}");
    }

    /// Each pattern's error as Go 1.19's regexp.Compile words it (printed by a Go
    /// program; InfluxDB 1.6.7 is built with it).
    const GO_ERRORS: &[(&str, &str)] = &[
        (
            "(?=a)",
            "error parsing regexp: invalid or unsupported Perl syntax: `(?=`",
        ),
        (
            "(?!a)",
            "error parsing regexp: invalid or unsupported Perl syntax: `(?!`",
        ),
        (
            "(?<=a)b",
            "error parsing regexp: invalid or unsupported Perl syntax: `(?<`",
        ),
        (
            "(?<!a)b",
            "error parsing regexp: invalid or unsupported Perl syntax: `(?<`",
        ),
        (
            "(?P<>a)",
            "error parsing regexp: invalid named capture: `(?P<>`",
        ),
        (
            "(?P<name",
            "error parsing regexp: invalid named capture: `(?P<name`",
        ),
        (
            "(?<n>a)",
            "error parsing regexp: invalid or unsupported Perl syntax: `(?<`",
        ),
        (
            "(?z)",
            "error parsing regexp: invalid or unsupported Perl syntax: `(?z`",
        ),
        (
            "(?i-)a",
            "error parsing regexp: invalid or unsupported Perl syntax: `(?i-)`",
        ),
        (
            "(?--i)a",
            "error parsing regexp: invalid or unsupported Perl syntax: `(?--`",
        ),
        (
            "(?i",
            "error parsing regexp: invalid or unsupported Perl syntax: `(?i`",
        ),
        (
            "(?",
            "error parsing regexp: invalid or unsupported Perl syntax: `(?`",
        ),
        (
            "\\1",
            "error parsing regexp: invalid escape sequence: `\\1`",
        ),
        (
            "a\\8",
            "error parsing regexp: invalid escape sequence: `\\8`",
        ),
        (
            "\\x{zz}",
            "error parsing regexp: invalid escape sequence: `\\x{z`",
        ),
        (
            "\\x{}",
            "error parsing regexp: invalid escape sequence: `\\x{}`",
        ),
        (
            "\\xZ",
            "error parsing regexp: invalid escape sequence: `\\xZ`",
        ),
        (
            "\\p{Foo}",
            "error parsing regexp: invalid character class range: `\\p{Foo}`",
        ),
        (
            "[a-\\d]",
            "error parsing regexp: invalid escape sequence: `\\d`",
        ),
        (
            "[z-a]",
            "error parsing regexp: invalid character class range: `z-a`",
        ),
        (
            "a{1001}",
            "error parsing regexp: invalid repeat count: `{1001}`",
        ),
        (
            "**",
            "error parsing regexp: missing argument to repetition operator: `*`",
        ),
        (
            "a**",
            "error parsing regexp: invalid nested repetition operator: `**`",
        ),
        (
            "a++",
            "error parsing regexp: invalid nested repetition operator: `++`",
        ),
        (
            "\\C",
            "error parsing regexp: invalid escape sequence: `\\C`",
        ),
        (
            "[[:foo:]]",
            "error parsing regexp: invalid character class range: `[:foo:]`",
        ),
        (
            "[[:alpha:]",
            "error parsing regexp: missing closing ]: `[[:alpha:]`",
        ),
        (
            "\\k<n>",
            "error parsing regexp: invalid escape sequence: `\\k`",
        ),
        (
            "(?#comment)",
            "error parsing regexp: invalid or unsupported Perl syntax: `(?#`",
        ),
        (
            "\\G",
            "error parsing regexp: invalid escape sequence: `\\G`",
        ),
        (
            "\\X",
            "error parsing regexp: invalid escape sequence: `\\X`",
        ),
        (
            "\\R",
            "error parsing regexp: invalid escape sequence: `\\R`",
        ),
        (
            "\\h",
            "error parsing regexp: invalid escape sequence: `\\h`",
        ),
        (
            "\\e",
            "error parsing regexp: invalid escape sequence: `\\e`",
        ),
        (
            "\\cA",
            "error parsing regexp: invalid escape sequence: `\\c`",
        ),
        (
            "\\u0041",
            "error parsing regexp: invalid escape sequence: `\\u`",
        ),
        (
            "\\N",
            "error parsing regexp: invalid escape sequence: `\\N`",
        ),
        (
            "\\o{12}",
            "error parsing regexp: invalid escape sequence: `\\o`",
        ),
        (
            "x{2}{3}",
            "error parsing regexp: invalid nested repetition operator: `{2}{3}`",
        ),
        (
            "(?P=n)",
            "error parsing regexp: invalid or unsupported Perl syntax: `(?P`",
        ),
        (
            "(?'n'a)",
            "error parsing regexp: invalid or unsupported Perl syntax: `(?'`",
        ),
        (
            "(?|a)",
            "error parsing regexp: invalid or unsupported Perl syntax: `(?|`",
        ),
        (
            "(?>a)",
            "error parsing regexp: invalid or unsupported Perl syntax: `(?>`",
        ),
        ("(?m:a", "error parsing regexp: missing closing ): `(?m:a`"),
        ("[a", "error parsing regexp: missing closing ]: `[a`"),
        ("a)", "error parsing regexp: unexpected ): `a)`"),
        ("(a", "error parsing regexp: missing closing ): `(a`"),
    ];

    #[test]
    fn errors_are_worded_as_gos() {
        let mut wrong = Vec::new();
        for (pattern, go) in GO_ERRORS {
            let lit = RegexLit::new(*pattern);
            let ours = match check(pattern) {
                Ok(()) => "accepted".to_string(),
                Err(e) => lit.error_text(&e),
            };
            if ours != *go {
                wrong.push(format!("{pattern}\n  go:   {go}\n  ours: {ours}"));
            }
        }
        assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    }
}
