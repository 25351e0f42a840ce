//! Origins for the tests: ones that name themselves in their answers (plain or TLS, with a slow
//! streamed download), an HTTP/2-only TLS origin, and a tiny DNS responder.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::CertificateDer;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, UdpSocket};
use tokio_rustls::TlsAcceptor;

/// Size of `/download`.
pub const DOWNLOAD_BYTES: usize = 2 * 1024 * 1024;

/// An origin that answers every request with `NAME PATH`; `/download` streams
/// [`DOWNLOAD_BYTES`] over about two seconds; `/healthz` answers per [`Origin::healthy`].
/// Counts the requests it served, health checks aside.
pub struct Origin {
    pub port: u16,
    pub hits: Arc<AtomicUsize>,
    /// What `/healthz` answers: 200 while true, 503 while false.
    pub healthy: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Origin {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Origin {
    pub async fn start(name: &str) -> Origin {
        Self::start_inner(name, None).await
    }

    /// The same over TLS with this certificate chain and key (PEM).
    pub async fn start_tls(name: &str, chain_pem: &str, key_pem: &str) -> Origin {
        let acceptor = tls_acceptor(chain_pem, key_pem, &[]);
        Self::start_inner(name, Some(acceptor)).await
    }

    async fn start_inner(name: &str, tls: Option<TlsAcceptor>) -> Origin {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind origin");
        Self::serve(name, listener, tls)
    }

    fn serve(name: &str, listener: TcpListener, tls: Option<TlsAcceptor>) -> Origin {
        let port = listener.local_addr().expect("origin addr").port();
        let hits = Arc::new(AtomicUsize::new(0));
        let healthy = Arc::new(AtomicBool::new(true));
        let name = name.to_owned();
        let counter = hits.clone();
        let health = healthy.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                let (name, counter, tls) = (name.clone(), counter.clone(), tls.clone());
                let health = health.clone();
                tokio::spawn(async move {
                    match tls {
                        Some(acceptor) => {
                            if let Ok(s) = acceptor.accept(tcp).await {
                                serve_conn(s, &name, &counter, &health).await;
                            }
                        }
                        None => serve_conn(tcp, &name, &counter, &health).await,
                    }
                });
            }
        });
        Origin {
            port,
            hits,
            healthy,
            task,
        }
    }

    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

async fn serve_conn<S: AsyncRead + AsyncWrite + Unpin>(
    mut s: S,
    name: &str,
    hits: &AtomicUsize,
    healthy: &AtomicBool,
) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let end = loop {
            if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break end;
            }
            match s.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        };
        let head = String::from_utf8_lossy(&buf[..end]).into_owned();
        buf.drain(..end + 4);
        let path = head.split(' ').nth(1).unwrap_or("/").to_owned();
        if path == "/healthz" {
            let r = if healthy.load(Ordering::SeqCst) {
                "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
            } else {
                "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n"
            };
            if s.write_all(r.as_bytes()).await.is_err() {
                return;
            }
            continue;
        }
        hits.fetch_add(1, Ordering::SeqCst);
        let host = head
            .lines()
            .find_map(|l| {
                l.strip_prefix("host: ")
                    .or_else(|| l.strip_prefix("Host: "))
            })
            .unwrap_or("")
            .to_owned();
        let ok = if path == "/download" {
            download(&mut s).await
        } else if path == "/hang" {
            tokio::time::sleep(Duration::from_secs(10)).await;
            false
        } else if path.split('?').next() == Some("/echo") {
            let r = format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nServer: origin/1.0\r\nX-Powered-By: test\r\n\r\n{head}",
                head.len()
            );
            s.write_all(r.as_bytes()).await.is_ok()
        } else {
            let body = format!("{name} {path} host={host}");
            let r = format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nContent-Type: text/plain\r\n\r\n{body}",
                body.len()
            );
            s.write_all(r.as_bytes()).await.is_ok()
        };
        if !ok {
            return;
        }
    }
}

/// The byte at offset `i` of `/download`.
pub fn download_byte(i: usize) -> u8 {
    (i % 251) as u8
}

async fn download<S: AsyncWrite + Unpin>(s: &mut S) -> bool {
    let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {DOWNLOAD_BYTES}\r\n\r\n");
    if s.write_all(head.as_bytes()).await.is_err() {
        return false;
    }
    let chunk = 64 * 1024;
    for start in (0..DOWNLOAD_BYTES).step_by(chunk) {
        let data: Vec<u8> = (start..start + chunk).map(download_byte).collect();
        if s.write_all(&data).await.is_err() {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(60)).await;
    }
    s.flush().await.is_ok()
}

