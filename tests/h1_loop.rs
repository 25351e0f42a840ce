//! menshen's own HTTP/1 loop (src/proxy/h1.rs) against a scripted backend: keep-alive on both
//! sides, response framings, stale pooled connections, hop-by-hop fields, and the hand-over to
//! pingora-proxy for requests the loop does not take, on the same connection.

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use support::http::tls_client;
use support::pki::{Ca, LeafSpec};
use support::{eventually, Env};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A backend that answers by path, counts its connections and keeps every request header.
struct Backend {
    port: u16,
    accepted: Arc<AtomicUsize>,
    seen: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Body bytes of `/big`: more than loopback socket buffers hold.
const BIG: usize = 64 << 20;

/// The backend's answer to `path`, and whether it then closes the connection (silently, after
/// a moment, as a backend whose keep-alive timeout runs out).
fn answer(method: &str, path: &str, body_len: usize) -> (Vec<u8>, bool) {
    let fixed = |r: &str| r.as_bytes().to_vec();
    match path {
        "/chunked" => (
            fixed("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nKeep-Alive: timeout=5\r\nConnection: keep-alive\r\n\r\n5\r\nhello\r\n6;x=y\r\n world\r\n0\r\nx-checksum: 1\r\n\r\n"),
            false,
        ),
        "/until-close" => (
            fixed("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nthe body ends at close"),
            true,
        ),
        "/big" => {
            let mut r = format!("HTTP/1.1 200 OK\r\nContent-Length: {BIG}\r\n\r\n").into_bytes();
            r.resize(r.len() + BIG, b'x');
            (r, false)
        }
        "/many-headers" => {
            let mut r = String::from("HTTP/1.1 200 OK\r\n");
            for i in 0..70 {
                r.push_str(&format!("Set-Cookie: c{i}=1\r\n"));
            }
            r.push_str("Content-Length: 4\r\n\r\nmany");
            (r.into_bytes(), false)
        }
        "/both-lengths" => (
            fixed("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"),
            false,
        ),
        "/parity" => {
            let body = format!("{method} {path} body={body_len}");
            (
                format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: keep-alive, X-Secret\r\nX-Secret: 1\r\nKeep-Alive: timeout=5\r\nProxy-Connection: keep-alive\r\nTE: trailers\r\nTrailer: x-checksum\r\nX-Kept: 1\r\n\r\n{body}",
                    body.len()
                )
                .into_bytes(),
                false,
            )
        }
        "/early-hints" => (
            fixed("HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"),
            false,
        ),
        _ => {
            let body = format!("{method} {path} body={body_len}");
            let close = path == "/then-idle-close";
            (
                format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nKeep-Alive: timeout=5\r\n\r\n{body}",
                    body.len()
                )
                .into_bytes(),
                close,
            )
        }
    }
}

impl Backend {
    async fn start() -> Backend {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let accepted = Arc::new(AtomicUsize::new(0));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (count, log) = (accepted.clone(), seen.clone());
        let task = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(serve(tcp, log.clone()));
            }
        });
        Backend {
            port,
            accepted,
            seen,
            task,
        }
    }

    fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    fn last_request(&self) -> String {
        self.seen
            .lock()
            .expect("lock")
            .last()
            .cloned()
            .unwrap_or_default()
    }
}

async fn serve(mut tcp: TcpStream, seen: Arc<Mutex<Vec<String>>>) {
    let mut buf = Vec::new();
    // After "/arm": the next request on this connection is read, then the connection closed
    // without an answer (a backend that timed the idle connection out as the request came).
    let mut armed = false;
    loop {
        let end = loop {
            if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break at + 4;
            }
            let mut chunk = [0u8; 4096];
            match tcp.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        };
        let head = String::from_utf8_lossy(&buf[..end]).into_owned();
        buf.drain(..end);
        let body_len: usize = head
            .lines()
            .find_map(|l| {
                let (name, value) = l.split_once(':')?;
                name.eq_ignore_ascii_case("content-length")
                    .then(|| value.trim().parse().ok())?
            })
            .unwrap_or(0);
        while buf.len() < body_len {
            let mut chunk = [0u8; 4096];
            match tcp.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        buf.drain(..body_len);
        let mut words = head.split(' ');
        let method = words.next().unwrap_or("").to_owned();
        let path = words.next().unwrap_or("/").to_owned();
        seen.lock().expect("lock").push(head);
        if armed {
            return;
        }
        armed = path == "/arm";
        let (mut response, close) = answer(&method, &path, body_len);
        if method == "HEAD" {
            let end = response
                .windows(4)
                .position(|w| w == b"\r\n\r\n")
                .unwrap_or(0);
            response.truncate(end + 4);
        }
        if tcp.write_all(&response).await.is_err() {
            return;
        }
        if close {
            tokio::time::sleep(Duration::from_millis(20)).await;
            return;
        }
    }
}

