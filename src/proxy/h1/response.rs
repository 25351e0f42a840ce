//! The backend's side of the HTTP/1 loop: its response header read, checked and framed, and the
//! headers the client gets (the backend's, menshen's own answers, interim responses).

use std::io;
use std::mem::MaybeUninit;
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::AsyncReadExt;

use super::own::Persist;
use super::{within, MAX_HEADERS, UPSTREAM_BUF};
use crate::proxy::response_edits::{response_fields, HopByHop, ResponseEdits};
use crate::route::upstream_conn::UpstreamConn;
use crate::semantics::fields::{content_length, field, list_items, Field};

/// Largest response header from a backend (a bigger one is a 502).
const MAX_RESPONSE_HEAD: usize = 64 * 1024;

/// The end of the header block that starts `buf`, searching from `from`: just past the first
/// empty line (CRLF or bare LF).
pub(in crate::proxy) fn head_end(buf: &[u8], from: usize) -> Option<usize> {
    let mut i = from;
    while let Some(at) = buf.get(i..)?.iter().position(|&b| b == b'\n') {
        let nl = i + at;
        match buf.get(nl + 1) {
            Some(b'\n') => return Some(nl + 2),
            Some(b'\r') if buf.get(nl + 2) == Some(&b'\n') => return Some(nl + 3),
            _ => i = nl + 1,
        }
    }
    None
}

/// How a response body ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(in crate::proxy) enum Framing {
    None,
    Length(u64),
    Chunked,
    UntilClose,
}

/// A backend's response header, read to its end.
pub(in crate::proxy) struct ResponseHead {
    pub(in crate::proxy) status: u16,
    pub(in crate::proxy) framing: Framing,
    /// The backend keeps the connection open after this response.
    pub(in crate::proxy) keepalive: bool,
}

/// Interim (1xx) responses skipped before the final one.
pub(in crate::proxy) const MAX_INTERIM: usize = 8;
/// Fields of a response header parsed on the heap when the usual 64 are not enough.
const MAX_RESPONSE_HEADERS: usize = 256;

/// Parses the response header `head` and hands it to `f`: 64 fields on the stack, up to 256 on
/// the heap for the rare bigger header.
pub(in crate::proxy) fn with_response<T>(
    head: &[u8],
    f: impl FnOnce(&httparse::Response<'_, '_>) -> T,
) -> Result<T, String> {
    // As lenient as pingora-core's parser: a space before a field's colon, folded lines.
    let mut config = httparse::ParserConfig::default();
    config
        .allow_spaces_after_header_name_in_responses(true)
        .allow_obsolete_multiline_headers_in_responses(true);
    let mut headers = [const { MaybeUninit::uninit() }; MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut []);
    match config.parse_response_with_uninit_headers(&mut resp, head, &mut headers) {
        Ok(httparse::Status::Complete(n)) if n == head.len() => return Ok(f(&resp)),
        Err(httparse::Error::TooManyHeaders) => {}
        Ok(_) => return Err("bad response header".into()),
        Err(e) => return Err(format!("bad response header: {e}")),
    }
    let mut headers = vec![httparse::EMPTY_HEADER; MAX_RESPONSE_HEADERS];
    let mut resp = httparse::Response::new(&mut headers);
    match config.parse_response(&mut resp, head) {
        Ok(httparse::Status::Complete(n)) if n == head.len() => Ok(f(&resp)),
        Ok(_) => Err("bad response header".into()),
        Err(e) => Err(format!("bad response header: {e}")),
    }
}

/// Reads until `up` holds a whole response header (an interim 1xx one included): its length.
/// `received` is set once any byte of a response arrived. The header is parsed once, by the
/// caller (`forward`).
pub(in crate::proxy) async fn read_response_head(
    stream: &mut UpstreamConn,
    up: &mut BytesMut,
    read_timeout: Option<Duration>,
    received: &mut bool,
) -> Result<usize, (io::ErrorKind, String)> {
    let mut scanned = 0;
    loop {
        if let Some(end) = head_end(up, scanned) {
            return Ok(end);
        }
        scanned = up.len().saturating_sub(2);
        if up.len() >= MAX_RESPONSE_HEAD {
            return Err((
                io::ErrorKind::InvalidData,
                "response header too large".into(),
            ));
        }
        up.reserve(UPSTREAM_BUF);
        match within(read_timeout, stream.read_buf(up)).await {
            Ok(0) => {
                return Err((
                    io::ErrorKind::UnexpectedEof,
                    "backend closed the connection before a response".into(),
                ))
            }
            Ok(_) => *received = true,
            Err(e) => return Err((e.kind(), format!("reading the response: {e}"))),
        }
    }
}

