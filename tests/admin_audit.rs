//! The admin audit log beside the access log: every admin action (a reload over the admin API,
//! refused or applied, by SIGHUP, a shutdown) with its time, source and outcome, chained and
//! verified like the access log.

mod support;

use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use support::admin::reload;
use support::config::Config;
use support::http::raw_plain;
use support::{free_port, Env, SHOP_SITE};

fn audit_lines(env: &Env) -> Vec<Value> {
    std::fs::read_to_string(env.path("logs/admin-audit.log"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .filter(|v: &Value| v.get("action").is_some())
        .collect()
}

#[tokio::test]
async fn admin_actions_are_recorded_with_source_and_outcome() {
    let (env, _) = Env::with_shop();
    let admin = free_port();
    let config = Config::new()
        .admin(&env, admin)
        .access_log("logs/access.log")
        .raw(SHOP_SITE);
    env.write_config("", config);
    let mut proxy = env.start();
    assert!(support::wait_port(admin, Duration::from_secs(10)));

    let wrong = b"POST /reload HTTP/1.1\r\nHost: admin\r\nAuthorization: Bearer nope\r\n\r\n";
    let r = raw_plain(admin, wrong, None).await.expect("POST /reload");
    assert_eq!(r.status, 403);
    let (status, _) = reload(admin).await;
    assert_eq!(status, 200);
    let hup = Command::new("kill")
        .args(["-HUP", &proxy.child.id().to_string()])
        .status()
        .expect("kill -HUP");
    assert!(hup.success());
    let recorded = support::eventually(Duration::from_secs(10), || async {
        let lines = audit_lines(&env);
        (lines.len() >= 3).then_some(lines)
    })
    .await
    .unwrap_or_else(|| {
        panic!(
            "three audit lines: {:?}\n{}",
            audit_lines(&env),
            proxy.log()
        )
    });
    let refused = &recorded[0];
    assert_eq!(refused["action"], "reload");
    assert_eq!(refused["outcome"], "refused");
    assert!(
        refused["source"]
            .as_str()
            .is_some_and(|s| s.starts_with("127.0.0.1:")),
        "{refused}"
    );
    assert!(refused["detail"]
        .as_str()
        .is_some_and(|d| d.contains("wrong reload token")));
    assert_eq!(recorded[1]["action"], "reload");
    assert_eq!(recorded[1]["outcome"], "ok");
    assert_eq!(recorded[2]["source"], "SIGHUP");
    assert_eq!(recorded[2]["outcome"], "ok");
    for line in &recorded {
        assert_eq!(line["ts"].as_str().map(str::len), Some(29), "{line}");
    }

    // SIGTERM: the drain and the exit are recorded too, and the whole directory verifies.
    let term = Command::new("kill")
        .args(["-TERM", &proxy.child.id().to_string()])
        .status()
        .expect("kill -TERM");
    assert!(term.success());
    assert_eq!(
        proxy.wait_exit(Duration::from_secs(20)),
        Some(0),
        "{}",
        proxy.log()
    );
    let actions: Vec<String> = audit_lines(&env)
        .iter()
        .map(|l| format!("{} {}", l["action"], l["outcome"]))
        .collect();
    assert!(
        actions.ends_with(&[
            "\"shutdown\" \"started\"".into(),
            "\"shutdown\" \"ok\"".into()
        ]),
        "{actions:?}"
    );
    let out = Command::new(env!("CARGO_BIN_EXE_menshen"))
        .args(["logs", "verify"])
        .arg(env.path("logs"))
        .arg("--config")
        .arg(env.path("menshen.toml"))
        .output()
        .expect("logs verify");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains(": ok: 2 file(s)"), "{text}");
}
