//! The shape of the code: no Rust file over 500 lines (`src/`, `tests/`, `benches/`,
//! `examples/`, `fuzz/`), no function over 60 lines on the data path (`src/proxy/`, with a
//! shrinking list of those still to split), no import cycles between the modules of `src/`, and no module
//! outside `src/config/` that names the config file's serde structs (`config::file::`): the
//! runtime sees only the compiled model.
//!
//! A module's imports are its `use` trees and the `crate::`, `super::` and `self::` paths in its
//! code (tests excluded), each resolved to the deepest module file it names. An edge between a
//! module and its own ancestor or descendant is how Rust nests code and is not counted; any
//! other edge counts between the two siblings under their closest common ancestor (so
//! `proxy::h1::to_h2 -> proxy::http2` is `proxy::h1 -> proxy::http2`). A cycle is a strongly
//! connected set of such siblings.
//!
//! The top-level modules are layered, each importing only those below it: `tls`, `policy`,
//! `route`, `observe`, `snapshot` (the runtime model), `config` (which compiles into it),
//! `reload`, `admin`, `proxy`, `server`.
//!
//! No function is longer than a screen: 60 lines on the data path (`proxy`, `policy`, `route`,
//! `semantics`), 80 elsewhere, from `fn` to its closing brace (`structure/functions.rs`). Tests
//! wait on conditions, not fixed sleeps (`structure/waits.rs`).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

#[path = "structure/functions.rs"]
mod functions;
#[path = "structure/waits.rs"]
mod waits;

type Module = Vec<String>;

const MAX_LINES: usize = 500;
fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("src is readable") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

fn module_of(src: &Path, file: &Path) -> Option<Module> {
    let rel = file.strip_prefix(src).ok()?.with_extension("");
    let mut parts: Module = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if parts == ["main"] {
        return None;
    }
    if matches!(parts.last().map(String::as_str), Some("mod" | "lib")) {
        parts.pop();
    }
    Some(parts)
}

/// The code of a file without comments, string contents and its `#[cfg(test)]` part.
fn code(text: &str) -> String {
    let text = text.split("#[cfg(test)]").next().unwrap_or("");
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '/' if chars.peek() == Some(&'/') => {
                for c in chars.by_ref() {
                    if c == '\n' {
                        out.push('\n');
                        break;
                    }
                }
            }
            '"' => {
                out.push('"');
                while let Some(c) = chars.next() {
                    match c {
                        '\\' => {
                            chars.next();
                        }
                        '"' => break,
                        _ => {}
                    }
                }
                out.push('"');
            }
            _ => out.push(c),
        }
    }
    out
}

/// The paths of a `use` tree: `a::{b, c::{d, e as f}}` is `a::b`, `a::c::d`, `a::c::e`.
fn expand(tree: &str) -> Vec<String> {
    let tree = tree.trim();
    let Some(open) = tree.find('{') else {
        let path = tree.split(" as ").next().unwrap_or(tree);
        return vec![path.trim().to_owned()];
    };
    let close = tree.rfind('}').unwrap_or(tree.len());
    let (prefix, inner) = (&tree[..open], &tree[open + 1..close]);
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0, 0);
    for (i, c) in inner.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&inner[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&inner[start..]);
    parts
        .into_iter()
        .filter(|p| !p.trim().is_empty())
        .flat_map(|p| expand(p).into_iter().map(|e| format!("{prefix}{e}")))
        .collect()
}

/// The module file a path in `module` names, if it names one of this crate's.
fn resolve(modules: &BTreeSet<Module>, module: &Module, path: &str) -> Option<Module> {
    let segments: Vec<&str> = path
        .split("::")
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    let (mut full, rest): (Module, &[&str]) = match segments.first() {
        Some(&"crate") => (Vec::new(), &segments[1..]),
        Some(&"self") => (module.clone(), &segments[1..]),
        Some(&"super") => {
            let mut base = module.clone();
            let mut rest = &segments[..];
            while rest.first() == Some(&"super") {
                base.pop();
                rest = &rest[1..];
            }
            (base, rest)
        }
        _ => return None,
    };
    full.extend(rest.iter().map(|s| (*s).to_owned()));
    (0..=full.len())
        .rev()
        .map(|n| full[..n].to_vec())
        .find(|m| modules.contains(m))
}

