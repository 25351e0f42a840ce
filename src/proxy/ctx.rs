//! What one request carries through its phases (either engine): the snapshot it was
//! served under, the client, site and route, the backends tried, the request id.

use std::borrow::Cow;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::HeaderValue;

use super::in_flight::InFlight;
use crate::observe::metrics::{ConnGauges, Gauged};
use crate::observe::trace::RequestTrace;
use crate::policy::client::Client;
use crate::policy::headers::HeaderEdits;
use crate::route::retry::MAX_TRIES;
use crate::route::retry_budget::{Active, RetryTicket};
use crate::route::router::ProxyAction;
use crate::route::Action;
use crate::semantics::coding::Compressing;
use crate::snapshot::Snapshot;
use crate::tls::client_auth::ClientCertCheck;

/// Unique request ids: a random per-process prefix and a counter.
pub(super) struct RequestIds {
    prefix: u64,
    next: AtomicU64,
}

impl RequestIds {
    pub(super) fn new() -> Self {
        let mut seed = [0u8; 8];
        let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut seed);
        Self {
            prefix: u64::from_le_bytes(seed),
            next: AtomicU64::new(1),
        }
    }

    /// The next id as a header value: 32 hex digits, made once and shared by the upstream
    /// request, the response and the access log.
    pub(super) fn next(&self) -> HeaderValue {
        let mut id = [0u8; 32];
        hex16(&mut id[..16], self.prefix);
        hex16(&mut id[16..], self.next.fetch_add(1, Ordering::Relaxed));
        HeaderValue::from_bytes(&id).expect("hex digits are a valid header value")
    }
}

/// Writes `n` as 16 lowercase hex digits.
fn hex16(out: &mut [u8], n: u64) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for (i, b) in out.iter_mut().take(16).enumerate() {
        *b = DIGITS[((n >> (60 - 4 * i)) & 0xf) as usize];
    }
}

/// Per-request state.
pub struct Ctx {
    pub(super) snapshot: Option<Arc<Snapshot>>,
    pub(super) start: Instant,
    pub(super) client: Option<Client>,
    pub(super) sni: Option<Arc<str>>,
    /// The connection's client certificate check, kept only for a site that has one (the
    /// `client_cert` rule saw that it is this site's).
    pub(super) client_cert: Option<Arc<ClientCertCheck>>,
    /// Site index in the router.
    pub(super) site: Option<usize>,
    /// (site, route) indices into the snapshot's router.
    pub(super) route: Option<(usize, usize)>,
    /// Backends tried so far, in order.
    pub(super) tried: Tried,
    pub(super) upstream_status: Option<u16>,
    /// `None`: allowed; `Some(rule)`: denied by that rule.
    pub(super) decision: Option<Arc<str>>,
    pub(super) request_id: HeaderValue,
    /// The client IP as text, for X-Forwarded-For, X-Real-IP and the access log.
    pub(super) client_ip: Option<HeaderValue>,
    /// The current attempt at a backend: when it started, whether its failure is counted.
    pub(super) attempt: Option<(Instant, bool)>,
    /// The last attempt was taken back to be made again another way: the next pick is the same
    /// attempt, not a new one.
    pub(super) retracted: bool,
    /// Time to connect to the backend (a new connection; `None`: pooled or none).
    pub(super) upstream_connect: Option<Duration>,
    /// Time from picking the backend to its response header.
    pub(super) upstream_first_byte: Option<Duration>,
    /// Its response's compression: what the request allows, then what was done (none when
    /// the site does not compress).
    pub(super) compression: Option<Compressing>,
    /// The edge cache's outcome, when the route caches.
    pub(super) cache: Option<crate::cache::status::Outcome>,
    /// The response being stored, on a miss whose response may be.
    pub(super) fill: Option<Box<crate::cache::Fill>>,
    /// The request's spans, when `[otel]` is on and this trace is recorded.
    pub(super) trace: Option<Box<RequestTrace>>,
    /// Counts the request in flight to its upstream (for the retry budget) once it picked a
    /// backend.
    pub(super) active: Option<Active>,
    /// The upstream's retry budget's ticket, once the request retried.
    pub(super) retry_ticket: Option<RetryTicket>,
    /// Counts the request as in flight while the context lives.
    _in_flight: InFlight,
    /// ... and on its listener's gauge.
    _listener_in_flight: Gauged,
}

/// Backends tried for one request, in order, without allocating: at most `MAX_TRIES`, and a try
/// beyond that replaces the last one (so `last()` is always the backend of the final attempt).
pub(super) struct Tried {
    addrs: [SocketAddr; MAX_TRIES],
    len: usize,
}

impl Default for Tried {
    fn default() -> Self {
        Self {
            addrs: [SocketAddr::from(([0, 0, 0, 0], 0)); MAX_TRIES],
            len: 0,
        }
    }
}

impl Tried {
    pub(super) fn push(&mut self, addr: SocketAddr) {
        let i = self.len.min(MAX_TRIES - 1);
        self.addrs[i] = addr;
        self.len = i + 1;
    }
}

