//! Whether a response may be stored by a shared cache and for how long (RFC 9111 3, 4.2): the
//! route's rules over the response's `Cache-Control`, `Expires`, `Date`, `Age` and
//! `Last-Modified`, and the request's method, `Authorization` and `no-store`.

use std::time::{Duration, SystemTime};

use super::control::Directives;
use super::Rules;

/// What of the request decides whether its response may be stored.
#[derive(Debug, Clone, Copy, Default)]
pub struct Asked {
    /// GET (HEAD responses have no body to store).
    pub get: bool,
    /// It carries `Authorization`.
    pub authorization: bool,
    /// The request's own `Cache-Control: no-store`.
    pub no_store: bool,
}

/// How long a stored response stays fresh, and what may be done with it once stale.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Freshness {
    /// Its freshness lifetime.
    pub lifetime: Duration,
    /// Its age when it was stored (`Age`, or the time since its `Date`).
    pub initial_age: Duration,
    /// `stale-while-revalidate`.
    pub while_revalidate: Duration,
    /// `stale-if-error`.
    pub if_error: Duration,
    /// `must-revalidate` or `proxy-revalidate`: never served stale.
    pub must_revalidate: bool,
}

/// Why a response is not stored (the `detail` of its `Cache-Status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotStored {
    /// Not a GET.
    Method,
    /// A status stored only with an explicit lifetime, and this has none (or one never stored).
    Status,
    /// `no-store` in the request or the response.
    NoStore,
    /// `private`.
    Private,
    /// `no-cache` (served only after revalidation).
    NoCache,
    /// A request with `Authorization` and a response without `public`, `s-maxage` or
    /// `must-revalidate`.
    Authorization,
    /// `Set-Cookie` on a route that does not store those.
    SetCookie,
    /// `Vary: *`.
    VaryStar,
    /// No lifetime left (none given and no `default_ttl`, or older than its lifetime).
    NoLifetime,
    /// Larger than the route's `max_object_bytes`.
    TooLarge,
}

impl NotStored {
    /// The reason as a token.
    pub fn as_str(self) -> &'static str {
        match self {
            NotStored::Method => "method",
            NotStored::Status => "status",
            NotStored::NoStore => "no-store",
            NotStored::Private => "private",
            NotStored::NoCache => "no-cache",
            NotStored::Authorization => "authorization",
            NotStored::SetCookie => "set-cookie",
            NotStored::VaryStar => "vary-star",
            NotStored::NoLifetime => "no-lifetime",
            NotStored::TooLarge => "too-large",
        }
    }
}

/// Statuses a cache may store with a heuristic lifetime (RFC 9110 15.1); others need an
/// explicit one.
const HEURISTIC: [u16; 11] = [200, 203, 204, 300, 301, 308, 404, 405, 410, 414, 501];

/// The response fields freshness reads, gathered in one pass.
#[derive(Debug, Default)]
struct Fields<'a> {
    control: Directives,
    expires: Option<&'a [u8]>,
    date: Option<SystemTime>,
    age: Option<u64>,
    last_modified: Option<SystemTime>,
    set_cookie: bool,
    vary_star: bool,
}

impl<'a> Fields<'a> {
    fn of(fields: impl Iterator<Item = (&'a str, &'a [u8])>) -> Self {
        let mut f = Fields::default();
        for (name, value) in fields {
            match name.to_ascii_lowercase().as_str() {
                "cache-control" => f.control.add(value),
                "expires" => f.expires = f.expires.or(Some(value)),
                "date" => f.date = f.date.or_else(|| http_date(value)),
                "age" => f.age = f.age.or_else(|| digits(value)),
                "last-modified" => f.last_modified = f.last_modified.or_else(|| http_date(value)),
                "set-cookie" => f.set_cookie = true,
                "vary" => {
                    f.vary_star |= value.split(|&b| b == b',').any(|v| v.trim_ascii() == b"*")
                }
                _ => {}
            }
        }
        f
    }
}

/// Whether a response to `asked` with `status` and `fields` may be stored under `rules`
/// (received at `now`), and its freshness.
pub fn judge<'a>(
    status: u16,
    fields: impl Iterator<Item = (&'a str, &'a [u8])>,
    asked: Asked,
    rules: &Rules,
    now: SystemTime,
) -> Result<Freshness, NotStored> {
    if !asked.get {
        return Err(NotStored::Method);
    }
    let f = Fields::of(fields);
    let c = &f.control;
    if asked.no_store || c.no_store {
        return Err(NotStored::NoStore);
    }
    if c.private {
        return Err(NotStored::Private);
    }
    // Served without revalidation only: `no-cache` responses wait for revalidation support.
    if c.no_cache {
        return Err(NotStored::NoCache);
    }
    if asked.authorization && !(c.public || c.s_maxage.is_some() || c.must_revalidate) {
        return Err(NotStored::Authorization);
    }
    if f.set_cookie && !rules.store_set_cookie {
        return Err(NotStored::SetCookie);
    }
    if f.vary_star {
        return Err(NotStored::VaryStar);
    }
    let explicit = explicit_lifetime(&f);
    let heuristic = HEURISTIC.contains(&status);
    if !heuristic && (explicit.is_none() || !(200..600).contains(&status) || status == 206) {
        return Err(NotStored::Status);
    }
    let lifetime = match rules.force_ttl {
        Some(ttl) => ttl,
        None => explicit.unwrap_or_else(|| heuristic_lifetime(&f, rules.default_ttl)),
    };
    let initial_age = initial_age(&f, now);
    if lifetime <= initial_age {
        return Err(NotStored::NoLifetime);
    }
    Ok(Freshness {
        lifetime,
        initial_age,
        while_revalidate: Duration::from_secs(c.stale_while_revalidate.unwrap_or(0)),
        if_error: Duration::from_secs(c.stale_if_error.unwrap_or(0)),
        must_revalidate: c.must_revalidate || c.proxy_revalidate,
    })
}

