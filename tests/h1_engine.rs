//! The HTTP/1 engine with every request shape: bodies (Content-Length, chunked with trailers,
//! `Expect: 100-continue`), pipelining after a body, HTTP/1.0, upgrades, and backends that
//! break a response off (the client must see it broken, never complete).

mod support;

use std::time::Duration;

use support::h1::{echoes, get, start, upgrade, Backend, Client};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn post(path: &str, extra: &str, body: &str) -> String {
    format!("POST {path} HTTP/1.1\r\nHost: example.cn\r\n{extra}\r\n{body}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_bodies_reach_the_backend_exactly_and_the_connection_goes_on() {
    let backend = Backend::start().await;
    let (env, _running) = start(&backend).await;
    let mut client = Client::connect(env.http).await;

    let body = "x".repeat(4096);
    let cl = format!("Content-Length: {}\r\n", body.len());
    client.send(&post("/cl", &cl, &body)).await;
    assert_eq!(client.response(false).await.body, b"POST /cl body=4096");
    assert!(backend.last_request().ends_with(&body));

    // Chunked, with an extension and a trailer: the backend gets the payload in menshen's
    // chunks, without either; the pipelined GET after it is a second request, not part of the
    // body.
    let chunked = "5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nx-checksum: 9\r\n\r\n";
    let raw = post("/chunked-in", "Transfer-Encoding: chunked\r\n", chunked) + &get("/next", "");
    client.send(&raw).await;
    let first = client.response(false).await;
    assert_eq!(first.body, b"POST /chunked-in body=11");
    let seen = backend
        .seen
        .lock()
        .expect("lock")
        .iter()
        .find(|r| r.starts_with("POST /chunked-in "))
        .cloned()
        .expect("the chunked request reached the backend");
    assert!(seen.contains("transfer-encoding: chunked\r\n"), "{seen}");
    let framed = "5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n";
    assert!(seen.ends_with(&format!("\r\n\r\n{framed}")), "{seen}");
    assert_eq!(client.response(false).await.body, b"GET /next body=0");
    assert_eq!(
        backend.accepted(),
        1,
        "one backend connection for all of it"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expect_100_continue_is_answered_before_the_body_is_sent() {
    let backend = Backend::start().await;
    let (env, _running) = start(&backend).await;
    let mut tcp = tokio::net::TcpStream::connect(("127.0.0.1", env.http))
        .await
        .expect("connect");
    let head = post(
        "/upload",
        "Content-Length: 5\r\nExpect: 100-continue\r\n",
        "",
    );
    tcp.write_all(head.as_bytes()).await.expect("write");
    let mut got = vec![0u8; 25];
    tokio::time::timeout(Duration::from_secs(5), tcp.read_exact(&mut got))
        .await
        .expect("100 Continue in time")
        .expect("read");
    assert_eq!(got, b"HTTP/1.1 100 Continue\r\n\r\n");
    tcp.write_all(b"hello").await.expect("body");
    let mut rest = Vec::new();
    let mut chunk = [0u8; 1024];
    while !String::from_utf8_lossy(&rest).contains("body=5") {
        let n = tcp.read(&mut chunk).await.expect("read");
        assert!(n > 0, "closed before the response");
        rest.extend_from_slice(&chunk[..n]);
    }
    let seen = backend.last_request().to_ascii_lowercase();
    assert!(
        !seen.contains("expect:"),
        "Expect is the proxy's to answer: {seen}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ambiguous_framing_is_refused_and_never_reaches_the_backend() {
    let backend = Backend::start().await;
    let (env, _running) = start(&backend).await;
    for (extra, status) in [
        ("Content-Length: 5\r\nTransfer-Encoding: chunked\r\n", 400),
        ("Content-Length: 5\r\nContent-Length: 6\r\n", 400),
        ("Content-Length: -5\r\n", 400),
        ("Transfer-Encoding: gzip, chunked\r\n", 501),
        ("Transfer-Encoding: chunked, chunked\r\n", 501),
        ("Expect: something-else\r\n", 417),
    ] {
        let mut client = Client::connect(env.http).await;
        client.send(&post("/x", extra, "hello")).await;
        let answer = client.response(false).await;
        assert_eq!(answer.status, status, "{extra:?}");
        assert_eq!(answer.header("connection"), Some("close"), "{extra:?}");
    }
    let mut client = Client::connect(env.http).await;
    client
        .send(&post(
            "/x",
            "Transfer-Encoding: chunked\r\n",
            "zz\r\nhello\r\n",
        ))
        .await;
    assert_eq!(client.response(false).await.status, 400, "bad chunk size");
    assert_eq!(backend.accepted(), 0, "no backend was contacted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http10_requests_are_served_and_kept_alive_only_when_asked() {
    let backend = Backend::start().await;
    let (env, _running) = start(&backend).await;
    let mut client = Client::connect(env.http).await;
    client
        .send("GET /one HTTP/1.0\r\nHost: example.cn\r\nConnection: keep-alive\r\n\r\n")
        .await;
    let answer = client.response(false).await;
    assert_eq!(answer.body, b"GET /one body=0");
    assert_eq!(answer.header("connection"), Some("keep-alive"));
    client
        .send("GET /two HTTP/1.0\r\nHost: example.cn\r\n\r\n")
        .await;
    let answer = client.response(false).await;
    assert_eq!(answer.body, b"GET /two body=0");
    assert_eq!(answer.header("connection"), Some("close"));
    assert!(client.closed_within(Duration::from_secs(2)).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_upgrade_carries_bytes_both_ways_until_close() {
    let backend = Backend::start().await;
    let (env, _running) = start(&backend).await;
    let mut tcp = tokio::net::TcpStream::connect(("127.0.0.1", env.http))
        .await
        .expect("connect");
    let text = upgrade(&mut tcp).await.to_ascii_lowercase();
    assert!(text.starts_with("http/1.1 101 "), "{text}");
    assert!(text.contains("\r\nupgrade: websocket\r\n"), "{text}");
    assert!(text.contains("\r\nconnection: upgrade\r\n"), "{text}");
    let seen = backend.last_request().to_ascii_lowercase();
    assert!(seen.contains("connection: upgrade\r\n"), "{seen}");
    assert!(seen.contains("upgrade: websocket\r\n"), "{seen}");
    assert!(seen.contains("sec-websocket-key: "), "{seen}");
    for message in ["ping 1", "ping 2 after a pause"] {
        echoes(&mut tcp, message.as_bytes()).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_response_the_backend_breaks_off_reaches_the_client_broken() {
    let backend = Backend::start().await;
    let (env, _running) = start(&backend).await;
    for (path, framing) in [
        ("/cut-length", "content-length: 100"),
        ("/cut-chunked", "transfer-encoding: chunked"),
        ("/reset-mid-body", "transfer-encoding: chunked"),
    ] {
        let mut tcp = tokio::net::TcpStream::connect(("127.0.0.1", env.http))
            .await
            .expect("connect");
        tcp.write_all(get(path, "").as_bytes())
            .await
            .expect("write");
        let mut got = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), tcp.read_to_end(&mut got)).await;
        let text = String::from_utf8_lossy(&got).to_ascii_lowercase();
        assert!(text.starts_with("http/1.1 200 "), "{path}: {text}");
        assert!(text.contains(framing), "{path}: {text}");
        assert!(
            !text.contains("502") && !text.contains("bad gateway"),
            "{path}: {text}"
        );
        assert!(
            !text.ends_with("0\r\n\r\n"),
            "{path}: the body must not look complete: {text}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn responses_no_client_may_get_are_502() {
    let backend = Backend::start().await;
    let (env, _running) = start(&backend).await;
    for path in ["/bad-first-chunk", "/status-999", "/unasked-101"] {
        let mut client = Client::connect(env.http).await;
        client.send(&get(path, "")).await;
        let answer = client.response(false).await;
        assert_eq!(answer.status, 502, "{path}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_upgrade_works_on_the_tls_listener_too() {
    let backend = Backend::start().await;
    let (env, _running, root) = support::h1::launch(&backend, "").await;
    let client = support::http::tls_client(&[&root.pem]);
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", env.https))
        .await
        .expect("connect");
    let name = rustls::pki_types::ServerName::try_from("example.cn").expect("name");
    let mut tls = client.connect(name, tcp).await.expect("handshake");
    assert!(upgrade(&mut tls).await.starts_with("HTTP/1.1 101 "));
    echoes(&mut tls, b"over tls").await;
}
