//! Every layout recognised, and every refusal of what could pair two ways or not at all.

use super::*;

fn files(names: &[&str]) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = names.iter().map(|n| Path::new("d").join(n)).collect();
    v.sort();
    v
}

fn names(scan: &Scan) -> Vec<(String, String, String)> {
    scan.pairs
        .iter()
        .map(|p| {
            (
                p.name.clone(),
                name_of(&p.crt).to_owned(),
                name_of(&p.key).to_owned(),
            )
        })
        .collect()
}

fn messages(scan: &Scan) -> Vec<String> {
    scan.problems.iter().map(ToString::to_string).collect()
}

fn t(a: &str, b: &str, c: &str) -> (String, String, String) {
    (a.to_owned(), b.to_owned(), c.to_owned())
}

#[test]
fn each_layout_pairs_and_says_how() {
    let scan = scan(
        &files(&[
            "shop.crt",
            "shop.key",
            "api.pem",
            "api.key",
            "www.example.cn_bundle.crt",
            "www.example.cn_bundle.pem",
            "www.example.cn.key",
            "www.example.cn.csr",
        ]),
        "live",
        false,
    );
    assert_eq!(
        names(&scan),
        [
            t("api", "api.pem", "api.key"),
            t("shop", "shop.crt", "shop.key"),
            t(
                "www.example.cn",
                "www.example.cn_bundle.crt",
                "www.example.cn.key"
            ),
        ]
    );
    assert!(messages(&scan).is_empty(), "{:?}", messages(&scan));
    let notes: Vec<Option<String>> = scan.pairs.iter().map(|p| p.note.clone()).collect();
    assert_eq!(
        notes,
        [
            Some("api.pem + api.key serve as the pair \"api\"".to_owned()),
            None,
            Some(
                "www.example.cn_bundle.crt + www.example.cn.key (a reseller's nginx layout) serve \
                 as the pair \"www.example.cn\""
                    .to_owned()
            ),
        ]
    );
}

#[test]
fn a_certbot_folder_is_named_after_the_folder() {
    let scan = scan(
        &files(&[
            "cert.pem",
            "chain.pem",
            "fullchain.pem",
            "privkey.pem",
            "README",
        ]),
        "shop",
        true,
    );
    assert_eq!(names(&scan), [t("shop", "fullchain.pem", "privkey.pem")]);
    assert_eq!(
        scan.pairs[0].note.as_deref(),
        Some("fullchain.pem + privkey.pem (certbot layout) serve as the pair \"shop\"")
    );
    assert!(scan.problems.is_empty());
}

#[test]
fn kubernetes_secrets_keep_their_meaning() {
    let scan = scan(&files(&["tls.crt", "tls.key", "ca.crt"]), "api", true);
    assert_eq!(names(&scan), [t("api", "tls.crt", "tls.key")]);
    assert_eq!(scan.hint, Some(Path::new("d").join("ca.crt")));
    let with_ca_key = super::scan(&files(&["ca.crt", "ca.key"]), "x", false);
    assert_eq!(names(&with_ca_key), [t("ca", "ca.crt", "ca.key")]);
    assert_eq!(with_ca_key.hint, None);
}

#[test]
fn two_certificates_for_one_key_are_refused_naming_them() {
    let scan = scan(&files(&["shop.crt", "shop.pem", "shop.key"]), "live", false);
    assert!(scan.pairs.is_empty());
    assert_eq!(
        messages(&scan),
        [
            "d/shop.crt: shop.crt and shop.pem pair with the same key shop.key; menshen does not \
             guess which to serve: keep one of them (the full chain) and move the others out",
            "d/shop.pem: shop.crt and shop.pem pair with the same key shop.key; menshen does not \
             guess which to serve: keep one of them (the full chain) and move the others out",
        ]
    );
}

#[test]
fn two_keys_for_one_certificate_are_refused_naming_them() {
    let scan = scan(
        &files(&["shop_bundle.crt", "shop_bundle.key", "shop.key"]),
        "live",
        false,
    );
    assert!(scan.pairs.is_empty());
    assert_eq!(
        messages(&scan),
        [
            "d/shop_bundle.crt: shop.key and shop_bundle.key both pair with this certificate; \
          menshen does not guess which is its key: move the other one out"
        ]
    );
}

#[test]
fn a_key_without_a_certificate_and_a_certificate_without_a_key_are_named() {
    let scan = scan(
        &files(&["1_root_bundle.crt", "2_shop.crt", "3_shop.key"]),
        "Apache",
        true,
    );
    assert!(scan.pairs.is_empty());
    assert_eq!(
        messages(&scan),
        [
            "d/1_root_bundle.crt: no private key beside it (expected d/1_root.key)",
            "d/2_shop.crt: no private key beside it (expected d/2_shop.key)",
            "d/3_shop.key: a private key with no certificate beside it (expected 3_shop.crt, \
             3_shop.pem, 3_shop_bundle.crt); menshen does not guess which certificate it belongs \
             to: name the certificate after it, or move the key out of the certificates directory",
        ]
    );
}
