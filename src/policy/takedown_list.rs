//! Takedown lists from files (`policy.takedown_files`): takedown orders arrive as lists, often
//! of thousands of entries. One entry per line, the target then the case reference:
//!
//! ```text
//! # comments and blank lines are skipped
//! blocked.example.cn                         网信办〔2026〕17号       whole host
//! shop.example.cn/banned/                    (2026)京0105民初123号    path prefix
//! https://shop.example.cn/item/42.html       case-2026-0042           exact URL
//! ```
//!
//! Hosts and paths are brought to the canonical form requests are matched in
//! (`semantics::target`), so no spelling of a request escapes an entry. A lookup costs the same
//! at 10 entries or 100,000: a hash lookup on the host, one on the exact path, and one walk of a
//! byte trie along the path for the longest prefix.

use std::collections::HashMap;

use rustc_hash::FxHashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;

use crate::semantics::target::{canonical, canonical_host, canonical_target};

/// What an entry blocks.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Scope {
    Host,
    Prefix(Box<str>),
    /// A path, or a path and query, exactly.
    Exact(Box<str>),
}

/// The case an entry was listed under: its rule id (`takedown:<case>`) and 451 body.
#[derive(Debug, PartialEq)]
pub(crate) struct Case {
    pub(super) id: Arc<str>,
    pub(super) body: Bytes,
}

#[derive(Debug, Default, PartialEq)]
struct HostEntries {
    all: Option<u32>,
    exact: FxHashMap<Box<str>, u32>,
    prefixes: Trie,
}

/// A trie node: its children by byte (sorted), and the case of the prefix ending there.
type Node = (Vec<(u8, u32)>, Option<u32>);

/// Path prefixes as a byte trie: the longest prefix of a path is one walk along it, whatever
/// the number of entries or their lengths.
#[derive(Debug, PartialEq)]
struct Trie {
    /// Node 0 is the root.
    nodes: Vec<Node>,
}

impl Default for Trie {
    fn default() -> Self {
        Trie {
            nodes: vec![(Vec::new(), None)],
        }
    }
}

impl Trie {
    fn insert(&mut self, prefix: &[u8], case: u32) {
        let mut at = 0;
        for &b in prefix {
            let next = self.nodes.len() as u32;
            let children = &mut self.nodes[at].0;
            at = match children.binary_search_by_key(&b, |c| c.0) {
                Ok(i) => children[i].1 as usize,
                Err(i) => {
                    children.insert(i, (b, next));
                    self.nodes.push((Vec::new(), None));
                    next as usize
                }
            };
        }
        self.nodes[at].1.get_or_insert(case);
    }

    fn longest(&self, path: &[u8]) -> Option<&u32> {
        let mut at = 0;
        let mut found = None;
        for &b in path {
            let children = &self.nodes[at].0;
            match children.binary_search_by_key(&b, |c| c.0) {
                Ok(i) => at = children[i].1 as usize,
                Err(_) => break,
            }
            found = self.nodes[at].1.as_ref().or(found);
        }
        found
    }
}

/// Every entry of every takedown file, indexed by canonical host.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct TakedownIndex {
    hosts: FxHashMap<Box<str>, HostEntries>,
    cases: Vec<Arc<Case>>,
    /// Entries loaded, for reports.
    pub(super) entries: usize,
}

impl TakedownIndex {
    /// The case of the entry `host`, `path` (canonical) or `path_and_query` falls under: an
    /// exact URL first, then the longest prefix, then the whole host.
    pub(super) fn find(&self, host: &str, path: &str, path_and_query: &str) -> Option<&Case> {
        let h = self.hosts.get(host)?;
        let hit = h
            .exact
            .get(path_and_query)
            .or_else(|| h.exact.get(path))
            .or_else(|| h.prefixes.longest(path.as_bytes()))
            .or(h.all.as_ref())?;
        self.cases.get(*hit as usize).map(|c| &**c)
    }

    fn add(&mut self, host: &str, scope: Scope, case: u32) {
        let h = self.hosts.entry(host.into()).or_default();
        match scope {
            Scope::Host => {
                h.all.get_or_insert(case);
            }
            Scope::Exact(p) => {
                h.exact.entry(p).or_insert(case);
            }
            Scope::Prefix(p) => h.prefixes.insert(p.as_bytes(), case),
        }
        self.entries += 1;
    }
}

/// Why a line is not an entry: the text is the fix.
fn parse_line(line: &str) -> Result<(String, Scope, &str), String> {
    const EXPECTED: &str = "expected HOST, HOST/PATH-PREFIX or https://HOST/PATH, a space, then \
                            the case reference";
    let (target, case) = match line.split_once(char::is_whitespace) {
        Some((t, c)) if !c.trim().is_empty() => (t, c.trim()),
        _ => return Err(format!("no case reference: {EXPECTED}")),
    };
    let lower = target.to_ascii_lowercase();
    if lower.starts_with("http://") || lower.starts_with("https://") {
        let (path, host) = canonical(target, None)
            .map_err(|e| format!("{target:?} is not a URL menshen can match ({e}): {EXPECTED}"))?;
        return Ok((
            host.name().to_owned(),
            Scope::Exact(path.as_str().into()),
            case,
        ));
    }
    let (host, path) = match target.find('/') {
        Some(at) => (&target[..at], Some(&target[at..])),
        None => (target, None),
    };
    let host = canonical_host(host)
        .map_err(|_| format!("{host:?} is not a host name: {EXPECTED}"))?
        .name()
        .to_owned();
    let scope = match path {
        None => Scope::Host,
        Some(p) if p.contains('?') => {
            return Err(format!(
                "{target:?}: a prefix has no query; list the exact URL as https://{target}"
            ))
        }
        Some(p) => {
            let canonical = canonical_target(p)
                .map_err(|e| format!("{p:?} is not a path menshen can match ({e})"))?;
            // Canonical form drops a trailing dot segment but keeps a trailing slash.
            Scope::Prefix(canonical.path().into())
        }
    };
    Ok((host, scope, case))
}

