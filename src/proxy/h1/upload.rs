//! A request body on its way from the client to the backend. What the head's read already holds
//! is staged and sent with the request head, and so is what follows while the body fits in
//! `REPLAY` (so a retry on another backend can send it again); the rest is read from the client
//! and written to the backend as it arrives, each read within
//! `policy.body_read_timeout`. Chunked framing is followed strictly and the backend gets the
//! payload in chunks menshen frames, without the client's chunk extensions or trailer fields
//! (as nginx and Envoy do: a trailer could carry a forwarding field, `X-Forwarded-For` or
//! `X-Forwarded-Client-Cert`, that menshen strips from heads); the payload counts against the
//! site's `max_body_bytes`.

use std::io;
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use h2::SendStream;
use tokio::io::AsyncReadExt;

use super::request::BodyFraming;
use super::write_out;
use crate::proxy::conn::ClientConn;
use crate::proxy::http1::{push_body, BadFraming, Body, Framing};
use crate::proxy::http2::send_data;
use crate::proxy::timed::within;
use crate::route::upstream_conn::UpstreamConn;

/// Body bytes read from the client per read.
const READ: usize = 16 * 1024;

/// Body bytes kept for another attempt: a body this long at most (as the backend gets it) is
/// sent again whole when an attempt fails and the route's retry policy allows another; a
/// longer one, once past this, cannot be retried (Envoy's request buffer limit is 1 MiB by
/// default, nginx buffers whole bodies; 64 KiB keeps API calls and forms retryable at a bounded
/// cost per request in flight).
const REPLAY: usize = 64 * 1024;

/// Why a request body did not reach the backend.
#[derive(Debug)]
pub(super) enum UploadError {
    /// The client was too slow (408) or went away.
    Client(io::Error),
    /// Bad chunked framing (400).
    Framing,
    /// More payload than the site's `max_body_bytes` (413).
    TooLarge,
    /// Writing to the backend failed (502, 504 on a timeout).
    Backend(io::Error),
}

impl UploadError {
    /// The status the client gets; `None` when it is gone.
    pub(super) fn status(&self) -> Option<u16> {
        match self {
            UploadError::Client(e) if e.kind() == io::ErrorKind::TimedOut => Some(408),
            UploadError::Client(_) => None,
            UploadError::Framing => Some(400),
            UploadError::TooLarge => Some(413),
            UploadError::Backend(e) => Some(super::own::io_status(e.kind())),
        }
    }
}

impl std::fmt::Display for UploadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            UploadError::Client(e) => write!(f, "reading the request body: {e}"),
            UploadError::Framing => f.write_str("bad chunked framing in the request body"),
            UploadError::TooLarge => f.write_str("request body over the site's max_body_bytes"),
            UploadError::Backend(e) => write!(f, "writing the request body: {e}"),
        }
    }
}

/// Where a request body stands.
pub(super) struct Upload {
    body: Body,
    /// Body bytes sent after the head on every attempt: what came with the head, and what
    /// followed while the whole fits in `REPLAY`.
    pub(super) staged: BytesMut,
    /// Payload bytes so far.
    pub(super) payload: u64,
    /// The site's `max_body_bytes` (`None`: no limit).
    max: Option<u64>,
    /// Say `100 Continue` before reading the body from the client.
    expect_continue: bool,
    /// Bytes beyond the staged ones went to a backend: no attempt can be made again.
    pub(super) streamed: bool,
    /// The body is chunked: re-framed for the backend (`wire` holds the next write).
    rechunk: bool,
    wire: Vec<u8>,
}

impl Upload {
    /// More payload came than the site takes.
    fn over_limit(&self) -> bool {
        self.max.is_some_and(|max| self.payload > max)
    }

    /// Takes what `input` holds of the body (the rest stays for the next request).
    pub(super) fn new(
        framing: BodyFraming,
        input: &mut BytesMut,
        max: Option<u64>,
        expect_continue: bool,
    ) -> Result<Self, UploadError> {
        let body = Body::new(match framing {
            BodyFraming::None => Framing::None,
            BodyFraming::Length(n) => Framing::Length(n),
            BodyFraming::Chunked => Framing::Chunked,
        });
        let mut upload = Upload {
            body,
            staged: BytesMut::new(),
            payload: 0,
            max,
            expect_continue,
            streamed: false,
            rechunk: framing == BodyFraming::Chunked,
            wire: Vec::new(),
        };
        let n = upload.take(input)?;
        let taken = input.split_to(n);
        upload.staged = if upload.rechunk {
            BytesMut::from(upload.wire.as_slice())
        } else {
            taken
        };
        Ok(upload)
    }

