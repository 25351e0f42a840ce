//! `POST /cache/purge?url=URL` and `POST /cache/purge?prefix=URL`: removes from the edge cache
//! the responses stored for one URL (every `Vary` variant) or for every URL under a prefix,
//! keyed as the route that serves the URL keys them. The reload token guards it, as `POST
//! /reload`.

use http::Method;

use super::Reply;
use crate::cache::key::primary;
use crate::route::Action;
use crate::semantics::target::canonical;
use crate::snapshot::Snapshot;

/// What a purge asks for.
enum Purge {
    /// The URL's responses.
    Url(String),
    /// Every response under the URL.
    Prefix(String),
}

/// Purges what `query` (`url=` or `prefix=`, percent-encoded) names: how many responses went.
pub(super) fn purge(snapshot: &Snapshot, query: &str) -> Reply {
    let asked = form_urlencoded::parse(query.as_bytes()).find_map(|(k, v)| match &*k {
        "url" => Some(Purge::Url(v.into_owned())),
        "prefix" => Some(Purge::Prefix(v.into_owned())),
        _ => None,
    });
    let Some(asked) = asked else {
        return Reply::text(
            400,
            "name what to purge: ?url=https://HOST/PATH or ?prefix=https://HOST/PATH\n",
        );
    };
    let url = match &asked {
        Purge::Url(u) | Purge::Prefix(u) => u.as_str(),
    };
    let key = match key_of(snapshot, url) {
        Ok(key) => key,
        Err(reason) => return Reply::text(404, format!("{url}: {reason}\n")),
    };
    // The disk tier holds what memory may not (yet).
    let store = crate::cache::store::init(&snapshot.cache);
    match asked {
        Purge::Url(_) => purged(store.purge_key(&key)),
        Purge::Prefix(_) => purged(store.purge_prefix(&key)),
    }
}

/// The cache key of `url` (absolute: `https://HOST/PATH?QUERY`) as the route serving it keys it.
fn key_of(snapshot: &Snapshot, url: &str) -> Result<String, &'static str> {
    let (target, host) =
        canonical(url, None).map_err(|_| "not an absolute URL like https://HOST/PATH")?;
    let site = snapshot
        .router
        .site(host.name())
        .ok_or("no site serves this Host")?;
    let route = site
        .route(target.path(), &Method::GET)
        .ok_or("no route of the site serves this path")?;
    let rules = match &route.action {
        Action::Proxy(p) => p.cache.as_ref(),
        Action::Respond(_) | Action::Redirect(_) => None,
    };
    let rules = rules.ok_or("the route that serves it does not cache")?;
    Ok(primary(
        &site.name,
        rules.key,
        host.name(),
        target.path(),
        target.query(),
    ))
}

fn purged(n: usize) -> Reply {
    Reply {
        status: 200,
        content_type: "application/json",
        body: format!("{{\"purged\":{n}}}\n"),
        reload: None,
    }
}
