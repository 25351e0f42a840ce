//! The rustls certificate resolver: one `ArcSwap` load and a hash lookup per handshake.
//!
//! It reads the certificate store of the current snapshot, so a reload changes the certificate of
//! every new handshake at once while established connections keep theirs.

use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use super::client_auth::{forwarded_client_cert, ClientAuth, ClientCertCheck};
use super::provider::TlsProtocol;
use super::CertStore;

/// What TLS termination reads from the serving state at each handshake (the snapshot, which
/// sits above this module and implements it).
pub trait Served: Send + Sync + 'static {
    /// The certificates served now.
    fn certs(&self) -> &CertStore;
    /// The protocol policy (versions, suites, resumption) now.
    fn protocol(&self) -> &Arc<TlsProtocol>;
    /// Every distinct client certificate check of the sites.
    fn client_auths(&self) -> &[Arc<ClientAuth>];
    /// The client certificate check of the site serving `sni`, if it has one.
    fn client_auth(&self, sni: Option<&str>) -> Option<&Arc<ClientAuth>>;
}

/// Resolves a ClientHello to a certificate of the current state.
pub struct SniResolver<S> {
    state: Arc<ArcSwap<S>>,
}

impl<S> std::fmt::Debug for SniResolver<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SniResolver")
    }
}

impl<S: Served> SniResolver<S> {
    /// A resolver over `state`.
    pub fn new(state: Arc<ArcSwap<S>>) -> Self {
        Self { state }
    }
}

impl<S: Served> ResolvesServerCert for SniResolver<S> {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        // rustls hands SNI over lowercased and validated.
        self.state.load().certs().resolve(hello.server_name())
    }
}

/// What the HTTP layer learns about a TLS connection from its handshake.
#[derive(Debug, Default)]
pub struct ConnInfo {
    /// The SNI the client sent.
    pub sni: Option<Arc<str>>,
    /// The client certificate check the handshake ran (for a site that has one).
    pub client_cert: Option<Arc<ClientCertCheck>>,
}

/// Records the SNI of each handshake, and what its client certificate check settled, into the
/// connection's TLS digest (read by the proxy).
#[derive(Debug, Default)]
pub struct HandshakeInfo {
    /// The check the handshakes it follows run.
    pub auth: Option<Arc<ClientAuth>>,
}

#[async_trait::async_trait]
impl pingora::listeners::TlsAccept for HandshakeInfo {
    async fn handshake_complete_callback(
        &self,
        tls: &pingora::protocols::tls::TlsRef,
    ) -> Option<Arc<dyn std::any::Any + Send + Sync>> {
        let client_cert = self.auth.as_ref().map(|auth| {
            Arc::new(ClientCertCheck {
                auth: auth.clone(),
                forwarded: tls.peer_certificate_der().and_then(forwarded_client_cert),
            })
        });
        Some(Arc::new(ConnInfo {
            sni: tls.server_name().map(Arc::from),
            client_cert,
        }))
    }
}
