//! The shape of the code: no Rust file over 500 lines (`src/`, `tests/`, `benches/`,
//! `examples/`, `fuzz/`), no function over 60 lines on the data path (`src/proxy/`, with a
//! shrinking list of those still to split), no import cycles between the modules of `src/`, and no module
//! outside `src/config/` that names the config file's serde structs (`config::file::`): the
//! runtime sees only the compiled model.
//!
//! A module's imports are its `use` trees and the `crate::`, `super::` and `self::` paths in its
//! code, read from the syntax tree with test items left out (`structure/imports.rs`), each
//! resolved to the deepest module file it names. An edge between a
//! module and its own ancestor or descendant is how Rust nests code and is not counted; any
//! other edge counts between the two siblings under their closest common ancestor (so
//! `proxy::h1::to_h2 -> proxy::http2` is `proxy::h1 -> proxy::http2`). A cycle is a strongly
//! connected set of such siblings.
//!
//! The top-level modules are layered, each importing only those below it: `semantics`, `tls`,
//! `policy`, `route`, `observe`, `snapshot` (the runtime model), `config` (which compiles into
//! it), `reload`, `admin`, `proxy`, `server`, and the CLI's modules on top (`LAYERS`).
//!
//! No function is longer than a screen: 60 lines on the data path (`proxy`, `policy`, `route`,
//! `semantics`), 80 elsewhere, from `fn` to its closing brace (`structure/functions.rs`). Tests
//! wait on conditions, not fixed sleeps (`structure/waits.rs`).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

#[path = "structure/functions.rs"]
mod functions;
#[path = "structure/imports.rs"]
mod imports;
#[path = "structure/waits.rs"]
mod waits;

use imports::{cycles, paths, sibling_edges};

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
    let m = |path: &str| -> Module { path.split("::").map(str::to_owned).collect() };
    assert!(
        edges[&m("proxy::h2")].contains(&m("proxy::http1")),
        "the walk sees imports between submodules: {edges:?}"
    );
    assert!(
        edges[&m("config")].contains(&m("snapshot")),
        "the walk sees top-level imports: {edges:?}"
    );
    let found: Vec<Vec<String>> = cycles(&edges)
        .into_iter()
        .map(|set| set.into_iter().map(|m| m.join("::")).collect())
        .collect();
    assert!(found.is_empty(), "import cycles: {found:?}");
}

/// The top-level modules, lowest first: each imports only those before it. The CLI's modules
/// (`certs`, `cli`, `cli_logs`) and the fuzz entry points sit on top, beside `main.rs`.
const LAYERS: &[&str] = &[
    "semantics",
    "cache",
    "tls",
    "policy",
    "route",
    "observe",
    "snapshot",
    "config",
    "reload",
    "admin",
    "proxy",
    "server",
    "certs",
    "cli",
    "cli_logs",
    "fuzz",
];

#[test]
fn top_level_modules_import_only_the_layers_below() {
    let edges = sibling_edges(&src());
    let layer = |m: &Module| LAYERS.iter().position(|l| m.len() == 1 && m[0] == *l);
    let top: BTreeSet<&Module> = edges
        .iter()
        .flat_map(|(a, bs)| std::iter::once(a).chain(bs))
        .filter(|m| m.len() == 1)
        .collect();
    let unplaced: Vec<&&Module> = top.iter().filter(|m| layer(m).is_none()).collect();
    assert!(
        unplaced.is_empty(),
        "place these in LAYERS, above what they import: {unplaced:?}"
    );
    assert!(
        top.len() > 10,
        "the walk sees the top-level modules: {top:?}"
    );
    let upward: Vec<String> = edges
        .iter()
        .filter(|(a, _)| a.len() == 1)
        .flat_map(|(a, bs)| bs.iter().map(move |b| (a, b)))
        .filter(|(a, b)| layer(b) >= layer(a))
        .map(|(a, b)| format!("{} -> {}", a[0], b[0]))
        .collect();
    assert!(
        upward.is_empty(),
        "imports up the layers ({LAYERS:?}); move what is shared down: {upward:?}"
    );
}

/// Whether `text` (Rust code) names the config file's schema (`config::file::X`, `use
/// crate::config::{file, ..}`, or `config::file` itself).
fn names_the_schema(text: &str) -> bool {
    paths(text).iter().any(|p| p.contains("config::file"))
}

