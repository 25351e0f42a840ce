//! Real clients and servers for the tests: an HTTP/1.1 client over TCP or rustls, origins that
//! name themselves in their answers (plain or TLS, with a slow streamed download), and a tiny
//! DNS responder.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio_rustls::{TlsAcceptor, TlsConnector};

/// Size of `/download`.
pub const DOWNLOAD_BYTES: usize = 2 * 1024 * 1024;

/// What a client saw.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// Serial (hex, uppercase) of the certificate the server presented, for TLS.
    pub serial: Option<String>,
}

impl Response {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A root store of `roots` (PEM).
pub fn root_store(roots_pem: &[&str]) -> rustls::RootCertStore {
    let mut store = rustls::RootCertStore::empty();
    for pem in roots_pem {
        for cert in rustls_pemfile::certs(&mut pem.as_bytes()) {
            store.add(cert.expect("root PEM")).expect("add root");
        }
    }
    store
}

/// A TLS client configuration trusting `roots` (PEM).
fn client_config(roots_pem: &[&str]) -> rustls::ClientConfig {
    rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_root_certificates(root_store(roots_pem))
        .with_no_client_auth()
}

/// A TLS client trusting `roots` (PEM).
pub fn tls_client(roots_pem: &[&str]) -> TlsConnector {
    TlsConnector::from(Arc::new(client_config(roots_pem)))
}

/// An HTTP/2 connection over TLS (ALPN `h2`) to `port` with SNI `sni`, trusting `roots_pem`.
pub async fn h2_connect(
    roots_pem: &[&str],
    port: u16,
    sni: &str,
) -> std::io::Result<h2::client::SendRequest<bytes::Bytes>> {
    let mut config = client_config(roots_pem);
    config.alpn_protocols = vec![b"h2".to_vec()];
    let tcp = TcpStream::connect(("127.0.0.1", port)).await?;
    let name = ServerName::try_from(sni.to_owned()).map_err(std::io::Error::other)?;
    let tls = TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await?;
    let (send, conn) = h2::client::handshake(tls)
        .await
        .map_err(std::io::Error::other)?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(send)
}

/// One GET on an HTTP/2 connection: its status.
pub async fn h2_get(
    send: &mut h2::client::SendRequest<bytes::Bytes>,
    url: &str,
) -> std::io::Result<u16> {
    let request = http::Request::get(url)
        .body(())
        .map_err(std::io::Error::other)?;
    *send = send.clone().ready().await.map_err(std::io::Error::other)?;
    let (response, _) = send
        .send_request(request, true)
        .map_err(std::io::Error::other)?;
    let response = response.await.map_err(std::io::Error::other)?;
    Ok(response.status().as_u16())
}

/// Serial of a DER certificate, uppercase hex without separators.
pub fn serial_of(der: &CertificateDer<'_>) -> String {
    let (_, cert) = x509_parser::parse_x509_certificate(der).expect("parse served cert");
    cert.raw_serial_as_string().replace(':', "").to_uppercase()
}

/// GET over TLS with SNI `sni` and Host `host`.
pub async fn get_tls(
    client: &TlsConnector,
    port: u16,
    sni: &str,
    host: &str,
    path: &str,
) -> std::io::Result<Response> {
    let tcp = TcpStream::connect(("127.0.0.1", port)).await?;
    let name = ServerName::try_from(sni.to_owned()).map_err(std::io::Error::other)?;
    let mut tls = client.connect(name, tcp).await?;
    let serial = tls
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first())
        .map(serial_of);
    let mut resp = request(&mut tls, host, path).await?;
    resp.serial = serial;
    Ok(resp)
}

/// GET over plain TCP.
pub async fn get_plain(port: u16, host: &str, path: &str) -> std::io::Result<Response> {
    let mut tcp = TcpStream::connect(("127.0.0.1", port)).await?;
    request(&mut tcp, host, path).await
}

