//! The layer check (DESIGN section 11): every import in `src/` (a `use` of a `crate::`,
//! `super::` or `self::` path, or an inline `crate::` path) goes to the importing
//! module's own layer or a layer above it, and no two modules import each other, directly
//! or round a longer loop. The layer table is the one in `src/lib.rs` (its `# Layout`
//! section); a module it does not place fails the check too.
//!
//! Test code (`#[cfg(test)]` items and the files they declare) is left out: tests may
//! reach anything. A failure prints each offending import with its file and line.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// One row of the layer table: a module path prefix and its layer.
#[derive(Debug, Clone)]
struct Row {
    prefix: String,
    layer: usize,
    name: String,
}

/// Reads the table from lib.rs's `# Layout` section: rows like
/// `//! | 2 storage | `tsdb` |` (layer number, layer name, the modules in backticks).
fn layer_table(lib_rs: &str) -> Result<Vec<Row>, String> {
    let mut rows = Vec::new();
    let mut in_layout = false;
    for line in lib_rs.lines() {
        let Some(doc) = line.strip_prefix("//!") else {
            continue;
        };
        let doc = doc.trim();
        if let Some(title) = doc.strip_prefix("# ") {
            in_layout = title.trim() == "Layout";
            continue;
        }
        if !in_layout || !doc.starts_with('|') {
            continue;
        }
        let cells: Vec<&str> = doc.trim_matches('|').split('|').map(str::trim).collect();
        if cells.len() < 2 {
            continue;
        }
        let mut head = cells[0].splitn(2, ' ');
        let Ok(layer) = head.next().unwrap_or("").parse::<usize>() else {
            continue; // the header row, or the separator
        };
        let name = head.next().unwrap_or("").trim().to_string();
        for module in cells[1].split('`').skip(1).step_by(2) {
            rows.push(Row {
                prefix: module.trim().to_string(),
                layer,
                name: name.clone(),
            });
        }
    }
    if rows.is_empty() {
        return Err("src/lib.rs has no layer table under `# Layout`".into());
    }
    Ok(rows)
}

/// The row of the longest prefix that names `module` or one of its ancestors.
fn row_of<'a>(rows: &'a [Row], module: &str) -> Option<&'a Row> {
    rows.iter()
        .filter(|r| module == r.prefix || module.starts_with(&format!("{}::", r.prefix)))
        .max_by_key(|r| r.prefix.len())
}

/// A source file as a module: its path in the crate and its text.
struct Source {
    module: String,
    file: String,
    text: String,
}

/// An import of one module by another.
#[derive(Debug, Clone)]
struct Import {
    from: String,
    to: String,
    file: String,
    line: usize,
    text: String,
}

