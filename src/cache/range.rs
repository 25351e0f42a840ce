//! A `Range` request answered from a stored response (RFC 9110 14): one byte range of the
//! whole body as `206`, or `416` when none of it is there. Several ranges, a range of a unit
//! other than bytes, a bad one, or an `If-Range` that does not match the stored response get
//! the whole response, as a server may answer them.

/// What part of a stored body a request gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    /// All of it (`200`).
    Whole,
    /// Bytes `first..=last` (`206`).
    Bytes(u64, u64),
    /// None: the range starts past its end (`416`).
    Unsatisfiable,
}

/// The part of a `len`-byte body that `range` (the request's `Range`) asks for; `matches`:
/// the request's `If-Range`, if any, names the stored response.
pub fn part(range: Option<&[u8]>, matches: bool, len: u64) -> Part {
    let Some(spec) = range.and_then(|r| r.trim_ascii().strip_prefix(b"bytes=")) else {
        return Part::Whole;
    };
    if !matches || spec.contains(&b',') {
        return Part::Whole;
    }
    let Some(dash) = spec.iter().position(|&b| b == b'-') else {
        return Part::Whole;
    };
    let (first, last) = (number(&spec[..dash]), number(&spec[dash + 1..]));
    match (first, last) {
        // The last `n` bytes.
        (None, Some(n)) if n > 0 && len > 0 => Part::Bytes(len.saturating_sub(n), len - 1),
        (None, Some(_)) => Part::Unsatisfiable,
        (Some(a), _) if a >= len => Part::Unsatisfiable,
        (Some(a), None) => Part::Bytes(a, len - 1),
        (Some(a), Some(b)) if b >= a => Part::Bytes(a, b.min(len - 1)),
        _ => Part::Whole,
    }
}

/// Digits as a number; `None` for empty or anything else.
fn number(digits: &[u8]) -> Option<u64> {
    let d = digits.trim_ascii();
    if d.is_empty() || !d.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(d).ok()?.parse().ok()
}

/// Whether `if_range` (an entity tag or a date) names the stored response with `etag` and
/// `last_modified`: a strong tag equal to its own, or its exact `Last-Modified`.
pub fn if_range_matches(
    if_range: &[u8],
    etag: Option<&[u8]>,
    last_modified: Option<&[u8]>,
) -> bool {
    let given = if_range.trim_ascii();
    if given.starts_with(b"\"") {
        return etag.is_some_and(|e| e.trim_ascii() == given);
    }
    if given.starts_with(b"W/") {
        return false;
    }
    last_modified.is_some_and(|m| m.trim_ascii() == given)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_range_or_the_whole() {
        let p = |r: &str| part(Some(r.as_bytes()), true, 10);
        assert_eq!(p("bytes=0-3"), Part::Bytes(0, 3));
        assert_eq!(p("bytes=4-"), Part::Bytes(4, 9));
        assert_eq!(p("bytes=-3"), Part::Bytes(7, 9));
        assert_eq!(p("bytes=-30"), Part::Bytes(0, 9));
        assert_eq!(p("bytes=5-100"), Part::Bytes(5, 9));
        assert_eq!(p("bytes=10-"), Part::Unsatisfiable);
        assert_eq!(p("bytes=-0"), Part::Unsatisfiable);
        assert_eq!(p("bytes=0-1,3-4"), Part::Whole);
        assert_eq!(p("bytes=3-1"), Part::Whole);
        assert_eq!(p("items=0-1"), Part::Whole);
        assert_eq!(part(None, true, 10), Part::Whole);
        assert_eq!(part(Some(b"bytes=0-1"), false, 10), Part::Whole);
    }

    #[test]
    fn if_range_names_the_stored_response() {
        let etag = Some(&b"\"v1\""[..]);
        let date = Some(&b"Tue, 01 Dec 2026 00:00:00 GMT"[..]);
        assert!(if_range_matches(b"\"v1\"", etag, date));
        assert!(!if_range_matches(b"\"v2\"", etag, date));
        assert!(!if_range_matches(b"W/\"v1\"", etag, date));
        assert!(if_range_matches(
            b"Tue, 01 Dec 2026 00:00:00 GMT",
            etag,
            date
        ));
        assert!(!if_range_matches(
            b"Wed, 02 Dec 2026 00:00:00 GMT",
            etag,
            date
        ));
    }
}
