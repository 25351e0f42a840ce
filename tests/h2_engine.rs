//! The HTTP/2 engine with real HTTP/2 clients (the `h2` crate over rustls, ALPN h2): many
//! concurrent streams on one connection, request bodies with and without a length, cookies,
//! a download larger than every window, a body the backend breaks off, TLS backends, and
//! requests that cannot be made canonical.

mod support;

use bytes::Bytes;
use h2::client::SendRequest;
use support::h1::{field_names, field_value, launch, launch_tls, Backend};
use support::http::{h2_connect, raw_tls, tls_client};
use support::pki::{Ca, LeafSpec};

/// What an HTTP/2 client saw of one request: the status, the fields, the body (or the error
/// that ended it).
struct Got {
    status: u16,
    headers: http::HeaderMap,
    body: Result<Vec<u8>, String>,
}

async fn send(
    client: &SendRequest<Bytes>,
    request: http::Request<()>,
    body: Option<Vec<Bytes>>,
) -> Got {
    let mut client = client.clone().ready().await.expect("ready");
    let (response, mut stream) = client.send_request(request, body.is_none()).expect("send");
    if let Some(parts) = body {
        let count = parts.len();
        for (i, part) in parts.into_iter().enumerate() {
            stream.reserve_capacity(part.len());
            stream.send_data(part, i + 1 == count).expect("data");
        }
    }
    let response = match response.await {
        Ok(response) => response,
        Err(e) => {
            return Got {
                status: 0,
                headers: http::HeaderMap::new(),
                body: Err(e.to_string()),
            }
        }
    };
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let mut recv = response.into_body();
    let mut body = Vec::new();
    let body = loop {
        match recv.data().await {
            Some(Ok(chunk)) => {
                let _ = recv.flow_control().release_capacity(chunk.len());
                body.extend_from_slice(&chunk);
            }
            Some(Err(e)) => break Err(e.to_string()),
            None => break Ok(body),
        }
    };
    Got {
        status,
        headers,
        body,
    }
}

fn get(path: &str) -> http::Request<()> {
    http::Request::get(format!("https://example.cn{path}"))
        .body(())
        .expect("request")
}