/// One response read off a client connection.
struct Answer {
    status: u16,
    head: String,
    body: Vec<u8>,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }
}

/// A client connection reading responses one at a time.
struct Client {
    tcp: TcpStream,
    buf: Vec<u8>,
}

impl Client {
    async fn connect(port: u16) -> Client {
        Client {
            tcp: TcpStream::connect(("127.0.0.1", port))
                .await
                .expect("connect"),
            buf: Vec::new(),
        }
    }

    async fn fill(&mut self) -> bool {
        let mut chunk = [0u8; 8192];
        match tokio::time::timeout(Duration::from_secs(5), self.tcp.read(&mut chunk)).await {
            Ok(Ok(n)) if n > 0 => {
                self.buf.extend_from_slice(&chunk[..n]);
                true
            }
            _ => false,
        }
    }

    async fn send(&mut self, raw: &str) {
        self.tcp.write_all(raw.as_bytes()).await.expect("write");
    }

    /// Reads one response (the body by Content-Length, chunked, or to the end of the stream).
    async fn response(&mut self, head_request: bool) -> Answer {
        let end = loop {
            if let Some(at) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break at + 4;
            }
            assert!(self.fill().await, "connection ended before a response");
        };
        let head = String::from_utf8_lossy(&self.buf[..end]).into_owned();
        self.buf.drain(..end);
        let status = head[9..12].parse().expect("status");
        let mut answer = Answer {
            status,
            head,
            body: Vec::new(),
        };
        if head_request {
            return answer;
        }
        if let Some(len) = answer.header("content-length") {
            let len: usize = len.parse().expect("length");
            while self.buf.len() < len {
                assert!(self.fill().await, "body cut short");
            }
            answer.body = self.buf.drain(..len).collect();
        } else if answer.header("transfer-encoding") == Some("chunked") {
            loop {
                let line_end = loop {
                    if let Some(at) = self.buf.windows(2).position(|w| w == b"\r\n") {
                        break at;
                    }
                    assert!(self.fill().await, "chunk cut short");
                };
                let line = String::from_utf8_lossy(&self.buf[..line_end]).into_owned();
                let size = usize::from_str_radix(line.split(';').next().unwrap_or(""), 16)
                    .expect("chunk size");
                self.buf.drain(..line_end + 2);
                if size == 0 {
                    // Trailer fields, then the empty line.
                    loop {
                        while !self.buf.windows(2).any(|w| w == b"\r\n") {
                            assert!(self.fill().await, "trailer cut short");
                        }
                        let at = self.buf.windows(2).position(|w| w == b"\r\n").unwrap_or(0);
                        self.buf.drain(..at + 2);
                        if at == 0 {
                            return answer;
                        }
                    }
                }
                while self.buf.len() < size + 2 {
                    assert!(self.fill().await, "chunk data cut short");
                }
                answer.body.extend(self.buf.drain(..size));
                self.buf.drain(..2);
            }
        } else {
            while self.fill().await {}
            answer.body = std::mem::take(&mut self.buf);
        }
        answer
    }

    /// Whether the proxy closes the connection within `within` (and sent nothing more).
    async fn closed_within(&mut self, within: Duration) -> bool {
        let mut chunk = [0u8; 64];
        matches!(
            tokio::time::timeout(within, self.tcp.read(&mut chunk)).await,
            Ok(Ok(0)) | Ok(Err(_))
        ) && self.buf.is_empty()
    }
}

fn get(path: &str, extra: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: example.cn\r\n{extra}\r\n")
}

async fn start(backend: &Backend) -> (Env, support::Running) {
    start_with(backend, "").await
}

async fn start_with(backend: &Backend, policy: &str) -> (Env, support::Running) {
    let (env, running, _root) = launch(backend, policy).await;
    (env, running)
}

