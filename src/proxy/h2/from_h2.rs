//! An HTTP/2 backend's response on its way to an HTTP/2 client (`to_h2` got its head): its
//! fields get the same edits as any other, its body is compressed where the site compresses
//! (`proxy::compress`, as for an HTTP/1 backend; never gRPC's), its DATA frames go on under both
//! windows as they come, and its trailers (`grpc-status`) follow. A stream the backend resets or
//! breaks off is reset for the client.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use h2::server::SendResponse;
use h2::{Reason, RecvStream, SendStream};

use super::answer::{append_field, finish_head, Outcome};
use crate::proxy::conn::ConnFacts;
use crate::proxy::ctx::Ctx;
use crate::proxy::encoder::Coded;
use crate::proxy::http1::Framing;
use crate::proxy::http2::{send_data, trailers_filtered};
use crate::proxy::response_edits::{edited_map, ResponseEdits};
use crate::proxy::timed::within;
use crate::semantics::coding::Decision;

/// A backend's HTTP/2 response on its way to the client.
pub(super) struct Relay<'a> {
    pub(super) ctx: &'a mut Ctx,
    pub(super) facts: &'a ConnFacts,
    pub(super) addr: SocketAddr,
    pub(super) head: bool,
    pub(super) send: Option<Duration>,
}

/// The body on its way: from the backend's stream to the client's, through the coder.
struct Down {
    recv: RecvStream,
    send: SendStream<Bytes>,
    coded: Coded,
    sent: usize,
}

impl Down {
    /// Resets the client's stream, so it never sees the body complete: `error`.
    fn reset(&mut self, error: String) -> String {
        self.send.send_reset(Reason::INTERNAL_ERROR);
        error
    }
}

impl Relay<'_> {
    pub(super) async fn run(
        self,
        response: http::Response<RecvStream>,
        respond: &mut SendResponse<Bytes>,
    ) -> Outcome {
        let (parts, recv) = response.into_parts();
        let status = parts.status.as_u16();
        // A stream that ends with its head is not compressed (`Ctx::compress_h2`).
        let empty = recv.is_end_stream();
        let (decision, coded) = self.ctx.compress_h2(status, &parts.headers, empty);
        let head = self.client_head(&parts, decision);
        let send = match respond.send_response(head, self.head || empty) {
            Ok(send) => send,
            Err(e) => {
                let error = format!("sending the response head: {e}");
                return self.outcome(status, 0, Some(error));
            }
        };
        if self.head || empty {
            return self.outcome(status, 0, None);
        }
        let mut down = Down {
            recv,
            send,
            coded,
            sent: 0,
        };
        let ended = self.body(&mut down).await;
        self.outcome(status, down.sent, ended.err())
    }

    /// The client's head: the backend's fields with the site's edits and the compression's.
    fn client_head(
        &self,
        parts: &http::response::Parts,
        decision: Option<Decision>,
    ) -> http::Response<()> {
        let mut client = http::Response::new(());
        *client.status_mut() = parts.status;
        let headers = client.headers_mut();
        let edits = ResponseEdits::of(self.ctx, self.facts.tls.is_some());
        let edits = edits.compressed(decision);
        // A length the backend sent stands (HTTP/2 frames the body either way), unless the
        // body is compressed: its length is known at its end only.
        let framing = match edits.coding {
            Some(_) => Framing::UntilClose,
            None => Framing::None,
        };
        let has_date = edited_map(&parts.headers, framing, &edits, |name, value| {
            append_field(headers, name, value)
        });
        finish_head(headers, &self.ctx.request_id, has_date);
        client
    }

    /// Passes the body's DATA frames (compressed where it is) as they come, each read within
    /// the route's idle timeout, then its end.
    async fn body(&self, down: &mut Down) -> Result<(), String> {
        loop {
            let idle = self.ctx.idle_limit();
            let next = within(idle, async { Ok(down.recv.data().await) }).await;
            let chunk = match next {
                Ok(Some(Ok(chunk))) => chunk,
                Ok(None) => break,
                Ok(Some(Err(e))) => return Err(down.reset(format!("reading the body: {e}"))),
                Err(e) => return Err(down.reset(format!("reading the body: {e}"))),
            };
            let _ = down.recv.flow_control().release_capacity(chunk.len());
            let data = match down.coded.pass(chunk) {
                Ok(data) => data,
                Err(e) => return Err(down.reset(format!("compressing: {e}"))),
            };
            down.sent += data.len();
            if data.is_empty() {
                // The encoder holds it all yet.
                continue;
            }
            send_data(&mut down.send, data, false, self.send)
                .await
                .map_err(|e| format!("sending the response: {e}"))?;
        }
        self.end(down).await
    }

    /// Ends the client's stream: the encoder's last bytes, then the backend's trailers.
    async fn end(&self, down: &mut Down) -> Result<(), String> {
        let trailers = match down.recv.trailers().await {
            Ok(trailers) => trailers,
            Err(e) => return Err(down.reset(format!("reading the trailers: {e}"))),
        };
        let last = match down.coded.end() {
            Ok(last) => last,
            Err(e) => return Err(down.reset(format!("compressing: {e}"))),
        };
        down.sent += last.len();
        if !last.is_empty() || trailers.is_none() {
            send_data(&mut down.send, last, trailers.is_none(), self.send)
                .await
                .map_err(|e| format!("sending the response: {e}"))?;
        }
        match trailers {
            Some(trailers) => down
                .send
                .send_trailers(trailers_filtered(trailers))
                .map_err(|e| e.to_string()),
            None => Ok(()),
        }
    }

    fn outcome(&self, status: u16, bytes_out: usize, error: Option<String>) -> Outcome {
        Outcome {
            status: Some(status),
            bytes_in: 0,
            bytes_out,
            error: error.map(|e| format!("{}: {e}", self.addr)),
        }
    }
}
