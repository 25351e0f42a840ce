//! The edge cache as clients see it (issue 15): an origin that counts its requests per path
//! answers misses only; hits carry `X-Cache: HIT`, `Cache-Status` and `Age` with the site's
//! edits still applied; `no-store`, `private`, `Authorization` and `Set-Cookie` responses are
//! never served from the cache; `Vary` keeps a variant per value; an entry expires with its
//! `max-age`; 100 concurrent misses make one backend request; an HTTP/2 client gets what an
//! HTTP/1 one stored; a takedown added by reload is never answered from the cache; `/metrics`
//! and `/status.json` count and show it.

mod support;

use std::time::Duration;

use support::admin;
use support::cache_origin::{config, get, h2_get, setup, x_cache, HOST};
use support::eventually;
use support::http::{get_with, raw_plain};

#[tokio::test(flavor = "multi_thread")]
async fn hits_misses_and_what_is_never_stored() {
    let s = setup().await;
    let first = get(&s, "/static/a", "").await;
    assert_eq!((first.status, x_cache(&first)), (200, "MISS"), "{first:?}");
    assert_eq!(first.header("cache-status"), Some("menshen; fwd=miss"));
    let hit = get(&s, "/static/a", "").await;
    assert_eq!((hit.status, x_cache(&hit)), (200, "HIT"), "{hit:?}");
    assert_eq!(hit.text(), "/static/a #1 for none\n");
    assert_eq!(hit.header("cache-status"), Some("menshen; hit"));
    assert!(
        hit.header("age").is_some_and(|a| a.parse::<u64>().is_ok()),
        "{hit:?}"
    );
    // The site's edits and a request id of its own, as on any response.
    assert_eq!(hit.header("x-site"), Some("edited"));
    assert_ne!(hit.header("x-request-id"), first.header("x-request-id"));
    assert_eq!(s.origin.count("/static/a"), 1);
    // A HEAD is answered from the stored GET.
    let raw = format!("HEAD /static/a HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n");
    let head = raw_plain(s.env.http, raw.as_bytes(), None)
        .await
        .expect("HEAD");
    assert_eq!((x_cache(&head), head.body.len()), ("HIT", 0), "{head:?}");
    assert_eq!(head.header("content-length"), Some("22"));
    // The query is part of the key.
    assert_eq!(x_cache(&get(&s, "/static/a?v=2", "").await), "MISS");

    for path in ["/nostore", "/private", "/cookie"] {
        for _ in 0..2 {
            assert_eq!(x_cache(&get(&s, path, "").await), "MISS", "{path}");
        }
        assert_eq!(
            s.origin.count(path),
            2,
            "{path} is not served from the cache"
        );
    }
    // Authorization: neither answered from the cache nor stored, unless the response is public.
    let auth = "Authorization: Bearer t\r\n";
    assert_eq!(x_cache(&get(&s, "/static/auth", auth).await), "BYPASS");
    assert_eq!(x_cache(&get(&s, "/static/auth", "").await), "MISS");
    assert_eq!(s.origin.count("/static/auth"), 2);
    get(&s, "/public", auth).await;
    assert_eq!(x_cache(&get(&s, "/public", "").await), "HIT");
    // A route with the cache off says nothing about it.
    let off = get(&s, "/uncached/x", "").await;
    assert_eq!(off.header("x-cache"), None);
    get(&s, "/uncached/x", "").await;
    assert_eq!(s.origin.count("/uncached/x"), 2);
    // A chunked response is stored without its framing.
    get(&s, "/chunked", "").await;
    let hit = get(&s, "/chunked", "").await;
    assert_eq!(
        (x_cache(&hit), hit.text().as_str()),
        ("HIT", "/chunked #1 for none\n")
    );

    let metric = |result: &str| {
        format!("menshen_cache_requests_total{{result=\"{result}\",site=\"cache\"}}")
    };
    let hits = admin::metric(s.admin, &metric("hit")).await;
    assert!(hits.is_some_and(|h| h >= 4.0), "{hits:?}");
    let bypass = admin::metric(s.admin, &metric("bypass")).await;
    assert!(bypass.is_some_and(|b| b >= 2.0), "{bypass:?}");
    let status = admin::status(s.admin).await;
    let entries = status["cache"]["entries"].as_u64().unwrap_or(0);
    assert!(entries >= 4, "{status}");
    assert_eq!(status["cache"]["memory_bytes"], 268_435_456);
}

