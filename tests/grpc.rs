//! gRPC through menshen: an HTTP/2 client to HTTP/2 backends (`http2 = true`), over h2c and
//! over TLS with ALPN h2: unary and bidirectional streaming calls with their trailers, `te:
//! trailers` passed on, a stream the backend resets, and a TLS backend that declines HTTP/2.

mod support;

use std::time::Duration;

use bytes::Bytes;
use h2::client::SendRequest;
use support::config::Config;
use support::grpc::GrpcBackend;
use support::h1::Backend;
use support::http::{get_plain, h2_connect};
use support::pki::{Ca, LeafSpec};
use support::{Env, Running};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A proxy in front of an h2c backend (`/h2c/...`), a TLS HTTP/2 backend (`/tls/...`) and a
/// TLS backend that speaks only HTTP/1.1 (`/h1/...`), prefixes stripped.
fn launch(h2c: u16, tls: u16, h1: u16, backend_ca: &Ca) -> (Env, Running, Ca) {
    let (env, root) = Env::with_site(&["example.cn"]);
    env.write("backend-ca.pem", &backend_ca.pem);
    let tls_h2 = "tls = true\nhttp2 = true\nsni = \"grpc.internal\"\nca_file = \"backend-ca.pem\"";
    let config = Config::new()
        .upstream("h2c", &[h2c])
        .keys("http2 = true")
        .upstream("tls", &[tls])
        .keys(tls_h2)
        .upstream("h1", &[h1])
        .keys(tls_h2)
        .site("site", &["example.cn"])
        .proxy("/h2c/", "h2c")
        .keys("strip_prefix = true")
        .proxy("/tls/", "tls")
        .keys("strip_prefix = true")
        .proxy("/h1/", "h1")
        .keys("strip_prefix = true");
    env.write_config("", config);
    let running = env.start();
    (env, running, root)
}

/// What a client saw of a call: status, body, trailers (or the error that ended it).
struct Call {
    status: u16,
    body: Vec<u8>,
    trailers: Result<Option<http::HeaderMap>, String>,
}

