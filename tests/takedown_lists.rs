//! Takedown lists from files, seen by a client: every spelling of a listed target gets 451 with
//! the case reference in the page, the access log and the per-rule counter; the list reloads
//! with the config, and a bad line refuses the reload, naming file and line, while the current
//! list keeps applying.

mod support;

use std::time::Duration;

use support::admin::{metric, reload};
use support::config::Config;
use support::http::{get_with, raw_plain, Response};
use support::{free_port, Env, SHOP_SITE};

const LIST: &str = "# court orders\n\
                    shop.example.cn/blocked (2026)京0105民初123号\n\
                    https://shop.example.cn/item/42.html?v=1 case-42\n";

async fn get(env: &Env, host: &str, path: &str) -> Response {
    raw_plain(env.http, &get_with(host, path, ""), None)
        .await
        .expect("request")
}

fn setup() -> (Env, u16) {
    let (env, _) = Env::with_shop();
    let admin = free_port();
    env.write("takedowns.txt", LIST);
    let config = Config::new()
        .admin(&env, admin)
        .access_log("logs/access.log")
        .raw("[policy]\ntakedown_files = [\"takedowns.txt\"]")
        .raw(SHOP_SITE);
    env.write_config("", config);
    (env, admin)
}

#[tokio::test]
async fn every_spelling_of_a_listed_target_is_taken_down_with_its_case() {
    let (env, admin) = setup();
    let _proxy = env.start();
    assert!(support::wait_port(admin, Duration::from_secs(10)));
    let case = "(2026)京0105民初123号";
    for (host, path) in [
        ("shop.example.cn", "/blocked"),
        ("shop.example.cn", "/blocked/sub/page"),
        ("shop.example.cn", "/%62locked"),
        ("shop.example.cn", "//blocked"),
        ("shop.example.cn", "/x/../blocked"),
        ("shop.example.cn", "/./blocked?q=1"),
        ("SHOP.Example.CN.", "/blocked"),
        ("shop.example.cn.:80", "/BLOCKED/../blocked"),
    ] {
        let r = get(&env, host, path).await;
        assert_eq!(r.status, 451, "{host} {path}");
        assert!(r.text().contains(&format!("Case: {case}")), "{}", r.text());
    }
    assert_eq!(
        get(&env, "shop.example.cn", "/blockedx").await.status,
        451,
        "a prefix"
    );
    assert_eq!(get(&env, "shop.example.cn", "/open").await.status, 200);
    // An exact URL: its query is part of it.
    assert_eq!(
        get(&env, "shop.example.cn", "/item/42.html?v=1")
            .await
            .status,
        451
    );
    assert_eq!(
        get(&env, "shop.example.cn", "/item/%34%32.html?v=1")
            .await
            .status,
        451
    );
    assert_eq!(
        get(&env, "shop.example.cn", "/item/42.html?v=2")
            .await
            .status,
        200
    );

    let series = format!("menshen_policy_denials_total{{rule=\"takedown:{case}\",site=\"shop\"}}");
    assert_eq!(metric(admin, &series).await, Some(9.0), "per-rule counter");
    assert_eq!(
        metric(
            admin,
            "menshen_policy_denials_total{rule=\"takedown:case-42\",site=\"shop\"}"
        )
        .await,
        Some(2.0)
    );
    let logged = support::eventually(Duration::from_secs(5), || async {
        let text = std::fs::read_to_string(env.path("logs/access.log")).ok()?;
        let n = text
            .lines()
            .filter(|l| l.contains(&format!("\"decision\":\"deny:takedown:{case}\"")))
            .count();
        (n == 9).then_some(())
    })
    .await;
    assert!(logged.is_some(), "every takedown logged with its case");
}

#[tokio::test]
async fn the_list_reloads_and_a_bad_line_keeps_the_current_one() {
    let (env, admin) = setup();
    let proxy = env.start();
    assert!(support::wait_port(admin, Duration::from_secs(10)));
    assert_eq!(get(&env, "shop.example.cn", "/later").await.status, 200);

    // A bad line: the reload is refused, naming file and line; the current list still applies
    // and the new good line does not yet.
    env.write(
        "takedowns.txt",
        &format!("{LIST}shop.example.cn/later case-7\nshop.example.cn/no-case\n"),
    );
    let (status, report) = reload(admin).await;
    assert_eq!(status, 422, "{report}");
    let errors = report["errors"].to_string();
    let file = env.path("takedowns.txt");
    assert!(
        errors.contains(&format!("{}:5: no case reference", file.display())),
        "{errors}"
    );
    assert_eq!(get(&env, "shop.example.cn", "/blocked").await.status, 451);
    assert_eq!(get(&env, "shop.example.cn", "/later").await.status, 200);

    // Fixed: the file change alone reloads it.
    env.write(
        "takedowns.txt",
        &format!("{LIST}shop.example.cn/later case-7\n"),
    );
    let applied = support::eventually(Duration::from_secs(10), || async {
        (get(&env, "shop.example.cn", "/later").await.status == 451).then_some(())
    })
    .await;
    assert!(applied.is_some(), "{}", proxy.log());
    assert!(get(&env, "shop.example.cn", "/later")
        .await
        .text()
        .contains("Case: case-7"));
}
