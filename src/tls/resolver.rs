//! The rustls certificate resolver: one `ArcSwap` load and a hash lookup per handshake.
//!
//! It reads the certificate store of the current snapshot, so a reload changes the certificate of
//! every new handshake at once while established connections keep theirs.

use std::sync::Arc;

use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use crate::snapshot::SharedSnapshot;

/// Resolves a ClientHello to a certificate of the current snapshot.
#[derive(Debug)]
pub struct SniResolver {
    state: SharedSnapshot,
}

impl SniResolver {
    /// A resolver over `state`.
    pub fn new(state: SharedSnapshot) -> Self {
        Self { state }
    }
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        // rustls hands SNI over lowercased and validated.
        self.state.load().certs.resolve(hello.server_name())
    }
}

/// What the HTTP layer learns about a TLS connection from its handshake.
#[derive(Debug, Default)]
pub struct ConnInfo {
    /// The SNI the client sent.
    pub sni: Option<Arc<str>>,
}

/// Records the SNI of each handshake into the connection's TLS digest (read by the proxy).
pub struct HandshakeInfo;

#[async_trait::async_trait]
impl pingora::listeners::TlsAccept for HandshakeInfo {
    async fn handshake_complete_callback(
        &self,
        tls: &pingora::protocols::tls::TlsRef,
    ) -> Option<Arc<dyn std::any::Any + Send + Sync>> {
        Some(Arc::new(ConnInfo {
            sni: tls.server_name().map(Arc::from),
        }))
    }
}
