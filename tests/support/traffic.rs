//! Steady clients that keep their connections, as browsers and API clients do: HTTP/1.1
//! keep-alive (GETs and POSTs with bodies) and HTTP/2 (concurrent streams), each counting what
//! it got. A client follows the protocol's rules for a server going away (a response that says
//! `Connection: close`, an HTTP/2 GOAWAY or REFUSED_STREAM: the request was not taken, send it
//! on a new connection); anything else that ends a request without its whole response is a
//! lost request.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

use super::eventually;

/// What the clients saw.
#[derive(Default)]
pub struct Tally {
    pub ok: AtomicU64,
    /// Connections the server closed after saying so, or HTTP/2 connections it went away from.
    pub reconnects: AtomicU64,
    pub lost: Mutex<Vec<String>>,
    pub stop: AtomicBool,
}

impl Tally {
    pub fn new() -> Arc<Tally> {
        Arc::new(Tally::default())
    }

    fn lose(&self, what: String) {
        self.lost.lock().expect("lock").push(what);
    }

    pub fn lost(&self) -> Vec<String> {
        self.lost.lock().expect("lock").clone()
    }

    pub fn ok(&self) -> u64 {
        self.ok.load(Ordering::SeqCst)
    }

    fn stopped(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }
}

/// One response on a keep-alive connection: its status, whether it said `Connection: close`,
/// its body.
async fn read_response(
    tcp: &mut TcpStream,
    buf: &mut Vec<u8>,
) -> Result<(u16, bool, Vec<u8>), String> {
    let mut chunk = [0u8; 16 * 1024];
    let end = loop {
        if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        match tokio::time::timeout(Duration::from_secs(10), tcp.read(&mut chunk)).await {
            Ok(Ok(0)) => return Err("closed before the response".to_owned()),
            Ok(Ok(n)) => buf.extend_from_slice(&chunk[..n]),
            Ok(Err(e)) => return Err(format!("reading the response: {e}")),
            Err(_) => return Err("no response within 10 s".to_owned()),
        }
    };
    let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
    buf.drain(..end);
    let status = head
        .get(9..12)
        .and_then(|s| s.parse().ok())
        .ok_or("bad status line")?;
    let close = head.contains("\r\nconnection: close\r\n");
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| format!("no content-length: {head}"))?;
    while buf.len() < length {
        match tcp.read(&mut chunk).await {
            Ok(0) => return Err("body cut short".to_owned()),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) => return Err(format!("reading the body: {e}")),
        }
    }
    let body = buf.drain(..length).collect();
    Ok((status, close, body))
}