/// Paths starting with `crate::`, `super::` or `self::` anywhere in `code`.
fn inline_paths(code: &str) -> Vec<String> {
    let mut out = Vec::new();
    let bytes = code.as_bytes();
    for start in ["crate::", "super::", "self::"] {
        let mut from = 0;
        while let Some(at) = code[from..].find(start) {
            let begin = from + at;
            from = begin + start.len();
            let boundary = begin == 0 || {
                let b = bytes[begin - 1];
                !(b.is_ascii_alphanumeric() || b == b'_' || b == b':')
            };
            if !boundary {
                continue;
            }
            let end = code[begin..]
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
                .map_or(code.len(), |n| begin + n);
            out.push(code[begin..end].trim_end_matches(':').to_owned());
        }
    }
    out
}

fn use_trees(code: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(at) = code[from..].find("use ") {
        let begin = from + at;
        from = begin + 4;
        let before = code[..begin].chars().last();
        if before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_') {
            continue;
        }
        if let Some(end) = code[from..].find(';') {
            out.extend(expand(&code[from..from + end]));
            from += end;
        }
    }
    out
}

/// Sibling edges: `(a, b)` for siblings `a` and `b` whose subtrees import each other so.
fn sibling_edges(src: &Path) -> BTreeMap<Module, BTreeSet<Module>> {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    let sources: Vec<(Module, String)> = files
        .iter()
        .filter_map(|f| Some((module_of(src, f)?, std::fs::read_to_string(f).ok()?)))
        .collect();
    let modules: BTreeSet<Module> = sources.iter().map(|(m, _)| m.clone()).collect();
    let mut edges: BTreeMap<Module, BTreeSet<Module>> = BTreeMap::new();
    for (module, text) in &sources {
        let code = code(text);
        let paths = use_trees(&code).into_iter().chain(inline_paths(&code));
        for target in paths.filter_map(|p| resolve(&modules, module, &p)) {
            let common = module
                .iter()
                .zip(&target)
                .take_while(|(a, b)| a == b)
                .count();
            if common == module.len() || common == target.len() {
                continue;
            }
            let (a, b) = (module[..=common].to_vec(), target[..=common].to_vec());
            edges.entry(a).or_default().insert(b);
        }
    }
    edges
}

/// The strongly connected sets of more than one module (Tarjan).
fn cycles(edges: &BTreeMap<Module, BTreeSet<Module>>) -> Vec<BTreeSet<Module>> {
    struct Walk<'e> {
        edges: &'e BTreeMap<Module, BTreeSet<Module>>,
        index: BTreeMap<Module, usize>,
        low: BTreeMap<Module, usize>,
        stack: Vec<Module>,
        found: Vec<BTreeSet<Module>>,
    }
    impl Walk<'_> {
        fn visit(&mut self, v: &Module) {
            let n = self.index.len();
            self.index.insert(v.clone(), n);
            self.low.insert(v.clone(), n);
            self.stack.push(v.clone());
            for w in self.edges.get(v).into_iter().flatten() {
                if !self.index.contains_key(w) {
                    self.visit(w);
                    let low = self.low[v].min(self.low[w]);
                    self.low.insert(v.clone(), low);
                } else if self.stack.contains(w) {
                    let low = self.low[v].min(self.index[w]);
                    self.low.insert(v.clone(), low);
                }
            }
            if self.low[v] == self.index[v] {
                let mut set = BTreeSet::new();
                while let Some(w) = self.stack.pop() {
                    let done = &w == v;
                    set.insert(w);
                    if done {
                        break;
                    }
                }
                if set.len() > 1 {
                    self.found.push(set);
                }
            }
        }
    }
    let mut walk = Walk {
        edges,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        found: Vec::new(),
    };
    let nodes: BTreeSet<Module> = edges
        .iter()
        .flat_map(|(a, bs)| std::iter::once(a.clone()).chain(bs.iter().cloned()))
        .collect();
    for v in &nodes {
        if !walk.index.contains_key(v) {
            walk.visit(v);
        }
    }
    walk.found
}

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

#[test]
fn no_rust_file_is_over_500_lines() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    for dir in ["src", "tests", "benches", "examples", "fuzz/fuzz_targets"] {
        rust_files(&root.join(dir), &mut files);
    }
    let long: Vec<String> = files
        .iter()
        .filter_map(|f| {
            let lines = std::fs::read_to_string(f).ok()?.lines().count();
            (lines > MAX_LINES).then(|| format!("{} ({lines} lines)", f.display()))
        })
        .collect();
    assert!(files.len() > 50, "src/ has its files");
    assert!(long.is_empty(), "over {MAX_LINES} lines: {long:?}");
}

