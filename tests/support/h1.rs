//! A raw HTTP/1 client for the tests of menshen's HTTP/1 engine (src/proxy/h1/), the proxy
//! launched in front of the scripted backend (`backend.rs`), and field helpers.

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

pub use super::backend::Backend;
use super::config::Config;
use super::pki::Ca;
use super::{Env, Running};

/// One response read off a client connection.
pub struct Answer {
    pub status: u16,
    pub head: String,
    pub body: Vec<u8>,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }
}

/// Reads from `stream` until `buf` holds a whole request head, takes it off `buf` and returns
/// it as text; `None` when the connection ends first (an origin's loop).
pub async fn next_head<S: AsyncRead + Unpin>(stream: &mut S, buf: &mut Vec<u8>) -> Option<String> {
    let end = loop {
        if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        let mut chunk = [0u8; 4096];
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    };
    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
    buf.drain(..end);
    Some(head)
}

/// A client connection reading responses one at a time.
pub struct Client {
    pub tcp: TcpStream,
    pub buf: Vec<u8>,
}

impl Client {
    pub async fn connect(port: u16) -> Client {
        Client {
            tcp: TcpStream::connect(("127.0.0.1", port))
                .await
                .expect("connect"),
            buf: Vec::new(),
        }
    }

    pub async fn fill(&mut self) -> bool {
        let mut chunk = [0u8; 8192];
        match tokio::time::timeout(Duration::from_secs(5), self.tcp.read(&mut chunk)).await {
            Ok(Ok(n)) if n > 0 => {
                self.buf.extend_from_slice(&chunk[..n]);
                true
            }
            _ => false,
        }
    }

    pub async fn send(&mut self, raw: &str) {
        self.tcp.write_all(raw.as_bytes()).await.expect("write");
    }

    /// Reads one response (the body by Content-Length, chunked, or to the end of the stream).
    pub async fn response(&mut self, head_request: bool) -> Answer {
        let end = loop {
            if let Some(at) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break at + 4;
            }
            assert!(self.fill().await, "connection ended before a response");
        };
        let head = String::from_utf8_lossy(&self.buf[..end]).into_owned();
        self.buf.drain(..end);
        let status = head[9..12].parse().expect("status");
        let mut answer = Answer {
            status,
            head,
            body: Vec::new(),
        };
        if head_request {
            return answer;
        }
        if let Some(len) = answer.header("content-length") {
            let len: usize = len.parse().expect("length");
            while self.buf.len() < len {
                assert!(self.fill().await, "body cut short");
            }
            answer.body = self.buf.drain(..len).collect();
        } else if answer.header("transfer-encoding") == Some("chunked") {
            loop {
                let line_end = loop {
                    if let Some(at) = self.buf.windows(2).position(|w| w == b"\r\n") {
                        break at;
                    }
                    assert!(self.fill().await, "chunk cut short");
                };
                let line = String::from_utf8_lossy(&self.buf[..line_end]).into_owned();
                let size = usize::from_str_radix(line.split(';').next().unwrap_or(""), 16)
                    .expect("chunk size");
                self.buf.drain(..line_end + 2);
                if size == 0 {
                    // Trailer fields, then the empty line.
                    loop {
                        while !self.buf.windows(2).any(|w| w == b"\r\n") {
                            assert!(self.fill().await, "trailer cut short");
                        }
                        let at = self.buf.windows(2).position(|w| w == b"\r\n").unwrap_or(0);
                        self.buf.drain(..at + 2);
                        if at == 0 {
                            return answer;
                        }
                    }
                }
                while self.buf.len() < size + 2 {
                    assert!(self.fill().await, "chunk data cut short");
                }
                answer.body.extend(self.buf.drain(..size));
                self.buf.drain(..2);
            }
        } else {
            while self.fill().await {}
            answer.body = std::mem::take(&mut self.buf);
        }
        answer
    }

    /// Whether the proxy closes the connection within `within` (and sent nothing more).
    pub async fn closed_within(&mut self, within: Duration) -> bool {
        let mut chunk = [0u8; 64];
        matches!(
            tokio::time::timeout(within, self.tcp.read(&mut chunk)).await,
            Ok(Ok(0)) | Ok(Err(_))
        ) && self.buf.is_empty()
    }
}

