//! TLS termination on the listeners.
//!
//! pingora 0.9's TLS listener builds its rustls `ServerConfig` itself, once, from `TlsSettings`,
//! which expose neither the session cache, the ticket count nor the cipher order, and cannot be
//! changed by a reload. So menshen's TLS listeners are TCP listeners to pingora, in services of
//! their own, whose connection gate (`proxy/conn.rs`) hands each connection to
//! [`TlsTerminator::accept`]: the `unrecognized_name` check, then pingora's rustls handshake with
//! a `ServerConfig` built here from the snapshot's [`TlsProtocol`]. The config is rebuilt when a
//! reload changes the protocol policy (the next handshake uses it); the session cache is made
//! once and shared by every rebuild.

use std::sync::Arc;

use arc_swap::ArcSwap;
use pingora::listeners::tls::Acceptor;
use pingora::protocols::l4::stream::Stream as L4Stream;
use pingora::protocols::tls::server::handshake_with_callback;
use pingora::protocols::Stream;
use pingora::Result;
use rustls::server::{ResolvesServerCert, StoresServerSessions};

use super::provider::TlsProtocol;
use super::resolver::{HandshakeInfo, Served, SniResolver};

/// The rustls configuration in use and the policy it was built from.
struct Built {
    protocol: Arc<TlsProtocol>,
    acceptor: Acceptor,
}

impl Built {
    fn new(
        protocol: &Arc<TlsProtocol>,
        resolver: &Arc<dyn ResolvesServerCert>,
        sessions: &Arc<dyn StoresServerSessions>,
    ) -> Result<Self, rustls::Error> {
        let config = protocol.server_config(resolver.clone(), sessions)?;
        Ok(Self {
            protocol: protocol.clone(),
            acceptor: Acceptor::from_server_config(Arc::new(config)),
        })
    }
}

/// Terminates TLS for the connections that arrive on TLS listeners.
pub struct TlsTerminator<S> {
    state: Arc<ArcSwap<S>>,
    resolver: Arc<dyn ResolvesServerCert>,
    sessions: Arc<dyn StoresServerSessions>,
    built: ArcSwap<Built>,
}

impl<S: Served> TlsTerminator<S> {
    /// Terminates TLS with the certificates and protocol policy `state` serves at each handshake.
    pub fn new(state: Arc<ArcSwap<S>>) -> anyhow::Result<Self> {
        let resolver: Arc<dyn ResolvesServerCert> = Arc::new(SniResolver::new(state.clone()));
        let sessions = TlsProtocol::session_cache();
        let built = Built::new(state.load().protocol(), &resolver, &sessions)
            .map_err(|e| anyhow::anyhow!("policy: TLS settings: {e}"))?;
        Ok(Self {
            state,
            resolver,
            sessions,
            built: ArcSwap::from_pointee(built),
        })
    }

    /// The acceptor for `protocol`, built now if a reload changed the policy.
    fn acceptor(&self, protocol: &Arc<TlsProtocol>) -> Arc<Built> {
        let built = self.built.load_full();
        if Arc::ptr_eq(&built.protocol, protocol) {
            return built;
        }
        match Built::new(protocol, &self.resolver, &self.sessions) {
            Ok(fresh) => {
                let fresh = Arc::new(fresh);
                self.built.store(fresh.clone());
                tracing::info!(
                    min_version = %protocol.source.min_version,
                    suites = ?protocol.suite_names(),
                    prefer_server_order = protocol.source.prefer_server_order,
                    session_resumption = protocol.source.session_resumption,
                    "TLS settings applied to new connections"
                );
                fresh
            }
            Err(e) => {
                // compile() checked what rustls checks here; keep serving the settings in use.
                tracing::error!("TLS settings not applied, the previous ones stay: {e}");
                built
            }
        }
    }

    /// Refuses a name no certificate covers, then runs the handshake, each with the snapshot
    /// serving when it starts (not the one serving at the accept).
    pub async fn accept(&self, mut l4: L4Stream) -> Result<Stream> {
        super::sni_gate::check(&self.state, &mut l4).await?;
        let built = self.acceptor(self.state.load().protocol());
        let tls = handshake_with_callback(&built.acceptor, l4, &HandshakeInfo).await?;
        Ok(Box::new(tls))
    }
}
