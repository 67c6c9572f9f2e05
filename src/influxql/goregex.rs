//! Go's regexp syntax (`regexp/syntax` as Go 1.19 parses it with Perl flags, which
//! InfluxDB 1.6.7 is built with), checked and rewritten for the Rust regex crate.
//!
//! Both engines take RE2 syntax, but they differ at the edges: Go reads `a{2` and
//! `a{,5}` as literals, supports `\Q...\E`, octal escapes and duplicate group names,
//! and refuses `a**`, `x{2}{3}`, counts over 1000, `(?<name>`, `[[:foo:]]`, `\u0041`
//! and case-insensitive Unicode class names, which the Rust crate reads differently
//! or accepts. So a pattern is first scanned as Go's parser scans it: the first fault
//! Go would report is reported in its words (code and the part of the pattern it
//! shows), and a pattern Go accepts is rewritten into one the Rust crate reads the
//! same way (literal `{` escaped, class members and quoted text spelled as `\x{..}`,
//! group names dropped, octal escapes in hex).

use std::fmt::Write as _;

/// A fault as Go's `regexp/syntax.Error` has it: its code's text and the part of the
/// pattern it shows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GoSyntaxError {
    pub code: &'static str,
    pub expr: String,
}

const INVALID_ESCAPE: &str = "invalid escape sequence";
const INVALID_CHAR_RANGE: &str = "invalid character class range";
const INVALID_NAMED_CAPTURE: &str = "invalid named capture";
const INVALID_PERL_OP: &str = "invalid or unsupported Perl syntax";
const INVALID_REPEAT_OP: &str = "invalid nested repetition operator";
const INVALID_REPEAT_SIZE: &str = "invalid repeat count";
const MISSING_BRACKET: &str = "missing closing ]";
const MISSING_PAREN: &str = "missing closing )";
const MISSING_REPEAT_ARGUMENT: &str = "missing argument to repetition operator";
const TRAILING_BACKSLASH: &str = "trailing backslash at end of expression";
const UNEXPECTED_PAREN: &str = "unexpected )";

