//! A scripted HTTP/1 backend and a raw HTTP/1 client for the tests of menshen's own HTTP/1 loop
//! (src/proxy/h1/): the backend answers by path (framings, interim responses, closes), counts
//! its connections and keeps every request header it saw.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::origins::tls_acceptor;
use super::pki::{Ca, Leaf, LeafSpec};
use super::{Env, Running};

/// A backend that answers by path, counts its connections and keeps every request header.
pub struct Backend {
    pub port: u16,
    pub accepted: Arc<AtomicUsize>,
    pub seen: Arc<Mutex<Vec<String>>>,
    /// The SNI of each TLS connection (TLS backends only).
    pub names: Arc<Mutex<Vec<String>>>,
    pub task: tokio::task::JoinHandle<()>,
}

/// What the scripted backend serves: TCP, or TLS over TCP.
trait Wire: AsyncRead + AsyncWrite + Unpin + Send + 'static {
    fn tcp(&self) -> &TcpStream;
}

impl Wire for TcpStream {
    fn tcp(&self) -> &TcpStream {
        self
    }
}

impl Wire for tokio_rustls::server::TlsStream<TcpStream> {
    fn tcp(&self) -> &TcpStream {
        self.get_ref().0
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Body bytes of `/big`: more than loopback socket buffers hold.
pub const BIG: usize = 64 << 20;

/// The backend's answer to `path`, and whether it then closes the connection (silently, after
/// a moment, as a backend whose keep-alive timeout runs out).
fn answer(method: &str, path: &str, body_len: usize) -> (Vec<u8>, bool) {
    let fixed = |r: &str| r.as_bytes().to_vec();
    match path {
        "/chunked" => (
            fixed("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nKeep-Alive: timeout=5\r\nConnection: keep-alive\r\n\r\n5\r\nhello\r\n6;x=y\r\n world\r\n0\r\nx-checksum: 1\r\n\r\n"),
            false,
        ),
        "/until-close" => (
            fixed("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nthe body ends at close"),
            true,
        ),
        "/big" => {
            let mut r = format!("HTTP/1.1 200 OK\r\nContent-Length: {BIG}\r\n\r\n").into_bytes();
            r.resize(r.len() + BIG, b'x');
            (r, false)
        }
        "/many-headers" => {
            let mut r = String::from("HTTP/1.1 200 OK\r\n");
            for i in 0..70 {
                r.push_str(&format!("Set-Cookie: c{i}=1\r\n"));
            }
            r.push_str("Content-Length: 4\r\n\r\nmany");
            (r.into_bytes(), false)
        }
        "/both-lengths" => (
            fixed("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"),
            false,
        ),
        "/parity" => {
            let body = format!("{method} {path} body={body_len}");
            (
                format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: keep-alive, X-Secret\r\nX-Secret: 1\r\nKeep-Alive: timeout=5\r\nProxy-Connection: keep-alive\r\nTE: trailers\r\nTrailer: x-checksum\r\nX-Kept: 1\r\n\r\n{body}",
                    body.len()
                )
                .into_bytes(),
                false,
            )
        }
        "/cut-length" => (
            fixed("HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly ten.."),
            true,
        ),
        "/cut-chunked" => (
            fixed("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n"),
            true,
        ),
        "/bad-first-chunk" => (
            fixed("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n"),
            true,
        ),
        "/status-999" => (fixed("HTTP/1.1 999 Odd\r\nContent-Length: 0\r\n\r\n"), false),
        "/unasked-101" => (
            fixed("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"),
            true,
        ),
        "/early-hints" => (
            fixed("HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"),
            false,
        ),
        _ => {
            let body = format!("{method} {path} body={body_len}");
            let close = path == "/then-idle-close";
            (
                format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nKeep-Alive: timeout=5\r\n\r\n{body}",
                    body.len()
                )
                .into_bytes(),
                close,
            )
        }
    }
}

impl Backend {
    pub async fn start() -> Backend {
        Self::start_inner(None).await
    }

    /// The same backend over TLS, serving `leaf` (it records each connection's SNI).
    pub async fn start_tls(leaf: &Leaf) -> Backend {
        Self::start_inner(Some(tls_acceptor(&leaf.pem, &leaf.key_pem, &[b"http/1.1"]))).await
    }

    async fn start_inner(tls: Option<tokio_rustls::TlsAcceptor>) -> Backend {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let accepted = Arc::new(AtomicUsize::new(0));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let names = Arc::new(Mutex::new(Vec::new()));
        let (count, log, sni) = (accepted.clone(), seen.clone(), names.clone());
        let task = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                let Some(acceptor) = tls.clone() else {
                    tokio::spawn(serve(tcp, log.clone()));
                    continue;
                };
                let (log, sni) = (log.clone(), sni.clone());
                tokio::spawn(async move {
                    let Ok(stream) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let name = stream.get_ref().1.server_name().unwrap_or("").to_owned();
                    sni.lock().expect("lock").push(name);
                    serve(stream, log).await;
                });
            }
        });
        Backend {
            port,
            accepted,
            seen,
            names,
            task,
        }
    }

    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    pub fn last_request(&self) -> String {
        self.seen
            .lock()
            .expect("lock")
            .last()
            .cloned()
            .unwrap_or_default()
    }
}

