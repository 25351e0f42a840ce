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