/// Go 1.19's Unicode category and script names (`unicode.Categories`, `Scripts`),
/// which `\p{..}` accepts exactly as spelled, and `Any`.
const UNICODE_NAMES: &[&str] = &[
    "Adlam",
    "Ahom",
    "Anatolian_Hieroglyphs",
    "Any",
    "Arabic",
    "Armenian",
    "Avestan",
    "Balinese",
    "Bamum",
    "Bassa_Vah",
    "Batak",
    "Bengali",
    "Bhaiksuki",
    "Bopomofo",
    "Brahmi",
    "Braille",
    "Buginese",
    "Buhid",
    "C",
    "Canadian_Aboriginal",
    "Carian",
    "Caucasian_Albanian",
    "Cc",
    "Cf",
    "Chakma",
    "Cham",
    "Cherokee",
    "Chorasmian",
    "Co",
    "Common",
    "Coptic",
    "Cs",
    "Cuneiform",
    "Cypriot",
    "Cyrillic",
    "Deseret",
    "Devanagari",
    "Dives_Akuru",
    "Dogra",
    "Duployan",
    "Egyptian_Hieroglyphs",
    "Elbasan",
    "Elymaic",
    "Ethiopic",
    "Georgian",
    "Glagolitic",
    "Gothic",
    "Grantha",
    "Greek",
    "Gujarati",
    "Gunjala_Gondi",
    "Gurmukhi",
    "Han",
    "Hangul",
    "Hanifi_Rohingya",
    "Hanunoo",
    "Hatran",
    "Hebrew",
    "Hiragana",
    "Imperial_Aramaic",
    "Inherited",
    "Inscriptional_Pahlavi",
    "Inscriptional_Parthian",
    "Javanese",
    "Kaithi",
    "Kannada",
    "Katakana",
    "Kayah_Li",
    "Kharoshthi",
    "Khitan_Small_Script",
    "Khmer",
    "Khojki",
    "Khudawadi",
    "L",
    "Lao",
    "Latin",
    "Lepcha",
    "Limbu",
    "Linear_A",
    "Linear_B",
    "Lisu",
    "Ll",
    "Lm",
    "Lo",
    "Lt",
    "Lu",
    "Lycian",
    "Lydian",
    "M",
    "Mahajani",
    "Makasar",
    "Malayalam",
    "Mandaic",
    "Manichaean",
    "Marchen",
    "Masaram_Gondi",
    "Mc",
    "Me",
    "Medefaidrin",
    "Meetei_Mayek",
    "Mende_Kikakui",
    "Meroitic_Cursive",
    "Meroitic_Hieroglyphs",
    "Miao",
    "Mn",
    "Modi",
    "Mongolian",
    "Mro",
    "Multani",
    "Myanmar",
    "N",
    "Nabataean",
    "Nandinagari",
    "Nd",
    "New_Tai_Lue",
    "Newa",
    "Nko",
    "Nl",
    "No",
    "Nushu",
    "Nyiakeng_Puachue_Hmong",
    "Ogham",
    "Ol_Chiki",
    "Old_Hungarian",
    "Old_Italic",
    "Old_North_Arabian",
    "Old_Permic",
    "Old_Persian",
    "Old_Sogdian",
    "Old_South_Arabian",
    "Old_Turkic",
    "Oriya",
    "Osage",
    "Osmanya",
    "P",
    "Pahawh_Hmong",
    "Palmyrene",
    "Pau_Cin_Hau",
    "Pc",
    "Pd",
    "Pe",
    "Pf",
    "Phags_Pa",
    "Phoenician",
    "Pi",
    "Po",
    "Ps",
    "Psalter_Pahlavi",
    "Rejang",
    "Runic",
    "S",
    "Samaritan",
    "Saurashtra",
    "Sc",
    "Sharada",
    "Shavian",
    "Siddham",
    "SignWriting",
    "Sinhala",
    "Sk",
    "Sm",
    "So",
    "Sogdian",
    "Sora_Sompeng",
    "Soyombo",
    "Sundanese",
    "Syloti_Nagri",
    "Syriac",
    "Tagalog",
    "Tagbanwa",
    "Tai_Le",
    "Tai_Tham",
    "Tai_Viet",
    "Takri",
    "Tamil",
    "Tangut",
    "Telugu",
    "Thaana",
    "Thai",
    "Tibetan",
    "Tifinagh",
    "Tirhuta",
    "Ugaritic",
    "Vai",
    "Wancho",
    "Warang_Citi",
    "Yezidi",
    "Yi",
    "Z",
    "Zanabazar_Square",
    "Zl",
    "Zp",
    "Zs",
];

/// POSIX classes inside brackets (`[[:alpha:]]`), each also negated (`[:^alpha:]`).
const POSIX_NAMES: &[&str] = &[
    "alnum", "alpha", "ascii", "blank", "cntrl", "digit", "graph", "lower", "print", "punct",
    "space", "upper", "word", "xdigit",
];

/// The largest count Go accepts in `{n,m}`, and in a product of nested counts.
const MAX_REPEAT: u64 = 1000;

/// Checks `pattern` as Go parses it; on success, the same pattern for the Rust crate.
pub fn translate(pattern: &str) -> Result<String, GoSyntaxError> {
    Scanner {
        whole: pattern,
        out: String::with_capacity(pattern.len() + 8),
        frames: vec![Frame::default()],
        last_item: None,
        flags_at: None,
    }
    .run()
}

fn err(code: &'static str, expr: &str) -> GoSyntaxError {
    GoSyntaxError {
        code,
        expr: expr.to_string(),
    }
}

/// One open group: the largest nested-count product inside it (Go's `repeatIsValid`
/// bound) and the last item that a repetition would apply to.
#[derive(Default)]
struct Frame {
    need: u64,
    /// The need of the last item, `None` when there is none (group start, after `|`).
    last: Option<u64>,
    /// Where the group's `(` was written in the output.
    start: usize,
}

struct Scanner<'a> {
    whole: &'a str,
    out: String,
    frames: Vec<Frame>,
    /// Where the last item a repetition would apply to was written.
    last_item: Option<usize>,
    /// Where flag groups written since that item begin: Go lets `a(?i)*` repeat the
    /// `a`, which the Rust crate must read as `(?:a)*(?i)`.
    flags_at: Option<usize>,
}

