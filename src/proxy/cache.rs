//! The edge cache's hooks, one definition for both engines: the lookup after every policy
//! decision and before the exchange (a fresh stored response answers; a miss waits for another
//! request's fetch of the same key or fetches itself), the head of a stored response as the
//! engines' writers take it, and the tee of a backend's response into the store as it streams
//! to the client. What is stored and how is `crate::cache`'s.

use std::sync::Arc;
use std::time::{Duration, Instant};

use http::Method;

use super::ctx::Ctx;
use super::http1::{push_field, status_line_for, with_response};
use super::Proxy;
use crate::cache::control::Directives;
use crate::cache::fresh::Asked;
use crate::cache::key::{primary, RequestFields, Taken};
use crate::cache::lock::{self, Turn};
use crate::cache::status::Outcome;
use crate::cache::store::{self, State};
use crate::cache::{Fill, Object};

/// A request as the cache reads it.
pub(in crate::proxy) struct CacheRequest<'a> {
    pub(in crate::proxy) host: &'a str,
    pub(in crate::proxy) path: &'a str,
    pub(in crate::proxy) query: Option<&'a str>,
    pub(in crate::proxy) method: &'a Method,
    /// It has no body (only those are answered from the store).
    pub(in crate::proxy) bodyless: bool,
    pub(in crate::proxy) fields: &'a dyn RequestFields,
}

/// A stored response that answers a request.
pub(in crate::proxy) struct Hit {
    pub(in crate::proxy) object: Arc<Object>,
    /// Its age at the lookup.
    pub(in crate::proxy) age: Duration,
}

impl Hit {
    /// Its response head as HTTP/1 (what `with_response` parses for either engine's writer):
    /// the stored fields, its length and its `Age`.
    pub(in crate::proxy) fn head(&self) -> Vec<u8> {
        let o = &self.object;
        let mut out = Vec::with_capacity(o.fields.len() + 96);
        status_line_for(&mut out, o.status, None);
        out.extend_from_slice(&o.fields);
        if o.status != 204 {
            let length = itoa::Buffer::new().format(o.body.len()).to_owned();
            push_field(&mut out, b"content-length", length.as_bytes());
        }
        let age = itoa::Buffer::new().format(self.age.as_secs()).to_owned();
        push_field(&mut out, b"age", age.as_bytes());
        out.extend_from_slice(b"\r\n");
        out
    }
}

impl Proxy {
    /// Looks the request up when its route caches: `Some` is a stored response that answers
    /// it. On a miss the request either fetches (its fill, holding the key's lock, goes in
    /// `ctx`) or waits for the request that does, then looks again.
    pub(in crate::proxy) async fn cache_lookup(
        &self,
        ctx: &mut Ctx,
        req: &CacheRequest<'_>,
    ) -> Option<Hit> {
        let (snapshot, rules) = {
            let rules = ctx.proxy_action()?.cache.clone()?;
            (ctx.snapshot.clone()?, rules)
        };
        let asked = asked(req);
        let looked_up = (req.method == Method::GET || req.method == Method::HEAD)
            && req.bodyless
            && !asked.authorization;
        let key = primary(rules.key, req.host, req.path, req.query);
        if !looked_up {
            // A response to an authorised request may still be stored when it says it may.
            ctx.cache = Some(Outcome::Bypass);
            if asked.get && req.bodyless {
                ctx.fill = Some(Box::new(Fill::new(
                    key,
                    rules,
                    asked,
                    req.fields.taken(),
                    None,
                )));
            }
            return None;
        }
        let store = store::init(&snapshot.cache);
        let mut waited = false;
        loop {
            if let Some(object) = store.get(&key, req.fields) {
                let now = Instant::now();
                if object.state(now) == State::Fresh {
                    ctx.cache = Some(Outcome::Hit);
                    let age = object.age(now);
                    return Some(Hit { object, age });
                }
            }
            ctx.cache = Some(Outcome::Miss);
            // A HEAD has no body to store: it neither fetches for others nor waits.
            if !asked.get {
                return None;
            }
            let lock = match waited {
                true => None,
                false => match lock::turn(&key) {
                    Turn::Fetch(lock) => Some(lock),
                    Turn::Wait(waiting) => {
                        lock::wait(waiting, snapshot.cache.lock_timeout).await;
                        waited = true;
                        continue;
                    }
                },
            };
            let fill = Fill::new(key, rules, asked, req.fields.taken(), lock);
            ctx.fill = Some(Box::new(fill));
            return None;
        }
    }
}

