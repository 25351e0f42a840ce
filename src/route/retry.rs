//! How long a route's exchange with a backend may take and when a failed attempt is made again:
//! the route's timeouts, its retry policy, and the one decision every engine asks after a
//! failed attempt (`decide`; the upstream's budget is `retry_budget`). The engines
//! (`proxy::h1`, `proxy::h2`) report what failed and what was sent; nothing here does I/O.

use std::time::Duration;

/// Most tries of one request (`retries.tries` is at most this).
pub const MAX_TRIES: usize = 5;

/// A route's limits on its exchange with a backend, the upstream's where the route sets none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouteTimeouts {
    /// A new connection (TCP and TLS).
    pub connect: Option<Duration>,
    /// From the request sent to the response head.
    pub first_byte: Option<Duration>,
    /// The longest wait for the next piece of a body, either way.
    pub idle: Option<Duration>,
    /// The whole exchange, from the request's arrival to the response's last byte.
    pub total: Option<Duration>,
}

/// What failed attempts may be made again on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RetryOn {
    /// No connection could be made (nothing of the request was sent).
    pub connect: bool,
    /// The connection broke before any byte of a response.
    pub reset: bool,
    /// No response head within `first_byte_timeout`.
    pub timeout: bool,
    /// These statuses from the backend (429, 502, 503, 504).
    pub statuses: StatusSet,
}

/// The statuses a route retries on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StatusSet {
    /// 429 Too Many Requests.
    pub too_many_requests: bool,
    /// 502 Bad Gateway.
    pub bad_gateway: bool,
    /// 503 Service Unavailable.
    pub unavailable: bool,
    /// 504 Gateway Timeout.
    pub gateway_timeout: bool,
}

impl StatusSet {
    /// Whether `status` is one of them.
    pub fn contains(self, status: u16) -> bool {
        match status {
            429 => self.too_many_requests,
            502 => self.bad_gateway,
            503 => self.unavailable,
            504 => self.gateway_timeout,
            _ => false,
        }
    }
}

/// A route's retry policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Most attempts in all (1: no retry), at most [`MAX_TRIES`].
    pub tries: usize,
    /// On what.
    pub on: RetryOn,
    /// The first back-off; each retry doubles it, up to `max_backoff`, with full jitter.
    pub backoff: Duration,
    /// The longest back-off.
    pub max_backoff: Duration,
    /// The longest `Retry-After` waited for when the route has no `total_timeout`.
    pub max_retry_after: Duration,
}

impl RouteTimeouts {
    /// `connect 1s, first byte 15s, idle 30s, total none`, for `menshen check` and `/status`.
    pub fn describe(&self) -> String {
        let show = |d: Option<Duration>| d.map_or("none".into(), |d| format!("{d:?}"));
        format!(
            "connect {}, first byte {}, idle {}, total {}",
            show(self.connect),
            show(self.first_byte),
            show(self.idle),
            show(self.total)
        )
    }
}

impl RetryPolicy {
    /// `3 tries on connect, reset, 503; back-off 25ms to 250ms`, or `off`.
    pub fn describe(&self) -> String {
        let s = self.on.statuses;
        let on: Vec<&str> = [
            (self.on.connect, "connect"),
            (self.on.reset, "reset"),
            (self.on.timeout, "timeout"),
            (s.too_many_requests, "429"),
            (s.bad_gateway, "502"),
            (s.unavailable, "503"),
            (s.gateway_timeout, "504"),
        ]
        .into_iter()
        .filter_map(|(set, name)| set.then_some(name))
        .collect();
        if self.tries < 2 || on.is_empty() {
            return "off".into();
        }
        format!(
            "{} tries on {}; back-off {:?} to {:?}, Retry-After up to {:?}",
            self.tries,
            on.join(", "),
            self.backoff,
            self.max_backoff,
            self.max_retry_after
        )
    }
}

/// Why an attempt failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// No connection was made.
    Connect,
    /// The connection broke before any response byte.
    Reset,
    /// An HTTP/2 backend refused the stream unprocessed: `RST_STREAM` with `REFUSED_STREAM`, or
    /// a `GOAWAY` below its id (RFC 9113 8.7). Retried as a reset, for any method.
    Refused,
    /// The backend's response head was malformed: never retried (the same request could make
    /// the same bytes again, and a backend that desyncs is not asked twice).
    Invalid,
    /// No response head in time.
    Timeout,
    /// The backend answered this status, with this `Retry-After`.
    Status(u16, Option<Duration>),
}

