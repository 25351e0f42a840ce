//! Response compression as both engines run it: what the request allows (`ask`, when the
//! request is located), what the backend's response head allows (`decide`), the encoder, and
//! the outcome the access log names. The rules are `semantics::coding`'s.

use super::ctx::Ctx;
use super::encoder::{Coded, Encoder};
use crate::semantics::coding::{Compressing, Compression, Decision, ResponseFacts, Skip};

impl Ctx {
    /// The request's site's compression settings, if it compresses.
    pub(super) fn site_compression(&self) -> Option<&Compression> {
        let site = self.snapshot.as_ref()?.site_policy(self.site?)?;
        site.compression.as_ref()
    }

    /// Notes what the request allows of its response's compression (nothing when its site
    /// does not compress); `field` looks a request field up by its lowercase name.
    pub(super) fn ask_compression<'h>(
        &mut self,
        head: bool,
        upgrade: bool,
        field: impl Fn(&str) -> Option<&'h [u8]>,
    ) {
        let asked = self.site_compression().map(|c| {
            let range = field("range").is_some();
            c.asked(head, range, upgrade, field("accept-encoding"))
        });
        self.compression = asked.map(Compressing::Asked);
    }

    /// Takes back what `ask_compression` allowed, for `why`.
    pub(super) fn refuse_compression(&mut self, why: Skip) {
        if let Some(Compressing::Asked(asked)) = &mut self.compression {
            *asked = Err(why);
        }
    }

    /// Whether the response whose head has `status` and `fields` is compressed, with the
    /// encoder for its body when it is; `None` when the site does not compress or the request
    /// was never asked about.
    pub(super) fn compression_for<'f>(
        &self,
        status: u16,
        fields: impl Iterator<Item = (&'f str, &'f [u8])>,
    ) -> Option<(Decision, Option<Encoder>)> {
        let Some(Compressing::Asked(asked)) = self.compression else {
            return None;
        };
        let site = self.site_compression()?;
        let mut decision = site.decide(asked, &ResponseFacts::read(status, fields));
        let encoder = match decision.outcome {
            Ok(coding) => match Encoder::new(coding, site) {
                Ok(encoder) => Some(encoder),
                Err(_) => {
                    decision.outcome = Err(Skip::Encoder);
                    None
                }
            },
            Err(_) => None,
        };
        Some((decision, encoder))
    }

    /// The compression of an HTTP/2 backend's response (`status`, `fields`), decided as for an
    /// HTTP/1 backend's and noted: the decision for the head's edits and the body's coder. A
    /// stream that ends with its head (`empty`) has the empty body an HTTP/1 backend's
    /// `Content-Length: 0` says.
    pub(super) fn compress_h2(
        &mut self,
        status: u16,
        fields: &http::HeaderMap,
        empty: bool,
    ) -> (Option<Decision>, Coded) {
        let fields = fields.iter().map(|(n, v)| (n.as_str(), v.as_bytes()));
        let length = empty.then_some(("content-length", &b"0"[..]));
        let compression = self.compression_for(status, fields.chain(length));
        let decision = compression.as_ref().map(|c| c.0);
        self.note_compression(decision);
        (decision, Coded::new(compression.and_then(|c| c.1)))
    }

    /// Notes the decision sent with the response head.
    pub(super) fn note_compression(&mut self, decision: Option<Decision>) {
        if let Some(d) = decision {
            self.compression = Some(Compressing::Decided(d.outcome));
        }
    }

    /// What the access log says of the response's compression, e.g. `gzip` or
    /// `skipped:range`.
    pub(super) fn compression_outcome(&self) -> Option<&'static str> {
        match self.compression? {
            Compressing::Decided(Ok(coding)) => Some(coding.token()),
            Compressing::Decided(Err(skip)) | Compressing::Asked(Err(skip)) => Some(skip.as_str()),
            Compressing::Asked(Ok(_)) => None,
        }
    }
}