impl<'a> Scanner<'a> {
    fn frame(&mut self) -> &mut Frame {
        self.frames.last_mut().expect("the outermost frame stays")
    }

    /// Nothing before this point can be repeated (a group or alternative starts).
    fn forget_item(&mut self) {
        self.last_item = None;
        self.flags_at = None;
    }

    fn atom(&mut self, need: u64) {
        let f = self.frame();
        f.last = Some(need);
        f.need = f.need.max(need);
    }

    fn run(mut self) -> Result<String, GoSyntaxError> {
        let mut t: &'a str = self.whole;
        // The text from the last repetition operator on, while the item before is one.
        let mut last_repeat: &'a str = "";
        while let Some(c) = t.chars().next() {
            let mut repeat: &'a str = "";
            let item_start = self.out.len();
            // What this step wrote: an item, a flag group, or neither.
            let mut item = true;
            match c {
                '(' if t.as_bytes().get(1) == Some(&b'?') => {
                    let depth = self.frames.len();
                    t = self.perl_flags(t, item_start)?;
                    item = false;
                    if self.frames.len() == depth {
                        // Flags alone: the item before stays the one to repeat.
                        self.flags_at.get_or_insert(item_start);
                    } else {
                        self.forget_item();
                    }
                }
                '(' => {
                    self.frames.push(Frame {
                        start: item_start,
                        ..Frame::default()
                    });
                    self.out.push('(');
                    t = &t[1..];
                    item = false;
                    self.forget_item();
                }
                '|' => {
                    self.frame().last = None;
                    self.out.push('|');
                    t = &t[1..];
                    item = false;
                    self.forget_item();
                }
                ')' => {
                    if self.frames.len() < 2 {
                        return Err(err(UNEXPECTED_PAREN, self.whole));
                    }
                    let frame = self.frames.pop().expect("checked");
                    self.atom(frame.need);
                    self.out.push(')');
                    t = &t[1..];
                    item = false;
                    self.last_item = Some(frame.start);
                    self.flags_at = None;
                }
                '^' | '$' | '.' => {
                    self.atom(0);
                    self.out.push(c);
                    t = &t[1..];
                }
                '[' => t = self.class(t)?,
                '*' | '+' | '?' => {
                    let before = t;
                    t = self.repeat(before, &t[1..], None, last_repeat)?;
                    repeat = before;
                    item = false;
                }
                '{' => match parse_repeat(t) {
                    None => {
                        // Not a count: a literal brace.
                        self.atom(0);
                        self.out.push_str("\\{");
                        t = &t[1..];
                    }
                    Some((min, max, after)) => {
                        let before = t;
                        let shown = &before[..before.len() - after.len()];
                        if min < 0
                            || min > MAX_REPEAT as i64
                            || max > MAX_REPEAT as i64
                            || (max >= 0 && min > max)
                        {
                            return Err(err(INVALID_REPEAT_SIZE, shown));
                        }
                        t = self.repeat(before, after, Some((min, max)), last_repeat)?;
                        repeat = before;
                        item = false;
                    }
                },
                '\\' => t = self.escape_item(t)?,
                _ => {
                    self.atom(0);
                    push_hex(&mut self.out, c);
                    t = &t[c.len_utf8()..];
                }
            }
            if item && self.out.len() > item_start {
                self.last_item = Some(item_start);
                self.flags_at = None;
            }
            last_repeat = repeat;
        }
        if self.frames.len() != 1 {
            return Err(err(MISSING_PAREN, self.whole));
        }
        Ok(self.out)
    }

