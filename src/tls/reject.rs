//! Why a certificate may not be served, in the words of an operator who bought it by hand: what
//! is wrong, with which certificate, and what to ask the CA for.
//!
//! `cert.rs` runs the checks; rustls-webpki's refusals are turned into these reasons here, with
//! the certificate at fault found in the bundle (`chain.rs`).

use thiserror::Error;

use super::chain::{chain_end, issuer_path, Facts, ServerUse};
use super::ApprovedRoots;

/// Why a certificate pair may not be served.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum RejectReason {
    /// Leaf issued by itself.
    #[error(
        "self-signed certificates are never served: this certificate was issued by itself, not \
         by a CA; buy one from a CA whose root is in tls.approved_cas"
    )]
    SelfSigned,
    /// Chain does not reach an approved root.
    #[error(
        "chain ends at \"{chain_end}\", which is not an approved CA: if it is an intermediate, \
         ask the CA for its intermediate certificate (the chain, nginx format) and append it \
         after the leaf; if it is a root you trust, add it to tls.approved_cas; otherwise ask \
         the CA for a certificate issued under an approved root"
    )]
    NotApproved {
        /// The root the chain reaches, or the issuer the file lacks.
        chain_end: String,
    },
    /// An issuer with an approved root's name whose signature does not verify with its key.
    #[error(
        "the chain ends at \"{issuer}\", which has the name of an approved root but not its key \
         (a look-alike or a re-keyed root): ask the CA which root issued it, and approve that \
         root only if it is the real one"
    )]
    ApprovedNameOtherKey {
        /// The look-alike issuer.
        issuer: String,
    },
    /// Past its not-after date.
    #[error("the certificate expired on {0}: renew it with the CA and install the new one")]
    Expired(String),
    /// Before its not-before date.
    #[error(
        "the certificate is not valid until {0}: install it then, or ask the CA to reissue it \
         valid from today (check this machine's clock too)"
    )]
    NotYetValid(String),
    /// An intermediate past its not-after date.
    #[error(
        "intermediate \"{subject}\" in the chain expired on {date}: ask the CA for its current \
         intermediate certificate and replace the old one after the leaf"
    )]
    IssuerExpired {
        /// The expired intermediate.
        subject: String,
        /// Its not-after.
        date: String,
    },
    /// An intermediate before its not-before date.
    #[error(
        "intermediate \"{subject}\" in the chain is not valid until {date}: ask the CA for the \
         intermediate that is valid today (check this machine's clock too)"
    )]
    IssuerNotYetValid {
        /// The intermediate.
        subject: String,
        /// Its not-before.
        date: String,
    },
    /// Extended key usage excludes serverAuth.
    #[error(
        "not valid for TLS servers (its extendedKeyUsage lacks serverAuth): ask the CA for an \
         SSL/TLS server certificate"
    )]
    NotServerAuth,
    /// An intermediate whose extended key usage excludes serverAuth.
    #[error(
        "intermediate \"{subject}\" may not issue TLS server certificates (its extendedKeyUsage \
         lacks serverAuth): ask the CA for the SSL/TLS intermediate that issued this certificate"
    )]
    IssuerNotServerAuth {
        /// The intermediate.
        subject: String,
    },
    /// The leaf is itself a CA.
    #[error(
        "the file holds no server certificate: its certificate for the hosts is a CA certificate \
         (basicConstraints CA:TRUE); ask the CA for the server certificate issued for your CSR"
    )]
    LeafIsCa,
    /// A server certificate where an intermediate should be.
    #[error(
        "\"{subject}\" is a server certificate, yet the chain uses it as an issuer: an \
         intermediate is missing or wrong; ask the CA for the intermediate that issued this \
         certificate"
    )]
    EndEntityAsIssuer {
        /// The server certificate in the issuer's place.
        subject: String,
    },
    /// An intermediate's pathLenConstraint is exceeded.
    #[error(
        "the chain is longer than intermediate \"{subject}\" allows (pathLenConstraint {limit}): \
         the file has an intermediate too many or a wrong one; ask the CA for the chain it \
         publishes for this certificate"
    )]
    PathTooLong {
        /// The intermediate whose constraint is exceeded.
        subject: String,
        /// Its pathLenConstraint.
        limit: u32,
    },
    /// A signature algorithm browsers no longer accept, or one rustls cannot verify.
    #[error(
        "\"{subject}\" is signed with {algorithm}, which browsers and menshen do not accept: ask \
         the CA to reissue it signed with SHA-256 (RSA or ECDSA)"
    )]
    WeakSignature {
        /// The certificate with the weak signature.
        subject: String,
        /// Algorithm, in words.
        algorithm: String,
    },
    /// A signature that does not verify.
    #[error(
        "the signature on \"{subject}\" does not verify with its issuer's key: the intermediate \
         in the file has the right name but did not issue it; ask the CA for the intermediate \
         that did"
    )]
    BadSignature {
        /// The certificate whose signature fails.
        subject: String,
    },
    /// An issuer is not allowed to issue for these names.
    #[error(
        "an issuing CA in the chain is not allowed to issue for these names (name constraints): \
         ask the CA for a certificate from an intermediate that may issue for your domains"
    )]
    NameConstraints,
    /// Not well-formed X.509.
    #[error(
        "a certificate in the chain is malformed ({0}): ask the CA to reissue it, and check the \
         file was not edited or truncated"
    )]
    Malformed(String),
    /// Too many certificates or a loop.
    #[error(
        "the chain is too long or loops: keep only the server certificate and the intermediates \
         the CA sent"
    )]
    TooComplex,
    /// The key file's key is not the leaf's.
    #[error(
        "private key {key} does not match the certificate's public key: use the key made with the \
         CSR you sent the CA (menshen certs request keeps it in pending/), or ask the CA to \
         reissue the certificate for a new CSR"
    )]
    KeyMismatch {
        /// Key file.
        key: String,
    },
    /// A SAN entry that is not a valid host name.
    #[error(
        "subjectAltName {0:?} is not a valid DNS name: ask the CA to reissue the certificate \
         without it"
    )]
    BadSan(String),
    /// No SAN at all.
    #[error(
        "no DNS names in subjectAltName; browsers ignore the CN, so nothing would match: ask the \
         CA to reissue it with your host names as subjectAltNames"
    )]
    NoSan,
    /// Anything else the verifier refuses.
    #[error("the chain verifier refused it ({0}): send this message to the CA")]
    Refused(String),
}

