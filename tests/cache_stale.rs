//! The edge cache's stale responses (issue 15): a stale entry goes to the backend with its
//! validators and a `304` makes it fresh again (its fields updated, its body kept); while one
//! request revalidates, others get the stale entry when it allows `stale-while-revalidate`;
//! when the backend fails (a 503, or a connection closed unanswered) an entry that allows
//! `stale-if-error` answers instead, to HTTP/1 and HTTP/2 clients.

mod support;

use std::time::Duration;

use support::cache_origin::{get, h2_get, setup, x_cache, Mode, HOST};
use support::eventually;
use support::http::raw_plain;

#[tokio::test(flavor = "multi_thread")]
async fn a_304_refreshes_the_stored_response() {
    let s = setup().await;
    let first = get(&s, "/etag", "").await;
    assert_eq!(
        (x_cache(&first), first.text().as_str()),
        ("MISS", "/etag #1 for none\n")
    );
    let revalidated = eventually(Duration::from_secs(20), || async {
        let r = get(&s, "/etag", "").await;
        (x_cache(&r) != "HIT").then_some(r)
    })
    .await
    .expect("the entry goes stale");
    assert_eq!(x_cache(&revalidated), "REVALIDATED", "{revalidated:?}");
    assert_eq!(revalidated.status, 200);
    assert_eq!(revalidated.text(), "/etag #1 for none\n");
    assert_eq!(
        revalidated.header("cache-status"),
        Some("menshen; fwd=stale; fwd-status=304")
    );
    // The 304's fields update the stored ones.
    assert_eq!(revalidated.header("x-revalidated"), Some("yes"));
    assert_eq!(revalidated.header("etag"), Some("\"v1\""));
    assert_eq!(s.origin.count("304 /etag"), 1);
    assert_eq!(s.origin.count("/etag"), 2);
    let again = get(&s, "/etag", "").await;
    assert_eq!(again.text(), "/etag #1 for none\n");
    assert_eq!(again.header("x-revalidated"), Some("yes"));
}

#[tokio::test(flavor = "multi_thread")]
async fn stale_while_revalidate_answers_while_one_request_revalidates() {
    let s = setup().await;
    assert_eq!(x_cache(&get(&s, "/swr", "").await), "MISS");
    // A HEAD is answered from the entry while it is fresh, and forwarded once it is stale.
    let raw = format!("HEAD /swr HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n");
    let stale = eventually(Duration::from_secs(20), || async {
        let r = raw_plain(s.env.http, raw.as_bytes(), None)
            .await
            .expect("HEAD");
        (x_cache(&r) == "MISS").then_some(())
    })
    .await;
    assert!(stale.is_some(), "the entry goes stale");
    let before = s.origin.count("/swr");
    let port = s.env.http;
    let revalidating = tokio::spawn(async move {
        let raw = support::http::get_with(HOST, "/swr", "");
        raw_plain(port, &raw, None).await.expect("GET /swr")
    });
    // The revalidation is at the origin (which takes a second over it): another request gets
    // the stale entry at once.
    let at_origin = eventually(Duration::from_secs(20), || async {
        (s.origin.count("/swr") > before).then_some(())
    })
    .await;
    assert!(at_origin.is_some());
    let meanwhile = get(&s, "/swr", "").await;
    assert_eq!(x_cache(&meanwhile), "STALE", "{meanwhile:?}");
    assert_eq!(meanwhile.text(), "/swr #1 for none\n");
    assert_eq!(
        meanwhile.header("cache-status"),
        Some("menshen; hit; detail=stale")
    );
    let revalidated = revalidating.await.expect("joined");
    assert_eq!(x_cache(&revalidated), "REVALIDATED", "{revalidated:?}");
    assert_eq!(revalidated.text(), "/swr #1 for none\n");
    assert_eq!(s.origin.count("304 /swr"), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn stale_if_error_answers_when_the_backend_fails() {
    let s = setup().await;
    assert_eq!(x_cache(&get(&s, "/sie", "").await), "MISS");
    get(&s, "/short", "").await;
    s.origin.set_mode(Mode::Unavailable);
    let stale = eventually(Duration::from_secs(20), || async {
        let r = get(&s, "/sie", "").await;
        (x_cache(&r) != "HIT").then_some(r)
    })
    .await
    .expect("the entry goes stale");
    assert_eq!((stale.status, x_cache(&stale)), (200, "STALE"), "{stale:?}");
    assert_eq!(stale.text(), "/sie #1 for none\n");
    // Without stale-if-error the backend's failure reaches the client.
    let failed = eventually(Duration::from_secs(20), || async {
        let r = get(&s, "/short", "").await;
        (r.status == 503).then_some(r)
    })
    .await;
    assert!(
        failed.is_some(),
        "/short's 503 passes once its entry is stale"
    );

    // A backend that closes connections unanswered: the same, on both protocols.
    s.origin.set_mode(Mode::Down);
    let down = get(&s, "/sie", "").await;
    assert_eq!((down.status, x_cache(&down)), (200, "STALE"), "{down:?}");
    let (status, x, body) = h2_get(&s, "/sie").await;
    assert_eq!(
        (status, x.as_str(), body.as_str()),
        (200, "STALE", "/sie #1 for none\n")
    );
    assert_eq!(get(&s, "/short", "").await.status, 502);

    // Back up: the entry is fetched again.
    s.origin.set_mode(Mode::Serve);
    let fresh = get(&s, "/sie", "").await;
    assert_eq!(x_cache(&fresh), "MISS");
    assert!(fresh.text().starts_with("/sie #"), "{fresh:?}");
    assert_ne!(fresh.text(), "/sie #1 for none\n");
}
