//! Response compression as clients see it: curl (built with zlib, brotli and zstd) decodes what
//! menshen sends over HTTP/1.1 and HTTP/2 back to the origin's exact bytes, for each coding,
//! for bodies framed by length, chunks or close; the cases that must go as they are (ranges,
//! HEAD, encoded bodies, no-transform, other types, small bodies, clients that accept none)
//! do; the access log names each outcome; `menshen check` and `/status` show the setting, and
//! a reload that removes it stops compression. Responses from an h2c backend are compressed the
//! same way, trailers kept, and gRPC never is.

mod support;

use std::io::Write;
use std::time::Duration;

use flate2::write::GzDecoder;

use support::config::Config;
use support::curl::{curl, Got};
use support::grpc::{gzip_unary, GrpcBackend};
use support::h1::feed_chunks;
use support::h2_pages::H2Pages;
use support::http::h2_connect;
use support::{admin, eventually, free_port, Env};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// The origin's page: markup that repeats, as pages do.
fn page() -> Vec<u8> {
    (0..600)
        .flat_map(|i| format!("<p>line {i}: the origin sends this uncompressed</p>\n").into_bytes())
        .collect()
}

/// An origin that answers by path, each response uncompressed unless the path says otherwise.
async fn origin() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            tokio::spawn(serve(tcp));
        }
    });
    port
}

async fn serve(mut tcp: tokio::net::TcpStream) {
    let mut buf = Vec::new();
    loop {
        let end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            let mut chunk = [0u8; 4096];
            match tcp.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        };
        let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
        buf.drain(..end);
        let path = head.split(' ').nth(1).unwrap_or("/").to_owned();
        let (fields, body, close) = answer(&path, head.contains("\r\nrange:"));
        let mut out = format!("HTTP/1.1 {fields}\r\n").into_bytes();
        match close {
            Framing::Length => {
                out.extend(format!("content-length: {}\r\n\r\n", body.len()).bytes())
            }
            Framing::Chunked => out.extend(b"transfer-encoding: chunked\r\n\r\n"),
            Framing::Close => out.extend(b"connection: close\r\n\r\n"),
        }
        match close {
            Framing::Chunked => {
                for part in body.chunks(3000) {
                    out.extend(format!("{:x}\r\n", part.len()).bytes());
                    out.extend_from_slice(part);
                    out.extend(b"\r\n");
                }
                out.extend(b"0\r\n\r\n");
            }
            _ if head.starts_with("head ") => {}
            _ => out.extend_from_slice(&body),
        }
        if tcp.write_all(&out).await.is_err() || close == Framing::Close {
            return;
        }
    }
}

#[derive(PartialEq, Clone, Copy)]
enum Framing {
    Length,
    Chunked,
    Close,
}

/// Status line and fields, body and framing for `path`.
fn answer(path: &str, range: bool) -> (String, Vec<u8>, Framing) {
    let html =
        "200 OK\r\ncontent-type: text/html; charset=utf-8\r\netag: \"v1\"\r\naccept-ranges: bytes";
    let ok = |fields: &str| format!("200 OK\r\n{fields}");
    match path {
        "/page" if range => (
            "206 Partial Content\r\ncontent-type: text/html\r\ncontent-range: bytes 0-9/30000"
                .into(),
            page()[..10].to_vec(),
            Framing::Length,
        ),
        "/page" => (html.into(), page(), Framing::Length),
        "/chunked" => (html.into(), page(), Framing::Chunked),
        "/close" => (html.into(), page(), Framing::Close),
        "/json" => (
            ok("content-type: application/json"),
            page(),
            Framing::Length,
        ),
        "/small" => (
            ok("content-type: text/html"),
            page()[..200].to_vec(),
            Framing::Length,
        ),
        "/png" => (ok("content-type: image/png"), page(), Framing::Length),
        "/encoded" => (
            ok("content-type: text/html\r\ncontent-encoding: gzip"),
            page(),
            Framing::Length,
        ),
        "/no-transform" => (
            ok("content-type: text/html\r\ncache-control: public, no-transform"),
            page(),
            Framing::Length,
        ),
        "/empty" => ("204 No Content".into(), Vec::new(), Framing::Length),
        _ => (
            ok("content-type: text/plain"),
            b"?".to_vec(),
            Framing::Length,
        ),
    }
}