async fn serve(mut tcp: impl Wire, seen: Arc<Mutex<Vec<String>>>) {
    let mut buf = Vec::new();
    // After "/arm": the next request on this connection is read, then the connection closed
    // without an answer (a backend that timed the idle connection out as the request came).
    let mut armed = false;
    loop {
        let end = loop {
            if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break at + 4;
            }
            let mut chunk = [0u8; 4096];
            match tcp.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        };
        let head = String::from_utf8_lossy(&buf[..end]).into_owned();
        buf.drain(..end);
        let chunked = head.lines().any(|l| {
            l.split_once(':').is_some_and(|(n, v)| {
                n.eq_ignore_ascii_case("transfer-encoding") && v.trim() == "chunked"
            })
        });
        let (raw_len, body_len) = if chunked {
            match read_chunked(&mut tcp, &mut buf).await {
                Some(lengths) => lengths,
                None => return,
            }
        } else {
            let n = head
                .lines()
                .find_map(|l| {
                    let (name, value) = l.split_once(':')?;
                    name.eq_ignore_ascii_case("content-length")
                        .then(|| value.trim().parse().ok())?
                })
                .unwrap_or(0);
            (n, n)
        };
        while buf.len() < raw_len {
            let mut chunk = [0u8; 4096];
            match tcp.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        let body: Vec<u8> = buf.drain(..raw_len).collect();
        let mut words = head.split(' ');
        let method = words.next().unwrap_or("").to_owned();
        let path = words.next().unwrap_or("/").to_owned();
        seen.lock()
            .expect("lock")
            .push(format!("{head}{}", String::from_utf8_lossy(&body)));
        if path == "/ws" {
            let switch = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: x\r\n\r\nhello from the backend;";
            if !send(&mut tcp, switch.as_bytes()).await {
                return;
            }
            echo(tcp, buf).await;
            return;
        }
        if path == "/reset-mid-body" {
            let part = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\npart of a body";
            send(&mut tcp, part).await;
            tokio::time::sleep(Duration::from_millis(50)).await;
            // A zero linger resets the connection at once (it never blocks): a backend that
            // crashes mid-body.
            #[allow(deprecated)]
            let _ = tcp.tcp().set_linger(Some(Duration::ZERO));
            return;
        }
        if armed {
            return;
        }
        armed = path == "/arm";
        let (mut response, close) = answer(&method, &path, body_len);
        if method == "HEAD" {
            let end = response
                .windows(4)
                .position(|w| w == b"\r\n\r\n")
                .unwrap_or(0);
            response.truncate(end + 4);
        }
        if !send(&mut tcp, &response).await {
            return;
        }
        if close {
            tokio::time::sleep(Duration::from_millis(20)).await;
            return;
        }
    }
}

/// Writes and flushes (TLS holds bytes until flushed): whether it worked.
async fn send(tcp: &mut impl Wire, bytes: &[u8]) -> bool {
    tcp.write_all(bytes).await.is_ok() && tcp.flush().await.is_ok()
}

/// Reads until `buf` holds a CRLF at or after `from`: its offset.
async fn line_end(tcp: &mut impl Wire, buf: &mut Vec<u8>, from: usize) -> Option<usize> {
    loop {
        if let Some(i) = buf.get(from..)?.windows(2).position(|w| w == b"\r\n") {
            return Some(from + i);
        }
        let mut chunk = [0u8; 4096];
        match tcp.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

/// Reads a chunked body off `tcp` (`buf` holds what came first): its length on the wire and its
/// payload length; the wire bytes stay at the start of `buf`.
async fn read_chunked(tcp: &mut impl Wire, buf: &mut Vec<u8>) -> Option<(usize, usize)> {
    let (mut at, mut payload) = (0, 0);
    loop {
        let line = line_end(tcp, buf, at).await?;
        let text = String::from_utf8_lossy(&buf[at..line]).into_owned();
        let size = usize::from_str_radix(text.split(';').next()?.trim(), 16).ok()?;
        at = line + 2;
        if size == 0 {
            // Trailer fields until an empty line.
            loop {
                let end = line_end(tcp, buf, at).await?;
                let empty = end == at;
                at = end + 2;
                if empty {
                    return Some((at, payload));
                }
            }
        }
        while buf.len() < at + size + 2 {
            let mut chunk = [0u8; 4096];
            match tcp.read(&mut chunk).await {
                Ok(0) | Err(_) => return None,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        at += size + 2;
        payload += size;
    }
}

/// Echoes what arrives (after `early`) until the peer closes: an upgraded connection.
async fn echo(mut tcp: impl Wire, early: Vec<u8>) {
    if !early.is_empty() && !send(&mut tcp, &early).await {
        return;
    }
    let mut chunk = [0u8; 4096];
    loop {
        match tcp.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if !send(&mut tcp, &chunk[..n]).await {
                    return;
                }
            }
        }
    }
}

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
    let (env, root) = Env::with_approved_root("Approved Root");
    env.put_cert("site", &root.issue(&LeafSpec::new(&["example.cn"], 1)), &[]);
    if let Some(ca) = backend_ca {
        env.write("backend-ca.pem", &ca.pem);
    }
    env.write_config(
        "",
        &format!(
            "{policy}\n[[upstreams]]\nname = \"backend\"\nbackends = [\"127.0.0.1:{}\"]\n{upstream}\n\
             [[sites]]\nname = \"site\"\nicp = \"京ICP备16063439号-1\"\nhosts = [\"example.cn\"]\n\
             [[sites.routes]]\nprefix = \"/\"\nupstream = \"backend\"\n",
            backend.port
        ),
    );
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
        // Lengths and dates differ by nature, and framing and `Connection` by protocol.
        .filter(|n| {
            !matches!(
                n.as_str(),
                "content-length" | "date" | "transfer-encoding" | "connection"
            )
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
