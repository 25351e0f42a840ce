//! Range requests answered from a stored response (issue 15): one byte range as `206` with
//! `Content-Range`, the last bytes, `416` past the end, several ranges or an `If-Range` that
//! names another version as the whole `200`, over HTTP/1.1 and HTTP/2; the origin sees none of
//! them.

mod support;

use support::cache_origin::{get, setup, x_cache, HOST};
use support::http::h2_connect;

#[tokio::test(flavor = "multi_thread")]
async fn ranges_are_cut_from_the_stored_response() {
    let s = setup().await;
    let whole = get(&s, "/static/r", "").await;
    assert_eq!(whole.text(), "/static/r #1 for none\n");
    let hit = get(&s, "/static/r", "").await;
    assert_eq!(hit.header("accept-ranges"), Some("bytes"));

    let first = get(&s, "/static/r", "Range: bytes=0-8\r\n").await;
    assert_eq!((first.status, x_cache(&first)), (206, "HIT"), "{first:?}");
    assert_eq!(first.text(), "/static/r");
    assert_eq!(first.header("content-range"), Some("bytes 0-8/22"));
    assert_eq!(first.header("content-length"), Some("9"));
    let last = get(&s, "/static/r", "Range: bytes=-5\r\n").await;
    assert_eq!((last.status, last.text().as_str()), (206, "none\n"));
    assert_eq!(last.header("content-range"), Some("bytes 17-21/22"));
    let past = get(&s, "/static/r", "Range: bytes=100-\r\n").await;
    assert_eq!((past.status, past.body.len()), (416, 0));
    assert_eq!(past.header("content-range"), Some("bytes */22"));
    let several = get(&s, "/static/r", "Range: bytes=0-1,3-4\r\n").await;
    assert_eq!(
        (several.status, several.text().as_str()),
        (200, "/static/r #1 for none\n")
    );
    let other = get(
        &s,
        "/static/r",
        "Range: bytes=0-1\r\nIf-Range: \"other\"\r\n",
    )
    .await;
    assert_eq!((other.status, other.body.len()), (200, 22));
    assert_eq!(s.origin.count("/static/r"), 1);

    let mut send = h2_connect(&[&s.root_pem], s.env.https, HOST)
        .await
        .expect("h2");
    let request = http::Request::get(format!("https://{HOST}/static/r"))
        .header("range", "bytes=10-11")
        .body(())
        .expect("request");
    send = send.ready().await.expect("ready");
    let (response, _) = send.send_request(request, true).expect("send");
    let response = response.await.expect("response");
    assert_eq!(response.status().as_u16(), 206);
    let range = response.headers().get("content-range").cloned();
    assert_eq!(
        range.as_ref().map(|v| v.as_bytes()),
        Some(&b"bytes 10-11/22"[..])
    );
    let mut body = response.into_body();
    let mut got = Vec::new();
    while let Some(data) = body.data().await {
        got.extend_from_slice(&data.expect("data"));
    }
    assert_eq!(got, b"#1");
}
