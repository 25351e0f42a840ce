//! Refuses a ClientHello no certificate covers with an `unrecognized_name` alert.
//!
//! rustls answers a resolver that finds nothing with `access_denied`, which tells a client
//! nothing useful. Before the handshake, [`check`] peeks at the ClientHello (rewinding what it
//! read), and when the current snapshot has no certificate for its SNI and no default, it sends
//! the alert RFC 6066 asks for and closes. With a default certificate every name is served and,
//! unless a site checks client certificates (the listener then needs the SNI), the check reads
//! nothing. The caller bounds how long it may wait for the ClientHello.

use pingora::protocols::l4::stream::Stream as L4Stream;
use pingora::{Error, ErrorType, Result};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use arc_swap::ArcSwap;

use super::resolver::Served;

/// A fatal TLS 1.2-framed alert record: `unrecognized_name` (112).
const UNRECOGNIZED_NAME_ALERT: [u8; 7] = [0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 112];
/// Largest ClientHello read before giving up on peeking (rustls itself then decides).
const MAX_HELLO_BYTES: usize = 16 * 1024 + 5;

/// What the peeked bytes say.
enum Peek {
    /// A complete ClientHello with this SNI (lowercased).
    Hello(Option<String>),
    /// Not a ClientHello rustls can parse; the handshake will fail on its own.
    NotHello,
}

async fn peek_hello(stream: &mut L4Stream, seen: &mut Vec<u8>) -> Result<Peek> {
    let mut acceptor = rustls::server::Acceptor::default();
    let mut chunk = [0u8; 4096];
    while seen.len() < MAX_HELLO_BYTES {
        let n = stream
            .read(&mut chunk)
            .await
            .map_err(|e| Error::because(ErrorType::ReadError, "reading ClientHello", e))?;
        if n == 0 {
            return Error::e_explain(ErrorType::ConnectionClosed, "closed before ClientHello");
        }
        seen.extend_from_slice(&chunk[..n]);
        let mut fresh = &chunk[..n];
        while !fresh.is_empty() {
            if acceptor.read_tls(&mut fresh).is_err() {
                return Ok(Peek::NotHello);
            }
        }
        match acceptor.accept() {
            Ok(Some(accepted)) => {
                let sni = accepted.client_hello().server_name().map(str::to_owned);
                return Ok(Peek::Hello(sni));
            }
            Ok(None) => continue,
            Err(_) => return Ok(Peek::NotHello),
        }
    }
    Ok(Peek::NotHello)
}

/// Refuses a connection whose ClientHello names no certificate `state` serves, with the
/// `unrecognized_name` alert; leaves what it read to be read again by the handshake. Returns the
/// SNI when it peeked: it does when some site checks client certificates (the SNI picks the
/// rustls configuration), or when there is no default certificate.
pub async fn check<S: Served>(state: &ArcSwap<S>, stream: &mut L4Stream) -> Result<Option<String>> {
    let peek = {
        let now = state.load();
        now.certs().default_cert().is_none() || !now.client_auths().is_empty()
    };
    if !peek {
        return Ok(None);
    }
    let mut seen = Vec::with_capacity(1024);
    let peeked = peek_hello(stream, &mut seen).await;
    stream.rewind(&seen);
    let sni = match peeked? {
        Peek::Hello(sni) => sni,
        Peek::NotHello => return Ok(None),
    };
    if state.load().certs().accepts(sni.as_deref()) {
        return Ok(sni);
    }
    tracing::info!(
        sni = sni.as_deref().unwrap_or("<none>"),
        "refused TLS handshake: no certificate for this name"
    );
    // Best effort: the connection is dropped either way.
    let _ = stream.write_all(&UNRECOGNIZED_NAME_ALERT).await;
    let _ = stream.flush().await;
    Error::e_explain(ErrorType::TLSHandshakeFailure, "unrecognized_name")
}
