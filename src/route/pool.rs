//! Idle keep-alive connections to backends (plain and TLS), for the HTTP/1 loop (`proxy::h1`).
//!
//! One pool per worker thread: with pingora's no-steal runtime a worker thread is a runtime of
//! its own, and a socket is best used by the runtime whose reactor it is registered with. A
//! thread-local pool needs no lock and no task per idle connection (pingora-core's pool spawns
//! one to watch each released connection, which measured about 2 µs per request).
//!
//! An idle connection the backend closed is noticed when it is taken: it is readable (end of
//! stream, or bytes it should not have sent). The reactor may not have seen the close yet, so
//! the loop also retries an idempotent request whose reused connection fails before any
//! response byte. Every few seconds a take or a release also sweeps the whole pool, so
//! connections to backends no longer used (a reload, a DNS change) are closed once their idle
//! time is up or their backend closes them. A worker thread that serves nothing keeps its idle
//! connections (at most 1,024) until it serves again.
//!
//! A TLS connection is kept under the name it was verified for and its upstream's group (the
//! roots it was verified against): it is reused only for a request that would have made the
//! same handshake.

use std::cell::RefCell;
use std::net::SocketAddr;

use std::time::{Duration, Instant};

use super::upstream_conn::UpstreamConn;
use rustc_hash::FxHashMap;

/// Idle connections kept per backend and worker thread; the oldest goes first.
const MAX_IDLE_PER_BACKEND: usize = 128;
/// Idle connections kept per worker thread, all backends together.
const MAX_IDLE: usize = 1024;
/// How often a release sweeps the whole pool.
const SWEEP_EVERY: Duration = Duration::from_secs(5);

/// Which connections to a backend address a request may reuse: plain ones (group 0, no name),
/// or TLS ones made for this name by an upstream of this group.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Kind<'a> {
    /// The upstream's TLS group (0: plain).
    pub group: u64,
    /// The server name of the handshake.
    pub name: &'a str,
}

impl Kind<'_> {
    /// Plain HTTP.
    pub const PLAIN: Kind<'static> = Kind { group: 0, name: "" };
}

struct Idle {
    stream: UpstreamConn,
    group: u64,
    name: Box<str>,
    /// When it is too old to use (never, without an idle timeout).
    expires: Option<Instant>,
}

impl Idle {
    fn usable(&mut self, now: Instant) -> bool {
        self.expires.is_none_or(|at| now < at) && self.stream.still_open()
    }

    fn is(&self, kind: Kind<'_>) -> bool {
        self.group == kind.group && *self.name == *kind.name
    }
}

struct Pool {
    // Keys are configured backend addresses (nothing a client chooses): a fast hash is safe.
    idle: FxHashMap<SocketAddr, Vec<Idle>>,
    count: usize,
    next_sweep: Instant,
}

thread_local! {
    static POOL: RefCell<Pool> = RefCell::new(Pool {
        idle: FxHashMap::default(),
        count: 0,
        next_sweep: Instant::now() + SWEEP_EVERY,
    });
}

/// The newest idle connection of `kind` to `addr` that is still open and within its idle time
/// at `now` (the caller's clock reading: the request's start will do).
pub fn take(addr: SocketAddr, kind: Kind<'_>, now: Instant) -> Option<UpstreamConn> {
    POOL.with(|pool| {
        let mut pool = pool.borrow_mut();
        if now >= pool.next_sweep {
            pool.sweep(now);
        }
        let list = pool.idle.get_mut(&addr)?;
        let mut taken = 0;
        let mut found = None;
        let mut i = list.len();
        while i > 0 {
            i -= 1;
            if !list[i].is(kind) {
                continue;
            }
            let mut conn = list.remove(i);
            taken += 1;
            if conn.usable(now) {
                found = Some(conn.stream);
                break;
            }
        }
        pool.count -= taken;
        found
    })
}

