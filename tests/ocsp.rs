//! OCSP stapling, seen by a client that asks for it: a response fetched from the responder
//! named in the certificate (a test responder signing with the test CA's key) is stapled; an
//! expired one is not, nor is one that says revoked (which is reported on /status and in the
//! log); a response in NAME.ocsp beside the certificate is stapled, a new file is picked up by
//! the reload it causes, and a bad file leaves the last good response stapled (unless revoked).

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use der::Decode;
use support::admin;
use support::config::Config;
use support::ocsp::{response, staple, Answer, Issuer};
use support::pki::{Ca, LeafSpec};
use support::{eventually, free_port, Env, SHOP_SITE};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use x509_ocsp::{BasicOcspResponse, CertStatus, OcspResponse};

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

/// Waits until the staple satisfies `ok`; the last one seen.
async fn staple_until(root: &Ca, port: u16, ok: impl Fn(&[u8]) -> bool) -> Vec<u8> {
    let found = eventually(Duration::from_secs(30), || async {
        let s = staple(&root.pem, port, "shop.example.cn").await;
        ok(&s).then_some(s)
    })
    .await;
    found.unwrap_or_else(|| panic!("the staple never changed as expected"))
}

fn config(env: &Env, admin: u16) {
    let tls = "[tls.ocsp]\nretry = \"1s\"\ntimeout = \"5s\"";
    env.write_config(tls, Config::new().admin(env, admin).raw(SHOP_SITE));
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
        staple(&root.pem, env.https, "shop.example.cn").await,
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
