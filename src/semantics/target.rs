//! One canonical request target and Host, which every decision (routing, takedowns, rules) sees
//! and the backend receives, whichever protocol the request came in on.
//!
//! A takedown of `/blocked` must hold for every spelling a backend would read as the same
//! resource: `/%62locked`, `//blocked`, `/x/../blocked`, `Blocked.Example.cn.`. So the path is
//! brought to one form before anything looks at it: escapes of unreserved characters decoded
//! (RFC 3986 2.3), other escapes in uppercase hex, characters a URI may not hold raw escaped,
//! dot segments removed (RFC 3986 5.2.4) and empty segments merged (nginx's `merge_slashes`).
//! What has no single meaning is refused with 400 rather than guessed at: an escaped `/`, `\`
//! or NUL (which backends decode differently; Apache's default answers them with 404), a raw
//! `\`, a fragment, a bad escape, a `..` above the root. The query goes on as it came.

use std::borrow::Cow;

/// Why a request target or Host has no canonical form; the request is answered 400.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    /// Not origin-form (`/path`) or absolute-form (`http://host/path`).
    #[error("the request target is neither a path nor an http(s) URL")]
    Form,
    /// `%` not followed by two hex digits.
    #[error("a '%' in the path is not followed by two hex digits")]
    Escape,
    /// `%2F`, `%5C` or `%00`: backends disagree on whether they separate segments.
    #[error("the path holds an escaped '/', '\\' or NUL")]
    EncodedSeparator,
    /// A raw backslash, space or control byte.
    #[error("the path holds a byte a URI cannot hold")]
    Byte,
    /// A `#` in the target: fragments are not sent to servers.
    #[error("the request target holds a fragment ('#')")]
    Fragment,
    /// `..` would climb above `/`.
    #[error("a '..' segment climbs above the root")]
    AboveRoot,
    /// Missing, empty or not a host name, IP literal and port.
    #[error("the Host is missing or not a host name")]
    Host,
}

/// A canonical origin-form target: the path, then the query as received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target<'a> {
    text: Cow<'a, str>,
    path_len: usize,
}

impl<'a> Target<'a> {
    /// Path and query, as sent to the backend.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The canonical path.
    pub fn path(&self) -> &str {
        &self.text[..self.path_len]
    }

    /// The query without its `?`, if any.
    pub fn query(&self) -> Option<&str> {
        self.text.get(self.path_len + 1..)
    }

    /// An owned copy.
    pub fn into_owned(self) -> Target<'static> {
        Target {
            text: Cow::Owned(self.text.into_owned()),
            path_len: self.path_len,
        }
    }
}

/// A canonical Host: lowercase, no trailing dot, the port kept where one was given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Host<'a> {
    text: Cow<'a, str>,
    name_len: usize,
}

impl<'a> Host<'a> {
    /// Name and port, as sent to the backend.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The name (or IP literal) without the port: what sites match.
    pub fn name(&self) -> &str {
        &self.text[..self.name_len]
    }

    /// An owned copy.
    pub fn into_owned(self) -> Host<'static> {
        Host {
            text: Cow::Owned(self.text.into_owned()),
            name_len: self.name_len,
        }
    }
}

/// A request's target and Host in canonical form. `target` is the request line's target (or
/// HTTP/2's `:path`), `host` the Host field (or `:authority`); an absolute-form target's
/// authority wins over the Host field (RFC 9112 3.2.2).
pub fn canonical<'a>(
    target: &'a str,
    host: Option<&'a str>,
) -> Result<(Target<'a>, Host<'a>), TargetError> {
    let (authority, origin) = split_absolute(target)?;
    let host = canonical_host(authority.or(host).ok_or(TargetError::Host)?)?;
    Ok((canonical_target(origin)?, host))
}

