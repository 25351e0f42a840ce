//! Cache keys: the primary key of a request (its Host, path and query as the route says), and
//! a variant's key, the primary one with the request's values of the fields a response's
//! `Vary` names.

use super::KeyParts;

/// The request's fields, as the cache reads them for `Vary`.
pub trait RequestFields: Sync {
    /// Appends the values of every field named `name` (lowercase) to `out`, joined by ", ".
    fn values(&self, name: &str, out: &mut Vec<u8>);
    /// All its fields (names lowercase), kept for the key of the response that fills.
    fn taken(&self) -> Taken;
}

/// The primary key: the site's name (so that sites whose keys leave the Host out never share
/// an entry), then `host`, `path` and `?query` as `parts` say.
pub fn primary(site: &str, parts: KeyParts, host: &str, path: &str, query: Option<&str>) -> String {
    let mut key = String::with_capacity(site.len() + host.len() + path.len() + 64);
    key.push_str(site);
    key.push(SITE_END);
    if parts.host {
        key.push_str(&host.to_ascii_lowercase());
    }
    if parts.path {
        key.push_str(path);
    }
    if let Some(q) = query.filter(|_| parts.query) {
        key.push('?');
        key.push_str(q);
    }
    key
}

/// Ends the site's name in a key.
pub const SITE_END: char = '\u{1}';

/// The variant's key: `primary`, then each name of `vary` with the request's values.
pub fn variant(primary: &str, vary: &[Box<str>], request: &dyn RequestFields) -> String {
    let mut key = primary.as_bytes().to_vec();
    let mut values = Vec::new();
    for name in vary {
        values.clear();
        request.values(name, &mut values);
        key.push(0);
        key.extend_from_slice(name.as_bytes());
        key.push(b'=');
        key.extend_from_slice(&values);
    }
    // Field values may hold bytes that are not UTF-8: they are kept, escaped.
    match String::from_utf8(key) {
        Ok(key) => key,
        Err(e) => e.into_bytes().escape_ascii().to_string(),
    }
}

/// The lowercase field names of `Vary` values (`*` is never stored, see `fresh`).
pub fn vary_names<'a>(values: impl Iterator<Item = &'a [u8]>) -> Vec<Box<str>> {
    let mut names: Vec<Box<str>> = Vec::new();
    for value in values {
        for name in value.split(|&b| b == b',').map(<[u8]>::trim_ascii) {
            let name = String::from_utf8_lossy(name).to_ascii_lowercase();
            if !name.is_empty() && !names.iter().any(|n| **n == *name) {
                names.push(name.into());
            }
        }
    }
    names.sort();
    names
}

/// A request's fields taken at lookup, for the variant key of the response that fills.
#[derive(Debug, Default, Clone)]
pub struct Taken(pub Vec<(Box<str>, Vec<u8>)>);

impl RequestFields for Taken {
    fn values(&self, name: &str, out: &mut Vec<u8>) {
        for (n, v) in &self.0 {
            if **n == *name {
                if !out.is_empty() {
                    out.extend_from_slice(b", ");
                }
                out.extend_from_slice(v);
            }
        }
    }

    fn taken(&self) -> Taken {
        self.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_hold_the_configured_parts_and_the_varied_values() {
        let all = KeyParts {
            host: true,
            path: true,
            query: true,
        };
        assert_eq!(
            primary("s", all, "A.cn", "/x", Some("q=1")),
            "s\u{1}a.cn/x?q=1"
        );
        let no_query = KeyParts {
            query: false,
            ..all
        };
        assert_eq!(
            primary("s", no_query, "a.cn", "/x", Some("q=1")),
            "s\u{1}a.cn/x"
        );
        let names = vary_names([&b"Accept-Language, accept"[..]].into_iter());
        assert_eq!(
            names,
            vec![Box::from("accept"), Box::from("accept-language")]
        );
        let taken = Taken(vec![("accept-language".into(), b"zh".to_vec())]);
        let a = variant("a.cn/x", &names, &taken);
        let taken = Taken(vec![("accept-language".into(), b"en".to_vec())]);
        assert_ne!(a, variant("a.cn/x", &names, &taken));
    }
}