#[tokio::test(flavor = "multi_thread")]
async fn vary_keeps_a_variant_per_value() {
    let s = setup().await;
    let zh = "Accept-Language: zh-CN\r\n";
    let en = "Accept-Language: en\r\n";
    assert_eq!(x_cache(&get(&s, "/vary", zh).await), "MISS");
    assert_eq!(x_cache(&get(&s, "/vary", en).await), "MISS");
    let zh_hit = get(&s, "/vary", zh).await;
    let en_hit = get(&s, "/vary", en).await;
    assert_eq!(
        (x_cache(&zh_hit), zh_hit.text().as_str()),
        ("HIT", "/vary #1 for zh-cn\n")
    );
    assert_eq!(
        (x_cache(&en_hit), en_hit.text().as_str()),
        ("HIT", "/vary #2 for en\n")
    );
    assert_eq!(s.origin.count("/vary"), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_entry_expires_with_its_max_age() {
    let s = setup().await;
    assert_eq!(x_cache(&get(&s, "/short", "").await), "MISS");
    // Within its second it is a hit (or, on a slow machine, already a miss again).
    let again = eventually(Duration::from_secs(20), || async {
        let r = get(&s, "/short", "").await;
        (x_cache(&r) == "MISS").then(|| r.text())
    })
    .await;
    assert_eq!(again.as_deref(), Some("/short #2 for none\n"));
    assert_eq!(s.origin.count("/short"), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_misses_make_one_backend_request() {
    let s = setup().await;
    let port = s.env.http;
    let requests = (0..100).map(|_| {
        tokio::spawn(async move { raw_plain(port, &get_with(HOST, "/slow", ""), None).await })
    });
    let mut bodies = Vec::new();
    for r in requests {
        let r = r.await.expect("joined").expect("GET /slow");
        assert_eq!(r.status, 200);
        bodies.push(r.text());
    }
    assert_eq!(s.origin.count("/slow"), 1);
    assert!(
        bodies.iter().all(|b| b == "/slow #1 for none\n"),
        "{bodies:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_http2_client_gets_what_was_stored() {
    let s = setup().await;
    assert_eq!(x_cache(&get(&s, "/both", "").await), "MISS");
    let (status, x, body) = h2_get(&s, "/both").await;
    assert_eq!(
        (status, x.as_str(), body.as_str()),
        (200, "HIT", "/both #1 for none\n")
    );
    let (_, x, _) = h2_get(&s, "/h2").await;
    assert_eq!(x, "MISS");
    let (_, x, body) = h2_get(&s, "/h2").await;
    assert_eq!((x.as_str(), body.as_str()), ("HIT", "/h2 #1 for none\n"));
    assert_eq!(x_cache(&get(&s, "/h2", "").await), "HIT");
    assert_eq!((s.origin.count("/both"), s.origin.count("/h2")), (1, 1));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_takedown_added_by_reload_is_not_served_from_cache() {
    let s = setup().await;
    get(&s, "/taken/page", "").await;
    assert_eq!(x_cache(&get(&s, "/taken/page", "").await), "HIT");
    s.env
        .write_config("", config(&s.env, s.port, s.admin, true));
    let status = eventually(Duration::from_secs(20), || async {
        let r = get(&s, "/taken/page", "").await;
        (r.status == 451).then_some(r)
    })
    .await;
    let status = status.expect("the takedown answers after the reload");
    assert_eq!(status.header("x-cache"), None);
    assert_eq!(s.origin.count("/taken/page"), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_response_compressed_on_its_way_is_stored_as_the_backend_sent_it() {
    let s = setup().await;
    let gzip = "Accept-Encoding: gzip\r\n";
    let miss = get(&s, "/text", gzip).await;
    assert_eq!(x_cache(&miss), "MISS");
    assert_eq!(miss.header("content-encoding"), Some("gzip"), "{miss:?}");
    let hit = get(&s, "/text", "").await;
    assert_eq!(
        (x_cache(&hit), hit.text().as_str()),
        ("HIT", "/text #1 for none\n")
    );
    assert_eq!(hit.header("content-encoding"), None);
    assert_eq!(s.origin.count("/text"), 1);
}
