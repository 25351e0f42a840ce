//! A reload is a transaction: a change that would break serving is refused as a whole (the
//! serving certificates and backends stay, and `/status`, `POST /reload`, the counters and the
//! log say why); individually bad certificate files are left out and make it "partial".
//!
//! The watcher is off and the poll slow in these tests: each reload is the `POST /reload` the
//! test sends, so every counter is exact.

mod support;

use std::time::Duration;

use support::admin;
use support::config::Config;
use support::http::{get_plain, handshake_serial, tls_client};
use support::origins::{DnsResponder, Origin};
use support::pki::Ca;
use support::{eventually, free_port, Env};

/// `extra`, then shop.example.cn: `/` proxied to `origin`, `/hello` answered by menshen.
fn site(origin: &str, extra: &str) -> String {
    Config::new()
        .raw(extra)
        .upstream_at("origin", &[origin.to_owned()])
        .site("shop", &["shop.example.cn"])
        .proxy("/", "origin")
        .respond("/hello", "hello")
        .to_string()
}

struct Serving {
    env: Env,
    root: Ca,
    admin: u16,
    origin: Origin,
    proxy: support::Running,
}

impl Serving {
    /// shop.example.cn with certificate serial 01, its `/` proxied to an origin.
    async fn start() -> Serving {
        let (env, root) = Env::with_shop();
        let origin = Origin::start("origin").await;
        let admin = free_port();
        let serving = Serving {
            admin,
            proxy: {
                env.write(
                    "menshen.toml",
                    &Self::text(&env, admin, origin.port, None, ""),
                );
                env.start()
            },
            env,
            root,
            origin,
        };
        assert!(support::wait_port(admin, Duration::from_secs(10)));
        serving
    }

    fn body(env: &Env, admin: u16, origin: u16, extra: &str) -> String {
        site(
            &format!("127.0.0.1:{origin}"),
            &format!("{}{extra}", admin::section(env, admin)),
        )
    }

    /// The config, with the certificate directory replaced when `certificates` is given.
    fn text(env: &Env, admin: u16, origin: u16, certificates: Option<&str>, extra: &str) -> String {
        let mut text = env.config_text_reloaded_by_hand("", Self::body(env, admin, origin, extra));
        if let Some(dir) = certificates {
            text = text.replace(
                "certificates = [\"live\"]",
                &format!("certificates = [\"{dir}\"]"),
            );
        }
        text
    }

    fn rewrite(&self, certificates: Option<&str>, extra: &str) {
        let text = Self::text(&self.env, self.admin, self.origin.port, certificates, extra);
        self.env.write("menshen.toml", &text);
    }

    async fn serial(&self, sni: &str) -> std::io::Result<String> {
        handshake_serial(&tls_client(&[&self.root.pem]), self.env.https, sni).await
    }
}

