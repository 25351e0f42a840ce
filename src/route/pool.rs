//! Idle keep-alive connections to plain-HTTP backends, for the HTTP/1 loop (`proxy::h1`).
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

use std::cell::RefCell;
use std::io;
use std::net::SocketAddr;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use rustc_hash::FxHashMap;
use tokio::net::TcpStream;

/// Idle connections kept per backend and worker thread; the oldest goes first.
const MAX_IDLE_PER_BACKEND: usize = 128;
/// Idle connections kept per worker thread, all backends together.
const MAX_IDLE: usize = 1024;
/// How often a release sweeps the whole pool.
const SWEEP_EVERY: Duration = Duration::from_secs(5);

struct Idle {
    stream: TcpStream,
    /// When it is too old to use (never, without an idle timeout).
    expires: Option<Instant>,
}

impl Idle {
    fn usable(&self, now: Instant) -> bool {
        self.expires.is_none_or(|at| now < at) && still_open(&self.stream)
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

/// The newest idle connection to `addr` that is still open and within its idle time at
/// `now` (the caller's clock reading: the request's start will do).
pub fn take(addr: SocketAddr, now: Instant) -> Option<TcpStream> {
    POOL.with(|pool| {
        let mut pool = pool.borrow_mut();
        if now >= pool.next_sweep {
            pool.sweep(now);
        }
        let list = pool.idle.get_mut(&addr)?;
        let mut taken = 0;
        let mut found = None;
        while let Some(conn) = list.pop() {
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

/// Keeps `stream`, whose last response was read to its end, for the next request to `addr`,
/// for at most `max_idle` (no limit when `None`) from `now` (an earlier reading, such as the
/// request's start, only makes it expire sooner).
pub fn put(addr: SocketAddr, stream: TcpStream, max_idle: Option<Duration>, now: Instant) {
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
            list.push(Idle { stream, expires });
        }
    });
}

impl Pool {
    /// Closes every connection past its idle time or closed by its backend.
    fn sweep(&mut self, now: Instant) {
        self.idle.retain(|_, list| {
            list.retain(|c| c.usable(now));
            !list.is_empty()
        });
        self.count = self.idle.values().map(Vec::len).sum();
        self.next_sweep = now + SWEEP_EVERY;
    }
}

/// Whether an idle connection can carry a request: nothing to read on it. Asks the reactor
/// first; only when it says readable (which may be left over from the last response read) does
/// it ask the socket.
fn still_open(stream: &TcpStream) -> bool {
    let mut cx = Context::from_waker(Waker::noop());
    match stream.poll_read_ready(&mut cx) {
        Poll::Pending => true,
        Poll::Ready(Err(_)) => false,
        Poll::Ready(Ok(())) => matches!(
            stream.try_read(&mut [0u8; 1]),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock
        ),
    }
}

/// A new connection to `addr`, within `timeout`.
pub async fn connect(addr: SocketAddr, timeout: Option<Duration>) -> io::Result<TcpStream> {
    let connecting = TcpStream::connect(addr);
    let stream = match timeout {
        Some(t) => tokio::time::timeout(t, connecting)
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "connect timed out"))??,
        None => connecting.await?,
    };
    stream.set_nodelay(true)?;
    Ok(stream)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;
    use tokio::net::TcpListener;

    async fn pair(listener: &TcpListener) -> (TcpStream, TcpStream) {
        let addr = listener.local_addr().expect("addr");
        let client = connect(addr, Some(Duration::from_secs(2)))
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
        put(addr, client, None, Instant::now());
        let client = take(addr, Instant::now()).expect("an open idle connection is reused");
        put(addr, client, None, Instant::now());
        server.shutdown().await.expect("close");
        drop(server);
        // Give the close time to arrive.
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(
            take(addr, Instant::now()).is_none(),
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
        put(addr, first, idle, start);
        assert!(take(addr, later).is_none(), "past its idle time when taken");
        assert_eq!(count(), 0);
        let (second, _second_server) = pair(&listener).await;
        put(addr, second, idle, start);
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
            put(addr, client, None, Instant::now());
        }
        assert_eq!(count(), MAX_IDLE_PER_BACKEND);
    }
}
