//! HTTP/1 on the wire, for either side of the proxy: where a head ends, how a field, a status
//! line and a Date are written, a backend's response head (`response`) and how a body is
//! framed (`body`). The HTTP/1 engine speaks it to clients and backends, the HTTP/2 engine to
//! HTTP/1 backends.

mod body;
mod response;

pub(in crate::proxy) use self::body::{fuzz_chunked, push_body, BadFraming, Body};
pub(in crate::proxy) use self::response::{
    read_response_head, response_head, with_response, Framing, ResponseHead, MAX_INTERIM,
};

/// Headers of a request or response parsed on the stack; a request with more gets 431.
pub(in crate::proxy) const MAX_HEADERS: usize = 100;
/// Backend read buffer: the body is copied through it.
pub(in crate::proxy) const UPSTREAM_BUF: usize = 32 * 1024;

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

/// Appends a Date field for now.
pub(in crate::proxy) fn push_date(out: &mut Vec<u8>) {
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

/// Writes an HTTP/1.1 status line: `reason`, or the standard one.
pub(in crate::proxy) fn status_line_for(out: &mut Vec<u8>, status: u16, reason: Option<&str>) {
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

/// Writes one header field; a value folded over lines (obs-fold, which the response parser
/// accepts as pingora-core's does) goes out on one line, its line breaks as spaces.
pub(in crate::proxy) fn push_field(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    push_field_parts(out, name, &[value]);
}

/// [`push_field`] for a value given in parts, written one after the other.
pub(in crate::proxy) fn push_field_parts(out: &mut Vec<u8>, name: &[u8], parts: &[&[u8]]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    for value in parts {
        if value.iter().any(|&b| b == b'\r' || b == b'\n') {
            out.extend(
                value
                    .iter()
                    .map(|&b| if b == b'\r' || b == b'\n' { b' ' } else { b }),
            );
        } else {
            out.extend_from_slice(value);
        }
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
}
