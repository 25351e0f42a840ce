//! The engines' side of `route::retry`: the route's timeouts as each I/O's limit (cut to what
//! is left of `total_timeout`), and after a failed attempt the one retry decision (the route's
//! policy, then the upstream's budget), counted and waited for. Every engine and backend
//! protocol comes here, so they retry alike.

use std::time::{Duration, Instant};

use super::ctx::Ctx;
use super::Proxy;
use crate::observe::metrics::UpstreamErrorKind;
use crate::route::retry::{retry_after, Failure, RouteTimeouts, Stake, Standing, Verdict};

impl Ctx {
    /// The route's timeouts (none when it does not proxy).
    pub(super) fn timeouts(&self) -> RouteTimeouts {
        self.proxy_action().map_or(
            RouteTimeouts {
                connect: None,
                first_byte: None,
                idle: None,
                total: None,
            },
            |a| a.timeouts,
        )
    }

    /// When `total_timeout` runs out.
    pub(super) fn deadline(&self) -> Option<Instant> {
        self.timeouts().total.map(|total| self.start + total)
    }

    /// The limit of the wait for a response head.
    pub(super) fn first_byte_limit(&self) -> Option<Duration> {
        let t = self.timeouts();
        limit(t.first_byte, t.total.map(|total| self.start + total))
    }

    /// The limit of the wait for the next piece of a body.
    pub(super) fn idle_limit(&self) -> Option<Duration> {
        let t = self.timeouts();
        limit(t.idle, t.total.map(|total| self.start + total))
    }
}

/// Why a request got no response from a backend: the status menshen answers with instead
/// (`None`: none can be sent, the client is gone) and what to log.
#[derive(Debug)]
pub(super) struct Unanswered {
    pub(super) status: Option<u16>,
    pub(super) error: String,
}

impl Unanswered {
    /// The client gets `status` (502, 504, ...) from menshen.
    pub(super) fn answer(status: u16, error: impl Into<String>) -> Self {
        Unanswered {
            status: Some(status),
            error: error.into(),
        }
    }

    /// No answer can reach the client.
    pub(super) fn client_gone(error: impl Into<String>) -> Self {
        Unanswered {
            status: None,
            error: error.into(),
        }
    }
}

/// What one attempt at a backend over HTTP/1 came to, for either engine.
pub(super) enum Attempt<A> {
    /// A response head (the connection, and where the engine keeps the head).
    Answered(A),
    /// No response: how it failed, and what the client gets if it is not retried.
    Failed(Failure, Unanswered),
    /// No response, and no retry (no connection, or the client's body failed).
    Gave(Unanswered),
    /// No connection; another backend is to be tried (the back-off waited).
    Again,
}

impl Proxy {
    /// After one attempt: the answer, or what the client gets instead, or `None` to attempt
    /// again (the route's retry policy allowed it and its back-off was waited). `head_failure`
    /// says what an answer's head is as a failure, when the route retries on its status.
    pub(super) async fn settle<A>(
        &self,
        ctx: &mut Ctx,
        attempt: Attempt<A>,
        stake: Stake,
        head_failure: impl FnOnce(&Ctx, &A) -> Option<Failure>,
    ) -> Option<Result<A, Unanswered>> {
        match attempt {
            Attempt::Answered(answer) => match head_failure(ctx, &answer) {
                Some(failure) if self.retry(ctx, failure, stake).await => None,
                _ => Some(Ok(answer)),
            },
            Attempt::Failed(failure, failed) => {
                (!self.retry(ctx, failure, stake).await).then_some(Err(failed))
            }
            Attempt::Gave(failed) => Some(Err(failed)),
            Attempt::Again => None,
        }
    }
}

/// No response from an HTTP/2 backend: how the attempt failed (`None`: not the backend's
/// doing), and what the client gets instead.
pub(super) struct NoResponse(pub(super) Option<Failure>, pub(super) Unanswered);

/// An I/O's limit: `op`, cut to what is left before `deadline` (no clock read without one).
pub(super) fn limit(op: Option<Duration>, deadline: Option<Instant>) -> Option<Duration> {
    let Some(deadline) = deadline else {
        return op;
    };
    let left = deadline.saturating_duration_since(Instant::now());
    Some(op.map_or(left, |op| op.min(left)))
}

/// The failure a response head is, when the route retries on its status: the status and its
/// `Retry-After`. `header` looks a field of the head up.
pub(super) fn status_failure<'h>(
    ctx: &Ctx,
    status: u16,
    header: impl FnOnce(&str) -> Option<&'h [u8]>,
) -> Option<Failure> {
    let retries = ctx.proxy_action()?.retries;
    retries
        .on
        .statuses
        .contains(status)
        .then(|| Failure::Status(status, header("retry-after").and_then(retry_after)))
}

