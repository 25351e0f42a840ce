//! Hot reload: new certificates within seconds, bad ones never replace good ones, Kubernetes
//! `..data` swaps, broken configs, and transfers in flight that survive it all.

mod support;

use std::time::Duration;

use support::config::Config;
use support::http::{get_plain, get_tls, handshake_serial, tls_client};
use support::origins::{download_byte, Origin, DOWNLOAD_BYTES};
use support::pki::{Ca, LeafSpec};
use support::{eventually, Env};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// shop.example.cn and api.example.cn: `/` proxied to the origin, `/hello` answered `body`.
fn site(origin_port: u16, body: &str) -> String {
    Config::new()
        .upstream("origin", &[origin_port])
        .site("shop", &["shop.example.cn", "api.example.cn"])
        .proxy("/", "origin")
        .respond("/hello", body)
        .to_string()
}

/// A proxy serving `shop.example.cn` (certificate serial 01) and the `v1` config.
async fn serving_v1() -> (Env, Ca, Origin, support::Running) {
    let (env, root) = Env::with_shop();
    let origin = Origin::start("origin").await;
    env.write_config("", site(origin.port, "v1"));
    let proxy = env.start();
    (env, root, origin, proxy)
}

/// Whether `GET shop.example.cn/hello` answers `want` within 3 s.
async fn hello_becomes(env: &Env, want: &str) -> bool {
    eventually(Duration::from_secs(3), || async {
        let r = get_plain(env.http, "shop.example.cn", "/hello")
            .await
            .ok()?;
        (r.text() == want).then_some(())
    })
    .await
    .is_some()
}

