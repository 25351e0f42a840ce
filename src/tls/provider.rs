//! The TLS protocol policy of the listeners: lowest version, cipher suites and whose order picks
//! one, and session resumption.
//!
//! rustls only implements AEAD suites, so the default set already is "AEAD only". Key exchange
//! offers the hybrid post-quantum X25519MLKEM768 (what current browsers send) first, from
//! rustls's aws-lc-rs provider, then ring's X25519, P-256 and P-384. The policy is
//! compiled with each load into a [`TlsProtocol`]; the connection gate (`proxy/conn.rs`) builds
//! the rustls `ServerConfig` from it and rebuilds it when a reload changes it, so a change applies
//! to the next handshake. The session cache is made once and outlives every rebuild.

use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::server::danger::ClientCertVerifier;
use rustls::server::{
    NoServerSessionStorage, ResolvesServerCert, ServerSessionMemoryCache, StoresServerSessions,
};
use rustls::{ServerConfig, SupportedProtocolVersion};

/// TLS 1.3 alone.
static TLS13_ONLY: &[&SupportedProtocolVersion] = &[&rustls::version::TLS13];

/// Sessions a listener remembers for resumption (about 200 bytes each when full).
pub const SESSION_CACHE_ENTRIES: usize = 20_000;

/// The settings a [`TlsProtocol`] is compiled from, as written in `[tls]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSource {
    /// "1.2" or "1.3".
    pub min_version: String,
    /// rustls suite names in preference order; empty: all, AES-128-GCM first.
    pub suites: Vec<String>,
    /// Pick the first of our suites the client offers, not the client's first.
    pub prefer_server_order: bool,
    /// Remember sessions and send TLS 1.3 tickets so clients can resume.
    pub session_resumption: bool,
    /// Offer X25519MLKEM768 before the classical groups.
    pub post_quantum: bool,
}

/// Why a [`TlsSource`] cannot be compiled: the `[tls]` key at fault and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsPolicyError {
    /// `tls.min_version` or `tls.cipher_suites`.
    pub key: &'static str,
    /// What is wrong, and what would be right.
    pub message: String,
}

fn suites_error(message: String) -> TlsPolicyError {
    TlsPolicyError {
        key: "tls.cipher_suites",
        message,
    }
}

/// A compiled TLS protocol policy.
#[derive(Debug)]
pub struct TlsProtocol {
    /// What it was compiled from: a reload that changes none of it keeps this one.
    pub source: TlsSource,
    provider: Arc<CryptoProvider>,
    versions: &'static [&'static SupportedProtocolVersion],
}

/// A suite's rustls name, as written in `cipher_suites`.
fn suite_name(suite: &rustls::SupportedCipherSuite) -> String {
    format!("{:?}", suite.suite())
}

/// Every suite ring offers, TLS 1.3 first, then AES-128-GCM before AES-256-GCM before
/// ChaCha20: the cheapest strong suite for a server with AES instructions, and a SHA-256
/// transcript.
fn in_default_order(mut provider: CryptoProvider) -> CryptoProvider {
    provider
        .cipher_suites
        .sort_by_key(|s| default_rank(&suite_name(s)));
    provider
}

fn default_rank(name: &str) -> u8 {
    let v13 = if name.starts_with("TLS13_") { 0 } else { 3 };
    let cipher = if name.contains("AES_128_GCM") {
        0
    } else if name.contains("AES_256_GCM") {
        1
    } else {
        2
    };
    v13 + cipher
}

impl Default for TlsSource {
    fn default() -> Self {
        Self {
            min_version: "1.2".into(),
            suites: Vec::new(),
            prefer_server_order: true,
            session_resumption: true,
            post_quantum: true,
        }
    }
}

/// The key exchange groups offered, in preference order: the hybrid post-quantum group when
/// `post_quantum`, then ring's X25519, secp256r1 and secp384r1.
fn with_groups(mut provider: CryptoProvider, post_quantum: bool) -> CryptoProvider {
    if post_quantum {
        provider
            .kx_groups
            .insert(0, rustls::crypto::aws_lc_rs::kx_group::X25519MLKEM768);
    }
    provider
}

