//! Response compression, decided once for every engine: which content coding a client prefers
//! (`Accept-Encoding` with q-values, RFC 9110 12.5.3), and whether a backend's response may be
//! compressed at all. The encoders themselves are `proxy::encoder`'s.

use super::fields::list_items;
use super::negotiate::weighted;

/// A content coding menshen can apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Coding {
    /// `gzip` (flate2).
    Gzip,
    /// `br` (brotli).
    Brotli,
    /// `zstd`.
    Zstd,
}

impl Coding {
    /// The token of `Content-Encoding` and `Accept-Encoding`.
    pub fn token(self) -> &'static str {
        match self {
            Coding::Gzip => "gzip",
            Coding::Brotli => "br",
            Coding::Zstd => "zstd",
        }
    }

    /// The coding a token names (any case).
    pub fn from_token(token: &str) -> Option<Self> {
        [Coding::Gzip, Coding::Brotli, Coding::Zstd]
            .into_iter()
            .find(|c| token.eq_ignore_ascii_case(c.token()))
    }
}

/// Why a response went out as the backend sent it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Skip {
    /// A `HEAD` request: there is no body.
    Head,
    /// A `Range` request: byte ranges are of the backend's representation.
    Range,
    /// An upgrade request.
    Upgrade,
    /// An HTTP/1.0 client: a compressed body would be delimited by the connection's close,
    /// where a body the backend breaks off looks whole (nginx's `gzip_http_version 1.1`).
    Http10,
    /// 1xx, 204, 206 or 304: no body, or a part of one.
    Status,
    /// The backend's `Content-Encoding` says it is encoded already.
    Encoded,
    /// `Cache-Control: no-transform`.
    NoTransform,
    /// A gRPC response (`application/grpc`, `application/grpc+proto`...): its messages carry
    /// their own compression (`grpc-encoding`), and a gRPC client does not decode
    /// `Content-Encoding`. gRPC-web is not gRPC: browsers decode it like any response.
    Grpc,
    /// A `Content-Type` the site does not compress.
    Type,
    /// A `Content-Length` under the site's `min_bytes`.
    Small,
    /// The client accepts none of the site's codings.
    NotAccepted,
    /// The encoder could not start (out of memory).
    Encoder,
}

impl Skip {
    /// How the access log names the outcome, e.g. `skipped:range`.
    pub fn as_str(self) -> &'static str {
        match self {
            Skip::Head => "skipped:head",
            Skip::Range => "skipped:range",
            Skip::Upgrade => "skipped:upgrade",
            Skip::Http10 => "skipped:http/1.0",
            Skip::Status => "skipped:status",
            Skip::Encoded => "skipped:encoded",
            Skip::NoTransform => "skipped:no-transform",
            Skip::Grpc => "skipped:grpc",
            Skip::Type => "skipped:type",
            Skip::Small => "skipped:small",
            Skip::NotAccepted => "skipped:not-accepted",
            Skip::Encoder => "skipped:encoder",
        }
    }
}

/// A site's compression of responses its backends did not compress.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Compression {
    /// The codings offered; among those a client likes equally, the first wins.
    pub codings: Vec<Coding>,
    /// Media types compressed (lowercase), `text/*` for a whole type.
    pub types: Vec<String>,
    /// Responses with a `Content-Length` under this are sent as they are.
    pub min_bytes: u64,
    /// gzip level, 1-9.
    pub gzip_level: u32,
    /// Brotli quality, 0-11.
    pub brotli_level: u32,
    /// zstd level, 1-22.
    pub zstd_level: u32,
}

/// What a request allows, known before the response: a coding (`None`: the client accepts
/// none of the site's), or why nothing will be compressed whatever the response.
pub type Asked = Result<Option<Coding>, Skip>;

/// A request's compression, as far as it got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compressing {
    /// The request is known, its response not yet.
    /// What the request allows.
    Asked(Asked),
    /// The response's head was sent: with this coding, or not and why.
    /// What was done.
    Decided(Result<Coding, Skip>),
}

/// A response's compression: the coding or why none, and whether the choice depended on
/// `Accept-Encoding` (so caches are told `Vary: Accept-Encoding`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    /// The coding applied, or why none was.
    pub outcome: Result<Coding, Skip>,
    /// `Vary: Accept-Encoding` is sent.
    pub vary: bool,
}

/// The parts of a backend's response head the decision reads.
#[derive(Debug, Default, Clone, Copy)]
pub struct ResponseFacts<'a> {
    /// Status code.
    pub status: u16,
    /// `Content-Type`.
    pub content_type: Option<&'a [u8]>,
    /// `Content-Encoding` (identity aside).
    pub encoded: bool,
    /// `Cache-Control` holds `no-transform`.
    pub no_transform: bool,
    /// `Content-Length`.
    pub length: Option<u64>,
}