/// Blanks comments, string and char literals (keeping newlines and lengths), so braces,
/// `use` and `crate::` inside them are not read as code.
fn blank_non_code(text: &str) -> String {
    let b = text.as_bytes();
    let mut out = b.to_vec();
    let blank = |out: &mut Vec<u8>, from: usize, to: usize| {
        for c in &mut out[from..to] {
            if *c != b'\n' {
                *c = b' ';
            }
        }
    };
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'/' if b.get(i + 1) == Some(&b'/') => {
                let end = b[i..]
                    .iter()
                    .position(|&c| c == b'\n')
                    .map_or(b.len(), |p| i + p);
                blank(&mut out, i, end);
                i = end;
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                let (mut depth, mut j) = (1, i + 2);
                while j < b.len() && depth > 0 {
                    if b[j] == b'/' && b.get(j + 1) == Some(&b'*') {
                        depth += 1;
                        j += 2;
                    } else if b[j] == b'*' && b.get(j + 1) == Some(&b'/') {
                        depth -= 1;
                        j += 2;
                    } else {
                        j += 1;
                    }
                }
                blank(&mut out, i, j);
                i = j;
            }
            b'r' if (b.get(i + 1) == Some(&b'"') || b.get(i + 1) == Some(&b'#'))
                && (i == 0 || !(b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_')) =>
            {
                let hashes = b[i + 1..].iter().take_while(|&&c| c == b'#').count();
                if b.get(i + 1 + hashes) != Some(&b'"') {
                    i += 1;
                    continue;
                }
                let close: Vec<u8> = std::iter::once(b'"')
                    .chain(std::iter::repeat_n(b'#', hashes))
                    .collect();
                let body = i + 2 + hashes;
                let end = b[body..]
                    .windows(close.len())
                    .position(|w| w == close.as_slice())
                    .map_or(b.len(), |p| body + p + close.len());
                blank(&mut out, i + 1, end);
                i = end;
            }
            b'"' => {
                let mut j = i + 1;
                while j < b.len() && b[j] != b'"' {
                    j += if b[j] == b'\\' { 2 } else { 1 };
                }
                let end = (j + 1).min(b.len());
                blank(&mut out, i + 1, end.saturating_sub(1).max(i + 1));
                i = end;
            }
            b'\'' => {
                // A char literal ('x', '\n', '\u{..}'); a lifetime has no closing quote.
                let rest = &b[i + 1..];
                let len = if rest.first() == Some(&b'\\') {
                    rest.iter().skip(1).position(|&c| c == b'\'').map(|p| p + 2)
                } else {
                    let ch = std::str::from_utf8(&rest[..rest.len().min(4)])
                        .ok()
                        .or_else(|| std::str::from_utf8(&rest[..rest.len().min(1)]).ok())
                        .and_then(|s| s.chars().next())
                        .map_or(1, char::len_utf8);
                    (rest.get(ch) == Some(&b'\'')).then_some(ch + 1)
                };
                match len {
                    Some(n) if n <= 12 => {
                        blank(&mut out, i + 1, i + n);
                        i += n + 1;
                    }
                    _ => i += 1,
                }
            }
            _ => i += 1,
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Blanks the `#[cfg(test)]` items of `code` (already free of comments and strings);
/// returns it and the modules those items declare as files (`mod tests;`).
fn blank_test_items(code: &str) -> (String, Vec<String>) {
    let mut out = code.as_bytes().to_vec();
    let b = code.as_bytes();
    let mut test_files = Vec::new();
    let mut from = 0;
    while let Some(p) = code[from..].find("#[cfg(test)]") {
        let start = from + p;
        let mut j = start + "#[cfg(test)]".len();
        // The item's end: its first `;` before any `{`, or the `}` that closes its body.
        let mut depth = 0usize;
        let mut end = b.len();
        while j < b.len() {
            match b[j] {
                b'{' => depth += 1,
                b'}' => {
                    depth = depth.saturating_sub(1);
                    if depth == 0 {
                        end = j + 1;
                        break;
                    }
                }
                b';' if depth == 0 => {
                    end = j + 1;
                    break;
                }
                _ => {}
            }
            j += 1;
        }
        let item = &code[start..end];
        if !item.contains('{') {
            if let Some(name) = item.split_whitespace().skip_while(|w| *w != "mod").nth(1) {
                test_files.push(name.trim_end_matches(';').to_string());
            }
        }
        for c in &mut out[start..end] {
            if *c != b'\n' {
                *c = b' ';
            }
        }
        from = end;
    }
    (String::from_utf8_lossy(&out).into_owned(), test_files)
}

/// Every module of the crate under `src`, test-only ones left out.
fn sources(files: &BTreeMap<String, String>) -> Vec<Source> {
    let mut out = Vec::new();
    let mut test_only: BTreeSet<String> = BTreeSet::new();
    let mut all = Vec::new();
    for (file, text) in files {
        let rel = file.trim_end_matches(".rs");
        let mut parts: Vec<&str> = rel.split('/').collect();
        let last = *parts.last().unwrap_or(&"");
        if file == "main.rs" || file.starts_with("bin/") {
            continue; // binaries are not modules of the library
        }
        if matches!(last, "mod" | "lib") {
            parts.pop();
        }
        let module = parts.join("::");
        let (code, tests) = blank_test_items(&blank_non_code(text));
        for t in tests {
            test_only.insert(if module.is_empty() {
                t
            } else {
                format!("{module}::{t}")
            });
        }
        all.push(Source {
            module,
            file: format!("src/{file}"),
            text: code,
        });
    }
    for s in all {
        let excluded = test_only
            .iter()
            .any(|t| s.module == *t || s.module.starts_with(&format!("{t}::")));
        if !excluded {
            out.push(s);
        }
    }
    out
}

/// The paths a `use` tree names (`a::{b, c::{d, e}}` -> a::b, a::c::d, a::c::e).
fn expand_use(tree: &str) -> Vec<String> {
    fn go(prefix: &str, tree: &str, out: &mut Vec<String>) {
        let tree = tree.trim();
        let Some(open) = tree.find('{') else {
            let path = tree.split(" as ").next().unwrap_or(tree).trim();
            let path = path.strip_suffix("::*").unwrap_or(path);
            let joined = match (prefix.is_empty(), path) {
                (_, "self") => prefix.to_string(),
                (true, _) => path.to_string(),
                (false, _) => format!("{prefix}::{path}"),
            };
            out.push(joined.trim_end_matches("::").to_string());
            return;
        };
        let head = tree[..open].trim().trim_end_matches("::");
        let prefix = match (prefix.is_empty(), head.is_empty()) {
            (true, _) => head.to_string(),
            (false, true) => prefix.to_string(),
            (false, false) => format!("{prefix}::{head}"),
        };
        let inner = &tree[open + 1..tree.rfind('}').unwrap_or(tree.len())];
        let (mut depth, mut start) = (0, 0);
        for (i, c) in inner.char_indices() {
            match c {
                '{' => depth += 1,
                '}' => depth -= 1,
                ',' if depth == 0 => {
                    if !inner[start..i].trim().is_empty() {
                        go(&prefix, &inner[start..i], out);
                    }
                    start = i + 1;
                }
                _ => {}
            }
        }
        if !inner[start..].trim().is_empty() {
            go(&prefix, &inner[start..], out);
        }
    }
    let mut out = Vec::new();
    go("", tree, &mut out);
    out
}

/// The module a path names (its longest prefix that is a module), from `source`.
fn resolve(path: &str, source: &Source, modules: &BTreeSet<String>) -> Option<String> {
    let mut parts: Vec<String> = path.split("::").map(str::to_string).collect();
    match parts.first().map(String::as_str) {
        Some("crate") => {
            parts.remove(0);
        }
        Some("super") | Some("self") => {
            // `self` is the module itself, `super` its parent (file or `mod.rs` alike).
            let mut base: Vec<String> = if source.module.is_empty() {
                Vec::new()
            } else {
                source.module.split("::").map(str::to_string).collect()
            };
            while let Some(first) = parts.first().map(String::as_str) {
                match first {
                    "super" => {
                        base.pop();
                    }
                    "self" => {}
                    _ => break,
                }
                parts.remove(0);
            }
            base.extend(parts);
            parts = base;
        }
        _ => return None,
    }
    (1..=parts.len())
        .rev()
        .map(|k| parts[..k].join("::"))
        .find(|m| modules.contains(m))
}

/// Every import between two modules (to itself or its ancestors left out).
fn imports(sources: &[Source]) -> Vec<Import> {
    let modules: BTreeSet<String> = sources.iter().map(|s| s.module.clone()).collect();
    let mut out = Vec::new();
    for s in sources {
        let line_of = |at: usize| s.text[..at].matches('\n').count() + 1;
        let original_line = |at: usize| -> String {
            let n = line_of(at);
            s.text.lines().nth(n - 1).unwrap_or("").trim().to_string()
        };
        let mut found: Vec<(usize, String)> = Vec::new();
        let mut use_spans = Vec::new();
        let bytes = s.text.as_bytes();
        let mut from = 0;
        while let Some(p) = s.text[from..].find("use ") {
            let at = from + p;
            from = at + 4;
            let word_start =
                at == 0 || !(bytes[at - 1].is_ascii_alphanumeric() || bytes[at - 1] == b'_');
            if !word_start {
                continue;
            }
            let Some(end) = s.text[at..].find(';').map(|e| at + e) else {
                break;
            };
            let tree = s.text[at + 4..end].trim();
            if !(tree.starts_with("crate") || tree.starts_with("super") || tree.starts_with("self"))
            {
                continue;
            }
            use_spans.push((at, end));
            for path in expand_use(tree) {
                found.push((at, path));
            }
        }
        let mut from = 0;
        while let Some(p) = s.text[from..].find("crate::") {
            let at = from + p;
            from = at + 7;
            if use_spans.iter().any(|&(a, e)| a <= at && at < e) {
                continue;
            }
            if at > 0
                && (bytes[at - 1].is_ascii_alphanumeric()
                    || bytes[at - 1] == b'_'
                    || bytes[at - 1] == b'$')
            {
                continue;
            }
            let len = s.text[at..]
                .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
                .unwrap_or(s.text.len() - at);
            found.push((at, s.text[at..at + len].trim_end_matches(':').to_string()));
        }
        for (at, path) in found {
            let Some(to) = resolve(&path, s, &modules) else {
                continue;
            };
            let ancestor =
                s.module == to || s.module.starts_with(&format!("{to}::")) || to.is_empty();
            if ancestor {
                continue;
            }
            out.push(Import {
                from: s.module.clone(),
                to,
                file: s.file.clone(),
                line: line_of(at),
                text: original_line(at),
            });
        }
    }
    out
}

/// Every violation, one line each: modules the table does not place, imports of a
/// lower layer, and the imports that close each cycle.
fn check(files: &BTreeMap<String, String>) -> Vec<String> {
    let rows = match files.get("lib.rs").map(|lib| layer_table(lib)) {
        Some(Ok(rows)) => rows,
        Some(Err(e)) => return vec![e],
        None => return vec!["no src/lib.rs".into()],
    };
    let sources = sources(files);
    let mut problems = Vec::new();
    for s in &sources {
        if !s.module.is_empty() && row_of(&rows, &s.module).is_none() {
            problems.push(format!(
                "{}: module {} is in no layer of the table in src/lib.rs (# Layout)",
                s.file, s.module
            ));
        }
    }
    let imports = imports(&sources);
    for i in &imports {
        let (Some(from), Some(to)) = (row_of(&rows, &i.from), row_of(&rows, &i.to)) else {
            continue;
        };
        if to.layer > from.layer {
            problems.push(format!(
                "{}:{}: {} (layer {} {}) imports {} (layer {} {}), a lower layer: {}",
                i.file, i.line, i.from, from.layer, from.name, i.to, to.layer, to.name, i.text
            ));
        }
    }
    for cycle in cycles(&imports) {
        let members: BTreeSet<&String> = cycle.iter().collect();
        problems.push(format!("import cycle between {}:", cycle.join(", ")));
        for i in imports
            .iter()
            .filter(|i| members.contains(&i.from) && members.contains(&i.to))
        {
            problems.push(format!(
                "  {}:{}: {} -> {}: {}",
                i.file, i.line, i.from, i.to, i.text
            ));
        }
    }
    problems
}

/// The strongly connected components of more than one module (Tarjan).
fn cycles(imports: &[Import]) -> Vec<Vec<String>> {
    let mut edges: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for i in imports {
        edges.entry(&i.from).or_default().insert(&i.to);
        edges.entry(&i.to).or_default();
    }
    struct Tarjan<'a> {
        edges: &'a BTreeMap<&'a str, BTreeSet<&'a str>>,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on_stack: BTreeSet<&'a str>,
        out: Vec<Vec<String>>,
    }
    impl<'a> Tarjan<'a> {
        fn visit(&mut self, v: &'a str) {
            let n = self.index.len();
            self.index.insert(v, n);
            self.low.insert(v, n);
            self.stack.push(v);
            self.on_stack.insert(v);
            for &w in &self.edges[v] {
                if !self.index.contains_key(w) {
                    self.visit(w);
                    let low = self.low[v].min(self.low[w]);
                    self.low.insert(v, low);
                } else if self.on_stack.contains(w) {
                    let low = self.low[v].min(self.index[w]);
                    self.low.insert(v, low);
                }
            }
            if self.low[v] == self.index[v] {
                let mut component = Vec::new();
                while let Some(w) = self.stack.pop() {
                    self.on_stack.remove(w);
                    component.push(w.to_string());
                    if w == v {
                        break;
                    }
                }
                if component.len() > 1 {
                    component.sort();
                    self.out.push(component);
                }
            }
        }
    }
    let mut t = Tarjan {
        edges: &edges,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        out: Vec::new(),
    };
    for &v in edges.keys() {
        if !t.index.contains_key(v) {
            t.visit(v);
        }
    }
    t.out
}

/// Every `.rs` file under `dir`, by its path relative to `dir`.
fn read_tree(dir: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(d) = pending.pop() {
        for entry in std::fs::read_dir(&d).expect("readable src") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                pending.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let rel = path.strip_prefix(dir).expect("under src");
                let rel = rel.to_string_lossy().replace('\\', "/");
                out.insert(rel, std::fs::read_to_string(&path).expect("utf-8 source"));
            }
        }
    }
    out
}

