//! Per-route timeouts and retries, as an operator sees them: a backend that fails on command
//! (`support::failing`) behind the real proxy, real HTTP/1.1 and HTTP/2 clients, the backends'
//! request counts and order, the access log's `tries` and the retry metrics.

mod support;

use std::time::Duration;

use support::eventually;
use support::failing::{Failing, Mode};
use support::free_port;
use support::http::Response;
use support::retrying::{broken_and_good, configure, events, order, tries_until_good, Proxy};
use tokio::io::AsyncWriteExt;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_get_is_retried_on_another_backend_after_a_reset_over_http1_and_http2() {
    let (log, broken, good) = broken_and_good(Mode::Reset).await;
    let proxy = Proxy::start(&[broken.port, good.port], "", "");
    for i in 0..4 {
        let resp = proxy.send("GET", &format!("/h1/{i}"), "").await;
        assert_eq!(resp.status, 200, "{}", proxy.running.log());
        assert_eq!(resp.text(), "good");
    }
    let mut h2 = proxy.h2().await;
    for i in 0..2 {
        let url = format!("https://example.cn/h2/{i}");
        let status = support::http::h2_get(&mut h2, &url).await.expect("GET");
        assert_eq!(status, 200, "{}", proxy.running.log());
    }
    // Every request was answered by the good backend once; those that met the broken one
    // first were retried there, and say so in the access log.
    assert_eq!(good.requests(), 6, "{:?}", log.lock().expect("lock"));
    assert!(
        broken.requests() >= 1,
        "round robin reached the broken backend"
    );
    let paths = (0..4).map(|i| format!("/h1/{i}"));
    let paths: Vec<String> = paths.chain((0..2).map(|i| format!("/h2/{i}"))).collect();
    let mut retried = 0;
    for path in &paths {
        let tries = tries_until_good(&log, path);
        assert_eq!(proxy.logged(path).await["tries"], tries, "{path}");
        retried += tries - 1;
    }
    assert_eq!(retried, broken.requests());
    let reset = "menshen_upstream_retries_total{reason=\"reset\",upstream=\"backend\"}";
    assert_eq!(proxy.metric(reset).await, retried as f64);
}