    /// A repetition operator at `before` (`*`, `+`, `?` or a count, ending where
    /// `after` starts); returns the rest after an optional `?`.
    fn repeat(
        &mut self,
        before: &'a str,
        mut after: &'a str,
        count: Option<(i64, i64)>,
        last_repeat: &'a str,
    ) -> Result<&'a str, GoSyntaxError> {
        if after.starts_with('?') {
            after = &after[1..];
        }
        let shown = &before[..before.len() - after.len()];
        if !last_repeat.is_empty() {
            return Err(err(
                INVALID_REPEAT_OP,
                &last_repeat[..last_repeat.len() - after.len()],
            ));
        }
        let Some(sub) = self.frame().last else {
            return Err(err(MISSING_REPEAT_ARGUMENT, shown));
        };
        let mut need = sub;
        if let Some((min, max)) = count {
            // Go's repeatIsValid: nested counts multiply, at most 1000 copies.
            let m = if max < 0 { min } else { max } as u64;
            if m > 0 {
                need = m.saturating_mul(sub.max(1));
            } else {
                need = 0;
            }
            if (min >= 2 || max >= 2) && need > MAX_REPEAT {
                return Err(err(INVALID_REPEAT_SIZE, shown));
            }
        }
        let f = self.frame();
        f.last = Some(need);
        f.need = f.need.max(need);
        match (self.last_item, self.flags_at.take()) {
            (Some(at), Some(flags)) if at < flags => {
                // `a(?i)*`: the repetition applies to `a`; the flags follow it.
                let flag_text = self.out.split_off(flags);
                let item_text = self.out.split_off(at);
                self.out.push_str("(?:");
                self.out.push_str(&item_text);
                self.out.push(')');
                self.out.push_str(shown);
                self.out.push_str(&flag_text);
            }
            _ => self.out.push_str(shown),
        }
        Ok(after)
    }

    /// `(?flags)`, `(?flags:`, `(?P<name>`.
    fn perl_flags(&mut self, s: &'a str, start: usize) -> Result<&'a str, GoSyntaxError> {
        let b = s.as_bytes();
        if s.len() > 4 && b[2] == b'P' && b[3] == b'<' {
            let Some(end) = s.find('>') else {
                return Err(err(INVALID_NAMED_CAPTURE, s));
            };
            let name = &s[4..end];
            if name.is_empty() || !name.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'_') {
                return Err(err(INVALID_NAMED_CAPTURE, &s[..=end]));
            }
            // Names change nothing in what matches (and Go allows duplicates).
            self.frames.push(Frame {
                start,
                ..Frame::default()
            });
            self.out.push('(');
            return Ok(&s[end + 1..]);
        }
        let mut t = &s[2..];
        let mut negated = false;
        let mut saw_flag = false;
        while let Some(c) = t.chars().next() {
            t = &t[c.len_utf8()..];
            match c {
                'i' | 'm' | 's' | 'U' => saw_flag = true,
                '-' if !negated => {
                    negated = true;
                    saw_flag = false;
                }
                ':' | ')' => {
                    if negated && !saw_flag {
                        break;
                    }
                    let text = &s[..s.len() - t.len()];
                    // `(?)` sets no flag (the Rust crate refuses it written so).
                    if text != "(?)" {
                        self.out.push_str(text);
                    }
                    if c == ':' {
                        self.frames.push(Frame {
                            start,
                            ..Frame::default()
                        });
                    }
                    return Ok(t);
                }
                _ => break,
            }
        }
        Err(err(INVALID_PERL_OP, &s[..s.len() - t.len()]))
    }

    /// A backslash outside brackets.
    fn escape_item(&mut self, t: &'a str) -> Result<&'a str, GoSyntaxError> {
        match t.as_bytes().get(1) {
            Some(b'A' | b'z') => {
                self.atom(0);
                self.out.push_str(&t[..2]);
                return Ok(&t[2..]);
            }
            // Go's word boundaries are ASCII's.
            Some(b'b' | b'B') => {
                self.atom(0);
                self.out.push_str("(?-u:");
                self.out.push_str(&t[..2]);
                self.out.push(')');
                return Ok(&t[2..]);
            }
            Some(b'C') => return Err(err(INVALID_ESCAPE, &t[..2])),
            Some(b'Q') => {
                let (lit, rest) = t[2..].split_once("\\E").unwrap_or((&t[2..], ""));
                for c in lit.chars() {
                    self.atom(0);
                    push_hex(&mut self.out, c);
                }
                return Ok(rest);
            }
            _ => {}
        }
        if let Some((text, rest)) = unicode_class(t)? {
            self.atom(0);
            self.out.push_str(&text);
            return Ok(rest);
        }
        if let Some((text, rest)) = perl_class(t) {
            self.atom(0);
            self.out.push_str(text);
            return Ok(rest);
        }
        let (c, rest) = parse_escape(t)?;
        self.atom(0);
        push_hex(&mut self.out, c);
        Ok(rest)
    }

    /// A bracketed class from its `[`.
    fn class(&mut self, s: &'a str) -> Result<&'a str, GoSyntaxError> {
        let mut t = &s[1..];
        self.out.push('[');
        if t.starts_with('^') {
            t = &t[1..];
            self.out.push('^');
        }
        let mut first = true;
        while first || !t.starts_with(']') {
            first = false;
            // POSIX [:alpha:].
            if t.len() > 2 && t.starts_with("[:") {
                if let Some(i) = t[2..].find(":]") {
                    let name = &t[..i + 4];
                    let inner = &name[2..name.len() - 2];
                    if !POSIX_NAMES.contains(&inner.strip_prefix('^').unwrap_or(inner)) {
                        return Err(err(INVALID_CHAR_RANGE, name));
                    }
                    self.out.push_str(name);
                    t = &t[name.len()..];
                    continue;
                }
            }
            if let Some((text, rest)) = unicode_class(t)? {
                self.out.push_str(&text);
                t = rest;
                continue;
            }
            if let Some((text, rest)) = perl_class(t) {
                self.out.push_str(text);
                t = rest;
                continue;
            }
            let range_start = t;
            let (lo, rest) = class_char(t, s)?;
            t = rest;
            let mut hi = lo;
            if t.len() >= 2 && t.starts_with('-') && !t[1..].starts_with(']') {
                let (h, rest) = class_char(&t[1..], s)?;
                t = rest;
                hi = h;
                if hi < lo {
                    return Err(err(
                        INVALID_CHAR_RANGE,
                        &range_start[..range_start.len() - t.len()],
                    ));
                }
            }
            push_hex(&mut self.out, lo);
            if hi != lo {
                self.out.push('-');
                push_hex(&mut self.out, hi);
            }
        }
        self.out.push(']');
        self.atom(0);
        Ok(&t[1..])
    }
}

/// One character of a class, escaped or not; the end of the pattern is a missing `]`
/// (Go shows the class from its `[`).
fn class_char<'a>(t: &'a str, whole_class: &'a str) -> Result<(char, &'a str), GoSyntaxError> {
    match t.chars().next() {
        None => Err(err(MISSING_BRACKET, whole_class)),
        Some('\\') => parse_escape(t),
        Some(c) => Ok((c, &t[c.len_utf8()..])),
    }
}

