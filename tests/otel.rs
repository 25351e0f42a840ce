//! OpenTelemetry trace export end to end: a collector started here (POST /v1/traces, OTLP
//! protobuf decoded with opentelemetry-proto) receives the spans of requests sent through the
//! HTTP/1 and the HTTP/2 engine with a given `traceparent`; without `[otel]` nothing is sent.

mod support;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;
use support::backend::Backend;
use support::config::Config;
use support::h1::{field_value, launch};
use support::http::{h2_connect, raw_plain, raw_tls, tls_client, Response};
use support::pki::Ca;
use support::{eventually, free_port, Env};

/// A span as the collector got it, with its resource's `service.name`.
#[derive(Clone)]
struct Got {
    service: String,
    span: Span,
}

/// An OTLP/HTTP collector on loopback: every span of every POST to /v1/traces.
struct Collector {
    port: u16,
    spans: Arc<Mutex<Vec<Got>>>,
}

impl Collector {
    fn start() -> Collector {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let spans = Arc::new(Mutex::new(Vec::new()));
        let kept = spans.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let kept = kept.clone();
                std::thread::spawn(move || serve(conn, &kept));
            }
        });
        Collector { port, spans }
    }

    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}/v1/traces", self.port)
    }

    fn of_trace(&self, trace_id: &str) -> Vec<Got> {
        let spans = self.spans.lock().expect("lock");
        spans
            .iter()
            .filter(|g| hex(&g.span.trace_id) == trace_id)
            .cloned()
            .collect()
    }

    /// The server span and the client spans of `trace_id`, once both have arrived.
    async fn request_spans(&self, trace_id: &str) -> (Got, Vec<Got>) {
        let found = eventually(Duration::from_secs(30), || async {
            let spans = self.of_trace(trace_id);
            let server = spans
                .iter()
                .find(|g| g.span.kind == SpanKind::Server as i32)?
                .clone();
            let clients: Vec<Got> = spans
                .into_iter()
                .filter(|g| g.span.kind == SpanKind::Client as i32)
                .collect();
            (!clients.is_empty()).then_some((server, clients))
        })
        .await;
        found.unwrap_or_else(|| panic!("no spans of trace {trace_id}"))
    }
}