fn errors(json: &serde_json::Value) -> String {
    json["errors"].as_array().map_or(String::new(), |a| {
        a.iter()
            .filter_map(|e| e.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mistyped_or_empty_certificate_directory_is_refused_and_the_certificates_keep_serving() {
    let s = Serving::start().await;
    assert_eq!(s.serial("shop.example.cn").await.expect("TLS"), "01");

    // The headline bug: a typo used to load zero certificates and break every handshake.
    s.rewrite(Some("lvie"), "");
    let (status, json) = admin::reload(s.admin).await;
    assert_eq!(status, 422, "{json}");
    assert_eq!(json["result"], "rejected");
    assert_eq!(json["trigger"], "API");
    let said = errors(&json);
    assert!(
        said.contains("tls.certificates") && said.contains("lvie") && said.contains("cannot read"),
        "names the key and the directory: {said}"
    );
    assert_eq!(
        s.serial("shop.example.cn")
            .await
            .expect("TLS after refusal"),
        "01"
    );

    // An existing but empty directory is refused too.
    std::fs::create_dir_all(s.env.path("empty")).expect("mkdir");
    s.rewrite(Some("empty"), "");
    let (status, json) = admin::reload(s.admin).await;
    assert_eq!(status, 422, "{json}");
    assert!(errors(&json).contains("empty"), "{json}");
    assert_eq!(s.serial("shop.example.cn").await.expect("TLS"), "01");

    assert_eq!(admin::reloads(s.admin, "rejected").await, Some(2.0));
    assert_eq!(admin::reloads(s.admin, "ok").await, Some(0.0));
    let status = admin::status(s.admin).await;
    assert_eq!(status["last_reload"]["result"], "rejected");
    let html = admin::get(s.admin, "/status").await.text();
    assert!(
        html.contains("refused: the previous configuration keeps serving"),
        "{html}"
    );
    assert!(
        s.proxy.log().contains("reload refused"),
        "{}",
        s.proxy.log()
    );

    // Fixed: applied, counted ok.
    s.rewrite(None, "");
    let (status, json) = admin::reload(s.admin).await;
    assert_eq!(
        (status, json["result"].as_str()),
        (200, Some("ok")),
        "{json}"
    );
    assert_eq!(admin::reloads(s.admin, "ok").await, Some(1.0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removing_a_served_certificate_is_refused_while_its_host_is_in_a_site() {
    let s = Serving::start().await;
    std::fs::remove_file(s.env.path("live/shop.crt")).expect("rm crt");
    std::fs::remove_file(s.env.path("live/shop.key")).expect("rm key");
    s.env.put_leaf("other", &s.root, "other.example.cn", 0x5);

    let (status, json) = admin::reload(s.admin).await;
    assert_eq!(status, 422, "{json}");
    let said = errors(&json);
    assert!(
        said.contains("host \"shop.example.cn\" would lose its certificate")
            && said.contains("live/shop.crt")
            && said.contains("remove the host from the site first"),
        "{said}"
    );
    assert_eq!(s.serial("shop.example.cn").await.expect("TLS"), "01");
    assert!(
        s.serial("other.example.cn").await.is_err(),
        "nothing of it applied"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_certificate_file_makes_the_reload_partial_not_ok() {
    let s = Serving::start().await;
    let unapproved = Ca::root("Unapproved Root");
    s.env.put_leaf("news", &unapproved, "news.example.cn", 0x7);
    s.env.put_leaf("shop", &s.root, "shop.example.cn", 0x2);

    let (status, json) = admin::reload(s.admin).await;
    assert_eq!(status, 200, "{json}");
    assert_eq!(json["result"], "partial");
    assert_eq!(json["applied"], true);
    assert!(errors(&json).contains("live/news.crt"), "{json}");
    assert!(errors(&json).contains("not an approved CA"), "{json}");
    assert_eq!(s.serial("shop.example.cn").await.expect("TLS"), "02");
    assert!(s.serial("news.example.cn").await.is_err());

    assert_eq!(admin::reloads(s.admin, "partial").await, Some(1.0));
    assert_eq!(admin::reloads(s.admin, "ok").await, Some(0.0));
    assert_eq!(
        admin::metric(s.admin, "menshen_rejected_certificate_files").await,
        Some(1.0)
    );
    let html = admin::get(s.admin, "/status").await.text();
    assert!(html.contains("data-result=\"partial\""), "{html}");
    assert!(html.contains("applied in part"), "{html}");
    assert!(
        !html.contains("<td class=\"result\">applied</td>"),
        "{html}"
    );
    assert!(html.contains("live/news.crt"), "{html}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unresolvable_backends_are_refused_and_a_changed_upstream_keeps_its_last_addresses() {
    let (env, _) = Env::with_shop();
    let origin = Origin::start("origin").await;
    let dns = DnsResponder::start("backend.gcp.internal", [127, 0, 0, 1].into()).await;
    let admin = free_port();
    let resolver = dns.addr;
    let config = |host: &str, extra: &str| {
        let dns_section = format!(
            "{}[dns]\nresolvers = [\"{}\"]\ntimeout = \"200ms\"\n{extra}",
            admin::section(&env, admin),
            resolver
        );
        env.config_text_reloaded_by_hand("", site(&format!("{host}:{}", origin.port), &dns_section))
    };
    env.write("menshen.toml", &config("backend.gcp.internal", ""));
    let (ok, out) = env.check();
    assert!(
        ok,
        "check resolves the backend through dns.resolvers: {out}"
    );
    let proxy = env.start();
    assert!(support::wait_port(admin, Duration::from_secs(10)));
    let served = || async {
        let r = get_plain(env.http, "shop.example.cn", "/").await.ok()?;
        (r.status == 200).then_some(())
    };
    assert!(
        eventually(Duration::from_secs(5), served).await.is_some(),
        "{}",
        proxy.log()
    );
    let healthy = "menshen_upstream_healthy{backend=\"127.0.0.1:";

    // A typo in the hostname: `check` fails, the reload is refused, requests still arrive.
    env.write("menshen.toml", &config("bakend.gcp.internal", ""));
    let (ok, out) = env.check();
    assert!(!ok, "check must fail: {out}");
    assert!(
        out.contains("bakend.gcp.internal") && out.contains(&resolver.to_string()),
        "{out}"
    );
    let (status, json) = admin::reload(admin).await;
    assert_eq!(status, 422, "{json}");
    assert!(
        errors(&json).contains("route \"/\" goes to upstream \"origin\""),
        "{json}"
    );
    assert!(
        served().await.is_some(),
        "the last good backends keep serving"
    );
    let metrics = admin::get(admin, "/metrics").await.text();
    assert!(metrics.contains(healthy), "{metrics}");

    // The resolver goes away and the upstream's section changes: its last good addresses serve.
    drop(dns);
    let changed = config("backend.gcp.internal", "").replace(
        "name = \"origin\"\n",
        "name = \"origin\"\nconnect_timeout = \"1500ms\"\n",
    );
    env.write("menshen.toml", &changed);
    let (status, json) = admin::reload(admin).await;
    assert_eq!(status, 200, "{json}");
    assert_eq!(json["result"], "partial", "{json}");
    assert!(
        errors(&json).contains("last good addresses keep serving (127.0.0.1)"),
        "{json}"
    );
    assert!(served().await.is_some(), "{}", proxy.log());
    let metrics = admin::get(admin, "/metrics").await.text();
    assert!(metrics.contains(healthy), "the series stays: {metrics}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn creating_the_missing_directory_applies_the_config_that_waited_for_it() {
    let (env, root) = Env::with_shop();
    env.write_config("", support::SHOP_SITE);
    let proxy = env.start();
    let client = tls_client(&[&root.pem]);
    let serial = || {
        let client = client.clone();
        async move {
            handshake_serial(&client, env.https, "shop.example.cn")
                .await
                .ok()
        }
    };
    assert_eq!(serial().await.as_deref(), Some("01"));

    // The config names a directory that does not exist yet: refused, file change by file change.
    let text = env.config_text("", support::SHOP_SITE);
    env.write("menshen.toml", &text.replace("[\"live\"]", "[\"next\"]"));
    let refused = eventually(Duration::from_secs(3), || async {
        proxy.log().contains("reload refused").then_some(())
    })
    .await;
    assert!(refused.is_some(), "{}", proxy.log());
    assert_eq!(serial().await.as_deref(), Some("01"));

    // The directory arrives (as a deploy that writes the config first would): applied.
    let next = env.path("next");
    std::fs::create_dir_all(&next).expect("mkdir next");
    let leaf = root.issue(&support::pki::LeafSpec::new(&["shop.example.cn"], 0x9));
    std::fs::write(next.join("shop.key"), &leaf.key_pem).expect("key");
    std::fs::write(next.join("shop.crt"), &leaf.pem).expect("crt");
    let applied = eventually(Duration::from_secs(3), || async {
        (serial().await.as_deref() == Some("09")).then_some(())
    })
    .await;
    assert!(applied.is_some(), "{}", proxy.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sighup_reload_is_shown_with_its_trigger_and_result() {
    let s = Serving::start().await;
    let before = admin::status(s.admin).await;
    assert_eq!(before["last_reload"]["trigger"], "start");
    assert_eq!(before["last_reload"]["result"], "ok");

    s.env.put_leaf("shop", &s.root, "shop.example.cn", 0x3);
    let pid = s.proxy.child.id().to_string();
    let hup = std::process::Command::new("kill")
        .args(["-HUP", &pid])
        .status();
    assert!(hup.is_ok_and(|st| st.success()));
    let shown = eventually(Duration::from_secs(3), || async {
        let last = admin::status(s.admin).await["last_reload"].clone();
        (last["trigger"] == "SIGHUP").then_some(last)
    })
    .await
    .expect("the SIGHUP reload is on /status.json");
    assert_eq!(shown["result"], "ok", "{shown}");
    assert!(
        shown["changes"][0]
            .as_str()
            .is_some_and(|c| c.contains("certificate replaced") && c.contains("01 -> 03")),
        "{shown}"
    );
    let html = admin::get(s.admin, "/status").await.text();
    assert!(
        html.contains("<td>SIGHUP</td>") && html.contains("data-result=\"ok\""),
        "{html}"
    );
    assert_eq!(s.serial("shop.example.cn").await.expect("TLS"), "03");
}
