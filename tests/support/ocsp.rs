//! OCSP responses signed by a test CA: what the OCSP tests' responder answers and what the
//! demo (`make run`) staples from `NAME.ocsp`.
#![allow(dead_code)]

use std::time::{Duration, SystemTime};

use der::asn1::{BitString, GeneralizedTime, OctetString};
use der::oid::db::rfc5912::{ECDSA_WITH_SHA_256, ID_SHA_1};
use der::{DecodePem, Encode};
use x509_cert::spki::AlgorithmIdentifierOwned;
use x509_cert::Certificate;
use x509_ocsp::{
    BasicOcspResponse, CertId, CertStatus, OcspGeneralizedTime, OcspResponse, ResponderId,
    ResponseData, RevokedInfo, SingleResponse, Version,
};

use std::sync::{Arc, Mutex};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use super::pki::Ca;

/// What the test responder answers.
#[derive(Clone, Copy, PartialEq)]
pub enum Answer {
    Good,
    Revoked,
    Expired,
}

/// The issuing CA as the responder needs it: its certificate and its key.
#[derive(Clone)]
pub struct Issuer {
    pem: String,
    key: Vec<u8>,
}

impl Issuer {
    pub fn of(ca: &Ca) -> Self {
        Self {
            pem: ca.pem.clone(),
            key: ca.key_der(),
        }
    }

    /// The CA of a certificate file and its PKCS#8 key file (PEM).
    pub fn from_files(cert: &std::path::Path, key: &std::path::Path) -> std::io::Result<Self> {
        let pem = std::fs::read_to_string(cert)?;
        let key_pem = std::fs::read(key)?;
        let key = match rustls_pemfile::private_key(&mut key_pem.as_slice())? {
            Some(rustls::pki_types::PrivateKeyDer::Pkcs8(key)) => key.secret_pkcs8_der().to_vec(),
            _ => {
                let what = format!("{}: not a PKCS#8 private key", key.display());
                return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, what));
            }
        };
        Ok(Self { pem, key })
    }
}

/// A DER OCSP response for `leaf` (PEM) issued by `ca`, signed with the CA's key. `Good` and
/// `Revoked` are current for `valid` more; `Expired` ended a minute ago.
pub fn response(ca: &Issuer, leaf: &str, answer: Answer, valid: Duration) -> Vec<u8> {
    let sha1 = |b: &[u8]| {
        let d = ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, b);
        OctetString::new(d.as_ref()).expect("hash")
    };
    let issuer = Certificate::from_pem(ca.pem.as_bytes()).expect("CA");
    let leaf = Certificate::from_pem(leaf.as_bytes()).expect("leaf");
    let key = issuer
        .tbs_certificate
        .subject_public_key_info
        .subject_public_key
        .raw_bytes();
    let cert_id = CertId {
        hash_algorithm: AlgorithmIdentifierOwned {
            oid: ID_SHA_1,
            parameters: Some(der::asn1::Null.into()),
        },
        issuer_name_hash: sha1(&issuer.tbs_certificate.subject.to_der().expect("name")),
        issuer_key_hash: sha1(key),
        serial_number: leaf.tbs_certificate.serial_number.clone(),
    };
    let now = SystemTime::now();
    let at = |t: SystemTime| {
        let t = GeneralizedTime::from_system_time(t).expect("time");
        OcspGeneralizedTime(t)
    };
    let minute = Duration::from_secs(60);
    let (this, next) = match answer {
        Answer::Expired => (now - 2 * minute, now - minute),
        _ => (now - minute, now + valid),
    };
    let status = match answer {
        Answer::Revoked => CertStatus::Revoked(RevokedInfo {
            revocation_time: at(now - minute),
            revocation_reason: None,
        }),
        _ => CertStatus::good(),
    };
    let tbs = ResponseData {
        version: Version::V1,
        responder_id: ResponderId::ByKey(sha1(key)),
        produced_at: at(now),
        responses: vec![SingleResponse {
            cert_id,
            cert_status: status,
            this_update: at(this),
            next_update: Some(at(next)),
            single_extensions: None,
        }],
        response_extensions: None,
    };
    let rng = ring::rand::SystemRandom::new();
    let signer = ring::signature::EcdsaKeyPair::from_pkcs8(
        &ring::signature::ECDSA_P256_SHA256_ASN1_SIGNING,
        &ca.key,
        &rng,
    )
    .expect("CA key");
    let signature = signer
        .sign(&rng, &tbs.to_der().expect("tbs"))
        .expect("sign");
    let basic = BasicOcspResponse {
        tbs_response_data: tbs,
        signature_algorithm: AlgorithmIdentifierOwned {
            oid: ECDSA_WITH_SHA_256,
            parameters: None,
        },
        signature: BitString::from_bytes(signature.as_ref()).expect("signature"),
        certs: None,
    };
    let outer = OcspResponse::successful(basic).expect("response");
    outer.to_der().expect("DER")
}

/// Verifies the server as usual and keeps the OCSP response it stapled.
#[derive(Debug)]
pub struct Stapled {
    inner: Arc<WebPkiServerVerifier>,
    seen: Arc<Mutex<Vec<u8>>>,
}

impl ServerCertVerifier for Stapled {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        *self.seen.lock().expect("lock") = ocsp_response.to_vec();
        self.inner
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// The OCSP response stapled to a new handshake with `sni` at `port`, verified against
/// `root_pem` (empty: none).
pub async fn staple(root_pem: &str, port: u16, sni: &str) -> Vec<u8> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut root_pem.as_bytes()) {
        roots.add(cert.expect("root PEM")).expect("add root");
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let inner = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .expect("verifier");
    let seen = Arc::new(Mutex::new(Vec::new()));
    let verifier = Arc::new(Stapled {
        inner,
        seen: seen.clone(),
    });
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    let tcp = TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    let name = ServerName::try_from(sni.to_owned()).expect("name");
    TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .expect("handshake");
    let stapled = seen.lock().expect("lock").clone();
    stapled
}
