//! The desync corpus: raw requests at every framing edge, each sent on a fresh connection over
//! plain HTTP and over TLS, and backend responses at the edges of what a response may carry.
//! Each case ends in a clear refusal that reaches no backend, or in exactly the requests the
//! client sent reaching the backend, each exactly once, framed one way; never two requests
//! where the client sent one. HTTP/2 clients to HTTP/1 backends: tests/desync_h2.rs.

mod support;

use std::time::Duration;

use support::h1::{launch, Backend};
use support::http::tls_client;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::rustls::pki_types::ServerName;

/// What a case must come to.
enum Expect {
    /// Refused with this status; nothing reaches a backend.
    Refused(u16),
    /// These requests reach the backend, in order: each request line and the body bytes it
    /// got (as framed on the wire); the client gets one 200 for each.
    Forwarded(&'static [(&'static str, &'static str)]),
}

use Expect::{Forwarded, Refused};

const H: &str = "Host: example.cn\r\n";

/// The corpus: (what it is, the raw bytes, what must come of it).
fn corpus() -> Vec<(&'static str, String, Expect)> {
    let post = |extra: &str, body: &str| format!("POST /p HTTP/1.1\r\n{H}{extra}\r\n{body}");
    vec![
        ("CL and TE together", post("Content-Length: 4\r\nTransfer-Encoding: chunked\r\n", "0\r\n\r\nG"), Refused(400)),
        ("TE and CL together", post("Transfer-Encoding: chunked\r\nContent-Length: 4\r\n", "0\r\n\r\nG"), Refused(400)),
        ("two different Content-Lengths", post("Content-Length: 5\r\nContent-Length: 6\r\n", "hello!"), Refused(400)),
        ("two equal Content-Lengths", post("Content-Length: 5\r\nContent-Length: 5\r\n", "hello"), Forwarded(&[("POST /p HTTP/1.1", "hello")])),
        ("a Content-Length list of equal values", post("Content-Length: 5, 5\r\n", "hello"), Forwarded(&[("POST /p HTTP/1.1", "hello")])),
        ("a signed Content-Length", post("Content-Length: +5\r\n", "hello"), Refused(400)),
        ("a negative Content-Length", post("Content-Length: -5\r\n", "hello"), Refused(400)),
        ("a hex Content-Length", post("Content-Length: 0x5\r\n", "hello"), Refused(400)),
        ("a Content-Length past u64", post("Content-Length: 99999999999999999999999\r\n", "hello"), Refused(400)),
        ("gzip, chunked", post("Transfer-Encoding: gzip, chunked\r\n", "0\r\n\r\n"), Refused(501)),
        ("chunked, chunked", post("Transfer-Encoding: chunked, chunked\r\n", "0\r\n\r\n"), Refused(501)),
        ("chunked in two fields", post("Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n", "0\r\n\r\n"), Refused(501)),
        ("identity", post("Transfer-Encoding: identity\r\n", "0\r\n\r\n"), Refused(501)),
        ("xchunked", post("Transfer-Encoding: xchunked\r\n", "0\r\n\r\n"), Refused(501)),
        ("chunked after a tab", post("Transfer-Encoding:\tchunked\r\n", "5\r\nhello\r\n0\r\n\r\n"), Forwarded(&[("POST /p HTTP/1.1", "5\r\nhello\r\n0\r\n\r\n")])),
        ("a space before the colon of TE", post("Transfer-Encoding : chunked\r\n", "0\r\n\r\n"), Refused(400)),
        ("a chunk extension (not passed on)", post("Transfer-Encoding: chunked\r\n", "5;name=value\r\nhello\r\n0\r\n\r\n"), Forwarded(&[("POST /p HTTP/1.1", "5\r\nhello\r\n0\r\n\r\n")])),
        ("a bad chunk size", post("Transfer-Encoding: chunked\r\n", "zz\r\nhello\r\n0\r\n\r\n"), Refused(400)),
        ("a negative chunk size", post("Transfer-Encoding: chunked\r\n", "-5\r\nhello\r\n0\r\n\r\n"), Refused(400)),
        ("a 0x chunk size", post("Transfer-Encoding: chunked\r\n", "0x5\r\nhello\r\n0\r\n\r\n"), Refused(400)),
        ("a chunk size past u64", post("Transfer-Encoding: chunked\r\n", "10000000000000005\r\nhello\r\n0\r\n\r\n"), Refused(400)),
        ("a chunk longer than its size", post("Transfer-Encoding: chunked\r\n", "3\r\nhello\r\n0\r\n\r\n"), Refused(400)),
        ("a chunk size line ending in a bare LF", post("Transfer-Encoding: chunked\r\n", "5\nhello\r\n0\r\n\r\n"), Refused(400)),
        ("trailers (not passed on)", post("Transfer-Encoding: chunked\r\n", "5\r\nhello\r\n0\r\nx-sum: 1\r\n\r\n"), Forwarded(&[("POST /p HTTP/1.1", "5\r\nhello\r\n0\r\n\r\n")])),
        ("a forwarding field as a trailer", post("Transfer-Encoding: chunked\r\n", "5\r\nhello\r\n0\r\nX-Forwarded-For: 10.0.0.1\r\n\r\n"), Forwarded(&[("POST /p HTTP/1.1", "5\r\nhello\r\n0\r\n\r\n")])),
        ("chunks split and sized oddly", post("Transfer-Encoding: chunked\r\n", "2\r\nhe\r\n003\r\nllo\r\n0\r\n\r\n"), Forwarded(&[("POST /p HTTP/1.1", "2\r\nhe\r\n3\r\nllo\r\n0\r\n\r\n")])),
        ("bare LF line ends", "GET /lf HTTP/1.1\nHost: example.cn\n\n".to_owned(), Forwarded(&[("GET /lf HTTP/1.1", "")])),
        ("an obsolete line folding", format!("GET /f HTTP/1.1\r\n{H}X-Folded: a\r\n b\r\n\r\n"), Refused(400)),
        ("a space before a colon", "GET /s HTTP/1.1\r\nHost : example.cn\r\n\r\n".to_owned(), Refused(400)),
        ("a field without a colon", format!("GET /s HTTP/1.1\r\n{H}Nonsense\r\n\r\n"), Refused(400)),
        ("a NUL in a value", format!("GET /s HTTP/1.1\r\n{H}X-A: a\0b\r\n\r\n"), Refused(400)),
        ("a doubled space in the request line", format!("GET  /s HTTP/1.1\r\n{H}\r\n"), Refused(400)),
        ("a tab in the request line", format!("GET\t/s HTTP/1.1\r\n{H}\r\n"), Refused(400)),
        ("no Host", "GET /s HTTP/1.1\r\n\r\n".to_owned(), Refused(400)),
        ("two Hosts", format!("GET /s HTTP/1.1\r\n{H}{H}\r\n"), Refused(400)),
        ("an absolute-form target", "GET http://example.cn/abs?q=1 HTTP/1.1\r\nHost: other.cn\r\n\r\n".to_owned(), Forwarded(&[("GET /abs?q=1 HTTP/1.1", "")])),
        ("Expect: 100-continue", post("Content-Length: 5\r\nExpect: 100-continue\r\n", "hello"), Forwarded(&[("POST /p HTTP/1.1", "hello")])),
        ("an unknown Expect", post("Content-Length: 5\r\nExpect: teapot\r\n", "hello"), Refused(417)),
        ("HTTP/1.0 keep-alive, twice", format!("GET /a HTTP/1.0\r\n{H}Connection: keep-alive\r\n\r\nGET /b HTTP/1.0\r\n{H}Connection: keep-alive\r\n\r\n"), Forwarded(&[("GET /a HTTP/1.0", ""), ("GET /b HTTP/1.0", "")])),
        ("a request pipelined after a body", format!("{}GET /next HTTP/1.1\r\n{H}\r\n", post("Content-Length: 5\r\n", "hello")), Forwarded(&[("POST /p HTTP/1.1", "hello"), ("GET /next HTTP/1.1", "")])),
        ("a request pipelined after a chunked body", format!("{}GET /next HTTP/1.1\r\n{H}\r\n", post("Transfer-Encoding: chunked\r\n", "5\r\nhello\r\n0\r\n\r\n")), Forwarded(&[("POST /p HTTP/1.1", "5\r\nhello\r\n0\r\n\r\n"), ("GET /next HTTP/1.1", "")])),
        ("a GET with a body", format!("GET /g HTTP/1.1\r\n{H}Content-Length: 5\r\n\r\nhello"), Forwarded(&[("GET /g HTTP/1.1", "hello")])),
        ("an oversized head", format!("GET /big HTTP/1.1\r\n{H}X-Big: {}\r\n\r\n", "a".repeat(70_000)), Refused(431)),
        ("an oversized target", format!("GET /{} HTTP/1.1\r\n{H}\r\n", "a".repeat(20_000)), Refused(414)),
        ("HTTP/2's preface on HTTP/1", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_owned(), Refused(400)),
        ("an HTTP/1.2 request", format!("GET /v HTTP/1.2\r\n{H}\r\n"), Refused(400)),
    ]
}

/// Sends `raw` on `stream`, ends the client's side, and reads all that comes back. A proxy
/// that refused early may have closed before all of `raw` went out (a broken pipe here): what
/// it answered is still read.
async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(mut stream: S, raw: &[u8]) -> Vec<u8> {
    if stream.write_all(raw).await.is_ok() {
        let _ = stream.shutdown().await;
    }
    let mut got = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut got)).await;
    got
}

