//! What each module of `src/` imports, read from its syntax tree (as `functions.rs` measures
//! functions), so that neither a test item in the middle of a file nor a quote character in the
//! code hides an import: its `use` trees and every path in its code, test items left out. Inside
//! macro calls (`format!`, `tracing::info!`), whose arguments are tokens, not syntax, the paths
//! starting with `crate::`, `super::` or `self::` count. Then the sibling edges between modules
//! and the strongly connected sets among them (see the crate's doc).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use proc_macro2::{Spacing, TokenStream, TokenTree};
use syn::visit::{self, Visit};

use super::{rust_files, Module};

pub fn module_of(src: &Path, file: &Path) -> Option<Module> {
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

/// Whether these are the attributes of test code: `#[test]` or `#[cfg(test)]`.
pub fn is_test(attrs: &[syn::Attribute]) -> bool {
    attrs.iter().any(|a| {
        a.path().is_ident("test")
            || a.path().is_ident("cfg") && a.parse_args::<syn::Ident>().is_ok_and(|i| i == "test")
    })
}

/// The attributes of an item (those syn has no common accessor for).
fn item_attrs(item: &syn::Item) -> &[syn::Attribute] {
    use syn::Item as I;
    match item {
        I::Const(i) => &i.attrs,
        I::Enum(i) => &i.attrs,
        I::ExternCrate(i) => &i.attrs,
        I::Fn(i) => &i.attrs,
        I::ForeignMod(i) => &i.attrs,
        I::Impl(i) => &i.attrs,
        I::Macro(i) => &i.attrs,
        I::Mod(i) => &i.attrs,
        I::Static(i) => &i.attrs,
        I::Struct(i) => &i.attrs,
        I::Trait(i) => &i.attrs,
        I::TraitAlias(i) => &i.attrs,
        I::Type(i) => &i.attrs,
        I::Union(i) => &i.attrs,
        I::Use(i) => &i.attrs,
        _ => &[],
    }
}

/// Every path a file's code names, outside its test items, as `a::b::c`.
#[derive(Default)]
struct Paths {
    out: Vec<String>,
}

impl Paths {
    /// The leaves of a `use` tree under `prefix`: `a::{b, c::{d, e as f}}` is `a::b`,
    /// `a::c::d`, `a::c::e`.
    fn use_tree(&mut self, prefix: &str, tree: &syn::UseTree) {
        let join = |name: &dyn std::fmt::Display| match prefix {
            "" => name.to_string(),
            _ => format!("{prefix}::{name}"),
        };
        match tree {
            syn::UseTree::Path(p) => self.use_tree(&join(&p.ident), &p.tree),
            syn::UseTree::Name(n) => self.out.push(join(&n.ident)),
            syn::UseTree::Rename(r) => self.out.push(join(&r.ident)),
            syn::UseTree::Glob(_) => self.out.push(prefix.to_owned()),
            syn::UseTree::Group(g) => g.items.iter().for_each(|t| self.use_tree(prefix, t)),
        }
    }
}

impl<'ast> Visit<'ast> for Paths {
    fn visit_item(&mut self, item: &'ast syn::Item) {
        if !is_test(item_attrs(item)) {
            visit::visit_item(self, item);
        }
    }
    fn visit_impl_item_fn(&mut self, f: &'ast syn::ImplItemFn) {
        if !is_test(&f.attrs) {
            visit::visit_impl_item_fn(self, f);
        }
    }
    fn visit_item_use(&mut self, u: &'ast syn::ItemUse) {
        self.use_tree("", &u.tree);
    }
    fn visit_path(&mut self, path: &'ast syn::Path) {
        let segments: Vec<String> = path.segments.iter().map(|s| s.ident.to_string()).collect();
        self.out.push(segments.join("::"));
        visit::visit_path(self, path);
    }
    fn visit_macro(&mut self, mac: &'ast syn::Macro) {
        let mut text = String::new();
        flatten(mac.tokens.clone(), &mut text);
        self.out.extend(inline_paths(&text));
        visit::visit_macro(self, mac);
    }
}

/// A macro call's tokens as text with paths kept whole (`crate::a::b`) and literals left out,
/// so that a string mentioning a path is not an import.
fn flatten(tokens: TokenStream, out: &mut String) {
    for token in tokens {
        match token {
            TokenTree::Group(g) => {
                out.push(' ');
                flatten(g.stream(), out);
                out.push(' ');
            }
            TokenTree::Ident(i) => {
                if out.ends_with(|c: char| c.is_alphanumeric() || c == '_') {
                    out.push(' ');
                }
                out.push_str(&i.to_string());
            }
            TokenTree::Punct(p) => {
                out.push(p.as_char());
                if p.spacing() == Spacing::Alone && p.as_char() != ':' {
                    out.push(' ');
                }
            }
            TokenTree::Literal(_) => out.push_str(" 0 "),
        }
    }
}

/// Every path the code of `text` (a Rust file) names outside its test items.
pub fn paths(text: &str) -> Vec<String> {
    let file = syn::parse_file(text).unwrap_or_else(|e| panic!("not Rust ({e}): {text}"));
    let mut paths = Paths::default();
    paths.visit_file(&file);
    paths.out
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

/// Sibling edges: `(a, b)` for siblings `a` and `b` whose subtrees import each other so.
pub fn sibling_edges(src: &Path) -> BTreeMap<Module, BTreeSet<Module>> {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    let sources: Vec<(Module, String)> = files
        .iter()
        .filter_map(|f| Some((module_of(src, f)?, std::fs::read_to_string(f).ok()?)))
        .collect();
    let modules: BTreeSet<Module> = sources.iter().map(|(m, _)| m.clone()).collect();
    let mut edges: BTreeMap<Module, BTreeSet<Module>> = BTreeMap::new();
    for (module, text) in &sources {
        for target in paths(text)
            .iter()
            .filter_map(|p| resolve(&modules, module, p))
        {
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
pub fn cycles(edges: &BTreeMap<Module, BTreeSet<Module>>) -> Vec<BTreeSet<Module>> {
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