/// `(authority, path-and-query)` of an absolute-form target; `(None, target)` otherwise.
fn split_absolute(target: &str) -> Result<(Option<&str>, &str), TargetError> {
    if target.starts_with('/') {
        return Ok((None, target));
    }
    let rest = strip_prefix_ci(target, "http://")
        .or_else(|| strip_prefix_ci(target, "https://"))
        .ok_or(TargetError::Form)?;
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, origin) = rest.split_at(end);
    if authority.contains('@') {
        // userinfo has no place in a request (RFC 9110 4.2.4).
        return Err(TargetError::Host);
    }
    match origin.as_bytes().first() {
        None => Ok((Some(authority), "/")),
        Some(b'/') => Ok((Some(authority), origin)),
        // `http://host?q`: the path is empty, which means `/`; rare enough to refuse.
        Some(_) => Err(TargetError::Form),
    }
}

fn strip_prefix_ci<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &s[prefix.len()..])
}

/// The canonical form of an origin-form target.
pub fn canonical_target(target: &str) -> Result<Target<'_>, TargetError> {
    if !target.starts_with('/') {
        return Err(TargetError::Form);
    }
    let path_len = target.find(['?', '#']).unwrap_or(target.len());
    let (path, query) = target.split_at(path_len);
    if query.contains('#') {
        return Err(TargetError::Fragment);
    }
    if query.bytes().any(|b| b <= b' ' || b == 0x7f) {
        return Err(TargetError::Byte);
    }
    if is_canonical(path) {
        return Ok(Target {
            text: Cow::Borrowed(target),
            path_len,
        });
    }
    let path = normalize(path)?;
    let path_len = path.len();
    let mut text = path;
    text.push_str(query);
    Ok(Target {
        text: Cow::Owned(text),
        path_len,
    })
}

/// Whether a path is already canonical: plain characters only, no escape, no empty or dot
/// segment. The common case, checked without allocating.
fn is_canonical(path: &str) -> bool {
    let bytes = path.as_bytes();
    let plain = bytes.iter().all(|&b| is_pchar(b) || b == b'/');
    plain && !path.contains("//") && !bytes.windows(2).any(|w| w == b"/.")
    // `/.` above also catches `/.well-known`, which then takes the slow path: still right.
}

/// Characters a path segment holds unescaped (RFC 3986 3.3), less `%`.
fn is_pchar(b: u8) -> bool {
    is_unreserved(b) || b"!$&'()*+,;=:@".contains(&b)
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-._~".contains(&b)
}

fn hex(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

fn push_escaped(out: &mut Vec<u8>, b: u8) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    out.extend_from_slice(&[b'%', HEX[usize::from(b >> 4)], HEX[usize::from(b & 15)]]);
}

/// Decodes and re-escapes a path into canonical bytes, then resolves its segments.
fn normalize(path: &str) -> Result<String, TargetError> {
    let bytes = path.as_bytes();
    let mut flat = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        i += 1;
        match b {
            b'%' => {
                let (Some(hi), Some(lo)) = (
                    bytes.get(i).copied().and_then(hex),
                    bytes.get(i + 1).copied().and_then(hex),
                ) else {
                    return Err(TargetError::Escape);
                };
                i += 2;
                let v = hi << 4 | lo;
                if v == b'/' || v == b'\\' || v == 0 {
                    return Err(TargetError::EncodedSeparator);
                }
                if is_unreserved(v) {
                    flat.push(v);
                } else {
                    push_escaped(&mut flat, v);
                }
            }
            b'/' => flat.push(b),
            _ if is_pchar(b) => flat.push(b),
            b'#' => return Err(TargetError::Fragment),
            b'\\' => return Err(TargetError::Byte),
            _ if b <= b' ' || b == 0x7f => return Err(TargetError::Byte),
            // `"<>^`{|}` and bytes of raw UTF-8: what a browser would have escaped.
            _ => push_escaped(&mut flat, b),
        }
    }
    resolve_segments(&flat)
}