/// The proxy in front of `backend` with `policy` (TOML) added, and the root its certificate
/// chains to.
async fn launch(backend: &Backend, policy: &str) -> (Env, support::Running, Ca) {
    let (env, root) = Env::with_approved_root("Approved Root");
    env.put_cert("site", &root.issue(&LeafSpec::new(&["example.cn"], 1)), &[]);
    env.write_config(
        "",
        &format!(
            "{policy}\n[[upstreams]]\nname = \"backend\"\nbackends = [\"127.0.0.1:{}\"]\n\n\
             [[sites]]\nname = \"site\"\nicp = \"京ICP备16063439号-1\"\nhosts = [\"example.cn\"]\n\
             [[sites.routes]]\nprefix = \"/\"\nupstream = \"backend\"\n",
            backend.port
        ),
    );
    let running = env.start();
    (env, running, root)
}

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
async fn a_body_that_ends_at_close_closes_the_client_connection() {
    let backend = Backend::start().await;
    let (env, _running) = start(&backend).await;
    let mut client = Client::connect(env.http).await;
    client.send(&get("/until-close", "")).await;
    let answer = client.response(false).await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.header("connection"), Some("close"));
    assert_eq!(answer.body, b"the body ends at close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pooled_connection_the_backend_closed_is_replaced() {
    let backend = Backend::start().await;
    let (env, _running) = start(&backend).await;
    let mut client = Client::connect(env.http).await;
    client.send(&get("/then-idle-close", "")).await;
    assert_eq!(client.response(false).await.status, 200);
    // The backend closes its end while the connection sits in menshen's pool.
    tokio::time::sleep(Duration::from_millis(200)).await;
    for path in ["/one", "/two"] {
        client.send(&get(path, "")).await;
        let answer = client.response(false).await;
        assert_eq!(answer.status, 200, "{}", answer.head);
        assert_eq!(answer.body, format!("GET {path} body=0").as_bytes());
    }
    assert_eq!(backend.accepted(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_the_loop_does_not_take_are_served_on_the_same_connection() {
    let backend = Backend::start().await;
    let (env, _running) = start(&backend).await;
    let mut client = Client::connect(env.http).await;
    // Two requests in one write (pipelined), then one with a body (pingora-proxy's).
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
async fn a_request_that_arrives_with_the_previous_one_is_on_the_header_clock() {
    let backend = Backend::start().await;
    let (env, _running) = start_with(
        &backend,
        "[policy]\nheader_read_timeout_ms = 500\nkeepalive_timeout_seconds = 30\n",
    )
    .await;
    let mut client = Client::connect(env.http).await;
    // A whole request and the first byte of the next one, then nothing.
    client.send(&format!("{}G", get("/", ""))).await;
    assert_eq!(client.response(false).await.status, 200);
    assert!(
        client.closed_within(Duration::from_secs(3)).await,
        "closed by header_read_timeout_ms, not left to the keep-alive timeout"
    );
}

/// The header names of a request or response head, lowercase, without those that differ by
/// nature between two requests (length, date, ids).
fn field_names(head: &str) -> Vec<String> {
    let mut names: Vec<String> = head
        .lines()
        .skip(1)
        .filter_map(|l| {
            l.split_once(':')
                .map(|(n, _)| n.trim().to_ascii_lowercase())
        })
        // Lengths and dates differ by nature; pingora-proxy says `Connection: keep-alive`
        // where the loop relies on HTTP/1.1's default.
        .filter(|n| {
            !matches!(
                n.as_str(),
                "content-length" | "date" | "transfer-encoding" | "connection"
            )
        })
        .collect();
    names.sort();
    names
}

fn field_value(head: &str, name: &str) -> Option<String> {
    head.lines().skip(1).find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.trim()
            .eq_ignore_ascii_case(name)
            .then(|| v.trim().to_owned())
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_loop_and_pingora_proxy_send_and_answer_alike() {
    let backend = Backend::start().await;
    let (env, _running) = start(&backend).await;
    let extra = "X-Custom: 1\r\nKeep-Alive: timeout=5\r\nTE: trailers\r\nProxy-Authorization: Basic eA==\r\nX-Forwarded-For: 198.51.100.7\r\nX-Real-IP: 198.51.100.7\r\nX-Forwarded-Proto: gopher\r\nUser-Agent: parity\r\n";
    // Served by the loop: no body.
    let mut client = Client::connect(env.http).await;
    client.send(&get("/parity", extra)).await;
    let looped = client.response(false).await;
    let looped_request = backend.last_request();
    // Served by pingora-proxy: the same with a body.
    let mut client = Client::connect(env.http).await;
    client
        .send(&format!(
            "POST /parity HTTP/1.1\r\nHost: example.cn\r\n{extra}Content-Length: 2\r\n\r\nhi"
        ))
        .await;
    let proxied = client.response(false).await;
    let proxied_request = backend.last_request();

    assert_eq!(looped.status, 200);
    assert_eq!(proxied.status, 200);
    assert_eq!(
        field_names(&looped_request),
        field_names(&proxied_request),
        "request fields the backend sees\nloop:\n{looped_request}\npingora:\n{proxied_request}"
    );
    for name in [
        "host",
        "x-forwarded-for",
        "x-forwarded-host",
        "x-forwarded-proto",
        "x-real-ip",
        "x-custom",
        "user-agent",
    ] {
        assert_eq!(
            field_value(&looped_request, name),
            field_value(&proxied_request, name),
            "{name}"
        );
    }
    for gone in ["x-secret", "keep-alive", "proxy-connection", "te"] {
        assert_eq!(looped.header(gone), None, "loop passed {gone}");
        assert_eq!(proxied.header(gone), None, "pingora-proxy passed {gone}");
    }
    assert_eq!(looped.header("x-kept"), Some("1"));
    assert_eq!(
        field_names(&looped.head),
        field_names(&proxied.head),
        "response fields the client sees\nloop:\n{}\npingora:\n{}",
        looped.head,
        proxied.head
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_closes_idle_keepalive_connections() {
    let backend = Backend::start().await;
    let (env, mut running) = start_with(&backend, "[server]\ngrace_period_seconds = 1\n").await;
    let mut client = Client::connect(env.http).await;
    client.send(&get("/", "")).await;
    assert_eq!(client.response(false).await.status, 200);
    std::process::Command::new("kill")
        .args(["-TERM", &running.child.id().to_string()])
        .status()
        .expect("kill");
    // Well before the grace period ends and the runtime goes.
    assert!(
        client.closed_within(Duration::from_millis(1500)).await,
        "the idle connection is closed once shutdown starts"
    );
    assert_eq!(running.wait_exit(Duration::from_secs(20)), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_is_cut_after_the_send_timeout() {
    let backend = Backend::start().await;
    let (env, _running) = start_with(&backend, "[policy]\nsend_timeout_ms = 300\n").await;
    let requests = [
        // The loop's.
        get("/big", ""),
        // pingora-proxy's (a body).
        "POST /big HTTP/1.1\r\nHost: example.cn\r\nContent-Length: 1\r\n\r\nx".to_owned(),
    ];
    for request in requests {
        let mut tcp = TcpStream::connect(("127.0.0.1", env.http))
            .await
            .expect("connect");
        tcp.write_all(request.as_bytes()).await.expect("write");
        // Read nothing while the send timeout runs out several times over.
        tokio::time::sleep(Duration::from_secs(2)).await;
        let mut got = 0usize;
        let mut chunk = vec![0u8; 1 << 16];
        let ended = tokio::time::timeout(Duration::from_secs(20), async {
            loop {
                match tcp.read(&mut chunk).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => got += n,
                }
            }
        })
        .await;
        assert!(
            ended.is_ok(),
            "{}: the connection ends",
            request.lines().next().unwrap_or("")
        );
        assert!(
            got < BIG,
            "{}: cut before the whole body ({got} bytes)",
            request.lines().next().unwrap_or("")
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_client_that_never_reads_gives_its_connection_back() {
    let backend = Backend::start().await;
    let (env, _running, root) = launch(
        &backend,
        "[policy]\nsend_timeout_ms = 300\nmax_connections_per_ip = 1\n",
    )
    .await;
    let client = tls_client(&[&root.pem]);
    let tcp = TcpStream::connect(("127.0.0.1", env.https))
        .await
        .expect("connect");
    let name = rustls::pki_types::ServerName::try_from("example.cn").expect("name");
    let mut stalled = client.connect(name, tcp).await.expect("handshake");
    stalled
        .write_all(get("/big", "").as_bytes())
        .await
        .expect("request");
    // Never read: the proxy's writes stall, the send timeout cuts them, and the close (which
    // would send rustls' pending records first) must not wait for this reader either.
    let freed = eventually(Duration::from_secs(10), || {
        let client = client.clone();
        async move {
            let resp = support::http::get_tls(&client, env.https, "example.cn", "example.cn", "/")
                .await
                .ok()?;
            (resp.status == 200).then_some(())
        }
    })
    .await;
    assert!(
        freed.is_some(),
        "the client's only connection slot came back"
    );
    drop(stalled);
}
