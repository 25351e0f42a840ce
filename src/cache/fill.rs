//! A response on its way from the backend to the client, teed into the store: its head judged
//! (`fresh`) and kept without the fields of its connection and framing, its body copied as it
//! passes, stored once it ended whole. A body that breaks off or grows past the route's
//! `max_object_bytes` is dropped; the client's copy is never held back for it.

use std::sync::Arc;
use std::time::{Instant, SystemTime};

use bytes::BytesMut;

use super::fresh::{judge, Asked, Freshness, NotStored};
use super::key::{variant, vary_names, Taken};
use super::lock::FillLock;
use super::store::{Object, Requested, Store};
use super::Rules;
use crate::semantics::fields::{content_length, field, is_hop_by_hop, nominated, Field};

/// One response being stored.
#[derive(Debug)]
pub struct Fill {
    primary: String,
    requested: Requested,
    rules: Arc<Rules>,
    asked: Asked,
    /// The request's fields, for the key of a response that varies.
    request: Taken,
    /// Held while the fetch runs: others wait for it.
    _lock: Option<FillLock>,
    filling: Option<Filling>,
    /// The stored response this fetch revalidates (its validators go to the backend) or
    /// stands in for when the backend fails (`stale-if-error`).
    stale: Option<Arc<Object>>,
}

#[derive(Debug)]
struct Filling {
    status: u16,
    fields: Vec<u8>,
    vary: Vec<Box<str>>,
    fresh: Freshness,
    body: BytesMut,
    stored_at: Instant,
}

impl Fill {
    /// A fill for the response to a request with `primary` key under `rules`; `lock` is the
    /// key's, when this request fetches for others too.
    pub fn new(
        primary: String,
        requested: Requested,
        rules: Arc<Rules>,
        asked: Asked,
        request: Taken,
        lock: Option<FillLock>,
    ) -> Self {
        Self {
            primary,
            requested,
            rules,
            asked,
            request,
            _lock: lock,
            filling: None,
            stale: None,
        }
    }

    /// This fetch revalidates `stale`.
    pub fn revalidating(mut self, stale: Arc<Object>) -> Self {
        self.stale = Some(stale);
        self
    }

    /// The stored response being revalidated.
    pub fn stale(&self) -> Option<&Arc<Object>> {
        self.stale.as_ref()
    }

    /// The conditional fields for the backend (`If-None-Match`, `If-Modified-Since`) of the
    /// response being revalidated.
    pub fn conditions(&self, mut emit: impl FnMut(&'static str, &[u8])) {
        let Some(stale) = &self.stale else { return };
        if let Some(etag) = stale.field("etag") {
            emit("if-none-match", etag);
        }
        if let Some(modified) = stale.field("last-modified") {
            emit("if-modified-since", modified);
        }
    }

    /// A `304 Not Modified` with `fields` answered the revalidation: the stored response with
    /// its fields updated (RFC 9111 4.3.4), stored again when it still may be.
    pub fn refresh<'a>(
        &self,
        fields: impl Iterator<Item = (&'a str, &'a [u8])> + Clone,
        store: &Store,
    ) -> Option<Arc<Object>> {
        let stale = self.stale.as_ref()?;
        let updated = |name: &str| fields.clone().any(|(n, _)| n.eq_ignore_ascii_case(name));
        let mut kept = Vec::with_capacity(stale.fields.len() + 256);
        for (name, value) in stale.fields() {
            if !updated(name) {
                push_line(&mut kept, name, value);
            }
        }
        for (name, value) in fields.filter(|(n, _)| stored_field(n)) {
            push_line(&mut kept, name, value);
        }
        let object = Object {
            key: stale.key.clone(),
            status: stale.status,
            fields: kept.into(),
            body: stale.body.clone(),
            stored_at: Instant::now(),
            fresh: stale.fresh,
            requested: stale.requested.clone(),
        };
        let judged = judge(
            object.status,
            object.fields(),
            self.asked,
            &self.rules,
            SystemTime::now(),
        );
        let Ok(fresh) = judged else {
            return Some(Arc::new(object));
        };
        let object = Object { fresh, ..object };
        let vary = vary_names(
            object
                .fields()
                .filter(|(n, _)| n.eq_ignore_ascii_case("vary"))
                .map(|(_, v)| v),
        );
        Some(store.put(&self.primary, &vary, object))
    }

    /// The backend's final response head: `Ok` when it is being stored.
    pub fn head<'a>(
        &mut self,
        status: u16,
        fields: impl Iterator<Item = (&'a str, &'a [u8])> + Clone,
    ) -> Result<(), NotStored> {
        let fresh = judge(
            status,
            fields.clone(),
            self.asked,
            &self.rules,
            SystemTime::now(),
        )?;
        let connection = fields
            .clone()
            .filter(|(n, _)| field(n) == Field::Connection)
            .map(|(_, v)| v);
        let mut kept = Vec::with_capacity(512);
        let mut vary = Vec::new();
        for (name, value) in fields {
            match field(name) {
                Field::ContentLength
                    if content_length(value) > Some(self.rules.max_object_bytes) =>
                {
                    return Err(NotStored::TooLarge)
                }
                Field::ContentLength | Field::TransferEncoding | Field::XRequestId => continue,
                f if is_hop_by_hop(f) || nominated(connection.clone(), name) => continue,
                _ if name.eq_ignore_ascii_case("age") => continue,
                _ => {}
            }
            if name.eq_ignore_ascii_case("vary") {
                vary.push(value);
            }
            kept.extend_from_slice(name.as_bytes());
            kept.extend_from_slice(b": ");
            kept.extend_from_slice(value);
            kept.extend_from_slice(b"\r\n");
        }
        self.filling = Some(Filling {
            status,
            fields: kept,
            vary: vary_names(vary.into_iter()),
            fresh,
            body: BytesMut::new(),
            stored_at: Instant::now(),
        });
        Ok(())
    }

    /// Body payload as it passes.
    pub fn data(&mut self, bytes: &[u8]) {
        let max = self.rules.max_object_bytes;
        if let Some(f) = &mut self.filling {
            if (f.body.len() + bytes.len()) as u64 > max {
                self.filling = None;
            } else {
                f.body.extend_from_slice(bytes);
            }
        }
    }

    /// The body ended whole: the response is stored (when it is being); whether it was.
    pub fn finish(self, store: &Store) -> bool {
        let Some(f) = self.filling else {
            return false;
        };
        let key = match f.vary.is_empty() {
            true => self.primary.clone(),
            false => variant(&self.primary, &f.vary, &self.request),
        };
        let object = Object {
            key,
            status: f.status,
            fields: f.fields.into(),
            body: f.body.freeze(),
            stored_at: f.stored_at,
            fresh: f.fresh,
            requested: self.requested,
        };
        store.put(&self.primary, &f.vary, object);
        true
    }
}

/// Whether a response field is kept with a stored response: not those of its connection, its
/// framing, its `Age` (the cache sends its own) or its request id.
fn stored_field(name: &str) -> bool {
    match field(name) {
        Field::ContentLength | Field::TransferEncoding | Field::XRequestId => false,
        f if is_hop_by_hop(f) => false,
        _ => !name.eq_ignore_ascii_case("age"),
    }
}

fn push_line(out: &mut Vec<u8>, name: &str, value: &[u8]) {
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}