/// The responses in `raw`: status and body of each, in order.
fn responses(mut raw: &[u8]) -> Vec<(u16, Vec<u8>)> {
    let mut out = Vec::new();
    while let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
        let head = String::from_utf8_lossy(&raw[..end]).to_ascii_lowercase();
        raw = &raw[end + 4..];
        let status: u16 = head.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
        let field = |name: &str| {
            head.lines()
                .find_map(|l| l.strip_prefix(name).map(|v| v.trim().to_owned()))
        };
        let body = if status < 200 || status == 204 || status == 304 {
            Vec::new()
        } else if let Some(n) = field("content-length:").and_then(|v| v.parse::<usize>().ok()) {
            let n = n.min(raw.len());
            let body = raw[..n].to_vec();
            raw = &raw[n..];
            body
        } else if field("transfer-encoding:").as_deref() == Some("chunked") {
            let mut body = Vec::new();
            while let Some(eol) = raw.windows(2).position(|w| w == b"\r\n") {
                let size =
                    usize::from_str_radix(&String::from_utf8_lossy(&raw[..eol]), 16).unwrap_or(0);
                raw = &raw[eol + 2..];
                if size == 0 {
                    let end = raw.windows(2).position(|w| w == b"\r\n").unwrap_or(0);
                    raw = &raw[(end + 2).min(raw.len())..];
                    break;
                }
                body.extend_from_slice(&raw[..size.min(raw.len())]);
                raw = &raw[(size + 2).min(raw.len())..];
            }
            body
        } else {
            std::mem::take(&mut raw).to_vec()
        };
        out.push((status, body));
    }
    out
}

