//! Response compression as clients see it: curl (built with zlib, brotli and zstd) decodes what
//! menshen sends over HTTP/1.1 and HTTP/2 back to the origin's exact bytes, for each coding,
//! for bodies framed by length, chunks or close; the cases that must go as they are (ranges,
//! HEAD, encoded bodies, no-transform, other types, small bodies, clients that accept none)
//! do; the access log names each outcome; `menshen check` and `/status` show the setting, and
//! a reload that removes it stops compression.

mod support;

use std::time::Duration;

use support::config::Config;
use support::curl::curl;
use support::pki::LeafSpec;
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
        .raw("[access_log]\npath = \"access.log\"")
        .upstream("origin", &[origin])
        .site("site", &["example.cn"])
        .raw(compression)
        .proxy("/", "origin")
}

/// An origin, and the proxy's directory with a compressing site in front of it: the env, the
/// root's PEM path, the origin's and the admin listener's ports.
async fn setup() -> (Env, String, u16, u16) {
    let origin = origin().await;
    let (env, root) = Env::with_approved_root("Approved Root");
    env.put_cert("site", &root.issue(&LeafSpec::new(&["example.cn"], 1)), &[]);
    env.write("root.pem", &root.pem);
    let root = env.path("root.pem").display().to_string();
    let admin_port = free_port();
    env.write_config("", config(&env, origin, admin_port, COMPRESSION));
    (env, root, origin, admin_port)
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
                assert_eq!(
                    got.field("content-encoding").as_deref(),
                    Some(coding),
                    "{what}"
                );
                assert_eq!(got.body, page(), "{what}: decodes to the origin's bytes");
                assert_eq!(
                    got.field("vary").as_deref(),
                    Some("accept-encoding"),
                    "{what}"
                );
                assert_eq!(got.field("content-length"), None, "{what}");
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
