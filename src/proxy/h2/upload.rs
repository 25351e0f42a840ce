//! An HTTP/2 client's request body on its way to an HTTP/1 backend: DATA frames written as
//! they arrive (as chunks when the request gave no length), each frame's window given back to
//! the client as it is taken. Up to `REPLAY` bytes are kept, so that another attempt can send
//! the body again whole.

use std::io;
use std::time::Duration;

use bytes::Bytes;
use h2::RecvStream;
use tokio::io::AsyncWriteExt;

use crate::proxy::http1::push_body;
use crate::proxy::timed::within;
use crate::route::upstream_conn::UpstreamConn;

/// Body bytes kept for another attempt: as many as the HTTP/1 engine keeps (`h1::upload`).
const REPLAY: usize = 64 * 1024;

/// Why a request body did not reach the backend.
pub(super) enum UploadError {
    /// The client's body failed (it reset the stream, or was too slow).
    Client(io::Error),
    /// Writing to the backend failed.
    Backend(io::Error),
    /// More than the site's `max_body_bytes`.
    TooLarge,
}

/// What was read of the client's body, kept for another attempt while it fits in `REPLAY`.
#[derive(Default)]
pub(super) struct Replay {
    kept: Vec<Bytes>,
    len: usize,
    /// More than `REPLAY` bytes were read: no other attempt can send the body.
    overflowed: bool,
    /// The client's body is read to its end.
    ended: bool,
}

impl Replay {
    /// Another attempt can send the whole body (there is none, or it is all kept).
    pub(super) fn whole(&self) -> bool {
        !self.overflowed
    }

    fn keep(&mut self, chunk: &Bytes) {
        if self.overflowed {
            return;
        }
        if self.len + chunk.len() > REPLAY {
            self.overflowed = true;
            self.kept = Vec::new();
            return;
        }
        self.len += chunk.len();
        self.kept.push(chunk.clone());
    }
}

/// How a request body goes to the backend.
pub(super) struct Upload {
    pub(super) chunked: bool,
    /// The site's `max_body_bytes` (`None`: no limit).
    pub(super) max: Option<u64>,
    /// Each read from the client (the policy's `body_read_timeout`).
    pub(super) read: Option<Duration>,
    /// Each write to the backend (the route's `idle_timeout`).
    pub(super) write: Option<Duration>,
}

impl Upload {
    /// Sends the body (when `any`) to `stream`: what `replay` kept from an earlier attempt,
    /// then the rest as it arrives; then flushes. The payload bytes sent.
    pub(super) async fn run(
        &self,
        body: &mut RecvStream,
        stream: &mut UpstreamConn,
        any: bool,
        replay: &mut Replay,
    ) -> Result<u64, UploadError> {
        let mut out = Vec::new();
        let mut total = 0u64;
        if any {
            for chunk in &replay.kept {
                self.write(stream, &mut out, chunk).await?;
                total += chunk.len() as u64;
            }
            while !replay.ended {
                let Some(chunk) = self.next(body).await? else {
                    replay.ended = true;
                    break;
                };
                total += chunk.len() as u64;
                if self.max.is_some_and(|max| total > max) {
                    return Err(UploadError::TooLarge);
                }
                replay.keep(&chunk);
                self.write(stream, &mut out, &chunk).await?;
            }
        }
        let last: &[u8] = if any && self.chunked {
            b"0\r\n\r\n"
        } else {
            b""
        };
        let end = async {
            stream.write_all(last).await?;
            stream.flush().await
        };
        within(self.write, end)
            .await
            .map_err(UploadError::Backend)?;
        Ok(total)
    }

    /// The client's next DATA frame (its window given back), or none at the body's end.
    async fn next(&self, body: &mut RecvStream) -> Result<Option<Bytes>, UploadError> {
        match within(self.read, async { Ok(body.data().await) }).await {
            Err(e) => Err(UploadError::Client(e)),
            Ok(None) => Ok(None),
            Ok(Some(Err(e))) => Err(UploadError::Client(io::Error::other(e))),
            Ok(Some(Ok(chunk))) => {
                let _ = body.flow_control().release_capacity(chunk.len());
                Ok(Some(chunk))
            }
        }
    }

    /// Writes one frame's payload (as a chunk when the body is chunked), within `write`.
    async fn write(
        &self,
        stream: &mut UpstreamConn,
        out: &mut Vec<u8>,
        chunk: &[u8],
    ) -> Result<(), UploadError> {
        if chunk.is_empty() {
            return Ok(());
        }
        let bytes = if self.chunked {
            out.clear();
            push_body(out, chunk, true);
            &out[..]
        } else {
            chunk
        };
        within(self.write, stream.write_all(bytes))
            .await
            .map_err(UploadError::Backend)
    }
}
