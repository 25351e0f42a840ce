//! A certificate bundle as operators receive it: which certificate is the leaf, which issued
//! which, which is a root. `cert.rs` serves the bundle in order and `reject.rs` names the
//! certificate at fault; both read these facts instead of parsing X.509 themselves.

use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use super::common_name;

/// What one certificate of a bundle says about itself, parsed once.
#[derive(Debug, Clone)]
pub struct Facts {
    /// The certificate.
    pub der: CertificateDer<'static>,
    /// Subject, as displayed (`CN=..., O=...`).
    pub subject: String,
    /// Issuer, as displayed.
    pub issuer: String,
    /// The subject's CN, or the whole subject without one: for short messages.
    pub short: String,
    subject_raw: Vec<u8>,
    issuer_raw: Vec<u8>,
    /// basicConstraints CA:TRUE.
    pub is_ca: bool,
    /// basicConstraints pathLenConstraint.
    pub path_len: Option<u32>,
    /// Not-before, seconds since the epoch.
    pub not_before: i64,
    /// Not-after, seconds since the epoch.
    pub not_after: i64,
    /// SubjectPublicKeyInfo DER, to match a private key.
    pub spki: Vec<u8>,
    /// Signature algorithm OID, dotted.
    pub signature_oid: String,
    /// extendedKeyUsage: `None` without the extension, else whether it allows TLS servers.
    pub server_auth: Option<bool>,
}

impl Facts {
    /// Parses `der`; `None` for what is not X.509.
    pub fn of(der: &CertificateDer<'_>) -> Option<Facts> {
        let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
        let constraints = cert.basic_constraints().ok().flatten().map(|b| b.value);
        let eku = cert.extended_key_usage().ok().flatten().map(|e| e.value);
        Some(Facts {
            der: der.clone().into_owned(),
            subject: cert.subject().to_string(),
            issuer: cert.issuer().to_string(),
            short: common_name(cert.subject()).unwrap_or_else(|| cert.subject().to_string()),
            subject_raw: cert.subject().as_raw().to_vec(),
            issuer_raw: cert.issuer().as_raw().to_vec(),
            is_ca: constraints.is_some_and(|b| b.ca),
            path_len: constraints.and_then(|b| b.path_len_constraint),
            not_before: cert.validity().not_before.timestamp(),
            not_after: cert.validity().not_after.timestamp(),
            spki: cert.public_key().raw.to_vec(),
            signature_oid: cert.signature_algorithm.algorithm.to_id_string(),
            server_auth: eku.map(|e| e.server_auth || e.any),
        })
    }

    /// Parses every certificate of `certs` that is X.509.
    pub fn all(certs: &[CertificateDer<'_>]) -> Vec<Facts> {
        certs.iter().filter_map(Facts::of).collect()
    }

    /// Issued by itself: a root (or a self-signed leaf).
    pub fn self_signed(&self) -> bool {
        self.subject_raw == self.issuer_raw
    }

    /// Whether this certificate's subject is `child`'s issuer (by name).
    pub fn names_issuer_of(&self, child: &Facts) -> bool {
        self.subject_raw == child.issuer_raw
    }

    /// Whether `key` is this certificate's private key.
    pub fn matches_key(&self, key: &PrivateKeyDer<'_>) -> bool {
        key_spki(key).is_some_and(|spki| spki == self.spki)
    }
}

/// The SubjectPublicKeyInfo of a private key, as a certificate for it carries it.
pub fn key_spki(key: &PrivateKeyDer<'_>) -> Option<Vec<u8>> {
    let provider = rustls::crypto::ring::default_provider();
    let signing = provider
        .key_provider
        .load_private_key(key.clone_key())
        .ok()?;
    signing.public_key().map(|spki| spki.as_ref().to_vec())
}

/// `leaf` and then, by name, each issuer found among `certs`, up to a root or to an issuer
/// `certs` lacks. A root is last; nothing is visited twice.
pub fn issuer_path<'a>(leaf: &'a Facts, certs: &'a [Facts]) -> Vec<&'a Facts> {
    let mut path = vec![leaf];
    let mut current = leaf;
    while !current.self_signed() {
        let next = certs
            .iter()
            .find(|c| c.names_issuer_of(current) && !path.iter().any(|p| p.der == c.der));
        match next {
            Some(issuer) => {
                path.push(issuer);
                current = issuer;
            }
            None => break,
        }
    }
    path
}

/// The name the chain of `leaf` ends at: the root it reaches among `certs`, or the issuer
/// `certs` lacks. A root appended to the file that did not issue the chain is not its end.
pub fn chain_end(leaf: &Facts, certs: &[Facts]) -> String {
    let path = issuer_path(leaf, certs);
    match path.last() {
        Some(last) if last.self_signed() => last.subject.clone(),
        Some(last) => last.issuer.clone(),
        None => leaf.issuer.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};

    fn ca(
        cn: &str,
        parent: Option<(&CertificateParams, &KeyPair)>,
    ) -> (CertificateParams, KeyPair, CertificateDer<'static>) {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, cn);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let key = KeyPair::generate().expect("key");
        let cert = match parent {
            Some((p, k)) => params.signed_by(&key, &Issuer::from_params(p, k)),
            None => params.self_signed(&key),
        }
        .expect("sign");
        let der = cert.der().clone();
        (params, key, der)
    }

    #[test]
    fn the_chain_ends_where_the_names_stop_not_at_an_appended_root() {
        let (root_p, root_k, root) = ca("Approved Root", None);
        let (_, _, inter) = ca("Issuing CA", Some((&root_p, &root_k)));
        let (foreign_p, foreign_k, _) = ca("Foreign CA", None);
        let leaf_key = KeyPair::generate().expect("key");
        let leaf = CertificateParams::new(vec!["shop.example.cn".to_owned()])
            .expect("params")
            .signed_by(&leaf_key, &Issuer::from_params(&foreign_p, &foreign_k))
            .expect("sign");
        let facts = Facts::all(&[leaf.der().clone(), inter.clone(), root.clone()]);
        assert_eq!(chain_end(&facts[0], &facts), "CN=Foreign CA");
        let inter_facts = Facts::of(&inter).expect("parse");
        assert_eq!(chain_end(&inter_facts, &facts), "CN=Approved Root");
        assert_eq!(issuer_path(&inter_facts, &facts).len(), 2);
        let key = PrivateKeyDer::try_from(leaf_key.serialize_der()).expect("key der");
        assert!(facts[0].matches_key(&key));
        assert!(!facts[1].matches_key(&key));
    }
}