#[test]
fn no_import_cycles() {
    let edges = sibling_edges(&src());
    assert!(
        edges.contains_key(&vec!["proxy".to_owned(), "h2".to_owned()]),
        "the walk sees imports: {edges:?}"
    );
    assert!(
        edges[&vec!["config".to_owned()]].contains(&vec!["snapshot".to_owned()]),
        "the walk sees top-level imports: {edges:?}"
    );
    let found: Vec<Vec<String>> = cycles(&edges)
        .into_iter()
        .map(|set| set.into_iter().map(|m| m.join("::")).collect())
        .collect();
    assert!(found.is_empty(), "import cycles: {found:?}");
}

/// Whether `code` names the config file's schema (`config::file::X`, `use crate::config::{file,
/// ..}`, or `config::file` itself).
fn names_the_schema(code: &str) -> bool {
    let squeezed: String = code.chars().filter(|c| !c.is_whitespace()).collect();
    squeezed.contains("config::file")
        || use_trees(code)
            .iter()
            .any(|p| p.replace(' ', "").contains("config::file"))
}

#[test]
fn only_config_sees_the_file_schema() {
    let src = src();
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let leaks: Vec<String> = files
        .iter()
        .filter(|f| !f.starts_with(src.join("config")))
        .filter(|f| std::fs::read_to_string(f).is_ok_and(|text| names_the_schema(&code(&text))))
        .map(|f| f.display().to_string())
        .collect();
    assert!(files.len() > 50, "src/ has its files");
    assert!(
        leaks.is_empty(),
        "outside src/config/, these name the config file's structs (config::file::); use the \
         runtime model (snapshot, route, policy) instead: {leaks:?}"
    );
}

#[test]
fn the_schema_check_sees_every_spelling() {
    assert!(names_the_schema(
        "use crate::config::file::UpstreamSection;"
    ));
    assert!(names_the_schema(
        "use crate::config::{file::FileConfig, load};"
    ));
    assert!(names_the_schema(
        "fn f(s: &crate::config :: file::SiteSection) {}"
    ));
    assert!(!names_the_schema("use crate::config::load;"));
    assert!(!names_the_schema(&code(
        "// config::file::FileConfig is the schema\n"
    )));
}

#[test]
fn the_cycle_finder_finds_cycles() {
    let m = |s: &str| vec![s.to_owned()];
    let mut edges: BTreeMap<Module, BTreeSet<Module>> = BTreeMap::new();
    edges.entry(m("a")).or_default().insert(m("b"));
    edges.entry(m("b")).or_default().insert(m("c"));
    edges.entry(m("c")).or_default().insert(m("a"));
    edges.entry(m("c")).or_default().insert(m("d"));
    let found = cycles(&edges);
    assert_eq!(found.len(), 1);
    assert_eq!(found[0], [m("a"), m("b"), m("c")].into_iter().collect());
    assert_eq!(
        expand("super::{a, b::{c, d as e}}"),
        ["super::a", "super::b::c", "super::b::d"]
    );
}

/// `.ci/run` installs programs and runs `make test`, as `make ci-local` does once it has checked
/// them: what CI runs and what a developer runs cannot drift apart.
#[test]
fn ci_runs_make_test_and_nothing_else() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let run = std::fs::read_to_string(root.join(".ci/run")).expect(".ci/run");
    let commands: Vec<&str> = run
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    assert_eq!(commands.last(), Some(&"make test"), "{run}");
    assert!(
        !commands[..commands.len() - 1]
            .iter()
            .any(|l| l.contains("cargo") || l.contains("make test")),
        ".ci/run leaves building and testing to make test: {run}"
    );
    let makefile = std::fs::read_to_string(root.join("Makefile")).expect("Makefile");
    let recipe = makefile
        .split("\nci-local:")
        .nth(1)
        .and_then(|rest| rest.split("\n\n").next())
        .expect("a ci-local target");
    assert!(
        recipe.contains("$(MAKE) test"),
        "ci-local runs make test: {recipe}"
    );
    let readme = std::fs::read_to_string(root.join("README.md")).expect("README");
    assert!(
        readme.contains("make test "),
        "the README's test command stays make test"
    );
}
