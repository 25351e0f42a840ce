//! `menshen certs install` takes what a CA delivers, in every form, and a running proxy serves
//! it within a second: a shuffled PEM bundle with its root, DER files, PKCS#7, PKCS#12 with a
//! password, a reseller's zip, and a leaf whose intermediate comes from `tls.intermediates`.

mod support;

use std::io::Write;

use support::intake::{install, listing, openssl, request, served_serial};
use support::pki::{Ca, LeafSpec};
use support::{Env, Running};

use support::SHOP_SITE as SITE;

/// A running proxy serving `live/shop.crt` (serial 01) for shop.example.cn, issued by `inter`.
struct Shop {
    env: Env,
    root: Ca,
    inter: Ca,
    _proxy: Running,
}

fn shop(tls_extra: &str) -> Shop {
    let (env, root) = Env::with_approved_root("Approved Root");
    let inter = root.intermediate("Issuing CA");
    let old = inter.issue(&LeafSpec::new(&["shop.example.cn"], 1));
    env.put_cert("shop", &old, &[&inter]);
    env.write_config(tls_extra, SITE);
    std::fs::create_dir_all(env.path("delivery")).expect("mkdir");
    let proxy = env.start();
    Shop {
        env,
        root,
        inter,
        _proxy: proxy,
    }
}

impl Shop {
    /// Requests shop.example.cn and has the intermediate sign it: the leaf PEM.
    fn requested_leaf(&self, serial: u64) -> String {
        let csr = request(&self.env, "shop.example.cn");
        self.inter.sign_csr(&csr, serial, 90)
    }

    /// After an install: the new serial serves, the old pair is gone, the request is done.
    async fn assert_installed(&self, serial: &str) {
        assert!(
            served_serial(&self.env, &self.root, "shop.example.cn", serial).await,
            "serial {serial} is served"
        );
        assert!(
            !self.env.path("live/shop.crt").exists(),
            "the old pair moved aside"
        );
        assert!(
            !self.env.path("live/shop.key").exists(),
            "the old key moved aside"
        );
        assert!(self.env.path("live/shop/shop.crt").exists());
        assert!(!self.env.path("pending/shop.example.cn.key").exists());
        let (ok, out) = self.env.check();
        assert!(ok, "{out}");
        assert!(!out.contains("warning"), "installed in order: {out}");
    }

    fn write(&self, name: &str, bytes: &[u8]) {
        std::fs::write(self.env.path(&format!("delivery/{name}")), bytes).expect("write");
    }
}

