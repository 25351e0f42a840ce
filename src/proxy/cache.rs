//! The edge cache's hooks, one definition for both engines: the lookup after every policy
//! decision and before the exchange (a fresh stored response answers; a miss waits for another
//! request's fetch of the same key or fetches itself), the head of a stored response as the
//! engines' writers take it, and the tee of a backend's response into the store as it streams
//! to the client. What is stored and how is `crate::cache`'s.

use std::sync::Arc;
use std::time::Instant;

use http::Method;

use super::ctx::Ctx;
pub(in crate::proxy) use super::hit::Hit;
use super::http1::with_response;
use super::Proxy;
use crate::cache::control::Directives;
use crate::cache::fresh::Asked;
use crate::cache::key::{primary, RequestFields, Taken};
use crate::cache::lock::{self, FillLock, Turn};
use crate::cache::status::Outcome;
use crate::cache::store::Requested;
use crate::cache::store::{self, State, Store};
use crate::cache::{Fill, Object, Rules};
use crate::snapshot::Snapshot;

/// A request as the cache reads it.
pub(in crate::proxy) struct CacheRequest<'a> {
    /// The Host's name, without its port.
    pub(in crate::proxy) host: &'a str,
    /// The canonical path and query.
    pub(in crate::proxy) target: &'a str,
    pub(in crate::proxy) path: &'a str,
    pub(in crate::proxy) query: Option<&'a str>,
    pub(in crate::proxy) method: &'a Method,
    /// It has no body (only those are answered from the store).
    pub(in crate::proxy) bodyless: bool,
    pub(in crate::proxy) fields: &'a dyn RequestFields,
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
        let snapshot = ctx.snapshot.clone()?;
        let asking = Asking::of(ctx, &snapshot, req)?;
        let (key, asked) = (&asking.key, asking.asked);
        if !looked_up(req, &asked) {
            ctx.cache = Some(Outcome::Bypass);
            // A response to an authorised GET may still be stored when it says it may.
            if asked.get && req.bodyless {
                ctx.fill = Some(Box::new(asking.fill(req, None)));
            }
            return None;
        }
        let store = store::init(&snapshot.cache);
        let mut waited = false;
        loop {
            let found = match store.get(key, req.fields) {
                None => from_disk(store, key).await,
                found => found,
            };
            let stale = match found {
                Some(object) if object.state(Instant::now()) == State::Fresh => {
                    ctx.cache = Some(Outcome::Hit);
                    return Some(Hit::of(object).ranged(req.fields));
                }
                found => found,
            };
            ctx.cache = Some(Outcome::Miss);
            // A HEAD has no body to store: it neither fetches for others nor waits.
            if !asked.get {
                return None;
            }
            let lock = match waited {
                true => None,
                false => match lock::turn(key) {
                    Turn::Fetch(lock) => Some(lock),
                    Turn::Wait(waiting) => {
                        // Another request revalidates it: stale is good enough meanwhile.
                        if let Some(hit) = while_revalidating(ctx, stale) {
                            return Some(hit);
                        }
                        lock::wait(waiting, snapshot.cache.lock_timeout).await;
                        waited = true;
                        continue;
                    }
                },
            };
            let mut fill = asking.fill(req, lock);
            // A client's own conditional goes to the backend as it is; its 304 is the client's.
            if let Some(object) = stale.filter(|_| !conditional(req) && !asking.h2_backend) {
                ctx.cache = Some(Outcome::Expired);
                fill = fill.revalidating(object);
            }
            ctx.fill = Some(Box::new(fill));
            return None;
        }
    }
}

/// What a lookup makes of its request: its key and what decides whether its response is
/// stored.
struct Asking {
    key: String,
    requested: Requested,
    rules: Arc<Rules>,
    asked: Asked,
    /// The upstream is offered HTTP/2, whose responses are not stored (nor revalidated: a 304
    /// would reach a client that asked for no condition).
    h2_backend: bool,
}

impl Asking {
    /// `None` when the request's route does not cache.
    fn of(ctx: &Ctx, snapshot: &Snapshot, req: &CacheRequest<'_>) -> Option<Self> {
        let action = ctx.proxy_action()?;
        let rules = action.cache.clone()?;
        let h2_backend = action.upstream.offers_http2();
        let site = snapshot.router.site_at(ctx.site?)?.name.as_str();
        Some(Asking {
            key: primary(site, rules.key, req.host, req.path, req.query),
            requested: Requested {
                host: req.host.into(),
                target: req.target.into(),
            },
            rules,
            asked: asked(req),
            h2_backend,
        })
    }

    /// A fill for the request's response, holding `lock` when it fetches for others too.
    fn fill(&self, req: &CacheRequest<'_>, lock: Option<FillLock>) -> Fill {
        let (key, requested) = (self.key.clone(), self.requested.clone());
        let taken = req.fields.taken();
        Fill::new(key, requested, self.rules.clone(), self.asked, taken, lock)
    }
}

