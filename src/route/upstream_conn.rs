//! A connection from the HTTP/1 engine to a backend: plain TCP or TLS (rustls, verified against
//! the upstream's roots for the name it was made for). Made by [`connect`], kept idle by `pool`.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

use crate::tls::client::{server_name, UpstreamTls};

/// A connection to a backend.
pub enum UpstreamConn {
    /// Plain HTTP.
    Plain(TcpStream),
    /// HTTP over TLS.
    Tls(Box<TlsStream<TcpStream>>),
}

/// What a TLS connection is made for: the upstream's settings and the name sent as SNI (and
/// verified).
#[derive(Clone, Copy)]
pub struct TlsTarget<'a> {
    /// The upstream's client configuration.
    pub tls: &'a UpstreamTls,
    /// The server name.
    pub name: &'a str,
}

/// Why no connection was made.
#[derive(Debug)]
pub struct ConnectError {
    /// The I/O error, for the status map.
    pub error: io::Error,
    /// Whether TCP connected and the TLS handshake failed.
    pub handshake: bool,
}

impl std::fmt::Display for ConnectError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.handshake {
            true => write!(f, "TLS handshake: {}", self.error),
            false => write!(f, "{}", self.error),
        }
    }
}

/// A new connection to `addr` (TLS when `tls` is given), connected within `connect_timeout`
/// and shaken hands within `total_timeout` of the start.
pub async fn connect(
    addr: SocketAddr,
    tls: Option<TlsTarget<'_>>,
    connect_timeout: Option<Duration>,
    total_timeout: Option<Duration>,
) -> Result<UpstreamConn, ConnectError> {
    let tcp = |error| ConnectError {
        error,
        handshake: false,
    };
    let connecting = TcpStream::connect(addr);
    let stream = within(connect_timeout, connecting, "connect timed out")
        .await
        .map_err(tcp)?;
    stream.set_nodelay(true).map_err(tcp)?;
    let Some(target) = tls else {
        return Ok(UpstreamConn::Plain(stream));
    };
    let handshake = |error| ConnectError {
        error,
        handshake: true,
    };
    let name = server_name(target.name)
        .or_else(|| server_name(&addr.ip().to_string()))
        .ok_or_else(|| handshake(io::Error::other("no server name to send")))?;
    let connector = TlsConnector::from(target.tls.config.clone());
    let shaking = connector.connect(name, stream);
    let stream = within(total_timeout, shaking, "TLS handshake timed out")
        .await
        .map_err(handshake)?;
    Ok(UpstreamConn::Tls(Box::new(stream)))
}

async fn within<T>(
    limit: Option<Duration>,
    fut: impl std::future::Future<Output = io::Result<T>>,
    what: &str,
) -> io::Result<T> {
    match limit {
        Some(t) => tokio::time::timeout(t, fut)
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, what.to_owned()))?,
        None => fut.await,
    }
}

impl UpstreamConn {
    /// Writes `bytes` and flushes them (a TLS connection holds written bytes until flushed).
    pub async fn send_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        use tokio::io::AsyncWriteExt;
        self.write_all(bytes).await?;
        self.flush().await
    }

    /// Whether the backend chose HTTP/2 by ALPN.
    pub fn chose_h2(&self) -> bool {
        match self {
            UpstreamConn::Plain(_) => false,
            UpstreamConn::Tls(s) => s.get_ref().1.alpn_protocol() == Some(b"h2"),
        }
    }

    /// Whether an idle connection can carry a request: nothing to read on it (no end of
    /// stream, no bytes it should not have sent). On TLS, records that carry no data (a
    /// session ticket, a key update) are taken in on the way; a close_notify is an end.
    pub fn still_open(&mut self) -> bool {
        let mut cx = Context::from_waker(Waker::noop());
        match self {
            UpstreamConn::Plain(stream) => match stream.poll_read_ready(&mut cx) {
                Poll::Pending => true,
                Poll::Ready(Err(_)) => false,
                Poll::Ready(Ok(())) => matches!(
                    stream.try_read(&mut [0u8; 1]),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock
                ),
            },
            UpstreamConn::Tls(stream) => {
                let (tcp, _) = stream.get_ref();
                if tcp.poll_read_ready(&mut cx).is_pending() {
                    return true;
                }
                let mut byte = [0u8; 1];
                let mut buf = ReadBuf::new(&mut byte);
                Pin::new(stream.as_mut())
                    .poll_read(&mut cx, &mut buf)
                    .is_pending()
            }
        }
    }
}

impl AsyncRead for UpstreamConn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            UpstreamConn::Plain(s) => Pin::new(s).poll_read(cx, buf),
            UpstreamConn::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for UpstreamConn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            UpstreamConn::Plain(s) => Pin::new(s).poll_write(cx, buf),
            UpstreamConn::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            UpstreamConn::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            UpstreamConn::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            UpstreamConn::Plain(s) => s.is_write_vectored(),
            UpstreamConn::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            UpstreamConn::Plain(s) => Pin::new(s).poll_flush(cx),
            UpstreamConn::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            UpstreamConn::Plain(s) => Pin::new(s).poll_shutdown(cx),
            UpstreamConn::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}
