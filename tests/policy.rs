//! Every data-path rule, seen by a real client, with the access log line it leaves.

mod support;

use std::time::Duration;

use serde_json::Value;
use support::http::{get_with, h2_connect, h2_get, raw_plain, raw_tls, tls_client, Origin};
use support::pki::{Ca, LeafSpec};
use support::{eventually, free_port, Env};

struct Setup {
    env: Env,
    root: Ca,
    pp_port: u16,
    pp_plain_port: u16,
    _origin: Origin,
    _proxy: support::Running,
}

/// A proxy with every policy switched on: one site proxied to an origin, a second site, and a
/// TLS listener behind a PROXY-protocol balancer.
async fn setup(policy: &str, site_extra: &str) -> Setup {
    let (env, root) = Env::with_approved_root("Approved Root");
    let leaf = root.issue(&LeafSpec::new(&["shop.example.cn"], 0x1));
    env.put_cert("shop", &leaf, &[]);
    let other = root.issue(&LeafSpec::new(&["news.example.cn"], 0x2));
    env.put_cert("news", &other, &[]);
    let origin = Origin::start("origin").await;
    let pp_port = free_port();
    let pp_plain_port = free_port();
    env.write_config(
        "",
        &format!(
            r#"
[[listeners]]
name = "https-lb"
addr = "127.0.0.1:{pp_port}"
tls = true
proxy_protocol = true

[[listeners]]
name = "http-lb"
addr = "127.0.0.1:{pp_plain_port}"
proxy_protocol = true

[access_log]
path = "logs/access.log"

[policy]
{policy}

[[policy.takedowns]]
id = "case-42"
host = "shop.example.cn"
prefix = "/banned/"
body = "gone for legal reasons"

[[upstreams]]
name = "origin"
backends = ["127.0.0.1:{port}"]

[[sites]]
name = "shop"
icp = "京ICP备16063439号-1"
hosts = ["shop.example.cn"]
remove_response_headers = ["Server", "X-Powered-By"]
add_response_headers = {{ "X-Frame-Options" = "DENY" }}
hsts_max_age_seconds = 600
max_body_bytes = 100
{site_extra}
[[sites.routes]]
prefix = "/"
upstream = "origin"
[[sites.routes]]
prefix = "/limited/"
upstream = "origin"
rate_limit = {{ requests_per_second = 0.5, burst = 1 }}

[[sites]]
name = "news"
icp = "京ICP证110507号"
hosts = ["news.example.cn"]
https_only = true
log_query = false
[[sites.routes]]
prefix = "/"
respond = {{ body = "news" }}
"#,
            port = origin.port
        ),
    );
    let proxy = env.start();
    assert!(support::wait_port(pp_port, Duration::from_secs(10)));
    assert!(support::wait_port(pp_plain_port, Duration::from_secs(10)));
    Setup {
        env,
        root,
        pp_port,
        pp_plain_port,
        _origin: origin,
        _proxy: proxy,
    }
}

impl Setup {
    /// The access log line of the request with this id, once written.
    async fn log_line(&self, request_id: &str) -> Value {
        let path = self.env.path("logs/access.log");
        let found = eventually(Duration::from_secs(5), || {
            let path = path.clone();
            async move {
                let text = std::fs::read_to_string(&path).ok()?;
                text.lines()
                    .filter_map(|l| serde_json::from_str::<Value>(l).ok())
                    .find(|v| v["request_id"] == request_id)
            }
        })
        .await;
        found.unwrap_or_else(|| panic!("no access log line for {request_id}"))
    }

    async fn plain(&self, raw: &[u8]) -> support::http::Response {
        raw_plain(self.env.http, raw, None)
            .await
            .expect("plain request")
    }

    async fn tls(&self, sni: &str, raw: &[u8]) -> support::http::Response {
        let client = tls_client(&[&self.root.pem]);
        raw_tls(&client, self.env.https, sni, b"", raw)
            .await
            .expect("TLS request")
    }
}

fn id_of(resp: &support::http::Response) -> String {
    resp.header("x-request-id")
        .expect("x-request-id")
        .to_owned()
}

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
        "method",
        "path",
        "query",
        "status",
        "bytes_in",
        "bytes_out",
        "duration_ms",
        "upstream",
        "upstream_status",
        "request_id",
        "user_agent",
        "decision",
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_bodies_and_idle_keepalive_connections_are_cut() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let s = setup(
        "body_read_timeout_ms = 300\nkeepalive_timeout_seconds = 1",
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
        "a stalled body is cut off by body_read_timeout_ms"
    );

    // An idle keep-alive connection is closed after keepalive_timeout_seconds.
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
async fn request_headers_must_arrive_within_the_header_timeout() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;
    let s = setup(
        "header_read_timeout_ms = 500\nkeepalive_timeout_seconds = 30",
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
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_1_0_connections_close_unless_the_client_asks_for_keep_alive() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let s = setup("keepalive_timeout_seconds = 60", "").await;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn minimum_tls_version_refuses_older_clients() {
    let s = setup("min_tls_version = \"1.3\"", "").await;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut s.root.pem.as_bytes()) {
        roots.add(cert.expect("root")).expect("add");
    }
    let tls12_only = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS12])
    .expect("TLS 1.2")
    .with_root_certificates(roots)
    .with_no_client_auth();
    let client = tokio_rustls::TlsConnector::from(std::sync::Arc::new(tls12_only));
    let old = support::http::handshake_serial(&client, s.env.https, "shop.example.cn").await;
    assert!(old.is_err(), "a TLS 1.2-only client is refused");
    let modern = tls_client(&[&s.root.pem]);
    let ok = support::http::handshake_serial(&modern, s.env.https, "shop.example.cn").await;
    assert!(ok.is_ok(), "TLS 1.3 works");
}
