//! An h2c (HTTP/2 without TLS) backend that fails on command, for the retry tests: it answers,
//! answers 503, drops the TCP connection under a stream, refuses a stream (`REFUSED_STREAM`),
//! stalls before the head, or says GOAWAY. Every stream it takes is counted and noted in the
//! test's shared event list (`support::failing::Events`), and so is every connection.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::Bytes;
use h2::server::SendResponse;
use h2::{Reason, RecvStream};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;

use super::failing::Events;

/// How the backend treats the next streams. Each reads the request's whole body first, so
/// that what fails, fails after the body reached the backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum H2Mode {
    /// 200 with its name as the body.
    Answer,
    /// 503 with `Retry-After: 0`.
    Busy,
    /// Drops the TCP connection without a response (and every other stream on it).
    Drop,
    /// `Drop` for the next stream, then `Answer`.
    DropOnce,
    /// Resets the stream with `REFUSED_STREAM`: not processed, safe to send again.
    Refuse,
    /// `Refuse` for the next stream, then `Answer`.
    RefuseOnce,
    /// Sends nothing until released; a stream the proxy resets is counted (`cancelled`).
    StallHead,
    /// A graceful GOAWAY on the stream's connection, then (once the proxy acknowledged a PING
    /// sent after it, so it has read the GOAWAY) 200 on the stream; the connection then ends.
    GoAway,
}

pub struct FailingH2 {
    pub port: u16,
    serving: Serving,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FailingH2 {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FailingH2 {
    pub async fn start(name: &str, mode: H2Mode, events: &Events) -> FailingH2 {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let serving = Serving {
            name: name.to_owned(),
            mode: Arc::new(Mutex::new(mode)),
            counts: Arc::default(),
            release: Arc::default(),
            events: events.clone(),
        };
        let accepting = serving.clone();
        let task = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                tokio::spawn(accepting.clone().connection(tcp));
            }
        });
        FailingH2 {
            port,
            serving,
            task,
        }
    }

    pub fn set(&self, mode: H2Mode) {
        *self.serving.mode.lock().expect("lock") = mode;
    }

    /// Streams taken so far.
    pub fn requests(&self) -> usize {
        self.serving.counts.streams.load(Ordering::SeqCst)
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        self.serving.counts.connections.load(Ordering::SeqCst)
    }

    /// The bodies of the streams to `path`, as they arrived, in order.
    pub fn bodies(&self, path: &str) -> Vec<String> {
        let bodies = self.serving.counts.bodies.lock().expect("lock");
        let of_path = bodies.iter().filter(|(p, _)| p == path);
        of_path.map(|(_, body)| body.clone()).collect()
    }

    /// Stalled streams the proxy reset.
    pub fn cancelled(&self) -> usize {
        self.serving.counts.cancelled.load(Ordering::SeqCst)
    }

    /// Lets every stalled stream go (its connection is dropped).
    pub fn release(&self) {
        self.serving.release.notify_waiters();
    }
}

#[derive(Default)]
struct Counts {
    streams: AtomicUsize,
    connections: AtomicUsize,
    cancelled: AtomicUsize,
    /// (path, body) of each stream whose body ended.
    bodies: Mutex<Vec<(String, String)>>,
}

#[derive(Clone)]
struct Serving {
    name: String,
    mode: Arc<Mutex<H2Mode>>,
    counts: Arc<Counts>,
    release: Arc<Notify>,
    events: Events,
}

impl Serving {
    /// Serves one connection until the peer ends it or a stream asks to drop it.
    async fn connection(self, tcp: TcpStream) {
        self.counts.connections.fetch_add(1, Ordering::SeqCst);
        let Ok(mut conn) = h2::server::handshake(tcp).await else {
            return;
        };
        let mut ping = conn.ping_pong();
        let hang_up = Arc::new(Notify::new());
        loop {
            let accepted = tokio::select! {
                accepted = conn.accept() => accepted,
                // Returning drops the connection: the TCP connection closes with no GOAWAY.
                _ = hang_up.notified() => return,
            };
            let Some(Ok((request, respond))) = accepted else {
                return;
            };
            let mode = self.take(&request);
            let acked = match mode {
                H2Mode::GoAway => {
                    conn.graceful_shutdown();
                    ping.take()
                }
                _ => None,
            };
            let stream = Stream {
                mode,
                path: request.uri().path().to_owned(),
                name: self.name.clone(),
                counts: self.counts.clone(),
                release: self.release.clone(),
                hang_up: hang_up.clone(),
            };
            tokio::spawn(stream.answer(request.into_body(), respond, acked));
        }
    }

    /// Notes a stream and says how it is treated.
    fn take(&self, request: &http::Request<RecvStream>) -> H2Mode {
        let what = format!("{} {}", request.method(), request.uri().path());
        let now = Instant::now();
        let events = &mut self.events.lock().expect("lock");
        events.push((self.name.clone(), what, now));
        self.counts.streams.fetch_add(1, Ordering::SeqCst);
        let mode = &mut *self.mode.lock().expect("lock");
        let (now, next) = match *mode {
            H2Mode::DropOnce => (H2Mode::Drop, H2Mode::Answer),
            H2Mode::RefuseOnce => (H2Mode::Refuse, H2Mode::Answer),
            other => (other, other),
        };
        *mode = next;
        now
    }
}

/// One stream's treatment.
struct Stream {
    mode: H2Mode,
    path: String,
    name: String,
    counts: Arc<Counts>,
    release: Arc<Notify>,
    hang_up: Arc<Notify>,
}

impl Stream {
    async fn answer(
        self,
        mut body: RecvStream,
        mut respond: SendResponse<Bytes>,
        ping: Option<h2::PingPong>,
    ) {
        let mut got = Vec::new();
        while let Some(Ok(chunk)) = body.data().await {
            let _ = body.flow_control().release_capacity(chunk.len());
            got.extend_from_slice(&chunk);
        }
        let got = String::from_utf8_lossy(&got).into_owned();
        self.counts
            .bodies
            .lock()
            .expect("lock")
            .push((self.path.clone(), got));
        let (status, text) = match self.mode {
            H2Mode::Answer => (200, self.name.as_str()),
            H2Mode::Busy => (503, "busy"),
            H2Mode::Drop => return self.hang_up.notify_one(),
            H2Mode::Refuse => return respond.send_reset(Reason::REFUSED_STREAM),
            H2Mode::StallHead => return self.stall(respond).await,
            H2Mode::DropOnce | H2Mode::RefuseOnce => unreachable!("resolved by Serving::take"),
            H2Mode::GoAway => {
                if let Some(mut ping) = ping {
                    ping.ping(h2::Ping::opaque()).await.expect("PING answered");
                }
                (200, self.name.as_str())
            }
        };
        let response = http::Response::builder().status(status);
        let response = match status {
            503 => response.header("retry-after", "0"),
            _ => response,
        };
        let head = response.body(()).expect("response");
        if let Ok(mut send) = respond.send_response(head, false) {
            let _ = send.send_data(Bytes::from(text.to_owned()), true);
        }
    }

    /// Waits for the release or for the proxy to reset the stream (counted).
    async fn stall(self, mut respond: SendResponse<Bytes>) {
        let reset = std::future::poll_fn(|cx| respond.poll_reset(cx));
        tokio::select! {
            _ = self.release.notified() => self.hang_up.notify_one(),
            Ok(_) = reset => {
                self.counts.cancelled.fetch_add(1, Ordering::SeqCst);
            }
        }
    }
}