impl Tried {
    /// Takes the last try back: the backend is to be tried again another way (it chose
    /// HTTP/1.1 where HTTP/2 was offered).
    pub(super) fn retract(&mut self) {
        self.len = self.len.saturating_sub(1);
    }
}

impl std::ops::Deref for Tried {
    type Target = [SocketAddr];
    fn deref(&self) -> &[SocketAddr] {
        &self.addrs[..self.len]
    }
}

impl Ctx {
    /// A request's state on a connection with `gauges`, its clock started.
    pub(super) fn new(gauges: &ConnGauges) -> Self {
        Ctx {
            snapshot: None,
            start: Instant::now(),
            client: None,
            sni: None,
            client_cert: None,
            site: None,
            route: None,
            tried: Tried::default(),
            upstream_status: None,
            decision: None,
            request_id: HeaderValue::from_static(""),
            client_ip: None,
            attempt: None,
            retracted: false,
            upstream_connect: None,
            upstream_first_byte: None,
            compression: None,
            cache: None,
            fill: None,
            trace: None,
            active: None,
            retry_ticket: None,
            _in_flight: InFlight::start(),
            _listener_in_flight: gauges.request(),
        }
    }

    /// Takes the last try back: the backend is to be tried again another way (it chose
    /// HTTP/1.1 where HTTP/2 was offered), and the next pick is the same attempt.
    pub(super) fn retract_attempt(&mut self) {
        self.tried.retract();
        self.retracted = true;
    }

    /// Notes the backend's response header: its status and how long it took.
    pub(super) fn answered(&mut self, status: u16) {
        self.upstream_status = Some(status);
        if let Some(trace) = &mut self.trace {
            trace.answered(status);
        }
        if let Some((start, _)) = self.attempt {
            let took = start.elapsed();
            self.upstream_first_byte = Some(took);
            if let Some(action) = self.proxy_action() {
                action.upstream.metrics.first_byte(took);
            }
        }
    }

    /// The request id as text (a trusted proxy's id may hold bytes that are not UTF-8).
    pub(super) fn request_id_str(&self) -> Cow<'_, str> {
        match self.request_id.to_str() {
            Ok(id) => Cow::Borrowed(id),
            Err(_) => String::from_utf8_lossy(self.request_id.as_bytes()),
        }
    }

    pub(super) fn proxy_action(&self) -> Option<&ProxyAction> {
        proxy_action(self.snapshot.as_ref()?, self.route?)
    }

    /// The most request body a backend is sent: the site's `max_body_bytes` (`None` only for a
    /// request that matched no site, which is never proxied).
    pub(super) fn max_body(&self) -> Option<u64> {
        let site = self.snapshot.as_ref()?.site_policy(self.site?)?;
        Some(site.max_body_bytes)
    }

    /// The read and idle timeouts of connections to the request's backends.
    pub(super) fn backend_timeouts(&self) -> (Option<Duration>, Option<Duration>) {
        self.proxy_action().map_or((None, None), |a| {
            let options = a.upstream.options();
            (options.read_timeout, options.idle_timeout)
        })
    }

    /// The request's route's header edits (its site's and its own).
    pub(super) fn header_edits(&self) -> Option<&HeaderEdits> {
        let (s, r) = self.route?;
        let site = self.snapshot.as_ref()?.router.site_at(s)?;
        site.routes.get(r).map(|r| &r.headers)
    }

    pub(super) fn route_prefix(&self) -> &str {
        self.route
            .and_then(|(s, r)| {
                let site = self.snapshot.as_ref()?.router.site_at(s)?;
                site.routes.get(r).map(|r| r.prefix.as_str())
            })
            .unwrap_or("/")
    }
}

/// The upstream route `(site, route)` of `snapshot` proxies to, if it proxies.
pub(super) fn proxy_action(
    snapshot: &Snapshot,
    (site, route): (usize, usize),
) -> Option<&ProxyAction> {
    match &snapshot.router.site_at(site)?.routes.get(route)?.action {
        Action::Proxy(p) => Some(p),
        Action::Respond(_) | Action::Redirect(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_are_32_hex_digits_sharing_the_process_prefix() {
        let ids = RequestIds::new();
        let a = ids.next();
        let b = ids.next();
        for id in [&a, &b] {
            assert_eq!(id.len(), 32);
            assert!(id
                .as_bytes()
                .iter()
                .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(c)));
        }
        assert_eq!(a.as_bytes()[..16], b.as_bytes()[..16]);
        assert_ne!(a, b);
        assert_eq!(&a.as_bytes()[16..], b"0000000000000001");
        assert_eq!(&b.as_bytes()[16..], b"0000000000000002");
    }

    #[test]
    fn tried_keeps_the_final_attempt_last() {
        let addr = |p| SocketAddr::from(([127, 0, 0, 1], p));
        let mut tried = Tried::default();
        assert!(tried.is_empty());
        for p in 1..=MAX_TRIES as u16 + 2 {
            tried.push(addr(p));
        }
        assert_eq!(tried.len(), MAX_TRIES);
        assert_eq!(tried[0], addr(1));
        assert_eq!(tried.last(), Some(&addr(MAX_TRIES as u16 + 2)));
    }
}