/// A DNS responder on loopback answering A queries for `name` with `addr`, TTL 1 s;
/// everything else NXDOMAIN. Counts queries.
pub struct DnsResponder {
    pub addr: SocketAddr,
    pub queries: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for DnsResponder {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl DnsResponder {
    pub async fn start(name: &str, answer: std::net::Ipv4Addr) -> DnsResponder {
        let socket = UdpSocket::bind("127.0.0.1:0").await.expect("bind dns");
        let addr = socket.local_addr().expect("dns addr");
        let queries = Arc::new(AtomicUsize::new(0));
        let counter = queries.clone();
        let wanted = name.trim_end_matches('.').to_ascii_lowercase();
        let task = tokio::spawn(async move {
            let mut buf = [0u8; 512];
            loop {
                let Ok((n, peer)) = socket.recv_from(&mut buf).await else {
                    continue;
                };
                counter.fetch_add(1, Ordering::SeqCst);
                if let Some(reply) = dns_reply(&buf[..n], &wanted, answer) {
                    let _ = socket.send_to(&reply, peer).await;
                }
            }
        });
        DnsResponder {
            addr,
            queries,
            task,
        }
    }
}

/// Builds the answer to one query: the question echoed, one A record if it matches.
fn dns_reply(q: &[u8], wanted: &str, answer: std::net::Ipv4Addr) -> Option<Vec<u8>> {
    if q.len() < 12 {
        return None;
    }
    // Question name: labels from offset 12.
    let mut i = 12;
    let mut labels = Vec::new();
    while i < q.len() && q[i] != 0 {
        let len = q[i] as usize;
        labels.push(String::from_utf8_lossy(q.get(i + 1..i + 1 + len)?).to_ascii_lowercase());
        i += 1 + len;
    }
    let qtype = u16::from_be_bytes([*q.get(i + 1)?, *q.get(i + 2)?]);
    let question_end = i + 5;
    let matches = labels.join(".") == wanted;
    let answer_a = matches && qtype == 1;
    let mut r = Vec::with_capacity(64);
    r.extend_from_slice(&q[..2]); // id
    let rcode = if matches { 0 } else { 3 };
    r.extend_from_slice(&[0x81, 0x80 | rcode]); // response, RD, RA
    r.extend_from_slice(&[0, 1, 0, u8::from(answer_a), 0, 0, 0, 0]);
    r.extend_from_slice(q.get(12..question_end)?);
    if answer_a {
        r.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 1, 0, 4]);
        r.extend_from_slice(&answer.octets());
    }
    Some(r)
}

/// A rustls acceptor for an origin serving this chain and key (PEM), offering `alpn`.
pub fn tls_acceptor(chain_pem: &str, key_pem: &str, alpn: &[&[u8]]) -> TlsAcceptor {
    let certs: Vec<CertificateDer<'static>> = rustls_pemfile::certs(&mut chain_pem.as_bytes())
        .collect::<Result<_, _>>()
        .expect("origin chain");
    let key = rustls_pemfile::private_key(&mut key_pem.as_bytes())
        .expect("origin key")
        .expect("origin key present");
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .expect("origin TLS config");
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    TlsAcceptor::from(Arc::new(config))
}

/// A TLS origin that speaks only HTTP/2 (ALPN `h2`), answering `h2 PATH`.
pub async fn start_h2_origin(chain_pem: &str, key_pem: &str) -> (u16, tokio::task::JoinHandle<()>) {
    let acceptor = tls_acceptor(chain_pem, key_pem, &[b"h2"]);
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind h2 origin");
    let port = listener.local_addr().expect("addr").port();
    let task = tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let Ok(mut conn) = h2::server::handshake(tls).await else {
                    return;
                };
                while let Some(Ok((req, mut respond))) = conn.accept().await {
                    let body = format!("h2 {}", req.uri().path());
                    let resp = http::Response::builder()
                        .status(200)
                        .header("content-length", body.len())
                        .body(())
                        .expect("response");
                    if let Ok(mut stream) = respond.send_response(resp, false) {
                        let _ = stream.send_data(bytes::Bytes::from(body), true);
                    }
                }
            });
        }
    });
    (port, task)
}
