//! A backend's HTTP/1 response head: read to its end within the size limits, parsed
//! (leniently where backends are sloppy, never where framing is at stake), its status and
//! framing checked.

use std::io;
use std::mem::MaybeUninit;
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::AsyncReadExt;

use super::{head_end, MAX_HEADERS, UPSTREAM_BUF};
use crate::proxy::timed::within;
use crate::route::upstream_conn::UpstreamConn;
use crate::semantics::fields::{content_length, field, list_items, Field};

/// Largest response header from a backend (a bigger one is a 502).
const MAX_RESPONSE_HEAD: usize = 64 * 1024;

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
    // A 204 that claims a body may send one: the bytes must not wait on a pooled connection
    // for the next request's response.
    close |= status == 204 && (chunked.is_some() || length.is_some_and(|n| n > 0));
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