#[test]
fn every_import_goes_up_the_layers_and_no_module_cycle_exists() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let files = read_tree(&src);
    let sources = sources(&files);
    let imports = imports(&sources);
    // The check reads something: a broken parser would pass an empty crate.
    assert!(
        sources.len() > 50 && imports.len() > 150,
        "{} modules, {} imports",
        sources.len(),
        imports.len()
    );
    let problems = check(&files);
    assert!(
        problems.is_empty(),
        "the layers of DESIGN section 11 (table in src/lib.rs) are broken:\n{}",
        problems.join("\n")
    );
}

/// A small crate: three layers, one module each, imports going up only.
fn small_crate() -> BTreeMap<String, String> {
    let lib = "//! # Layout\n//!\n//! | layer | modules |\n//! |---|---|\n\
               //! | 1 vocabulary | `base` |\n//! | 2 storage | `tsdb` |\n\
               //! | 3 root | `node` |\n//!\n//! # Other\n\npub mod base;\npub mod tsdb;\npub mod node;\n";
    BTreeMap::from([
        ("lib.rs".to_string(), lib.to_string()),
        ("base/mod.rs".to_string(), "pub mod time;\npub fn now() {}\n".to_string()),
        ("base/time.rs".to_string(), "pub fn ns() -> i64 { 0 }\n".to_string()),
        (
            "tsdb/mod.rs".to_string(),
            "use crate::base::time;\n/// Not an import: crate::node::x\npub fn f() { let _ = \"crate::node\"; crate::base::now(); }\n"
                .to_string(),
        ),
        (
            "node.rs".to_string(),
            "use crate::{base::{self, time::ns}, tsdb};\n#[cfg(test)]\nmod tests {\n    use crate::node;\n}\n"
                .to_string(),
        ),
    ])
}