/// `\d \D \s \S \w \W`: ASCII in Go (Unicode in the Rust crate by default), as
/// bracketed classes (a class may hold one, as a nested class).
fn perl_class(t: &str) -> Option<(&'static str, &str)> {
    let b = t.as_bytes();
    if b.len() < 2 || b[0] != b'\\' {
        return None;
    }
    let class = match b[1] {
        b'd' => "[0-9]",
        b'D' => "[^0-9]",
        b's' => "[\\t\\n\\x0C\\r ]",
        b'S' => "[^\\t\\n\\x0C\\r ]",
        b'w' => "[0-9A-Za-z_]",
        b'W' => "[^0-9A-Za-z_]",
        _ => return None,
    };
    Some((class, &t[2..]))
}

/// `\pN`, `\p{Name}`, `\P{^Name}`: Go's names only, exactly as spelled.
fn unicode_class(s: &str) -> Result<Option<(String, &str)>, GoSyntaxError> {
    let b = s.as_bytes();
    if b.len() < 2 || b[0] != b'\\' || (b[1] != b'p' && b[1] != b'P') {
        return Ok(None);
    }
    let mut negated = b[1] == b'P';
    let t = &s[2..];
    let Some(c) = t.chars().next() else {
        // `\p` at the end: an empty name.
        return Err(err(INVALID_CHAR_RANGE, s));
    };
    let (seq, mut name, rest) = if c != '{' {
        let end = 2 + c.len_utf8();
        (&s[..end], &s[2..end], &s[end..])
    } else {
        let Some(end) = s.find('}') else {
            return Err(err(INVALID_CHAR_RANGE, s));
        };
        (&s[..=end], &s[3..end], &s[end + 1..])
    };
    if let Some(n) = name.strip_prefix('^') {
        negated = !negated;
        name = n;
    }
    if !UNICODE_NAMES.contains(&name) {
        return Err(err(INVALID_CHAR_RANGE, seq));
    }
    let text = if name == "Any" {
        if negated {
            "[^\\x{0}-\\x{10FFFF}]"
        } else {
            "[\\x{0}-\\x{10FFFF}]"
        }
        .to_string()
    } else {
        format!("\\{}{{{name}}}", if negated { 'P' } else { 'p' })
    };
    Ok(Some((text, rest)))
}

