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
    /// What its extendedKeyUsage says of TLS servers.
    pub server_use: ServerUse,
}

/// What a certificate's extendedKeyUsage says of serving TLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerUse {
    /// No extendedKeyUsage: any use.
    Unrestricted,
    /// The extension lists serverAuth (or anyExtendedKeyUsage).
    Allowed,
    /// The extension leaves TLS servers out.
    Forbidden,
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
            server_use: match eku {
                None => ServerUse::Unrestricted,
                Some(e) if e.server_auth || e.any => ServerUse::Allowed,
                Some(_) => ServerUse::Forbidden,
            },
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

/// A bundle in serving order, and what was corrected to get it there.
#[derive(Debug, Default)]
pub struct Arranged {
    /// The leaf, then each issuer; roots left out.
    pub chain: Vec<CertificateDer<'static>>,
    /// One line per correction, for the log and the reports.
    pub corrections: Vec<String>,
}

/// Puts a bundle in serving order: the leaf (the certificate `key` belongs to, else the only
/// server certificate) first, then each issuer by name, then certificates that issued none of
/// them; roots (self-signed) are left out, as clients bring their own. A bundle whose leaf cannot
/// be told apart is left as it is, for the checks to refuse with the reason.
pub fn arrange(chain: Vec<CertificateDer<'static>>, key: Option<&PrivateKeyDer<'_>>) -> Arranged {
    let parsed = Facts::all(&chain);
    if parsed.len() != chain.len() || chain.is_empty() {
        return Arranged {
            chain,
            corrections: Vec::new(),
        };
    }
    let mut facts: Vec<Facts> = Vec::with_capacity(parsed.len());
    let mut duplicates = Vec::new();
    for f in parsed {
        if facts.iter().any(|u| u.der == f.der) {
            duplicates.push(f.short);
        } else {
            facts.push(f);
        }
    }
    let spki = key.and_then(key_spki);
    let by_key = facts.iter().position(|f| Some(&f.spki) == spki.as_ref());
    let leaf_at = by_key.or_else(|| {
        let mut servers = facts
            .iter()
            .enumerate()
            .filter(|(_, f)| !f.is_ca && !f.self_signed());
        match (servers.next(), servers.next()) {
            (Some((i, _)), None) => Some(i),
            _ => (!facts[0].is_ca).then_some(0),
        }
    });
    let Some(leaf_at) = leaf_at else {
        return Arranged {
            chain,
            corrections: Vec::new(),
        };
    };
    let leaf = &facts[leaf_at];
    let mut order = issuer_path(leaf, &facts);
    let mut corrections = Vec::new();
    for f in &facts {
        if !order.iter().any(|o| o.der == f.der) {
            order.push(f);
        }
    }
    let is_root = |f: &Facts| f.self_signed() && f.der != leaf.der;
    for root in order.iter().filter(|f| is_root(f)) {
        corrections.push(format!(
            "the root \"{}\" is left out of the served chain (clients have their own copy)",
            root.short
        ));
    }
    for name in duplicates {
        corrections.push(format!("a second copy of \"{name}\" is left out"));
    }
    let served: Vec<&Facts> = order.into_iter().filter(|f| !is_root(f)).collect();
    let given: Vec<&Facts> = facts.iter().filter(|f| !is_root(f)).collect();
    let same_order =
        served.len() == given.len() && served.iter().zip(&given).all(|(a, b)| a.der == b.der);
    if !same_order {
        let names: Vec<&str> = given.iter().map(|f| f.short.as_str()).collect();
        corrections.push(format!(
            "the chain was out of order ({}); it is served leaf first, then each issuer",
            names.join(", ")
        ));
    }
    Arranged {
        chain: served.into_iter().map(|f| f.der.clone()).collect(),
        corrections,
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

    #[test]
    fn a_shuffled_bundle_is_served_leaf_first_without_its_root() {
        let (root_p, root_k, root) = ca("Root", None);
        let (inter_p, inter_k, inter) = ca("Issuing CA", Some((&root_p, &root_k)));
        let leaf_key = KeyPair::generate().expect("key");
        let leaf = CertificateParams::new(vec!["shop.example.cn".to_owned()])
            .expect("params")
            .signed_by(&leaf_key, &Issuer::from_params(&inter_p, &inter_k))
            .expect("sign")
            .der()
            .clone();
        let key = PrivateKeyDer::try_from(leaf_key.serialize_der()).expect("key der");
        let got = arrange(
            vec![root.clone(), inter.clone(), leaf.clone(), inter.clone()],
            Some(&key),
        );
        assert_eq!(got.chain, [leaf.clone(), inter.clone()]);
        assert_eq!(
            got.corrections,
            [
                "the root \"Root\" is left out of the served chain (clients have their own copy)",
                "a second copy of \"Issuing CA\" is left out",
                "the chain was out of order (Issuing CA, rcgen self signed cert); it is served leaf \
                 first, then each issuer",
            ]
        );
        let in_order = arrange(vec![leaf.clone(), inter.clone()], Some(&key));
        assert_eq!(in_order.chain, [leaf.clone(), inter.clone()]);
        assert!(in_order.corrections.is_empty());
        // Without the key, the only server certificate is the leaf.
        assert_eq!(
            arrange(vec![inter.clone(), leaf.clone()], None).chain,
            [leaf, inter.clone()]
        );
        // Only CA certificates: left as it is, for the checks to refuse.
        assert_eq!(arrange(vec![inter.clone()], None).chain, [inter]);
    }
}
