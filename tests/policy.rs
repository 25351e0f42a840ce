//! Every data-path rule, seen by a real client, with the access log line it leaves.

mod support;

use serde_json::Value;
use support::free_port;
use support::http::{get_with, raw_plain, raw_tls, tls_client};
use support::policy::{id_of, setup};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allowed_request_is_logged_with_every_field() {
    let s = setup("", "").await;
    let resp = s
        .tls("shop.example.cn", &get_with("shop.example.cn", "/echo?q=1", "User-Agent: ua-test\r\ntraceparent: 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01\r\n"))
        .await;
    assert_eq!(resp.status, 200);
    let echoed = resp.text().to_ascii_lowercase();
    for header in [
        "x-forwarded-for: 127.0.0.1",
        "x-forwarded-proto: https",
        "x-forwarded-host: shop.example.cn",
        "x-real-ip: 127.0.0.1",
        "x-request-id: ",
        "traceparent: 00-0af7651916cd43dd8448eb211c80319c",
    ] {
        assert!(echoed.contains(header), "origin saw {header}: {echoed}");
    }
    assert_eq!(resp.header("server"), None, "Server removed");
    assert_eq!(resp.header("x-powered-by"), None, "X-Powered-By removed");
    assert_eq!(resp.header("x-frame-options"), Some("DENY"));
    assert_eq!(
        resp.header("strict-transport-security"),
        Some("max-age=600")
    );

    let line = s.log_line(&id_of(&resp)).await;
    let keys: Vec<&str> = line
        .as_object()
        .expect("object")
        .keys()
        .map(String::as_str)
        .collect();
    let mut expected = vec![
        "ts",
        "client_ip",
        "client_port",
        "listener",
        "tls_version",
        "tls_cipher",
        "sni",
        "host",
        "site",
        "route",
        "http_version",
        "method",
        "path",
        "query",
        "status",
        "bytes_in",
        "bytes_out",
        "duration_ms",
        "upstream",
        "tries",
        "upstream_status",
        "upstream_connect_ms",
        "upstream_first_byte_ms",
        "cache",
        "compression",
        "request_id",
        "user_agent",
        "decision",
        // The tamper-evidence chain (observe::chain).
        "w",
        "seq",
        "chain",
    ];
    let mut got = keys.clone();
    expected.sort_unstable();
    got.sort_unstable();
    assert_eq!(got, expected);
    assert_eq!(line["client_ip"], "127.0.0.1");
    assert!(line["client_port"].as_u64().is_some());
    assert_eq!(line["listener"], "https");
    assert_eq!(line["sni"], "shop.example.cn");
    assert_eq!(line["tls_version"], "TLSv1.3");
    assert!(line["tls_cipher"]
        .as_str()
        .is_some_and(|c| c.starts_with("TLS13_")));
    assert_eq!(line["path"], "/echo");
    assert_eq!(line["query"], "q=1");
    assert_eq!(line["status"], 200);
    assert_eq!(line["upstream_status"], 200);
    assert!(line["upstream"]
        .as_str()
        .is_some_and(|u| u.starts_with("127.0.0.1:")));
    assert_eq!(line["user_agent"], "ua-test");
    assert_eq!(line["decision"], "allow");
    let ts = line["ts"].as_str().expect("ts");
    assert!(
        ts.len() == 29 && ts.ends_with("+00:00") && ts.as_bytes()[19] == b'.',
        "{ts}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_have_their_status_and_decision() {
    let s = setup("", "").await;
    let long_uri = format!("/{}", "a".repeat(9000));
    let big_header = format!("X-Big: {}\r\n", "b".repeat(40_000));
    let cases: Vec<(Vec<u8>, u16, &str)> = vec![
        (get_with("unknown.example.org", "/", ""), 403, "deny:unknown_host"),
        (get_with("shop.example.cn", "/banned/x", ""), 451, "deny:takedown:case-42"),
        (get_with("shop.example.cn", &long_uri, ""), 414, "deny:uri_too_long"),
        (get_with("shop.example.cn", "/", &big_header), 431, "deny:headers_too_large"),
        (b"TRACE / HTTP/1.1\r\nHost: shop.example.cn\r\nConnection: close\r\n\r\n".to_vec(), 405, "deny:method_not_allowed"),
        (b"POST / HTTP/1.1\r\nHost: shop.example.cn\r\nContent-Length: 500\r\nConnection: close\r\n\r\n".to_vec(), 413, "deny:body_too_large"),
    ];
    for (raw, status, decision) in cases {
        let resp = s.plain(&raw).await;
        assert_eq!(resp.status, status, "{decision}");
        let line = s.log_line(&id_of(&resp)).await;
        assert_eq!(line["decision"], decision);
        assert_eq!(line["status"], status);
        assert_eq!(
            line["upstream"],
            Value::Null,
            "{decision}: no upstream contacted"
        );
    }
    let takedown = s.plain(&get_with("shop.example.cn", "/banned/x", "")).await;
    assert_eq!(takedown.text(), "gone for legal reasons");

    // A streamed (chunked) body over the site's limit is cut off with 413 too.
    let chunk = "x".repeat(80);
    let raw = format!("POST /echo HTTP/1.1\r\nHost: shop.example.cn\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n50\r\n{chunk}\r\n50\r\n{chunk}\r\n0\r\n\r\n");
    let resp = s.plain(raw.as_bytes()).await;
    assert_eq!(resp.status, 413);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sni_host_mismatch_is_421_and_https_only_redirects() {
    let s = setup("", "").await;
    let resp = s
        .tls("shop.example.cn", &get_with("news.example.cn", "/", ""))
        .await;
    assert_eq!(resp.status, 421);
    assert_eq!(
        s.log_line(&id_of(&resp)).await["decision"],
        "deny:sni_host_mismatch"
    );

    let resp = s
        .plain(&get_with("news.example.cn", "/a?private=1", ""))
        .await;
    assert_eq!(resp.status, 308);
    assert_eq!(
        resp.header("location"),
        Some(format!("https://news.example.cn:{}/a?private=1", s.env.https).as_str())
    );
    let line = s.log_line(&id_of(&resp)).await;
    assert_eq!(line["decision"], "deny:https_only");
    assert!(
        line.get("query").is_none(),
        "log_query = false omits the query: {line}"
    );
    let ok = s
        .tls("news.example.cn", &get_with("news.example.cn", "/", ""))
        .await;
    assert_eq!(ok.text(), "news");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn denied_cidr_is_403() {
    let s = setup("deny = [\"10.0.0.0/8\", \"127.0.0.0/8\"]", "").await;
    let resp = s.plain(&get_with("shop.example.cn", "/", "")).await;
    assert_eq!(resp.status, 403);
    assert_eq!(s.log_line(&id_of(&resp)).await["decision"], "deny:ip_deny");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn site_allow_list_refuses_others() {
    let s = setup("", "allow = [\"10.0.0.0/8\"]").await;
    let resp = s.plain(&get_with("shop.example.cn", "/", "")).await;
    assert_eq!(resp.status, 403);
    assert_eq!(
        s.log_line(&id_of(&resp)).await["decision"],
        "deny:site_ip_not_allowed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limit_reaches_429_with_retry_after() {
    let s = setup("", "").await;
    let first = s
        .plain(&get_with("shop.example.cn", "/limited/a", ""))
        .await;
    assert_eq!(first.status, 200);
    let mut limited = None;
    for _ in 0..5 {
        let r = s
            .plain(&get_with("shop.example.cn", "/limited/a", ""))
            .await;
        if r.status == 429 {
            limited = Some(r);
            break;
        }
    }
    let resp = limited.expect("a 429 within the burst");
    let retry: u64 = resp
        .header("retry-after")
        .expect("Retry-After")
        .parse()
        .expect("seconds");
    assert!((1..=2).contains(&retry), "{retry}");
    assert_eq!(
        s.log_line(&id_of(&resp)).await["decision"],
        "deny:rate_limit"
    );
    // Other routes of the site are not limited.
    assert_eq!(
        s.plain(&get_with("shop.example.cn", "/other", ""))
            .await
            .status,
        200
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_protocol_v1_and_v2_give_the_client_address() {
    let s = setup("", "").await;
    let client = tls_client(&[&s.root.pem]);
    let v1 = b"PROXY TCP4 203.0.113.7 10.0.0.1 40123 443\r\n";
    let resp = raw_tls(
        &client,
        s.pp_port,
        "shop.example.cn",
        v1,
        &get_with("shop.example.cn", "/", ""),
    )
    .await
    .expect("v1");
    assert_eq!(resp.status, 200);
    let line = s.log_line(&id_of(&resp)).await;
    assert_eq!(line["client_ip"], "203.0.113.7");
    assert_eq!(line["client_port"], 40123);
    assert_eq!(line["listener"], "https-lb");

    let mut v2 = vec![
        0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A,
    ];
    v2.extend_from_slice(&[
        0x21, 0x11, 0, 12, 198, 51, 100, 9, 10, 0, 0, 1, 0x9c, 0x41, 0x01, 0xbb,
    ]);
    let resp = raw_tls(
        &client,
        s.pp_port,
        "shop.example.cn",
        &v2,
        &get_with("shop.example.cn", "/echo", ""),
    )
    .await
    .expect("v2");
    assert_eq!(resp.status, 200);
    assert!(resp
        .text()
        .to_ascii_lowercase()
        .contains("x-real-ip: 198.51.100.9"));
    let line = s.log_line(&id_of(&resp)).await;
    assert_eq!(line["client_ip"], "198.51.100.9");
    assert_eq!(line["client_port"], 40001);

    // Without a PROXY header the balancer listener drops the connection.
    let err = raw_tls(
        &client,
        s.pp_port,
        "shop.example.cn",
        b"",
        &get_with("shop.example.cn", "/", ""),
    )
    .await;
    assert!(err.is_err(), "no PROXY header, no service");

    // Plain HTTP behind the balancer: the header comes before the request.
    let mut raw = b"PROXY TCP4 203.0.113.8 10.0.0.1 40124 80\r\n".to_vec();
    raw.extend_from_slice(&get_with("shop.example.cn", "/", ""));
    let resp = raw_plain(s.pp_plain_port, &raw, None)
        .await
        .expect("plain v1");
    assert_eq!(resp.status, 200);
    let line = s.log_line(&id_of(&resp)).await;
    assert_eq!(line["client_ip"], "203.0.113.8");
    assert_eq!(line["client_port"], 40124);
    assert_eq!(line["listener"], "http-lb");
    let err = raw_plain(s.pp_plain_port, &get_with("shop.example.cn", "/", ""), None).await;
    assert!(
        err.is_err(),
        "no PROXY header on the plain balancer listener, no service: {:?}",
        err.map(|r| r.status)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_for_is_believed_only_from_trusted_proxies() {
    let xff = "X-Forwarded-For: 203.0.113.50\r\nX-Request-Id: from-the-lb\r\n";
    let untrusted = setup("", "").await;
    let resp = untrusted
        .plain(&get_with("shop.example.cn", "/", xff))
        .await;
    let id = id_of(&resp);
    assert_ne!(
        id, "from-the-lb",
        "an untrusted client's request id is replaced"
    );
    assert_eq!(untrusted.log_line(&id).await["client_ip"], "127.0.0.1");

    let trusted = setup("trusted_proxies = [\"127.0.0.1/32\"]", "").await;
    let resp = trusted
        .plain(&get_with("shop.example.cn", "/echo", xff))
        .await;
    assert_eq!(
        id_of(&resp),
        "from-the-lb",
        "a trusted proxy's request id is kept"
    );
    let line = trusted.log_line("from-the-lb").await;
    assert_eq!(line["client_ip"], "203.0.113.50");
    assert_eq!(line["client_port"], Value::Null);
    let echoed = resp.text().to_ascii_lowercase();
    assert!(
        echoed.contains("x-forwarded-for: 203.0.113.50, 127.0.0.1"),
        "{echoed}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_source_port_is_logged() {
    let s = setup("", "").await;
    let port = free_port();
    let resp = raw_plain(
        s.env.http,
        &get_with("shop.example.cn", "/", ""),
        Some(port),
    )
    .await
    .expect("bound request");
    let line = s.log_line(&id_of(&resp)).await;
    assert_eq!(line["client_port"], port);
    assert_eq!(line["listener"], "http");
    assert_eq!(line["tls_version"], Value::Null);
}