impl Default for TlsProtocol {
    /// TLS 1.2 and 1.3, every suite (AES-128-GCM first), our order, resumption on.
    fn default() -> Self {
        Self {
            source: TlsSource::default(),
            provider: Arc::new(with_groups(
                in_default_order(rustls::crypto::ring::default_provider()),
                true,
            )),
            versions: rustls::ALL_VERSIONS,
        }
    }
}

impl TlsProtocol {
    /// Compiles `source`; the error names the key and the value that cannot be honoured.
    pub fn compile(source: TlsSource) -> Result<Self, TlsPolicyError> {
        let mut provider = rustls::crypto::ring::default_provider();
        let known: Vec<String> = provider.cipher_suites.iter().map(suite_name).collect();
        if let Some(bad) = source.suites.iter().find(|s| !known.contains(s)) {
            return Err(suites_error(format!(
                "{bad:?} is not a supported cipher suite; choose from {}",
                known.join(", ")
            )));
        }
        if source.suites.is_empty() {
            provider = in_default_order(provider);
        } else {
            let all = std::mem::take(&mut provider.cipher_suites);
            provider.cipher_suites = source
                .suites
                .iter()
                .filter_map(|wanted| all.iter().find(|s| &suite_name(s) == wanted).copied())
                .collect();
        }
        let versions: &'static [&'static SupportedProtocolVersion] =
            match source.min_version.as_str() {
                "1.2" => rustls::ALL_VERSIONS,
                "1.3" => TLS13_ONLY,
                other => {
                    return Err(TlsPolicyError {
                        key: "tls.min_version",
                        message: format!("{other:?} is not \"1.2\" or \"1.3\""),
                    })
                }
            };
        provider
            .cipher_suites
            .retain(|s| versions.contains(&s.version()));
        if provider.cipher_suites.is_empty() {
            return Err(suites_error(
                "no cipher suite is left for the allowed TLS versions".into(),
            ));
        }
        let provider = Arc::new(with_groups(provider, source.post_quantum));
        // What rustls itself checks when the listeners build their config: fail here, at load.
        ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(versions)
            .map_err(|e| suites_error(format!("rustls refuses these settings: {e}")))?;
        Ok(Self {
            source,
            provider,
            versions,
        })
    }

    /// A session cache for [`Self::server_config`], to be kept across rebuilds.
    pub fn session_cache() -> Arc<dyn StoresServerSessions> {
        ServerSessionMemoryCache::new(SESSION_CACHE_ENTRIES)
    }

    /// The listeners' rustls configuration: certificates from `resolver`, client certificates
    /// checked by `clients` (none asked for without it), HTTP/2 and HTTP/1.1 by ALPN, and
    /// resumption through `sessions` when the policy allows it.
    pub fn server_config(
        &self,
        resolver: Arc<dyn ResolvesServerCert>,
        clients: Option<Arc<dyn ClientCertVerifier>>,
        sessions: &Arc<dyn StoresServerSessions>,
    ) -> Result<ServerConfig, rustls::Error> {
        let builder = ServerConfig::builder_with_provider(self.provider.clone())
            .with_protocol_versions(self.versions)?;
        let builder = match clients {
            Some(verifier) => builder.with_client_cert_verifier(verifier),
            None => builder.with_no_client_auth(),
        };
        let mut config = builder.with_cert_resolver(resolver);
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        config.ignore_client_order = self.source.prefer_server_order;
        if self.source.session_resumption {
            config.session_storage = sessions.clone();
        } else {
            config.session_storage = Arc::new(NoServerSessionStorage {});
            config.send_tls13_tickets = 0;
        }
        Ok(config)
    }

    /// The key exchange groups offered, in preference order (for the log and `/status`).
    pub fn group_names(&self) -> Vec<String> {
        let names = self
            .provider
            .kx_groups
            .iter()
            .map(|g| format!("{:?}", g.name()));
        names.collect()
    }

    /// The suites offered, in preference order (for the startup log).
    pub fn suite_names(&self) -> Vec<String> {
        self.provider.cipher_suites.iter().map(suite_name).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(min: &str, suites: &[&str]) -> TlsSource {
        TlsSource {
            min_version: min.into(),
            suites: suites.iter().map(|s| s.to_string()).collect(),
            prefer_server_order: true,
            session_resumption: true,
            post_quantum: true,
        }
    }

    #[test]
    fn post_quantum_group_first_unless_turned_off() {
        let on = TlsProtocol::compile(source("1.2", &[])).expect("on");
        assert_eq!(
            on.group_names(),
            ["X25519MLKEM768", "X25519", "secp256r1", "secp384r1"]
        );
        let mut s = source("1.2", &[]);
        s.post_quantum = false;
        let off = TlsProtocol::compile(s).expect("off");
        assert_eq!(off.group_names(), ["X25519", "secp256r1", "secp384r1"]);
    }

    #[test]
    fn tls13_only_and_named_suites_in_the_order_given() {
        let p = TlsProtocol::compile(source("1.3", &[])).expect("1.3");
        assert_eq!(
            p.suite_names(),
            [
                "TLS13_AES_128_GCM_SHA256",
                "TLS13_AES_256_GCM_SHA384",
                "TLS13_CHACHA20_POLY1305_SHA256"
            ]
        );
        let named = [
            "TLS13_CHACHA20_POLY1305_SHA256",
            "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
        ];
        let p = TlsProtocol::compile(source("1.2", &named)).expect("two suites");
        assert_eq!(p.suite_names(), named);
        let err = TlsProtocol::compile(source("1.2", &["TLS_RSA_WITH_RC4_128_MD5"]))
            .expect_err("unknown");
        assert_eq!(err.key, "tls.cipher_suites");
        assert!(
            err.message.contains("is not a supported cipher suite"),
            "{err:?}"
        );
        let err = TlsProtocol::compile(source("1.3", &["TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256"]))
            .expect_err("a 1.2 suite with 1.3 only");
        assert!(err.message.contains("no cipher suite is left"), "{err:?}");
        let err = TlsProtocol::compile(source("1.1", &[])).expect_err("1.1");
        assert_eq!(err.key, "tls.min_version");
    }

    #[test]
    fn default_order_puts_aes_128_first_in_each_version() {
        let names = TlsProtocol::compile(source("1.2", &[]))
            .expect("default")
            .suite_names();
        assert_eq!(names[0], "TLS13_AES_128_GCM_SHA256");
        let first12 = names
            .iter()
            .position(|n| !n.starts_with("TLS13_"))
            .expect("1.2 suites");
        assert!(names[first12].contains("AES_128_GCM"), "{names:?}");
        assert!(names[..first12].iter().all(|n| n.starts_with("TLS13_")));
    }

    #[test]
    fn a_tls12_only_suite_list_builds_a_config() {
        let resolver: Arc<dyn ResolvesServerCert> =
            Arc::new(rustls::server::ResolvesServerCertUsingSni::new());
        let p = TlsProtocol::compile(source("1.2", &["TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256"]))
            .expect("1.2 suites only");
        let config = p
            .server_config(resolver, None, &TlsProtocol::session_cache())
            .expect("config");
        assert_eq!(config.crypto_provider().cipher_suites.len(), 1);
    }

    #[test]
    fn resumption_off_means_no_cache_and_no_tickets() {
        let resolver: Arc<dyn ResolvesServerCert> =
            Arc::new(rustls::server::ResolvesServerCertUsingSni::new());
        let cache = TlsProtocol::session_cache();
        let mut s = source("1.2", &[]);
        let on = TlsProtocol::compile(s.clone()).expect("on");
        let config = on
            .server_config(resolver.clone(), None, &cache)
            .expect("config");
        assert!(config.session_storage.can_cache());
        assert!(config.send_tls13_tickets > 0);
        assert!(config.ignore_client_order);
        s.session_resumption = false;
        s.prefer_server_order = false;
        let off = TlsProtocol::compile(s).expect("off");
        let config = off.server_config(resolver, None, &cache).expect("config");
        assert!(!config.session_storage.can_cache());
        assert_eq!(config.send_tls13_tickets, 0);
        assert!(!config.ignore_client_order);
        assert_eq!(
            config.alpn_protocols,
            [b"h2".to_vec(), b"http/1.1".to_vec()]
        );
    }
}
