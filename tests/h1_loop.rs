//! menshen's own HTTP/1 loop (src/proxy/h1/) against a scripted backend: keep-alive on both
//! sides, response framings, stale pooled connections, hop-by-hop fields, denials, and
//! pipelined and body-carrying requests on the same connection. The HTTP/1 and HTTP/2 engines
//! side by side: tests/h2_engine.rs.
//! Timeouts and shutdown: tests/h1_limits.rs.

mod support;

use std::sync::atomic::Ordering;
use std::time::Duration;

use support::eventually;
use support::h1::{get, start, start_with, Backend, Client};
use tokio::net::TcpStream;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keepalive_requests_share_one_backend_connection_without_hop_by_hop_fields() {
    let backend = Backend::start().await;
    let (env, _running) = start(&backend).await;
    let mut client = Client::connect(env.http).await;
    for i in 0..5 {
        client
            .send(&get(
                &format!("/n{i}?q={i}"),
                "Keep-Alive: timeout=9\r\nTE: trailers\r\nProxy-Connection: keep-alive\r\nConnection: keep-alive\r\nX-Custom: {i}\r\n",
            ))
            .await;
        let answer = client.response(false).await;
        assert_eq!(answer.status, 200, "{}", answer.head);
        assert_eq!(answer.body, format!("GET /n{i}?q={i} body=0").as_bytes());
        assert_eq!(
            answer.header("keep-alive"),
            None,
            "hop-by-hop from the backend"
        );
        assert!(answer.header("x-request-id").is_some());
        let seen = backend.last_request().to_ascii_lowercase();
        for gone in ["keep-alive:", "te:", "proxy-connection:", "connection:"] {
            assert!(
                !seen.contains(&format!("\r\n{gone}")),
                "{gone} forwarded: {seen}"
            );
        }
        for kept in [
            "x-custom: {i}",
            "host: example.cn",
            "x-forwarded-for: 127.0.0.1",
            "x-forwarded-proto: http",
        ] {
            assert!(seen.contains(kept), "{kept} missing: {seen}");
        }
    }
    assert_eq!(backend.accepted(), 1, "one pooled backend connection");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunked_interim_and_head_responses_keep_the_connection() {
    let backend = Backend::start().await;
    let (env, _running) = start(&backend).await;
    let mut client = Client::connect(env.http).await;

    client.send(&get("/chunked", "")).await;
    let chunked = client.response(false).await;
    assert_eq!(chunked.status, 200);
    assert_eq!(chunked.body, b"hello world");

    client.send(&get("/early-hints", "")).await;
    let hints = client.response(true).await;
    assert_eq!(hints.status, 103, "the 103 is passed on: {}", hints.head);
    assert_eq!(hints.header("link"), Some("</a.css>; rel=preload"));
    let hinted = client.response(false).await;
    assert_eq!(hinted.status, 200, "{}", hinted.head);
    assert_eq!(hinted.body, b"ok");

    client
        .send("HEAD /head HTTP/1.1\r\nHost: example.cn\r\n\r\n")
        .await;
    let head = client.response(true).await;
    assert_eq!(head.status, 200);
    assert_eq!(
        head.header("content-length"),
        Some("17"),
        "HEAD /head body=0"
    );

    client.send(&get("/after", "")).await;
    let after = client.response(false).await;
    assert_eq!(after.body, b"GET /after body=0");
    assert_eq!(backend.accepted(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_ends_at_close_goes_chunked_and_the_client_connection_stays() {
    let backend = Backend::start().await;
    let (env, _running) = start(&backend).await;
    let mut client = Client::connect(env.http).await;
    client.send(&get("/until-close", "")).await;
    let answer = client.response(false).await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.header("transfer-encoding"), Some("chunked"));
    assert_eq!(answer.header("connection"), None);
    assert_eq!(answer.body, b"the body ends at close");
    client.send(&get("/after", "")).await;
    assert_eq!(client.response(false).await.body, b"GET /after body=0");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pooled_connection_the_backend_closed_is_replaced() {
    let backend = Backend::start().await;
    let (env, _running) = start(&backend).await;
    let mut client = Client::connect(env.http).await;
    client.send(&get("/then-idle-close", "")).await;
    assert_eq!(client.response(false).await.status, 200);
    // The backend closes its end while the connection sits in menshen's pool.
    let closed = eventually(Duration::from_secs(5), || async {
        (backend.closed.load(Ordering::SeqCst) == 1).then_some(())
    })
    .await;
    assert!(closed.is_some(), "the backend closed the pooled connection");
    for path in ["/one", "/two"] {
        client.send(&get(path, "")).await;
        let answer = client.response(false).await;
        assert_eq!(answer.status, 200, "{}", answer.head);
        assert_eq!(answer.body, format!("GET {path} body=0").as_bytes());
    }
    assert_eq!(backend.accepted(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_requests_and_bodies_are_served_on_the_same_connection() {
    let backend = Backend::start().await;
    let (env, _running) = start(&backend).await;
    let mut client = Client::connect(env.http).await;
    // Two requests in one write (pipelined), then one with a body.
    client
        .send(&format!("{}{}", get("/p1", ""), get("/p2", "")))
        .await;
    assert_eq!(client.response(false).await.body, b"GET /p1 body=0");
    assert_eq!(client.response(false).await.body, b"GET /p2 body=0");
    client
        .send("POST /form HTTP/1.1\r\nHost: example.cn\r\nContent-Length: 5\r\n\r\nhello")
        .await;
    let posted = client.response(false).await;
    assert_eq!(posted.status, 200, "{}", posted.head);
    assert_eq!(posted.body, b"POST /form body=5");
    client
        .send(&get("/after-post", "Connection: close\r\n"))
        .await;
    let last = client.response(false).await;
    assert_eq!(last.body, b"GET /after-post body=0");
    assert!(
        client.closed_within(Duration::from_secs(3)).await,
        "Connection: close is honoured"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_that_is_down_is_a_502_that_closes_the_connection() {
    let backend = Backend::start().await;
    let (env, _running) = start(&backend).await;
    let port = backend.port;
    drop(backend);
    // Until the listener is gone, connections could still be accepted.
    let refused = eventually(Duration::from_secs(5), || async move {
        TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
            .then_some(())
    })
    .await;
    assert!(refused.is_some());
    let mut client = Client::connect(env.http).await;
    client.send(&get("/", "")).await;
    let answer = client.response(false).await;
    assert_eq!(answer.status, 502, "{}", answer.head);
    assert_eq!(answer.header("connection"), Some("close"));
    assert!(answer.header("x-request-id").is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_idempotent_requests_are_sent_again_when_a_pooled_connection_fails() {
    let backend = Backend::start().await;
    let (env, _running) = start(&backend).await;
    let mut client = Client::connect(env.http).await;
    let times = |what: &str| {
        let seen = backend.seen.lock().expect("lock");
        seen.iter().filter(|h| h.starts_with(what)).count()
    };

    client.send(&get("/arm", "")).await;
    assert_eq!(client.response(false).await.status, 200);
    client.send(&get("/retried", "")).await;
    let retried = client.response(false).await;
    assert_eq!(retried.status, 200, "{}", retried.head);
    assert_eq!(retried.body, b"GET /retried body=0");
    assert_eq!(
        times("GET /retried "),
        2,
        "a GET goes again on a new connection"
    );

    let mut client = Client::connect(env.http).await;
    client.send(&get("/arm", "")).await;
    assert_eq!(client.response(false).await.status, 200);
    client
        .send("POST /pay HTTP/1.1\r\nHost: example.cn\r\nContent-Length: 0\r\n\r\n")
        .await;
    let paid = client.response(false).await;
    assert_eq!(paid.status, 502, "{}", paid.head);
    assert_eq!(times("POST /pay "), 1, "a POST is never sent twice");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_headers_are_checked_and_cleaned() {
    let backend = Backend::start().await;
    let (env, _running) = start(&backend).await;
    let mut client = Client::connect(env.http).await;

    client
        .send(&get("/auth", "Proxy-Authorization: Basic c2VjcmV0\r\n"))
        .await;
    let answer = client.response(false).await;
    assert_eq!(answer.status, 200);
    assert!(answer.header("date").is_some(), "a Date is added");
    let seen = backend.last_request().to_ascii_lowercase();
    assert!(!seen.contains("proxy-authorization"), "{seen}");

    client.send(&get("/many-headers", "")).await;
    let many = client.response(false).await;
    assert_eq!(many.status, 200, "70 response fields are fine");
    assert_eq!(many.head.matches("Set-Cookie").count(), 70);
    assert_eq!(many.body, b"many");

    let connections = backend.accepted();
    client.send(&get("/both-lengths", "")).await;
    let both = client.response(false).await;
    assert_eq!(both.status, 200);
    assert_eq!(both.header("content-length"), None, "chunked framing wins");
    assert_eq!(both.body, b"hello");
    client.send(&get("/next", "")).await;
    assert_eq!(client.response(false).await.body, b"GET /next body=0");
    assert_eq!(
        backend.accepted(),
        connections + 1,
        "a backend that sent both lengths is not reused"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_denial_in_the_loop_keeps_the_connection() {
    let backend = Backend::start().await;
    let (env, _running) = start_with(
        &backend,
        "[[policy.takedowns]]\nid = \"case-1\"\nhost = \"example.cn\"\nprefix = \"/removed/\"\n",
    )
    .await;
    let mut client = Client::connect(env.http).await;
    client.send(&get("/removed/page", "")).await;
    let denied = client.response(false).await;
    assert_eq!(denied.status, 451, "{}", denied.head);
    assert!(denied.header("x-request-id").is_some());
    assert!(!denied.body.is_empty());
    client
        .send("HEAD /removed/page HTTP/1.1\r\nHost: example.cn\r\n\r\n")
        .await;
    let head = client.response(true).await;
    assert_eq!(head.status, 451);
    client.send(&get("/kept", "")).await;
    let after = client.response(false).await;
    assert_eq!(
        after.body, b"GET /kept body=0",
        "HEAD's denial sent no body"
    );
    assert_eq!(backend.accepted(), 1);
}