#[test]
fn only_config_sees_the_file_schema() {
    let src = src();
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let leaks: Vec<String> = files
        .iter()
        .filter(|f| !f.starts_with(src.join("config")))
        .filter(|f| std::fs::read_to_string(f).is_ok_and(|text| names_the_schema(&text)))
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
    assert!(names_the_schema(
        "fn f() { tracing::info!(\"{:?}\", crate::config::file::FileConfig::default()) }"
    ));
    assert!(!names_the_schema("use crate::config::load;"));
    assert!(!names_the_schema(
        "// config::file::FileConfig is the schema\nfn f() { g(\"config::file\") }"
    ));
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
        paths("use super::{a, b::{c, d as e}};"),
        ["super::a", "super::b::c", "super::b::d"]
    );
}

/// A crate where `proxy::h1` and `proxy::h2` import each other, one of them from code after a
/// test-only item and a quote character, the other inside a macro call: the cycle is found,
/// between the two submodules, and what the tests import is not counted.
#[test]
fn a_cycle_between_submodules_is_found_wherever_the_import_hides() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let write = |rel: &str, text: &str| {
        let path = dir.path().join(rel);
        std::fs::create_dir_all(path.parent().expect("a parent")).expect("mkdir");
        std::fs::write(path, text).expect("write");
    };
    write("lib.rs", "mod proxy;\nmod tls;\n");
    write("tls.rs", "pub fn f() {}\n");
    write("proxy/mod.rs", "mod h1;\nmod h2;\n");
    write(
        "proxy/h1/mod.rs",
        "mod serve;\n#[cfg(test)]\nfn helper() {}\nconst Q: char = '\"';\n\
         fn f() { super::h2::g() }\n#[cfg(test)]\nmod tests { use crate::tls::f; }\n",
    );
    write("proxy/h1/serve.rs", "pub fn s() {}\n");
    write(
        "proxy/h2.rs",
        "pub fn g() { tracing::info!(\"{}\", crate::proxy::h1::serve::s()) }\n",
    );
    let edges = sibling_edges(dir.path());
    let m = |path: &str| -> Module { path.split("::").map(str::to_owned).collect() };
    let expected = BTreeMap::from([
        (m("proxy::h1"), BTreeSet::from([m("proxy::h2")])),
        (m("proxy::h2"), BTreeSet::from([m("proxy::h1")])),
    ]);
    assert_eq!(edges, expected);
    let both = BTreeSet::from([m("proxy::h1"), m("proxy::h2")]);
    assert_eq!(cycles(&edges), [both]);
}

/// `.ci/run` installs programs and then runs `make ci-local`, the target a developer runs:
/// everything CI does besides installing (the toolchain's components, the environment, `make
/// test`) is written once, in that target, so what CI runs and what a developer runs cannot
/// drift apart.
#[test]
fn ci_installs_programs_then_runs_make_ci_local_and_nothing_else() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let run = std::fs::read_to_string(root.join(".ci/run")).expect(".ci/run");
    let commands: Vec<&str> = run
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    assert_eq!(commands.last(), Some(&"exec make ci-local"), "{run}");
    // What may come before: the shell's settings, and installing what `make
    // ci-missing-tools` lists (and make itself).
    let installs = [
        "set -euo pipefail",
        "cd \"$(dirname \"$0\")/..\"",
        "command -v make >/dev/null 2>&1 || {",
        "apt-get update -qq",
        "DEBIAN_FRONTEND=noninteractive apt-get install -y -qq ",
        "mapfile -t need_apt < <(make -s ci-missing-tools)",
        "if [ ${#need_apt[@]} -gt 0 ]; then",
        "fi",
        "}",
    ];
    let other: Vec<&&str> = commands[..commands.len() - 1]
        .iter()
        .filter(|l| !installs.iter().any(|i| l.starts_with(i)))
        .collect();
    assert!(
        other.is_empty(),
        ".ci/run only installs programs; the rest belongs in make ci-local: {other:?}"
    );
    let makefile = std::fs::read_to_string(root.join("Makefile")).expect("Makefile");
    let recipe = makefile
        .split("\nci-local:")
        .nth(1)
        .and_then(|rest| rest.split("\n\n").next())
        .expect("a ci-local target");
    assert!(
        recipe.contains("$(MAKE) -s ci-missing-tools"),
        "ci-local checks the programs .ci/run installs: {recipe}"
    );
    assert!(
        recipe.trim_end().ends_with("$(MAKE) test"),
        "ci-local ends by running make test: {recipe}"
    );
    let readme = std::fs::read_to_string(root.join("README.md")).expect("README");
    assert!(
        readme.contains("make test ") && readme.contains("`make ci-local`"),
        "the README's test command stays make test, and CI's make ci-local"
    );
}