/// The certificate serial a TLS handshake with `sni` gets, or the handshake error.
pub async fn handshake_serial(
    client: &TlsConnector,
    port: u16,
    sni: &str,
) -> std::io::Result<String> {
    let tcp = TcpStream::connect(("127.0.0.1", port)).await?;
    let name = ServerName::try_from(sni.to_owned()).map_err(std::io::Error::other)?;
    let tls = client.connect(name, tcp).await?;
    tls.get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first())
        .map(serial_of)
        .ok_or_else(|| std::io::Error::other("no certificate"))
}

async fn request<S: AsyncRead + AsyncWrite + Unpin>(
    s: &mut S,
    host: &str,
    path: &str,
) -> std::io::Result<Response> {
    let req = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await?;
    let mut raw = Vec::new();
    // A peer that closes without close_notify is fine for these tests.
    if let Err(e) = s.read_to_end(&mut raw).await {
        if raw.is_empty() {
            return Err(e);
        }
    }
    parse_response(&raw)
}

/// Parses a whole HTTP/1.1 response (Content-Length, chunked, or until close).
pub fn parse_response(raw: &[u8]) -> std::io::Result<Response> {
    let bad = |m: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, m.to_owned());
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| bad("no header end"))?;
    let head = String::from_utf8_lossy(&raw[..end]);
    let mut lines = head.split("\r\n");
    let status_line = lines.next().ok_or_else(|| bad("no status line"))?;
    let status: u16 = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad("bad status line"))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let mut body = raw[end + 4..].to_vec();
    let chunked = headers.iter().any(|(n, v)| {
        n.eq_ignore_ascii_case("transfer-encoding") && v.eq_ignore_ascii_case("chunked")
    });
    if chunked {
        body = dechunk(&body);
    }
    Ok(Response {
        status,
        headers,
        body,
        serial: None,
    })
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(pos) = data.windows(2).position(|w| w == b"\r\n") {
        let size_text = String::from_utf8_lossy(&data[..pos]);
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("0").trim(), 16)
            .unwrap_or(0);
        data = &data[pos + 2..];
        if size == 0 || data.len() < size {
            break;
        }
        out.extend_from_slice(&data[..size]);
        data = &data[(size + 2).min(data.len())..];
    }
    out
}

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

/// Sends raw request bytes over plain TCP (optionally from a fixed source port) and reads the
/// whole response.
pub async fn raw_plain(
    port: u16,
    raw: &[u8],
    source_port: Option<u16>,
) -> std::io::Result<Response> {
    let mut tcp = match source_port {
        Some(sp) => {
            let socket = tokio::net::TcpSocket::new_v4()?;
            socket.set_reuseaddr(true)?;
            socket.bind(SocketAddr::from(([127, 0, 0, 1], sp)))?;
            socket
                .connect(SocketAddr::from(([127, 0, 0, 1], port)))
                .await?
        }
        None => TcpStream::connect(("127.0.0.1", port)).await?,
    };
    tcp.write_all(raw).await?;
    read_response(&mut tcp).await
}

/// Sends `prefix` (e.g. a PROXY header) in clear, then raw request bytes over TLS with `sni`.
pub async fn raw_tls(
    client: &TlsConnector,
    port: u16,
    sni: &str,
    prefix: &[u8],
    raw: &[u8],
) -> std::io::Result<Response> {
    let mut tcp = TcpStream::connect(("127.0.0.1", port)).await?;
    tcp.write_all(prefix).await?;
    let name = ServerName::try_from(sni.to_owned()).map_err(std::io::Error::other)?;
    let mut tls = client.connect(name, tcp).await?;
    tls.write_all(raw).await?;
    read_response(&mut tls).await
}

async fn read_response<S: AsyncRead + Unpin>(s: &mut S) -> std::io::Result<Response> {
    let mut raw = Vec::new();
    if let Err(e) = s.read_to_end(&mut raw).await {
        if raw.is_empty() {
            return Err(e);
        }
    }
    parse_response(&raw)
}

/// A simple GET with extra header lines (each ending in CRLF).
pub fn get_with(host: &str, path: &str, extra: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n{extra}Connection: close\r\n\r\n").into_bytes()
}

/// A rustls acceptor for an origin serving this chain and key (PEM), offering `alpn`.
fn tls_acceptor(chain_pem: &str, key_pem: &str, alpn: &[&[u8]]) -> TlsAcceptor {
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
