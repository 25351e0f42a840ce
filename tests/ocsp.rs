//! OCSP stapling, seen by a client that asks for it: a response fetched from the responder
//! named in the certificate (a test responder signing with the test CA's key) is stapled; an
//! expired one is not, nor is one that says revoked (which is reported on /status and in the
//! log); a response in NAME.ocsp beside the certificate is stapled, a new file is picked up by
//! the reload it causes, and a bad file leaves the last good response stapled (unless revoked).

mod support;

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use der::asn1::{BitString, GeneralizedTime, OctetString};
use der::oid::db::rfc5912::{ECDSA_WITH_SHA_256, ID_SHA_1};
use der::{Decode, DecodePem, Encode};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use support::admin;
use support::http::root_store;
use support::pki::{Ca, LeafSpec};
use support::{eventually, free_port, Env, SHOP_SITE};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsConnector;
use x509_cert::spki::AlgorithmIdentifierOwned;
use x509_cert::Certificate;
use x509_ocsp::{
    BasicOcspResponse, CertId, CertStatus, OcspGeneralizedTime, OcspResponse, ResponderId,
    ResponseData, RevokedInfo, SingleResponse, Version,
};

/// What the test responder answers.
#[derive(Clone, Copy, PartialEq)]
enum Answer {
    Good,
    Revoked,
    Expired,
}

/// The issuing CA as the responder needs it: its certificate and its key.
#[derive(Clone)]
struct Issuer {
    pem: String,
    key: Vec<u8>,
}

impl Issuer {
    fn of(ca: &Ca) -> Self {
        Self {
            pem: ca.pem.clone(),
            key: ca.key_der(),
        }
    }
}

/// A DER OCSP response for `leaf` (PEM) issued by `ca`, signed with the CA's key. `Good` and
/// `Revoked` are current for `valid` more; `Expired` ended a minute ago.
fn response(ca: &Issuer, leaf: &str, answer: Answer, valid: Duration) -> Vec<u8> {
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

/// An HTTP OCSP responder answering every POST with what `answer` says now (fresh each time).
struct Responder {
    url: String,
    listener: Option<TcpListener>,
    answer: Arc<Mutex<Answer>>,
    /// The last response it sent.
    sent: Arc<Mutex<Vec<u8>>>,
}

impl Responder {
    /// Listening, not answering yet: its URL goes into the certificate it answers for.
    async fn bind() -> Responder {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        Responder {
            url: format!("http://{}/ocsp", listener.local_addr().expect("addr")),
            listener: Some(listener),
            answer: Arc::new(Mutex::new(Answer::Good)),
            sent: Arc::new(Mutex::new(Vec::new())),
        }
    }

    /// Answers for `leaf` (PEM) issued by `ca`, with responses current for `valid`.
    fn serve(&mut self, ca: Issuer, leaf: String, valid: Duration) {
        let listener = self.listener.take().expect("not serving yet");
        let (answer, sent) = (self.answer.clone(), self.sent.clone());
        tokio::spawn(async move {
            while let Ok((mut tcp, _)) = listener.accept().await {
                read_request(&mut tcp).await;
                let now = *answer.lock().expect("lock");
                let body = response(&ca, &leaf, now, valid);
                *sent.lock().expect("lock") = body.clone();
                let head = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/ocsp-response\r\n\
                     Content-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                let _ = tcp.write_all(head.as_bytes()).await;
                let _ = tcp.write_all(&body).await;
            }
        });
    }

    fn answer(&self, a: Answer) {
        *self.answer.lock().expect("lock") = a;
    }

    fn sent(&self) -> Vec<u8> {
        self.sent.lock().expect("lock").clone()
    }
}

/// Reads an HTTP request: the head and a body of Content-Length bytes.
async fn read_request(tcp: &mut TcpStream) {
    let mut raw = Vec::new();
    let mut chunk = [0; 4096];
    loop {
        let n = tcp.read(&mut chunk).await.unwrap_or(0);
        raw.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&raw).to_ascii_lowercase();
        let complete = text.find("\r\n\r\n").is_some_and(|end| {
            let len = text
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse::<usize>().ok())
                .unwrap_or(0);
            raw.len() >= end + 4 + len
        });
        if n == 0 || complete {
            return;
        }
    }
}

/// Verifies the server as usual and keeps the OCSP response it stapled.
#[derive(Debug)]
struct Stapled {
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

/// The OCSP response stapled to a new handshake with shop.example.cn (empty: none).
async fn staple(root: &Ca, port: u16) -> Vec<u8> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let inner = WebPkiServerVerifier::builder_with_provider(
        Arc::new(root_store(&[&root.pem])),
        provider.clone(),
    )
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
    let name = ServerName::try_from("shop.example.cn").expect("name");
    TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .expect("handshake");
    let stapled = seen.lock().expect("lock").clone();
    stapled
}

/// Waits until the staple satisfies `ok`; the last one seen.
async fn staple_until(root: &Ca, port: u16, ok: impl Fn(&[u8]) -> bool) -> Vec<u8> {
    let found = eventually(Duration::from_secs(30), || async {
        let s = staple(root, port).await;
        ok(&s).then_some(s)
    })
    .await;
    found.unwrap_or_else(|| panic!("the staple never changed as expected"))
}