/// Answers each POST on a (keep-alive) connection with 200 and keeps the spans it carried.
fn serve(mut conn: TcpStream, kept: &Mutex<Vec<Got>>) {
    let mut buf = Vec::new();
    loop {
        let Some((head_len, length)) = read_head(&mut conn, &mut buf) else {
            return;
        };
        while buf.len() < head_len + length {
            let mut chunk = [0u8; 8192];
            match conn.read(&mut chunk) {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        let body: Vec<u8> = buf.drain(..head_len + length).skip(head_len).collect();
        let request = ExportTraceServiceRequest::decode(&body[..]).expect("OTLP protobuf");
        for resource in request.resource_spans {
            let attrs = resource.resource.map(|r| r.attributes).unwrap_or_default();
            let service = text(&attrs, "service.name").unwrap_or_default();
            for scope in resource.scope_spans {
                for span in scope.spans {
                    let service = service.clone();
                    kept.lock().expect("lock").push(Got { service, span });
                }
            }
        }
        let answer =
            b"HTTP/1.1 200 OK\r\ncontent-type: application/x-protobuf\r\ncontent-length: 0\r\n\r\n";
        if conn.write_all(answer).is_err() {
            return;
        }
    }
}

/// Reads a request head into `buf`: its length and the body's (POST /v1/traces only).
fn read_head(conn: &mut TcpStream, buf: &mut Vec<u8>) -> Option<(usize, usize)> {
    loop {
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut req = httparse::Request::new(&mut headers);
        if let httparse::Status::Complete(n) = req.parse(buf).expect("an HTTP request") {
            assert_eq!(req.method, Some("POST"));
            assert_eq!(req.path, Some("/v1/traces"));
            let length = req
                .headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case("content-length"))
                .and_then(|h| std::str::from_utf8(h.value).ok()?.parse().ok())
                .expect("content-length");
            return Some((n, length));
        }
        let mut chunk = [0u8; 8192];
        match conn.read(&mut chunk) {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A string or integer attribute, as text.
fn text(attrs: &[KeyValue], key: &str) -> Option<String> {
    let value = attrs.iter().find(|kv| kv.key == key)?.value.as_ref()?;
    match value.value.as_ref()? {
        Value::StringValue(s) => Some(s.clone()),
        Value::IntValue(i) => Some(i.to_string()),
        _ => None,
    }
}

fn attr(got: &Got, key: &str) -> Option<String> {
    text(&got.span.attributes, key)
}

/// Checks the spans of one proxied request sent with `traceparent` (trace `trace`, parent
/// `parent`): a server span joined to the client's, one upstream span under it whose id the
/// backend was given; `forwarded` is the `traceparent` the backend got.
fn check_proxied(
    (server, clients): &(Got, Vec<Got>),
    (trace, parent): (&str, &str),
    forwarded: &str,
    backend: &Backend,
) {
    let s = &server.span;
    assert_eq!(server.service, "edge-test");
    assert_eq!(
        hex(&s.parent_span_id),
        parent,
        "the client's span is the parent"
    );
    assert_eq!(s.name, "GET /");
    assert_eq!(attr(server, "http.request.method").as_deref(), Some("GET"));
    assert_eq!(attr(server, "http.route").as_deref(), Some("/"));
    assert_eq!(attr(server, "menshen.site").as_deref(), Some("site"));
    assert_eq!(
        attr(server, "http.response.status_code").as_deref(),
        Some("200")
    );
    assert_eq!(attr(server, "client.address").as_deref(), Some("127.0.0.1"));
    let policy = s
        .events
        .iter()
        .find(|e| e.name == "policy")
        .expect("policy event");
    assert_eq!(
        text(&policy.attributes, "menshen.policy.decision").as_deref(),
        Some("allow")
    );

    assert_eq!(clients.len(), 1, "one attempt");
    let c = &clients[0];
    assert_eq!(
        c.span.parent_span_id, s.span_id,
        "the attempt is the request's child"
    );
    assert_eq!(attr(c, "menshen.upstream").as_deref(), Some("backend"));
    assert_eq!(attr(c, "server.address").as_deref(), Some("127.0.0.1"));
    assert_eq!(attr(c, "server.port"), Some(backend.port.to_string()));
    assert_eq!(
        attr(c, "menshen.upstream.outcome").as_deref(),
        Some("response")
    );
    assert_eq!(attr(c, "http.response.status_code").as_deref(), Some("200"));
    assert_eq!(
        forwarded,
        format!("00-{trace}-{}-01", hex(&c.span.span_id)),
        "the backend's parent is the attempt's span"
    );
}

fn otel_section(collector: &Collector) -> String {
    format!(
        "[otel]\nendpoint = \"{}\"\nservice_name = \"edge-test\"\n",
        collector.endpoint()
    )
}

/// One GET over HTTP/1.1 for `host` with `traceparent` (trace `trace`, sampled), over TLS
/// trusting `root` or over plain HTTP: the response.
async fn h1_get(env: &Env, host: &str, trace: Option<&str>, root: Option<&Ca>) -> Response {
    let field = trace.map_or(String::new(), |t| {
        format!("traceparent: 00-{t}-b7ad6b7169203331-01\r\n")
    });
    let raw = format!("GET / HTTP/1.1\r\nHost: {host}\r\n{field}Connection: close\r\n\r\n");
    let got = match root {
        Some(root) => {
            let client = tls_client(&[&root.pem]);
            raw_tls(&client, env.https, host, b"", raw.as_bytes()).await
        }
        None => raw_plain(env.http, raw.as_bytes(), None).await,
    };
    got.expect("HTTP/1.1 response")
}

/// One GET over HTTP/2 with `traceparent`: its status.
async fn h2_get_traced(root: &str, env: &Env, traceparent: &'static str) -> u16 {
    let client = h2_connect(&[root], env.https, "example.cn")
        .await
        .expect("h2 connection");
    let mut client = client.ready().await.expect("ready");
    let request = http::Request::get("https://example.cn/h2")
        .header("traceparent", traceparent)
        .body(())
        .expect("request");
    let (response, _) = client.send_request(request, true).expect("send");
    response.await.expect("response").status().as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_through_both_engines_are_traced_under_the_clients_traceparent() {
    let collector = Collector::start();
    let backend = Backend::start().await;
    let (env, running, root) = launch(&backend, &otel_section(&collector)).await;

    let (t1, p1) = ("4bf92f3577b34da6a3ce929d0e0e4736", "b7ad6b7169203331");
    let h1 = h1_get(&env, "example.cn", Some(t1), Some(&root)).await;
    assert_eq!(h1.status, 200, "{}", running.log());
    let forwarded_h1 = field_value(&backend.last_request(), "traceparent").expect("traceparent");

    let (t2, p2) = ("0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331");
    let status = h2_get_traced(
        &root.pem,
        &env,
        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
    )
    .await;
    assert_eq!(status, 200, "{}", running.log());
    let forwarded_h2 = field_value(&backend.last_request(), "traceparent").expect("traceparent");

    let h1_spans = collector.request_spans(t1).await;
    check_proxied(&h1_spans, (t1, p1), &forwarded_h1, &backend);
    let h2_spans = collector.request_spans(t2).await;
    check_proxied(&h2_spans, (t2, p2), &forwarded_h2, &backend);

    // A refusal (no site serves this Host): the policy's decision is an event of the span.
    let t3 = "1af7651916cd43dd8448eb211c80319c";
    let refused = h1_get(&env, "nobody.example.cn", Some(t3), None).await;
    assert_eq!(refused.status, 403);
    let server = eventually(Duration::from_secs(30), || async {
        collector.of_trace(t3).into_iter().next()
    })
    .await
    .expect("the refused request's span");
    let rule = attr(&server, "menshen.policy.denied_by").expect("the rule");
    let policy = &server
        .span
        .events
        .iter()
        .find(|e| e.name == "policy")
        .expect("event");
    assert_eq!(
        text(&policy.attributes, "menshen.policy.decision").as_deref(),
        Some("deny")
    );
    assert_eq!(text(&policy.attributes, "menshen.policy.rule"), Some(rule));
    assert_eq!(
        attr(&server, "http.response.status_code").as_deref(),
        Some("403")
    );
}

/// Without `[otel]` nothing is sent, even where the OpenTelemetry environment variables name a
/// collector, and the client's `traceparent` goes to the backend as it came. (A second proxy
/// with `[otel]`, started after the first one's requests, shows the collector was listening.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_section_nothing_is_sent() {
    let collector = Collector::start();
    std::env::set_var(
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        format!("http://127.0.0.1:{}", collector.port),
    );
    std::env::set_var("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", collector.endpoint());
    let backend = Backend::start().await;
    let (env, untraced, root) = launch(&backend, "").await;
    let sent = "00-2af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    let status = h2_get_traced(&root.pem, &env, sent).await;
    assert_eq!(status, 200, "{}", untraced.log());
    let forwarded = field_value(&backend.last_request(), "traceparent");
    assert_eq!(forwarded.as_deref(), Some(sent));

    let (env, running, root) = launch(&backend, &otel_section(&collector)).await;
    let t = "3af7651916cd43dd8448eb211c80319c";
    let status = h2_get_traced(
        &root.pem,
        &env,
        "00-3af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
    )
    .await;
    assert_eq!(status, 200, "{}", running.log());
    collector.request_spans(t).await;
    let spans = collector.spans.lock().expect("lock");
    assert!(
        spans.iter().all(|g| hex(&g.span.trace_id) == t),
        "only the traced proxy's spans"
    );
    drop(untraced);
}

/// An attempt at a backend that refuses connections, then one at a backend that answers: two
/// client spans under the request's, the failed one saying why, and the backend told the span
/// of the attempt that reached it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_attempt_and_its_retry_are_two_spans() {
    let collector = Collector::start();
    let backend = Backend::start().await;
    let dead = free_port();
    let (env, root) = Env::with_approved_root("Approved Root");
    env.put_leaf("site", &root, "example.cn", 1);
    let config = Config::new()
        .raw(&otel_section(&collector))
        .upstream("pair", &[dead, backend.port])
        .site("site", &["example.cn"])
        .proxy("/", "pair");
    env.write_config("", config);
    let running = env.start();
    // Round robin: one of two requests tries the dead backend first (then it is ejected).
    let mut retried = None;
    for i in 0..2 {
        let trace = format!("5af7651916cd43dd8448eb211c80319{i}");
        let got = h1_get(&env, "example.cn", Some(&trace), None).await;
        assert_eq!(got.status, 200, "{}", running.log());
        let forwarded = field_value(&backend.last_request(), "traceparent").expect("traceparent");
        let (server, clients) = collector.request_spans(&trace).await;
        if clients.len() == 2 {
            retried = Some((trace, forwarded, server, clients));
        }
    }
    let (trace, forwarded, server, mut clients) = retried.expect("a request that was retried");
    clients.sort_by_key(|c| c.span.start_time_unix_nano);
    let (failed, answered) = (&clients[0], &clients[1]);
    for c in [failed, answered] {
        assert_eq!(c.span.parent_span_id, server.span.span_id);
    }
    assert_ne!(failed.span.span_id, answered.span.span_id);
    assert_eq!(attr(failed, "server.port"), Some(dead.to_string()));
    assert_eq!(
        attr(failed, "menshen.upstream.outcome").as_deref(),
        Some("connect_refused")
    );
    assert_eq!(
        attr(answered, "server.port"),
        Some(backend.port.to_string())
    );
    assert_eq!(
        attr(answered, "menshen.upstream.outcome").as_deref(),
        Some("response")
    );
    assert_eq!(
        forwarded,
        format!("00-{trace}-{}-01", hex(&answered.span.span_id))
    );
}

/// A collector that cannot be reached: requests are served as ever, and the lost batches are
/// counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_collector_is_counted_and_never_felt() {
    let backend = Backend::start().await;
    let admin = free_port();
    let nobody = free_port();
    let section = format!(
        "[admin]\naddr = \"127.0.0.1:{admin}\"\n\
         [otel]\nendpoint = \"http://127.0.0.1:{nobody}/v1/traces\"\n"
    );
    let (env, running, _root) = launch(&backend, &section).await;
    for _ in 0..3 {
        let got = h1_get(&env, "example.cn", None, None).await;
        assert_eq!(got.status, 200, "{}", running.log());
    }
    let failures = eventually(Duration::from_secs(30), || async {
        let n = support::admin::metric(admin, "menshen_trace_export_failures_total").await?;
        (n >= 1.0).then_some(n)
    })
    .await;
    assert!(
        failures.is_some(),
        "no export failure counted:\n{}",
        running.log()
    );
    assert_eq!(
        support::admin::metric(admin, "menshen_trace_spans_exported_total").await,
        Some(0.0)
    );
}
