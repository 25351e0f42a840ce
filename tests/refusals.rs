//! Refusals an operator can act on: what is wrong with which certificate, and what to ask the
//! CA for, never the verifier's internal names.

mod support;

use std::path::Path;
use std::process::Command;

use support::pki::{Ca, LeafSpec};
use support::Env;

/// Runs `openssl ARGS` in `dir`; the test fails (never skips) when openssl is missing.
fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl is installed (.ci/run installs it)");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A leaf for shop.example.cn signed by `ca` with SHA-1, as old CAs issued them: (cert, key).
fn sha1_leaf(env: &Env, ca: &Ca) -> (String, String) {
    let dir = env.path("sha1");
    std::fs::create_dir_all(&dir).expect("mkdir");
    std::fs::write(dir.join("ca.pem"), &ca.pem).expect("ca");
    std::fs::write(dir.join("ca.key"), ca.key_pem()).expect("ca key");
    std::fs::write(
        dir.join("ext"),
        "subjectAltName=DNS:shop.example.cn\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .expect("ext");
    openssl(
        &dir,
        &[
            "req",
            "-new",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            "leaf.key",
            "-out",
            "leaf.csr",
            "-subj",
            "/CN=shop.example.cn",
        ],
    );
    openssl(
        &dir,
        &[
            "x509", "-req", "-in", "leaf.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-sha1",
            "-days", "30", "-extfile", "ext", "-out", "leaf.pem",
        ],
    );
    let read = |f: &str| std::fs::read_to_string(dir.join(f)).expect("read");
    (read("leaf.pem"), read("leaf.key"))
}

#[test]
fn a_sha1_signature_is_named_in_words_with_the_certificate_at_fault() {
    let (env, root) = Env::with_approved_root("Approved Root");
    let (cert, key) = sha1_leaf(&env, &root);
    env.write("live/shop.key", &key);
    env.write("live/shop.crt", &cert);
    env.write_config("", support::SHOP_SITE);
    let (ok, out) = env.check();
    assert!(!ok, "{out}");
    assert!(out.contains("live/shop.crt"), "{out}");
    assert!(
        out.contains(
            "\"CN=shop.example.cn\" is signed with SHA-1 (ecdsa-with-SHA1), which browsers and \
             menshen do not accept: ask the CA to reissue it signed with SHA-256"
        ),
        "{out}"
    );
    assert!(!out.contains("UnsupportedSignature"), "{out}");
}

#[test]
fn a_foreign_leaf_with_the_approved_root_appended_is_blamed_on_its_own_issuer() {
    let (env, root) = Env::with_approved_root("Approved Root");
    let foreign = Ca::root("Foreign CA");
    let leaf = foreign.issue(&LeafSpec::new(&["shop.example.cn"], 0x11));
    env.put_cert("shop", &leaf, &[&root]);
    env.write_config("", support::SHOP_SITE);
    let (ok, out) = env.check();
    assert!(!ok, "{out}");
    assert!(
        out.contains(
            "live/shop.crt: chain ends at \"CN=Foreign CA, O=menshen tests\", which is not an \
             approved CA"
        ),
        "{out}"
    );
    assert!(!out.contains("Approved Root\", which"), "{out}");
    let table = env.certs();
    assert!(
        table.contains("rejected: chain ends at \"CN=Foreign CA"),
        "{table}"
    );
}
