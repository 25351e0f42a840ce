//! What `menshen certs install` refuses, saying why, with nothing written: a leaf whose key is
//! not here, a renewal that would drop a name (unless allowed), a chain to an unapproved root.

mod support;

use support::config::Config;
use support::intake::{install, listing, request, served_serial};
use support::pki::{Ca, LeafSpec};
use support::Env;

/// The site `shop` for `hosts`.
fn site(hosts: &[&str]) -> Config {
    Config::new().site("shop", hosts).respond("/", "ok")
}

/// A proxy serving `live/shop.crt` (serial 01) for shop.example.cn and www.shop.example.cn.
fn shop() -> (Env, Ca, Ca) {
    let (env, root) = Env::with_approved_root("Approved Root");
    let inter = root.intermediate("Issuing CA");
    let old = inter.issue(&LeafSpec::new(
        &["shop.example.cn", "www.shop.example.cn"],
        1,
    ));
    env.put_cert("shop", &old, &[&inter]);
    env.write_config("", site(&["shop.example.cn", "www.shop.example.cn"]));
    std::fs::create_dir_all(env.path("delivery")).expect("mkdir");
    (env, root, inter)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leaf_whose_key_is_not_here_is_refused_and_nothing_changes() {
    let (env, root, inter) = shop();
    let _proxy = env.start();
    request(&env, "shop.example.cn,www.shop.example.cn");
    // The CA issued for a CSR made elsewhere.
    let elsewhere = inter.issue(&LeafSpec::new(
        &["shop.example.cn", "www.shop.example.cn"],
        9,
    ));
    env.write(
        "delivery/shop.pem",
        &format!("{}{}", elsewhere.pem, inter.pem),
    );
    let before = listing(&env);
    let ran = install(&env, &["delivery/shop.pem"], &[]);
    assert!(!ran.ok);
    assert!(
        ran.stderr.contains(
            "the certificate for shop.example.cn matches no key here (pending: \
             shop.example.cn in "
        ) && ran
            .stderr
            .contains("give the key its CSR was made with (--key FILE)"),
        "{}",
        ran.stderr
    );
    assert_eq!(listing(&env), before, "nothing written");
    assert!(
        env.path("pending/shop.example.cn.key").exists(),
        "the request still waits"
    );
    assert!(served_serial(&env, &root, "shop.example.cn", "01").await);

    // With the right key given, the same delivery installs.
    env.write("delivery/elsewhere.key", &elsewhere.key_pem);
    let ran = install(
        &env,
        &["delivery/shop.pem", "--key", "delivery/elsewhere.key"],
        &[],
    );
    assert!(ran.ok, "{}", ran.stderr);
    assert!(served_serial(&env, &root, "shop.example.cn", "09").await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_renewal_that_drops_a_name_is_refused_unless_allowed() {
    let (env, root, inter) = shop();
    let _proxy = env.start();
    let csr = request(&env, "shop.example.cn");
    env.write(
        "delivery/shop.pem",
        &format!("{}{}", inter.sign_csr(&csr, 0x21, 90), inter.pem),
    );
    let before = listing(&env);
    let ran = install(&env, &["delivery/shop.pem"], &[]);
    assert!(!ran.ok);
    assert!(
        ran.stderr
            .contains("warning: www.shop.example.cn is served by ")
            && ran
                .stderr
                .contains("live/shop.crt today and the new certificate does not cover it"),
        "{}",
        ran.stderr
    );
    assert!(
        ran.stderr.contains(
            "refused: the new certificate would stop serving www.shop.example.cn; ask the CA to \
             add them, or, if they are meant to go, remove them from their site in the config"
        ),
        "{}",
        ran.stderr
    );
    assert_eq!(listing(&env), before, "nothing written");
    assert!(served_serial(&env, &root, "www.shop.example.cn", "01").await);

    // The operator means it: www leaves the site, then the certificate.
    env.write_config("", site(&["shop.example.cn"]));
    let ran = install(&env, &["delivery/shop.pem", "--allow-name-loss"], &[]);
    assert!(ran.ok, "{}", ran.stderr);
    assert!(served_serial(&env, &root, "shop.example.cn", "21").await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chain_to_an_unapproved_root_is_refused_as_serving_would() {
    let (env, root, _) = shop();
    let _proxy = env.start();
    let csr = request(&env, "shop.example.cn,www.shop.example.cn");
    let foreign = Ca::root("Foreign Root");
    let issuing = foreign.intermediate("Foreign Issuing CA");
    let leaf = issuing.sign_csr(&csr, 0x31, 90);
    env.write(
        "delivery/shop.pem",
        &format!("{leaf}{}{}{}", issuing.pem, foreign.pem, root.pem),
    );
    let before = listing(&env);
    let ran = install(&env, &["delivery/shop.pem"], &[]);
    assert!(!ran.ok);
    assert!(
        ran.stderr.contains(
            "refused: the delivered certificate for shop.example.cn: chain ends at \"CN=Foreign \
             Root, O=menshen tests\", which is not an approved CA"
        ),
        "{}",
        ran.stderr
    );
    assert_eq!(listing(&env), before, "nothing written");
    assert!(served_serial(&env, &root, "shop.example.cn", "01").await);
}
