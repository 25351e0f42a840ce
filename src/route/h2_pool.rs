//! HTTP/2 connections to backends of upstreams with `http2 = true`, one per backend, kind and
//! worker thread, each carrying many streams at once. The engine takes a sender and asks it
//! to be ready; a connection the backend closed (or sent GOAWAY on) fails that, is forgotten,
//! and the next request makes a new one. The connection itself runs as a task of the thread.

use std::cell::RefCell;
use std::net::SocketAddr;

use bytes::Bytes;
use h2::client::SendRequest;
use rustc_hash::FxHashMap;

use super::pool::Kind;

struct Entry {
    group: u64,
    name: Box<str>,
    send: SendRequest<Bytes>,
}

thread_local! {
    // Keys are configured backend addresses (nothing a client chooses): a fast hash is safe.
    static SENDERS: RefCell<FxHashMap<SocketAddr, Vec<Entry>>> = RefCell::new(FxHashMap::default());
}

/// A sender on this thread's connection of `kind` to `addr`, if there is one.
pub fn take(addr: SocketAddr, kind: Kind<'_>) -> Option<SendRequest<Bytes>> {
    SENDERS.with(|senders| {
        let senders = senders.borrow();
        let entry = senders
            .get(&addr)?
            .iter()
            .find(|e| e.group == kind.group && *e.name == *kind.name)?;
        Some(entry.send.clone())
    })
}

/// Keeps `send` as this thread's connection of `kind` to `addr` (replacing an older one).
pub fn put(addr: SocketAddr, kind: Kind<'_>, send: SendRequest<Bytes>) {
    SENDERS.with(|senders| {
        let mut senders = senders.borrow_mut();
        let list = senders.entry(addr).or_default();
        list.retain(|e| !(e.group == kind.group && *e.name == *kind.name));
        list.push(Entry {
            group: kind.group,
            name: kind.name.into(),
            send,
        });
    });
}

/// Forgets this thread's connection of `kind` to `addr` (it failed).
pub fn forget(addr: SocketAddr, kind: Kind<'_>) {
    SENDERS.with(|senders| {
        let mut senders = senders.borrow_mut();
        if let Some(list) = senders.get_mut(&addr) {
            list.retain(|e| !(e.group == kind.group && *e.name == *kind.name));
            if list.is_empty() {
                senders.remove(&addr);
            }
        }
    });
}
