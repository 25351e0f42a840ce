//! What a reload changed, as the operator sees it: `POST /reload`'s answer, `/status`
//! (HTML and JSON) and the reload's log line name the sites, routes and upstreams that were
//! added, removed or changed, computed from the compiled model.
//!
//! The watcher is off and the poll slow: the one reload is the `POST /reload` the test sends.

mod support;

use std::time::Duration;

use serde_json::json;
use support::admin;
use support::config::Config;
use support::http::get_plain;
use support::{free_port, Env, SHOP_SITE};

/// The shop site, with a `/hello` route that answers `hello`.
fn shop(hello: &str) -> Config {
    Config::new().raw(SHOP_SITE).respond("/hello", hello)
}

/// A second site, blog.example.cn.
fn blog() -> Config {
    Config::new()
        .site_filed("blog", "京ICP备16063439号-2", &["blog.example.cn"])
        .respond("/", "ok")
}

/// The config with an admin listener and `body`, reloaded only by `POST /reload`.
fn config(env: &Env, admin_port: u16, body: impl std::fmt::Display) -> String {
    let body = Config::new().admin(env, admin_port).raw(&body.to_string());
    env.config_text_reloaded_by_hand("", body)
}

fn diff_of(report: &serde_json::Value) -> serde_json::Value {
    report["diff"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_names_what_it_added_removed_and_changed() {
    let (env, _) = Env::with_shop();
    let admin_port = free_port();
    let v1 = shop("v1").upstream("spare", &[free_port()]);
    env.write("menshen.toml", &config(&env, admin_port, v1));
    let proxy = env.start();
    assert!(support::wait_port(admin_port, Duration::from_secs(10)));

    // One site's route answers differently, a site is added, an upstream is removed.
    let v2 = format!("{}{}", shop("v2"), blog());
    env.write("menshen.toml", &config(&env, admin_port, v2));
    let (status, answer) = admin::reload(admin_port).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["result"], "ok", "{answer}");
    let nothing = json!({"added": [], "removed": [], "changed": []});
    let expected = json!({
        "listeners": nothing,
        "sites": {"added": ["blog"], "removed": [], "changed": ["shop"]},
        "routes": {"added": [], "removed": [], "changed": ["shop /hello"]},
        "upstreams": {"added": [], "removed": ["spare"], "changed": []},
        "rules": nothing,
        "certificates": nothing,
    });
    assert_eq!(diff_of(&answer), expected, "POST /reload: {answer}");

    // What the diff says is what serves.
    let hello = get_plain(env.http, "shop.example.cn", "/hello")
        .await
        .expect("shop");
    assert_eq!(hello.text(), "v2");
    let blog = get_plain(env.http, "blog.example.cn", "/")
        .await
        .expect("blog");
    assert_eq!(blog.text(), "ok", "the added site serves");

    let status = admin::status(admin_port).await;
    assert_eq!(
        diff_of(&status["last_reload"]),
        expected,
        "/status.json: {status}"
    );
    let page = admin::get(admin_port, "/status").await.text();
    for line in [
        "site added: blog",
        "site changed: shop",
        "route changed: shop /hello",
        "upstream removed: spare",
    ] {
        assert!(page.contains(line), "/status shows {line:?}: {page}");
    }

    let log = proxy.log();
    let reload_line = log
        .lines()
        .find(|l| l.contains("trigger=\"API\"") && l.contains("changes="))
        .unwrap_or_else(|| panic!("a reload log line with its changes: {log}"));
    for said in [
        "site added: blog",
        "route changed: shop /hello",
        "upstream removed: spare",
    ] {
        assert!(reload_line.contains(said), "{said:?} in {reload_line}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_of_the_same_files_changes_nothing() {
    let (env, _) = Env::with_shop();
    let admin_port = free_port();
    env.write("menshen.toml", &config(&env, admin_port, shop("v1")));
    let proxy = env.start();
    assert!(support::wait_port(admin_port, Duration::from_secs(10)));

    let (status, answer) = admin::reload(admin_port).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["changes"], json!([]), "{answer}");
    assert_eq!(answer["diff"]["sites"]["changed"], json!([]), "{answer}");
    assert!(
        proxy.log().contains("changes=no changes"),
        "the log says so: {}",
        proxy.log()
    );
}
