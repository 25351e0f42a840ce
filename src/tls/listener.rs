//! TLS termination on the listeners.
//!
//! pingora 0.9's TLS listener builds its rustls `ServerConfig` itself, once, from `TlsSettings`,
//! which expose neither the session cache, the ticket count nor the cipher order, and cannot be
//! changed by a reload. So menshen's TLS listeners are TCP listeners to pingora, and the
//! connection gate (`proxy/conn.rs`) hands each connection that arrived on one to
//! [`TlsTerminator::accept`]: the `unrecognized_name` check, then pingora's rustls handshake with
//! a `ServerConfig` built here from the snapshot's [`TlsProtocol`]. The config is rebuilt when a
//! reload changes the protocol policy (the next handshake uses it); the session cache is made
//! once and shared by every rebuild.

use std::net::SocketAddr;
use std::sync::Arc;

use arc_swap::ArcSwap;
use pingora::listeners::tls::Acceptor;
use pingora::protocols::l4::stream::Stream as L4Stream;
use pingora::protocols::tls::server::handshake_with_callback;
use pingora::protocols::{GetSocketDigest, Stream};
use pingora::Result;
use rustls::server::{ResolvesServerCert, StoresServerSessions};

use super::provider::TlsProtocol;
use super::resolver::{HandshakeInfo, SniResolver};
use crate::snapshot::{SharedSnapshot, Snapshot};

/// Whether a connection accepted at `local` came through one of the listeners bound to `addrs`.
fn listens_on(addrs: &[SocketAddr], local: SocketAddr) -> bool {
    addrs
        .iter()
        .any(|a| a.port() == local.port() && (a.ip() == local.ip() || a.ip().is_unspecified()))
}

/// The rustls configuration in use and the policy it was built from.
struct Built {
    protocol: Arc<TlsProtocol>,
    acceptor: Acceptor,
}

/// Terminates TLS for the connections that arrive on TLS listeners.
pub struct TlsTerminator {
    /// The TLS listeners' addresses (an unspecified IP matches any local address on its port).
    addrs: Vec<SocketAddr>,
    resolver: Arc<dyn ResolvesServerCert>,
    sessions: Arc<dyn StoresServerSessions>,
    built: ArcSwap<Built>,
}

impl TlsTerminator {
    /// Terminates TLS on `addrs` with the certificates and protocol policy `state` serves.
    pub fn new(state: SharedSnapshot, addrs: Vec<SocketAddr>) -> anyhow::Result<Self> {
        let resolver: Arc<dyn ResolvesServerCert> = Arc::new(SniResolver::new(state.clone()));
        let sessions = TlsProtocol::session_cache();
        let protocol = state.load().policy.tls.clone();
        let config = protocol
            .server_config(resolver.clone(), &sessions)
            .map_err(|e| anyhow::anyhow!("policy: TLS settings: {e}"))?;
        let acceptor = Acceptor::from_server_config(Arc::new(config));
        Ok(Self {
            addrs,
            resolver,
            sessions,
            built: ArcSwap::from_pointee(Built { protocol, acceptor }),
        })
    }

    /// Whether `stream` arrived on a TLS listener (by the address it was accepted at).
    pub fn terminates<S: GetSocketDigest + ?Sized>(&self, stream: &S) -> bool {
        let local = stream
            .get_socket_digest()
            .and_then(|d| d.local_addr().and_then(|a| a.as_inet()).copied());
        local.is_some_and(|local| listens_on(&self.addrs, local))
    }

    /// The acceptor for `protocol`, built now if a reload changed the policy.
    fn acceptor(&self, protocol: &Arc<TlsProtocol>) -> Arc<Built> {
        let built = self.built.load_full();
        if Arc::ptr_eq(&built.protocol, protocol) {
            return built;
        }
        match protocol.server_config(self.resolver.clone(), &self.sessions) {
            Ok(config) => {
                let fresh = Arc::new(Built {
                    protocol: protocol.clone(),
                    acceptor: Acceptor::from_server_config(Arc::new(config)),
                });
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

    /// Refuses a name no certificate covers, then runs the handshake.
    pub async fn accept(&self, mut l4: L4Stream, snapshot: &Snapshot) -> Result<Stream> {
        super::sni_gate::check(&snapshot.certs, &mut l4).await?;
        let built = self.acceptor(&snapshot.policy.tls);
        let tls = handshake_with_callback(&built.acceptor, l4, &HandshakeInfo).await?;
        Ok(Box::new(tls))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listeners_match_by_address_or_by_port_on_any_ip() {
        let exact: SocketAddr = "127.0.0.1:8443".parse().expect("addr");
        let any: SocketAddr = "[::]:443".parse().expect("addr");
        let matches = |local: &str| listens_on(&[exact, any], local.parse().expect("addr"));
        assert!(matches("127.0.0.1:8443"));
        assert!(!matches("127.0.0.2:8443"));
        assert!(matches("10.1.2.3:443"));
        assert!(matches("[::ffff:10.1.2.3]:443"));
        assert!(!matches("127.0.0.1:80"));
    }
}