const COMPRESSION: &str = "[sites.compression]\nencodings = [\"zstd\", \"br\", \"gzip\"]\n\
                           types = [\"text/*\", \"application/json\"]\nmin_bytes = 1000\n";

fn config(env: &Env, origin: u16, admin_port: u16, compression: &str) -> Config {
    Config::new()
        .raw(&admin::section(env, admin_port))
        .access_log("access.log")
        .upstream("origin", &[origin])
        .site("site", &["example.cn"])
        .raw(compression)
        .proxy("/", "origin")
}

/// An origin, and the proxy's directory with a compressing site in front of it: the env, the
/// root's PEM path, the origin's and the admin listener's ports.
async fn setup() -> (Env, String, u16, u16) {
    let origin = origin().await;
    let (env, _) = Env::with_site(&["example.cn"]);
    let root = env.path("root.pem").display().to_string();
    let admin_port = free_port();
    env.write_config("", config(&env, origin, admin_port, COMPRESSION));
    (env, root, origin, admin_port)
}

/// `got` came in `coding`, decoded to the origin's page, with `Vary: Accept-Encoding` and no
/// length.
fn assert_coded(got: &Got, coding: &str, what: &str) {
    let encoding = got.field("content-encoding");
    assert_eq!(encoding.as_deref(), Some(coding), "{what}");
    assert_eq!(got.body, page(), "{what}: decodes to the origin's bytes");
    let vary = got.field("vary");
    assert_eq!(vary.as_deref(), Some("accept-encoding"), "{what}");
    assert_eq!(got.field("content-length"), None, "{what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compresses_by_preference_and_curl_decodes_it_on_both_engines() {
    let (env, root, _, _) = setup().await;
    let _running = env.start();
    let cases = [
        ("zstd, br, gzip", "zstd"),
        ("gzip;q=1, br;q=0.5", "gzip"),
        ("br", "br"),
        ("gzip;q=0.5, br;q=0.5, zstd;q=0.1", "br"),
    ];
    for http in ["1.1", "2"] {
        for path in ["/page", "/chunked", "/close", "/json"] {
            for (accept, coding) in cases {
                let got = curl(&env, &root, http, path, Some(accept), &[]).await;
                let what = format!("HTTP/{http} {path} {accept}:\n{}", got.head);
                assert_coded(&got, coding, &what);
                if path != "/json" {
                    assert_eq!(got.field("etag").as_deref(), Some("W/\"v1\""), "{what}");
                    assert_eq!(got.field("accept-ranges"), None, "{what}");
                }
            }
        }
    }
    let plain = curl(&env, &root, "1.1", "/page", None, &[]).await;
    assert_eq!(plain.field("content-encoding"), None, "{}", plain.head);
    assert_eq!(plain.field("vary").as_deref(), Some("accept-encoding"));
    assert_eq!(
        plain.field("content-length"),
        Some(page().len().to_string())
    );
    assert_eq!(plain.body, page());
    // HTTP/1.0 would get the compressed body delimited by the close, where a body the backend
    // breaks off looks whole: it gets the origin's bytes with their length (as nginx does).
    let old = curl(&env, &root, "1.0", "/page", Some("gzip"), &[]).await;
    assert_eq!(old.field("content-encoding"), None, "{}", old.head);
    assert_eq!(old.field("content-length"), Some(page().len().to_string()));
    assert_eq!(old.body, page());
    for http in ["1.1", "2"] {
        for (path, extra) in [
            ("/page", &["-H", "Range: bytes=0-9"][..]),
            ("/page", &["-I"][..]),
            ("/encoded", &[][..]),
            ("/no-transform", &[][..]),
            ("/png", &[][..]),
            ("/small", &[][..]),
            ("/empty", &[][..]),
        ] {
            let mut got = curl(&env, &root, http, path, None, extra).await;
            if path == "/encoded" {
                // curl would try to decode the origin's fake gzip: read it raw.
                got = curl(
                    &env,
                    &root,
                    http,
                    path,
                    None,
                    &["-H", "Accept-Encoding: zstd"],
                )
                .await;
                assert_eq!(got.field("content-encoding").as_deref(), Some("gzip"));
                continue;
            }
            let got2 = curl(&env, &root, http, path, Some("gzip"), extra).await;
            let what = format!("HTTP/{http} {path} {extra:?}:\n{}", got2.head);
            assert_eq!(got2.field("content-encoding"), None, "{what}");
            if extra == ["-I"] {
                let length = page().len().to_string();
                assert_eq!(got2.field("content-length"), Some(length), "{what}");
            } else {
                assert_eq!(got2.body, got.body, "{what}: as the origin sent it");
            }
        }
    }
    let log = eventually(Duration::from_secs(10), || async {
        let text = std::fs::read_to_string(env.path("access.log")).unwrap_or_default();
        text.contains("skipped:small").then_some(text)
    })
    .await
    .expect("the access log names the outcomes");
    for outcome in [
        "\"compression\":\"zstd\"",
        "\"compression\":\"br\"",
        "\"compression\":\"gzip\"",
        "\"compression\":\"skipped:range\"",
        "\"compression\":\"skipped:head\"",
        "\"compression\":\"skipped:encoded\"",
        "\"compression\":\"skipped:no-transform\"",
        "\"compression\":\"skipped:type\"",
        "\"compression\":\"skipped:not-accepted\"",
        "\"compression\":\"skipped:status\"",
        "\"compression\":\"skipped:http/1.0\"",
    ] {
        let seen: Vec<&str> = log.split("\"compression\":").skip(1).collect();
        assert!(log.contains(outcome), "{outcome} among {seen:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_and_status_show_it_and_a_reload_turns_it_off() {
    let (env, root, origin, admin_port) = setup().await;
    let (ok, out) = env.check();
    assert!(ok, "{out}");
    assert!(
        out.contains("site \"site\": compression zstd, br, gzip for text/*, application/json from 1000 bytes"),
        "{out}"
    );
    let _running = env.start();
    let status = admin::get(admin_port, "/status").await.text();
    assert!(status.contains("zstd, br, gzip for text/*"), "{status}");
    let got = curl(&env, &root, "1.1", "/page", Some("gzip"), &[]).await;
    assert_eq!(got.field("content-encoding").as_deref(), Some("gzip"));
    env.write_config("", config(&env, origin, admin_port, ""));
    let (code, answer) = admin::reload(admin_port).await;
    assert_eq!(code, 200, "{answer}");
    let got = curl(&env, &root, "1.1", "/page", Some("gzip"), &[]).await;
    assert_eq!(got.field("content-encoding"), None, "{}", got.head);
    assert_eq!(got.field("vary"), None, "{}", got.head);
    assert_eq!(got.body, page());
    let bad = "[sites.compression]\nencodings = [\"deflate\"]\nzstd_level = 40\n";
    env.write_config("", config(&env, origin, admin_port, bad));
    let (ok, out) = env.check();
    assert!(!ok);
    assert!(
        out.contains("site \"site\": compression.encodings")
            && out.contains("\"deflate\" is not a coding"),
        "{out}"
    );
    assert!(
        out.contains("compression.zstd_level") && out.contains("use 1 to 19"),
        "{out}"
    );
}

/// A proxy whose compressing site (every `application/*` type listed, so that only the gRPC
/// rule keeps gRPC as it is) sends `/grpc/...` to an h2c gRPC backend and the rest to an h2c
/// origin of pages.
fn h2_config(pages: u16, grpc: u16) -> Config {
    Config::new()
        .access_log("access.log")
        .upstream("pages", &[pages])
        .keys("http2 = true")
        .upstream("grpc", &[grpc])
        .keys("http2 = true")
        .site("site", &["example.cn"])
        .raw(
            "[sites.compression]\nencodings = [\"zstd\", \"br\", \"gzip\"]\n\
             types = [\"text/*\", \"application/*\"]\nmin_bytes = 1000\n",
        )
        .proxy("/grpc/", "grpc")
        .keys("strip_prefix = true")
        .proxy("/", "pages")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2c_backends_are_compressed_as_http1_backends_are() {
    let pages = H2Pages::start(page()).await;
    let grpc = GrpcBackend::start(None).await;
    let (env, root) = Env::with_site(&["example.cn"]);
    env.write_config("", h2_config(pages.port, grpc.port));
    let running = env.start();
    let ca = env.path("root.pem").display().to_string();
    for http in ["1.1", "2"] {
        for path in ["/page", "/stream"] {
            for (accept, coding) in [("zstd, br, gzip", "zstd"), ("br", "br"), ("gzip", "gzip")] {
                let got = curl(&env, &ca, http, path, Some(accept), &[]).await;
                let what = format!("HTTP/{http} {path} {accept}:\n{}", got.head);
                assert_coded(&got, coding, &what);
                assert_eq!(got.field("accept-ranges"), None, "{what}");
                assert_eq!(got.field("etag").as_deref(), Some("W/\"v1\""), "{what}");
                if path == "/stream" {
                    assert_eq!(got.field("x-checksum").as_deref(), Some("done"), "{what}");
                }
            }
        }
        let range = curl(
            &env,
            &ca,
            http,
            "/page",
            Some("gzip"),
            &["-H", "Range: bytes=0-9"],
        );
        let range = range.await;
        assert_eq!(range.field("content-encoding"), None, "{}", range.head);
        assert_eq!(range.body, page()[..10], "{}", range.head);
        let kept = curl(&env, &ca, http, "/no-transform", Some("gzip"), &[]).await;
        assert_eq!(kept.field("content-encoding"), None, "{}", kept.head);
        assert_eq!(kept.field("content-length"), Some(page().len().to_string()));
        assert_eq!(kept.body, page());
    }
    // gRPC asks for gzip and lists an `application/*` type; its call still goes as it is.
    let client = h2_connect(&[&root.pem], env.https, "example.cn")
        .await
        .expect("h2 connection");
    let (status, coding, body, trailers) = gzip_unary(&client, "/grpc/echo.Echo/Unary").await;
    assert_eq!(status, 200, "{}", running.log());
    assert_eq!(coding, None);
    assert_eq!(body, [&b"reply:"[..], &[b'a'; 4000]].concat());
    assert_eq!(
        trailers.get("grpc-status").map(|v| v.as_bytes()),
        Some(&b"0"[..])
    );
    let post = "POST /grpc/echo.Echo/Unary HTTP/1.1\r\nHost: example.cn\r\n\
        Content-Type: application/grpc\r\nAccept-Encoding: gzip\r\nTE: trailers\r\n\
        Connection: TE, close\r\nContent-Length: 3\r\n\r\nabc";
    let mut tcp = tokio::net::TcpStream::connect(("127.0.0.1", env.http))
        .await
        .expect("connect");
    tcp.write_all(post.as_bytes()).await.expect("write");
    let mut raw = Vec::new();
    tcp.read_to_end(&mut raw).await.expect("read");
    let raw = String::from_utf8_lossy(&raw).to_ascii_lowercase();
    assert!(raw.starts_with("http/1.1 200 "), "{raw}");
    assert!(!raw.contains("content-encoding"), "{raw}");
    assert!(raw.contains("reply:abc"), "{raw}");
    assert!(
        raw.ends_with("0\r\ngrpc-status: 0\r\ngrpc-message: ok\r\n\r\n"),
        "{raw}"
    );
    let log = eventually(Duration::from_secs(10), || async {
        let text = std::fs::read_to_string(env.path("access.log")).unwrap_or_default();
        text.contains("skipped:grpc").then_some(text)
    })
    .await
    .expect("the access log names the outcomes");
    for outcome in [
        "zstd",
        "br",
        "gzip",
        "skipped:range",
        "skipped:no-transform",
    ] {
        let seen: Vec<&str> = log.split("\"compression\":").skip(1).collect();
        let field = format!("\"compression\":\"{outcome}\"");
        assert!(log.contains(&field), "{outcome} among {seen:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_h2c_backend_s_event_stream_is_compressed_as_it_is_written() {
    let pages = H2Pages::start(page()).await;
    let (env, root) = Env::with_site(&["example.cn"]);
    env.write_config("", h2_config(pages.port, pages.port));
    let _running = env.start();
    let held = "the first event arrives while the backend holds the second";
    let both = &b"data: one\n\ndata: two\n\n"[..];
    // HTTP/2: each event comes out of the encoder with the DATA frame that brought it.
    let client = h2_connect(&[&root.pem], env.https, "example.cn").await;
    let mut client = client.expect("h2").ready().await.expect("ready");
    let get = http::Request::get("https://example.cn/events").header("accept-encoding", "gzip");
    let (response, _) = client
        .send_request(get.body(()).expect("get"), true)
        .expect("send");
    let (head, mut body) = response.await.expect("response").into_parts();
    assert_eq!(head.headers.get("content-encoding").expect("coded"), "gzip");
    let mut gz = GzDecoder::new(Vec::new());
    let first = async {
        while !gz.get_ref().ends_with(b"data: one\n\n") {
            let data = body.data().await.expect("more").expect("data");
            let _ = body.flow_control().release_capacity(data.len());
            gz.write_all(&data).and_then(|_| gz.flush()).expect("gzip");
        }
    };
    tokio::time::timeout(Duration::from_secs(30), first)
        .await
        .expect(held);
    pages.release();
    while let Some(data) = body.data().await {
        gz.write_all(&data.expect("data")).expect("gzip");
    }
    assert_eq!(gz.finish().expect("a whole gzip stream"), both);
    // HTTP/1.1: each event as a chunk of its own.
    let mut tcp = tokio::net::TcpStream::connect(("127.0.0.1", env.http))
        .await
        .expect("tcp");
    let get = "GET /events HTTP/1.1\r\nHost: example.cn\r\nAccept-Encoding: gzip\r\n\
               Connection: close\r\n\r\n";
    tcp.write_all(get.as_bytes()).await.expect("write");
    let (mut buf, mut gz) = (Vec::new(), GzDecoder::new(Vec::new()));
    let first = async {
        let end = loop {
            tcp.read_buf(&mut buf).await.expect("read");
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
        };
        let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
        buf.drain(..end);
        feed_chunks(&mut buf, &mut gz);
        while !gz.get_ref().ends_with(b"data: one\n\n") {
            tcp.read_buf(&mut buf).await.expect("read");
            feed_chunks(&mut buf, &mut gz);
        }
        head
    };
    let head = tokio::time::timeout(Duration::from_secs(30), first)
        .await
        .expect(held);
    assert!(head.contains("content-encoding: gzip\r\n"), "{head}");
    assert!(head.contains("transfer-encoding: chunked\r\n"), "{head}");
    pages.release();
    tcp.read_to_end(&mut buf).await.expect("read");
    feed_chunks(&mut buf, &mut gz);
    assert_eq!(buf, b"0\r\n\r\n", "the last chunk ends it");
    assert_eq!(gz.finish().expect("a whole gzip stream"), both);
}