async fn serial_becomes(env: &Env, root: &Ca, sni: &str, want: &str) -> bool {
    let client = tls_client(&[&root.pem]);
    eventually(Duration::from_secs(2), || {
        let client = client.clone();
        async move {
            let got = handshake_serial(&client, env.https, sni).await.ok()?;
            (got == want).then_some(())
        }
    })
    .await
    .is_some()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_approved_certificate_serves_and_unapproved_one_never_does() {
    let (env, root, _origin, proxy) = serving_v1().await;
    assert!(serial_becomes(&env, &root, "shop.example.cn", "01").await);

    // A renewed certificate dropped in place is served within 2 seconds.
    env.put_leaf("shop", &root, "shop.example.cn", 0x2);
    assert!(
        serial_becomes(&env, &root, "shop.example.cn", "02").await,
        "new certificate not served within 2s:\n{}",
        proxy.log()
    );

    // An unapproved replacement is rejected; the last good version keeps serving, while a
    // good new pair added in the same change still applies.
    let other = Ca::root("Unapproved Root");
    env.put_leaf("shop", &other, "shop.example.cn", 0x3);
    env.put_leaf("api", &root, "api.example.cn", 0x4);
    assert!(serial_becomes(&env, &root, "api.example.cn", "04").await);
    assert!(serial_becomes(&env, &root, "shop.example.cn", "02").await);
    let log = proxy.log();
    assert!(
        log.contains("certificate rejected, its last good version keeps serving")
            && log.contains("which is not an approved CA"),
        "rejection logged: {log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubernetes_data_symlink_swap_is_picked_up() {
    let (env, root) = Env::with_approved_root("Approved Root");
    // The layout a Secret volume has: files are links through `..data` to a timestamped dir.
    let live = env.path("live");
    let version = |name: &str, serial: u64| {
        let dir = live.join(name);
        std::fs::create_dir_all(&dir).expect("mkdir version");
        let leaf = root.issue(&LeafSpec::new(&["shop.example.cn"], serial));
        std::fs::write(dir.join("tls.crt"), &leaf.pem).expect("write crt");
        std::fs::write(dir.join("tls.key"), &leaf.key_pem).expect("write key");
    };
    version("..2026_11_01", 0x11);
    std::os::unix::fs::symlink("..2026_11_01", live.join("..data")).expect("link ..data");
    for f in ["tls.crt", "tls.key"] {
        std::os::unix::fs::symlink(format!("..data/{f}"), live.join(f)).expect("link file");
    }
    let origin = Origin::start("origin").await;
    env.write_config("", site(origin.port, "v1"));
    let _proxy = env.start();
    assert!(serial_becomes(&env, &root, "shop.example.cn", "11").await);

    // The kubelet's atomic update: new dir, new link, rename over `..data`.
    version("..2026_11_02", 0x12);
    std::os::unix::fs::symlink("..2026_11_02", live.join("..data_tmp")).expect("link tmp");
    std::fs::rename(live.join("..data_tmp"), live.join("..data")).expect("swap ..data");
    assert!(serial_becomes(&env, &root, "shop.example.cn", "12").await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_config_keeps_the_serving_one() {
    let (env, _root, origin, proxy) = serving_v1().await;

    env.write(
        "menshen.toml",
        &env.config_text("", "[[sites]]\nname = 1\nbogus = true\n"),
    );
    let logged = eventually(Duration::from_secs(3), || async {
        proxy.log().contains("reload refused").then_some(())
    })
    .await;
    assert!(logged.is_some(), "refusal logged: {}", proxy.log());
    let resp = get_plain(env.http, "shop.example.cn", "/hello")
        .await
        .expect("GET");
    assert_eq!(resp.text(), "v1", "old config still serves");

    env.write_config("", site(origin.port, "v2"));
    assert!(
        hello_becomes(&env, "v2").await,
        "fixed config applies: {}",
        proxy.log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn download_in_flight_survives_certificate_and_config_reloads() {
    let (env, root, origin, proxy) = serving_v1().await;

    let client = tls_client(&[&root.pem]);
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", env.https))
        .await
        .expect("connect");
    let name = rustls::pki_types::ServerName::try_from("shop.example.cn").expect("name");
    let mut tls = client.connect(name, tcp).await.expect("handshake");
    let req = "GET /download HTTP/1.1\r\nHost: shop.example.cn\r\nConnection: close\r\n\r\n";
    tls.write_all(req.as_bytes()).await.expect("send");
    let mut raw = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    // Read a first part, then reload certificates and config while the rest streams.
    while raw.len() < 256 * 1024 {
        let n = tls.read(&mut buf).await.expect("read first part");
        assert!(n > 0, "closed early");
        raw.extend_from_slice(&buf[..n]);
    }
    env.put_leaf("shop", &root, "shop.example.cn", 0x2);
    env.write_config("", site(origin.port, "v2"));
    assert!(serial_becomes(&env, &root, "shop.example.cn", "02").await);
    let v2 = get_tls(
        &client,
        env.https,
        "shop.example.cn",
        "shop.example.cn",
        "/hello",
    )
    .await
    .expect("new request");
    assert_eq!(v2.text(), "v2", "config reload applied during the download");

    loop {
        match tls.read(&mut buf).await {
            Ok(0) => break,
            Ok(n) => raw.extend_from_slice(&buf[..n]),
            Err(e) if raw.len() > DOWNLOAD_BYTES => {
                let _ = e; // no close_notify after a complete body is fine
                break;
            }
            Err(e) => panic!("download broken by reload: {e}\n{}", proxy.log()),
        }
    }
    let resp = support::http::parse_response(&raw).expect("response");
    assert_eq!(resp.status, 200);
    assert_eq!(resp.body.len(), DOWNLOAD_BYTES, "whole body arrived");
    assert!(resp
        .body
        .iter()
        .enumerate()
        .all(|(i, b)| *b == download_byte(i)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_and_listener_changes_wait_for_a_restart() {
    let (env, _) = Env::with_shop();
    let origin = Origin::start("origin").await;
    // No watcher and a slow poll: only SIGHUP can make this reload quick.
    let quiet = "[log]\nformat = \"json\"\n";
    let body = |v: &str| format!("{quiet}{}", site(origin.port, v));
    env.write(
        "menshen.toml",
        &env.config_text_reloaded_by_hand("", body("v1")),
    );
    let proxy = env.start();
    let text = |r: support::http::Response| r.text();
    assert_eq!(
        text(
            get_plain(env.http, "shop.example.cn", "/hello")
                .await
                .expect("GET")
        ),
        "v1"
    );

    // A new listener address in the same change: applied config, kept listeners, logged.
    let moved = env
        .config_text_reloaded_by_hand("", body("v2"))
        .replace(&format!("127.0.0.1:{}", env.http), "127.0.0.1:1");
    env.write("menshen.toml", &moved);
    let pid = proxy.child.id().to_string();
    std::process::Command::new("kill")
        .args(["-HUP", &pid])
        .status()
        .expect("kill -HUP");
    assert!(
        hello_becomes(&env, "v2").await,
        "SIGHUP reloaded: {}",
        proxy.log()
    );
    let log = proxy.log();
    assert!(
        log.contains("site changed: shop"),
        "the reload says what changed: {log}"
    );
    assert!(
        log.contains("listener changes take effect only after a restart"),
        "{log}"
    );
    // The process log is JSON, one object per line.
    let lines: Vec<&str> = log.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(lines.len() > 3);
    for line in lines {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(
            v.get("level").is_some() && v.get("timestamp").is_some(),
            "{line}"
        );
    }
}

/// Withdrawing an approved root stops its certificates at once: no last-good fallback survives
/// a root that is no longer approved.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn withdrawing_a_root_stops_its_certificates() {
    let (env, keep) = Env::with_approved_root("Kept Root");
    let withdrawn = Ca::root("Withdrawn Root");
    std::fs::create_dir_all(env.path("approved-extra")).expect("mkdir");
    env.write("approved-extra/withdrawn.pem", &withdrawn.pem);
    env.put_leaf("shop", &withdrawn, "shop.example.cn", 0x21);
    env.put_leaf("news", &keep, "news.example.cn", 0x22);
    let origin = Origin::start("origin").await;
    let with_both = env.config_text("", site(origin.port, "v1")).replace(
        "approved_cas = [\"approved\"]",
        "approved_cas = [\"approved\", \"approved-extra\"]",
    );
    env.write("menshen.toml", &with_both);
    let proxy = env.start();
    let both = tls_client(&[&keep.pem, &withdrawn.pem]);
    assert_eq!(
        handshake_serial(&both, env.https, "shop.example.cn")
            .await
            .expect("shop"),
        "21"
    );

    env.write_config("", site(origin.port, "v1"));
    let stopped = eventually(Duration::from_secs(3), || {
        let both = both.clone();
        let port = env.https;
        async move {
            handshake_serial(&both, port, "shop.example.cn")
                .await
                .is_err()
                .then_some(())
        }
    })
    .await;
    assert!(
        stopped.is_some(),
        "shop is no longer served: {}",
        proxy.log()
    );
    assert_eq!(
        handshake_serial(&both, env.https, "news.example.cn")
            .await
            .expect("news"),
        "22"
    );
    assert!(
        proxy
            .log()
            .contains("certificate rejected, it is not served"),
        "{}",
        proxy.log()
    );
}
