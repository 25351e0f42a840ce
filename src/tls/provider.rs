//! The TLS protocol policy: minimum version and allowed cipher suites.
//!
//! rustls only implements AEAD suites, so the default set already is "AEAD only". The policy is
//! installed as the process-wide rustls provider before pingora builds its TLS settings, so it
//! applies from start; changing it needs a restart.

use rustls::crypto::CryptoProvider;

/// The provider for `min_version` ("1.2" or "1.3") and `suites` (rustls names; empty: all).
pub fn build(min_version: &str, suites: &[String]) -> Result<CryptoProvider, String> {
    let mut provider = rustls::crypto::ring::default_provider();
    let known: Vec<String> = provider
        .cipher_suites
        .iter()
        .map(|s| format!("{:?}", s.suite()))
        .collect();
    if let Some(bad) = suites.iter().find(|s| !known.contains(s)) {
        return Err(format!(
            "{bad:?} is not a supported cipher suite; choose from {}",
            known.join(", ")
        ));
    }
    if !suites.is_empty() {
        provider
            .cipher_suites
            .retain(|s| suites.contains(&format!("{:?}", s.suite())));
    }
    if min_version == "1.3" {
        provider
            .cipher_suites
            .retain(|s| s.version() == &rustls::version::TLS13);
    }
    if provider.cipher_suites.is_empty() {
        return Err("no cipher suite is left for the allowed TLS versions".into());
    }
    Ok(provider)
}

/// Installs the policy as the process default (once; later calls change nothing).
pub fn install(min_version: &str, suites: &[String]) -> Result<(), String> {
    let provider = build(min_version, suites)?;
    if provider.install_default().is_err() {
        tracing::warn!("TLS provider already installed; TLS policy changes need a restart");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls13_only_and_named_suites() {
        let p = build("1.3", &[]).expect("1.3");
        assert!(p
            .cipher_suites
            .iter()
            .all(|s| s.version() == &rustls::version::TLS13));
        let p = build("1.2", &["TLS13_AES_128_GCM_SHA256".into()]).expect("one suite");
        assert_eq!(p.cipher_suites.len(), 1);
        let err = build("1.2", &["TLS_RSA_WITH_RC4_128_MD5".into()]).expect_err("unknown");
        assert!(err.contains("is not a supported cipher suite"), "{err}");
    }
}
