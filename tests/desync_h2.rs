//! The desync corpus for HTTP/2 clients of HTTP/1 backends: requests an HTTP/2 library would
//! not send (connection-specific fields, line breaks and NULs in values, upper-case names,
//! lengths that disagree with the DATA, pseudo-fields out of place), written as raw frames,
//! and bodies that look like a second request. Each is refused before a backend sees it, or
//! reaches the backend as exactly one request.

mod support;

use std::time::Duration;

use support::h1::{launch, Backend};
use support::http::root_store;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::rustls::pki_types::ServerName;
use tokio_rustls::rustls::ClientConfig;
use tokio_rustls::TlsConnector;

const DATA: u8 = 0;
const HEADERS: u8 = 1;
const RST_STREAM: u8 = 3;
const SETTINGS: u8 = 4;
const GOAWAY: u8 = 7;
const END_STREAM: u8 = 1;
const END_HEADERS: u8 = 4;

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut out = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
    out.extend_from_slice(&stream.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// An HPACK integer with a 7-bit prefix (RFC 7541 5.1), first byte's high bit clear.
fn hpack_int(out: &mut Vec<u8>, n: usize) {
    if n < 127 {
        out.push(n as u8);
        return;
    }
    out.push(127);
    let mut n = n - 127;
    while n >= 128 {
        out.push((n % 128) as u8 | 0x80);
        n /= 128;
    }
    out.push(n as u8);
}

/// A header block of literal fields without indexing, new names, no Huffman: any bytes go.
fn block(fields: &[(&[u8], &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, value) in fields {
        out.push(0);
        hpack_int(&mut out, name.len());
        out.extend_from_slice(name);
        hpack_int(&mut out, value.len());
        out.extend_from_slice(value);
    }
    out
}

/// Header fields as raw bytes.
type Fields<'a> = Vec<(&'a [u8], &'a [u8])>;

/// One case: what it is, its fields, its DATA frames, and how many requests the backend may
/// see of it (0: refused; 1: forwarded once).
type Case<'a> = (&'a str, Fields<'a>, Vec<&'a [u8]>, usize);

/// How the server ended stream 1.
#[derive(Debug, PartialEq)]
enum End {
    /// A response head; its status where it is one of HPACK's static ones.
    Answered(Option<u16>),
    Reset,
    GoAway,
    Nothing,
}

async fn read_frame<S: AsyncRead + Unpin>(s: &mut S) -> Option<(u8, u8, u32, Vec<u8>)> {
    let mut head = [0u8; 9];
    s.read_exact(&mut head).await.ok()?;
    let len = (usize::from(head[0]) << 16) | (usize::from(head[1]) << 8) | usize::from(head[2]);
    let stream = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
    let mut payload = vec![0u8; len];
    s.read_exact(&mut payload).await.ok()?;
    Some((head[3], head[4], stream, payload))
}

/// Sends one request on stream 1 (`fields`, then `data` frames, the last one ending the
/// stream; with no data the HEADERS end it) and reads until the server answers or ends it.
async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
    mut s: S,
    fields: &[(&[u8], &[u8])],
    data: &[&[u8]],
) -> End {
    let mut out = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    out.extend(frame(SETTINGS, 0, 0, &[]));
    let flags = END_HEADERS | if data.is_empty() { END_STREAM } else { 0 };
    out.extend(frame(HEADERS, flags, 1, &block(fields)));
    for (i, chunk) in data.iter().enumerate() {
        let last = i + 1 == data.len();
        out.extend(frame(DATA, if last { END_STREAM } else { 0 }, 1, chunk));
    }
    s.write_all(&out).await.expect("write");
    let read = async {
        while let Some((kind, flags, stream, payload)) = read_frame(&mut s).await {
            match (kind, stream) {
                (SETTINGS, 0) if flags & 1 == 0 => {
                    let _ = s.write_all(&frame(SETTINGS, 1, 0, &[])).await;
                }
                (HEADERS, 1) => {
                    let status = match payload.first() {
                        Some(0x88) => Some(200),
                        Some(0x89) => Some(204),
                        Some(0x8b) => Some(304),
                        Some(0x8c) => Some(400),
                        Some(0x8d) => Some(404),
                        Some(0x8e) => Some(500),
                        _ => None,
                    };
                    return End::Answered(status);
                }
                (RST_STREAM, 1) => return End::Reset,
                (GOAWAY, 0) => return End::GoAway,
                _ => {}
            }
        }
        End::Nothing
    };
    tokio::time::timeout(Duration::from_secs(10), read)
        .await
        .unwrap_or(End::Nothing)
}