/// The object the disk tier holds for `key` (read off the worker thread), back in memory.
async fn from_disk(store: &'static Store, key: &str) -> Option<Arc<Object>> {
    store.disk()?;
    let key = key.to_owned();
    let read = tokio::task::spawn_blocking(move || store.disk()?.load(&key));
    let object = read.await.ok()??;
    Some(store.promote(object))
}

/// Whether the cache answers requests like `req`: GET and HEAD without a body or
/// `Authorization`.
fn looked_up(req: &CacheRequest<'_>, asked: &Asked) -> bool {
    (req.method == Method::GET || req.method == Method::HEAD)
        && req.bodyless
        && !asked.authorization
}

/// `stale` when it may answer while another request revalidates it
/// (`stale-while-revalidate`).
fn while_revalidating(ctx: &mut Ctx, stale: Option<Arc<Object>>) -> Option<Hit> {
    let stale = stale.filter(|o| o.state(Instant::now()) == State::WhileRevalidate)?;
    ctx.cache = Some(Outcome::Stale);
    Some(Hit::of(stale))
}

/// Whether the request is conditional itself.
fn conditional(req: &CacheRequest<'_>) -> bool {
    let mut values = Vec::new();
    req.fields.values("if-none-match", &mut values);
    req.fields.values("if-modified-since", &mut values);
    !values.is_empty()
}

/// The stale response a failed exchange is answered with instead of an error, when it allows
/// that (`stale-if-error`): a backend that cannot be reached, times out or breaks off.
pub(in crate::proxy) fn stale_on_error(ctx: &mut Ctx) -> Option<Hit> {
    let stale = ctx.fill.as_ref()?.stale()?.clone();
    if !stale.usable_on_error(Instant::now()) {
        return None;
    }
    ctx.fill = None;
    ctx.cache = Some(Outcome::Stale);
    Some(Hit::of(stale))
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

/// The fill of a response on its way to the client, taken out of its request's `ctx`; or,
/// once the backend's head said so, the stored response the client gets instead (refreshed by
/// a `304`, or stale when the backend failed).
pub(in crate::proxy) struct Tee {
    fill: Option<Box<Fill>>,
    instead: Option<(Hit, Outcome)>,
}

impl Tee {
    pub(in crate::proxy) fn take(ctx: &mut Ctx) -> Self {
        Tee {
            fill: ctx.fill.take(),
            instead: None,
        }
    }

    /// A tee that stores nothing.
    pub(in crate::proxy) fn none() -> Self {
        Tee {
            fill: None,
            instead: None,
        }
    }

    /// The backend's final head (`head`, HTTP/1): stored or not, as `fresh` judges it; a `304`
    /// to a revalidation refreshes the stored response, a 500-504 makes way for a stale one
    /// that allows it.
    pub(in crate::proxy) fn head(&mut self, head: &[u8]) {
        let (Some(fill), Some(store)) = (&mut self.fill, store::current()) else {
            return;
        };
        let judged = with_response(head, |resp| {
            let status = resp.code.unwrap_or(0);
            let fields = resp.headers.iter().map(|h| (h.name, h.value));
            let now = Instant::now();
            match fill.stale() {
                Some(_) if status == 304 => {
                    let refreshed = fill.refresh(fields, store);
                    Judged::Instead(refreshed.map(|o| (Hit::of(o), Outcome::Revalidated)))
                }
                Some(stale) if (500..=504).contains(&status) && stale.usable_on_error(now) => {
                    Judged::Instead(Some((Hit::of(stale.clone()), Outcome::Stale)))
                }
                _ => match fill.head(status, fields) {
                    Ok(()) => Judged::Stored,
                    Err(_) => Judged::Instead(None),
                },
            }
        });
        match judged {
            Ok(Judged::Stored) => {}
            // Not stored: the key's lock goes now, and waiters go to the backend.
            Ok(Judged::Instead(instead)) => {
                self.instead = instead;
                self.fill = None;
            }
            Err(_) => self.fill = None,
        }
    }

    /// The stored response the client gets instead of the backend's, noted in `ctx`.
    pub(in crate::proxy) fn instead(&mut self, ctx: &mut Ctx) -> Option<Hit> {
        let (hit, outcome) = self.instead.take()?;
        ctx.cache = Some(outcome);
        Some(hit)
    }

    /// Payload as it passes to the client.
    pub(in crate::proxy) fn data(&mut self, bytes: &[u8]) {
        if let Some(fill) = &mut self.fill {
            fill.data(bytes);
        }
    }

    /// The body ended whole: stored.
    pub(in crate::proxy) fn finish(self, ctx: &Ctx) {
        if let (Some(fill), Some(snapshot)) = (self.fill, &ctx.snapshot) {
            fill.finish(store::init(&snapshot.cache));
        }
    }
}

/// What a backend's head means for the fill.
enum Judged {
    /// The response is stored as it passes.
    Stored,
    /// Not stored; the client gets this stored response instead, if any.
    Instead(Option<(Hit, Outcome)>),
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