fn post(path: &str, length: Option<usize>) -> http::Request<()> {
    let mut request = http::Request::post(format!("https://example.cn{path}"));
    if let Some(n) = length {
        request = request.header("content-length", n);
    }
    request.body(()).expect("request")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_streams_bodies_and_cookies_on_one_connection() {
    let backend = Backend::start().await;
    let (env, running, root) = launch(&backend, "").await;
    let client = h2_connect(&[&root.pem], env.https, "example.cn")
        .await
        .expect("h2 connection");

    let gets = (0..24).map(|i| {
        let client = client.clone();
        async move { send(&client, get(&format!("/stream/{i}")), None).await }
    });
    for (i, got) in futures_join(gets).await.into_iter().enumerate() {
        assert_eq!(got.status, 200, "{}", running.log());
        assert_eq!(
            got.body.expect("whole body"),
            format!("GET /stream/{i} body=0").as_bytes()
        );
        assert!(got.headers.contains_key("x-request-id"));
        assert!(got.headers.contains_key("date"));
    }

    let body = vec![b'a'; 64 * 1024];
    let parts = body.chunks(10_000).map(Bytes::copy_from_slice).collect();
    let got = send(&client, post("/sized", Some(body.len())), Some(parts)).await;
    assert_eq!(got.body.expect("body"), b"POST /sized body=65536");
    let seen = backend.last_request();
    assert!(seen.contains("content-length: 65536\r\n"), "{seen}");
    assert!(seen.ends_with(std::str::from_utf8(&body).expect("ascii")));

    let parts = vec![Bytes::from_static(b"hello "), Bytes::from_static(b"world")];
    let got = send(&client, post("/unsized", None), Some(parts)).await;
    assert_eq!(got.body.expect("body"), b"POST /unsized body=11");
    let seen = backend.last_request();
    assert!(seen.contains("transfer-encoding: chunked\r\n"), "{seen}");
    assert!(
        seen.ends_with("6\r\nhello \r\n5\r\nworld\r\n0\r\n\r\n"),
        "{seen}"
    );

    let request = http::Request::get("https://example.cn/cookies")
        .header("cookie", "a=1")
        .header("cookie", "b=2")
        .body(())
        .expect("request");
    assert_eq!(send(&client, request, None).await.status, 200);
    let seen = backend.last_request().to_ascii_lowercase();
    assert!(seen.contains("\r\ncookie: a=1; b=2\r\n"), "{seen}");
    assert!(seen.contains("\r\nhost: example.cn\r\n"), "{seen}");
    assert!(seen.contains("\r\nx-forwarded-proto: https\r\n"), "{seen}");
    assert!(seen.starts_with("get /cookies http/1.1\r\n"), "{seen}");

    // A field after the cookies stays a field of its own and the body stays a body: the folded
    // cookie line once swallowed the next field and ended the head before Host and
    // Content-Length, so the backend read this body as a second request (found by `make fuzz`).
    let smuggled = b"GET /smuggled HTTP/1.1\r\nhost: example.cn\r\n\r\n";
    let request = http::Request::post("https://example.cn/cookies")
        .header("cookie", "a=1")
        .header("accept-language", "zh-CN")
        .header("cookie", "b=2")
        .header("content-length", smuggled.len())
        .body(())
        .expect("request");
    let got = send(&client, request, Some(vec![Bytes::from_static(smuggled)])).await;
    let expected = format!("POST /cookies body={}", smuggled.len());
    assert_eq!(got.body.expect("body"), expected.as_bytes());
    let seen = backend.last_request().to_ascii_lowercase();
    assert!(seen.contains("\r\ncookie: a=1; b=2\r\n"), "{seen}");
    assert!(seen.contains("\r\naccept-language: zh-cn\r\n"), "{seen}");
    assert!(seen.contains("\r\ncontent-length: 44\r\n"), "{seen}");
    assert!(
        seen.ends_with("\r\n\r\nget /smuggled http/1.1\r\nhost: example.cn\r\n\r\n"),
        "{seen}"
    );
    assert!(
        backend.accepted() <= 24,
        "backend connections are pooled, at most one per concurrent stream: {}",
        backend.accepted()
    );
}

/// Runs the futures concurrently and returns their outputs in order.
async fn futures_join<F: std::future::Future<Output = Got> + Send + 'static>(
    futures: impl Iterator<Item = F>,
) -> Vec<Got> {
    let handles: Vec<_> = futures.map(tokio::spawn).collect();
    let mut out = Vec::new();
    for handle in handles {
        out.push(handle.await.expect("task"));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_downloads_follow_flow_control_and_broken_bodies_reset_the_stream() {
    let backend = Backend::start().await;
    let (env, _running, root) = launch(&backend, "").await;
    let client = h2_connect(&[&root.pem], env.https, "example.cn")
        .await
        .expect("h2 connection");
    let big = send(&client, get("/big"), None).await;
    assert_eq!(big.status, 200);
    let body = big.body.expect("the whole download");
    assert_eq!(body.len(), support::backend::BIG);
    assert!(body.iter().all(|&b| b == b'x'));

    for path in ["/cut-length", "/cut-chunked", "/reset-mid-body"] {
        let got = send(&client, get(path), None).await;
        assert_eq!(got.status, 200, "{path}");
        assert!(
            got.body.is_err(),
            "{path}: a body the backend broke off must not end cleanly"
        );
    }
    let chunked = send(&client, get("/chunked"), None).await;
    assert_eq!(chunked.body.expect("dechunked"), b"hello world");
    let odd = send(&client, get("/status-999"), None).await;
    assert_eq!(odd.status, 502);
    let after = send(&client, get("/still-fine"), None).await;
    assert_eq!(after.status, 200, "the connection outlives broken streams");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_post_through_a_tls_backend() {
    let ca = Ca::root("Backend CA");
    let backend = Backend::start_tls(&ca.issue(&LeafSpec::new(&["example.cn"], 5))).await;
    let (env, running, root) = launch_tls(&backend, &ca, "").await;
    let client = h2_connect(&[&root.pem], env.https, "example.cn")
        .await
        .expect("h2 connection");
    let parts = vec![Bytes::from_static(b"{\"order\": 1}")];
    let got = send(&client, post("/api/orders", Some(12)), Some(parts)).await;
    assert_eq!(got.status, 200, "{}", running.log());
    assert_eq!(got.body.expect("body"), b"POST /api/orders body=12");
    assert!(backend.last_request().ends_with("{\"order\": 1}"));
    assert_eq!(
        backend.names.lock().expect("lock").as_slice(),
        ["example.cn"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_that_cannot_be_made_canonical_are_400() {
    let backend = Backend::start().await;
    let (env, _running, root) = launch(&backend, "").await;
    let client = h2_connect(&[&root.pem], env.https, "example.cn")
        .await
        .expect("h2 connection");
    let differ = http::Request::get("https://example.cn/x")
        .header("host", "other.cn")
        .body(())
        .expect("request");
    assert_eq!(send(&client, differ, None).await.status, 400);
    for path in ["/a%2Fb", "/../../etc", "/a%00"] {
        assert_eq!(send(&client, get(path), None).await.status, 400, "{path}");
    }
    let dots = send(&client, get("/a/./b/../c"), None).await;
    assert_eq!(dots.body.expect("body"), b"GET /a/c body=0");
    assert!(
        !backend.last_request().contains("/x "),
        "no refused request reached the backend"
    );
}

/// The same GET from an HTTP/1.1 client and from an HTTP/2 client, both over TLS: the backend
/// sees the same request fields with the same forwarding values (lists extended, `Via` naming
/// each client's protocol), and the clients the same response fields, the backend's hop-by-hop
/// ones (and those its `Connection` names) gone, `Server` menshen's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http1_and_http2_clients_send_and_answer_alike() {
    let backend = Backend::start().await;
    let (env, running, root) = launch(&backend, "").await;
    // Fields both protocols may carry (HTTP/2 has no Keep-Alive, and TE only as "trailers").
    let fields = [
        ("x-custom", "1"),
        ("te", "trailers"),
        ("proxy-authorization", "Basic eA=="),
        ("x-forwarded-for", "198.51.100.7"),
        ("x-real-ip", "198.51.100.7"),
        ("x-forwarded-proto", "gopher"),
        ("user-agent", "parity"),
        ("forwarded", "for=198.51.100.7;proto=http"),
        ("via", "1.1 corp-proxy"),
        (
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ),
    ];
    let extra: String = fields
        .iter()
        .map(|(n, v)| format!("{n}: {v}\r\n"))
        .collect();
    let raw =
        format!("GET /parity HTTP/1.1\r\nHost: example.cn\r\n{extra}Connection: close\r\n\r\n");
    let h1 = raw_tls(
        &tls_client(&[&root.pem]),
        env.https,
        "example.cn",
        b"",
        raw.as_bytes(),
    )
    .await
    .expect("HTTP/1.1 response");
    let h1_request = backend.last_request();

    let client = h2_connect(&[&root.pem], env.https, "example.cn")
        .await
        .expect("h2 connection");
    let mut request = get("/parity");
    for (name, value) in fields {
        request
            .headers_mut()
            .insert(name, http::HeaderValue::from_static(value));
    }
    let h2 = send(&client, request, None).await;
    let h2_request = backend.last_request();

    assert_eq!(h1.status, 200, "{}", running.log());
    assert_eq!(h2.status, 200, "{}", running.log());
    assert_eq!(
        field_names(&h1_request),
        field_names(&h2_request),
        "request fields the backend sees\nHTTP/1.1:\n{h1_request}\nHTTP/2:\n{h2_request}"
    );
    for name in [
        "host",
        "x-forwarded-for",
        "x-forwarded-host",
        "x-forwarded-proto",
        "x-real-ip",
        "x-custom",
        "user-agent",
        "proxy-authorization",
        "forwarded",
        "traceparent",
    ] {
        assert_eq!(
            field_value(&h1_request, name),
            field_value(&h2_request, name),
            "{name}"
        );
    }
    assert_eq!(
        field_value(&h2_request, "x-forwarded-proto").as_deref(),
        Some("https")
    );
    assert_eq!(
        field_value(&h2_request, "te"),
        None,
        "TE is not forwarded to HTTP/1 backends"
    );

    // Every field but `Connection`, which HTTP/2 does not have (and this client asked to close).
    let mut h1_names: Vec<String> = h1
        .headers
        .iter()
        .map(|(n, _)| n.to_ascii_lowercase())
        .filter(|n| n != "connection")
        .collect();
    h1_names.sort();
    let mut h2_names: Vec<String> = h2.headers.keys().map(|n| n.as_str().to_owned()).collect();
    h2_names.sort();
    assert_eq!(h1_names, h2_names, "response fields the clients see");
    for gone in ["x-secret", "keep-alive", "proxy-connection", "te"] {
        assert!(!h1_names.iter().any(|n| n == gone), "HTTP/1.1 got {gone}");
    }
    assert_eq!(
        h2.headers.get("x-kept").map(|v| v.as_bytes()),
        Some(&b"1"[..])
    );
    assert_eq!(h2.body.expect("body"), b"GET /parity body=0");
    assert_eq!(h1.header("server"), Some("menshen"));

    // Without a (valid) traceparent, the backend gets one whose trace id is the request id.
    let mut request = get("/parity");
    request.headers_mut().insert(
        "traceparent",
        http::HeaderValue::from_static("00-BAD-00f067aa0ba902b7-01"),
    );
    let got = send(&client, request, None).await;
    let id = got.headers.get("x-request-id").expect("request id");
    let id = id.to_str().expect("text");
    let sent = field_value(&backend.last_request(), "traceparent").expect("traceparent");
    assert!(
        sent.starts_with(&format!("00-{id}-")) && sent.ends_with("-00"),
        "{sent} for request {id}"
    );
}
