//! Judging an OCSP response (RFC 6960) for one certificate: it answers for this certificate
//! (certID: issuer name and key hashes, serial), it is signed by the issuer or by a responder
//! the issuer delegated (id-kp-OCSPSigning), and it is current (thisUpdate passed, nextUpdate
//! not). The structures come from `x509-ocsp`; signatures are checked with the algorithms
//! rustls-webpki verifies certificate chains with.

use der::asn1::OctetString;
use der::oid::db::rfc5280::{ID_CE_EXT_KEY_USAGE, ID_KP_OCSP_SIGNING};
use der::oid::db::rfc5912::{ID_SHA_1, ID_SHA_256, ID_SHA_384, ID_SHA_512};
use der::oid::{AssociatedOid, ObjectIdentifier};
use der::{Decode, Encode};
use thiserror::Error;
use x509_cert::ext::pkix::ExtendedKeyUsage;
use x509_cert::spki::{AlgorithmIdentifierOwned, SubjectPublicKeyInfoOwned};
use x509_cert::Certificate;
use x509_ocsp::{BasicOcspResponse, CertId, CertStatus, OcspResponse, OcspResponseStatus};

pub use crate::tls::staple::{CertState, Verified};

/// How long a response without nextUpdate is used (RFC 6960 lets it mean "newer information
/// is always available"; a staple must end somewhere).
pub const NO_NEXT_UPDATE_LIFETIME: i64 = 24 * 3600;
/// Clock skew allowed on thisUpdate, seconds.
const SKEW: i64 = 300;

/// Why a response cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum OcspError {
    /// Not DER, or not the structures RFC 6960 defines.
    #[error("not an OCSP response: {0}")]
    Malformed(String),
    /// The responder answered with an error status.
    #[error("the responder answered {0}")]
    NotSuccessful(String),
    /// No single response is for this certificate.
    #[error("it answers for another certificate (no certID matches this serial and issuer)")]
    OtherCertificate,
    /// Neither the issuer's key nor a delegated responder's verifies the signature.
    #[error("its signature does not verify with the issuer's key or a delegated responder's")]
    BadSignature,
    /// thisUpdate is in the future.
    #[error("not valid yet (thisUpdate {0})")]
    NotYetValid(String),
    /// nextUpdate has passed.
    #[error("expired (nextUpdate {0})")]
    Expired(String),
}

fn malformed(e: impl std::fmt::Display) -> OcspError {
    OcspError::Malformed(e.to_string())
}

/// Verifies `response` (DER) for the certificate `leaf` issued by `issuer` (both DER) at `now`.
pub fn verify(
    response: &[u8],
    leaf: &[u8],
    issuer: &[u8],
    now: i64,
) -> Result<Verified, OcspError> {
    let outer = OcspResponse::from_der(response).map_err(malformed)?;
    if outer.response_status != OcspResponseStatus::Successful {
        return Err(OcspError::NotSuccessful(format!(
            "{:?}",
            outer.response_status
        )));
    }
    let bytes = outer
        .response_bytes
        .ok_or_else(|| malformed("successful but without a response"))?;
    if bytes.response_type != BasicOcspResponse::OID {
        return Err(malformed(format!("response type {}", bytes.response_type)));
    }
    let basic = BasicOcspResponse::from_der(bytes.response.as_bytes()).map_err(malformed)?;
    let leaf = Certificate::from_der(leaf).map_err(malformed)?;
    let issuer = Certificate::from_der(issuer).map_err(malformed)?;
    let single = basic
        .tbs_response_data
        .responses
        .iter()
        .find(|r| is_for(&r.cert_id, &leaf, &issuer))
        .ok_or(OcspError::OtherCertificate)?;
    check_signer(&basic, &issuer, now)?;
    let this_update = seconds(&single.this_update.0);
    let next_update = single
        .next_update
        .as_ref()
        .map_or(this_update + NO_NEXT_UPDATE_LIFETIME, |t| seconds(&t.0));
    if this_update > now + SKEW {
        return Err(OcspError::NotYetValid(super::super::format_time(
            this_update,
        )));
    }
    if next_update <= now {
        return Err(OcspError::Expired(super::super::format_time(next_update)));
    }
    let state = match &single.cert_status {
        CertStatus::Good(_) => CertState::Good,
        CertStatus::Revoked(info) => CertState::Revoked(seconds(&info.revocation_time.0)),
        CertStatus::Unknown(_) => CertState::Unknown,
    };
    Ok(Verified {
        state,
        this_update,
        next_update,
    })
}

fn seconds(t: &der::asn1::GeneralizedTime) -> i64 {
    t.to_unix_duration().as_secs() as i64
}

