//! The core promise: only chains that end in an approved root are ever served.

mod support;

use std::time::Duration;

use support::config::Config;
use support::http::{get_tls, handshake_serial, tls_client};
use support::pki::{other_key_pem, self_signed, traditional_key_pem, Ca, LeafSpec};
use support::Env;

/// The site `shop`, for its host and every other name under example.cn.
fn site() -> Config {
    Config::new()
        .site("shop", &["shop.example.cn", "*.example.cn"])
        .respond("/", "hello from shop")
}

fn env_with_root() -> (Env, Ca) {
    Env::with_approved_root("Approved Test Root")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approved_chain_with_intermediate_is_served() {
    let (env, root) = env_with_root();
    let inter = root.intermediate("Approved Test Issuing CA");
    let leaf = inter.issue(&LeafSpec::new(&["shop.example.cn"], 0x51));
    env.put_cert("shop", &leaf, &[&inter]);
    env.write_config("", site());
    let (ok, out) = env.check();
    assert!(ok, "check should pass: {out}");

    let _proxy = env.start();
    let client = tls_client(&[&root.pem]);
    let resp = get_tls(
        &client,
        env.https,
        "shop.example.cn",
        "shop.example.cn",
        "/",
    )
    .await
    .expect("TLS request");
    assert_eq!(resp.status, 200);
    assert_eq!(resp.text(), "hello from shop");
    assert_eq!(resp.serial.as_deref(), Some("51"));
    let table = env.certs();
    assert!(table.contains("shop.example.cn"), "{table}");
    assert!(table.contains("Approved Test Root"), "{table}");
    assert!(table.contains(" ok"), "{table}");
}

/// Puts one kind of bad certificate pair in place.
type Install = Box<dyn Fn(&Env, &Ca)>;

/// Each bad certificate is refused by `check` and by start-up, with the file and the reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_certificates_are_refused_by_check_and_at_start() {
    let unapproved = Ca::root("Some Other Root");
    let cases: Vec<(&str, Install, &str)> = vec![
        (
            "self-signed",
            Box::new(|env, _| {
                let leaf = self_signed(&LeafSpec::new(&["shop.example.cn"], 1));
                env.put_cert("shop", &leaf, &[]);
            }),
            "self-signed certificates are never served",
        ),
        (
            "unapproved",
            Box::new(move |env, _| {
                let leaf = unapproved.issue(&LeafSpec::new(&["shop.example.cn"], 2));
                env.put_cert("shop", &leaf, &[]);
            }),
            "chain ends at \"CN=Some Other Root, O=menshen tests\", which is not an approved CA",
        ),
        (
            "expired",
            Box::new(|env, root| {
                let leaf = root.issue(&LeafSpec::new(&["shop.example.cn"], 3).valid(-400, -2));
                env.put_cert("shop", &leaf, &[]);
            }),
            "expired on",
        ),
        (
            "not yet valid",
            Box::new(|env, root| {
                let leaf = root.issue(&LeafSpec::new(&["shop.example.cn"], 4).valid(10, 400));
                env.put_cert("shop", &leaf, &[]);
            }),
            "not valid until",
        ),
        (
            "key mismatch",
            Box::new(|env, root| {
                let leaf = root.issue(&LeafSpec::new(&["shop.example.cn"], 5));
                env.put_pair("shop", &leaf, &[], &other_key_pem());
            }),
            "does not match the certificate's public key",
        ),
        (
            "missing intermediate",
            Box::new(|env, root| {
                let inter = root.intermediate("Issuing CA Left Out");
                let leaf = inter.issue(&LeafSpec::new(&["shop.example.cn"], 6));
                env.put_cert("shop", &leaf, &[]);
            }),
            "chain ends at \"CN=Issuing CA Left Out, O=menshen tests\"",
        ),
    ];
    for (what, install, message) in cases {
        let (env, root) = env_with_root();
        install(&env, &root);
        env.write_config("", site());
        let (ok, out) = env.check();
        assert!(!ok, "{what}: check must fail");
        assert!(
            out.contains("live/shop.crt"),
            "{what}: names the file: {out}"
        );
        assert!(out.contains(message), "{what}: says why ({message}): {out}");

        let mut proxy = env.spawn();
        let code = proxy.wait_exit(Duration::from_secs(10));
        assert_eq!(code, Some(1), "{what}: menshen must refuse to start");
        let log = proxy.log();
        assert!(
            log.contains(message),
            "{what}: start-up log says why: {log}"
        );
        assert!(!support::wait_port(env.https, Duration::from_millis(100)));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_sni_is_refused_with_unrecognized_name() {
    let (env, root) = env_with_root();
    let leaf = root.issue(&LeafSpec::new(&["shop.example.cn"], 7));
    env.put_cert("shop", &leaf, &[]);
    env.write_config("", site());
    let _proxy = env.start();
    let client = tls_client(&[&root.pem]);
    let err = handshake_serial(&client, env.https, "unknown.example.org")
        .await
        .expect_err("unknown SNI must be refused");
    let text = format!("{err:?}");
    assert!(text.contains("UnrecognisedName"), "alert: {text}");
    // The covered name still works on the same listener.
    assert_eq!(
        handshake_serial(&client, env.https, "shop.example.cn")
            .await
            .expect("known SNI"),
        "07"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wildcard_and_longest_valid_certificate_are_selected() {
    let (env, root) = env_with_root();
    let wild = root.issue(&LeafSpec::new(&["*.example.cn"], 0x10));
    let short = root.issue(&LeafSpec::new(&["shop.example.cn"], 0x20).valid(-1, 30));
    let long = root.issue(&LeafSpec::new(&["shop.example.cn"], 0x30).valid(-1, 300));
    env.put_cert("wild", &wild, &[]);
    env.put_cert("short", &short, &[]);
    env.put_cert("long", &long, &[]);
    env.write_config("", site());
    let _proxy = env.start();
    let client = tls_client(&[&root.pem]);
    let serial = |sni: &'static str| {
        let client = client.clone();
        let port = env.https;
        async move { handshake_serial(&client, port, sni).await.expect(sni) }
    };
    assert_eq!(
        serial("shop.example.cn").await,
        "30",
        "exact, valid longest"
    );
    assert_eq!(serial("api.example.cn").await, "10", "wildcard");
    let err = handshake_serial(&client, env.https, "a.b.example.cn").await;
    assert!(err.is_err(), "a wildcard covers one label only");
}

/// RSA and ECDSA leaves, with keys in PKCS#8, PKCS#1 and SEC1 form, all serve.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rsa_and_ecdsa_keys_in_every_pem_form_serve() {
    let (env, root) = env_with_root();
    let rsa = root.issue(&LeafSpec::new(&["rsa.example.cn"], 0x41).rsa());
    let ec = root.issue(&LeafSpec::new(&["ec.example.cn"], 0x42));
    let ec8 = root.issue(&LeafSpec::new(&["ec8.example.cn"], 0x43));
    env.put_pair("rsa", &rsa, &[], &traditional_key_pem(&rsa.key_pem, true));
    env.put_pair("ec", &ec, &[], &traditional_key_pem(&ec.key_pem, false));
    env.put_cert("ec8", &ec8, &[]);
    assert!(env.path("live/rsa.key").exists());
    let key = std::fs::read_to_string(env.path("live/rsa.key")).expect("key");
    assert!(key.contains("BEGIN RSA PRIVATE KEY"), "PKCS#1 form: {key}");
    let key = std::fs::read_to_string(env.path("live/ec.key")).expect("key");
    assert!(key.contains("BEGIN EC PRIVATE KEY"), "SEC1 form: {key}");
    env.write_config("", site());
    let _proxy = env.start();
    let client = tls_client(&[&root.pem]);
    for (sni, serial) in [
        ("rsa.example.cn", "41"),
        ("ec.example.cn", "42"),
        ("ec8.example.cn", "43"),
    ] {
        let got = handshake_serial(&client, env.https, sni).await.expect(sni);
        assert_eq!(got, serial, "{sni}");
    }
}

/// `[[tls.pairs]]` names files that do not follow the NAME.crt/NAME.key layout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explicit_pairs_serve_like_directory_pairs() {
    let (env, root) = env_with_root();
    let leaf = root.issue(&LeafSpec::new(&["shop.example.cn"], 0x61));
    env.write("chain.pem", &leaf.pem);
    env.write("leaf.pk8.pem", &leaf.key_pem);
    env.write_config(
        "[[tls.pairs]]\nname = \"bench\"\ncert = \"chain.pem\"\nkey = \"leaf.pk8.pem\"\n",
        site(),
    );
    let (ok, out) = env.check();
    assert!(ok, "{out}");
    let _proxy = env.start();
    let client = tls_client(&[&root.pem]);
    let serial = handshake_serial(&client, env.https, "shop.example.cn")
        .await
        .expect("pair served");
    assert_eq!(serial, "61");
}

/// `menshen certs` shows expiring and rejected files; expiry is warned about at start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expiring_and_rejected_certificates_are_reported() {
    let (env, root) = env_with_root();
    let soon = root.issue(&LeafSpec::new(&["shop.example.cn"], 0x71).valid(-300, 10));
    env.put_cert("shop", &soon, &[]);
    env.write_config("", site());
    let proxy = env.start();
    let warned = support::eventually(std::time::Duration::from_secs(3), || async {
        proxy
            .log()
            .contains("certificate expires soon")
            .then_some(())
    })
    .await;
    assert!(warned.is_some(), "expiry warned at start: {}", proxy.log());
    drop(proxy);

    let stranger = Ca::root("Stranger Root");
    env.put_leaf("other", &stranger, "other.example.cn", 0x72);
    let table = env.certs();
    let line = |file: &str| {
        table
            .lines()
            .find(|l| l.contains(file))
            .unwrap_or_else(|| panic!("{file} in {table}"))
            .to_owned()
    };
    assert!(
        line("live/shop.crt").trim_end().ends_with("expiring"),
        "{table}"
    );
    assert!(
        line("live/shop.crt").contains(" 9 ") || line("live/shop.crt").contains(" 10 "),
        "days left: {table}"
    );
    assert!(
        line("live/other.crt").contains("rejected: chain ends at \"CN=Stranger Root"),
        "{table}"
    );
}

/// A ClientHello without SNI (a client connecting by IP) gets the default certificate, and is
/// refused without one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_sni_needs_a_default_certificate() {
    let (env, root) = env_with_root();
    let leaf = root.issue(&LeafSpec::new(&["shop.example.cn"], 0x81).ip("127.0.0.1"));
    env.put_cert("shop", &leaf, &[]);
    env.write_config("", site());
    let proxy = env.start();
    let client = tls_client(&[&root.pem]);
    // rustls sends no SNI when the server name is an IP address.
    let err = handshake_serial(&client, env.https, "127.0.0.1").await;
    assert!(format!("{err:?}").contains("UnrecognisedName"), "{err:?}");
    drop(proxy);

    env.write_config("default_certificate = \"shop\"", site());
    let _proxy = env.start();
    let serial = handshake_serial(&client, env.https, "127.0.0.1")
        .await
        .expect("default certificate served");
    assert_eq!(
        serial, "0081",
        "0x81 is DER-encoded with a leading zero byte"
    );
}