/// What of the request decides whether its response is stored.
fn asked(req: &CacheRequest<'_>) -> Asked {
    let mut control = Vec::new();
    req.fields.values("cache-control", &mut control);
    let mut authorization = Vec::new();
    req.fields.values("authorization", &mut authorization);
    Asked {
        get: req.method == Method::GET,
        authorization: !authorization.is_empty(),
        no_store: Directives::of([&control[..]]).no_store,
    }
}

/// The fill of a response on its way to the client, taken out of its request's `ctx`.
pub(in crate::proxy) struct Tee(Option<Box<Fill>>);

impl Tee {
    pub(in crate::proxy) fn take(ctx: &mut Ctx) -> Self {
        Tee(ctx.fill.take())
    }

    /// A tee that stores nothing.
    pub(in crate::proxy) fn none() -> Self {
        Tee(None)
    }

    /// The backend's final head (`head`, HTTP/1): stored or not, as `fresh` judges it.
    pub(in crate::proxy) fn head(&mut self, head: &[u8]) {
        let Some(fill) = &mut self.0 else { return };
        let judged = with_response(head, |resp| {
            let status = resp.code.unwrap_or(0);
            fill.head(status, resp.headers.iter().map(|h| (h.name, h.value)))
        });
        if !matches!(judged, Ok(Ok(()))) {
            // Not stored: the key's lock goes now, and waiters go to the backend.
            self.0 = None;
        }
    }

    /// Payload as it passes to the client.
    pub(in crate::proxy) fn data(&mut self, bytes: &[u8]) {
        if let Some(fill) = &mut self.0 {
            fill.data(bytes);
        }
    }

    /// The body ended whole: stored.
    pub(in crate::proxy) fn finish(self, ctx: &Ctx) {
        if let (Some(fill), Some(snapshot)) = (self.0, &ctx.snapshot) {
            fill.finish(store::init(&snapshot.cache));
        }
    }
}

/// An HTTP/1 request's fields.
pub(in crate::proxy) struct H1Fields<'a, 'h>(pub(in crate::proxy) &'a [httparse::Header<'h>]);

impl RequestFields for H1Fields<'_, '_> {
    fn values(&self, name: &str, out: &mut Vec<u8>) {
        let found = self.0.iter().filter(|h| h.name.eq_ignore_ascii_case(name));
        join(found.map(|h| h.value), out);
    }

    fn taken(&self) -> Taken {
        let all = self.0.iter();
        Taken(
            all.map(|h| (h.name.to_ascii_lowercase().into(), h.value.to_vec()))
                .collect(),
        )
    }
}

/// An HTTP/2 request's fields.
pub(in crate::proxy) struct H2Fields<'a>(pub(in crate::proxy) &'a http::HeaderMap);

impl RequestFields for H2Fields<'_> {
    fn values(&self, name: &str, out: &mut Vec<u8>) {
        join(self.0.get_all(name).iter().map(|v| v.as_bytes()), out);
    }

    fn taken(&self) -> Taken {
        let all = self.0.iter();
        Taken(
            all.map(|(n, v)| (n.as_str().into(), v.as_bytes().to_vec()))
                .collect(),
        )
    }
}

fn join<'v>(values: impl Iterator<Item = &'v [u8]>, out: &mut Vec<u8>) {
    for v in values {
        if !out.is_empty() {
            out.extend_from_slice(b", ");
        }
        out.extend_from_slice(v);
    }
}
