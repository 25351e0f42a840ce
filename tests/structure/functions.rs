//! No function longer than a screen (see the crate's doc), each measured over the syntax tree.

use std::path::Path;

use super::rust_files;

/// The longest a function may be on the data path, and elsewhere.
const MAX_FN_LINES: (usize, usize) = (60, 80);
const DATA_PATH: [&str; 4] = ["src/proxy/", "src/policy/", "src/route/", "src/semantics/"];

/// Functions over the limit, at their length when the check came (four grew by a few lines
/// when the error pages and retries were merged): each may shrink, none may grow, and a
/// function leaves the list once it is short. They are still to be split into named steps
/// (issue 18).
const LONG_FUNCTIONS: &[(&str, usize)] = &[
    ("src/certs/install.rs run", 105),
    ("src/certs/plan.rs plan", 103),
    ("src/certs/reseller.rs unzip", 81),
    ("src/certs/write.rs install", 97),
    ("src/observe/metrics.rs metrics", 97),
    ("src/proxy/h1/forward.rs proxy", 112),
    ("src/proxy/h1/serve.rs one", 92),
    ("src/proxy/h1/to_h2.rs h1_to_h2", 62),
    ("src/proxy/h2/exchange.rs h2_exchange", 80),
    ("src/proxy/h2/stream.rs h2_stream", 121),
    ("src/proxy/h2/to_h2.rs to_h2", 73),
    ("src/proxy/http1/body.rs advance_with", 107),
    ("src/tls/cert.rs check_chain", 83),
    ("src/tls/layout.rs scan", 87),
    ("src/tls/reject.rs diagnose", 108),
];

/// `("file function", lines)` for every function and method outside tests.
fn function_lengths(root: &Path, file: &Path) -> Vec<(String, usize)> {
    use syn::visit::{self, Visit};
    struct Lengths<'a> {
        file: &'a str,
        out: Vec<(String, usize)>,
    }
    fn is_test(attrs: &[syn::Attribute]) -> bool {
        attrs.iter().any(|a| {
            a.path().is_ident("test")
                || a.path().is_ident("cfg")
                    && a.parse_args::<syn::Ident>().is_ok_and(|i| i == "test")
        })
    }
    impl Lengths<'_> {
        fn note(&mut self, attrs: &[syn::Attribute], sig: &syn::Signature, block: &syn::Block) {
            if is_test(attrs) {
                return;
            }
            let from = sig.fn_token.span.start().line;
            let to = block.brace_token.span.close().end().line;
            self.out
                .push((format!("{} {}", self.file, sig.ident), to + 1 - from));
        }
    }
    impl<'ast> Visit<'ast> for Lengths<'_> {
        fn visit_item_mod(&mut self, m: &'ast syn::ItemMod) {
            if !is_test(&m.attrs) {
                visit::visit_item_mod(self, m);
            }
        }
        fn visit_item_fn(&mut self, f: &'ast syn::ItemFn) {
            self.note(&f.attrs, &f.sig, &f.block);
            visit::visit_item_fn(self, f);
        }
        fn visit_impl_item_fn(&mut self, f: &'ast syn::ImplItemFn) {
            self.note(&f.attrs, &f.sig, &f.block);
            visit::visit_impl_item_fn(self, f);
        }
        fn visit_trait_item_fn(&mut self, f: &'ast syn::TraitItemFn) {
            if let Some(block) = &f.default {
                self.note(&f.attrs, &f.sig, block);
            }
            visit::visit_trait_item_fn(self, f);
        }
    }
    let text = std::fs::read_to_string(file).expect("readable");
    let syntax = syn::parse_file(&text).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    let name = file
        .strip_prefix(root)
        .unwrap_or(file)
        .display()
        .to_string();
    let mut lengths = Lengths {
        file: &name,
        out: Vec::new(),
    };
    lengths.visit_file(&syntax);
    lengths.out
}

#[test]
fn no_function_is_over_a_screen() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    rust_files(&root.join("src"), &mut files);
    files.retain(|f| !f.to_string_lossy().ends_with("_tests.rs"));
    let lengths: Vec<(String, usize)> = files
        .iter()
        .flat_map(|f| function_lengths(root, f))
        .collect();
    assert!(
        lengths.len() > 500
            && lengths
                .iter()
                .any(|(f, n)| f == "src/proxy/h1/relay.rs run" && *n > 10),
        "the walk measures functions: {lengths:?}"
    );
    let limit = |name: &str| {
        let data_path = DATA_PATH.iter().any(|d| name.starts_with(d));
        if data_path {
            MAX_FN_LINES.0
        } else {
            MAX_FN_LINES.1
        }
    };
    let stale: Vec<&str> = LONG_FUNCTIONS
        .iter()
        .filter(|(f, _)| !lengths.iter().any(|(g, n)| g == f && *n > limit(f)))
        .map(|(f, _)| *f)
        .collect();
    assert!(
        stale.is_empty(),
        "short now (or gone): take them off LONG_FUNCTIONS: {stale:?}"
    );
    let long: Vec<String> = lengths
        .iter()
        .filter(|(name, lines)| {
            let data_path = DATA_PATH.iter().any(|d| name.starts_with(d));
            let limit = if data_path {
                MAX_FN_LINES.0
            } else {
                MAX_FN_LINES.1
            };
            let allowed = LONG_FUNCTIONS
                .iter()
                .find(|(f, _)| f == name)
                .map_or(limit, |(_, n)| *n);
            *lines > allowed
        })
        .map(|(name, lines)| format!("{name} ({lines} lines)"))
        .collect();
    assert!(
        long.is_empty(),
        "over {} lines on the data path ({DATA_PATH:?}) or {} elsewhere; split them into \
         named steps: {long:?}",
        MAX_FN_LINES.0,
        MAX_FN_LINES.1
    );
}
