//! A stored response as it answers one request: its head (HTTP/1, which either engine's head
//! writer takes) with its `Age` and, for a `Range` request, the one part asked for
//! (`cache::range`), and that part of its body.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::http1::{push_field, status_line_for};
use crate::cache::key::RequestFields;
use crate::cache::range::{if_range_matches, part, Part};
use crate::cache::Object;

/// A stored response that answers a request.
pub(in crate::proxy) struct Hit {
    pub(in crate::proxy) object: Arc<Object>,
    /// Its age at the lookup.
    pub(in crate::proxy) age: Duration,
    /// What of it the request gets.
    part: Part,
}

impl Hit {
    /// `object`, aged now, whole.
    pub(in crate::proxy) fn of(object: Arc<Object>) -> Self {
        let age = object.age(Instant::now());
        Hit {
            object,
            age,
            part: Part::Whole,
        }
    }

    /// The part of a `200` that the request's `Range` (and `If-Range`) ask for.
    pub(in crate::proxy) fn ranged(mut self, fields: &dyn RequestFields) -> Self {
        if self.object.status != 200 {
            return self;
        }
        let mut range = Vec::new();
        fields.values("range", &mut range);
        if range.is_empty() {
            return self;
        }
        let mut if_range = Vec::new();
        fields.values("if-range", &mut if_range);
        let o = &self.object;
        let matches = if_range.is_empty()
            || if_range_matches(&if_range, o.field("etag"), o.field("last-modified"));
        self.part = part(Some(&range), matches, o.body.len() as u64);
        self
    }

    /// Its status: the stored one, or 206 or 416 for a range.
    pub(in crate::proxy) fn status(&self) -> u16 {
        match self.part {
            Part::Whole => self.object.status,
            Part::Bytes(..) => 206,
            Part::Unsatisfiable => 416,
        }
    }

    /// The body the request gets.
    pub(in crate::proxy) fn body(&self) -> Bytes {
        let body = &self.object.body;
        match self.part {
            Part::Whole => body.clone(),
            Part::Bytes(first, last) => body.slice(first as usize..=last as usize),
            Part::Unsatisfiable => Bytes::new(),
        }
    }

    /// Its response head as HTTP/1 (what `with_response` parses for either engine's writer):
    /// the stored fields, its length (and range) and its `Age`.
    pub(in crate::proxy) fn head(&self) -> Vec<u8> {
        let o = &self.object;
        let mut out = Vec::with_capacity(o.fields.len() + 128);
        let status = self.status();
        status_line_for(&mut out, status, None);
        out.extend_from_slice(&o.fields);
        let mut number = itoa::Buffer::new();
        let total = number.format(o.body.len()).to_owned();
        match self.part {
            Part::Whole if o.status == 200 && o.field("accept-ranges").is_none() => {
                push_field(&mut out, b"accept-ranges", b"bytes");
            }
            Part::Whole => {}
            Part::Bytes(first, last) => {
                let range = format!("bytes {first}-{last}/{total}");
                push_field(&mut out, b"content-range", range.as_bytes());
            }
            Part::Unsatisfiable => {
                push_field(
                    &mut out,
                    b"content-range",
                    format!("bytes */{total}").as_bytes(),
                );
            }
        }
        if status != 204 {
            let length = number.format(self.body().len());
            push_field(&mut out, b"content-length", length.as_bytes());
        }
        let age = number.format(self.age.as_secs());
        push_field(&mut out, b"age", age.as_bytes());
        out.extend_from_slice(b"\r\n");
        out
    }
}
