//! `Cache-Control` directives (RFC 9111 5.2) of a request or a response: every field value
//! added in turn, names case-insensitive, arguments a token or a quoted string.

/// The directives the cache acts on.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Directives {
    /// `no-store`: never stored.
    pub no_store: bool,
    /// `no-cache`: not served without revalidation.
    pub no_cache: bool,
    /// `private` (its field-name form is taken as the whole response's).
    pub private: bool,
    /// `public`: storable even for a request with `Authorization`.
    pub public: bool,
    /// `must-revalidate`: never served stale.
    pub must_revalidate: bool,
    /// `proxy-revalidate`: as `must-revalidate`, for shared caches.
    pub proxy_revalidate: bool,
    /// Seconds; an argument that is not digits counts as 0 (RFC 9111 4.2.1: stale).
    pub max_age: Option<u64>,
    /// `s-maxage`: a shared cache's `max-age`.
    pub s_maxage: Option<u64>,
    /// `stale-while-revalidate` seconds.
    pub stale_while_revalidate: Option<u64>,
    /// `stale-if-error` seconds.
    pub stale_if_error: Option<u64>,
}

impl Directives {
    /// The directives of all the `Cache-Control` values `values`.
    pub fn of<'a>(values: impl IntoIterator<Item = &'a [u8]>) -> Self {
        let mut d = Self::default();
        for value in values {
            d.add(value);
        }
        d
    }

    /// Adds the directives of one field value.
    pub fn add(&mut self, value: &[u8]) {
        for (name, arg) in directives(value) {
            let seconds = || arg.map_or(0, delta_seconds);
            match name.to_ascii_lowercase().as_slice() {
                b"no-store" => self.no_store = true,
                b"no-cache" => self.no_cache = true,
                b"private" => self.private = true,
                b"public" => self.public = true,
                b"must-revalidate" => self.must_revalidate = true,
                b"proxy-revalidate" => self.proxy_revalidate = true,
                // The first of a repeated directive counts.
                b"max-age" => _ = self.max_age.get_or_insert_with(seconds),
                b"s-maxage" => _ = self.s_maxage.get_or_insert_with(seconds),
                b"stale-while-revalidate" => {
                    _ = self.stale_while_revalidate.get_or_insert_with(seconds)
                }
                b"stale-if-error" => _ = self.stale_if_error.get_or_insert_with(seconds),
                _ => {}
            }
        }
    }
}

/// Delta-seconds: digits; more than fit saturate (RFC 9111 1.2.2), anything else is 0.
fn delta_seconds(arg: &[u8]) -> u64 {
    if arg.is_empty() || !arg.iter().all(u8::is_ascii_digit) {
        return 0;
    }
    arg.iter().fold(0u64, |n, d| {
        n.saturating_mul(10).saturating_add(u64::from(d - b'0'))
    })
}

/// The `name[=argument]` items of a value, commas inside quoted strings kept (quotes taken
/// off the argument).
fn directives(value: &[u8]) -> impl Iterator<Item = (&[u8], Option<&[u8]>)> {
    let mut rest = value;
    std::iter::from_fn(move || loop {
        if rest.is_empty() {
            return None;
        }
        let mut quoted = false;
        let end = rest
            .iter()
            .position(|&b| {
                if b == b'"' {
                    quoted = !quoted;
                }
                b == b',' && !quoted
            })
            .unwrap_or(rest.len());
        let item = rest[..end].trim_ascii();
        rest = rest.get(end + 1..).unwrap_or(&[]);
        if item.is_empty() {
            continue;
        }
        return Some(match item.iter().position(|&b| b == b'=') {
            None => (item, None),
            Some(eq) => {
                let arg = item[eq + 1..].trim_ascii();
                let arg = arg
                    .strip_prefix(b"\"")
                    .and_then(|a| a.strip_suffix(b"\""))
                    .unwrap_or(arg);
                (item[..eq].trim_ascii(), Some(arg))
            }
        });
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directives_are_read_case_insensitively_across_fields() {
        let d = Directives::of([&b"Public, MAX-AGE=60"[..], b"s-maxage=\"30\", no-cache"]);
        assert!(d.public && d.no_cache && !d.no_store);
        assert_eq!((d.max_age, d.s_maxage), (Some(60), Some(30)));
    }

    #[test]
    fn quoted_commas_and_bad_numbers() {
        let d = Directives::of([&b"private=\"set-cookie, x-a\", max-age=abc, max-age=5"[..]]);
        assert!(d.private);
        // A bad argument counts as 0 (stale), and the first one counts.
        assert_eq!(d.max_age, Some(0));
        let d = Directives::of([&b"max-age=99999999999999999999999, stale-if-error=7"[..]]);
        assert_eq!(d.max_age, Some(u64::MAX));
        assert_eq!(d.stale_if_error, Some(7));
    }
}
