//! Purging the edge cache (issue 15): `POST /cache/purge` on the admin listener, guarded by the
//! reload token, removes one URL's responses (every `Vary` variant) or every URL's under a
//! prefix; a takedown added by reload purges what it covers, so that removing it again does not
//! bring the stored response back.

mod support;

use support::admin::TOKEN;
use support::cache_origin::{config, get, purge, setup, x_cache};

#[tokio::test(flavor = "multi_thread")]
async fn purge_by_url_and_by_prefix() {
    let s = setup().await;
    for path in ["/static/p1", "/static/p2", "/other"] {
        get(&s, path, "").await;
        assert_eq!(x_cache(&get(&s, path, "").await), "HIT", "{path}");
    }
    let zh = "Accept-Language: zh\r\n";
    let en = "Accept-Language: en\r\n";
    get(&s, "/vary", zh).await;
    get(&s, "/vary", en).await;

    let url = "url=https%3A%2F%2Fcache.test%2Fstatic%2Fp1";
    assert_eq!(purge(&s, url, None).await.0, 401);
    assert_eq!(purge(&s, url, Some("wrong")).await.0, 403);
    assert_eq!(
        purge(&s, url, Some(TOKEN)).await,
        (200, "{\"purged\":1}\n".into())
    );
    assert_eq!(x_cache(&get(&s, "/static/p1", "").await), "MISS");
    assert_eq!(x_cache(&get(&s, "/static/p2", "").await), "HIT");
    // Both variants of a URL that varies.
    let vary = "url=https://cache.test/vary";
    assert_eq!(
        purge(&s, vary, Some(TOKEN)).await,
        (200, "{\"purged\":2}\n".into())
    );
    assert_eq!(x_cache(&get(&s, "/vary", zh).await), "MISS");

    let prefix = "prefix=https://cache.test/static/";
    assert_eq!(
        purge(&s, prefix, Some(TOKEN)).await,
        (200, "{\"purged\":2}\n".into())
    );
    assert_eq!(x_cache(&get(&s, "/static/p2", "").await), "MISS");
    assert_eq!(x_cache(&get(&s, "/other", "").await), "HIT");
    // A URL no caching route serves says so.
    let (status, text) = purge(&s, "url=https://cache.test/uncached/x", Some(TOKEN)).await;
    assert_eq!(status, 404, "{text}");
    assert!(text.contains("does not cache"), "{text}");
    assert_eq!(purge(&s, "nothing=1", Some(TOKEN)).await.0, 400);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_takedown_added_by_reload_purges_what_it_covers() {
    let s = setup().await;
    get(&s, "/taken/page", "").await;
    get(&s, "/kept", "").await;
    assert_eq!(x_cache(&get(&s, "/taken/page", "").await), "HIT");
    let reload = |takedown: bool| {
        s.env
            .write_config("", config(&s.env, s.port, s.admin, takedown));
        support::admin::reload(s.admin)
    };
    assert_eq!(reload(true).await.0, 200);
    assert_eq!(get(&s, "/taken/page", "").await.status, 451);
    assert_eq!(reload(false).await.0, 200);
    let back = get(&s, "/taken/page", "").await;
    assert_eq!((back.status, x_cache(&back)), (200, "MISS"), "{back:?}");
    assert_eq!(back.text(), "/taken/page #2 for none\n");
    assert_eq!(x_cache(&get(&s, "/kept", "").await), "HIT");
}
