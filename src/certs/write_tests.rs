//! Every way a pair is put in place leaves the folder with whole pairs only.

use super::*;

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_default()
}

fn visible(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("dir")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with('.'))
        .collect();
    names.sort();
    names
}

#[test]
fn a_new_pair_then_a_renewal_swap_one_symlink_and_keep_one_previous_version() {
    let dir = tempfile::tempdir().expect("tempdir");
    let live = dir.path();
    for (serial, chain) in [("01", "chain 1"), ("02", "chain 2"), ("03", "chain 3")] {
        let (crt, warnings) =
            install(live, "shop", serial, chain, &format!("key {serial}"), None).expect("install");
        assert!(warnings.is_empty());
        assert_eq!(crt, live.join("shop/shop.crt"));
        assert_eq!(read(&crt), chain);
        assert_eq!(read(&live.join("shop/shop.key")), format!("key {serial}"));
    }
    assert!(live
        .join("shop")
        .symlink_metadata()
        .expect("link")
        .is_symlink());
    assert_eq!(visible(live), ["shop"]);
    let versions: Vec<String> = std::fs::read_dir(live.join(VERSIONS))
        .expect("versions")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        versions.len(),
        2,
        "this version and the previous: {versions:?}"
    );
    assert!(versions.iter().any(|v| v.starts_with("shop.03.")));
    assert!(versions.iter().any(|v| v.starts_with("shop.02.")));
    let mode = std::fs::metadata(live.join("shop/shop.key"))
        .map(|m| std::os::unix::fs::PermissionsExt::mode(&m.permissions()))
        .expect("mode");
    assert_eq!(mode & 0o777, 0o600);
}

#[test]
fn a_flat_pair_and_a_folder_of_its_own_are_moved_aside() {
    let dir = tempfile::tempdir().expect("tempdir");
    let live = dir.path();
    std::fs::write(live.join("shop.crt"), "old chain").expect("write");
    std::fs::write(live.join("shop.key"), "old key").expect("write");
    let old = (live.join("shop.crt"), live.join("shop.key"));
    let (crt, warnings) = install(live, "shop", "02", "new", "key", Some(old)).expect("install");
    assert!(warnings.is_empty(), "{warnings:?}");
    assert_eq!(read(&crt), "new");
    assert_eq!(visible(live), ["shop"], "the flat pair moved aside");

    // A certbot folder named like the pair: the new pair takes its place.
    let other = tempfile::tempdir().expect("tempdir");
    let live = other.path();
    std::fs::create_dir(live.join("api")).expect("mkdir");
    std::fs::write(live.join("api/fullchain.pem"), "old").expect("write");
    std::fs::write(live.join("api/privkey.pem"), "old key").expect("write");
    let old = (live.join("api/fullchain.pem"), live.join("api/privkey.pem"));
    let (crt, _) = install(live, "api", "05", "new", "key", Some(old)).expect("install");
    assert_eq!(read(&crt), "new");
    assert_eq!(visible(live), ["api"]);
    assert!(!live.join("api/fullchain.pem").exists());
    let aside = std::fs::read_dir(live.join(VERSIONS))
        .expect("versions")
        .flatten()
        .any(|e| e.file_name().to_string_lossy().starts_with("replaced-api."));
    assert!(aside, "the old folder is kept aside");

    // A file where the pair's folder goes is refused, naming it.
    std::fs::write(live.join("www"), "x").expect("write");
    let e = install(live, "www", "01", "c", "k", None).expect_err("refused");
    assert!(e.to_string().ends_with(
        "www: is a file where the pair's folder goes: move it away, or install under another \
         --name"
    ));
}

/// A loader reading the pair while installs swap it never sees a certificate with another
/// certificate's key.
#[test]
fn a_loader_racing_the_installs_never_sees_a_key_mismatch() {
    use crate::tls::cert::{load_pair, unix_now};
    use crate::tls::layout::PairFiles;
    use crate::tls::{ApprovedRoots, TlsError};
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};

    let mut ca = CertificateParams::new(Vec::<String>::new()).expect("params");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(rcgen::DnType::CommonName, "Race Root");
    let ca_key = KeyPair::generate().expect("key");
    let ca_cert = ca.self_signed(&ca_key).expect("root");
    let mut roots = ApprovedRoots::default();
    roots
        .add_der(Path::new("root.pem"), ca_cert.der())
        .expect("root");
    let issuer = Issuer::from_params(&ca, &ca_key);
    let pairs: Vec<(String, String)> = (0..20)
        .map(|_| {
            let key = KeyPair::generate().expect("key");
            let mut params = CertificateParams::new(vec!["shop.example.cn".to_owned()]).expect("p");
            params
                .distinguished_name
                .push(rcgen::DnType::CommonName, "shop.example.cn");
            let cert = params.signed_by(&key, &issuer).expect("leaf");
            (cert.pem(), key.serialize_pem())
        })
        .collect();
    let dir = tempfile::tempdir().expect("tempdir");
    let live = dir.path().to_path_buf();
    install(&live, "shop", "00", &pairs[0].0, &pairs[0].1, None).expect("first");
    let files = PairFiles {
        name: "shop".into(),
        crt: live.join("shop/shop.crt"),
        key: live.join("shop/shop.key"),
        note: None,
    };
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reader = {
        let done = done.clone();
        std::thread::spawn(move || {
            let mut loads = 0;
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                match load_pair(&files, &[], &roots, unix_now(), None) {
                    Ok(_) => loads += 1,
                    Err(TlsError::Io { .. }) => {}
                    Err(other) => panic!("the loader saw {other}"),
                }
            }
            loads
        })
    };
    for (i, (chain, key)) in pairs.iter().enumerate().skip(1) {
        install(&live, "shop", &format!("{i:02}"), chain, key, None).expect("install");
    }
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    let loads = reader.join().expect("the reader saw whole pairs only");
    assert!(loads > 0);
}