/// The certID of `leaf` issued by `issuer`, hashed with `hash` (SHA-1, as RFC 5019 responders
/// expect, or a SHA-2); `None` for another hash.
pub fn cert_id(leaf: &Certificate, issuer: &Certificate, hash: ObjectIdentifier) -> Option<CertId> {
    let algorithm = match hash {
        ID_SHA_1 => &ring::digest::SHA1_FOR_LEGACY_USE_ONLY,
        ID_SHA_256 => &ring::digest::SHA256,
        ID_SHA_384 => &ring::digest::SHA384,
        ID_SHA_512 => &ring::digest::SHA512,
        _ => return None,
    };
    let tbs = &issuer.tbs_certificate;
    let name = tbs.subject.to_der().ok()?;
    let key = tbs.subject_public_key_info.subject_public_key.raw_bytes();
    let digest = |bytes: &[u8]| OctetString::new(ring::digest::digest(algorithm, bytes).as_ref());
    Some(CertId {
        hash_algorithm: AlgorithmIdentifierOwned {
            oid: hash,
            parameters: Some(der::asn1::Null.into()),
        },
        issuer_name_hash: digest(&name).ok()?,
        issuer_key_hash: digest(key).ok()?,
        serial_number: leaf.tbs_certificate.serial_number.clone(),
    })
}

fn is_for(id: &CertId, leaf: &Certificate, issuer: &Certificate) -> bool {
    cert_id(leaf, issuer, id.hash_algorithm.oid).is_some_and(|ours| {
        ours.issuer_name_hash == id.issuer_name_hash
            && ours.issuer_key_hash == id.issuer_key_hash
            && ours.serial_number == id.serial_number
    })
}

/// The response is signed by the issuer, or by a certificate in it that the issuer signed for
/// OCSP signing and that is valid now.
fn check_signer(
    basic: &BasicOcspResponse,
    issuer: &Certificate,
    now: i64,
) -> Result<(), OcspError> {
    let tbs = basic.tbs_response_data.to_der().map_err(malformed)?;
    let signature = basic.signature.raw_bytes();
    let issuer_key = &issuer.tbs_certificate.subject_public_key_info;
    if signed(issuer_key, &basic.signature_algorithm, &tbs, signature) {
        return Ok(());
    }
    let delegated = basic.certs.iter().flatten().any(|responder| {
        let cert_tbs = responder.tbs_certificate.to_der().unwrap_or_default();
        let validity = &responder.tbs_certificate.validity;
        let valid = (validity.not_before.to_unix_duration().as_secs() as i64) <= now
            && now < validity.not_after.to_unix_duration().as_secs() as i64;
        valid
            && may_sign_ocsp(responder)
            && signed(
                issuer_key,
                &responder.signature_algorithm,
                &cert_tbs,
                responder.signature.raw_bytes(),
            )
            && signed(
                &responder.tbs_certificate.subject_public_key_info,
                &basic.signature_algorithm,
                &tbs,
                signature,
            )
    });
    match delegated {
        true => Ok(()),
        false => Err(OcspError::BadSignature),
    }
}

fn may_sign_ocsp(cert: &Certificate) -> bool {
    let extensions = cert.tbs_certificate.extensions.iter().flatten();
    extensions
        .filter(|e| e.extn_id == ID_CE_EXT_KEY_USAGE)
        .filter_map(|e| ExtendedKeyUsage::from_der(e.extn_value.as_bytes()).ok())
        .any(|eku| eku.0.contains(&ID_KP_OCSP_SIGNING))
}

/// Whether `signature` over `message` verifies with `key` under `algorithm`, with the
/// algorithms rustls-webpki accepts for certificates.
fn signed(
    key: &SubjectPublicKeyInfoOwned,
    algorithm: &AlgorithmIdentifierOwned,
    message: &[u8],
    signature: &[u8],
) -> bool {
    let (Some(key_alg), Some(sig_alg)) = (contents(&key.algorithm), contents(algorithm)) else {
        return false;
    };
    let provider = rustls::crypto::ring::default_provider();
    let all = provider.signature_verification_algorithms.all.iter();
    all.filter(|a| {
        a.public_key_alg_id().as_ref() == key_alg && a.signature_alg_id().as_ref() == sig_alg
    })
    .any(|a| {
        a.verify_signature(key.subject_public_key.raw_bytes(), message, signature)
            .is_ok()
    })
}

/// An AlgorithmIdentifier's contents (without its SEQUENCE header), as webpki names them.
fn contents(algorithm: &AlgorithmIdentifierOwned) -> Option<Vec<u8>> {
    let mut out = algorithm.oid.to_der().ok()?;
    if let Some(parameters) = &algorithm.parameters {
        out.extend(parameters.to_der().ok()?);
    }
    Some(out)
}