/// Go's parseEscape: a single escaped character (octal, hex, C escapes, escaped
/// punctuation).
fn parse_escape(s: &str) -> Result<(char, &str), GoSyntaxError> {
    let mut t = &s[1..];
    let Some(c) = t.chars().next() else {
        return Err(err(TRAILING_BACKSLASH, ""));
    };
    t = &t[c.len_utf8()..];
    let invalid = |t: &str| err(INVALID_ESCAPE, &s[..s.len() - t.len()]);
    let octal = |t: &str| {
        t.as_bytes()
            .first()
            .is_some_and(|b| (b'0'..=b'7').contains(b))
    };
    match c {
        '1'..='7' if !octal(t) => Err(invalid(t)),
        '0'..='7' => {
            let mut r = c as u32 - '0' as u32;
            for _ in 1..3 {
                if !octal(t) {
                    break;
                }
                r = r * 8 + (t.as_bytes()[0] - b'0') as u32;
                t = &t[1..];
            }
            Ok((char::from_u32(r).expect("at most 0o777"), t))
        }
        'x' => {
            let Some(c) = t.chars().next() else {
                return Err(invalid(t));
            };
            t = &t[c.len_utf8()..];
            if c == '{' {
                let mut r: u32 = 0;
                let mut digits = 0;
                loop {
                    let Some(c) = t.chars().next() else {
                        return Err(invalid(t));
                    };
                    t = &t[c.len_utf8()..];
                    if c == '}' {
                        break;
                    }
                    let Some(v) = c.to_digit(16) else {
                        return Err(invalid(t));
                    };
                    r = r * 16 + v;
                    if r > 0x10FFFF {
                        return Err(invalid(t));
                    }
                    digits += 1;
                }
                return match (digits, char::from_u32(r)) {
                    (1.., Some(ch)) => Ok((ch, t)),
                    _ => Err(invalid(t)),
                };
            }
            let x = c.to_digit(16);
            let d = t.chars().next();
            if let Some(d) = d {
                t = &t[d.len_utf8()..];
            }
            match (x, d.and_then(|d| d.to_digit(16))) {
                (Some(x), Some(y)) => Ok((char::from_u32(x * 16 + y).expect("a byte"), t)),
                _ => Err(invalid(t)),
            }
        }
        'a' => Ok(('\x07', t)),
        'f' => Ok(('\x0c', t)),
        'n' => Ok(('\n', t)),
        'r' => Ok(('\r', t)),
        't' => Ok(('\t', t)),
        'v' => Ok(('\x0b', t)),
        c if c.is_ascii() && !c.is_ascii_alphanumeric() => Ok((c, t)),
        _ => Err(invalid(t)),
    }
}

/// A character spelled so that no engine reads it as syntax.
fn push_hex(out: &mut String, c: char) {
    if c.is_alphanumeric() || c == '_' || c == ' ' {
        out.push(c);
    } else {
        let _ = write!(out, "\\x{{{:X}}}", c as u32);
    }
}

/// Go's parseRepeat: `{n}`, `{n,}`, `{n,m}` (min, max or -1, rest); `None` when it
/// is not one (the brace is then a literal). A number past 1e8 is -1.
fn parse_repeat(s: &str) -> Option<(i64, i64, &str)> {
    let s = s.strip_prefix('{')?;
    let (min, s) = parse_int(s)?;
    let (max, s) = match s.strip_prefix(',') {
        None => (min, s),
        Some(rest) if rest.starts_with('}') => (-1, rest),
        Some(rest) => {
            let (max, rest) = parse_int(rest)?;
            return rest
                .strip_prefix('}')
                .map(|r| if max < 0 { (-1, max, r) } else { (min, max, r) });
        }
    };
    let rest = s.strip_prefix('}')?;
    Some((min, max, rest))
}

