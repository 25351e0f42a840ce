//! A backend's response body compressed on its way to an HTTP/1 client (`relay` sent the head,
//! with `Content-Encoding`): each read's payload (chunk framing taken off) goes through the
//! encoder and what it has ready goes out at once, chunked to an HTTP/1.1 client, until close to
//! an HTTP/1.0 one. A body the backend breaks off leaves the client's framing unfinished.

use std::time::{Duration, Instant};

use bytes::BytesMut;
use tokio::io::AsyncReadExt;

use super::write_out;
use crate::proxy::attempts::limit;
use crate::proxy::cache::Tee;
use crate::proxy::conn::ClientConn;
use crate::proxy::encoder::Encoder;
use crate::proxy::http1::{push_body, Body, Framing, UPSTREAM_BUF};
use crate::proxy::timed::within;
use crate::route::upstream_conn::UpstreamConn;

/// One compressed body: the backend's framing, the client's, the timeouts.
pub(super) struct Encoded {
    pub(super) body: Body,
    pub(super) framing: Framing,
    pub(super) chunked: bool,
    /// The route's idle timeout, per read.
    pub(super) idle: Option<Duration>,
    /// The end of its total timeout.
    pub(super) deadline: Option<Instant>,
    pub(super) send: Option<Duration>,
}

/// How an encoded body ended: bytes the client got, whether the backend sent more than the
/// body; or those bytes and why it broke off.
pub(super) type Sent = Result<(usize, bool), (usize, String)>;

impl Encoded {
    /// Sends `out` (the response head), then the body read from `up` and `stream`, compressed;
    /// its payload goes to `tee` as it was read.
    pub(super) async fn run(
        mut self,
        conn: &mut ClientConn,
        stream: &mut UpstreamConn,
        out: &mut Vec<u8>,
        up: &mut BytesMut,
        encoder: Encoder,
        tee: &mut Tee,
    ) -> Sent {
        let mut encoder = Some(encoder);
        let mut sent = 0;
        let mut extra = false;
        let mut coded = Vec::new();
        let mut runs = Vec::new();
        loop {
            runs.clear();
            let taken = self.body.take_with(up, |r| {
                // The edge cache stores the backend's payload, as it came.
                tee.data(&up[r.clone()]);
                runs.push(r)
            });
            let Ok((n, _)) = taken else {
                return Err((sent, "bad chunked framing from the backend".into()));
            };
            extra |= up.len() > n;
            let done = self.body.is_done();
            if let Err(e) = compress(&mut encoder, &up[..n], &runs, done, &mut coded) {
                return Err((sent, format!("compressing the response: {e}")));
            }
            up.clear();
            self.send_coded(conn, out, &mut coded, done, &mut sent)
                .await
                .map_err(|e| (sent, format!("writing the response: {e}")))?;
            if done {
                return Ok((sent, extra));
            }
            up.reserve(UPSTREAM_BUF);
            let limit = limit(self.idle, self.deadline);
            match within(limit, stream.read_buf(up)).await {
                Ok(0) if self.framing == Framing::UntilClose => {
                    self.body = Body::new(Framing::None)
                }
                Ok(0) => return Err((sent, "backend closed mid-body".into())),
                Ok(_) => {}
                Err(e) => return Err((sent, format!("reading the response body: {e}"))),
            }
        }
    }

    /// Writes what is in `out` and the compressed bytes ready (the last chunk too when `done`).
    async fn send_coded(
        &self,
        conn: &mut ClientConn,
        out: &mut Vec<u8>,
        coded: &mut Vec<u8>,
        done: bool,
        sent: &mut usize,
    ) -> std::io::Result<()> {
        push_body(out, coded, self.chunked);
        *sent += coded.len();
        coded.clear();
        if done && self.chunked {
            out.extend_from_slice(b"0\r\n\r\n");
        }
        if !out.is_empty() {
            write_out(conn, out, self.send).await?;
            out.clear();
        }
        Ok(())
    }
}

/// Feeds the `runs` of payload in `read` to the encoder, finishing it when `done`.
fn compress(
    encoder: &mut Option<Encoder>,
    read: &[u8],
    runs: &[std::ops::Range<usize>],
    done: bool,
    coded: &mut Vec<u8>,
) -> std::io::Result<()> {
    if let Some(e) = encoder.as_mut() {
        for run in runs {
            e.push(&read[run.clone()], coded)?;
        }
    }
    match encoder.take() {
        Some(e) if done => e.finish(coded),
        kept => {
            *encoder = kept;
            Ok(())
        }
    }
}