/// The framing and keep-alive of a parsed response; `None` on a status outside 100-599 or a bad
/// or conflicting Content-Length.
pub(in crate::proxy) fn response_head(
    resp: &httparse::Response<'_, '_>,
    head_request: bool,
) -> Option<ResponseHead> {
    let status = resp.code.filter(|s| (100..600).contains(s))?;
    let mut length: Option<u64> = None;
    let mut chunked = None;
    let mut close = resp.version != Some(1);
    for h in resp.headers.iter() {
        match field(h.name) {
            Field::ContentLength => {
                let v = content_length(h.value)?;
                if length.is_some_and(|l| l != v) {
                    return None;
                }
                length = Some(v);
            }
            Field::TransferEncoding => {
                let last = list_items(h.value).last().unwrap_or(b"");
                chunked = Some(last.eq_ignore_ascii_case(b"chunked"));
            }
            Field::Connection => {
                for token in list_items(h.value) {
                    if token.eq_ignore_ascii_case(b"close") {
                        close = true;
                    } else if token.eq_ignore_ascii_case(b"keep-alive") && resp.version == Some(0) {
                        close = false;
                    }
                }
            }
            _ => {}
        }
    }
    // Both lengths: Transfer-Encoding wins (RFC 9112 6.3), and a backend that sends both is not
    // trusted with another request on this connection.
    close |= chunked.is_some() && length.is_some();
    let framing = if head_request || status == 204 || status == 304 || status < 200 {
        Framing::None
    } else {
        match (chunked, length) {
            (Some(true), _) => Framing::Chunked,
            (Some(false), _) => Framing::UntilClose,
            (None, Some(n)) => Framing::Length(n),
            (None, None) => Framing::UntilClose,
        }
    };
    Some(ResponseHead {
        status,
        framing,
        keepalive: !close && framing != Framing::UntilClose,
    })
}

/// Writes the response header an HTTP/1 client gets into `out`: `response_fields`, the
/// request id, a Date if the backend sent none, and the framing. `framing` is the backend's;
/// `rechunk`: a body the backend ends by closing goes to the client chunked, so that a backend
/// failing mid-body reaches it as a truncated body.
pub(super) fn client_response_head(
    out: &mut Vec<u8>,
    resp: &httparse::Response<'_, '_>,
    framing: Framing,
    rechunk: bool,
    edits: &ResponseEdits<'_>,
    request_id: &[u8],
    persist: Persist,
) {
    status_line(out, resp);
    let has_date = response_fields(resp, framing, edits, |name, value| {
        push_field(out, name.as_bytes(), value)
    });
    push_field(out, b"x-request-id", request_id);
    if !has_date {
        // A response forwarded without a Date gets one (RFC 9110 6.6.1).
        push_date(out);
    }
    if rechunk && framing == Framing::UntilClose {
        push_field(out, b"transfer-encoding", b"chunked");
    }
    persist.push(out);
    out.extend_from_slice(b"\r\n");
}

/// Writes the `101 Switching Protocols` the client gets: the backend's, less hop-by-hop fields
/// but for `Upgrade`, with `Connection: upgrade`.
pub(super) fn upgrade_head(out: &mut Vec<u8>, resp: &httparse::Response<'_, '_>, id: &[u8]) {
    status_line(out, resp);
    let hop = HopByHop::of_response(resp);
    for h in resp.headers.iter() {
        let f = field(h.name);
        if f == Field::Upgrade || (!hop.drops(f, h.name) && f != Field::XRequestId) {
            push_field(out, h.name.as_bytes(), h.value);
        }
    }
    push_field(out, b"connection", b"upgrade");
    push_field(out, b"x-request-id", id);
    out.extend_from_slice(b"\r\n");
}

/// Appends a Date field for now.
pub(super) fn push_date(out: &mut Vec<u8>) {
    with_date(|date| push_field(out, b"date", date.as_bytes()));
}

/// Hands `f` the HTTP date for now, formatted once a second per thread.
pub(in crate::proxy) fn with_date<R>(f: impl FnOnce(&str) -> R) -> R {
    thread_local! {
        static DATE: std::cell::RefCell<(u64, String)> = const {
            std::cell::RefCell::new((0, String::new()))
        };
    }
    let now = std::time::SystemTime::now();
    let secs = now
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    DATE.with(|date| {
        let mut date = date.borrow_mut();
        if date.0 != secs || date.1.is_empty() {
            *date = (secs, httpdate::fmt_http_date(now));
        }
        f(&date.1)
    })
}

/// Writes the status line of `resp` (HTTP/1.1, the backend's reason or the standard one).
fn status_line(out: &mut Vec<u8>, resp: &httparse::Response<'_, '_>) {
    status_line_for(out, resp.code.unwrap_or(502), resp.reason);
}