    /// How much of `buf` is body, counted against the limit. A chunked body's payload is
    /// framed anew in `wire`, with the last chunk once the body ends.
    fn take(&mut self, buf: &[u8]) -> Result<usize, UploadError> {
        let wire = &mut self.wire;
        wire.clear();
        let rechunk = self.rechunk;
        let taken = self.body.take_with(buf, |r| {
            if rechunk {
                push_body(wire, &buf[r], true);
            }
        });
        let (n, payload) = taken.map_err(|BadFraming| UploadError::Framing)?;
        if rechunk && self.body.is_done() {
            wire.extend_from_slice(b"0\r\n\r\n");
        }
        self.payload += payload as u64;
        if self.over_limit() {
            return Err(UploadError::TooLarge);
        }
        Ok(n)
    }

    /// Reads the rest of the body from the client (after `input`'s bytes, already taken) and
    /// writes it to the backend.
    pub(super) async fn send_rest(
        &mut self,
        conn: &mut ClientConn,
        input: &mut BytesMut,
        backend: &mut UpstreamConn,
        read_timeout: Duration,
        write_timeout: Option<Duration>,
        send_timeout: Option<Duration>,
    ) -> Result<(), UploadError> {
        if self.body.is_done() {
            return Ok(());
        }
        self.continue_if_asked(conn, send_timeout).await?;
        while !self.body.is_done() {
            read_more(conn, input, read_timeout).await?;
            let n = self.take(input)?;
            let bytes = if self.rechunk {
                &self.wire[..]
            } else {
                &input[..n]
            };
            // Kept for another attempt while the whole body fits; past that it streams.
            if !self.streamed && self.staged.len() + bytes.len() <= REPLAY {
                self.staged.extend_from_slice(bytes);
            } else {
                self.streamed = true;
            }
            within(write_timeout, backend.send_all(bytes))
                .await
                .map_err(UploadError::Backend)?;
            input.advance(n);
        }
        Ok(())
    }

    /// Sends the body's payload as DATA frames on `stream` to an HTTP/2 backend: what came
    /// with the head, then the rest as it arrives from the client (chunk framing taken off),
    /// then the stream's end.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn send_h2(
        &mut self,
        framing: Framing,
        conn: &mut ClientConn,
        input: &mut BytesMut,
        stream: &mut SendStream<Bytes>,
        read_timeout: Duration,
        write_timeout: Option<Duration>,
        send_timeout: Option<Duration>,
    ) -> Result<(), UploadError> {
        let backend = |e: io::Error| UploadError::Backend(e);
        let mut payload = BytesMut::new();
        let staged = &self.staged;
        let _ = Body::new(framing).take_with(staged, |r| payload.extend_from_slice(&staged[r]));
        if !payload.is_empty() {
            send_data(stream, payload.split().freeze(), false, write_timeout)
                .await
                .map_err(backend)?;
        }
        self.continue_if_asked(conn, send_timeout).await?;
        while !self.body.is_done() {
            read_more(conn, input, read_timeout).await?;
            let taken = self
                .body
                .take_with(input, |r| payload.extend_from_slice(&input[r]));
            let (n, count) = taken.map_err(|BadFraming| UploadError::Framing)?;
            self.payload += count as u64;
            if self.over_limit() {
                return Err(UploadError::TooLarge);
            }
            self.streamed = true;
            input.advance(n);
            if !payload.is_empty() {
                send_data(stream, payload.split().freeze(), false, write_timeout)
                    .await
                    .map_err(backend)?;
            }
        }
        send_data(stream, Bytes::new(), true, write_timeout)
            .await
            .map_err(backend)
    }

    /// Answers `Expect: 100-continue` once the body is wanted and the client has not begun it.
    async fn continue_if_asked(
        &mut self,
        conn: &mut ClientConn,
        send_timeout: Option<Duration>,
    ) -> Result<(), UploadError> {
        if std::mem::take(&mut self.expect_continue) && self.staged.is_empty() {
            write_out(conn, b"HTTP/1.1 100 Continue\r\n\r\n", send_timeout)
                .await
                .map_err(UploadError::Client)?;
        }
        Ok(())
    }
}

/// Reads more of the body from the client into `input`, within `read_timeout`; the client
/// closing before the body's end is an error.
async fn read_more(
    conn: &mut ClientConn,
    input: &mut BytesMut,
    read_timeout: Duration,
) -> Result<(), UploadError> {
    input.reserve(READ);
    match within(Some(read_timeout), conn.read_buf(input)).await {
        Ok(0) => {
            let eof = io::Error::new(io::ErrorKind::UnexpectedEof, "client closed");
            Err(UploadError::Client(eof))
        }
        Ok(_) => Ok(()),
        Err(e) => Err(UploadError::Client(e)),
    }
}