/// Removes dot segments and merges empty ones; a trailing `/` (or a final `.` or `..`) stays a
/// trailing `/`.
fn resolve_segments(path: &[u8]) -> Result<String, TargetError> {
    let mut kept: Vec<&[u8]> = Vec::new();
    let mut trailing = false;
    let segments: Vec<&[u8]> = path.get(1..).unwrap_or(&[]).split(|&b| b == b'/').collect();
    let last = segments.len().saturating_sub(1);
    for (i, seg) in segments.into_iter().enumerate() {
        trailing = false;
        match seg {
            b"" | b"." => trailing = i == last,
            b".." => {
                kept.pop().ok_or(TargetError::AboveRoot)?;
                trailing = i == last;
            }
            _ => kept.push(seg),
        }
    }
    let mut out = String::with_capacity(path.len());
    for seg in &kept {
        out.push('/');
        // Only ASCII went into `path`: every non-ASCII byte was escaped.
        out.push_str(std::str::from_utf8(seg).map_err(|_| TargetError::Byte)?);
    }
    if trailing || kept.is_empty() {
        out.push('/');
    }
    Ok(out)
}

/// The canonical form of a Host: lowercase, without a trailing dot; a port of digits kept.
pub fn canonical_host(raw: &str) -> Result<Host<'_>, TargetError> {
    let (name, port) = split_port(raw)?;
    let name = name.strip_suffix('.').unwrap_or(name);
    let literal = name.starts_with('[');
    let valid = if literal {
        name.len() > 2
            && name.ends_with(']')
            && name[1..name.len() - 1]
                .bytes()
                .all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.')
    } else {
        !name.is_empty()
            && !name.starts_with('.')
            && !name.ends_with('.')
            && !name.contains("..")
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_')
    };
    if !valid {
        return Err(TargetError::Host);
    }
    let canonical_as_sent = name.len() + port.map_or(0, |p| p.len() + 1) == raw.len()
        && !name.bytes().any(|b| b.is_ascii_uppercase());
    if canonical_as_sent {
        return Ok(Host {
            text: Cow::Borrowed(raw),
            name_len: name.len(),
        });
    }
    let mut text = name.to_ascii_lowercase();
    if let Some(port) = port {
        text.push(':');
        text.push_str(port);
    }
    Ok(Host {
        text: Cow::Owned(text),
        name_len: name.len(),
    })
}

