//! An HTTP/2 backend's response on its way to an HTTP/1 client (`to_h2` got its head): HTTP/1.1
//! with the backend's length, or chunked with its trailers as the trailer section
//! (close-delimited for an HTTP/1.0 client); compressed where the site compresses
//! (`proxy::compress`, as for an HTTP/1 backend: chunked, each DATA frame's bytes flushed out as
//! they come). A stream the backend breaks off leaves the client's framing unfinished.

use bytes::Bytes;
use h2::RecvStream;
use http::header;

use super::request::Request;
use super::response::Persist;
use super::{send_timeout, write_out, Outcome};
use crate::proxy::conn::{ClientConn, ConnFacts};
use crate::proxy::ctx::Ctx;
use crate::proxy::encoder::Coded;
use crate::proxy::http1::{push_body, push_date, push_field, status_line_for, Framing};
use crate::proxy::response_edits::{edited_map, ResponseEdits};
use crate::proxy::timed::within;
use crate::semantics::coding::Decision;
use crate::semantics::fields::{content_length, field, Field};

/// An HTTP/2 backend's response on its way to an HTTP/1 client.
pub(super) struct Back<'a, 'r> {
    pub(super) request: &'a Request<'r>,
    pub(super) ctx: &'a mut Ctx,
    pub(super) facts: &'a ConnFacts,
    pub(super) head_request: bool,
    pub(super) bytes_in: u64,
}

/// The body on its way: the backend's stream, the coder, the client's framing.
struct Down {
    recv: RecvStream,
    coded: Coded,
    framing: Framing,
    sent: usize,
}

impl Back<'_, '_> {
    pub(super) async fn run(
        self,
        conn: &mut ClientConn,
        out: &mut Vec<u8>,
        response: http::Response<RecvStream>,
    ) -> Outcome {
        let (parts, recv) = response.into_parts();
        let status = parts.status.as_u16();
        let empty = recv.is_end_stream();
        let (decision, coded) = self.ctx.compress_h2(status, &parts.headers, empty);
        let (framing, persist) = self.framing(&parts, coded.compresses());
        self.write_head(out, &parts, (framing, persist), decision);
        let outcome = |bytes_out: usize, error: Option<String>| Outcome {
            status: Some(status),
            bytes_in: self.bytes_in,
            bytes_out,
            keep: error.is_none() && persist != Persist::Close,
            error,
        };
        if let Err(e) = write_out(conn, out, send_timeout(self.ctx)).await {
            return outcome(0, Some(format!("writing the response: {e}")));
        }
        if framing == Framing::None {
            return outcome(0, None);
        }
        let mut down = Down {
            recv,
            coded,
            framing,
            sent: 0,
        };
        let ended = self.body(conn, out, &mut down).await;
        outcome(down.sent, ended.err())
    }

    /// How the client's body is framed, and whether the connection stays open after it.
    fn framing(&self, parts: &http::response::Parts, compressed: bool) -> (Framing, Persist) {
        let req = self.request.req;
        let http10 = req.version == 0;
        let length = parts
            .headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| content_length(v.as_bytes()));
        let bodiless = self.head_request || matches!(parts.status.as_u16(), 204 | 304);
        let framing = match (bodiless, length, http10) {
            (true, _, _) => Framing::None,
            // A compressed body's length is known at its end only (HTTP/1.0 clients never
            // get one).
            (false, _, false) if compressed => Framing::Chunked,
            (false, Some(n), _) => Framing::Length(n),
            (false, None, false) => Framing::Chunked,
            (false, None, true) => Framing::UntilClose,
        };
        let close = req.close || self.request.draining || framing == Framing::UntilClose;
        let persist = match close {
            true => Persist::Close,
            false => Persist::KeepAlive { http10 },
        };
        (framing, persist)
    }

    /// Writes the client's head into `out`: the backend's fields with the site's edits and
    /// the compression's, the request id, a Date, the framing and the persistence.
    fn write_head(
        &self,
        out: &mut Vec<u8>,
        parts: &http::response::Parts,
        (framing, persist): (Framing, Persist),
        decision: Option<Decision>,
    ) {
        out.clear();
        status_line_for(out, parts.status.as_u16(), None);
        let edits = ResponseEdits::of(self.ctx, self.facts.tls.is_some());
        let edits = edits.compressed(decision);
        // A HEAD response keeps the length a GET would have.
        let kept = match framing {
            Framing::None => Framing::Length(0),
            other => other,
        };
        let has_date = edited_map(&parts.headers, kept, &edits, |name, value| {
            push_field(out, name.as_bytes(), value)
        });
        push_field(out, b"x-request-id", self.ctx.request_id.as_bytes());
        if !has_date {
            push_date(out);
        }
        if framing == Framing::Chunked {
            push_field(out, b"transfer-encoding", b"chunked");
        }
        persist.push(out);
        out.extend_from_slice(b"\r\n");
    }

    /// Writes the body's DATA frames (compressed where it is) as they come, each read within
    /// the route's idle timeout, then its end.
    async fn body(
        &self,
        conn: &mut ClientConn,
        out: &mut Vec<u8>,
        down: &mut Down,
    ) -> Result<(), String> {
        let send = send_timeout(self.ctx);
        let chunked = down.framing == Framing::Chunked;
        loop {
            let idle = self.ctx.idle_limit();
            let next = within(idle, async { Ok(down.recv.data().await) }).await;
            let chunk: Bytes = match next {
                Ok(Some(Ok(chunk))) => chunk,
                Ok(None) => break,
                Ok(Some(Err(e))) => return Err(format!("reading the body: {e}")),
                Err(e) => return Err(format!("reading the body: {e}")),
            };
            let _ = down.recv.flow_control().release_capacity(chunk.len());
            let data = down
                .coded
                .pass(chunk)
                .map_err(|e| format!("compressing the response: {e}"))?;
            if data.is_empty() {
                // The encoder holds it all yet.
                continue;
            }
            down.sent += data.len();
            out.clear();
            push_body(out, &data, chunked);
            write_out(conn, out, send)
                .await
                .map_err(|e| format!("writing the response: {e}"))?;
        }
        if let Framing::Length(n) = down.framing {
            if down.sent as u64 != n {
                return Err("the backend's body and length differ".into());
            }
        }
        self.end(conn, out, down).await
    }

    /// Ends a chunked body: the encoder's last bytes, the last chunk and the backend's
    /// trailers as the trailer section.
    async fn end(
        &self,
        conn: &mut ClientConn,
        out: &mut Vec<u8>,
        down: &mut Down,
    ) -> Result<(), String> {
        let trailers = match down.recv.trailers().await {
            Ok(trailers) => trailers,
            Err(e) => return Err(format!("reading the trailers: {e}")),
        };
        let last = down
            .coded
            .end()
            .map_err(|e| format!("compressing the response: {e}"))?;
        if down.framing != Framing::Chunked {
            return Ok(());
        }
        down.sent += last.len();
        out.clear();
        push_body(out, &last, true);
        out.extend_from_slice(b"0\r\n");
        // Trailer fields that describe the message (framing, routing) are not the backend's
        // to send (RFC 9110 6.5.1).
        let fields = trailers.iter().flatten();
        for (name, value) in fields.filter(|(n, _)| field(n.as_str()) == Field::Other) {
            push_field(out, name.as_str().as_bytes(), value.as_bytes());
        }
        out.extend_from_slice(b"\r\n");
        write_out(conn, out, send_timeout(self.ctx))
            .await
            .map_err(|e| format!("writing the response: {e}"))
    }
}
