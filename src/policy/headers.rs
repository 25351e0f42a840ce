//! A route's header edits, its site's merged with its own at load: request fields removed, set
//! (replacing the client's) and added, with values that may name the request's client IP,
//! request id, site and Host; response fields removed and set. The engines apply them through
//! `proxy::forwarding` (requests) and `proxy::response_edits` (responses).

use http::{HeaderName, HeaderValue};

/// A request field's value: text with `{client_ip}`, `{request_id}`, `{site}` or `{host}` in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    parts: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(Vec<u8>),
    ClientIp,
    RequestId,
    Site,
    Host,
}

/// What a template's names stand for in one request.
pub struct Values<'a> {
    /// The client's address (after PROXY protocol and trusted proxies).
    pub client_ip: &'a [u8],
    /// The request id.
    pub request_id: &'a [u8],
    /// The site's name.
    pub site: &'a [u8],
    /// The canonical Host.
    pub host: &'a [u8],
}

impl Template {
    /// Reads `text`; `Err` names what is wrong (an unknown `{name}`, a byte no field may hold).
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut parts = Vec::new();
        let mut rest = text;
        while let Some(open) = rest.find('{') {
            let Some(close) = rest[open..].find('}') else {
                return Err(format!("{text:?} has a {{ without its }}"));
            };
            if open > 0 {
                parts.push(Part::Text(rest.as_bytes()[..open].to_vec()));
            }
            parts.push(match &rest[open + 1..open + close] {
                "client_ip" => Part::ClientIp,
                "request_id" => Part::RequestId,
                "site" => Part::Site,
                "host" => Part::Host,
                other => {
                    return Err(format!(
                        "{{{other}}} is not a value menshen knows \
                         (use {{client_ip}}, {{request_id}}, {{site}} or {{host}})"
                    ))
                }
            });
            rest = &rest[open + close + 1..];
        }
        if !rest.is_empty() {
            parts.push(Part::Text(rest.as_bytes().to_vec()));
        }
        if HeaderValue::from_str(text).is_err() {
            return Err(format!(
                "{text:?} is not a header value (control characters?)"
            ));
        }
        Ok(Self { parts })
    }

    /// The value's parts for one request, handed to `f` (nothing is allocated).
    pub fn render<R>(&self, v: &Values<'_>, f: impl FnOnce(&[&[u8]]) -> R) -> R {
        let mut parts: [&[u8]; 8] = [&[]; 8];
        for (slot, part) in parts.iter_mut().zip(&self.parts) {
            *slot = match part {
                Part::Text(t) => t,
                Part::ClientIp => v.client_ip,
                Part::RequestId => v.request_id,
                Part::Site => v.site,
                Part::Host => v.host,
            };
        }
        f(&parts[..self.parts.len().min(8)])
    }

    /// Whether it fits `render` (at most 8 parts).
    pub fn fits(&self) -> bool {
        self.parts.len() <= 8
    }
}

/// A route's header edits (its site's, with its own after them).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HeaderEdits {
    /// Request fields not forwarded.
    pub request_remove: Vec<HeaderName>,
    /// Request fields sent in place of the client's.
    pub request_set: Vec<(HeaderName, Template)>,
    /// Request fields sent besides the client's.
    pub request_add: Vec<(HeaderName, Template)>,
    /// Response fields not sent.
    pub response_remove: Vec<HeaderName>,
    /// Response fields sent in place of the backend's.
    pub response_set: Vec<(HeaderName, HeaderValue)>,
}

impl HeaderEdits {
    /// Whether the request field `name` (any case) is the edits' to send, not the client's.
    pub fn drops_request(&self, name: &str) -> bool {
        let is = |n: &HeaderName| name.eq_ignore_ascii_case(n.as_str());
        self.request_remove.iter().any(is) || self.request_set.iter().any(|(n, _)| is(n))
    }