/// Sends a WebSocket upgrade for `/ws` on `stream` and reads up to the backend's greeting:
/// what came back (the 101 head and the greeting).
pub async fn upgrade<S: AsyncRead + AsyncWrite + Unpin>(stream: &mut S) -> String {
    let handshake = get(
        "/ws",
        "Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n",
    );
    stream.write_all(handshake.as_bytes()).await.expect("write");
    let mut got = Vec::new();
    let mut chunk = [0u8; 1024];
    while !String::from_utf8_lossy(&got).contains("hello from the backend;") {
        let n = stream.read(&mut chunk).await.expect("read");
        assert!(n > 0, "closed during the handshake");
        got.extend_from_slice(&chunk[..n]);
    }
    String::from_utf8_lossy(&got).into_owned()
}

/// Sends `message` on an upgraded `stream` and asserts the backend echoes it.
pub async fn echoes<S: AsyncRead + AsyncWrite + Unpin>(stream: &mut S, message: &[u8]) {
    stream.write_all(message).await.expect("write frame");
    let mut echo = vec![0u8; message.len()];
    tokio::time::timeout(Duration::from_secs(5), stream.read_exact(&mut echo))
        .await
        .expect("echo in time")
        .expect("echo");
    assert_eq!(echo, message);
}

pub fn get(path: &str, extra: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: example.cn\r\n{extra}\r\n")
}

pub async fn start(backend: &Backend) -> (Env, Running) {
    start_with(backend, "").await
}

pub async fn start_with(backend: &Backend, policy: &str) -> (Env, Running) {
    let (env, running, _root) = launch(backend, policy).await;
    (env, running)
}

/// The proxy in front of `backend` with `policy` (TOML) added, and the root its certificate
/// chains to.
pub async fn launch(backend: &Backend, policy: &str) -> (Env, Running, Ca) {
    launch_upstream(backend, policy, "", None)
}

/// The proxy in front of a TLS `backend` whose certificate `backend_ca` issued (verified with
/// it, SNI from the Host), with `upstream` (TOML) added to the upstream section.
pub async fn launch_tls(backend: &Backend, backend_ca: &Ca, upstream: &str) -> (Env, Running, Ca) {
    let upstream = format!("tls = true\nca_file = \"backend-ca.pem\"\n{upstream}");
    launch_upstream(backend, "", &upstream, Some(backend_ca))
}

fn launch_upstream(
    backend: &Backend,
    policy: &str,
    upstream: &str,
    backend_ca: Option<&Ca>,
) -> (Env, Running, Ca) {
    let (env, root) = Env::with_site(&["example.cn"]);
    if let Some(ca) = backend_ca {
        env.write("backend-ca.pem", &ca.pem);
    }
    let config = Config::new()
        .raw(policy)
        .upstream("backend", &[backend.port])
        .keys(upstream)
        .site("site", &["example.cn"])
        .proxy("/", "backend");
    env.write_config("", config);
    let running = env.start();
    (env, running, root)
}

/// nature between two requests (length, date, ids).
pub fn field_names(head: &str) -> Vec<String> {
    let mut names: Vec<String> = head
        .lines()
        .skip(1)
        .filter_map(|l| {
            l.split_once(':')
                .map(|(n, _)| n.trim().to_ascii_lowercase())
        })
        .collect();
    names.sort();
    names
}

pub fn field_value(head: &str, name: &str) -> Option<String> {
    head.lines().skip(1).find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.trim()
            .eq_ignore_ascii_case(name)
            .then(|| v.trim().to_owned())
    })
}

/// Feeds the whole chunks at the front of `buf` (an HTTP/1.1 chunked body) to `sink`, up to
/// the last chunk.
pub fn feed_chunks(buf: &mut Vec<u8>, sink: &mut impl std::io::Write) {
    while let Some(line) = buf.windows(2).position(|w| w == b"\r\n") {
        let size = std::str::from_utf8(&buf[..line]).expect("chunk size");
        let size = usize::from_str_radix(size, 16).expect("hex chunk size");
        if size == 0 || buf.len() < line + 2 + size + 2 {
            return;
        }
        sink.write_all(&buf[line + 2..line + 2 + size])
            .expect("write");
        sink.flush().expect("flush");
        buf.drain(..line + 2 + size + 2);
    }
}
