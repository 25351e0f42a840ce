//! `menshen certs request`: a private key (ECDSA P-256, or RSA) and a CSR for the hosts. The key
//! waits in `pending/` and is never printed; the CSR goes to stdout for the CA.

use std::path::Path;

use rcgen::{CertificateParams, DnType, KeyPair, PKCS_ECDSA_P256_SHA256, PKCS_RSA_SHA256};
use rsa::pkcs8::EncodePrivateKey;
use rustls::pki_types::PrivatePkcs8KeyDer;

use super::place::Place;
use super::{name_for, pending, valid_name, IntakeError};
use crate::tls::cert::valid_san_dns;

/// Makes and keeps the key, prints the CSR and the next step.
pub fn run(
    config: &Path,
    hosts: &[String],
    rsa: Option<u32>,
    name: Option<&str>,
) -> Result<(), IntakeError> {
    let hosts = check_hosts(hosts)?;
    let name = match name {
        Some(n) => n.to_owned(),
        None => name_for(&hosts[0]),
    };
    if !valid_name(&name) {
        return Err(IntakeError::Usage {
            flag: "--name",
            reason: format!(
                "{name:?} cannot be a file name (use letters, digits, '.', '-' and '_', not \
                 starting with '.')"
            ),
        });
    }
    let place = Place::of(config)?;
    let (key, kind) = make_key(rsa)?;
    let mut params = CertificateParams::new(hosts.clone()).map_err(|e| IntakeError::Usage {
        flag: "--hosts",
        reason: format!("cannot be put in a CSR: {e}"),
    })?;
    params
        .distinguished_name
        .push(DnType::CommonName, hosts[0].as_str());
    let csr = params
        .serialize_request(&key)
        .and_then(|csr| csr.pem())
        .map_err(|e| IntakeError::Refused(format!("cannot make the CSR: {e}")))?;
    let key_file = pending::keep(&place.pending, &name, &key.serialize_pem(), &csr)?;
    print!("{csr}");
    eprintln!(
        "menshen: a {kind} private key for {} waits in {} (mode 0600; it never leaves this \
         machine).\n\
         Next: send the CSR above (also in {}) to your CA. When the certificate arrives, \
         install what it delivered, as it is (PEM, DER, .p7b, .pfx or the reseller's .zip):\n  \
         menshen certs install --config {} --dry-run FILE...\n  \
         menshen certs install --config {} FILE...",
        hosts.join(", "),
        key_file.display(),
        key_file.with_extension("csr").display(),
        config.display(),
        config.display(),
    );
    Ok(())
}

/// The hosts, lowercased, each a DNS name or a wildcard; at least one.
fn check_hosts(hosts: &[String]) -> Result<Vec<String>, IntakeError> {
    let hosts: Vec<String> = hosts
        .iter()
        .map(|h| h.trim().to_ascii_lowercase())
        .filter(|h| !h.is_empty())
        .collect();
    if hosts.is_empty() {
        return Err(IntakeError::Usage {
            flag: "--hosts",
            reason: "names no host (e.g. --hosts shop.example.cn,www.shop.example.cn)".into(),
        });
    }
    if let Some(bad) = hosts.iter().find(|h| !valid_san_dns(h)) {
        return Err(IntakeError::Usage {
            flag: "--hosts",
            reason: format!(
                "{bad:?} is not a host name (expected like shop.example.cn or *.example.cn)"
            ),
        });
    }
    Ok(hosts)
}

/// A new key: ECDSA P-256, or RSA of `bits` (2048 or 3072).
fn make_key(rsa: Option<u32>) -> Result<(KeyPair, String), IntakeError> {
    let failed = |e: String| IntakeError::Refused(format!("cannot make the private key: {e}"));
    let Some(bits) = rsa else {
        let key =
            KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(|e| failed(e.to_string()))?;
        return Ok((key, "ECDSA P-256".into()));
    };
    if !matches!(bits, 2048 | 3072) {
        return Err(IntakeError::Usage {
            flag: "--rsa",
            reason: format!("{bits} bits: choose 2048 or 3072"),
        });
    }
    let mut rng = rsa::rand_core::OsRng;
    let private =
        rsa::RsaPrivateKey::new(&mut rng, bits as usize).map_err(|e| failed(e.to_string()))?;
    let der = private.to_pkcs8_der().map_err(|e| failed(e.to_string()))?;
    let pkcs8 = PrivatePkcs8KeyDer::from(der.as_bytes().to_vec());
    let key = KeyPair::from_pkcs8_der_and_sign_algo(&pkcs8, &PKCS_RSA_SHA256)
        .map_err(|e| failed(e.to_string()))?;
    Ok((key, format!("RSA {bits}-bit")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_are_checked_and_named_in_the_error() {
        assert_eq!(
            check_hosts(&["Shop.Example.CN".into(), " *.example.cn".into()]).expect("ok"),
            ["shop.example.cn", "*.example.cn"]
        );
        let e = check_hosts(&["bad host".into()]).expect_err("refused");
        assert_eq!(
            e.to_string(),
            "--hosts: \"bad host\" is not a host name (expected like shop.example.cn or \
             *.example.cn)"
        );
        let e = check_hosts(&[]).expect_err("refused");
        assert!(e.to_string().starts_with("--hosts: names no host"));
        let e = make_key(Some(1024)).expect_err("refused");
        assert_eq!(e.to_string(), "--rsa: 1024 bits: choose 2048 or 3072");
        assert_eq!(name_for("*.example.cn"), "wildcard.example.cn");
        assert!(!valid_name("../x") && !valid_name(".hidden") && valid_name("shop_2026"));
    }
}