    /// One line for `/status` and `menshen check`, e.g. `request set X-Edge, remove Cookie;
    /// response set X-Frame-Options`; empty when there are none.
    pub fn describe(&self) -> String {
        let list = |verb: &str, names: Vec<&str>| {
            (!names.is_empty()).then(|| format!("{verb} {}", names.join(", ")))
        };
        let side = |what: &str, parts: Vec<Option<String>>| {
            let parts: Vec<String> = parts.into_iter().flatten().collect();
            (!parts.is_empty()).then(|| format!("{what} {}", parts.join(", ")))
        };
        let request = side(
            "request",
            vec![
                list("set", names(&self.request_set)),
                list("add", names(&self.request_add)),
                list(
                    "remove",
                    self.request_remove.iter().map(|n| n.as_str()).collect(),
                ),
            ],
        );
        let response = side(
            "response",
            vec![
                list("set", names(&self.response_set)),
                list(
                    "remove",
                    self.response_remove.iter().map(|n| n.as_str()).collect(),
                ),
            ],
        );
        [request, response]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join("; ")
    }

    /// These edits followed by `later`'s: a field `later` sets or removes loses what these set
    /// or add for it.
    pub fn then(&self, later: &HeaderEdits) -> HeaderEdits {
        let request_later = |n: &HeaderName| later.drops_request(n.as_str());
        let response_later = |n: &HeaderName| {
            later.response_remove.contains(n) || later.response_set.iter().any(|(m, _)| m == n)
        };
        HeaderEdits {
            request_remove: [&self.request_remove[..], &later.request_remove].concat(),
            request_set: kept(&self.request_set, request_later, &later.request_set),
            request_add: kept(&self.request_add, request_later, &later.request_add),
            response_remove: [&self.response_remove[..], &later.response_remove].concat(),
            response_set: kept(&self.response_set, response_later, &later.response_set),
        }
    }
}

fn names<V>(fields: &[(HeaderName, V)]) -> Vec<&str> {
    fields.iter().map(|(n, _)| n.as_str()).collect()
}

/// `first` less the fields `replaced` names, then `then`.
fn kept<V: Clone>(
    first: &[(HeaderName, V)],
    replaced: impl Fn(&HeaderName) -> bool,
    then: &[(HeaderName, V)],
) -> Vec<(HeaderName, V)> {
    let mut all: Vec<_> = first
        .iter()
        .filter(|(n, _)| !replaced(n))
        .cloned()
        .collect();
    all.extend(then.iter().cloned());
    all
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_name_the_request_s_values() {
        let t = Template::parse("ip={client_ip}; id={request_id}; {site}@{host}").expect("parses");
        let v = Values {
            client_ip: b"203.0.113.7",
            request_id: b"abc",
            site: b"shop",
            host: b"shop.example.cn",
        };
        let text = t.render(&v, |parts| parts.concat());
        assert_eq!(text, b"ip=203.0.113.7; id=abc; shop@shop.example.cn");
        let err = Template::parse("{user}").expect_err("unknown name");
        assert!(err.contains("{user} is not a value menshen knows"), "{err}");
        assert!(Template::parse("{site").is_err());
        assert!(Template::parse("a\nb").is_err());
    }

    #[test]
    fn a_route_s_set_replaces_its_site_s() {
        let name = |n: &'static str| HeaderName::from_static(n);
        let t = |s: &str| Template::parse(s).expect("template");
        let site = HeaderEdits {
            request_set: vec![(name("x-a"), t("site")), (name("x-b"), t("site"))],
            ..HeaderEdits::default()
        };
        let route = HeaderEdits {
            request_set: vec![(name("x-a"), t("route"))],
            request_remove: vec![name("cookie")],
            ..HeaderEdits::default()
        };
        let both = site.then(&route);
        assert_eq!(
            both.request_set,
            vec![(name("x-b"), t("site")), (name("x-a"), t("route"))]
        );
        assert!(both.drops_request("Cookie") && both.drops_request("X-A"));
        assert!(!both.drops_request("x-c"));
    }
}
