//! The HTTP/1 engine to TLS backends (the GCP case): bodies, keep-alive reuse of one verified
//! connection, the name sent and verified, upgrades, broken responses, and a pooled
//! connection the backend dropped.

mod support;

use std::time::Duration;

use support::h1::{echoes, get, launch_tls, upgrade, Backend, Client};
use support::pki::{Ca, LeafSpec};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn post(path: &str, extra: &str, body: &str) -> String {
    format!("POST {path} HTTP/1.1\r\nHost: example.cn\r\n{extra}\r\n{body}")
}

fn names(backend: &Backend) -> Vec<String> {
    backend.names.lock().expect("lock").clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn posts_and_gets_share_one_verified_connection_made_for_the_host() {
    let ca = Ca::root("Backend CA");
    let backend = Backend::start_tls(&ca.issue(&LeafSpec::new(&["example.cn"], 2))).await;
    let (env, running, _) = launch_tls(&backend, &ca, "").await;
    let mut client = Client::connect(env.http).await;

    let body = "p".repeat(64 * 1024);
    let cl = format!("Content-Length: {}\r\n", body.len());
    client.send(&post("/api", &cl, &body)).await;
    let answer = client.response(false).await;
    assert_eq!(answer.status, 200, "{}", running.log());
    assert_eq!(answer.body, b"POST /api body=65536");
    assert!(
        backend.last_request().ends_with(&body),
        "the body arrived whole"
    );

    let chunked = "5\r\nhello\r\n0\r\nx-sum: 1\r\n\r\n";
    client
        .send(&post("/chunks", "Transfer-Encoding: chunked\r\n", chunked))
        .await;
    assert_eq!(client.response(false).await.body, b"POST /chunks body=5");
    // Re-framed by menshen, without the trailer (`h1::upload`).
    assert!(backend
        .last_request()
        .ends_with("\r\n\r\n5\r\nhello\r\n0\r\n\r\n"));

    for _ in 0..3 {
        client.send(&get("/again", "")).await;
        assert_eq!(client.response(false).await.body, b"GET /again body=0");
    }
    assert_eq!(backend.accepted(), 1, "one TLS connection carried all five");
    assert_eq!(names(&backend), ["example.cn"], "SNI is the Host's name");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_configured_name_is_sent_and_a_wrong_one_is_a_502() {
    let ca = Ca::root("Backend CA");
    let leaf = ca.issue(&LeafSpec::new(&["backend.internal"], 3));
    let backend = Backend::start_tls(&leaf).await;
    let (env, running, _) = launch_tls(&backend, &ca, "sni = \"backend.internal\"").await;
    let mut client = Client::connect(env.http).await;
    client.send(&get("/named", "")).await;
    let answer = client.response(false).await;
    assert_eq!(answer.status, 200, "{}", running.log());
    assert_eq!(names(&backend), ["backend.internal"]);

    // Without `sni`, the Host (example.cn) is sent: the backend's certificate does not cover
    // it, so the handshake fails and nothing is sent in clear.
    let (env, running, _) = launch_tls(&backend, &ca, "").await;
    let mut client = Client::connect(env.http).await;
    client.send(&get("/unnamed", "")).await;
    assert_eq!(client.response(false).await.status, 502);
    assert!(
        running.log().contains("TLS handshake"),
        "the log says why: {}",
        running.log()
    );
    assert!(
        !backend.last_request().contains("/unnamed"),
        "no request went to an unverified backend"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upgrades_broken_bodies_and_dropped_idle_connections_over_tls() {
    let ca = Ca::root("Backend CA");
    let backend = Backend::start_tls(&ca.issue(&LeafSpec::new(&["example.cn"], 4))).await;
    let (env, _running, _) = launch_tls(&backend, &ca, "").await;

    // A WebSocket through a TLS backend: bytes both ways.
    let mut tcp = tokio::net::TcpStream::connect(("127.0.0.1", env.http))
        .await
        .expect("connect");
    assert!(upgrade(&mut tcp).await.starts_with("HTTP/1.1 101 "));
    echoes(&mut tcp, b"through tls").await;

    // A body the backend breaks off stays broken.
    let mut tcp = tokio::net::TcpStream::connect(("127.0.0.1", env.http))
        .await
        .expect("connect");
    tcp.write_all(get("/cut-length", "").as_bytes())
        .await
        .expect("write");
    let mut got = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), tcp.read_to_end(&mut got)).await;
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 200 "), "{text}");
    assert!(text.ends_with("only ten.."), "nothing appended: {text}");

    // The backend drops the pooled connection as the next request arrives: the GET goes
    // again on a new connection and the client never sees it.
    let mut client = Client::connect(env.http).await;
    client.send(&get("/arm", "")).await;
    assert_eq!(client.response(false).await.status, 200);
    let before = backend.accepted();
    client.send(&get("/after-drop", "")).await;
    let answer = client.response(false).await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.body, b"GET /after-drop body=0");
    assert_eq!(
        backend.accepted(),
        before + 1,
        "retried on a new connection"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http2_client_to_an_http1_backend_counts_one_attempt() {
    let ca = Ca::root("Backend CA");
    let backend = Backend::start_tls(&ca.issue(&LeafSpec::new(&["example.cn"], 2))).await;
    let admin = support::free_port();
    // HTTP/2 is offered to the backend (`http2 = true`), which chooses HTTP/1.1: the request goes again over
    // HTTP/1.1 to the same backend, one attempt and no retry.
    let admin_section = format!("http2 = true\n[admin]\naddr = \"127.0.0.1:{admin}\"\n");
    let (env, running, root) = launch_tls(&backend, &ca, &admin_section).await;
    let mut h2 = support::http::h2_connect(&[&root.pem], env.https, "example.cn")
        .await
        .expect("HTTP/2 connection");
    let status = support::http::h2_get(&mut h2, "https://example.cn/one").await;
    assert_eq!(status.expect("GET over HTTP/2"), 200, "{}", running.log());
    for (series, count) in [
        ("menshen_upstream_requests_total{upstream=\"backend\"}", 1.0),
        (
            "menshen_upstream_retries_total{reason=\"connect\",upstream=\"backend\"}",
            0.0,
        ),
        (
            "menshen_upstream_first_byte_seconds_count{upstream=\"backend\"}",
            1.0,
        ),
    ] {
        assert_eq!(
            support::admin::metric(admin, series).await,
            Some(count),
            "{series}"
        );
    }
}