/// The reason for webpki's refusal `e` of `offered` (the leaf, then the chain and the hints),
/// naming the certificate at fault.
pub fn diagnose(
    e: webpki::Error,
    offered: &[Facts],
    roots: &ApprovedRoots,
    now: i64,
) -> RejectReason {
    use webpki::Error as E;
    let Some(leaf) = offered.first() else {
        return RejectReason::Refused("no certificate".into());
    };
    let path = issuer_path(leaf, offered);
    let issuers = || path.iter().skip(1).copied();
    match e {
        E::UnknownIssuer | E::InvalidSignatureForPublicKey => unapproved(&e, leaf, offered, roots),
        E::CertExpired { .. } | E::CertNotValidYet { .. } => {
            out_of_dates(&e, leaf, path.get(1..).unwrap_or_default(), now)
        }
        E::RequiredEkuNotFoundContext(_) => {
            match issuers().find(|f| f.server_use == ServerUse::Forbidden) {
                Some(f) => RejectReason::IssuerNotServerAuth {
                    subject: f.subject.clone(),
                },
                None => RejectReason::NotServerAuth,
            }
        }
        E::CaUsedAsEndEntity => RejectReason::LeafIsCa,
        E::EndEntityUsedAsCa => RejectReason::EndEntityAsIssuer {
            subject: issuers().find(|f| !f.is_ca).unwrap_or(leaf).subject.clone(),
        },
        E::PathLenConstraintViolated => path_too_long(&path, leaf),
        E::UnsupportedSignatureAlgorithmContext(_)
        | E::UnsupportedSignatureAlgorithmForPublicKeyContext(_)
        | E::SignatureAlgorithmMismatch => {
            let weak = path.iter().find(|f| !signature_supported(&f.signature_oid));
            let f = weak.copied().unwrap_or(leaf);
            RejectReason::WeakSignature {
                subject: f.subject.clone(),
                algorithm: signature_name(&f.signature_oid),
            }
        }
        other => in_a_certificate(other),
    }
}

/// Why the chain of `leaf` reaches no approved root (`e`: an unknown issuer or a bad
/// signature): it ends at a root with an approved name but another key, or else at an issuer
/// that is not approved, or the signature on the leaf is bad.
fn unapproved(
    e: &webpki::Error,
    leaf: &Facts,
    offered: &[Facts],
    roots: &ApprovedRoots,
) -> RejectReason {
    let end = chain_end(leaf, offered);
    if roots.has_subject(&end) {
        RejectReason::ApprovedNameOtherKey { issuer: end }
    } else if matches!(e, webpki::Error::UnknownIssuer) {
        RejectReason::NotApproved { chain_end: end }
    } else {
        RejectReason::BadSignature {
            subject: leaf.subject.clone(),
        }
    }
}

