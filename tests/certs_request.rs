//! `menshen certs request`: a key that waits in pending/ (0600, never printed) and a CSR a CA
//! can sign for exactly the hosts asked for.

mod support;

use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Output};

use support::http::{handshake_serial, tls_client};
use support::Env;

/// `menshen certs request --config … ARGS`.
pub fn request(env: &Env, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_menshen"))
        .args(["certs", "request", "--config"])
        .arg(env.path("menshen.toml"))
        .args(args)
        .output()
        .expect("run menshen certs request")
}

fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The subjectAltNames a CSR asks for.
fn csr_hosts(pem: &str) -> Vec<String> {
    use x509_parser::extensions::{GeneralName, ParsedExtension};
    use x509_parser::prelude::FromDer;
    let (_, pem) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).expect("PEM");
    let (_, csr) =
        x509_parser::certification_request::X509CertificationRequest::from_der(&pem.contents)
            .expect("CSR");
    let mut hosts = Vec::new();
    for ext in csr.requested_extensions().into_iter().flatten() {
        if let ParsedExtension::SubjectAlternativeName(san) = ext {
            for name in &san.general_names {
                if let GeneralName::DNSName(d) = name {
                    hosts.push(d.to_string());
                }
            }
        }
    }
    hosts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_keeps_the_key_pending_and_its_csr_gets_a_served_certificate() {
    let (env, root) = Env::with_approved_root("Approved Root");
    env.put_leaf("old", &root, "old.example.cn", 1);
    env.write_config("", support::SHOP_SITE);
    let out = request(&env, &["--hosts", "shop.example.cn,www.shop.example.cn"]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(
        stdout.starts_with("-----BEGIN CERTIFICATE REQUEST-----"),
        "{stdout}"
    );
    assert!(!stdout.contains("PRIVATE KEY") && !stderr.contains("PRIVATE KEY"));
    assert_eq!(
        csr_hosts(&stdout),
        ["shop.example.cn", "www.shop.example.cn"]
    );
    assert!(stderr.contains("ECDSA P-256 private key"), "{stderr}");
    assert!(
        stderr.contains("menshen certs install --config"),
        "next step: {stderr}"
    );

    let key = env.path("pending/shop.example.cn.key");
    let mode = std::fs::metadata(&key)
        .expect("pending key")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "the key is readable by its owner only");
    let saved = std::fs::read_to_string(env.path("pending/shop.example.cn.csr")).expect("csr");
    assert_eq!(saved, stdout);

    // A CA signs the CSR: the certificate and the pending key serve together.
    let cert = root.sign_csr(&stdout, 0x77, 90);
    env.write(
        "live/shop.key",
        &std::fs::read_to_string(&key).expect("key"),
    );
    env.write("live/shop.crt", &cert);
    let proxy = env.start();
    let client = tls_client(&[&root.pem]);
    let serial = handshake_serial(&client, env.https, "shop.example.cn").await;
    assert_eq!(serial.ok().as_deref(), Some("77"), "{}", proxy.log());
}

#[test]
fn several_requests_wait_side_by_side_and_a_name_is_never_reused() {
    let (env, _) = Env::with_approved_root("Approved Root");
    env.write_config("", support::SHOP_SITE);
    let rsa = request(&env, &["--hosts", "*.example.cn", "--rsa", "2048"]);
    let (_, stderr) = text(&rsa);
    assert!(rsa.status.success(), "{stderr}");
    assert!(stderr.contains("RSA 2048-bit private key"), "{stderr}");
    let key = std::fs::read_to_string(env.path("pending/wildcard.example.cn.key")).expect("key");
    let parsed = rustls_pemfile::private_key(&mut key.as_bytes())
        .expect("PEM")
        .expect("key");
    assert!(matches!(parsed, rustls::pki_types::PrivateKeyDer::Pkcs8(_)));
    assert!(
        key.len() > 1500,
        "an RSA key, not an EC one: {} bytes",
        key.len()
    );

    let again = request(&env, &["--hosts", "*.example.cn"]);
    let (_, stderr) = text(&again);
    assert!(!again.status.success());
    assert!(
        stderr.contains("--name: a request named \"wildcard.example.cn\" is pending"),
        "{stderr}"
    );
    let other = request(&env, &["--hosts", "*.example.cn", "--name", "wild-2"]);
    assert!(other.status.success(), "{}", text(&other).1);
    assert!(env.path("pending/wild-2.key").exists());
    assert!(env.path("pending/wildcard.example.cn.key").exists());

    for (args, said) in [
        (
            vec!["--hosts", "bad host"],
            "--hosts: \"bad host\" is not a host name",
        ),
        (
            vec!["--hosts", "a.cn", "--rsa", "1024"],
            "--rsa: 1024 bits: choose 2048 or 3072",
        ),
        (
            vec!["--hosts", "a.cn", "--name", "../x"],
            "--name: \"../x\" cannot be a file name",
        ),
    ] {
        let out = request(&env, &args);
        assert!(!out.status.success());
        assert!(text(&out).1.contains(said), "{said}: {}", text(&out).1);
    }
}
