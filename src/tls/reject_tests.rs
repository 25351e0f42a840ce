//! Every refusal message, and the certificate each webpki refusal is blamed on.

use std::path::Path;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

use super::*;
use crate::tls::cert::{unix_now, verify};
use crate::tls::TlsError;

struct Ca {
    params: CertificateParams,
    key: KeyPair,
    der: CertificateDer<'static>,
}

fn params(cn: &str, ca: Option<BasicConstraints>, days: (i64, i64)) -> CertificateParams {
    let hosts = if ca.is_some() {
        vec![]
    } else {
        vec![cn.to_owned()]
    };
    let mut p = CertificateParams::new(hosts).expect("params");
    p.distinguished_name.push(DnType::CommonName, cn);
    p.is_ca = ca.map_or(IsCa::ExplicitNoCa, IsCa::Ca);
    let now = time::OffsetDateTime::now_utc();
    p.not_before = now + time::Duration::days(days.0);
    p.not_after = now + time::Duration::days(days.1);
    p
}

impl Ca {
    fn root(cn: &str) -> Ca {
        Ca::make(
            params(cn, Some(BasicConstraints::Unconstrained), (-9, 900)),
            None,
        )
    }

    fn make(params: CertificateParams, issuer: Option<&Ca>) -> Ca {
        let key = KeyPair::generate().expect("key");
        let cert = match issuer {
            Some(i) => params.signed_by(&key, &Issuer::from_params(&i.params, &i.key)),
            None => params.self_signed(&key),
        }
        .expect("sign");
        let der = cert.der().clone();
        Ca { params, key, der }
    }

    fn sub(&self, cn: &str, constraint: BasicConstraints) -> Ca {
        Ca::make(params(cn, Some(constraint), (-9, 900)), Some(self))
    }

    fn leaf(&self, host: &str) -> Ca {
        Ca::make(params(host, None, (-1, 90)), Some(self))
    }

    fn key_der(&self) -> PrivateKeyDer<'static> {
        PrivatePkcs8KeyDer::from(self.key.serialize_der()).into()
    }
}

fn roots(approved: &[&Ca]) -> ApprovedRoots {
    let mut roots = ApprovedRoots::default();
    for ca in approved {
        roots
            .add_der(Path::new("approved.pem"), &ca.der)
            .expect("root");
    }
    roots
}

/// The reason `leaf` with `chain` is refused under `approved`.
fn refusal(leaf: &Ca, chain: &[&Ca], approved: &[&Ca]) -> RejectReason {
    let mut certs = vec![leaf.der.clone()];
    certs.extend(chain.iter().map(|c| c.der.clone()));
    let result = verify(
        Path::new("live/shop.crt"),
        Path::new("live/shop.key"),
        certs,
        &[],
        leaf.key_der(),
        &roots(approved),
        unix_now(),
    );
    match result {
        Err(TlsError::Rejected { reason, .. }) => *reason,
        Err(other) => panic!("not a refusal: {other}"),
        Ok(_) => panic!("served"),
    }
}

#[test]
fn a_foreign_leaf_with_the_approved_root_appended_ends_at_its_own_issuer() {
    let approved = Ca::root("Approved Root");
    let foreign = Ca::root("Foreign CA");
    let leaf = foreign.leaf("shop.example.cn");
    assert_eq!(
        refusal(&leaf, &[&approved], &[&approved]),
        RejectReason::NotApproved {
            chain_end: "CN=Foreign CA".into()
        }
    );
}

#[test]
fn a_look_alike_of_an_approved_root_is_named() {
    let approved = Ca::root("Approved Root");
    let look_alike = Ca::root("Approved Root");
    let leaf = look_alike.leaf("shop.example.cn");
    assert_eq!(
        refusal(&leaf, &[], &[&approved]),
        RejectReason::ApprovedNameOtherKey {
            issuer: "CN=Approved Root".into()
        }
    );
}

#[test]
fn a_path_length_violation_names_the_constrained_intermediate() {
    let root = Ca::root("Approved Root");
    let policy = root.sub("Policy CA", BasicConstraints::Constrained(0));
    let issuing = policy.sub("Issuing CA", BasicConstraints::Unconstrained);
    let leaf = issuing.leaf("shop.example.cn");
    assert_eq!(
        refusal(&leaf, &[&issuing, &policy], &[&root]),
        RejectReason::PathTooLong {
            subject: "CN=Policy CA".into(),
            limit: 0
        }
    );
}

#[test]
fn a_server_certificate_in_an_issuers_place_is_named() {
    let root = Ca::root("Approved Root");
    let server = root.leaf("server.example.cn");
    let leaf = server.leaf("shop.example.cn");
    assert_eq!(
        refusal(&leaf, &[&server], &[&root]),
        RejectReason::EndEntityAsIssuer {
            subject: "CN=server.example.cn".into()
        }
    );
}