fn der_of(pem: &str) -> Vec<u8> {
    let (_, pem) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).expect("PEM");
    pem.contents
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shuffled_bundle_with_its_root_is_summarised_then_installed_in_order() {
    let s = shop("");
    let leaf = s.requested_leaf(0x51);
    let bundle = format!("{}{}{}", s.root.pem, s.inter.pem, leaf);
    s.write("bundle.pem", bundle.as_bytes());

    let before = listing(&s.env);
    let dry = install(&s.env, &["--dry-run", "delivery/bundle.pem"], &[]);
    assert!(dry.ok, "{}", dry.stderr);
    for said in [
        "certificate for: shop.example.cn",
        "issuer:          CN=Issuing CA, O=menshen tests",
        "approved root:   Approved Root",
        "serial:          51",
        "key:             pending request \"shop.example.cn\"",
        "chain:           the leaf and 1 intermediate(s)",
        "corrected:       the root \"Approved Root\" is left out of the served chain",
        "corrected:       the chain was out of order",
        "replaces:        shop (",
        "serial 01, hosts shop.example.cn",
        "dry run: nothing written",
    ] {
        assert!(dry.stdout.contains(said), "{said}: {}", dry.stdout);
    }
    assert_eq!(listing(&s.env), before, "a dry run writes nothing");

    let done = install(&s.env, &["delivery/bundle.pem"], &[]);
    assert!(done.ok, "{}{}", done.stdout, done.stderr);
    assert!(done.stdout.contains("installed: "), "{}", done.stdout);
    s.assert_installed("51").await;

    // The next renewal replaces the installed one the same way.
    let leaf = s.requested_leaf(0x52);
    s.write("renewed.pem", format!("{leaf}{}", s.inter.pem).as_bytes());
    let again = install(&s.env, &["delivery/renewed.pem"], &[]);
    assert!(again.ok, "{}", again.stderr);
    assert!(again.stdout.contains("replaces:        shop (") && again.stdout.contains("serial 51"));
    s.assert_installed("52").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn der_files_and_an_intermediate_from_the_folder_are_installed() {
    let s = shop("intermediates = \"intermediates\"");
    std::fs::create_dir_all(s.env.path("intermediates")).expect("mkdir");
    s.env.write("intermediates/issuing.pem", &s.inter.pem);
    let leaf = s.requested_leaf(0x61);
    s.write("shop.cer", &der_of(&leaf));
    let done = install(&s.env, &["delivery/shop.cer"], &[]);
    assert!(done.ok, "{}{}", done.stdout, done.stderr);
    assert!(
        done.stdout
            .contains("the leaf and 1 intermediate(s), 1 taken from tls.intermediates"),
        "{}",
        done.stdout
    );
    s.assert_installed("61").await;
    // The client trusts the root only: the served chain carries the completed intermediate.
    let chain = std::fs::read_to_string(s.env.path("live/shop/shop.crt")).expect("chain");
    assert_eq!(chain.matches("BEGIN CERTIFICATE").count(), 2);

    // DER leaf and DER intermediate, in two files.
    let leaf = s.requested_leaf(0x62);
    s.write("leaf.der", &der_of(&leaf));
    s.write("issuer.der", &der_of(&s.inter.pem));
    let done = install(&s.env, &["delivery/issuer.der", "delivery/leaf.der"], &[]);
    assert!(done.ok, "{}", done.stderr);
    s.assert_installed("62").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pkcs7_and_pkcs12_with_a_password_are_installed() {
    let s = shop("");
    let dir = s.env.path("delivery");
    let leaf = s.requested_leaf(0x71);
    s.write("chain.pem", format!("{leaf}{}", s.inter.pem).as_bytes());
    openssl(
        &dir,
        &[
            "crl2pkcs7",
            "-nocrl",
            "-certfile",
            "chain.pem",
            "-outform",
            "DER",
            "-out",
            "shop.p7b",
        ],
    );
    let done = install(&s.env, &["delivery/shop.p7b"], &[]);
    assert!(done.ok, "{}", done.stderr);
    s.assert_installed("71").await;

    // The same in PEM (-----BEGIN PKCS7-----), as some CAs mail it.
    let leaf = s.requested_leaf(0x74);
    s.write("chain.pem", format!("{leaf}{}", s.inter.pem).as_bytes());
    openssl(
        &dir,
        &[
            "crl2pkcs7",
            "-nocrl",
            "-certfile",
            "chain.pem",
            "-out",
            "shop.p7b.pem",
        ],
    );
    let done = install(&s.env, &["delivery/shop.p7b.pem"], &[]);
    assert!(done.ok, "{}", done.stderr);
    s.assert_installed("74").await;

    // A reseller made the key: the .pfx carries it, under a password.
    let made = s.inter.issue(&LeafSpec::new(&["shop.example.cn"], 0x72));
    s.write("leaf.pem", made.pem.as_bytes());
    s.write("leaf.key", made.key_pem.as_bytes());
    s.write("inter.pem", s.inter.pem.as_bytes());
    openssl(
        &dir,
        &[
            "pkcs12",
            "-export",
            "-inkey",
            "leaf.key",
            "-in",
            "leaf.pem",
            "-certfile",
            "inter.pem",
            "-passout",
            "pass:s3cret",
            "-out",
            "shop.pfx",
        ],
    );
    let wrong = install(
        &s.env,
        &["delivery/shop.pfx"],
        &[("MENSHEN_PFX_PASSWORD", "nope")],
    );
    assert!(!wrong.ok);
    assert!(
        wrong.stderr.contains("cannot open the PKCS#12 file") && wrong.stderr.contains("password"),
        "{}",
        wrong.stderr
    );
    let none = install(&s.env, &["delivery/shop.pfx"], &[]);
    assert!(
        none.stderr
            .contains("needs its password: give it with --password-file"),
        "{}",
        none.stderr
    );
    s.write("pass.txt", b"s3cret\n");
    let done = install(
        &s.env,
        &["delivery/shop.pfx", "--password-file", "delivery/pass.txt"],
        &[],
    );
    assert!(done.ok, "{}", done.stderr);
    assert!(
        done.stdout.contains("key:             in the delivery"),
        "{}",
        done.stdout
    );
    assert!(
        served_serial(&s.env, &s.root, "shop.example.cn", "72").await,
        "the .pfx serves"
    );
    let key = std::fs::read_to_string(s.env.path("live/shop/shop.key")).expect("key");
    assert!(key.starts_with("-----BEGIN PRIVATE KEY-----"));

    // The legacy encryption older Windows and IIS exports use (RC2-40 and 3DES).
    let made = s.inter.issue(&LeafSpec::new(&["shop.example.cn"], 0x73));
    s.write("leaf.pem", made.pem.as_bytes());
    s.write("leaf.key", made.key_pem.as_bytes());
    openssl(
        &dir,
        &[
            "pkcs12",
            "-export",
            "-legacy",
            "-inkey",
            "leaf.key",
            "-in",
            "leaf.pem",
            "-certfile",
            "inter.pem",
            "-passout",
            "pass:old",
            "-out",
            "legacy.p12",
        ],
    );
    let done = install(
        &s.env,
        &["delivery/legacy.p12"],
        &[("MENSHEN_PFX_PASSWORD", "old")],
    );
    assert!(done.ok, "{}", done.stderr);
    assert!(
        served_serial(&s.env, &s.root, "shop.example.cn", "73").await,
        "the legacy .p12 serves"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reseller_zip_is_installed_from_its_nginx_folder() {
    let s = shop("");
    let made = s.inter.issue(&LeafSpec::new(&["shop.example.cn"], 0x81));
    let bundle = format!("{}{}", made.pem, s.inter.pem);
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let opts = zip::write::SimpleFileOptions::default();
    let files: Vec<(&str, &[u8])> = vec![
        (
            "shop.example.cn/shop.example.cn.csr",
            b"-----BEGIN CERTIFICATE REQUEST-----\n",
        ),
        (
            "shop.example.cn/Apache/1_root_bundle.crt",
            s.inter.pem.as_bytes(),
        ),
        (
            "shop.example.cn/Apache/2_shop.example.cn.crt",
            made.pem.as_bytes(),
        ),
        (
            "shop.example.cn/Apache/3_shop.example.cn.key",
            made.key_pem.as_bytes(),
        ),
        ("shop.example.cn/IIS/shop.example.cn.pfx", b"not read"),
        ("shop.example.cn/IIS/keystorePass.txt", b"secret"),
        (
            "shop.example.cn/Nginx/shop.example.cn_bundle.crt",
            bundle.as_bytes(),
        ),
        (
            "shop.example.cn/Nginx/shop.example.cn_bundle.pem",
            bundle.as_bytes(),
        ),
        (
            "shop.example.cn/Nginx/shop.example.cn.key",
            made.key_pem.as_bytes(),
        ),
        ("shop.example.cn/Tomcat/shop.example.cn.jks", b"not read"),
    ];
    for (name, content) in files {
        zip.start_file(name, opts).expect("zip entry");
        zip.write_all(content).expect("zip write");
    }
    let bytes = zip.finish().expect("zip").into_inner();
    s.write("shop.example.cn.zip", &bytes);
    let done = install(&s.env, &["delivery/shop.example.cn.zip"], &[]);
    assert!(done.ok, "{}{}", done.stdout, done.stderr);
    assert!(
        done.stdout.contains("Nginx/shop.example.cn.key"),
        "the key came from the Nginx folder: {}",
        done.stdout
    );
    assert!(
        served_serial(&s.env, &s.root, "shop.example.cn", "0081").await,
        "the zip serves: {}",
        done.stdout
    );

    // A download with only IIS and Tomcat folders: the .pfx, with keystorePass.txt beside it.
    let made = s.inter.issue(&LeafSpec::new(&["shop.example.cn"], 0x82));
    let dir = s.env.path("delivery");
    s.write("leaf.pem", made.pem.as_bytes());
    s.write("leaf.key", made.key_pem.as_bytes());
    s.write("inter.pem", s.inter.pem.as_bytes());
    openssl(
        &dir,
        &[
            "pkcs12",
            "-export",
            "-inkey",
            "leaf.key",
            "-in",
            "leaf.pem",
            "-certfile",
            "inter.pem",
            "-passout",
            "pass:zip-pass",
            "-out",
            "iis.pfx",
        ],
    );
    let pfx = std::fs::read(dir.join("iis.pfx")).expect("pfx");
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    for (name, content) in [
        ("IIS/shop.example.cn.pfx", pfx.as_slice()),
        ("IIS/keystorePass.txt", b"zip-pass\r\n".as_slice()),
        ("Tomcat/shop.example.cn.jks", b"not read".as_slice()),
    ] {
        zip.start_file(name, opts).expect("zip entry");
        zip.write_all(content).expect("zip write");
    }
    let bytes = zip.finish().expect("zip").into_inner();
    s.write("iis.zip", &bytes);
    let done = install(&s.env, &["delivery/iis.zip"], &[]);
    assert!(done.ok, "{}{}", done.stdout, done.stderr);
    assert!(
        served_serial(&s.env, &s.root, "shop.example.cn", "0082").await,
        "the IIS .pfx serves: {}",
        s._proxy.log()
    );
}
