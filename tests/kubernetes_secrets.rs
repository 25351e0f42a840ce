//! Certificates mounted the way Kubernetes mounts them: a TLS Secret or cert-manager volume
//! (`tls.crt`, `tls.key`, `ca.crt`, files linked through `..data`), one Secret per
//! subdirectory of a certificates directory, and the kubelet's atomic `..data` swap.

mod support;

use std::path::Path;
use std::time::Duration;

use support::http::{get_tls, handshake_serial, tls_client};
use support::pki::{Ca, LeafSpec};
use support::{eventually, Env};

/// Writes one version of a Secret volume into `dir` as the kubelet does: the files in a
/// timestamped directory, `..data` linking to it, and each file a link through `..data`.
fn mount_secret(dir: &Path, version: &str, files: &[(&str, &str)]) {
    std::fs::create_dir_all(dir.join(version)).expect("mkdir version");
    for (name, content) in files {
        std::fs::write(dir.join(version).join(name), content).expect("write secret file");
    }
    let tmp = dir.join("..data_tmp");
    std::os::unix::fs::symlink(version, &tmp).expect("link ..data_tmp");
    std::fs::rename(&tmp, dir.join("..data")).expect("swap ..data");
    for (name, _) in files {
        let link = dir.join(name);
        if link.symlink_metadata().is_err() {
            std::os::unix::fs::symlink(format!("..data/{name}"), link).expect("link file");
        }
    }
}

/// A leaf for `host` issued by an intermediate of `root`, as cert-manager writes it: the leaf
/// alone in `tls.crt`, the issuing intermediate in `ca.crt`.
fn cert_manager_files(root: &Ca, host: &str, serial: u64) -> [(&'static str, String); 3] {
    let inter = root.intermediate("Issuing CA");
    let leaf = inter.issue(&LeafSpec::new(&[host], serial));
    [
        ("tls.crt", leaf.pem),
        ("tls.key", leaf.key_pem),
        ("ca.crt", inter.pem),
    ]
}

fn borrowed<'a>(files: &'a [(&'static str, String); 3]) -> Vec<(&'static str, &'a str)> {
    files.iter().map(|(n, c)| (*n, c.as_str())).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_secret_with_ca_crt_serves_with_the_intermediate_appended() {
    let (env, root) = Env::with_approved_root("Approved Root");
    let files = cert_manager_files(&root, "shop.example.cn", 0x31);
    mount_secret(&env.path("live"), "..2026_12_01", &borrowed(&files));
    env.write_config("", support::SHOP_SITE);

    let (ok, out) = env.check();
    assert!(
        ok,
        "ca.crt is a chain hint, not a certificate without a key: {out}"
    );
    let certs = env.certs();
    assert!(!certs.contains("rejected"), "{certs}");
    let proxy = env.start();
    // The client trusts the root only: the handshake needs the intermediate from ca.crt.
    let client = tls_client(&[&root.pem]);
    let resp = get_tls(
        &client,
        env.https,
        "shop.example.cn",
        "shop.example.cn",
        "/",
    )
    .await
    .unwrap_or_else(|e| panic!("handshake with the appended chain: {e}\n{}", proxy.log()));
    assert_eq!((resp.status, resp.serial.as_deref()), (200, Some("31")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_secrets_in_subdirectories_serve_and_swap_one_at_a_time() {
    let (env, root) = Env::with_approved_root("Approved Root");
    let live = env.path("live");
    let shop = cert_manager_files(&root, "shop.example.cn", 0x41);
    let api = cert_manager_files(&root, "api.example.cn", 0x42);
    mount_secret(&live.join("shop"), "..2026_12_01", &borrowed(&shop));
    mount_secret(&live.join("api"), "..2026_12_01", &borrowed(&api));
    let site = support::SHOP_SITE.replace(
        "hosts = [\"shop.example.cn\"]",
        "hosts = [\"shop.example.cn\", \"api.example.cn\"]",
    );
    // A Secret's pair is named after its directory.
    env.write_config("default_certificate = \"shop\"", &site);
    let (ok, out) = env.check();
    assert!(ok, "{out}");
    let proxy = env.start();
    let client = tls_client(&[&root.pem]);
    for (sni, serial) in [("shop.example.cn", "41"), ("api.example.cn", "42")] {
        let got = handshake_serial(&client, env.https, sni).await;
        assert_eq!(got.ok().as_deref(), Some(serial), "{sni}: {}", proxy.log());
    }

    // cert-manager renews api: the kubelet swaps its `..data`; shop is untouched.
    let renewed = cert_manager_files(&root, "api.example.cn", 0x43);
    mount_secret(&live.join("api"), "..2026_12_02", &borrowed(&renewed));
    let swapped = eventually(Duration::from_secs(3), || {
        let client = client.clone();
        async move {
            let got = handshake_serial(&client, env.https, "api.example.cn").await;
            (got.ok().as_deref() == Some("43")).then_some(())
        }
    })
    .await;
    assert!(swapped.is_some(), "renewal served: {}", proxy.log());
    assert_eq!(
        handshake_serial(&client, env.https, "shop.example.cn")
            .await
            .expect("shop"),
        "41"
    );
}