/// The certificate that is expired or not yet valid at `now` (`e` says which): one of the
/// leaf's `issuers` if one is, else the leaf.
fn out_of_dates(e: &webpki::Error, leaf: &Facts, issuers: &[&Facts], now: i64) -> RejectReason {
    if matches!(e, webpki::Error::CertExpired { .. }) {
        match issuers.iter().find(|f| f.not_after < now) {
            Some(f) => RejectReason::IssuerExpired {
                subject: f.subject.clone(),
                date: super::format_time(f.not_after),
            },
            None => RejectReason::Expired(super::format_time(leaf.not_after)),
        }
    } else {
        match issuers.iter().find(|f| f.not_before > now) {
            Some(f) => RejectReason::IssuerNotYetValid {
                subject: f.subject.clone(),
                date: super::format_time(f.not_before),
            },
            None => RejectReason::NotYetValid(super::format_time(leaf.not_before)),
        }
    }
}

/// The issuer on `path` (the leaf, then its issuers) whose path length limit is exceeded.
fn path_too_long(path: &[&Facts], leaf: &Facts) -> RejectReason {
    let over = path.iter().enumerate().find_map(|(depth, f)| {
        let limit = f.path_len?;
        // Intermediates below this one on the path: `depth - 1` (the leaf is not one).
        (depth > 0 && depth as u32 - 1 > limit).then_some((*f, limit))
    });
    let last = path.last().copied().unwrap_or(leaf);
    let (f, limit) = over.unwrap_or((last, last.path_len.unwrap_or(0)));
    RejectReason::PathTooLong {
        subject: f.subject.clone(),
        limit,
    }
}

/// The reason for a refusal of what a certificate holds (its encoding, extensions, names),
/// or of what no served chain can meet.
fn in_a_certificate(e: webpki::Error) -> RejectReason {
    use webpki::Error as E;
    match e {
        E::NameConstraintViolation => RejectReason::NameConstraints,
        E::MaximumPathBuildCallsExceeded
        | E::MaximumPathDepthExceeded
        | E::MaximumSignatureChecksExceeded
        | E::MaximumNameConstraintComparisonsExceeded => RejectReason::TooComplex,
        E::BadDer | E::TrailingData(_) => RejectReason::Malformed("invalid DER encoding".into()),
        E::BadDerTime | E::InvalidCertValidity => {
            RejectReason::Malformed("invalid validity dates".into())
        }
        E::UnsupportedCertVersion => {
            RejectReason::Malformed("not an X.509 version 3 certificate".into())
        }
        E::InvalidSerialNumber => RejectReason::Malformed("invalid serial number".into()),
        E::ExtensionValueInvalid | E::MalformedExtensions | E::EmptyEkuExtension => {
            RejectReason::Malformed("an invalid extension".into())
        }
        E::UnsupportedCriticalExtension => RejectReason::Malformed(
            "a critical extension that TLS clients do not understand".into(),
        ),
        E::MalformedNameConstraint | E::InvalidNetworkMaskConstraint => {
            RejectReason::Malformed("invalid name constraints".into())
        }
        E::CertRevoked => RejectReason::Refused("revoked".into()),
        E::CertDistrusted => RejectReason::Refused("its key is distrusted".into()),
        other => RejectReason::Refused(plain_words(&other)),
    }
}

/// A webpki error's variant name as words: `CertNotValidForName(..)` is "cert not valid for
/// name". Only for refusals a served chain cannot meet (revocation lists, name checks).
fn plain_words(e: &webpki::Error) -> String {
    let debug = format!("{e:?}");
    let name = debug.split(['(', ' ', '{']).next().unwrap_or("");
    let mut out = String::new();
    for c in name.chars() {
        if c.is_ascii_uppercase() && !out.is_empty() {
            out.push(' ');
        }
        out.push(c.to_ascii_lowercase());
    }
    out
}

/// Signature algorithms rustls-webpki verifies (RSA PKCS#1 and PSS with SHA-2, ECDSA with
/// SHA-256/384, Ed25519).
fn signature_supported(oid: &str) -> bool {
    matches!(
        oid,
        "1.2.840.113549.1.1.11"
            | "1.2.840.113549.1.1.12"
            | "1.2.840.113549.1.1.13"
            | "1.2.840.113549.1.1.10"
            | "1.2.840.10045.4.3.2"
            | "1.2.840.10045.4.3.3"
            | "1.3.101.112"
    )
}

/// A signature algorithm OID in words.
fn signature_name(oid: &str) -> String {
    match oid {
        "1.2.840.113549.1.1.5" => "SHA-1 (sha1WithRSAEncryption)".into(),
        "1.2.840.10045.4.1" => "SHA-1 (ecdsa-with-SHA1)".into(),
        "1.2.840.10040.4.3" => "SHA-1 (dsa-with-sha1)".into(),
        "1.2.840.113549.1.1.4" => "MD5 (md5WithRSAEncryption)".into(),
        "1.2.156.10197.1.501" => {
            "SM2 with SM3 (China's national algorithms; ask for the RSA or ECDSA version, which \
             the same CAs issue)"
                .into()
        }
        other => format!("an unsupported algorithm ({other})"),
    }
}

#[cfg(test)]
#[path = "reject_tests.rs"]
mod tests;