/// Writes an HTTP/1.1 status line: `reason`, or the standard one.
pub(super) fn status_line_for(out: &mut Vec<u8>, status: u16, reason: Option<&str>) {
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(&itoa3(status));
    out.push(b' ');
    let reason = reason
        .filter(|r| !r.is_empty())
        .or_else(|| http::StatusCode::from_u16(status).ok()?.canonical_reason())
        .unwrap_or("");
    out.extend_from_slice(reason.as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// Writes an interim response for the client: the backend's, less its connection's fields.
pub(super) fn interim_head(out: &mut Vec<u8>, resp: &httparse::Response<'_, '_>) {
    status_line(out, resp);
    let hop = HopByHop::of_response(resp);
    for h in resp.headers.iter() {
        if !hop.drops(field(h.name), h.name) {
            push_field(out, h.name.as_bytes(), h.value);
        }
    }
    out.extend_from_slice(b"\r\n");
}

/// Writes one header field; a value folded over lines (obs-fold, which the response parser
/// accepts as pingora-core's does) goes out on one line, its line breaks as spaces.
pub(in crate::proxy) fn push_field(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    if value.iter().any(|&b| b == b'\r' || b == b'\n') {
        out.extend(
            value
                .iter()
                .map(|&b| if b == b'\r' || b == b'\n' { b' ' } else { b }),
        );
    } else {
        out.extend_from_slice(value);
    }
    out.extend_from_slice(b"\r\n");
}

/// A status code as its three digits.
fn itoa3(status: u16) -> [u8; 3] {
    let s = status.min(999);
    [
        b'0' + (s / 100) as u8,
        b'0' + (s / 10 % 10) as u8,
        b'0' + (s % 10) as u8,
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn head_end_finds_the_empty_line() {
        assert_eq!(
            head_end(b"GET / HTTP/1.1\r\nHost: a\r\n\r\nrest", 0),
            Some(27)
        );
        assert_eq!(head_end(b"GET / HTTP/1.1\nHost: a\n\nrest", 0), Some(24));
        assert_eq!(head_end(b"GET / HTTP/1.1\r\nHost: a\r\n", 0), None);
        assert_eq!(head_end(b"GET / HTTP/1.1\r\nHost: a\r\n\r", 0), None);
    }

    #[test]
    fn response_lengths_are_digits_and_agree() {
        let head = |raw: &[u8], head_request| {
            with_response(raw, |r| response_head(r, head_request)).expect("parses")
        };
        let both = head(
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
            false,
        )
        .expect("framed");
        assert_eq!(both.framing, Framing::Chunked);
        assert!(
            !both.keepalive,
            "a backend sending both lengths is not reused"
        );
        assert!(head(
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
            false
        )
        .is_none());
        let head_resp =
            head(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", true).expect("framed");
        assert_eq!(head_resp.framing, Framing::None);
        assert!(head_resp.keepalive);
        let old = head(b"HTTP/1.0 200 OK\r\nContent-Length: 5\r\n\r\n", false).expect("framed");
        assert!(!old.keepalive, "HTTP/1.0 without keep-alive closes");
        let mut many = b"HTTP/1.1 200 OK\r\n".to_vec();
        for i in 0..100 {
            many.extend_from_slice(format!("Set-Cookie: c{i}=1\r\n").as_bytes());
        }
        many.extend_from_slice(b"Content-Length: 0\r\n\r\n");
        assert_eq!(
            head(&many, false).expect("framed").framing,
            Framing::Length(0)
        );
    }

    #[test]
    fn statuses_outside_100_to_599_are_refused() {
        for (raw, ok) in [
            (&b"HTTP/1.1 099 Odd\r\nContent-Length: 2\r\n\r\n"[..], false),
            (b"HTTP/1.1 600 Odd\r\nContent-Length: 2\r\n\r\n", false),
            (b"HTTP/1.1 599 Odd\r\nContent-Length: 2\r\n\r\n", true),
        ] {
            let head = with_response(raw, |r| response_head(r, false)).expect("parses");
            assert_eq!(head.is_some(), ok, "{}", String::from_utf8_lossy(raw));
        }
    }

    #[test]
    fn lenient_backend_fields_go_out_clean() {
        let raw = b"HTTP/1.1 200 OK\r\nX-Folded: a\r\n b\r\nContent-Type : text/plain\r\nConnection: x-secret\r\nX-Secret: 1\r\nServer: gunicorn\r\nAlt-Svc: h3=\":443\"\r\nContent-Length: 0\r\n\r\n";
        let server = http::HeaderValue::from_static("menshen");
        let edits = ResponseEdits {
            remove: &[],
            add: &[],
            hsts: None,
            server: Some(&server),
            alt_svc: None,
        };
        let mut out = Vec::new();
        with_response(raw, |r| {
            let persist = Persist::KeepAlive { http10: false };
            client_response_head(
                &mut out,
                r,
                Framing::Length(0),
                false,
                &edits,
                b"id",
                persist,
            )
        })
        .expect("lenient fields parse");
        let text = String::from_utf8(out).expect("text");
        assert!(text.contains("server: menshen\r\n"), "{text}");
        assert!(!text.contains("gunicorn"), "{text}");
        assert!(!text.to_ascii_lowercase().contains("alt-svc"), "{text}");
        assert!(text.contains("X-Folded: a   b\r\n"), "{text}");
        assert!(text.contains("Content-Type: text/plain\r\n"), "{text}");
        assert!(!text.to_ascii_lowercase().contains("x-secret"), "{text}");
        assert!(text.contains("Content-Length: 0\r\n"), "{text}");
    }
}