/// [`status_failure`] of an HTTP/1 response head.
pub(super) fn head_failure(ctx: &Ctx, head: &[u8]) -> Option<Failure> {
    let parsed = super::http1::with_response(head, |resp| {
        let status = resp.code?;
        let mut fields = resp.headers.iter();
        status_failure(ctx, status, |name| {
            let found = fields.find(|h| h.name.eq_ignore_ascii_case(name))?;
            Some(found.value)
        })
    });
    parsed.ok().flatten()
}

/// The failure an I/O error before any response byte is.
pub(super) fn io_failure(kind: std::io::ErrorKind) -> Failure {
    match kind {
        std::io::ErrorKind::TimedOut => Failure::Timeout,
        std::io::ErrorKind::InvalidData => Failure::Invalid,
        _ => Failure::Reset,
    }
}

/// The failure of a stream to an HTTP/2 backend before its response head: `error` is the
/// h2 crate's (from `send_request`, or as the response's, wrapped in an I/O error) or the
/// first-byte timeout's.
pub(super) fn stream_failure(error: &std::io::Error) -> Failure {
    let h2 = error.get_ref().and_then(|e| e.downcast_ref::<h2::Error>());
    match h2 {
        Some(e) => h2_failure(e),
        None => io_failure(error.kind()),
    }
}

/// [`stream_failure`] of the h2 crate's error. A stream the backend refused (`RST_STREAM`
/// with `REFUSED_STREAM`) or left above a `GOAWAY`'s last stream id was not processed (RFC
/// 9113 8.7, 6.8): h2 gives that stream the `GOAWAY` as its error only then.
pub(super) fn h2_failure(error: &h2::Error) -> Failure {
    let refused = error.reason() == Some(h2::Reason::REFUSED_STREAM) && error.is_reset();
    match error.is_remote() && (refused || error.is_go_away()) {
        true => Failure::Refused,
        false => Failure::Reset,
    }
}

/// What picking a backend and an HTTP/2 connection to it came to.
pub(in crate::proxy) enum Picked {
    /// A ready connection to this backend.
    Ready(std::net::SocketAddr, h2::client::SendRequest<bytes::Bytes>),
    /// The backend chose HTTP/1.1 by ALPN (the connection is in the HTTP/1 pool).
    Http1,
    /// No connection; another backend is to be tried (the back-off waited).
    Again,
    /// No backend: what the client gets.
    Fail(Unanswered),
}

impl Proxy {
    /// Whether an HTTP/2 backend's `response` is retried: its status is one the route retries
    /// on and [`Proxy::retry`] says so.
    pub(super) async fn retry_response(
        &self,
        ctx: &mut Ctx,
        response: &http::Response<h2::RecvStream>,
        stake: Stake,
    ) -> bool {
        let fields = response.headers();
        let get = |name: &str| fields.get(name).map(|v| v.as_bytes());
        match status_failure(ctx, response.status().as_u16(), get) {
            Some(failure) => self.retry(ctx, failure, stake).await,
            None => false,
        }
    }

    /// [`Proxy::retry`] for a failure that may not be the backend's doing (`None`: never).
    pub(super) async fn retry_if(
        &self,
        ctx: &mut Ctx,
        failure: Option<Failure>,
        stake: Stake,
    ) -> bool {
        match failure {
            Some(failure) => self.retry(ctx, failure, stake).await,
            None => false,
        }
    }

    /// After a failed attempt: whether another backend is tried. Asks the route's retry policy
    /// and then the upstream's budget (a request takes one retry ticket, held to its end), counts
    /// the retry by reason (or the budget's refusal), and waits the back-off or `Retry-After`.
    pub(super) async fn retry(&self, ctx: &mut Ctx, failure: Failure, stake: Stake) -> bool {
        let Some(action) = ctx.proxy_action() else {
            return false;
        };
        let upstream = action.upstream.clone();
        let standing = Standing {
            tries: ctx.tried.len(),
            untried: upstream.backend_count().saturating_sub(ctx.tried.len()),
            remaining: ctx
                .deadline()
                .map(|d| d.saturating_duration_since(Instant::now())),
        };
        let verdict = action
            .retries
            .decide(failure, stake, standing, fastrand::f64());
        match failure {
            Failure::Reset | Failure::Refused => upstream.metrics.error(UpstreamErrorKind::Reset),
            Failure::Timeout => upstream.metrics.error(UpstreamErrorKind::Timeout),
            Failure::Connect | Failure::Invalid | Failure::Status(..) => {}
        }
        if let Some((_, counted)) = &mut ctx.attempt {
            *counted = true;
        }
        let Verdict::Retry(wait) = verdict else {
            return false;
        };
        if ctx.retry_ticket.is_none() {
            match upstream.budget.try_retry() {
                Some(ticket) => ctx.retry_ticket = Some(ticket),
                None => {
                    upstream.metrics.budget_exhausted();
                    return false;
                }
            }
        }
        upstream.metrics.retry(failure.label());
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
        true
    }
}
