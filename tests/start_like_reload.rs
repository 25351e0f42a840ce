//! Start judges like a reload: one bad certificate file among good ones is left out and reported
//! (log, metric, `/status`, a failing `menshen check`) while the rest serve, so a rescheduled pod
//! does not crash-loop beside running ones. `tls.strict = true` restores the refusal. The
//! reload counters and the last-reload time exist from the first scrape.

mod support;

use std::time::Duration;

use support::admin;
use support::http::{handshake_serial, tls_client};
use support::pki::Ca;
use support::{free_port, Env, SHOP_SITE};

/// shop.example.cn under the approved root, news.example.cn under an unapproved one.
fn one_good_one_bad(tls_extra: &str) -> (Env, Ca, u16) {
    let (env, root) = Env::with_shop();
    env.put_leaf("news", &Ca::root("Unapproved Root"), "news.example.cn", 0x2);
    let admin = free_port();
    let body = format!("{}{SHOP_SITE}", admin::section(&env, admin));
    env.write_config(tls_extra, &body);
    (env, root, admin)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_certificate_file_is_left_out_at_start_and_reported() {
    let (env, root, admin) = one_good_one_bad("");
    let (ok, out) = env.check();
    assert!(!ok, "check fails on a file start would leave out: {out}");
    assert!(
        out.contains("live/news.crt")
            && out.contains("not an approved CA")
            && out.contains("menshen would start without what they name"),
        "{out}"
    );

    let proxy = env.start();
    assert!(support::wait_port(admin, Duration::from_secs(10)));
    let client = tls_client(&[&root.pem]);
    assert_eq!(
        handshake_serial(&client, env.https, "shop.example.cn")
            .await
            .expect("the good certificate serves"),
        "01"
    );
    assert!(handshake_serial(&client, env.https, "news.example.cn")
        .await
        .is_err());
    let log = proxy.log();
    assert!(
        log.contains("certificate rejected, it is not served") && log.contains("live/news.crt"),
        "{log}"
    );

    for result in ["ok", "partial", "rejected"] {
        assert_eq!(
            admin::reloads(admin, result).await,
            Some(0.0),
            "{result} exists from the first scrape"
        );
    }
    let started = admin::metric(admin, "menshen_last_reload_timestamp_seconds")
        .await
        .expect("timestamp");
    assert!(started > 1.7e9, "set at start: {started}");
    assert_eq!(
        admin::metric(admin, "menshen_rejected_certificate_files").await,
        Some(1.0)
    );
    let status = admin::status(admin).await;
    let last = &status["last_reload"];
    assert_eq!(last["trigger"], "start");
    assert_eq!(last["result"], "partial");
    assert!(last["errors"][0]
        .as_str()
        .is_some_and(|e| e.contains("live/news.crt")));
    assert_eq!(
        status["rejected_certificates"].as_array().map(Vec::len),
        Some(1)
    );
    let html = admin::get(admin, "/status").await.text();
    assert!(
        html.contains("applied in part") && html.contains("live/news.crt"),
        "{html}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strict_tls_refuses_to_start_with_any_rejected_file() {
    let (env, _root, _admin) = one_good_one_bad("strict = true");
    let (ok, out) = env.check();
    assert!(!ok);
    assert!(
        out.contains("tls.strict = true") && out.contains("live/news.crt"),
        "{out}"
    );
    let mut proxy = env.spawn();
    assert_eq!(proxy.wait_exit(Duration::from_secs(10)), Some(1));
    let log = proxy.log();
    assert!(
        log.contains("tls.strict = true") && log.contains("menshen did not start"),
        "{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_certificate_directory_stops_the_start_naming_it() {
    let (env, _root) = Env::with_approved_root("Approved Root");
    env.write_config("", SHOP_SITE);
    let text = std::fs::read_to_string(env.path("menshen.toml")).expect("config");
    env.write(
        "menshen.toml",
        &text.replace("certificates = [\"live\"]", "certificates = [\"lvie\"]"),
    );
    let (ok, out) = env.check();
    assert!(!ok);
    assert!(
        out.contains("tls.certificates") && out.contains("lvie"),
        "{out}"
    );
    let mut proxy = env.spawn();
    assert_eq!(proxy.wait_exit(Duration::from_secs(10)), Some(1));
    assert!(proxy.log().contains("lvie"), "{}", proxy.log());
}