#[test]
fn the_checker_passes_a_crate_whose_imports_go_up() {
    let problems = check(&small_crate());
    assert!(problems.is_empty(), "{problems:#?}");
}

#[test]
fn the_checker_fails_a_deliberately_wrong_import_and_prints_its_line() {
    let mut files = small_crate();
    files.insert(
        "base/hash.rs".into(),
        "pub fn h() -> u64 { 0 }\n\nuse crate::tsdb::f;\n".into(),
    );
    let problems = check(&files);
    assert_eq!(
        problems,
        vec!["src/base/hash.rs:3: base::hash (layer 1 vocabulary) imports tsdb (layer 2 storage), a lower layer: use crate::tsdb::f;".to_string()],
    );
    // An inline path counts as much as a `use`.
    let mut files = small_crate();
    files.insert(
        "tsdb/extra.rs".into(),
        "pub fn f() {\n    crate::node::run();\n}\n".into(),
    );
    let problems = check(&files);
    assert_eq!(
        problems,
        vec!["src/tsdb/extra.rs:2: tsdb::extra (layer 2 storage) imports node (layer 3 root), a lower layer: crate::node::run();".to_string()],
    );
}

#[test]
fn the_checker_fails_a_cycle_within_a_layer() {
    let mut files = small_crate();
    files.insert(
        "base/mod.rs".into(),
        "pub mod time;\nuse self::time::ns;\npub fn now() {}\n".into(),
    );
    files.insert(
        "base/time.rs".into(),
        "pub fn ns() -> i64 { super::other::x() }\nuse super::other;\n".into(),
    );
    files.insert(
        "base/other.rs".into(),
        "use crate::base::time::ns;\npub fn x() -> i64 { ns() }\n".into(),
    );
    let problems = check(&files);
    assert_eq!(
        problems[0], "import cycle between base::other, base::time:",
        "{problems:#?}"
    );
    assert_eq!(problems.len(), 3, "{problems:#?}");
}

#[test]
fn the_checker_fails_a_module_the_table_does_not_place() {
    let mut files = small_crate();
    files.insert("extra.rs".into(), "pub fn x() {}\n".into());
    let problems = check(&files);
    assert_eq!(
        problems,
        vec![
            "src/extra.rs: module extra is in no layer of the table in src/lib.rs (# Layout)"
                .to_string()
        ]
    );
}

#[test]
fn use_trees_expand_to_every_path() {
    assert_eq!(
        expand_use("crate::{a::{self, b as c}, d::*, e::f::{g, h::{i, j}}}"),
        vec![
            "crate::a",
            "crate::a::b",
            "crate::d",
            "crate::e::f::g",
            "crate::e::f::h::i",
            "crate::e::f::h::j"
        ]
    );
    assert_eq!(expand_use("super::x::Y"), vec!["super::x::Y"]);
}
