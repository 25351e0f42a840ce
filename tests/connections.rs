//! Connection-level policy seen by real clients: per-IP connection limits (from accept to close,
//! HTTP/2 counted once), request-header and body timeouts, keep-alive and HTTP/1.0 closing.

mod support;

use std::time::Duration;

use support::eventually;
use support::http::{get_plain, get_with, h2_connect, h2_connect_watched, h2_get, raw_plain};
use support::policy::{id_of, setup};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_per_ip_are_capped() {
    let s = setup("max_connections_per_ip = 1", "").await;
    // Hold one keep-alive connection open with a request in it.
    let mut held = tokio::net::TcpStream::connect(("127.0.0.1", s.env.http))
        .await
        .expect("connect");
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    held.write_all(b"GET / HTTP/1.1\r\nHost: shop.example.cn\r\n\r\n")
        .await
        .expect("send");
    let mut buf = [0u8; 1024];
    let n = held.read(&mut buf).await.expect("read");
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    let second = s.plain(&get_with("shop.example.cn", "/", "")).await;
    assert_eq!(second.status, 429);
    assert_eq!(
        s.log_line(&id_of(&second)).await["decision"],
        "deny:max_connections_per_ip"
    );
    drop(held);
    let freed = eventually(Duration::from_secs(3), || async {
        (s.plain(&get_with("shop.example.cn", "/", "")).await.status == 200).then_some(())
    })
    .await;
    assert!(freed.is_some(), "closing the connection frees its slot");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_count_from_accept_and_http2_counts_once() {
    let s = setup("max_connections_per_ip = 1", "").await;
    // A connection that never sends a request holds the client's only place.
    let silent = tokio::net::TcpStream::connect(("127.0.0.1", s.env.http))
        .await
        .expect("connect");
    let refused = eventually(Duration::from_secs(3), || async {
        let r = s.plain(&get_with("shop.example.cn", "/", "")).await;
        (r.status == 429).then_some(r)
    })
    .await
    .expect("a silent connection counts");
    assert_eq!(refused.header("retry-after"), Some("1"));
    drop(silent);

    // One HTTP/2 connection is one connection, however many requests it carries.
    let mut h2 = eventually(Duration::from_secs(3), || async {
        h2_connect(&[&s.root.pem], s.env.https, "shop.example.cn")
            .await
            .ok()
    })
    .await
    .expect("h2 connection once the silent one is gone");
    for _ in 0..3 {
        let status = h2_get(&mut h2, "https://shop.example.cn/")
            .await
            .expect("h2 request");
        assert_eq!(status, 200);
    }
    // While it is open, another connection from the same IP is over the limit: HTTP/1 gets a
    // 429, a second HTTP/2 connection is closed.
    assert_eq!(
        s.tls("shop.example.cn", &get_with("shop.example.cn", "/", ""))
            .await
            .status,
        429
    );
    let second = match h2_connect(&[&s.root.pem], s.env.https, "shop.example.cn").await {
        Ok(mut send) => h2_get(&mut send, "https://shop.example.cn/").await.ok(),
        Err(_) => None,
    };
    assert_eq!(
        second, None,
        "a second h2 connection over the limit is closed"
    );
    assert_eq!(
        h2_get(&mut h2, "https://shop.example.cn/")
            .await
            .expect("first h2 still serves"),
        200
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_from_trusted_proxies_are_not_counted() {
    let s = setup(
        "max_connections_per_ip = 1\ntrusted_proxies = [\"127.0.0.1\"]",
        "",
    )
    .await;
    let _held = tokio::net::TcpStream::connect(("127.0.0.1", s.env.http))
        .await
        .expect("connect");
    let _also = tokio::net::TcpStream::connect(("127.0.0.1", s.env.http))
        .await
        .expect("connect");
    let resp = s
        .plain(&get_with(
            "shop.example.cn",
            "/",
            "X-Forwarded-For: 203.0.113.9\r\n",
        ))
        .await;
    assert_eq!(
        resp.status, 200,
        "a balancer's connections carry many clients"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_bodies_and_idle_keepalive_connections_are_cut() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let s = setup(
        "body_read_timeout = \"300ms\"\nkeepalive_timeout = \"1s\"",
        "",
    )
    .await;
    // A body that stops arriving: the connection is closed after the body timeout.
    let mut slow = tokio::net::TcpStream::connect(("127.0.0.1", s.env.http))
        .await
        .expect("connect");
    slow.write_all(
        b"POST /echo HTTP/1.1\r\nHost: shop.example.cn\r\nContent-Length: 50\r\n\r\nonly-part",
    )
    .await
    .expect("send");
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(5), slow.read_to_end(&mut rest)).await;
    assert!(
        closed.is_ok(),
        "a stalled body is cut off by body_read_timeout"
    );

    // An idle keep-alive connection is closed after keepalive_timeout.
    let mut idle = tokio::net::TcpStream::connect(("127.0.0.1", s.env.http))
        .await
        .expect("connect");
    idle.write_all(b"GET / HTTP/1.1\r\nHost: shop.example.cn\r\n\r\n")
        .await
        .expect("send");
    let mut buf = vec![0u8; 4096];
    let n = idle.read(&mut buf).await.expect("response");
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    let started = std::time::Instant::now();
    let eof = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match idle.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(_) => continue,
            }
        }
    })
    .await;
    assert!(eof.is_ok(), "idle keep-alive connection closed");
    assert!(
        started.elapsed() >= Duration::from_millis(500),
        "not before the idle timeout"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http2_connection_closes_when_idle_but_not_while_a_stream_is_open() {
    let s = setup(
        "keepalive_timeout = \"1s\"\nbody_read_timeout = \"30s\"",
        "",
    )
    .await;
    let (mut client, mut driver) =
        h2_connect_watched(&[&s.root.pem], s.env.https, "shop.example.cn")
            .await
            .expect("h2 connection");
    let url = "https://shop.example.cn/echo";
    assert_eq!(h2_get(&mut client, url).await.expect("GET"), 200);

    // An upload that goes on for several keep-alive periods keeps the connection.
    let post = http::Request::post(url).body(()).expect("request");
    let (response, mut upload) = client.send_request(post, false).expect("stream");
    upload
        .send_data(bytes::Bytes::from_static(b"first part"), false)
        .expect("data");
    let held = tokio::time::timeout(Duration::from_secs(3), &mut driver).await;
    assert!(held.is_err(), "closed while a stream was open");
    upload
        .send_data(bytes::Bytes::from_static(b", last part"), true)
        .expect("data");
    assert_eq!(response.await.expect("response").status(), 200);
    assert_eq!(h2_get(&mut client, url).await.expect("GET"), 200);

    // Then nothing: GOAWAY and the close come within two periods.
    let closed = tokio::time::timeout(Duration::from_secs(5), &mut driver).await;
    assert!(closed.is_ok(), "an idle HTTP/2 connection is closed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_headers_must_arrive_within_the_header_timeout() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;
    let s = setup(
        "header_read_timeout = \"500ms\"\nkeepalive_timeout = \"30s\"",
        "",
    )
    .await;
    let connect = || TcpStream::connect(("127.0.0.1", s.env.http));
    let closed = |mut c: TcpStream| async move {
        let mut buf = vec![0u8; 4096];
        loop {
            match c.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => continue,
            }
        }
    };
    let request = b"GET / HTTP/1.1\r\nHost: shop.example.cn\r\n\r\n";

    // First request of a connection: the clock runs from the connection's start.
    let mut c = connect().await.expect("connect");
    c.write_all(b"GET / HTTP/1.1\r\nHo").await.expect("send");
    let started = std::time::Instant::now();
    tokio::time::timeout(Duration::from_secs(10), closed(c))
        .await
        .expect("a half-sent first header is cut long before the 30 s keep-alive timeout");
    assert!(
        started.elapsed() >= Duration::from_millis(400),
        "not before the limit"
    );

    // A later request trickled a byte at a time: every read is quick, the header never done.
    let mut c = connect().await.expect("connect");
    c.write_all(request).await.expect("send");
    let mut buf = vec![0u8; 4096];
    let n = c.read(&mut buf).await.expect("response");
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    let trickle = async {
        for b in b"GET / HTTP/1.1\r\nHost: shop.example.cn\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa" {
            if c.write_all(&[*b]).await.is_err() {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // Written to the end (8 s) without the connection failing: check it is closed.
        let mut rest = Vec::new();
        matches!(c.read_to_end(&mut rest).await, Ok(0) | Err(_))
    };
    assert!(
        tokio::time::timeout(Duration::from_secs(15), trickle)
            .await
            .expect("trickle ends"),
        "a trickled header is cut"
    );

    // The clock does not run between requests, and a header in two parts within the limit is fine.
    let mut c = connect().await.expect("connect");
    c.write_all(request).await.expect("send");
    let n = c.read(&mut buf).await.expect("first response");
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    tokio::time::sleep(Duration::from_millis(900)).await;
    c.write_all(b"GET / HTTP/1.1\r\nHost: shop.exa")
        .await
        .expect("part one");
    tokio::time::sleep(Duration::from_millis(100)).await;
    c.write_all(b"mple.cn\r\n\r\n").await.expect("part two");
    let n = tokio::time::timeout(Duration::from_secs(5), c.read(&mut buf))
        .await
        .expect("answered")
        .expect("read");
    assert!(
        String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"),
        "idle wait longer than the header limit, then a prompt header: served"
    );

    // On a TLS listener the clock covers the handshake: silence, or half a ClientHello, is cut.
    let tls = TcpStream::connect(("127.0.0.1", s.env.https))
        .await
        .expect("connect");
    tokio::time::timeout(Duration::from_secs(10), closed(tls))
        .await
        .expect("a connection that never says hello is cut");
    let mut tls = TcpStream::connect(("127.0.0.1", s.env.https))
        .await
        .expect("connect");
    tls.write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01])
        .await
        .expect("half a hello");
    tokio::time::timeout(Duration::from_secs(10), closed(tls))
        .await
        .expect("a hello that never ends is cut");

    // The four connections cut are counted (the last one just after the client saw it cut).
    let series = "menshen_policy_denials_total{rule=\"header_timeout\",site=\"-\"} 4";
    let counted = eventually(Duration::from_secs(10), || async {
        let metrics = get_plain(s.admin_port, "127.0.0.1", "/metrics")
            .await
            .ok()?;
        metrics.text().contains(series).then_some(())
    })
    .await;
    assert!(counted.is_some(), "{series} on /metrics");
    // Counted, not logged one error line each (a slowloris flood would flood the log).
    let log = s.proxy_log();
    assert!(!log.contains("Fail to proxy"), "{log}");
    assert!(log.contains("listener"), "the process log is read: {log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_1_0_connections_close_unless_the_client_asks_for_keep_alive() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let s = setup("keepalive_timeout = \"1m\"", "").await;
    // Proxied and refused (unknown host) answers alike: HTTP/1.0 closes after the response.
    for (host, status) in [("shop.example.cn", 200), ("not-served.example", 403)] {
        let raw = format!("GET / HTTP/1.0\r\nHost: {host}\r\n\r\n");
        let resp = tokio::time::timeout(
            Duration::from_secs(5),
            raw_plain(s.env.http, raw.as_bytes(), None),
        )
        .await
        .unwrap_or_else(|_| panic!("{host}: HTTP/1.0 response did not end the connection"))
        .expect("response");
        assert_eq!(resp.status, status, "{host}");
        assert_ne!(
            resp.header("connection").map(|v| v.to_ascii_lowercase()),
            Some("keep-alive".to_owned()),
            "{host}"
        );
    }

    // HTTP/1.0 with Connection: keep-alive gets a second request on the same connection.
    let mut tcp = tokio::net::TcpStream::connect(("127.0.0.1", s.env.http))
        .await
        .expect("connect");
    let mut buf = vec![0u8; 8192];
    for round in 0..2 {
        tcp.write_all(b"GET / HTTP/1.0\r\nHost: shop.example.cn\r\nConnection: keep-alive\r\n\r\n")
            .await
            .expect("send");
        let n = tokio::time::timeout(Duration::from_secs(5), tcp.read(&mut buf))
            .await
            .expect("answered")
            .expect("read");
        let head = String::from_utf8_lossy(&buf[..n]).to_ascii_lowercase();
        assert!(head.starts_with("http/1.1 200"), "round {round}: {head}");
        assert!(
            head.contains("connection: keep-alive"),
            "round {round}: {head}"
        );
    }
}
