//! The client side of TLS to backends (the HTTP/1 engine's upstream connections): one rustls
//! `ClientConfig` per upstream, built at load from its `ca_file` (or the webpki roots), with
//! session resumption kept in memory so a new connection to a known backend skips the full
//! handshake.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

/// How connections to one upstream's backends are secured.
pub struct UpstreamTls {
    /// The rustls configuration every connection shares (resumption cache included).
    pub config: Arc<ClientConfig>,
    /// The configured SNI; without one, the request's Host name is sent.
    pub sni: Option<String>,
    /// Tells apart idle connections of upstreams with different roots at one address.
    pub group: u64,
}

/// A client configuration trusting `roots`, offering HTTP/1.1 by ALPN (`h2` first when `http2`).
/// With `verify` off the backend's certificate is not checked at all (its handshake signature
/// still is).
pub fn client_config(
    roots: &[CertificateDer<'_>],
    verify: bool,
    http2: bool,
) -> Result<ClientConfig, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let mut config = if verify {
        let mut store = RootCertStore::empty();
        let (_, unusable) = store.add_parsable_certificates(roots.iter().cloned());
        if store.is_empty() {
            return Err(format!(
                "none of its {} certificates is a usable root ({unusable} unparsable)",
                roots.len()
            ));
        }
        builder.with_root_certificates(store).with_no_client_auth()
    } else {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(Unverified(provider)))
            .with_no_client_auth()
    };
    config.alpn_protocols = match http2 {
        true => vec![b"h2".to_vec(), b"http/1.1".to_vec()],
        false => vec![b"http/1.1".to_vec()],
    };
    Ok(config)
}

/// The name a connection's handshake is made for: `name` (a DNS name or an IP literal, brackets
/// allowed), or `None` when it is neither.
pub fn server_name(name: &str) -> Option<ServerName<'static>> {
    let bare = name
        .strip_prefix('[')
        .and_then(|n| n.strip_suffix(']'))
        .unwrap_or(name);
    ServerName::try_from(bare.to_owned()).ok()
}

/// `verify = false`: any certificate is taken; the handshake is still signed by its key.
#[derive(Debug)]
struct Unverified(Arc<CryptoProvider>);

impl ServerCertVerifier for Unverified {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algorithms = &self.0.signature_verification_algorithms;
        verify_tls12_signature(message, cert, dss, algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algorithms = &self.0.signature_verification_algorithms;
        verify_tls13_signature(message, cert, dss, algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_ip_literals() {
        assert!(matches!(
            server_name("backend.example"),
            Some(ServerName::DnsName(_))
        ));
        assert!(matches!(
            server_name("[::1]"),
            Some(ServerName::IpAddress(_))
        ));
        assert!(matches!(
            server_name("10.0.0.1"),
            Some(ServerName::IpAddress(_))
        ));
        assert!(server_name("bad name").is_none());
    }

    #[test]
    fn roots_must_be_usable() {
        let junk = [CertificateDer::from(vec![1, 2, 3])];
        assert!(client_config(&junk, true, false).is_err());
        assert!(
            client_config(&junk, false, false).is_ok(),
            "nothing is verified"
        );
        let roots = webpki_root_certs::TLS_SERVER_ROOT_CERTS;
        let config = client_config(roots, true, false).expect("webpki roots");
        assert_eq!(config.alpn_protocols, [b"http/1.1".to_vec()]);
        let config = client_config(roots, true, true).expect("webpki roots");
        assert_eq!(
            config.alpn_protocols,
            [b"h2".to_vec(), b"http/1.1".to_vec()]
        );
    }
}