fn grpc_request(path: &str) -> http::Request<()> {
    http::Request::post(format!("https://example.cn{path}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(())
        .expect("request")
}

async fn unary(client: &SendRequest<Bytes>, path: &str, message: &'static [u8]) -> Call {
    let mut client = client.clone().ready().await.expect("ready");
    let (response, mut stream) = client
        .send_request(grpc_request(path), false)
        .expect("send");
    stream.reserve_capacity(message.len());
    stream
        .send_data(Bytes::from_static(message), true)
        .expect("data");
    let response = response.await.expect("response");
    let status = response.status().as_u16();
    let mut recv = response.into_body();
    let mut body = Vec::new();
    while let Some(chunk) = recv.data().await {
        match chunk {
            Ok(chunk) => {
                let _ = recv.flow_control().release_capacity(chunk.len());
                body.extend_from_slice(&chunk);
            }
            Err(e) => {
                return Call {
                    status,
                    body,
                    trailers: Err(e.to_string()),
                }
            }
        }
    }
    let trailers = recv.trailers().await.map_err(|e| e.to_string());
    Call {
        status,
        body,
        trailers,
    }
}

fn grpc_status(call: &Call) -> Option<String> {
    let trailers = call.trailers.as_ref().ok()?.as_ref()?;
    Some(trailers.get("grpc-status")?.to_str().ok()?.to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unary_and_streaming_calls_over_h2c_and_tls_keep_their_trailers() {
    let ca = Ca::root("Backend CA");
    let leaf = ca.issue(&LeafSpec::new(&["grpc.internal"], 7));
    let h2c = GrpcBackend::start(None).await;
    let tls = GrpcBackend::start(Some(&leaf)).await;
    let h1 = Backend::start_tls(&leaf).await;
    let (env, running, root) = launch(h2c.port, tls.port, h1.port, &ca);
    let client = h2_connect(&[&root.pem], env.https, "example.cn")
        .await
        .expect("h2 connection");

    for (prefix, backend) in [("/h2c", &h2c), ("/tls", &tls)] {
        let path = format!("{prefix}/echo.Echo/Unary");
        let call = unary(&client, &path, b"\x00\x00\x00\x00\x02hi").await;
        assert_eq!(call.status, 200, "{prefix}: {}", running.log());
        assert_eq!(call.body, b"reply:\x00\x00\x00\x00\x02hi", "{prefix}");
        assert_eq!(grpc_status(&call).as_deref(), Some("0"), "{prefix}");
        let (seen_path, fields) = backend.last();
        assert_eq!(seen_path, "/echo.Echo/Unary", "{prefix}: prefix stripped");
        assert_eq!(
            fields.get("te").map(|v| v.as_bytes()),
            Some(&b"trailers"[..]),
            "{prefix}: te: trailers reaches the backend"
        );
        assert!(fields.contains_key("x-request-id"), "{prefix}");
        assert_eq!(
            fields.get("x-forwarded-proto").map(|v| v.as_bytes()),
            Some(&b"https"[..])
        );
    }

    // Bidirectional streaming: each message comes back before the next one is sent.
    for prefix in ["/h2c", "/tls"] {
        let mut sender = client.clone().ready().await.expect("ready");
        let path = format!("{prefix}/echo.Echo/Stream");
        let (response, mut stream) = sender
            .send_request(grpc_request(&path), false)
            .expect("send");
        stream.reserve_capacity(64);
        stream
            .send_data(Bytes::from_static(b"one"), false)
            .expect("data");
        let response = tokio::time::timeout(Duration::from_secs(5), response)
            .await
            .expect("the response starts while the request is still open")
            .expect("response");
        let mut recv = response.into_body();
        for message in [&b"two"[..], b"three"] {
            let echoed = recv.data().await.expect("echo").expect("echo data");
            let _ = recv.flow_control().release_capacity(echoed.len());
            assert!(!echoed.is_empty());
            stream
                .send_data(Bytes::copy_from_slice(message), false)
                .expect("data");
        }
        stream.send_data(Bytes::new(), true).expect("end");
        let mut rest = Vec::new();
        while let Some(chunk) = recv.data().await {
            let chunk = chunk.expect("data");
            let _ = recv.flow_control().release_capacity(chunk.len());
            rest.extend_from_slice(&chunk);
        }
        let trailers = recv.trailers().await.expect("trailers").expect("some");
        assert_eq!(trailers.get("grpc-status").expect("grpc-status"), "0");
        assert!(
            String::from_utf8_lossy(&rest).ends_with("three"),
            "{prefix}: {rest:?}"
        );
    }

    // A stream the backend resets mid-body is reset for the client: never a clean end.
    let broken = unary(&client, "/h2c/broken", b"x").await;
    assert!(broken.trailers.is_err(), "a reset, not a clean end");
    assert!(grpc_status(&broken).is_none());

    // A TLS backend that answers ALPN with http/1.1 is spoken to in HTTP/1.1.
    let mut sender = client.clone().ready().await.expect("ready");
    let get = http::Request::get("https://example.cn/h1/plain")
        .body(())
        .expect("request");
    let (response, _) = sender.send_request(get, true).expect("send");
    let response = response.await.expect("response");
    assert_eq!(response.status(), 200, "{}", running.log());
    let mut body = response.into_body();
    let data = body.data().await.expect("body").expect("data");
    assert_eq!(&data[..], b"GET /plain body=0");

    // HTTP/1 clients on an h2c route: a GET, and a chunked POST whose payload (framing taken
    // off) reaches the backend, the backend's trailers becoming the chunked trailer section.
    let plain = get_plain(env.http, "example.cn", "/h2c/echo.Echo/Unary")
        .await
        .expect("GET");
    assert_eq!(plain.status, 200, "{}", running.log());
    assert_eq!(plain.text(), "reply:");
    let post = b"POST /h2c/echo.Echo/Unary HTTP/1.1\r\nHost: example.cn\r\n\
        Transfer-Encoding: chunked\r\nTE: trailers\r\nConnection: TE, close\r\n\r\n\
        3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n";
    let mut tcp = tokio::net::TcpStream::connect(("127.0.0.1", env.http))
        .await
        .expect("connect");
    tcp.write_all(post).await.expect("write");
    let mut raw = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), tcp.read_to_end(&mut raw)).await;
    let raw = String::from_utf8_lossy(&raw).to_ascii_lowercase();
    assert!(raw.starts_with("http/1.1 200 "), "{raw}");
    assert!(raw.contains("transfer-encoding: chunked\r\n"), "{raw}");
    assert!(raw.contains("reply:abcde"), "{raw}");
    assert!(
        raw.ends_with("0\r\ngrpc-status: 0\r\ngrpc-message: ok\r\n\r\n"),
        "trailers as the trailer section: {raw}"
    );
    let (_, fields) = h2c.last();
    assert_eq!(
        fields.get("te").map(|v| v.as_bytes()),
        Some(&b"trailers"[..])
    );
}