fn parse_int(s: &str) -> Option<(i64, &str)> {
    let b = s.as_bytes();
    if b.first().is_none_or(|c| !c.is_ascii_digit()) {
        return None;
    }
    // No leading zeros.
    if b.len() >= 2 && b[0] == b'0' && b[1].is_ascii_digit() {
        return None;
    }
    let n = b.iter().take_while(|c| c.is_ascii_digit()).count();
    let mut v: i64 = 0;
    for &d in &b[..n] {
        if v >= 100_000_000 {
            v = -1;
            break;
        }
        v = v * 10 + (d - b'0') as i64;
    }
    Some((v, &s[n..]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Any text: an answer, never a panic; what is accepted compiles.
        #[test]
        fn never_panics(s in "[a-z(){}\\[\\]\\\\|*+?^$.:P<>0-9,\\-=!#QEx]{0,24}") {
            if let Ok(rust) = translate(&s) {
                prop_assert!(regex::Regex::new(&rust).is_ok(), "{s:?} -> {rust:?}");
            }
        }
    }

    #[test]
    fn what_go_reads_as_literals_stays_literal() {
        let re = regex::Regex::new(&translate("a{2").unwrap()).unwrap();
        assert!(re.is_match("xa{2"));
        let re = regex::Regex::new(&translate("a{,5}").unwrap()).unwrap();
        assert!(re.is_match("a{,5}"));
        let re = regex::Regex::new(&translate("\\Q.*+\\Ez").unwrap()).unwrap();
        assert!(re.is_match(".*+z") && !re.is_match("abz"));
        let re = regex::Regex::new(&translate("[a&&b]").unwrap()).unwrap();
        assert!(re.is_match("&"));
        let re = regex::Regex::new(&translate("\\101\\x{42}(?P<n>c)(?P<n>d)").unwrap()).unwrap();
        assert!(re.is_match("ABcd"));
    }

    /// Patterns Go 1.19 accepts, a text, and whether Go's regexp matches it (printed by
    /// a Go program): the rewritten pattern must match the same.
    const GO_MATCHES: &[(&str, &str, bool)] = &[
        ("a{2", "xa{2", true),
        ("a{2", "aa", false),
        ("a{,5}", "a{,5}", true),
        ("a{,5}", "aaaaa", false),
        ("\\Q.*+\\Ez", ".*+z", true),
        ("\\Q.*+\\Ez", "abz", false),
        ("\\Qa.b", "xa.b", true),
        ("[a&&b]", "&", true),
        ("[a&&b]", "c", false),
        ("\\101\\x{42}", "AB", true),
        ("\\0", "x", false),
        ("(?P<n>c)(?P<n>d)", "cd", true),
        ("(?P<1a>x)", "x", true),
        ("\\pZZ", " Z", true),
        ("[[:^alpha:]]", "1", true),
        ("[[:^alpha:]]", "a", false),
        ("[^\\n]", "a", true),
        ("(?i)ABC", "abc", true),
        ("(?U)a+", "aaa", true),
        ("(?)a", "a", true),
        ("\\z", "", true),
        ("a$", "a\\n", false),
        ("(?m)a$", "a", true),
        ("[]a]", "]", true),
        ("[^]a]", "b", true),
        ("[a-]", "-", true),
        ("[\\d-z]", "-", true),
        ("[\\[]", "[", true),
        ("^*a", "a", true),
        ("(?s).", "x", true),
        ("\\!\\#\\%", "!#%", true),
        ("[\\p{Greek}]", "α", true),
        ("\\p{^Greek}", "a", true),
        ("\\PL", "1", true),
        ("[~-~]", "~", true),
        ("a{0}b", "b", true),
        ("(a|)+", "aa", true),
        ("x*?y", "xy", true),
        ("\\v", "x", false),
        ("\\a", "x", false),
        ("[\\x{41}-\\x{43}]", "B", true),
        (".", "\\n", true),
    ];

    #[test]
    fn matches_as_gos() {
        let mut wrong = Vec::new();
        for (pattern, text, go) in GO_MATCHES {
            match translate(pattern).map(|r| regex::Regex::new(&r)) {
                Ok(Ok(re)) if re.is_match(text) == *go => {}
                other => wrong.push(format!("{pattern:?} on {text:?}: go {go}, ours {other:?}")),
            }
        }
        assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    }
}