/// An HTTP/1.1 client on `port` (plain) sending GETs and 1 KiB POSTs to `example.cn` on one
/// keep-alive connection at a time, until `tally.stop`.
pub async fn http1_keepalive(port: u16, tally: Arc<Tally>, name: &'static str) {
    let mut n = 0u64;
    while !tally.stopped() {
        let mut tcp = match TcpStream::connect(("127.0.0.1", port)).await {
            Ok(tcp) => tcp,
            Err(e) => {
                tally.lose(format!("{name}: connect: {e}"));
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let mut buf = Vec::new();
        while !tally.stopped() {
            n += 1;
            let (request, expect) = if n.is_multiple_of(2) {
                let body = "x".repeat(1024);
                let request = format!(
                    "POST /{name}/{n} HTTP/1.1\r\nHost: example.cn\r\nContent-Length: 1024\r\n\r\n{body}"
                );
                (request, format!("POST /{name}/{n} body=1024"))
            } else {
                let request = format!("GET /{name}/{n} HTTP/1.1\r\nHost: example.cn\r\n\r\n");
                (request, format!("GET /{name}/{n} body=0"))
            };
            if let Err(e) = tcp.write_all(request.as_bytes()).await {
                tally.lose(format!("{name} #{n}: writing: {e}"));
                break;
            }
            match read_response(&mut tcp, &mut buf).await {
                Ok((200, close, body)) if body == expect.as_bytes() => {
                    tally.ok.fetch_add(1, Ordering::SeqCst);
                    if close {
                        tally.reconnects.fetch_add(1, Ordering::SeqCst);
                        break;
                    }
                }
                Ok((status, _, body)) => {
                    let body = String::from_utf8_lossy(&body).into_owned();
                    tally.lose(format!("{name} #{n}: {status} {body:?}"));
                    break;
                }
                Err(e) => {
                    tally.lose(format!("{name} #{n}: {e}"));
                    break;
                }
            }
        }
    }
}

/// An HTTP/2 client over TLS on `port` keeping `streams` GETs in flight on one connection at a
/// time, until `tally.stop`.
pub async fn http2_streams(port: u16, root_pem: String, streams: usize, tally: Arc<Tally>) {
    let mut n = 0u64;
    while !tally.stopped() {
        let client = match super::http::h2_connect(&[&root_pem], port, "example.cn").await {
            Ok(client) => client,
            Err(e) => {
                tally.lose(format!("h2: connect: {e}"));
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        'connection: while !tally.stopped() {
            let mut waits = Vec::new();
            for _ in 0..streams {
                n += 1;
                let path = format!("/h2/{n}");
                let mut ready = match client.clone().ready().await {
                    Ok(ready) => ready,
                    // Not sent: the connection is going away.
                    Err(_) => break,
                };
                let request = http::Request::get(format!("https://example.cn{path}"))
                    .body(())
                    .expect("request");
                match ready.send_request(request, true) {
                    Ok((response, _)) => waits.push((path, response)),
                    Err(_) => break,
                }
            }
            if waits.is_empty() {
                break;
            }
            let mut gone = false;
            for (path, response) in waits {
                match h2_body(response).await {
                    Ok(body) if body == format!("GET {path} body=0").as_bytes() => {
                        tally.ok.fetch_add(1, Ordering::SeqCst);
                    }
                    Ok(body) => {
                        let body = String::from_utf8_lossy(&body).into_owned();
                        tally.lose(format!("h2 {path}: {body:?}"));
                    }
                    // The server did not take it (RFC 9113 8.7): sent again on a new connection.
                    Err(e) if e.is_go_away() || e.reason() == Some(h2::Reason::REFUSED_STREAM) => {
                        gone = true;
                    }
                    Err(e) => tally.lose(format!("h2 {path}: {e}")),
                }
            }
            if gone {
                break 'connection;
            }
        }
        tally.reconnects.fetch_add(1, Ordering::SeqCst);
    }
}

async fn h2_body(response: h2::client::ResponseFuture) -> Result<Vec<u8>, h2::Error> {
    let response = response.await?;
    let mut body = response.into_body();
    let mut out = Vec::new();
    while let Some(chunk) = body.data().await {
        let chunk: Bytes = chunk?;
        let _ = body.flow_control().release_capacity(chunk.len());
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

/// Every kind of steady client, started on `env`'s listeners.
pub fn clients(http: u16, https: u16, root_pem: &str, tally: &Arc<Tally>) -> Vec<JoinHandle<()>> {
    let mut tasks = Vec::new();
    for name in ["a", "b", "c"] {
        tasks.push(tokio::spawn(http1_keepalive(http, tally.clone(), name)));
    }
    let pem = root_pem.to_owned();
    tasks.push(tokio::spawn(http2_streams(https, pem, 8, tally.clone())));
    tasks
}

pub async fn stop(tally: &Arc<Tally>, tasks: Vec<JoinHandle<()>>) {
    tally.stop.store(true, Ordering::SeqCst);
    for task in tasks {
        let _ = tokio::time::timeout(Duration::from_secs(20), task).await;
    }
}

/// Waits until the clients have made `more` requests beyond what they had.
pub async fn progress(tally: &Arc<Tally>, more: u64, log: impl Fn() -> String) {
    let target = tally.ok() + more;
    let done = eventually(Duration::from_secs(30), || {
        let tally = tally.clone();
        async move { (tally.ok() >= target).then_some(()) }
    })
    .await;
    assert!(
        done.is_some(),
        "clients stalled at {}:\n{}",
        tally.ok(),
        log()
    );
}
