//! The HTTP/2 engine's side of the edge cache: the lookup before the exchange; a stored
//! response that answers is sent by `stored`.

use bytes::Bytes;
use h2::server::SendResponse;
use h2::RecvStream;
use http::Method;

use super::answer::Outcome;
use super::exchange::Request;
use super::stored::send_hit;
use crate::proxy::cache::{CacheRequest, H2Fields};
use crate::proxy::conn::ConnFacts;
use crate::proxy::ctx::Ctx;
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
            host: request.host.name(),
            target: request.target.as_str(),
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