/// The request line and the body bytes of a request the backend recorded.
fn line_and_body(seen: &str) -> (String, String) {
    let (head, body) = seen.split_once("\r\n\r\n").unwrap_or((seen, ""));
    (
        head.lines().next().unwrap_or("").to_owned(),
        body.to_owned(),
    )
}

/// Lower-cased field names of a recorded request's head.
fn framing_fields(seen: &str) -> Vec<String> {
    let head = seen.split("\r\n\r\n").next().unwrap_or("");
    head.lines()
        .skip(1)
        .filter_map(|l| l.split_once(':').map(|(n, _)| n.to_ascii_lowercase()))
        .filter(|n| n == "content-length" || n == "transfer-encoding")
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_request_corpus_over_plain_http_and_tls() {
    let backend = Backend::start().await;
    let (env, running, root) = launch(&backend, "").await;
    let tls = tls_client(&[&root.pem]);
    let mut failures = Vec::new();
    for (transport, tls_on) in [("plain", false), ("TLS", true)] {
        for (what, raw, expect) in corpus() {
            let before = backend.seen.lock().expect("lock").len();
            let got = if tls_on {
                let tcp = TcpStream::connect(("127.0.0.1", env.https))
                    .await
                    .expect("tcp");
                let name = ServerName::try_from("example.cn").expect("name");
                let stream = tls.connect(name, tcp).await.expect("handshake");
                exchange(stream, raw.as_bytes()).await
            } else {
                let tcp = TcpStream::connect(("127.0.0.1", env.http))
                    .await
                    .expect("tcp");
                exchange(tcp, raw.as_bytes()).await
            };
            let want = match &expect {
                Refused(_) => 0,
                Forwarded(want) => want.len(),
            };
            let seen = backend.seen_since(before, want).await;
            let answers = responses(&got);
            let statuses: Vec<u16> = answers.iter().map(|(s, _)| *s).collect();
            let problem = match &expect {
                Refused(status) if statuses != [*status] => {
                    Some(format!("want [{status}], got {statuses:?}"))
                }
                Refused(_) if !seen.is_empty() => Some(format!("reached the backend: {seen:?}")),
                Forwarded(want) if statuses != vec![200; want.len()] => Some(format!(
                    "want {} x 200, got {statuses:?}: {}",
                    want.len(),
                    String::from_utf8_lossy(&got)
                )),
                Forwarded(want) => {
                    let got: Vec<(String, String)> =
                        seen.iter().map(|s| line_and_body(s)).collect();
                    let want: Vec<(String, String)> = want
                        .iter()
                        .map(|(l, b)| ((*l).to_owned(), (*b).to_owned()))
                        .collect();
                    let framed_once = seen.iter().all(|s| framing_fields(s).len() <= 1);
                    if got != want {
                        Some(format!("the backend got {got:?}, want {want:?}"))
                    } else if !framed_once {
                        Some(format!("framed twice: {seen:?}"))
                    } else {
                        None
                    }
                }
                Refused(_) => None,
            };
            if let Some(problem) = problem {
                failures.push(format!("{transport}, {what}: {problem}"));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases:\n{}\n{}",
        failures.len(),
        2 * corpus().len(),
        failures.join("\n"),
        running.log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn responses_at_the_edges_never_become_a_second_response() {
    let backend = Backend::start().await;
    let (env, running, _root) = launch(&backend, "").await;
    for (path, status, body) in [
        ("/204-with-body", 204, ""),
        ("/304-with-body", 304, ""),
        ("/100-with-body", 502, "502 Bad Gateway\n"),
        ("/early-hints", 200, "ok"),
        ("/until-close", 200, "the body ends at close"),
    ] {
        // Twice on one keep-alive connection, then once more on a new one: what the backend
        // sent after a response's end never answers the next request.
        let raw = format!("GET {path} HTTP/1.1\r\n{H}\r\nGET /after HTTP/1.1\r\n{H}\r\n");
        let tcp = TcpStream::connect(("127.0.0.1", env.http))
            .await
            .expect("tcp");
        let got = exchange(tcp, raw.as_bytes()).await;
        let answers: Vec<(u16, String)> = responses(&got)
            .into_iter()
            .filter(|(s, _)| *s >= 200)
            .map(|(s, b)| (s, String::from_utf8_lossy(&b).into_owned()))
            .collect();
        let first = answers.first().cloned();
        assert_eq!(
            first,
            Some((status, body.to_owned())),
            "{path}: {}\n{}",
            String::from_utf8_lossy(&got),
            running.log()
        );
        if status != 502 {
            assert_eq!(
                answers.get(1),
                Some(&(200, "GET /after body=0".to_owned())),
                "{path}: the next request gets its own response: {}",
                String::from_utf8_lossy(&got)
            );
        }
        let tcp = TcpStream::connect(("127.0.0.1", env.http))
            .await
            .expect("tcp");
        let raw = format!("GET /fresh HTTP/1.1\r\n{H}\r\n");
        let got = exchange(tcp, raw.as_bytes()).await;
        assert_eq!(
            responses(&got),
            vec![(200, b"GET /fresh body=0".to_vec())],
            "{path}: a pooled backend connection carries nothing over"
        );
    }
}
