//! Real clients for the tests: HTTP/1.1 over TCP or rustls, HTTP/2, raw requests. The origins
//! they talk to are in `origins`.
#![allow(dead_code)]

use std::net::SocketAddr;

use std::sync::Arc;

use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

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

/// A TLS client trusting `roots` (PEM) that presents `cert_pem` with `key_pem` when asked.
pub fn tls_client_with_cert(roots_pem: &[&str], cert_pem: &str, key_pem: &str) -> TlsConnector {
    let chain = rustls_pemfile::certs(&mut cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .expect("client chain");
    let key = rustls_pemfile::private_key(&mut key_pem.as_bytes())
        .expect("client key PEM")
        .expect("a client key");
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("protocol versions")
    .with_root_certificates(root_store(roots_pem))
    .with_client_auth_cert(chain, key)
    .expect("client certificate");
    TlsConnector::from(Arc::new(config))
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
    h2_connect_watched(roots_pem, port, sni)
        .await
        .map(|(send, _)| send)
}

/// [`h2_connect`], with the task that drives the connection: it ends when the connection does.
pub async fn h2_connect_watched(
    roots_pem: &[&str],
    port: u16,
    sni: &str,
) -> std::io::Result<(
    h2::client::SendRequest<bytes::Bytes>,
    tokio::task::JoinHandle<()>,
)> {
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
    let driver = tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok((send, driver))
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
