//! An HTTP/1.1 backend that fails on command, for the retry tests (`failing_h2` is the h2c
//! one): it answers, closes the connection before answering, stalls before the head or in the
//! middle of the body, or answers 503 with a `Retry-After`. Every request it reads is counted
//! and noted, with its arrival time, in an event list the test shares between backends (so the
//! order of attempts can be read).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;

/// How the backend treats the next requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// 200 with its name as the body.
    Answer,
    /// Reads the request, then closes the connection without a byte of response.
    Reset,
    /// `Reset` for the backend's first request, `Answer` after (a packet lost on the way).
    ResetFirst,
    /// Reads the request and sends nothing until released.
    StallHead,
    /// Sends a head with `Content-Length: 100` and 10 bytes of body, then nothing until released.
    StallBody,
    /// 503 with `Retry-After: N` (seconds).
    Unavailable(u32),
    /// Reads a request's head and none of its body, and sends nothing until released (a
    /// backend whose receive window is full).
    StallUpload,
}

/// Requests seen by every backend of a test, in order: (backend, method and path, when).
pub type Events = Arc<Mutex<Vec<(String, String, Instant)>>>;

pub struct Failing {
    pub port: u16,
    name: String,
    mode: Arc<Mutex<Mode>>,
    requests: Arc<AtomicUsize>,
    release: Arc<Notify>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Failing {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Failing {
    pub async fn start(name: &str, mode: Mode, events: &Events) -> Failing {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let serving = Serving {
            name: name.to_owned(),
            mode: Arc::new(Mutex::new(mode)),
            requests: Arc::default(),
            release: Arc::default(),
            events: events.clone(),
        };
        let (mode, requests, release) = (
            serving.mode.clone(),
            serving.requests.clone(),
            serving.release.clone(),
        );
        let task = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                tokio::spawn(serving.clone().serve(tcp));
            }
        });
        Failing {
            port,
            name: name.to_owned(),
            mode,
            requests,
            release,
            task,
        }
    }

    pub fn set(&self, mode: Mode) {
        *self.mode.lock().expect("lock") = mode;
    }

    /// Requests read so far.
    pub fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }

    /// Lets every stalled exchange go (its connection closes).
    pub fn release(&self) {
        self.release.notify_waiters();
    }

    pub fn name(&self) -> &str {
        &self.name
    }
}

#[derive(Clone)]
struct Serving {
    name: String,
    mode: Arc<Mutex<Mode>>,
    requests: Arc<AtomicUsize>,
    release: Arc<Notify>,
    events: Events,
}

impl Serving {
    async fn serve(self, mut tcp: TcpStream) {
        let mut buf = Vec::new();
        loop {
            let body = !matches!(*self.mode.lock().expect("lock"), Mode::StallUpload);
            let Some(what) = read_request(&mut tcp, &mut buf, body).await else {
                return;
            };
            let mode = *self.mode.lock().expect("lock");
            self.events
                .lock()
                .expect("lock")
                .push((self.name.clone(), what, Instant::now()));
            let seen = self.requests.fetch_add(1, Ordering::SeqCst);
            let mode = match mode {
                Mode::ResetFirst if seen == 0 => Mode::Reset,
                Mode::ResetFirst => Mode::Answer,
                other => other,
            };
            let reply = match mode {
                Mode::Answer => format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{}",
                    self.name.len(),
                    self.name
                ),
                Mode::Reset | Mode::ResetFirst => return,
                Mode::StallHead | Mode::StallUpload => String::new(),
                Mode::StallBody => {
                    "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789".into()
                }
                Mode::Unavailable(after) => format!(
                    "HTTP/1.1 503 Service Unavailable\r\nRetry-After: {after}\r\n\
                     Content-Length: 4\r\n\r\nbusy"
                ),
            };
            if tcp.write_all(reply.as_bytes()).await.is_err() {
                return;
            }
            if matches!(mode, Mode::StallHead | Mode::StallBody | Mode::StallUpload) {
                self.release.notified().await;
                return;
            }
        }
    }
}

/// Reads one request (head, and when `body` a body of its Content-Length): its method and path.
async fn read_request(tcp: &mut TcpStream, buf: &mut Vec<u8>, body: bool) -> Option<String> {
    let end = loop {
        if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        let mut chunk = [0u8; 4096];
        let n = tcp.read(&mut chunk).await.ok().filter(|n| *n > 0)?;
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
    let length: usize = head
        .lines()
        .filter_map(|l| l.split_once(':'))
        .find(|(n, _)| n.trim().eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.trim().parse().ok())
        .filter(|_| body)
        .unwrap_or(0);
    while buf.len() < end + length {
        let mut chunk = [0u8; 4096];
        let n = tcp.read(&mut chunk).await.ok().filter(|n| *n > 0)?;
        buf.extend_from_slice(&chunk[..n]);
    }
    buf.drain(..end + length);
    let mut words = head.split(' ');
    Some(format!("{} {}", words.next()?, words.next()?))
}
