//! menshen's request engines and what they share. A connection arrives at `conn` (PROXY
//! header, TLS handshake, per-IP count, header clock) and goes to the HTTP/1 engine (`h1`) or,
//! by ALPN, the HTTP/2 engine (`h2`). Both run the same phases (`phases`) for each request:
//!
//! ```text
//! identify      client address (PROXY header / trusted XFF), request id
//! locate        site by Host, route by path + method (on the canonical target)
//! decide        policy chain (see policy/mod.rs; the first denial answers, `own`)
//! answer        a route's fixed response or redirect (`own`), or proxy:
//! pick_backend  a backend not tried yet (502 if none); connect (TLS, pooled per thread),
//!               eject and retry another where nothing was sent
//! forward       the request with the forwarding fields (one definition, `h1::request`),
//!               over HTTP/1 or HTTP/2 as the upstream speaks
//! respond       the backend's response, its hop-by-hop fields dropped and the site's edits
//!               applied (one definition, `h1::response`), body relayed with flow control
//! finish        one access log line (`access`), counters, the trace's spans (`[otel]`)
//! ```
//!
//! Per-request state is `ctx`'s. What both engines share is beside them, never in one of them
//! (no module here imports a sibling that imports it back): `http1` (HTTP/1 syntax and
//! a backend's response head), `http2` (requests to HTTP/2 backends, DATA under flow
//! control), `forwarding`, `response_edits`, `own`, `timed` (time-limited I/O).

mod access;
mod attempts;
mod cache;
mod compress;
pub mod conn;
mod ctx;
mod encoder;
mod forwarding;
mod h1;
mod h2;
mod hit;
mod http1;
mod http2;
pub mod in_flight;
mod own;
mod phases;
mod response_edits;
mod timed;

use std::sync::Arc;

use bytes::Bytes;
use http::header;

use self::ctx::RequestIds;
use crate::observe::access_log::AccessLog;
use crate::observe::trace::Tracer;
use crate::policy::Denial;
use crate::snapshot::SharedSnapshot;

/// The proxy application: what every connection's engine reads (the serving snapshot, the
/// access log). Clones share the request-id counter.
#[derive(Clone)]
pub struct Proxy {
    state: SharedSnapshot,
    access_log: Option<Arc<AccessLog>>,
    /// The trace export, when `[otel]` is on.
    tracer: Option<Arc<Tracer>>,
    request_ids: Arc<RequestIds>,
}

impl Proxy {
    /// A proxy serving whatever snapshot `state` holds, logging to `access_log`.
    pub fn new(state: SharedSnapshot, access_log: Option<Arc<AccessLog>>) -> Self {
        Self {
            state,
            access_log,
            tracer: None,
            request_ids: Arc::new(RequestIds::new()),
        }
    }

    /// The same proxy, recording traces to `tracer` (`None`: no tracing, nothing built).
    pub fn with_tracer(mut self, tracer: Option<Arc<Tracer>>) -> Self {
        self.tracer = tracer;
        self
    }
}

/// `crate::fuzz`'s way into the HTTP/1 engine's head reading.
#[doc(hidden)]
pub fn fuzz_request_head(data: &[u8]) -> Option<String> {
    h1::read_one_head(data)
}

/// `crate::fuzz`'s way into the chunked decoder.
#[doc(hidden)]
pub fn fuzz_chunked(data: &[u8]) {
    http1::fuzz_chunked(data)
}

/// `crate::fuzz`'s way into the HTTP/2-to-HTTP/1 mapping.
#[doc(hidden)]
pub fn fuzz_h2_request(data: &[u8]) {
    h2::fuzz_request(data)
}

/// The answer to a request on a connection that arrived over `max_connections_per_ip`.
pub(super) fn over_connection_limit() -> Denial {
    Denial {
        status: 429,
        rule: Arc::from("max_connections_per_ip"),
        header: Some((header::RETRY_AFTER, "1".into())),
        body: Bytes::from_static(b"429 Too Many Requests: too many connections\n"),
    }
}
