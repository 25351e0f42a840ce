//! Loading forgives what is safe to correct, and says so: a bundle out of order is served leaf
//! first, an included root is left out, and the layouts operators bring (certbot, `NAME.pem`,
//! a reseller's nginx folder) are recognised. What could pair two ways is refused by name.

mod support;

use std::time::Duration;

use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use support::config::Config;
use support::http::{handshake_serial, serial_of, tls_client};
use support::pki::{Ca, Leaf, LeafSpec};
use support::{eventually, Env};

/// The site `shop`, for its host and every other name under example.cn.
fn site() -> Config {
    Config::new()
        .site("shop", &["shop.example.cn", "*.example.cn"])
        .respond("/", "ok")
}

/// The serial and the number of certificates a handshake with `sni` is served.
async fn served(client: &TlsConnector, port: u16, sni: &str) -> std::io::Result<(String, usize)> {
    let tcp = TcpStream::connect(("127.0.0.1", port)).await?;
    let name = ServerName::try_from(sni.to_owned()).map_err(std::io::Error::other)?;
    let tls = client.connect(name, tcp).await?;
    let certs = tls.get_ref().1.peer_certificates().unwrap_or_default();
    let serial = certs.first().map(serial_of).unwrap_or_default();
    Ok((serial, certs.len()))
}

fn issue(inter: &Ca, host: &str, serial: u64) -> Leaf {
    inter.issue(&LeafSpec::new(&[host], serial))
}

fn write_dir(env: &Env, dir: &str, files: &[(&str, &str)]) {
    std::fs::create_dir_all(env.path(dir)).expect("mkdir");
    for (name, content) in files {
        env.write(&format!("{dir}/{name}"), content);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shuffled_bundle_with_its_root_serves_leaf_first_without_the_root() {
    let (env, root) = Env::with_approved_root("Approved Root");
    let inter = root.intermediate("Issuing CA");
    let leaf = issue(&inter, "shop.example.cn", 0x21);
    env.write("live/shop.key", &leaf.key_pem);
    env.write(
        "live/shop.crt",
        &format!("{}{}{}", root.pem, inter.pem, leaf.pem),
    );
    env.write_config("", site());

    let (ok, out) = env.check();
    assert!(ok, "{out}");
    for said in [
        "warning: ",
        "live/shop.crt: the root \"Approved Root\" is left out of the served chain",
        "live/shop.crt: the chain was out of order (Issuing CA, shop.example.cn); it is served leaf \
         first, then each issuer",
    ] {
        assert!(out.contains(said), "check says {said:?}: {out}");
    }
    let table = env.certs();
    assert!(table.contains("ok (corrected, see below)"), "{table}");
    assert!(table.contains("left out of the served chain"), "{table}");

    let proxy = env.start();
    let client = tls_client(&[&root.pem]);
    let (serial, count) = served(&client, env.https, "shop.example.cn")
        .await
        .unwrap_or_else(|e| panic!("{e}: {}", proxy.log()));
    assert_eq!(
        (serial.as_str(), count),
        ("21", 2),
        "leaf and intermediate, no root"
    );
    let log = proxy.log();
    assert!(
        log.contains("certificate loaded with a correction") && log.contains("out of order"),
        "{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certbot_pem_and_reseller_layouts_serve_under_their_names() {
    let (env, root) = Env::with_approved_root("Approved Root");
    let inter = root.intermediate("Issuing CA");
    let certbot = issue(&inter, "shop.example.cn", 0x31);
    let pem = issue(&inter, "api.example.cn", 0x32);
    let reseller = issue(&inter, "www.example.cn", 0x33);
    let full = |l: &Leaf| format!("{}{}", l.pem, inter.pem);
    write_dir(
        &env,
        "live/shop",
        &[
            ("cert.pem", &certbot.pem),
            ("chain.pem", &inter.pem),
            ("fullchain.pem", &full(&certbot)),
            ("privkey.pem", &certbot.key_pem),
        ],
    );
    env.write("live/api.key", &pem.key_pem);
    env.write("live/api.pem", &full(&pem));
    write_dir(
        &env,
        "live/Nginx",
        &[
            ("www.example.cn.key", &reseller.key_pem),
            ("www.example.cn_bundle.crt", &full(&reseller)),
            ("www.example.cn_bundle.pem", &full(&reseller)),
            (
                "www.example.cn.csr",
                "-----BEGIN CERTIFICATE REQUEST-----\n",
            ),
        ],
    );
    // The certbot pair is named after its folder (check fails on a default that names no pair).
    env.write_config("default_certificate = \"shop\"", site());
    let (ok, out) = env.check();
    assert!(ok, "{out}");
    for said in [
        "fullchain.pem + privkey.pem (certbot layout) serve as the pair \"shop\"",
        "api.pem + api.key serve as the pair \"api\"",
        "www.example.cn_bundle.crt + www.example.cn.key (a reseller's nginx layout) serve as the \
         pair \"www.example.cn\"",
    ] {
        assert!(out.contains(said), "{said}: {out}");
    }
    let proxy = env.start();
    let client = tls_client(&[&root.pem]);
    for (sni, serial) in [
        ("shop.example.cn", "31"),
        ("api.example.cn", "32"),
        ("www.example.cn", "33"),
    ] {
        let got = served(&client, env.https, sni).await;
        assert_eq!(
            got.ok(),
            Some((serial.to_owned(), 2)),
            "{sni}: {}",
            proxy.log()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_that_pair_two_ways_or_not_at_all_are_refused_by_name() {
    let (env, root) = Env::with_approved_root("Approved Root");
    let shop = root.issue(&LeafSpec::new(&["shop.example.cn"], 0x41));
    env.put_cert("shop", &shop, &[]);
    env.write_config("", site());
    let proxy = env.start();
    let client = tls_client(&[&root.pem]);
    assert_eq!(
        handshake_serial(&client, env.https, "shop.example.cn")
            .await
            .expect("shop"),
        "41"
    );

    // A second certificate file for shop.key, and a key for no certificate, arrive.
    let renewed = root.issue(&LeafSpec::new(&["shop.example.cn"], 0x42));
    env.write("live/shop.pem", &renewed.pem);
    env.write("live/www.example.cn.key", &shop.key_pem);
    let (ok, out) = env.check();
    assert!(!ok, "{out}");
    for said in [
        "live/shop.crt: shop.crt and shop.pem pair with the same key shop.key; menshen does not \
         guess which to serve",
        "live/www.example.cn.key: a private key with no certificate beside it (expected \
         www.example.cn.crt, www.example.cn.pem, www.example.cn_bundle.crt) (it is the key of \
         shop.crt); menshen does not guess",
    ] {
        assert!(out.contains(said), "{said}: {out}");
    }
    // The running proxy reports it and keeps serving the last good pair.
    let reported = eventually(Duration::from_secs(5), || async {
        proxy.log().contains("pair with the same key").then_some(())
    })
    .await;
    assert!(reported.is_some(), "{}", proxy.log());
    assert_eq!(
        handshake_serial(&client, env.https, "shop.example.cn")
            .await
            .expect("shop"),
        "41"
    );
}