/// Keeps `stream` (of `kind`), whose last response was read to its end, for the next request
/// to `addr`, for at most `max_idle` (no limit when `None`) from `now` (an earlier reading,
/// such as the request's start, only makes it expire sooner).
pub fn put(
    addr: SocketAddr,
    kind: Kind<'_>,
    stream: UpstreamConn,
    max_idle: Option<Duration>,
    now: Instant,
) {
    POOL.with(|pool| {
        let mut pool = pool.borrow_mut();
        if now >= pool.next_sweep {
            pool.sweep(now);
        }
        let full = pool.count >= MAX_IDLE;
        let list = pool.idle.entry(addr).or_default();
        if list.len() >= MAX_IDLE_PER_BACKEND || (full && !list.is_empty()) {
            list.remove(0);
        } else if full {
            // Full of other backends' connections: this one is closed.
            return;
        } else {
            pool.count += 1;
        }
        let expires = max_idle.map(|d| now + d);
        if let Some(list) = pool.idle.get_mut(&addr) {
            list.push(Idle {
                stream,
                group: kind.group,
                name: kind.name.into(),
                expires,
            });
        }
    });
}

impl Pool {
    /// Closes every connection past its idle time or closed by its backend.
    fn sweep(&mut self, now: Instant) {
        self.idle.retain(|_, list| {
            list.retain_mut(|c| c.usable(now));
            !list.is_empty()
        });
        self.count = self.idle.values().map(Vec::len).sum();
        self.next_sweep = now + SWEEP_EVERY;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::route::upstream_conn::connect;
    use tokio::io::AsyncWriteExt;
    use tokio::net::{TcpListener, TcpStream};

    const PLAIN: Kind<'static> = Kind::PLAIN;

    async fn pair(listener: &TcpListener) -> (UpstreamConn, TcpStream) {
        let addr = listener.local_addr().expect("addr");
        let client = connect(addr, None, Some(Duration::from_secs(2)), None)
            .await
            .expect("connect");
        let (server, _) = listener.accept().await.expect("accept");
        (client, server)
    }

    fn count() -> usize {
        POOL.with(|p| p.borrow().count)
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_connection_closed_by_the_backend_is_not_reused() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (client, mut server) = pair(&listener).await;
        put(addr, PLAIN, client, None, Instant::now());
        let client = take(addr, PLAIN, Instant::now()).expect("an open idle connection is reused");
        put(addr, PLAIN, client, None, Instant::now());
        server.shutdown().await.expect("close");
        drop(server);
        // Give the close time to arrive.
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(
            take(addr, PLAIN, Instant::now()).is_none(),
            "a closed connection is dropped"
        );
        assert_eq!(count(), 0);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn connections_past_their_idle_time_are_dropped_by_a_take_or_a_sweep() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let idle = Some(Duration::from_millis(10));
        let start = Instant::now();
        let later = start + Duration::from_millis(20);
        let (first, _first_server) = pair(&listener).await;
        put(addr, PLAIN, first, idle, start);
        assert!(
            take(addr, PLAIN, later).is_none(),
            "past its idle time when taken"
        );
        assert_eq!(count(), 0);
        let (second, _second_server) = pair(&listener).await;
        put(addr, PLAIN, second, idle, start);
        POOL.with(|p| p.borrow_mut().sweep(later));
        assert_eq!(count(), 0, "swept");
        assert!(POOL.with(|p| p.borrow().idle.is_empty()));
    }

    #[tokio::test(flavor = "current_thread")]
    async fn at_most_the_per_backend_limit_is_kept() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let mut servers = Vec::new();
        for _ in 0..MAX_IDLE_PER_BACKEND + 3 {
            let (client, server) = pair(&listener).await;
            servers.push(server);
            put(addr, PLAIN, client, None, Instant::now());
        }
        assert_eq!(count(), MAX_IDLE_PER_BACKEND);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_connection_is_reused_only_for_its_kind() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let a = Kind {
            group: 7,
            name: "a.example",
        };
        let b = Kind {
            group: 7,
            name: "b.example",
        };
        let other_roots = Kind { group: 8, ..a };
        let (client, _server) = pair(&listener).await;
        put(addr, a, client, None, Instant::now());
        assert!(
            take(addr, b, Instant::now()).is_none(),
            "made for another name"
        );
        assert!(
            take(addr, other_roots, Instant::now()).is_none(),
            "other roots"
        );
        assert!(take(addr, PLAIN, Instant::now()).is_none(), "not plain");
        assert_eq!(count(), 1, "looking did not drop it");
        assert!(take(addr, a, Instant::now()).is_some());
        assert_eq!(count(), 0);
    }
}
