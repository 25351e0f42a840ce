//! The HTTP/1 engine's side of the edge cache: the lookup before the exchange, and a stored
//! response written by the same head writer as a backend's (the site's edits, HSTS, the
//! request id), its body from memory.

use bytes::BytesMut;

use super::own::answer_unanswered;
use super::request::{BodyFraming, Request};
use super::response::{client_response_head, Persist};
use super::{send_timeout, write_out, Buffers, Outcome};
use crate::proxy::attempts::Unanswered;
use crate::proxy::cache::{CacheRequest, H1Fields};
use crate::proxy::conn::{ClientConn, ConnFacts};
use crate::proxy::ctx::Ctx;
use crate::proxy::hit::Hit;
use crate::proxy::http1::{response_head, with_response};
use crate::proxy::response_edits::ResponseEdits;
use crate::proxy::Proxy;
use crate::route::router::ProxyAction;

/// Body bytes sent in the same write as the head.
const COALESCE: usize = 16 * 1024;

impl Proxy {
    /// Answers a request to an upstream route from the edge cache when it holds a fresh
    /// response, else proxies it (`forward`), its response stored on the way when it may be.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn cached_or_proxy(
        &self,
        conn: &mut ClientConn,
        facts: &ConnFacts,
        request: &Request<'_>,
        action: &ProxyAction,
        ctx: &mut Ctx,
        bufs: &mut Buffers,
        input: &mut BytesMut,
    ) -> Outcome {
        match self.h1_cached(conn, facts, request, ctx, bufs).await {
            Some(outcome) => outcome,
            None => {
                self.proxy(conn, facts, request, action, ctx, bufs, input)
                    .await
            }
        }
    }

    /// The lookup: `Some` when a stored response answered; `None`: the request goes to the
    /// backend (with a fill in `ctx` when its response may be stored).
    async fn h1_cached(
        &self,
        conn: &mut ClientConn,
        facts: &ConnFacts,
        request: &Request<'_>,
        ctx: &mut Ctx,
        bufs: &mut Buffers,
    ) -> Option<Outcome> {
        ctx.proxy_action()?.cache.as_ref()?;
        let req = request.req;
        let asked = CacheRequest {
            host: req.host.name(),
            target: req.target.as_str(),
            path: req.target.path(),
            query: req.target.query(),
            method: &req.method,
            bodyless: req.body == BodyFraming::None,
            fields: &H1Fields(request.parsed.headers),
        };
        let hit = self.cache_lookup(ctx, &asked).await?;
        Some(write_hit(conn, facts, request, ctx, bufs, &hit).await)
    }
}

/// Writes a stored response to the client.
pub(super) async fn write_hit(
    conn: &mut ClientConn,
    facts: &ConnFacts,
    request: &Request<'_>,
    ctx: &Ctx,
    bufs: &mut Buffers,
    hit: &Hit,
) -> Outcome {
    let req = request.req;
    let head_request = req.method == http::Method::HEAD;
    let persist = match req.close || request.draining {
        true => Persist::Close,
        false => Persist::KeepAlive {
            http10: req.version == 0,
        },
    };
    let edits = ResponseEdits::of(ctx, facts.tls.is_some());
    let id = ctx.request_id.as_bytes();
    let stored = hit.head();
    let out = &mut bufs.out;
    out.clear();
    let written = with_response(&stored, |resp| {
        let head = response_head(resp, head_request)?;
        client_response_head(out, resp, head.framing, false, &edits, id, persist);
        Some(head.status)
    });
    let send = send_timeout(ctx);
    let Some(status) = written.ok().flatten() else {
        // A head menshen stored parsed when it was stored; not reached.
        let failed = Unanswered::answer(502, "a stored response head did not parse");
        let asking = request.asking(ctx);
        return answer_unanswered(conn, out, &asking, failed, (head_request, send), 0).await;
    };
    let whole = hit.body();
    let body = match head_request {
        true => &[][..],
        false => &whole[..],
    };
    let first = body.len().min(COALESCE);
    out.extend_from_slice(&body[..first]);
    let mut sent = write_out(conn, out, send).await;
    if sent.is_ok() && body.len() > first {
        sent = write_out(conn, &body[first..], send).await;
    }
    Outcome {
        status: Some(status),
        bytes_in: 0,
        bytes_out: if sent.is_ok() { body.len() } else { 0 },
        keep: sent.is_ok() && persist != Persist::Close,
        error: sent
            .err()
            .map(|e| format!("writing a cached response: {e}")),
    }
}