/// The GCP case: one backend address (a cloud load balancer) behind a lossy link. A reset is
/// retried on it, as Envoy does, rather than given to the client for want of another backend.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_get_to_an_upstream_of_one_backend_is_retried_on_it_after_a_reset() {
    let log = events();
    let flaky = Failing::start("flaky", Mode::ResetFirst, &log).await;
    let proxy = Proxy::start(&[flaky.port], "", "");
    let resp = proxy.send("GET", "/once", "").await;
    assert_eq!(resp.status, 200, "{}", proxy.running.log());
    assert_eq!(resp.text(), "flaky");
    assert_eq!(order(&log, "/once"), ["flaky", "flaky"]);
    assert_eq!(proxy.logged("/once").await["tries"], 2);
    let reset = "menshen_upstream_retries_total{reason=\"reset\",upstream=\"backend\"}";
    assert_eq!(proxy.metric(reset).await, 1.0);
    // A POST whose body reached it is still not sent again.
    flaky.set(Mode::Reset);
    assert_eq!(proxy.send("POST", "/post", "data").await.status, 502);
    assert_eq!(order(&log, "/post"), ["flaky"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_connection_sends_even_a_post_to_another_backend() {
    let log = events();
    let good = Failing::start("good", Mode::Answer, &log).await;
    let refused = free_port();
    let proxy = Proxy::start(&[refused, good.port], "", "");
    for i in 0..2 {
        let resp = proxy
            .send("POST", &format!("/refused/{i}"), "order=1")
            .await;
        assert_eq!(resp.status, 200, "nothing reached the refusing backend");
    }
    assert_eq!(good.requests(), 2);
    let connect = "menshen_upstream_retries_total{reason=\"connect\",upstream=\"backend\"}";
    assert!(proxy.metric(connect).await >= 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_post_whose_body_reached_the_backend_is_not_retried_and_a_put_is() {
    let (log, broken, good) = broken_and_good(Mode::Reset).await;
    let proxy = Proxy::start(&[broken.port, good.port], "", "");
    let mut statuses = Vec::new();
    for i in 0..2 {
        let resp = proxy.send("POST", &format!("/post/{i}"), "order=1").await;
        statuses.push(resp.status);
    }
    statuses.sort();
    assert_eq!(statuses, [200, 502], "{}", proxy.running.log());
    assert_eq!(
        (broken.requests(), good.requests()),
        (1, 1),
        "one POST each, none again"
    );
    for i in 0..3 {
        let path = format!("/put/{i}");
        let resp = proxy.send("PUT", &path, "v=2").await;
        assert_eq!(resp.status, 200, "a PUT is idempotent and its body held");
        tries_until_good(&log, &path);
    }
    assert!(
        broken.requests() >= 2,
        "a PUT met the broken backend and went on"
    );
}

/// A request sent in two parts, the second after a pause (so that the proxy has forwarded the
/// head and the first part before the second arrives): the response.
async fn send_in_two(proxy: &Proxy, method: &str, path: &str, body: &[u8]) -> Response {
    use tokio::io::AsyncReadExt;
    let mut tcp = tokio::net::TcpStream::connect(("127.0.0.1", proxy.env.http))
        .await
        .expect("connect");
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: example.cn\r\nConnection: close\r\n\
         Content-Length: {}\r\n\r\n",
        body.len()
    );
    let (first, second) = body.split_at(body.len() / 2);
    tcp.write_all(&[head.as_bytes(), first].concat())
        .await
        .expect("send");
    // Shapes the traffic only: the result does not depend on the pause's length.
    tokio::time::sleep(Duration::from_millis(300)).await;
    tcp.write_all(second).await.expect("send the rest");
    let mut raw = Vec::new();
    tcp.read_to_end(&mut raw).await.expect("read");
    support::http::parse_response(&raw).expect("a response")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_put_body_that_streamed_is_sent_again_whole_up_to_64_kib() {
    let (log, broken, good) = broken_and_good(Mode::Reset).await;
    let proxy = Proxy::start(&[broken.port, good.port], "", "");
    // Each PUT meets the broken backend first or second; after it, the good one reads the
    // whole body again (it answers only once it has read Content-Length bytes).
    for i in 0..3 {
        let path = format!("/put/{i}");
        let resp = send_in_two(&proxy, "PUT", &path, &[b'v'; 40_000]).await;
        assert_eq!(resp.status, 200, "{}", proxy.running.log());
        tries_until_good(&log, &path);
    }
    assert!(broken.requests() >= 2, "a PUT met the broken backend");

    // An HTTP/2 client's body, forwarded frame by frame as it comes, is kept as well.
    let h2 = proxy.h2().await;
    let before = broken.requests();
    for i in 0..4 {
        let path = format!("/put-h2/{i}");
        let mut h2 = h2.clone().ready().await.expect("ready");
        let request = http::Request::put(format!("https://example.cn{path}"))
            .header("content-length", 40_000)
            .body(())
            .expect("request");
        let (response, mut body) = h2.send_request(request, false).expect("send");
        let half = bytes::Bytes::from(vec![b'v'; 20_000]);
        body.send_data(half.clone(), false).expect("first half");
        // Shapes the traffic only, as in `send_in_two`.
        tokio::time::sleep(Duration::from_millis(300)).await;
        body.send_data(half, true).expect("second half");
        let response = response.await.expect("a head");
        assert_eq!(response.status(), 200, "{}", proxy.running.log());
        tries_until_good(&log, &path);
    }
    assert!(
        broken.requests() > before,
        "an HTTP/2 PUT met the broken backend"
    );

    // Past 64 KiB the body streams and is not kept: a reset after it is the client's 502.
    broken.set(Mode::Reset);
    good.set(Mode::Reset);
    let resp = send_in_two(&proxy, "PUT", "/put/big", &[b'v'; 200_000]).await;
    assert_eq!(resp.status, 502);
    assert_eq!(order(&log, "/put/big").len(), 1, "not sent again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_response_head_within_first_byte_timeout_is_a_504() {
    let log = events();
    let stalled = Failing::start("stalled", Mode::StallHead, &log).await;
    let route = "first_byte_timeout = \"300ms\"\nretries = { tries = 1 }";
    let proxy = Proxy::start(&[stalled.port], "", route);
    assert_eq!(proxy.send("GET", "/slow", "").await.status, 504);
    let mut h2 = proxy.h2().await;
    let status = support::http::h2_get(&mut h2, "https://example.cn/slow-h2").await;
    assert_eq!(status.expect("an answer"), 504);
    stalled.release();
}

/// A 64 MiB body, far more than the sockets between the proxy and the backend hold.
const UPLOAD: usize = 64 << 20;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_that_stops_taking_a_body_is_given_up_after_the_route_idle_timeout() {
    let log = events();
    let full = Failing::start("full", Mode::StallUpload, &log).await;
    // The upstream's write_timeout is far off: the route's idle_timeout ends the wait.
    let route = "idle_timeout = \"1s\"\nretries = { tries = 1 }";
    let upstream = "write_timeout = \"10m\"\n[policy]\nmax_body_bytes = 1073741824";
    let proxy = Proxy::start(&[full.port], upstream, route);

    // HTTP/1.1: the client keeps sending while the proxy waits on the backend.
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", proxy.env.http))
        .await
        .expect("connect");
    let (_read, mut write) = tcp.into_split();
    let sending = tokio::spawn(async move {
        let head = format!(
            "POST /upload HTTP/1.1\r\nHost: example.cn\r\nContent-Length: {UPLOAD}\r\n\r\n"
        );
        write.write_all(head.as_bytes()).await?;
        let chunk = vec![b'x'; 1 << 20];
        for _ in 0..UPLOAD / chunk.len() {
            write.write_all(&chunk).await?;
        }
        Ok::<_, std::io::Error>(write)
    });
    let line = proxy.logged("/upload").await;
    assert_eq!(line["status"], 504, "{line}");
    let took = line["duration_ms"].as_u64().expect("duration");
    assert!(took >= 1000, "not before the idle timeout: {line}");
    assert!(
        line["bytes_in"].as_u64() > Some(0),
        "what was read is logged: {line}"
    );
    sending.abort();

    // HTTP/2: the same, on a stream.
    let h2 = proxy.h2().await;
    let mut h2 = h2.ready().await.expect("ready");
    let request = http::Request::post("https://example.cn/upload-h2")
        .body(())
        .expect("request");
    let (response, mut body) = h2.send_request(request, false).expect("send");
    let chunk = bytes::Bytes::from(vec![b'x'; 1 << 20]);
    for _ in 0..UPLOAD / chunk.len() {
        body.send_data(chunk.clone(), false).expect("buffered");
    }
    let response = tokio::time::timeout(Duration::from_secs(30), response)
        .await
        .expect("an answer before the upstream's write_timeout")
        .expect("a head");
    assert_eq!(response.status(), 504);
    let line = proxy.logged("/upload-h2").await;
    assert!(line["duration_ms"].as_u64() >= Some(1000), "{line}");
    full.release();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn total_timeout_cuts_a_slow_stream_and_the_client_sees_it_incomplete() {
    let log = events();
    let slow = Failing::start("slow", Mode::StallBody, &log).await;
    let proxy = Proxy::start(&[slow.port], "", "total_timeout = \"1s\"");
    // HTTP/1.1: the head says 100 bytes, ten came, and the connection closed.
    let resp = proxy.send("GET", "/stream", "").await;
    assert_eq!(resp.status, 200);
    assert_eq!(resp.header("content-length"), Some("100"));
    assert_eq!(resp.text(), "0123456789", "only what the backend sent");
    // HTTP/2: the stream is reset, never ended.
    let h2 = proxy.h2().await;
    let mut h2 = h2.ready().await.expect("ready");
    let request = http::Request::get("https://example.cn/stream-h2")
        .body(())
        .expect("request");
    let (response, _) = h2.send_request(request, true).expect("send");
    let response = response.await.expect("a head");
    assert_eq!(response.status(), 200);
    let mut body = response.into_body();
    let mut got = Vec::new();
    let ended = loop {
        match body.data().await {
            Some(Ok(chunk)) => got.extend_from_slice(&chunk),
            Some(Err(e)) => break Err(e),
            None => break Ok(()),
        }
    };
    assert!(ended.is_err(), "the stream is reset, not ended: {got:?}");
    assert_eq!(got, b"0123456789");
    slow.release();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spent_retry_budget_stops_retries_and_is_counted() {
    let (_, broken, good) = broken_and_good(Mode::Reset).await;
    let budget = "retry_budget = { percent = 0, min_concurrent = 0 }";
    let proxy = Proxy::start(&[broken.port, good.port], budget, "");
    let mut statuses = Vec::new();
    for i in 0..2 {
        statuses.push(proxy.send("GET", &format!("/b/{i}"), "").await.status);
    }
    statuses.sort();
    assert_eq!(statuses, [200, 502], "{}", proxy.running.log());
    assert_eq!((broken.requests(), good.requests()), (1, 1), "no retry");
    let spent = "menshen_upstream_retry_budget_exhausted_total{upstream=\"backend\"}";
    assert_eq!(proxy.metric(spent).await, 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_is_waited_for_and_one_beyond_the_total_timeout_goes_to_the_client() {
    let log = events();
    let busy = Failing::start("busy", Mode::Unavailable(1), &log).await;
    let good = Failing::start("good", Mode::Answer, &log).await;
    let route = "total_timeout = \"5s\"\nretries = { on = [\"503\"] }";
    let proxy = Proxy::start(&[busy.port, good.port], "", route);
    let mut retried = None;
    for i in 0..3 {
        let path = format!("/a/{i}");
        let resp = proxy.send("GET", &path, "").await;
        assert_eq!(resp.status, 200, "{}", proxy.running.log());
        if busy.requests() > 0 {
            retried = Some(path);
            break;
        }
    }
    let retried = retried.expect("round robin reached the busy backend");
    assert_eq!(order(&log, &retried), ["busy", "good"]);
    let times: Vec<_> = {
        let events = log.lock().expect("lock");
        let of = events
            .iter()
            .filter(|(_, what, _)| what.ends_with(&retried));
        of.map(|(_, _, at)| *at).collect()
    };
    assert!(
        times[1] - times[0] >= Duration::from_secs(1),
        "the retry came no sooner than Retry-After: {:?}",
        times[1] - times[0]
    );
    // Beyond what is left of total_timeout: no retry, the backend's 503 and Retry-After.
    busy.set(Mode::Unavailable(30));
    let mut refused = None;
    for i in 0..3 {
        let path = format!("/far/{i}");
        let resp = proxy.send("GET", &path, "").await;
        if order(&log, &path) == ["busy"] {
            refused = Some(resp);
            break;
        }
        assert_eq!(order(&log, &path), ["good"], "{path}");
    }
    let refused = refused.expect("round robin reached the busy backend");
    assert_eq!(refused.status, 503);
    assert_eq!(refused.header("retry-after"), Some("30"));
    assert_eq!(refused.text(), "busy");
    let retries = "menshen_upstream_retries_total{reason=\"503\",upstream=\"backend\"}";
    assert_eq!(proxy.metric(retries).await, 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_and_status_show_the_route_timeouts_and_retry_policy() {
    let log = events();
    let good = Failing::start("good", Mode::Answer, &log).await;
    let route = "first_byte_timeout = \"15s\"\ntotal_timeout = \"1m\"\n\
                 retries = { tries = 2, on = [\"connect\", \"503\"] }";
    let proxy = Proxy::start(&[good.port], "", route);
    let (ok, out) = proxy.env.check();
    assert!(ok, "{out}");
    let shown = "timeouts connect 2s, first byte 15s, idle 60s, total 60s; retries 2 tries on \
                 connect, 503";
    assert!(out.contains(shown), "{out}");
    let page = support::admin::get(proxy.admin, "/status").await.text();
    assert!(page.contains("first byte 15s"), "{page}");
    assert!(page.contains("2 tries on connect, 503"), "{page}");
    // A reload picks new ones up.
    let route = "first_byte_timeout = \"3s\"\nretries = { tries = 1 }";
    configure(&proxy.env, proxy.admin, &[good.port], "", route);
    let shown = eventually(Duration::from_secs(10), || async {
        let page = support::admin::get(proxy.admin, "/status").await.text();
        page.contains("first byte 3s").then_some(page)
    })
    .await
    .unwrap_or_else(|| panic!("reloaded: {}", proxy.running.log()));
    assert!(shown.contains("retries: off"), "{shown}");
}