impl Failure {
    /// The `reason` label of a retry on it.
    pub fn label(self) -> &'static str {
        match self {
            Failure::Connect => "connect",
            Failure::Reset => "reset",
            Failure::Refused => "refused",
            Failure::Timeout => "timeout",
            Failure::Invalid => "invalid",
            Failure::Status(429, _) => "429",
            Failure::Status(502, _) => "502",
            Failure::Status(503, _) => "503",
            Failure::Status(504, _) => "504",
            Failure::Status(..) => "status",
        }
    }
}

/// What was at stake in the failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stake {
    /// The method may be repeated (RFC 9110 9.2.2: GET, HEAD, OPTIONS, TRACE, PUT, DELETE).
    pub idempotent: bool,
    /// menshen still holds the whole request body (or there is none), so it can be sent again.
    pub replayable: bool,
}

impl Stake {
    /// Whether a request the backend may have acted on can be sent again.
    fn safe(self) -> bool {
        self.idempotent && self.replayable
    }
}

/// Where the request stands when an attempt failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Standing {
    /// Attempts made so far, the failed one included.
    pub tries: usize,
    /// Backends not tried yet.
    pub untried: usize,
    /// Time left of `total_timeout` (`None`: no total limit).
    pub remaining: Option<Duration>,
}

/// The decision after a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Try another backend after this wait.
    Retry(Duration),
    /// Give the failure to the client.
    Stop(Stop),
}

/// Why a failure goes to the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// The route does not retry on it.
    NotRetried,
    /// The request was sent and cannot safely be sent again.
    Unsafe,
    /// `tries` attempts made, or no backend left to try (a reset aside).
    NoTriesLeft,
    /// The wait (back-off or `Retry-After`) would outlast the time left.
    NoTimeLeft,
}

impl RetryPolicy {
    /// Whether a failed attempt is made again, and after how long (`jitter` in 0..1 picks the
    /// back-off within its range). One definition for every engine and backend protocol.
    pub fn decide(&self, failure: Failure, stake: Stake, at: Standing, jitter: f64) -> Verdict {
        // Whether the request can go again: nothing reached the backend (even a POST may go
        // elsewhere); the backend refused it unprocessed (if its body is still held); or it
        // may have acted on it.
        let (asked, safe) = match failure {
            Failure::Connect => (self.on.connect, true),
            Failure::Refused => (self.on.reset, stake.replayable),
            Failure::Reset => (self.on.reset, stake.safe()),
            Failure::Timeout => (self.on.timeout, stake.safe()),
            Failure::Invalid => (false, stake.safe()),
            Failure::Status(status, _) => (self.on.statuses.contains(status), stake.safe()),
        };
        if !asked {
            return Verdict::Stop(Stop::NotRetried);
        }
        if !safe {
            return Verdict::Stop(Stop::Unsafe);
        }
        // With every backend tried (one behind a cloud load balancer, say), only a reset goes
        // to one tried before, as with Envoy: on a lossy link a reset is rarely the backend's,
        // while a refused connect, a timeout or a 503 would only hit it again.
        let again = at.untried > 0 || matches!(failure, Failure::Reset | Failure::Refused);
        if at.tries >= self.tries || !again {
            return Verdict::Stop(Stop::NoTriesLeft);
        }
        let ceiling = self
            .backoff
            .saturating_mul(1 << at.tries.saturating_sub(1).min(16))
            .min(self.max_backoff);
        let backoff = ceiling.mul_f64(jitter.clamp(0.0, 1.0));
        let wait = match failure {
            Failure::Status(_, Some(after)) => {
                if after > at.remaining.unwrap_or(self.max_retry_after) {
                    return Verdict::Stop(Stop::NoTimeLeft);
                }
                after.max(backoff)
            }
            _ => backoff,
        };
        if at.remaining.is_some_and(|left| wait >= left) {
            return Verdict::Stop(Stop::NoTimeLeft);
        }
        Verdict::Retry(wait)
    }
}