/// `(name, port)`: the port digits after the last `:` outside an IP literal; an empty port
/// (`host:`) is dropped.
fn split_port(raw: &str) -> Result<(&str, Option<&str>), TargetError> {
    let colon = match raw.rfind(':') {
        Some(i) if !raw[i..].contains(']') => Some(i),
        _ => None,
    };
    let Some(i) = colon else {
        return Ok((raw, None));
    };
    let (name, port) = (&raw[..i], &raw[i + 1..]);
    if !raw.starts_with('[') && name.contains(':') {
        return Err(TargetError::Host);
    }
    if port.is_empty() {
        return Ok((name, None));
    }
    let valid = port.len() <= 5
        && port.bytes().all(|b| b.is_ascii_digit())
        && port.parse::<u32>().is_ok_and(|p| p <= 65535);
    if !valid {
        return Err(TargetError::Host);
    }
    Ok((name, Some(port)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(raw: &str) -> Result<String, TargetError> {
        canonical_target(raw).map(|t| t.as_str().to_owned())
    }

    #[test]
    fn spellings_of_one_path_become_one() {
        for raw in [
            "/blocked",
            "/%62locked",
            "/%62%6C%6f%63ked",
            "//blocked",
            "/x/../blocked",
            "/./blocked",
            "/x/%2e%2e/blocked",
            "/x/%2E./blocked",
            "///x//..//blocked",
        ] {
            assert_eq!(path(raw).as_deref(), Ok("/blocked"), "{raw}");
        }
    }

    #[test]
    fn canonical_paths_are_borrowed_and_queries_kept() {
        let t = canonical_target("/a/b.css?x=%2F&y=..").expect("canonical");
        assert!(matches!(t.text, Cow::Borrowed(_)));
        assert_eq!(t.path(), "/a/b.css");
        assert_eq!(t.query(), Some("x=%2F&y=.."));
        let t = canonical_target("//a?q").expect("canonical");
        assert_eq!((t.path(), t.query()), ("/a", Some("q")));
        assert_eq!(canonical_target("/").expect("root").query(), None);
    }

    #[test]
    fn trailing_slashes_and_dots() {
        assert_eq!(path("/a/").as_deref(), Ok("/a/"));
        assert_eq!(path("/a/.").as_deref(), Ok("/a/"));
        assert_eq!(path("/a/b/..").as_deref(), Ok("/a/"));
        assert_eq!(path("/a/..").as_deref(), Ok("/"));
        assert_eq!(path("/.well-known/x").as_deref(), Ok("/.well-known/x"));
        assert_eq!(path("/a/..b").as_deref(), Ok("/a/..b"));
    }

    #[test]
    fn reserved_escapes_stay_escaped_in_uppercase() {
        assert_eq!(path("/a%3fb").as_deref(), Ok("/a%3Fb"));
        assert_eq!(path("/%E4%B8%AD").as_deref(), Ok("/%E4%B8%AD"));
        assert_eq!(
            path("/中").as_deref(),
            Ok("/%E4%B8%AD"),
            "raw UTF-8 is escaped"
        );
        assert_eq!(path("/a\"b{").as_deref(), Ok("/a%22b%7B"));
    }

    #[test]
    fn what_has_no_single_meaning_is_refused() {
        for (raw, e) in [
            ("/a%2Fb", TargetError::EncodedSeparator),
            ("/a%2fb", TargetError::EncodedSeparator),
            ("/a%5Cb", TargetError::EncodedSeparator),
            ("/a%00", TargetError::EncodedSeparator),
            ("/a\\b", TargetError::Byte),
            ("/a%zz", TargetError::Escape),
            ("/a%4", TargetError::Escape),
            ("/..", TargetError::AboveRoot),
            ("/a/../../b", TargetError::AboveRoot),
            ("/a#f", TargetError::Fragment),
            ("/a?b#f", TargetError::Fragment),
            ("*", TargetError::Form),
            ("a/b", TargetError::Form),
            ("/a\tb", TargetError::Byte),
        ] {
            assert_eq!(canonical_target(raw), Err(e), "{raw:?}");
        }
    }

    #[test]
    fn hosts_are_lowercase_without_a_trailing_dot() {
        let h = |raw| canonical_host(raw).map(|h| (h.as_str().to_owned(), h.name().to_owned()));
        assert_eq!(
            h("Shop.Example.CN."),
            Ok(("shop.example.cn".into(), "shop.example.cn".into()))
        );
        assert_eq!(
            h("shop.example.cn.:8443"),
            Ok(("shop.example.cn:8443".into(), "shop.example.cn".into()))
        );
        assert_eq!(h("a.cn:"), Ok(("a.cn".into(), "a.cn".into())));
        assert_eq!(h("[::1]:80"), Ok(("[::1]:80".into(), "[::1]".into())));
        assert!(matches!(
            canonical_host("shop.example.cn").map(|h| h.text),
            Ok(Cow::Borrowed(_))
        ));
        for bad in [
            "",
            ".",
            "a..cn",
            "a b",
            "a.cn:x",
            "a.cn:99999",
            "a:b:c",
            "[zz]",
            "a/b",
            "a.cn..",
        ] {
            assert_eq!(canonical_host(bad), Err(TargetError::Host), "{bad:?}");
        }
    }

    #[test]
    fn absolute_form_takes_its_authority() {
        let (t, h) = canonical("http://Shop.Example.cn./%62locked?x", Some("other.cn"))
            .expect("absolute form");
        assert_eq!((t.as_str(), h.as_str()), ("/blocked?x", "shop.example.cn"));
        let (t, h) = canonical("HTTPS://a.cn", None).expect("no path is /");
        assert_eq!((t.as_str(), h.as_str()), ("/", "a.cn"));
        assert_eq!(
            canonical("http://u@a.cn/", None),
            Err(TargetError::Host),
            "userinfo"
        );
        assert_eq!(canonical("ftp://a.cn/", None), Err(TargetError::Form));
        assert_eq!(canonical("/", None), Err(TargetError::Host), "no Host");
    }
}