fn config(env: &Env, admin: u16) {
    let tls = "[tls.ocsp]\nretry = \"1s\"\ntimeout = \"5s\"";
    env.write_config(
        tls,
        format!("[admin]\naddr = \"127.0.0.1:{admin}\"\n{SHOP_SITE}"),
    );
}

/// The value of a metric series, or none.
async fn metric(admin: u16, series: &str) -> Option<f64> {
    admin::metric(admin, series).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn responses_from_the_responder_are_stapled_unless_expired_or_revoked() {
    let (env, root) = Env::with_approved_root("Approved Root");
    let mut responder = Responder::bind().await;
    let leaf = root.issue_with_ocsp(&LeafSpec::new(&["shop.example.cn"], 7), &responder.url);
    env.put_cert("shop", &leaf, &[]);
    // Responses valid for 10 s: menshen asks again about every second (half way to nextUpdate).
    responder.serve(Issuer::of(&root), leaf.pem.clone(), Duration::from_secs(10));
    let admin = free_port();
    config(&env, admin);
    let proxy = env.start();

    let good = staple_until(&root, env.https, |s| !s.is_empty()).await;
    let outer = OcspResponse::from_der(&good).expect("a stapled OCSP response");
    let basic =
        BasicOcspResponse::from_der(outer.response_bytes.expect("bytes").response.as_bytes())
            .expect("basic response");
    let single = &basic.tbs_response_data.responses[0];
    assert!(matches!(single.cert_status, CertStatus::Good(_)));
    let next = single
        .next_update
        .as_ref()
        .expect("nextUpdate")
        .0
        .to_unix_duration();
    let status = admin::get(admin, "/status").await.text();
    assert!(status.contains("good until"), "{status}");
    assert_eq!(
        metric(admin, "menshen_ocsp_status{name=\"shop\",status=\"good\"}").await,
        Some(1.0)
    );
    let until = metric(
        admin,
        "menshen_ocsp_next_update_timestamp_seconds{name=\"shop\"}",
    )
    .await;
    assert!(
        until.is_some_and(|t| t >= next.as_secs() as f64 - 15.0),
        "{until:?}"
    );

    // Expired responses are not stapled: once the last good one ends, nothing is.
    responder.answer(Answer::Expired);
    staple_until(&root, env.https, <[u8]>::is_empty).await;
    let status = admin::get(admin, "/status").await.text();
    assert!(status.contains("expired"), "{status}");

    // Revoked: never stapled, reported on /status, in the metric and in the log as an error.
    responder.answer(Answer::Good);
    staple_until(&root, env.https, |s| !s.is_empty()).await;
    responder.answer(Answer::Revoked);
    staple_until(&root, env.https, <[u8]>::is_empty).await;
    let status = admin::get(admin, "/status").await.text();
    assert!(status.contains("REVOKED"), "{status}");
    assert_eq!(
        metric(
            admin,
            "menshen_ocsp_status{name=\"shop\",status=\"revoked\"}"
        )
        .await,
        Some(1.0)
    );
    let log = proxy.log();
    assert!(
        log.lines()
            .any(|l| l.contains("ERROR") && l.contains("REVOKED")),
        "{log}"
    );
    assert!(!responder.sent().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_response_in_name_ocsp_is_stapled_and_a_new_file_replaces_it() {
    let (env, root) = Env::with_approved_root("Approved Root");
    // No responder in the certificate: only the file can give a response.
    let leaf = root.issue(&LeafSpec::new(&["shop.example.cn"], 9));
    env.put_cert("shop", &leaf, &[]);
    let issuer = Issuer::of(&root);
    let hour = Duration::from_secs(3600);
    let first = response(&issuer, &leaf.pem, Answer::Good, hour);
    std::fs::write(env.path("live/shop.ocsp"), &first).expect("write");
    let admin = free_port();
    config(&env, admin);
    let _proxy = env.start();
    assert_eq!(
        staple_until(&root, env.https, |s| !s.is_empty()).await,
        first
    );

    // A new file (what an operator's cron job drops in) is picked up by the reload it causes.
    let second = response(&issuer, &leaf.pem, Answer::Good, 2 * hour);
    assert_ne!(first, second);
    std::fs::write(env.path("live/shop.ocsp"), &second).expect("write");
    assert_eq!(
        staple_until(&root, env.https, |s| s == second).await,
        second
    );

    // An expired file is not used: the last good response stays stapled while it is current,
    // and /status says why the file was not taken.
    let expired = response(&issuer, &leaf.pem, Answer::Expired, hour);
    std::fs::write(env.path("live/shop.ocsp"), &expired).expect("write");
    let noted = eventually(Duration::from_secs(30), || async {
        let status = admin::get(admin, "/status").await.text();
        status.contains("NAME.ocsp: expired").then_some(())
    })
    .await;
    assert!(noted.is_some(), "the expired file is reported");
    assert_eq!(
        staple(&root, env.https).await,
        second,
        "the last good one stays"
    );

    // A revoked one: nothing is stapled, not even the last good response.
    let revoked = response(&issuer, &leaf.pem, Answer::Revoked, hour);
    std::fs::write(env.path("live/shop.ocsp"), &revoked).expect("write");
    staple_until(&root, env.https, <[u8]>::is_empty).await;
    let status = admin::get(admin, "/status").await.text();
    assert!(status.contains("REVOKED"), "{status}");
}