/// `s-maxage`, else `max-age`, else `Expires` less `Date` (an `Expires` that is not a date is
/// in the past).
fn explicit_lifetime(f: &Fields<'_>) -> Option<Duration> {
    let c = &f.control;
    if let Some(s) = c.s_maxage.or(c.max_age) {
        return Some(Duration::from_secs(s));
    }
    let expires = f.expires?;
    let Some(expires) = http_date(expires) else {
        return Some(Duration::ZERO);
    };
    let date = f.date.unwrap_or_else(SystemTime::now);
    Some(expires.duration_since(date).unwrap_or(Duration::ZERO))
}

/// 10% of the time since `Last-Modified` (RFC 9111 4.2.2), at most `default_ttl`; without
/// `Last-Modified`, `default_ttl`.
fn heuristic_lifetime(f: &Fields<'_>, default_ttl: Duration) -> Duration {
    let Some(modified) = f.last_modified else {
        return default_ttl;
    };
    let date = f.date.unwrap_or_else(SystemTime::now);
    let since = date.duration_since(modified).unwrap_or(Duration::ZERO);
    (since / 10).min(default_ttl)
}

/// The response's age on arrival (RFC 9111 4.2.3): its `Age`, or the time since its `Date`,
/// whichever is more.
fn initial_age(f: &Fields<'_>, now: SystemTime) -> Duration {
    let apparent = f
        .date
        .and_then(|d| now.duration_since(d).ok())
        .unwrap_or(Duration::ZERO);
    apparent.max(Duration::from_secs(f.age.unwrap_or(0)))
}

fn http_date(value: &[u8]) -> Option<SystemTime> {
    httpdate::parse_http_date(std::str::from_utf8(value).ok()?.trim()).ok()
}

fn digits(value: &[u8]) -> Option<u64> {
    let v = value.trim_ascii();
    (!v.is_empty() && v.iter().all(u8::is_ascii_digit))
        .then(|| std::str::from_utf8(v).ok()?.parse().ok())
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::KeyParts;

    fn rules() -> Rules {
        Rules {
            key: KeyParts {
                host: true,
                path: true,
                query: true,
            },
            default_ttl: Duration::from_secs(60),
            force_ttl: None,
            max_object_bytes: 1 << 20,
            store_set_cookie: false,
        }
    }

    const GET: Asked = Asked {
        get: true,
        authorization: false,
        no_store: false,
    };

    fn judged(status: u16, fields: &[(&str, &str)], asked: Asked) -> Result<Freshness, NotStored> {
        let fields = fields.iter().map(|(n, v)| (*n, v.as_bytes()));
        judge(status, fields, asked, &rules(), SystemTime::now())
    }

    #[test]
    fn max_age_and_s_maxage_set_the_lifetime() {
        let f = judged(200, &[("Cache-Control", "max-age=30")], GET).expect("stored");
        assert_eq!(f.lifetime, Duration::from_secs(30));
        let f = judged(200, &[("cache-control", "max-age=30, s-maxage=90")], GET).expect("stored");
        assert_eq!(f.lifetime, Duration::from_secs(90));
    }

    #[test]
    fn what_a_shared_cache_must_not_store() {
        let cc = |v| [("cache-control", v)];
        assert_eq!(judged(200, &cc("no-store"), GET), Err(NotStored::NoStore));
        assert_eq!(
            judged(200, &cc("private, max-age=9"), GET),
            Err(NotStored::Private)
        );
        let head = Asked { get: false, ..GET };
        assert_eq!(judged(200, &cc("max-age=9"), head), Err(NotStored::Method));
        let auth = Asked {
            authorization: true,
            ..GET
        };
        assert_eq!(
            judged(200, &cc("max-age=9"), auth),
            Err(NotStored::Authorization)
        );
        assert!(judged(200, &cc("public, max-age=9"), auth).is_ok());
        let cookie = [("cache-control", "max-age=9"), ("set-cookie", "a=b")];
        assert_eq!(judged(200, &cookie, GET), Err(NotStored::SetCookie));
        assert_eq!(judged(206, &cc("max-age=9"), GET), Err(NotStored::Status));
        assert_eq!(judged(500, &[], GET), Err(NotStored::Status));
        assert!(judged(302, &cc("max-age=9"), GET).is_ok());
        assert_eq!(
            judged(200, &cc("max-age=0"), GET),
            Err(NotStored::NoLifetime)
        );
    }

    #[test]
    fn heuristic_is_a_tenth_of_last_modified_capped_by_default_ttl() {
        let date = httpdate::fmt_http_date(SystemTime::now());
        let lm = httpdate::fmt_http_date(SystemTime::now() - Duration::from_secs(100));
        let f = judged(200, &[("date", &date), ("last-modified", &lm)], GET).expect("stored");
        assert!((9..=10).contains(&f.lifetime.as_secs()), "{f:?}");
        let f = judged(200, &[], GET).expect("stored for default_ttl");
        assert_eq!(f.lifetime, Duration::from_secs(60));
    }

    #[test]
    fn age_counts_against_the_lifetime() {
        let f = judged(200, &[("cache-control", "max-age=30"), ("age", "10")], GET);
        assert_eq!(f.expect("stored").initial_age, Duration::from_secs(10));
        let old = [("cache-control", "max-age=30"), ("age", "40")];
        assert_eq!(judged(200, &old, GET), Err(NotStored::NoLifetime));
    }
}