#[test]
fn an_expired_intermediate_is_named_with_its_date() {
    let root = Ca::root("Approved Root");
    let old = Ca::make(
        params(
            "Old Issuing CA",
            Some(BasicConstraints::Unconstrained),
            (-900, -3),
        ),
        Some(&root),
    );
    let leaf = old.leaf("shop.example.cn");
    match refusal(&leaf, &[&old], &[&root]) {
        RejectReason::IssuerExpired { subject, date } => {
            assert_eq!(subject, "CN=Old Issuing CA");
            assert!(!date.is_empty());
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn an_intermediate_not_for_tls_servers_is_named() {
    let root = Ca::root("Approved Root");
    let mut p = params("Mail CA", Some(BasicConstraints::Unconstrained), (-9, 900));
    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::EmailProtection];
    let mail = Ca::make(p, Some(&root));
    let leaf = mail.leaf("shop.example.cn");
    assert_eq!(
        refusal(&leaf, &[&mail], &[&root]),
        RejectReason::IssuerNotServerAuth {
            subject: "CN=Mail CA".into()
        }
    );
}

#[test]
fn signature_algorithms_are_named_in_words() {
    assert_eq!(
        signature_name("1.2.840.113549.1.1.5"),
        "SHA-1 (sha1WithRSAEncryption)"
    );
    assert!(signature_name("1.2.156.10197.1.501").starts_with("SM2 with SM3"));
    assert!(!signature_supported("1.2.840.113549.1.1.5"));
    assert!(signature_supported("1.2.840.10045.4.3.2"));
    assert_eq!(
        plain_words(&webpki::Error::UnknownRevocationStatus),
        "unknown revocation status"
    );
}

/// Every message says what is wrong and what to do; none is a verifier's internal name.
#[test]
fn every_message_is_in_plain_words() {
    let s = |x: &str| x.to_owned();
    let cases: Vec<(RejectReason, &str)> = vec![
        (RejectReason::SelfSigned, "self-signed certificates are never served: this certificate was issued by itself, not by a CA; buy one from a CA whose root is in tls.approved_cas"),
        (RejectReason::NotApproved { chain_end: s("CN=X") }, "chain ends at \"CN=X\", which is not an approved CA: if it is an intermediate, ask the CA for its intermediate certificate (the chain, nginx format) and append it after the leaf; if it is a root you trust, add it to tls.approved_cas; otherwise ask the CA for a certificate issued under an approved root"),
        (RejectReason::ApprovedNameOtherKey { issuer: s("CN=R") }, "the chain ends at \"CN=R\", which has the name of an approved root but not its key (a look-alike or a re-keyed root): ask the CA which root issued it, and approve that root only if it is the real one"),
        (RejectReason::Expired(s("2026-01-01")), "the certificate expired on 2026-01-01: renew it with the CA and install the new one"),
        (RejectReason::NotYetValid(s("2027-01-01")), "the certificate is not valid until 2027-01-01: install it then, or ask the CA to reissue it valid from today (check this machine's clock too)"),
        (RejectReason::IssuerExpired { subject: s("CN=I"), date: s("2025-01-01") }, "intermediate \"CN=I\" in the chain expired on 2025-01-01: ask the CA for its current intermediate certificate and replace the old one after the leaf"),
        (RejectReason::IssuerNotYetValid { subject: s("CN=I"), date: s("2027-01-01") }, "intermediate \"CN=I\" in the chain is not valid until 2027-01-01: ask the CA for the intermediate that is valid today (check this machine's clock too)"),
        (RejectReason::NotServerAuth, "not valid for TLS servers (its extendedKeyUsage lacks serverAuth): ask the CA for an SSL/TLS server certificate"),
        (RejectReason::IssuerNotServerAuth { subject: s("CN=I") }, "intermediate \"CN=I\" may not issue TLS server certificates (its extendedKeyUsage lacks serverAuth): ask the CA for the SSL/TLS intermediate that issued this certificate"),
        (RejectReason::LeafIsCa, "the file holds no server certificate: its certificate for the hosts is a CA certificate (basicConstraints CA:TRUE); ask the CA for the server certificate issued for your CSR"),
        (RejectReason::EndEntityAsIssuer { subject: s("CN=a.cn") }, "\"CN=a.cn\" is a server certificate, yet the chain uses it as an issuer: an intermediate is missing or wrong; ask the CA for the intermediate that issued this certificate"),
        (RejectReason::PathTooLong { subject: s("CN=P"), limit: 0 }, "the chain is longer than intermediate \"CN=P\" allows (pathLenConstraint 0): the file has an intermediate too many or a wrong one; ask the CA for the chain it publishes for this certificate"),
        (RejectReason::WeakSignature { subject: s("CN=a.cn"), algorithm: s("SHA-1 (sha1WithRSAEncryption)") }, "\"CN=a.cn\" is signed with SHA-1 (sha1WithRSAEncryption), which browsers and menshen do not accept: ask the CA to reissue it signed with SHA-256 (RSA or ECDSA)"),
        (RejectReason::BadSignature { subject: s("CN=a.cn") }, "the signature on \"CN=a.cn\" does not verify with its issuer's key: the intermediate in the file has the right name but did not issue it; ask the CA for the intermediate that did"),
        (RejectReason::NameConstraints, "an issuing CA in the chain is not allowed to issue for these names (name constraints): ask the CA for a certificate from an intermediate that may issue for your domains"),
        (RejectReason::Malformed(s("invalid DER encoding")), "a certificate in the chain is malformed (invalid DER encoding): ask the CA to reissue it, and check the file was not edited or truncated"),
        (RejectReason::TooComplex, "the chain is too long or loops: keep only the server certificate and the intermediates the CA sent"),
        (RejectReason::KeyMismatch { key: s("live/a.key") }, "private key live/a.key does not match the certificate's public key: use the key made with the CSR you sent the CA (menshen certs request keeps it in pending/), or ask the CA to reissue the certificate for a new CSR"),
        (RejectReason::BadSan(s("a b")), "subjectAltName \"a b\" is not a valid DNS name: ask the CA to reissue the certificate without it"),
        (RejectReason::NoSan, "no DNS names in subjectAltName; browsers ignore the CN, so nothing would match: ask the CA to reissue it with your host names as subjectAltNames"),
        (RejectReason::Refused(s("revoked")), "the chain verifier refused it (revoked): send this message to the CA"),
    ];
    for (reason, text) in cases {
        assert_eq!(reason.to_string(), text);
    }
}
