//! The HTTP/2 engine's side of the edge cache: the lookup before the exchange, and a stored
//! response sent with the head writer a backend's response gets (`relay::client_head`), its
//! body from memory as DATA under the client's flow control.

use bytes::Bytes;
use h2::server::SendResponse;
use h2::RecvStream;
use http::Method;

use super::answer::Outcome;
use super::exchange::Request;
use super::relay::client_head;
use crate::proxy::cache::{CacheRequest, H2Fields, Hit};
use crate::proxy::conn::ConnFacts;
use crate::proxy::ctx::Ctx;
use crate::proxy::http1::{response_head, with_response};
use crate::proxy::http2::send_data;
use crate::proxy::response_edits::ResponseEdits;
use crate::proxy::Proxy;
use crate::route::router::ProxyAction;

impl Proxy {
    /// Answers a stream to an upstream route from the edge cache when it holds a fresh
    /// response, else exchanges it with a backend (`exchange`), its response stored on the way
    /// when it may be.
    pub(super) async fn h2_cached_or_exchange(
        &self,
        facts: &ConnFacts,
        request: &Request<'_>,
        body: RecvStream,
        action: &ProxyAction,
        ctx: &mut Ctx,
        respond: &mut SendResponse<Bytes>,
    ) -> Outcome {
        let bodyless = body.is_end_stream();
        match self.h2_cached(facts, request, bodyless, ctx, respond).await {
            Some(outcome) => outcome,
            None => {
                self.h2_exchange(facts, request, body, action, ctx, respond)
                    .await
            }
        }
    }

    /// The lookup: `Some` when a stored response answered; `None`: the stream goes to the
    /// backend (with a fill in `ctx` when its response may be stored).
    async fn h2_cached(
        &self,
        facts: &ConnFacts,
        request: &Request<'_>,
        bodyless: bool,
        ctx: &mut Ctx,
        respond: &mut SendResponse<Bytes>,
    ) -> Option<Outcome> {
        ctx.proxy_action()?.cache.as_ref()?;
        let parts = request.parts;
        let asked = CacheRequest {
            host: request.host.as_str(),
            path: request.target.path(),
            query: request.target.query(),
            method: &parts.method,
            bodyless,
            fields: &H2Fields(&parts.headers),
        };
        let hit = self.cache_lookup(ctx, &asked).await?;
        let head_request = parts.method == Method::HEAD;
        Some(send_hit(facts, ctx, &hit, head_request, respond).await)
    }
}

/// Sends a stored response on the stream.
async fn send_hit(
    facts: &ConnFacts,
    ctx: &Ctx,
    hit: &Hit,
    head_request: bool,
    respond: &mut SendResponse<Bytes>,
) -> Outcome {
    let edits = ResponseEdits::of(ctx, facts.tls.is_some());
    let stored = hit.head();
    let made = with_response(&stored, |resp| {
        let head = response_head(resp, head_request)?;
        client_head(resp, head.status, head.framing, &edits, &ctx.request_id)
    });
    let body = hit.object.body.clone();
    let status = hit.object.status;
    let failed = |error: String| Outcome {
        status,
        bytes_in: 0,
        bytes_out: 0,
        error: Some(error),
    };
    let Ok(Some(response)) = made else {
        return failed("a stored response head did not parse".into());
    };
    let empty = head_request || body.is_empty();
    let mut send = match respond.send_response(response, empty) {
        Ok(send) => send,
        Err(e) => return failed(format!("sending a cached response head: {e}")),
    };
    if empty {
        return ended(status, 0, None);
    }
    let length = body.len();
    let limit = ctx.snapshot.as_ref().map(|s| s.policy.send_timeout);
    match send_data(&mut send, body, true, limit).await {
        Ok(()) => ended(status, length, None),
        Err(e) => ended(status, 0, Some(format!("sending a cached response: {e}"))),
    }
}

fn ended(status: u16, bytes_out: usize, error: Option<String>) -> Outcome {
    Outcome {
        status,
        bytes_in: 0,
        bytes_out,
        error,
    }
}
