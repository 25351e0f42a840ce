//! One canonical request target: a takedown holds for every spelling a backend would read as the
//! taken-down path, over plain HTTP, TLS, HTTP/1.0 and HTTP/2; what has no single meaning is 400;
//! the backend receives exactly the canonical form the policy judged.

mod support;

use support::http::{h2_connect, tls_client};
use support::policy::{id_of, setup};

/// Spellings of `/banned/x` on `shop.example.cn` (taken down as case-42), as a request line's
/// target and Host.
const BYPASSES: &[(&str, &str)] = &[
    ("/%62anned/x", "shop.example.cn"),
    ("/%62%61%6E%6e%65%64/x", "shop.example.cn"),
    ("//banned/x", "shop.example.cn"),
    ("/x/../banned/x", "shop.example.cn"),
    ("/x/%2e%2e/banned/x", "shop.example.cn"),
    ("/./banned/./x", "shop.example.cn"),
    ("/banned//x", "shop.example.cn"),
    ("/banned/x", "shop.example.cn."),
    ("/banned/x", "SHOP.Example.CN"),
    ("/banned/x", "shop.example.cn.:80"),
    ("http://shop.example.cn/banned/x", "news.example.cn"),
    ("HTTP://SHOP.EXAMPLE.CN./%62anned/x", "shop.example.cn"),
];

fn request(version: &str, target: &str, host: &str) -> Vec<u8> {
    format!("GET {target} {version}\r\nHost: {host}\r\nConnection: close\r\n\r\n").into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_takedown_holds_for_every_spelling_of_its_path_and_host() {
    let s = setup("", "").await;
    for (target, host) in BYPASSES {
        for version in ["HTTP/1.1", "HTTP/1.0"] {
            let raw = request(version, target, host);
            let plain = s.plain(&raw).await;
            assert_eq!(
                plain.status,
                451,
                "plain {version} {target} Host: {host}: {}",
                plain.text()
            );
            assert_eq!(plain.text(), "gone for legal reasons");
            let line = s.log_line(&id_of(&plain)).await;
            assert_eq!(line["decision"], "deny:takedown:case-42");
            assert_eq!(
                line["path"], "/banned/x",
                "the log shows the canonical path"
            );
            let tls = s.tls("shop.example.cn", &raw).await;
            assert_eq!(tls.status, 451, "TLS {version} {target} Host: {host}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_takedown_holds_over_http2() {
    let s = setup("", "").await;
    let mut h2 = h2_connect(&[&s.root.pem], s.env.https, "shop.example.cn")
        .await
        .expect("h2 connect");
    for path in [
        "/%62anned/x",
        "//banned/x",
        "/x/../banned/x",
        "/x/%2E%2E/banned/x",
    ] {
        let request = http::Request::get(format!("https://shop.example.cn{path}"))
            .body(())
            .expect("request");
        h2 = h2.ready().await.expect("ready");
        let (response, _) = h2.send_request(request, true).expect("send");
        let response = response.await.expect("response");
        assert_eq!(response.status(), 451, "h2 {path}");
    }
    let request = http::Request::get("https://SHOP.example.cn./banned/x")
        .body(())
        .expect("request");
    h2 = h2.ready().await.expect("ready");
    let (response, _) = h2.send_request(request, true).expect("send");
    assert_eq!(
        response.await.expect("response").status(),
        451,
        "h2 authority"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_has_no_single_meaning_is_400_and_reaches_no_backend() {
    let s = setup("", "").await;
    let cases: &[&[u8]] = &[
        b"GET /banned%2Fx HTTP/1.1\r\nHost: shop.example.cn\r\n\r\n",
        b"GET /a%5C..%5Cbanned HTTP/1.1\r\nHost: shop.example.cn\r\n\r\n",
        b"GET /a\\b HTTP/1.1\r\nHost: shop.example.cn\r\n\r\n",
        b"GET /%zz HTTP/1.1\r\nHost: shop.example.cn\r\n\r\n",
        b"GET /../banned/x HTTP/1.1\r\nHost: shop.example.cn\r\n\r\n",
        b"GET  /banned/x HTTP/1.1\r\nHost: shop.example.cn\r\n\r\n",
        b"GET /banned/x  HTTP/1.1\r\nHost: shop.example.cn\r\n\r\n",
        b"GET\t/banned/x HTTP/1.1\r\nHost: shop.example.cn\r\n\r\n",
        b"GET /banned/x HTTP/1.1\r\n\r\n",
        b"GET /banned/x HTTP/1.1\r\nHost: shop.example.cn\r\nHost: news.example.cn\r\n\r\n",
        b"GET /banned/x HTTP/1.1\r\nHost: shop..example.cn\r\n\r\n",
        b"GET /banned/x HTTP/1.1\r\nHost: shop.example.cn/x\r\n\r\n",
        b"GET http://user@shop.example.cn/ HTTP/1.1\r\nHost: shop.example.cn\r\n\r\n",
        b"GET ftp://shop.example.cn/ HTTP/1.1\r\nHost: shop.example.cn\r\n\r\n",
    ];
    for raw in cases {
        let resp = s.plain(raw).await;
        let text = String::from_utf8_lossy(raw);
        assert_eq!(resp.status, 400, "{text:?}");
        assert_eq!(resp.header("connection"), Some("close"), "{text:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_backend_receives_the_canonical_target_and_host() {
    let s = setup("", "").await;
    for (raw, target, host) in [
        (
            request(
                "HTTP/1.1",
                "/a/./b/../%7Euser//%e4%b8%ad?q=%2F..",
                "SHOP.example.cn.",
            ),
            "/a/~user/%E4%B8%AD?q=%2F..",
            "shop.example.cn",
        ),
        (
            request(
                "HTTP/1.1",
                "http://shop.example.cn:80//x",
                "news.example.cn",
            ),
            "/x",
            "shop.example.cn:80",
        ),
        (
            request("HTTP/1.0", "/b/%41", "shop.example.cn"),
            "/b/A",
            "shop.example.cn",
        ),
    ] {
        let resp = s.plain(&raw).await;
        assert_eq!(resp.status, 200);
        assert_eq!(resp.text(), format!("origin {target} host={host}"));
    }
    let client = tls_client(&[&s.root.pem]);
    let resp = support::http::raw_tls(
        &client,
        s.env.https,
        "shop.example.cn",
        b"",
        &request("HTTP/1.1", "/c/%2e/d", "shop.example.cn"),
    )
    .await
    .expect("TLS request");
    assert_eq!(resp.text(), "origin /c/d host=shop.example.cn");
}
