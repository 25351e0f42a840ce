//! The admin listener, metrics, the status page in a real browser, and graceful shutdown.

mod support;

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use support::admin;
use support::config::Config;
use support::http::get_plain;
use support::origins::Origin;
use support::{eventually, free_port, Env};

struct Setup {
    env: Env,
    admin: u16,
    proxy: support::Running,
    origin: Origin,
}

/// `server_extra`: more lines for the `[server]` section.
async fn setup(server_extra: &str) -> Setup {
    let (env, _) = Env::with_shop();
    let origin = Origin::start("origin").await;
    let admin = free_port();
    let config = Config::new()
        .admin(&env, admin)
        .raw(&format!("[server]\ngrace_period = \"3s\"\n{server_extra}"))
        .access_log("logs/access.log")
        .upstream("origin", &[origin.port])
        .keys("[upstreams.health_check]\nkind = \"tcp\"\ninterval = \"200ms\"")
        .site("shop", &["shop.example.cn"])
        .proxy("/", "origin");
    env.write_config("", config);
    let proxy = env.start();
    assert!(support::wait_port(admin, Duration::from_secs(10)));
    Setup {
        env,
        admin,
        proxy,
        origin,
    }
}

async fn admin_req(port: u16, raw: &str) -> support::http::Response {
    support::http::raw_plain(port, raw.as_bytes(), None)
        .await
        .expect("admin request")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_readiness_and_metrics() {
    let s = setup("").await;
    assert_eq!(admin::get(s.admin, "/healthz").await.status, 200);
    let ready = eventually(Duration::from_secs(5), || async {
        (admin::get(s.admin, "/readyz").await.status == 200).then_some(())
    })
    .await;
    assert!(ready.is_some(), "ready once listeners accept");

    assert_eq!(
        get_plain(s.env.http, "shop.example.cn", "/a")
            .await
            .expect("GET")
            .status,
        200
    );
    assert_eq!(
        get_plain(s.env.http, "nope.example", "/")
            .await
            .expect("GET")
            .status,
        403
    );
    // Once a health check passed, the gauge says so.
    let metrics = eventually(Duration::from_secs(10), || async {
        let text = admin::get(s.admin, "/metrics").await.text();
        text.contains(",upstream=\"origin\"} 1").then_some(text)
    })
    .await
    .expect("a health check passed: menshen_upstream_healthy{upstream=\"origin\"} 1");
    for needle in [
        "menshen_requests_total{route=\"/\",site=\"shop\",status_class=\"2xx\"} 1",
        "menshen_requests_total{route=\"-\",site=\"-\",status_class=\"4xx\"} 1",
        "menshen_request_duration_seconds_bucket",
        "menshen_upstream_healthy{backend=\"127.0.0.1:",
        "menshen_certificate_expiry_timestamp_seconds{issuer_root=\"Approved Root\",name=\"shop\"}",
        "menshen_policy_denials_total{rule=\"unknown_host\",site=\"-\"} 1",
        "menshen_access_log_backlog",
        "menshen_last_reload_timestamp_seconds",
    ] {
        assert!(metrics.contains(needle), "metrics has {needle}:\n{metrics}");
    }
    assert_eq!(admin::get(s.admin, "/nope").await.status, 404);

    // A reload adds a site: the shop's counter goes on from where it was (Prometheus sees no
    // reset), and the new site shows no series until a request reaches it.
    let config = std::fs::read_to_string(s.env.path("menshen.toml")).expect("config");
    let blog = Config::new()
        .site_filed("blog", "京ICP备16063439号-2", &["blog.example.cn"])
        .proxy("/", "origin");
    std::fs::write(s.env.path("menshen.toml"), config + blog.as_ref()).expect("write config");
    let (_, reload) = admin::reload(s.admin).await;
    assert_eq!(reload["applied"], true, "{reload}");
    let again = get_plain(s.env.http, "shop.example.cn", "/a").await;
    assert_eq!(again.expect("GET").status, 200);
    let metrics = admin::get(s.admin, "/metrics").await.text();
    let shop = "menshen_requests_total{route=\"/\",site=\"shop\",status_class=\"2xx\"} 2";
    assert!(metrics.contains(shop), "metrics has {shop}:\n{metrics}");
    assert!(
        !metrics.contains("site=\"blog\""),
        "no series for a site no request reached:\n{metrics}"
    );
    let blog_get = get_plain(s.env.http, "blog.example.cn", "/").await;
    assert_eq!(blog_get.expect("GET").status, 200);
    let metrics = admin::get(s.admin, "/metrics").await.text();
    for class in ["1xx", "2xx", "3xx", "4xx", "5xx"] {
        let count = if class == "2xx" { 1 } else { 0 };
        let blog = format!(
            "menshen_requests_total{{route=\"/\",site=\"blog\",status_class=\"{class}\"}} {count}"
        );
        assert!(metrics.contains(&blog), "metrics has {blog}:\n{metrics}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_needs_the_bearer_token_and_reports_errors() {
    let s = setup("").await;
    let post = |auth: &str| {
        format!("POST /reload HTTP/1.1\r\nHost: admin\r\n{auth}Content-Length: 0\r\n\r\n")
    };
    assert_eq!(admin_req(s.admin, &post("")).await.status, 401);
    assert_eq!(
        admin_req(s.admin, &post("Authorization: Bearer wrong\r\n"))
            .await
            .status,
        403
    );
    let bearer = format!("Authorization: Bearer {}\r\n", admin::TOKEN);
    let ok = admin_req(s.admin, &post(&bearer)).await;
    assert_eq!(ok.status, 200, "{}", ok.text());
    assert!(ok.text().contains("\"applied\":true"), "{}", ok.text());
    assert!(ok.text().contains("configuration loaded"), "{}", ok.text());

    // A broken config: the reload is refused with every error, and the old one keeps serving.
    let good = std::fs::read_to_string(s.env.path("menshen.toml")).expect("config");
    let broken = good.replace("upstream = \"origin\"", "upstream = \"missing\"");
    std::fs::write(s.env.path("menshen.toml"), broken).expect("write");
    let refused = admin_req(s.admin, &post(&bearer)).await;
    assert_eq!(refused.status, 422);
    assert!(
        refused
            .text()
            .contains("no [[upstreams]] named \\\"missing\\\""),
        "{}",
        refused.text()
    );
    assert_eq!(
        get_plain(s.env.http, "shop.example.cn", "/")
            .await
            .expect("GET")
            .status,
        200
    );
    let metrics = admin::get(s.admin, "/metrics").await.text();
    assert!(
        metrics.contains("menshen_reloads_total{result=\"rejected\"}"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_page_renders_in_chromium() {
    let s = setup("").await;
    let html = admin::get(s.admin, "/status").await;
    assert_eq!(html.status, 200);
    let text = html.text();
    assert!(
        text.contains("shop.example.cn") && text.contains("Approved Root"),
        "{text}"
    );
    assert!(
        text.contains("<tr><th>suites, in preference order</th><td>TLS13_AES_128_GCM_SHA256, ")
            && text.contains("<tr><th>session resumption</th><td>on</td></tr>"),
        "TLS settings shown: {text}"
    );
    let Some(chromium) = ["chromium", "chromium-browser", "google-chrome"]
        .iter()
        .find(|b| {
            std::process::Command::new("which")
                .arg(b)
                .output()
                .is_ok_and(|o| o.status.success())
        })
    else {
        panic!("no chromium installed: `apt-get install chromium` (.ci/run installs it)");
    };
    let profile = tempfile::tempdir().expect("profile dir");
    let out = std::process::Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-quic",
            "--dump-dom",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(format!("http://127.0.0.1:{}/status", s.admin))
        .output()
        .expect("run chromium");
    let dom = String::from_utf8_lossy(&out.stdout);
    assert!(
        dom.contains("<table id=\"certificates\">"),
        "rendered DOM: {dom}"
    );
    assert!(
        dom.contains("shop.example.cn"),
        "demo certificate shown: {dom}"
    );
    let days = dom
        .split("class=\"days-left\">")
        .nth(1)
        .and_then(|rest| rest.split('<').next())
        .and_then(|d| d.parse::<i64>().ok());
    assert!(
        days.is_some_and(|d| (360..=366).contains(&d)),
        "days left shown: {dom}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_finishes_in_flight_and_flushes_the_log() {
    let mut s = setup("").await;
    eventually(Duration::from_secs(5), || async {
        (admin::get(s.admin, "/readyz").await.status == 200).then_some(())
    })
    .await
    .expect("ready");
    // A download in flight when SIGTERM arrives.
    let http = s.env.http;
    let download =
        tokio::spawn(async move { get_plain(http, "shop.example.cn", "/download").await });
    eventually(Duration::from_secs(5), || async {
        (s.origin.hits() >= 1).then_some(())
    })
    .await
    .expect("the download reached the origin");
    let pid = s.proxy.child.id().to_string();
    std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill");
    let draining = eventually(Duration::from_secs(2), || async {
        (admin::get(s.admin, "/readyz").await.status == 503).then_some(())
    })
    .await;
    assert!(draining.is_some(), "readyz turns 503 while draining");
    let resp = download.await.expect("join").expect("download finished");
    assert_eq!(
        resp.body.len(),
        support::origins::DOWNLOAD_BYTES,
        "in-flight request completed"
    );
    let code = s.proxy.wait_exit(Duration::from_secs(15));
    assert_eq!(code, Some(0), "exit 0 after draining:\n{}", s.proxy.log());
    let log = std::fs::read_to_string(s.env.path("logs/access.log")).expect("access log");
    assert!(
        log.contains("\"path\":\"/download\""),
        "flushed on shutdown: {log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_upgrade_hands_over_listeners_without_failed_requests() {
    let s = setup("upgrade_sock = \"upgrade.sock\"\npid_file = \"menshen.pid\"").await;
    let http = s.env.http;
    let stop = Arc::new(AtomicBool::new(false));
    let served = Arc::new(AtomicU32::new(0));
    let (loop_stop, loop_served) = (stop.clone(), served.clone());
    let client = tokio::spawn(async move {
        let mut failed = Vec::new();
        while !loop_stop.load(Ordering::SeqCst) {
            match get_plain(http, "shop.example.cn", "/x").await {
                Ok(r) if r.status == 200 => _ = loop_served.fetch_add(1, Ordering::SeqCst),
                Ok(r) => failed.push(format!("status {}", r.status)),
                Err(e) => failed.push(e.to_string()),
            }
        }
        failed
    });
    // Until `served` reaches `n` more than now.
    let served_more = |n: u32| {
        let served = served.clone();
        let target = served.load(Ordering::SeqCst) + n;
        async move {
            eventually(Duration::from_secs(20), || {
                let served = served.clone();
                async move { (served.load(Ordering::SeqCst) >= target).then_some(()) }
            })
            .await
        }
    };
    served_more(10)
        .await
        .expect("the client loop runs before the upgrade");

    // The new binary waits for the listening sockets; the old one hands them over on SIGQUIT.
    let log = std::fs::File::create(s.env.path("new.log")).expect("log");
    let mut new = std::process::Command::new(env!("CARGO_BIN_EXE_menshen"))
        .args(["--upgrade", "--config"])
        .arg(s.env.path("menshen.toml"))
        .stdout(log.try_clone().expect("dup"))
        .stderr(log)
        .spawn()
        .expect("start new menshen");
    // The new process binds the upgrade socket and waits there for the listening sockets.
    let sock = s.env.path("upgrade.sock");
    eventually(Duration::from_secs(10), || {
        let sock = sock.clone();
        async move { sock.exists().then_some(()) }
    })
    .await
    .expect("the new process waits on the upgrade socket");
    let old_pid = s.proxy.child.id().to_string();
    std::process::Command::new("kill")
        .args(["-QUIT", &old_pid])
        .status()
        .expect("kill -QUIT");
    let mut old = s.proxy;
    let code = tokio::task::spawn_blocking(move || old.wait_exit(Duration::from_secs(20)))
        .await
        .expect("join");
    assert_eq!(code, Some(0), "old process exits after handing over");
    let after = served_more(10).await;
    stop.store(true, Ordering::SeqCst);
    let failed = client.await.expect("client loop");
    let ok = served.load(Ordering::SeqCst);
    assert!(after.is_some(), "the new process serves the client loop");
    let new_log = std::fs::read_to_string(s.env.path("new.log")).unwrap_or_default();
    let _ = new.kill();
    let _ = new.wait();
    assert!(ok > 20, "the client loop ran ({ok} requests)");
    assert!(
        failed.is_empty(),
        "no failed request across the upgrade: {failed:?}\n{new_log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthz_command_probes_the_admin_listener() {
    let s = setup("").await;
    let run = |config: &std::path::Path| {
        std::process::Command::new(env!("CARGO_BIN_EXE_menshen"))
            .args(["healthz", "--config"])
            .arg(config)
            .output()
            .expect("run healthz")
    };
    let ok = run(&s.env.path("menshen.toml"));
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    drop(s.proxy);
    let down = run(&s.env.path("menshen.toml"));
    assert!(
        !down.status.success(),
        "healthz fails once the proxy is gone"
    );
}