impl<'a> ResponseFacts<'a> {
    /// Reads the fields that matter from a response head's fields.
    pub fn read(status: u16, fields: impl Iterator<Item = (&'a str, &'a [u8])>) -> Self {
        let mut facts = ResponseFacts {
            status,
            ..Self::default()
        };
        for (name, value) in fields {
            let is = |n: &str| name.eq_ignore_ascii_case(n);
            if is("content-type") {
                facts.content_type = Some(value);
            } else if is("content-encoding") {
                facts.encoded |= list_items(value).any(|c| !c.eq_ignore_ascii_case(b"identity"));
            } else if is("cache-control") {
                facts.no_transform |=
                    list_items(value).any(|d| d.eq_ignore_ascii_case(b"no-transform"));
            } else if is("content-length") {
                facts.length = std::str::from_utf8(value).ok().and_then(|v| v.parse().ok());
            }
        }
        facts
    }
}

impl Compression {
    /// One line for `/status` and `menshen check`, e.g. `zstd, br, gzip for text/*, ... from
    /// 1024 bytes (gzip 6, br 4, zstd 3)`.
    pub fn describe(&self) -> String {
        let codings: Vec<&str> = self.codings.iter().map(|c| c.token()).collect();
        format!(
            "{} for {} from {} bytes (gzip {}, br {}, zstd {})",
            codings.join(", "),
            self.types.join(", "),
            self.min_bytes,
            self.gzip_level,
            self.brotli_level,
            self.zstd_level
        )
    }

    /// What a request allows: nothing for `HEAD`, ranges and upgrades, else the client's
    /// preferred coding among the site's.
    pub fn asked(&self, head: bool, range: bool, upgrade: bool, accept: Option<&[u8]>) -> Asked {
        match (head, range, upgrade) {
            (true, _, _) => Err(Skip::Head),
            (_, true, _) => Err(Skip::Range),
            (_, _, true) => Err(Skip::Upgrade),
            _ => Ok(accept.and_then(|a| preferred(a, &self.codings))),
        }
    }

    /// Whether the response is compressed, and with what.
    pub fn decide(&self, asked: Asked, resp: &ResponseFacts<'_>) -> Decision {
        let skip = |s| Decision {
            outcome: Err(s),
            vary: false,
        };
        if let Err(s) = asked {
            return skip(s);
        }
        if matches!(resp.status, 100..=199 | 204 | 206 | 304) {
            return skip(Skip::Status);
        }
        if resp.encoded {
            return skip(Skip::Encoded);
        }
        if resp.no_transform {
            return skip(Skip::NoTransform);
        }
        let essence = resp.content_type.and_then(essence);
        if essence.is_some_and(is_grpc) {
            return skip(Skip::Grpc);
        }
        if !essence.is_some_and(|t| self.compresses(t)) {
            return skip(Skip::Type);
        }
        // An empty body stays empty: a coding's header alone would be longer.
        if resp.length.is_some_and(|n| n == 0 || n < self.min_bytes) {
            return skip(Skip::Small);
        }
        match asked {
            Err(s) => skip(s),
            Ok(None) => Decision {
                outcome: Err(Skip::NotAccepted),
                vary: true,
            },
            Ok(Some(c)) => Decision {
                outcome: Ok(c),
                vary: true,
            },
        }
    }

    /// Whether a media type (`Content-Type`'s essence) is among the site's types.
    fn compresses(&self, essence: &str) -> bool {
        self.types.iter().any(|t| match t.strip_suffix("/*") {
            Some(main) => essence
                .split_once('/')
                .is_some_and(|(m, _)| m.eq_ignore_ascii_case(main)),
            None => essence.eq_ignore_ascii_case(t),
        })
    }
}

/// A `Content-Type` value's media type, parameters and spaces taken off.
fn essence(content_type: &[u8]) -> Option<&str> {
    let essence = content_type.split(|&b| b == b';').next()?.trim_ascii();
    std::str::from_utf8(essence).ok()
}

/// Whether a media type is gRPC's: `application/grpc` with or without a `+format` suffix.
fn is_grpc(essence: &str) -> bool {
    let Some((main, sub)) = essence.split_once('/') else {
        return false;
    };
    let format = sub.split_once('+').map_or(sub, |(f, _)| f);
    main.eq_ignore_ascii_case("application") && format.eq_ignore_ascii_case("grpc")
}

