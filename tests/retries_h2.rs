//! Retries to HTTP/2 (h2c) backends, for HTTP/1.1 and HTTP/2 clients alike: a backend that
//! fails on command (`support::failing_h2`) behind the real proxy; what the client gets, which
//! backends saw each request and in what order, the backend's connections, the access log's
//! `tries` and the retry metrics.

mod support;

use std::time::Duration;

use support::eventually;
use support::failing::Events;
use support::failing_h2::{FailingH2, H2Mode};
use support::retrying::{broken_and_good_h2, events, order, tries_until_good, Proxy};

const H2C: &str = "http2 = true";

/// The series of retries for `reason`.
fn retries(reason: &str) -> String {
    format!("menshen_upstream_retries_total{{reason=\"{reason}\",upstream=\"backend\"}}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_503_from_an_http2_backend_is_retried_for_http1_and_http2_clients() {
    let log = events();
    let busy = FailingH2::start("busy", H2Mode::Busy, &log).await;
    let good = FailingH2::start("good", H2Mode::Answer, &log).await;
    let route = "retries = { on = [\"503\"] }";
    let proxy = Proxy::start(&[busy.port, good.port], H2C, route);
    for i in 0..3 {
        let resp = proxy.send("GET", &format!("/h2c/{i}"), "").await;
        assert_eq!(resp.status, 200, "{}", proxy.running.log());
        assert_eq!(resp.text(), "good");
        let (status, text) = proxy.send_h2("GET", &format!("/h2-h2c/{i}"), "").await;
        assert_eq!((status, text.as_str()), (200, "good"));
    }
    assert_eq!(good.requests(), 6, "{:?}", log.lock().expect("lock"));
    assert!(busy.requests() >= 1, "round robin reached the busy backend");
    let retried = (0..3).flat_map(|i| [format!("/h2c/{i}"), format!("/h2-h2c/{i}")]);
    let retried: Vec<String> = retried.filter(|p| order(&log, p).len() == 2).collect();
    assert_eq!(retried.len(), busy.requests());
    for path in &retried {
        assert_eq!(order(&log, path), ["busy", "good"], "{path}");
    }
}

/// A GET that meets `mode` on one of two backends goes to the other, from either client.
async fn retried_on_another_backend(mode: H2Mode, reason: &str) {
    let (log, broken, good) = broken_and_good_h2(mode).await;
    let proxy = Proxy::start(&[broken.port, good.port], H2C, "");
    let mut paths = Vec::new();
    for i in 0..3 {
        let path = format!("/h1/{i}");
        let resp = proxy.send("GET", &path, "").await;
        assert_eq!(resp.status, 200, "{mode:?}: {}", proxy.running.log());
        assert_eq!(resp.text(), "good");
        let h2 = format!("/h2/{i}");
        let (status, text) = proxy.send_h2("GET", &h2, "").await;
        assert_eq!((status, text.as_str()), (200, "good"), "{mode:?}");
        paths.extend([path, h2]);
    }
    assert_eq!(
        good.requests(),
        6,
        "{mode:?}: {:?}",
        log.lock().expect("lock")
    );
    assert!(
        broken.requests() >= 1,
        "round robin reached the broken backend"
    );
    let mut retried = 0;
    for path in &paths {
        let tries = tries_until_good(&log, path);
        assert_eq!(proxy.logged(path).await["tries"], tries, "{mode:?} {path}");
        retried += tries - 1;
    }
    assert_eq!(retried, broken.requests(), "{mode:?}");
    let counted = proxy.metric(&retries(reason)).await;
    assert_eq!(counted, retried as f64, "{mode:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_get_is_retried_on_another_h2c_backend_after_a_dropped_connection_or_refused_stream() {
    retried_on_another_backend(H2Mode::Drop, "reset").await;
    retried_on_another_backend(H2Mode::Refuse, "refused").await;
}

/// The GCP case: the one address of a cloud load balancer. A GET that meets `once` is made
/// again on it (on a new connection when the old one was dropped), from either client.
async fn retried_on_the_sole_backend(once: H2Mode, reason: &str, connections: [usize; 2]) {
    let log = events();
    let flaky = FailingH2::start("flaky", once, &log).await;
    let proxy = Proxy::start(&[flaky.port], H2C, "");
    let resp = proxy.send("GET", "/once", "").await;
    assert_eq!(resp.status, 200, "{once:?}: {}", proxy.running.log());
    assert_eq!(resp.text(), "flaky");
    assert_eq!(order(&log, "/once"), ["flaky", "flaky"], "{once:?}");
    assert_eq!(flaky.connections(), connections[0], "{once:?}");
    flaky.set(once);
    let (status, text) = proxy.send_h2("GET", "/once-h2", "").await;
    assert_eq!((status, text.as_str()), (200, "flaky"), "{once:?}");
    assert_eq!(order(&log, "/once-h2"), ["flaky", "flaky"], "{once:?}");
    assert_eq!(flaky.connections(), connections[1], "{once:?}");
    for path in ["/once", "/once-h2"] {
        assert_eq!(proxy.logged(path).await["tries"], 2, "{once:?} {path}");
    }
    assert_eq!(proxy.metric(&retries(reason)).await, 2.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_get_to_a_sole_h2c_backend_is_retried_on_it_after_a_drop_or_a_refused_stream() {
    // A dropped connection takes a new one for the retry; a refused stream leaves it be. (Each
    // kind of listener, plain and TLS, has its own thread and so its own connection.)
    retried_on_the_sole_backend(H2Mode::DropOnce, "reset", [2, 4]).await;
    retried_on_the_sole_backend(H2Mode::RefuseOnce, "refused", [1, 2]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_post_is_not_sent_again_after_a_drop_but_is_after_a_refused_stream() {
    let log = events();
    let flaky = FailingH2::start("flaky", H2Mode::Drop, &log).await;
    let proxy = Proxy::start(&[flaky.port], H2C, "");
    // Its body reached the backend, which may have acted on it.
    let resp = proxy.send("POST", "/dropped", "order=1").await;
    assert_eq!(resp.status, 502, "{}", proxy.running.log());
    assert_eq!(order(&log, "/dropped"), ["flaky"]);
    let (status, _) = proxy.send_h2("POST", "/dropped-h2", "order=1").await;
    assert_eq!(status, 502);
    assert_eq!(order(&log, "/dropped-h2"), ["flaky"]);
    // REFUSED_STREAM: the backend did not process it, so even a POST goes again, its body
    // held by menshen (a small one, sent whole).
    flaky.set(H2Mode::RefuseOnce);
    let resp = proxy.send("POST", "/refused", "order=1").await;
    assert_eq!(resp.status, 200, "{}", proxy.running.log());
    assert_eq!(resp.text(), "flaky");
    assert_eq!(order(&log, "/refused"), ["flaky", "flaky"]);
    flaky.set(H2Mode::RefuseOnce);
    let (status, text) = proxy.send_h2("POST", "/refused-h2", "order=1").await;
    assert_eq!(
        (status, text.as_str()),
        (200, "flaky"),
        "{}",
        proxy.running.log()
    );
    assert_eq!(order(&log, "/refused-h2"), ["flaky", "flaky"]);
    for path in ["/refused", "/refused-h2"] {
        assert_eq!(
            flaky.bodies(path),
            ["order=1", "order=1"],
            "{path}: sent whole again"
        );
    }
    assert_eq!(proxy.metric(&retries("refused")).await, 2.0);
}

/// Requests from `client` ("h1" or "h2") until one met the stalled backend first: its path,
/// status and the backends it went to, as `/PATH STATUS stalled,...`.
async fn until_stalled(proxy: &Proxy, log: &Events, at: &str, client: &str) -> String {
    for i in 0..4 {
        let path = format!("/{at}/{client}/{i}");
        let status = match client {
            "h1" => proxy.send("GET", &path, "").await.status,
            _ => proxy.send_h2("GET", &path, "").await.0,
        };
        let tried = order(log, &path);
        if tried.first().is_some_and(|b| b == "stalled") {
            return format!("{path} {status} {}", tried.join(","));
        }
        assert_eq!((status, tried), (200, vec!["good".to_owned()]), "{path}");
    }
    panic!(
        "round robin reached the stalled backend: {:?}",
        log.lock().expect("lock")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_head_within_first_byte_timeout_is_a_504_retried_only_on_timeout() {
    let log = events();
    let stalled = FailingH2::start("stalled", H2Mode::StallHead, &log).await;
    let good = FailingH2::start("good", H2Mode::Answer, &log).await;
    let backends = [stalled.port, good.port];
    // The default `on` (connect, reset): the client gets the 504.
    let proxy = Proxy::start(&backends, H2C, "first_byte_timeout = \"300ms\"");
    let h1 = until_stalled(&proxy, &log, "default", "h1").await;
    let h2 = until_stalled(&proxy, &log, "default", "h2").await;
    assert!(h1.ends_with(" 504 stalled"), "{h1}");
    assert!(h2.ends_with(" 504 stalled"), "{h2}");
    // The stream given up on is reset, not left open on the backend.
    let all_reset = eventually(Duration::from_secs(5), || async {
        (stalled.cancelled() == stalled.requests()).then_some(())
    });
    assert!(
        all_reset.await.is_some(),
        "{} of {}",
        stalled.cancelled(),
        stalled.requests()
    );
    drop(proxy);
    // `on = ["timeout"]`: another backend answers.
    let route = "first_byte_timeout = \"300ms\"\nretries = { on = [\"timeout\"] }";
    let proxy = Proxy::start(&backends, H2C, route);
    let h1 = until_stalled(&proxy, &log, "timeout", "h1").await;
    let h2 = until_stalled(&proxy, &log, "timeout", "h2").await;
    assert!(h1.ends_with(" 200 stalled,good"), "{h1}");
    assert!(h2.ends_with(" 200 stalled,good"), "{h2}");
    let counted = proxy.metric(&retries("timeout")).await;
    assert_eq!(counted, 2.0, "{h1} {h2}");
    stalled.release();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_graceful_goaway_the_next_request_takes_a_new_connection_unharmed() {
    let log = events();
    let backend = FailingH2::start("b", H2Mode::GoAway, &log).await;
    let proxy = Proxy::start(&[backend.port], H2C, "");
    // The GOAWAY came before the answer: the proxy has read it when the client has the answer.
    let resp = proxy.send("GET", "/first", "").await;
    assert_eq!(resp.status, 200, "{}", proxy.running.log());
    backend.set(H2Mode::Answer);
    // A POST (never sent twice): it goes once, on a new connection.
    let resp = proxy.send("POST", "/after", "order=1").await;
    assert_eq!(resp.status, 200, "{}", proxy.running.log());
    assert_eq!(order(&log, "/after"), ["b"]);
    assert_eq!(backend.connections(), 2);
    backend.set(H2Mode::GoAway);
    let (status, _) = proxy.send_h2("GET", "/first-h2", "").await;
    assert_eq!(status, 200);
    backend.set(H2Mode::Answer);
    let (status, text) = proxy.send_h2("POST", "/after-h2", "order=1").await;
    assert_eq!(
        (status, text.as_str()),
        (200, "b"),
        "{}",
        proxy.running.log()
    );
    assert_eq!(order(&log, "/after-h2"), ["b"]);
    // The TLS listener's thread has connections of its own.
    assert_eq!(backend.connections(), 4);
    for path in ["/after", "/after-h2"] {
        assert_eq!(proxy.logged(path).await["tries"], 1, "{path}");
    }
    for reason in ["reset", "refused"] {
        assert_eq!(proxy.metric(&retries(reason)).await, 0.0, "{reason}");
    }
}