/// The pseudo-fields of a request for `path`.
fn request<'a>(method: &'a [u8], path: &'a [u8]) -> Vec<(&'a [u8], &'a [u8])> {
    vec![
        (b":method", method),
        (b":scheme", b"https"),
        (b":path", path),
        (b":authority", b"example.cn"),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_http2_requests_reach_an_http1_backend_once_or_not_at_all() {
    let backend = Backend::start().await;
    let (env, running, root) = launch(&backend, "").await;
    let mut config = ClientConfig::builder_with_provider(std::sync::Arc::new(
        tokio_rustls::rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_root_certificates(root_store(&[&root.pem]))
    .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec()];
    let tls = TlsConnector::from(std::sync::Arc::new(config));

    let smuggled: &[u8] = b"0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: example.cn\r\n\r\n";
    // Its length, as a field value.
    const SMUGGLED_LEN: &[u8] = b"49";
    assert_eq!(smuggled.len(), 49);
    let with = |mut base: Vec<(&'static [u8], &'static [u8])>,
                extra: &[(&'static [u8], &'static [u8])]| {
        base.extend_from_slice(extra);
        base
    };
    let get = || request(b"GET", b"/h2");
    let post = || request(b"POST", b"/h2");
    let cases: Vec<Case<'_>> = vec![
        ("a plain GET", get(), vec![], 1),
        (
            "transfer-encoding",
            with(post(), &[(b"transfer-encoding", b"chunked")]),
            vec![b"5\r\nhello\r\n0\r\n\r\n"],
            0,
        ),
        (
            "connection",
            with(get(), &[(b"connection", b"keep-alive")]),
            vec![],
            0,
        ),
        (
            "keep-alive",
            with(get(), &[(b"keep-alive", b"timeout=5")]),
            vec![],
            0,
        ),
        (
            "te other than trailers",
            with(get(), &[(b"te", b"gzip")]),
            vec![],
            0,
        ),
        (
            "upgrade",
            with(get(), &[(b"upgrade", b"websocket")]),
            vec![],
            0,
        ),
        (
            "a line break in a value",
            with(get(), &[(b"x-a", b"a\r\nx-injected: 1")]),
            vec![],
            0,
        ),
        (
            "a bare LF in a value",
            with(get(), &[(b"x-a", b"a\nx-injected: 1")]),
            vec![],
            0,
        ),
        (
            "a NUL in a value",
            with(get(), &[(b"x-a", b"a\0b")]),
            vec![],
            0,
        ),
        (
            "an upper-case name",
            with(get(), &[(b"X-Upper", b"1")]),
            vec![],
            0,
        ),
        (
            "a colon in a name",
            with(get(), &[(b"x:a", b"1")]),
            vec![],
            0,
        ),
        (
            "a pseudo-field after a field",
            {
                let mut f = vec![(&b":method"[..], &b"GET"[..]), (b"x-a", b"1")];
                f.extend_from_slice(&[
                    (b":scheme", b"https"),
                    (b":path", b"/h2"),
                    (b":authority", b"example.cn"),
                ]);
                f
            },
            vec![],
            0,
        ),
        (
            "an unknown pseudo-field",
            with(get(), &[(b":foo", b"1")]),
            vec![],
            0,
        ),
        ("a space in :path", request(b"GET", b"/a b"), vec![], 0),
        (
            "a Content-Length over the DATA",
            with(post(), &[(b"content-length", b"5")]),
            vec![b"hi"],
            0,
        ),
        (
            "DATA over the Content-Length",
            with(post(), &[(b"content-length", b"5")]),
            vec![b"hello world"],
            0,
        ),
        (
            "two Content-Lengths",
            with(
                post(),
                &[(b"content-length", b"5"), (b"content-length", b"6")],
            ),
            vec![b"hello"],
            0,
        ),
        (
            "a body that looks like a request, with a length",
            with(post(), &[(b"content-length", SMUGGLED_LEN)]),
            vec![smuggled],
            1,
        ),
        (
            "a body that looks like a request, without a length",
            post(),
            vec![smuggled],
            1,
        ),
        (
            "a body that looks like a request, in two frames",
            post(),
            vec![&smuggled[..7], &smuggled[7..]],
            1,
        ),
    ];
    let mut failures = Vec::new();
    for (what, fields, data, want) in cases {
        let before = backend.seen.lock().expect("lock").len();
        let tcp = TcpStream::connect(("127.0.0.1", env.https))
            .await
            .expect("tcp");
        let name = ServerName::try_from("example.cn").expect("name");
        let stream = tls.connect(name, tcp).await.expect("handshake");
        let end = exchange(stream, &fields, &data).await;
        let seen = backend.seen_since(before, want).await;
        let injected = seen.iter().any(|s| {
            s.to_ascii_lowercase().contains("\r\nx-injected")
                || s.contains("/smuggled HTTP/1.1\r\nHost")
        });
        let smuggled_as_request = seen.iter().any(|s| s.starts_with("GET /smuggled"));
        let problem = if seen.len() != want {
            Some(format!("the backend saw {} requests: {seen:?}", seen.len()))
        } else if smuggled_as_request || (injected && want == 0) {
            Some(format!(
                "a second request or field reached the backend: {seen:?}"
            ))
        } else if want == 0 && matches!(end, End::Answered(Some(200))) {
            Some("answered 200".to_owned())
        } else if want == 1 && end != End::Answered(Some(200)) {
            Some(format!("ended {end:?}"))
        } else if end == End::Nothing {
            Some("no answer, no reset".to_owned())
        } else {
            None
        };
        if let Some(problem) = problem {
            failures.push(format!("{what}: {problem}"));
        }
    }
    assert!(
        failures.is_empty(),
        "{}\n{}",
        failures.join("\n"),
        running.log()
    );
}