/// Loads every file of `policy.takedown_files`, each given as (config key, path). A line that
/// is not an entry, or a file that cannot be read, is a problem (key, message) naming file and
/// line; the config pipeline then refuses the reload as a whole.
pub(crate) fn load(files: &[(String, PathBuf)]) -> (TakedownIndex, Vec<(String, String)>) {
    let mut index = TakedownIndex::default();
    let mut case_ids: HashMap<String, u32> = HashMap::new();
    let mut problems = Vec::new();
    for (key, path) in files {
        match std::fs::read_to_string(path) {
            Ok(text) => load_text(path, &text, key, &mut index, &mut case_ids, &mut problems),
            Err(e) => problems.push((
                key.clone(),
                format!(
                    "{}: cannot read: {e}; the takedown list must be readable (or removed from \
                     the list)",
                    path.display()
                ),
            )),
        }
    }
    (index, problems)
}

fn load_text(
    path: &Path,
    text: &str,
    key: &str,
    index: &mut TakedownIndex,
    case_ids: &mut HashMap<String, u32>,
    problems: &mut Vec<(String, String)>,
) {
    for (n, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        match parse_line(line) {
            Ok((host, scope, case)) => {
                let next = index.cases.len() as u32;
                let at = *case_ids.entry(case.to_owned()).or_insert(next);
                if at == next {
                    index.cases.push(Arc::new(Case {
                        id: Arc::from(format!("takedown:{case}")),
                        body: Bytes::from(format!(
                            "451 Unavailable For Legal Reasons\nCase: {case}\n"
                        )),
                    }));
                }
                index.add(&host, scope, at);
            }
            Err(why) => problems.push((
                key.to_owned(),
                format!("{}:{}: {why}", path.display(), n + 1),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn index(text: &str) -> (TakedownIndex, Vec<String>) {
        let mut problems = Vec::new();
        let mut index = TakedownIndex::default();
        let mut ids = HashMap::new();
        let key = "policy.takedown_files[0]";
        load_text(
            Path::new("conf/t.txt"),
            text,
            key,
            &mut index,
            &mut ids,
            &mut problems,
        );
        let messages = problems.into_iter().map(|(k, m)| format!("{k}: {m}"));
        (index, messages.collect())
    }

    #[test]
    fn entries_match_in_canonical_form() {
        let (index, errors) = index(
            "# a list\n\nBlocked.Example.CN.  case-1\nshop.example.cn/%62anned/ case 2 (court)\n\
             https://shop.example.cn/item/42.html?v=1 case-3\nshop.example.cn/x/../items/7 case-4\n",
        );
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(index.entries, 4);
        let case = |h, p, pq| index.find(h, p, pq).map(|c| c.id.to_string());
        assert_eq!(
            case("blocked.example.cn", "/any", "/any").as_deref(),
            Some("takedown:case-1")
        );
        assert_eq!(
            case("shop.example.cn", "/banned/a", "/banned/a?x").as_deref(),
            Some("takedown:case 2 (court)")
        );
        assert_eq!(
            case("shop.example.cn", "/item/42.html", "/item/42.html?v=1").as_deref(),
            Some("takedown:case-3")
        );
        assert_eq!(
            case("shop.example.cn", "/item/42.html", "/item/42.html?v=2"),
            None
        );
        assert_eq!(
            case("shop.example.cn", "/items/7", "/items/7").as_deref(),
            Some("takedown:case-4")
        );
        assert_eq!(case("shop.example.cn", "/banner", "/banner"), None);
        let body = index
            .find("blocked.example.cn", "/", "/")
            .map(|c| c.body.clone());
        assert_eq!(
            body.as_deref(),
            Some(&b"451 Unavailable For Legal Reasons\nCase: case-1\n"[..])
        );
    }

    #[test]
    fn the_longest_prefix_wins() {
        let (index, errors) = index("h.cn/a/ outer\nh.cn/a/b/ inner\nh.cn all\n");
        assert!(errors.is_empty(), "{errors:?}");
        let case = |p| index.find("h.cn", p, p).map(|c| c.id.to_string());
        assert_eq!(case("/a/b/c").as_deref(), Some("takedown:inner"));
        assert_eq!(case("/a/bx").as_deref(), Some("takedown:outer"));
        assert_eq!(case("/z").as_deref(), Some("takedown:all"));
        assert_eq!(
            index
                .find("other.cn", "/a/b/c", "/a/b/c")
                .map(|c| c.id.clone()),
            None
        );
    }

    #[test]
    fn bad_lines_name_file_and_line() {
        let (_, errors) = index("ok.example.cn case\nno-case.example.cn\nb@d.cn/x c\nh.cn/a?b c\n");
        assert_eq!(
            errors,
            [
                "policy.takedown_files[0]: conf/t.txt:2: no case reference: \
                 expected HOST, HOST/PATH-PREFIX or https://HOST/PATH, a space, then the case \
                 reference",
                "policy.takedown_files[0]: conf/t.txt:3: \"b@d.cn\" is not a \
                 host name: expected HOST, HOST/PATH-PREFIX or https://HOST/PATH, a space, then the \
                 case reference",
                "policy.takedown_files[0]: conf/t.txt:4: \"h.cn/a?b\": a prefix \
                 has no query; list the exact URL as https://h.cn/a?b",
            ]
        );
    }
}