/// The client's preferred coding among `offered` by `Accept-Encoding`: the highest q-value,
/// ties to the earlier in `offered`; `*` stands for any coding not named; q=0 refuses.
pub fn preferred(accept: &[u8], offered: &[Coding]) -> Option<Coding> {
    let mut named: [Option<u16>; 3] = [None; 3];
    let mut star = None;
    for (token, q) in weighted(accept) {
        if token == b"*" {
            star = Some(q);
        } else if let Some(c) = std::str::from_utf8(token).ok().and_then(Coding::from_token) {
            named[c as usize] = Some(q);
        }
    }
    let mut best: Option<(u16, Coding)> = None;
    for &c in offered {
        let q = named[c as usize].or(star).unwrap_or(0);
        if q > 0 && best.is_none_or(|(b, _)| q > b) {
            best = Some((q, c));
        }
    }
    best.map(|(_, c)| c)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [Coding; 3] = [Coding::Zstd, Coding::Brotli, Coding::Gzip];

    #[test]
    fn the_client_s_q_values_choose_and_the_site_s_order_breaks_ties() {
        let pick = |a: &str| preferred(a.as_bytes(), &ALL);
        assert_eq!(pick("gzip, deflate, br, zstd"), Some(Coding::Zstd));
        assert_eq!(pick("gzip;q=1, br;q=0.8"), Some(Coding::Gzip));
        assert_eq!(pick("br;q=0.5, gzip;q=0.9, zstd;q=0"), Some(Coding::Gzip));
        assert_eq!(pick("identity"), None);
        assert_eq!(pick("*;q=0.1, zstd;q=0"), Some(Coding::Brotli));
        assert_eq!(pick("GZIP;Q=0.3"), Some(Coding::Gzip));
        assert_eq!(
            pick("gzip;q=2, br;q=x"),
            None,
            "malformed q-values count as absent"
        );
        assert_eq!(
            preferred(b"zstd, gzip", &[Coding::Gzip]),
            Some(Coding::Gzip)
        );
    }

    fn site() -> Compression {
        Compression {
            codings: ALL.to_vec(),
            types: vec!["text/*".into(), "application/json".into()],
            min_bytes: 100,
            gzip_level: 6,
            brotli_level: 4,
            zstd_level: 3,
        }
    }

    #[test]
    fn only_fresh_whole_listed_bodies_are_compressed() {
        let c = site();
        let ok = ResponseFacts {
            status: 200,
            content_type: Some(b"Text/HTML; charset=utf-8"),
            length: Some(5000),
            ..ResponseFacts::default()
        };
        let gzip = Ok(Some(Coding::Gzip));
        assert_eq!(c.decide(gzip, &ok).outcome, Ok(Coding::Gzip));
        let with = |f: &dyn Fn(&mut ResponseFacts<'static>)| {
            let mut r = ok;
            f(&mut r);
            c.decide(gzip, &r).outcome
        };
        assert_eq!(with(&|r| r.status = 206), Err(Skip::Status));
        assert_eq!(with(&|r| r.status = 304), Err(Skip::Status));
        assert_eq!(with(&|r| r.encoded = true), Err(Skip::Encoded));
        assert_eq!(with(&|r| r.no_transform = true), Err(Skip::NoTransform));
        assert_eq!(
            with(&|r| r.content_type = Some(b"image/png")),
            Err(Skip::Type)
        );
        assert_eq!(with(&|r| r.length = Some(99)), Err(Skip::Small));
        let listed = Compression {
            types: vec!["application/*".into()],
            ..c.clone()
        };
        for grpc in [&b"application/grpc"[..], b"Application/gRPC+proto; x=1"] {
            let r = ResponseFacts {
                content_type: Some(grpc),
                ..ok
            };
            assert_eq!(listed.decide(gzip, &r).outcome, Err(Skip::Grpc));
        }
        let web = ResponseFacts {
            content_type: Some(b"application/grpc-web-text"),
            ..ok
        };
        assert_eq!(listed.decide(gzip, &web).outcome, Ok(Coding::Gzip));
        assert_eq!(with(&|r| r.length = None), Ok(Coding::Gzip));
        let refused = c.decide(Ok(None), &ok);
        assert_eq!(refused.outcome, Err(Skip::NotAccepted));
        assert!(refused.vary, "a cache must not serve this to a gzip client");
        assert_eq!(c.asked(false, true, false, Some(b"gzip")), Err(Skip::Range));
        assert_eq!(c.asked(true, false, false, Some(b"gzip")), Err(Skip::Head));
    }

    #[test]
    fn the_response_s_fields_are_read_whatever_their_case() {
        let fields = [
            ("Content-Encoding", &b"identity"[..]),
            ("cache-control", b"public, No-Transform"),
            ("CONTENT-LENGTH", b"12"),
        ];
        let r = ResponseFacts::read(200, fields.into_iter());
        assert!(!r.encoded);
        assert!(r.no_transform);
        assert_eq!(r.length, Some(12));
    }
}
