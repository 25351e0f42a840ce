//! No function longer than a screen (see the crate's doc), each measured over the syntax tree.

use std::path::Path;

use super::imports::is_test;
use super::rust_files;

/// The longest a function may be on the data path, and elsewhere.
const MAX_FN_LINES: (usize, usize) = (60, 80);
const DATA_PATH: [&str; 4] = ["src/proxy/", "src/policy/", "src/route/", "src/semantics/"];

/// `("file function", lines)` for every function and method outside tests.
fn function_lengths(root: &Path, file: &Path) -> Vec<(String, usize)> {
    use syn::visit::{self, Visit};
    struct Lengths<'a> {
        file: &'a str,
        out: Vec<(String, usize)>,
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
    let long: Vec<String> = lengths
        .iter()
        .filter(|(name, lines)| *lines > limit(name))
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