/// A `Retry-After` value (delay-seconds or an HTTP date) as a wait from now.
pub fn retry_after(value: &[u8]) -> Option<Duration> {
    let text = std::str::from_utf8(value).ok()?.trim();
    if let Ok(seconds) = text.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = httpdate::parse_http_date(text).ok()?;
    Some(
        at.duration_since(std::time::SystemTime::now())
            .unwrap_or_default(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn policy() -> RetryPolicy {
        RetryPolicy {
            tries: 3,
            on: RetryOn {
                connect: true,
                reset: true,
                timeout: false,
                statuses: StatusSet {
                    unavailable: true,
                    ..StatusSet::default()
                },
            },
            backoff: 25 * MS,
            max_backoff: 250 * MS,
            max_retry_after: Duration::from_secs(10),
        }
    }

    const SAFE: Stake = Stake {
        idempotent: true,
        replayable: true,
    };
    const POST: Stake = Stake {
        idempotent: false,
        replayable: true,
    };
    const OPEN: Standing = Standing {
        tries: 1,
        untried: 2,
        remaining: None,
    };

    #[test]
    fn a_connect_failure_is_retried_for_any_method() {
        assert_eq!(
            policy().decide(Failure::Connect, POST, OPEN, 1.0),
            Verdict::Retry(25 * MS)
        );
    }

    #[test]
    fn what_reached_the_backend_is_retried_only_when_safe() {
        let p = policy();
        assert_eq!(
            p.decide(Failure::Reset, POST, OPEN, 0.5),
            Verdict::Stop(Stop::Unsafe)
        );
        let streamed = Stake {
            idempotent: true,
            replayable: false,
        };
        assert_eq!(
            p.decide(Failure::Reset, streamed, OPEN, 0.5),
            Verdict::Stop(Stop::Unsafe)
        );
        assert!(matches!(
            p.decide(Failure::Reset, SAFE, OPEN, 0.5),
            Verdict::Retry(_)
        ));
        assert_eq!(
            p.decide(Failure::Timeout, SAFE, OPEN, 0.5),
            Verdict::Stop(Stop::NotRetried)
        );
        // A stream refused unprocessed goes again whatever its method, if its body is held.
        assert!(matches!(
            p.decide(Failure::Refused, POST, OPEN, 0.5),
            Verdict::Retry(_)
        ));
        assert_eq!(
            p.decide(Failure::Refused, streamed, OPEN, 0.5),
            Verdict::Stop(Stop::Unsafe)
        );
        assert_eq!(
            p.decide(Failure::Status(502, None), SAFE, OPEN, 0.5),
            Verdict::Stop(Stop::NotRetried)
        );
    }

    #[test]
    fn back_off_doubles_up_to_its_ceiling_and_tries_run_out() {
        let p = policy();
        let at = |tries| Standing {
            tries,
            untried: 9,
            remaining: None,
        };
        assert_eq!(
            p.decide(Failure::Connect, SAFE, at(2), 1.0),
            Verdict::Retry(50 * MS)
        );
        let long = RetryPolicy { tries: 5, ..p };
        assert_eq!(
            long.decide(Failure::Connect, SAFE, at(4), 1.0),
            Verdict::Retry(200 * MS)
        );
        assert_eq!(
            long.decide(Failure::Connect, SAFE, at(4), 0.0),
            Verdict::Retry(Duration::ZERO)
        );
        assert_eq!(
            p.decide(Failure::Connect, SAFE, at(3), 1.0),
            Verdict::Stop(Stop::NoTriesLeft)
        );
        // Every backend tried: a reset goes to one of them again, nothing else does.
        let none_left = Standing { untried: 0, ..OPEN };
        assert_eq!(
            p.decide(Failure::Connect, SAFE, none_left, 1.0),
            Verdict::Stop(Stop::NoTriesLeft)
        );
        for again in [Failure::Reset, Failure::Refused] {
            assert_eq!(
                p.decide(again, SAFE, none_left, 0.0),
                Verdict::Retry(Duration::ZERO)
            );
        }
        assert_eq!(
            p.decide(Failure::Invalid, SAFE, OPEN, 0.0),
            Verdict::Stop(Stop::NotRetried)
        );
    }

    #[test]
    fn retry_after_is_waited_for_unless_it_outlasts_the_time_left() {
        let p = policy();
        let after = Failure::Status(503, Some(Duration::from_secs(2)));
        assert_eq!(
            p.decide(after, SAFE, OPEN, 1.0),
            Verdict::Retry(Duration::from_secs(2))
        );
        let short = Standing {
            remaining: Some(Duration::from_secs(1)),
            ..OPEN
        };
        assert_eq!(
            p.decide(after, SAFE, short, 1.0),
            Verdict::Stop(Stop::NoTimeLeft)
        );
        let far = Failure::Status(503, Some(Duration::from_secs(60)));
        assert_eq!(
            p.decide(far, SAFE, OPEN, 1.0),
            Verdict::Stop(Stop::NoTimeLeft)
        );
    }

    #[test]
    fn retry_after_reads_seconds_and_dates() {
        assert_eq!(retry_after(b"2"), Some(Duration::from_secs(2)));
        assert_eq!(
            retry_after(b"Wed, 21 Oct 2015 07:28:00 GMT"),
            Some(Duration::ZERO)
        );
        assert_eq!(retry_after(b"soon"), None);
    }
}
