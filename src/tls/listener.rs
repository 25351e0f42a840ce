//! TLS termination on the listeners.
//!
//! pingora 0.9's TLS listener builds its rustls `ServerConfig` itself, once, from `TlsSettings`,
//! which expose neither the session cache, the ticket count nor the cipher order, and cannot be
//! changed by a reload. So menshen's TLS listeners are TCP listeners to pingora, in services of
//! their own, whose connection gate (`proxy/conn.rs`) hands each connection to
//! [`TlsTerminator::accept`]: the `unrecognized_name` check, then pingora's rustls handshake with
//! a `ServerConfig` built here from the snapshot's [`TlsProtocol`]. The config is rebuilt when a
//! reload changes the protocol policy (the next handshake uses it); the session cache is made
//! once and shared by every rebuild. A site with a client certificate check (mTLS) gets a
//! configuration of its own, picked by the SNI the gate peeked, with a session cache of its own.

use std::sync::Arc;

use arc_swap::ArcSwap;
use pingora::listeners::tls::Acceptor;
use pingora::protocols::l4::stream::Stream as L4Stream;
use pingora::protocols::tls::server::handshake_with_callback;
use pingora::protocols::Stream;
use pingora::Result;
use rustls::server::{ResolvesServerCert, StoresServerSessions};

use super::client_auth::ClientAuth;
use super::provider::TlsProtocol;
use super::resolver::{HandshakeInfo, Served, SniResolver};

/// One rustls configuration: with no client certificate check, or with one site's.
struct Flavour {
    acceptor: Acceptor,
    info: HandshakeInfo,
    /// A site's check gets a session cache of its own: a session made without the check must
    /// not resume into a handshake that would have run it.
    sessions: Arc<dyn StoresServerSessions>,
}

/// The rustls configurations in use and the policy and client checks they were built from.
struct Built {
    protocol: Arc<TlsProtocol>,
    plain: Flavour,
    /// One per distinct client certificate check, in the order of `Served::client_auths`.
    checked: Vec<Flavour>,
}

impl Built {
    fn new(
        protocol: &Arc<TlsProtocol>,
        auths: &[Arc<ClientAuth>],
        resolver: &Arc<dyn ResolvesServerCert>,
        sessions: &Arc<dyn StoresServerSessions>,
        previous: Option<&Built>,
    ) -> Result<Self, rustls::Error> {
        let flavour = |auth: Option<&Arc<ClientAuth>>, sessions: Arc<dyn StoresServerSessions>| {
            let verifier = auth.map(|a| a.verifier());
            let config = protocol.server_config(resolver.clone(), verifier, &sessions)?;
            Ok::<_, rustls::Error>(Flavour {
                acceptor: Acceptor::from_server_config(Arc::new(config)),
                info: HandshakeInfo {
                    auth: auth.cloned(),
                },
                sessions,
            })
        };
        let mut checked = Vec::with_capacity(auths.len());
        for auth in auths {
            let kept = previous
                .and_then(|p| {
                    p.checked
                        .iter()
                        .find(|f| f.info.auth.as_ref() == Some(auth))
                })
                .map(|f| f.sessions.clone());
            checked.push(flavour(
                Some(auth),
                kept.unwrap_or_else(TlsProtocol::session_cache),
            )?);
        }
        Ok(Self {
            protocol: protocol.clone(),
            plain: flavour(None, sessions.clone())?,
            checked,
        })
    }

    /// Whether it was built from `protocol` and `auths`.
    fn is_for(&self, protocol: &Arc<TlsProtocol>, auths: &[Arc<ClientAuth>]) -> bool {
        Arc::ptr_eq(&self.protocol, protocol)
            && self.checked.len() == auths.len()
            && self
                .checked
                .iter()
                .zip(auths)
                .all(|(f, a)| f.info.auth.as_ref() == Some(a))
    }

    /// The configuration for a handshake with `auth`'s check, or with none.
    fn flavour(&self, auth: Option<&Arc<ClientAuth>>) -> &Flavour {
        let Some(auth) = auth else {
            return &self.plain;
        };
        let found = self
            .checked
            .iter()
            .find(|f| f.info.auth.as_ref() == Some(auth));
        // Built from the same snapshot's list, so it is there.
        found.unwrap_or(&self.plain)
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
        let now = state.load();
        let built = Built::new(
            now.protocol(),
            now.client_auths(),
            &resolver,
            &sessions,
            None,
        )
        .map_err(|e| anyhow::anyhow!("policy: TLS settings: {e}"))?;
        Ok(Self {
            state,
            resolver,
            sessions,
            built: ArcSwap::from_pointee(built),
        })
    }

    /// The configurations for `state`, built now if a reload changed the policy or the sites'
    /// client certificate checks.
    fn acceptors(&self, state: &S) -> Arc<Built> {
        let built = self.built.load_full();
        let (protocol, auths) = (state.protocol(), state.client_auths());
        if built.is_for(protocol, auths) {
            return built;
        }
        match Built::new(
            protocol,
            auths,
            &self.resolver,
            &self.sessions,
            Some(&built),
        ) {
            Ok(fresh) => {
                let fresh = Arc::new(fresh);
                self.built.store(fresh.clone());
                tracing::info!(
                    min_version = %protocol.source.min_version,
                    suites = ?protocol.suite_names(),
                    prefer_server_order = protocol.source.prefer_server_order,
                    session_resumption = protocol.source.session_resumption,
                    key_exchange = ?protocol.group_names(),
                    client_certificate_checks = auths.len(),
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
    /// The SNI picks the configuration: a site with a client certificate check has its own.
    pub async fn accept(&self, mut l4: L4Stream) -> Result<Stream> {
        let sni = super::sni_gate::check(&self.state, &mut l4).await?;
        let state = self.state.load();
        let built = self.acceptors(&state);
        let flavour = built.flavour(state.client_auth(sni.as_deref()));
        drop(state);
        let tls = handshake_with_callback(&flavour.acceptor, l4, &flavour.info).await?;
        Ok(Box::new(tls))
    }
}
