//! The scripted HTTP/1 backend of the engine tests: it answers by path (framings, broken
//! bodies, odd statuses, an upgrade), counts its connections and keeps every request it reads.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::origins::tls_acceptor;
use super::pki::Leaf;

/// A backend that answers by path, counts its connections and keeps every request header.
pub struct Backend {
    pub port: u16,
    pub accepted: Arc<AtomicUsize>,
    pub seen: Arc<Mutex<Vec<String>>>,
    /// The SNI of each TLS connection (TLS backends only).
    pub names: Arc<Mutex<Vec<String>>>,
    /// Connections it closed after answering (`/then-idle-close` and the broken framings).
    pub closed: Arc<AtomicUsize>,
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
        // Bodies a response of this status cannot have (RFC 9110 6.4.1): the bytes after the
        // head must never reach a client as a response.
        "/204-with-body" => (
            fixed("HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\nhello"),
            false,
        ),
        "/304-with-body" => (
            fixed("HTTP/1.1 304 Not Modified\r\nContent-Length: 5\r\n\r\nhello"),
            false,
        ),
        "/100-with-body" => (
            fixed("HTTP/1.1 100 Continue\r\nContent-Length: 5\r\n\r\nhelloHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"),
            false,
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
        let closed = Arc::new(AtomicUsize::new(0));
        let (count, log, sni, closes) = (
            accepted.clone(),
            seen.clone(),
            names.clone(),
            closed.clone(),
        );
        let task = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                let Some(acceptor) = tls.clone() else {
                    tokio::spawn(serve(tcp, log.clone(), closes.clone()));
                    continue;
                };
                let (log, sni, closes) = (log.clone(), sni.clone(), closes.clone());
                tokio::spawn(async move {
                    let Ok(stream) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let name = stream.get_ref().1.server_name().unwrap_or("").to_owned();
                    sni.lock().expect("lock").push(name);
                    serve(stream, log, closes).await;
                });
            }
        });
        Backend {
            port,
            accepted,
            seen,
            names,
            closed,
            task,
        }
    }

    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    /// The requests seen after the first `before`, once there are at least `count` of them (or
    /// after a few seconds without). The backend records a request before it answers, so the
    /// requests a client has answers for are here at once; waiting covers those the backend
    /// read but no client was answered for.
    pub async fn seen_since(&self, before: usize, count: usize) -> Vec<String> {
        let since = || self.seen.lock().expect("lock")[before..].to_vec();
        let enough = super::eventually(Duration::from_secs(5), || async {
            let seen = since();
            (seen.len() >= count).then_some(seen)
        });
        match enough.await {
            Some(seen) => seen,
            None => since(),
        }
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

async fn serve(mut tcp: impl Wire, seen: Arc<Mutex<Vec<String>>>, closed: Arc<AtomicUsize>) {
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
            drop(tcp);
            closed.fetch_add(1, Ordering::SeqCst);
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
