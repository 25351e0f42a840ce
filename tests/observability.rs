//! What an on-call engineer reads: `/metrics` as a real Prometheus parser reads it (types,
//! per-site, per-upstream and TLS series, bounded labels), the access log on standard output
//! against its JSON Schema, and a process log without colour codes when it is not a terminal.
//!
//! The parser and the validator are Python's `prometheus_client` and `jsonschema`, in the venv
//! `make observe-py` builds under target/ (`make test` builds it first).

mod support;

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use support::config::Config;
use support::http::{get_plain, get_tls, tls_client};
use support::origins::Origin;
use support::pki::Ca;
use support::python::{check_tool, validate_access_log};
use support::{eventually, free_port, wait_port, Env};

/// Family name -> (type, samples), as prometheus_client parses `/metrics`.
fn families(metrics: &str) -> BTreeMap<String, (String, u64)> {
    let json: serde_json::Value =
        serde_json::from_str(&check_tool(&["types"], metrics)).expect("JSON from the parser");
    let map = json.as_object().expect("an object");
    map.iter()
        .map(|(name, f)| {
            let kind = f["type"].as_str().expect("type").to_owned();
            (name.clone(), (kind, f["series"].as_u64().expect("series")))
        })
        .collect()
}

/// menshen started by hand: standard output (the access log) and standard error (the process
/// log) in files of their own, and no `NO_COLOR`.
struct Proxy {
    env: Env,
    root: Ca,
    admin: u16,
    child: Child,
    _origin: Origin,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Proxy {
    async fn start() -> Proxy {
        let (env, root) = Env::with_shop();
        let origin = Origin::start("origin").await;
        let admin = free_port();
        // Nothing listens there: connects are refused.
        let dead = free_port();
        let body = Config::new()
            .raw(&support::admin::section(&env, admin))
            .access_log("-")
            .keys("tamper_evident = false")
            .upstream("origin", &[origin.port])
            .upstream("dead", &[dead])
            .site("shop", &["shop.example.cn"])
            .proxy("/dead", "dead")
            .proxy("/", "origin");
        env.write_config("", body);
        let out = std::fs::File::create(env.path("stdout")).expect("stdout file");
        let err = std::fs::File::create(env.path("stderr")).expect("stderr file");
        let child = Command::new(env!("CARGO_BIN_EXE_menshen"))
            .arg("--config")
            .arg(env.path("menshen.toml"))
            .env("RUST_LOG", "info")
            .env_remove("NO_COLOR")
            .stdout(out)
            .stderr(err)
            .stdin(Stdio::null())
            .spawn()
            .expect("spawn menshen");
        let proxy = Proxy {
            env,
            root,
            admin,
            child,
            _origin: origin,
        };
        for port in [proxy.env.https, proxy.env.http, admin] {
            let listening = wait_port(port, Duration::from_secs(20));
            assert!(listening, "menshen listens on {port}:\n{}", proxy.stderr());
        }
        proxy
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(self.env.path("stderr")).unwrap_or_default()
    }

    fn access_lines(&self) -> Vec<String> {
        let out = std::fs::read_to_string(self.env.path("stdout")).unwrap_or_default();
        out.lines().map(str::to_owned).collect()
    }

    async fn metrics(&self) -> String {
        support::admin::get(self.admin, "/metrics").await.text()
    }

    /// One request of every kind the tests count: a TLS request to the origin, one to the
    /// upstream that refuses connections, one for no site, and a handshake for no site.
    async fn traffic(&self) {
        let client = tls_client(&[&self.root.pem]);
        let ok = get_tls(
            &client,
            self.env.https,
            "shop.example.cn",
            "shop.example.cn",
            "/a",
        )
        .await
        .expect("GET over TLS");
        assert_eq!(ok.status, 200);
        let dead = get_plain(self.env.http, "shop.example.cn", "/dead/x").await;
        assert_eq!(dead.expect("GET /dead").status, 502);
        let unknown = get_plain(self.env.http, "nope.example", "/").await;
        assert_eq!(unknown.expect("GET unknown host").status, 403);
        let refused = get_tls(&client, self.env.https, "nope.example", "nope.example", "/");
        assert!(refused.await.is_err(), "a name no certificate covers");
    }
}

/// The value of the series whose line starts with `series ` in `metrics`.
fn value(metrics: &str, series: &str) -> Option<f64> {
    metrics.lines().find_map(|l| {
        let rest = l.strip_prefix(series)?.strip_prefix(' ')?;
        rest.trim().parse().ok()
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_have_prometheus_types_and_per_site_upstream_and_tls_series() {
    let proxy = Proxy::start().await;
    proxy.traffic().await;
    // A refused handshake is counted when the server's side of it ends, which the client that
    // saw the refusal does not wait for.
    let counted = eventually(Duration::from_secs(10), || async {
        let m = proxy.metrics().await;
        m.contains("menshen_tls_handshakes_total{result=\"unknown_sni\"")
            .then_some(m)
    })
    .await;
    let metrics = match counted {
        Some(metrics) => metrics,
        None => proxy.metrics().await,
    };
    let found = families(&metrics);
    let expect = [
        ("menshen_requests_total", "counter"),
        ("menshen_request_bytes_total", "counter"),
        ("menshen_response_bytes_total", "counter"),
        ("menshen_policy_denials_total", "counter"),
        ("menshen_tls_handshakes_total", "counter"),
        ("menshen_upstream_requests_total", "counter"),
        ("menshen_upstream_errors_total", "counter"),
        ("menshen_upstream_retries_total", "counter"),
        ("menshen_upstream_ejections_total", "counter"),
        ("menshen_reloads_total", "counter"),
        ("menshen_access_log_dropped_total", "counter"),
        ("menshen_access_log_write_failed_total", "counter"),
        ("menshen_request_duration_seconds", "histogram"),
        ("menshen_upstream_connect_seconds", "histogram"),
        ("menshen_upstream_first_byte_seconds", "histogram"),
        ("menshen_open_connections", "gauge"),
        ("menshen_requests_in_flight", "gauge"),
        ("menshen_access_log_backlog", "gauge"),
        ("menshen_certificate_expiry_timestamp_seconds", "gauge"),
    ];
    for (name, kind) in expect {
        let got = found.get(name).map(|(k, _)| k.as_str());
        assert_eq!(got, Some(kind), "{name} is a {kind}:\n{metrics}");
    }
    for (name, (kind, _)) in &found {
        if name.ends_with("_total") {
            assert_eq!(kind, "counter", "{name} ends in _total: a counter");
        }
    }
    for (series, least) in [
        ("menshen_reloads_total{result=\"partial\"}", 0.0),
        ("menshen_request_duration_seconds_count{site=\"shop\"}", 2.0),
        ("menshen_request_duration_seconds_count{site=\"-\"}", 1.0),
        ("menshen_response_bytes_total{site=\"shop\"}", 1.0),
        (
            "menshen_policy_denials_total{rule=\"unknown_host\",site=\"-\"}",
            1.0,
        ),
        (
            "menshen_tls_handshakes_total{result=\"ok\",version=\"TLSv1.3\"}",
            1.0,
        ),
        (
            "menshen_tls_handshakes_total{result=\"unknown_sni\",version=\"-\"}",
            1.0,
        ),
        ("menshen_upstream_requests_total{upstream=\"origin\"}", 1.0),
        (
            "menshen_upstream_first_byte_seconds_count{upstream=\"origin\"}",
            1.0,
        ),
        (
            "menshen_upstream_connect_seconds_count{upstream=\"origin\"}",
            1.0,
        ),
        (
            "menshen_upstream_errors_total{kind=\"connect_refused\",upstream=\"dead\"}",
            1.0,
        ),
        (
            "menshen_upstream_errors_total{kind=\"timeout\",upstream=\"origin\"}",
            0.0,
        ),
        (
            "menshen_open_connections{listener=\"http\",protocol=\"http1\"}",
            0.0,
        ),
        (
            "menshen_requests_in_flight{listener=\"https\",protocol=\"http1\"}",
            0.0,
        ),
    ] {
        let got = value(&metrics, series);
        assert!(
            got >= Some(least),
            "{series} >= {least}, got {got:?}:\n{metrics}"
        );
    }
    for label in ["path=", "client_ip=", "host="] {
        assert!(!metrics.contains(label), "no {label} label:\n{metrics}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn series_stay_bounded_under_random_hosts_paths_and_names() {
    let proxy = Proxy::start().await;
    proxy.traffic().await;
    let count = |metrics: &str| -> u64 { families(metrics).values().map(|(_, n)| n).sum() };
    // The OCSP stapler's first pass (a thread of its own) adds each certificate's series once.
    let settled = eventually(Duration::from_secs(10), || async {
        let m = proxy.metrics().await;
        m.contains("menshen_ocsp_status{").then_some(m)
    })
    .await
    .expect("the OCSP stapler's first pass");
    let before = count(&settled);
    let client = tls_client(&[&proxy.root.pem]);
    // A fixed sequence of "random" names: the same every run, all different.
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for _ in 0..40 {
        x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
        let host = format!(
            "h{:x}.example.{}",
            x >> 40,
            ["cn", "com", "net"][(x % 3) as usize]
        );
        let path = format!("/{:x}/{}", x >> 20, x % 977);
        let answer = get_plain(proxy.env.http, &host, &path).await;
        assert_eq!(answer.expect("GET").status, 403);
        let known = get_plain(proxy.env.http, "shop.example.cn", &path).await;
        assert_eq!(known.expect("GET").status, 200);
        let sni = get_tls(&client, proxy.env.https, &host, &host, &path).await;
        assert!(sni.is_err(), "{host} has no certificate");
    }
    let metrics = proxy.metrics().await;
    assert_eq!(count(&metrics), before, "no new series:\n{metrics}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stdout_access_log_matches_its_schema_and_the_process_log_has_no_colour() {
    let proxy = Proxy::start().await;
    proxy.traffic().await;
    let lines = eventually(Duration::from_secs(10), || async {
        let lines = proxy.access_lines();
        (lines.len() >= 3).then_some(lines)
    })
    .await
    .unwrap_or_else(|| panic!("3 access log lines on stdout:\n{}", proxy.stderr()));
    validate_access_log(&lines);
    let parsed: Vec<serde_json::Value> = lines
        .iter()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect();
    let ok = parsed
        .iter()
        .find(|l| l["path"] == "/a")
        .expect("the TLS request's line");
    assert_eq!(ok["site"], "shop");
    assert_eq!(ok["route"], "/");
    assert_eq!(ok["http_version"], "HTTP/1.1");
    assert_eq!(ok["tls_version"], "TLSv1.3");
    assert!(ok["upstream"]
        .as_str()
        .is_some_and(|u| u.starts_with("127.0.0.1:")));
    assert!(ok["upstream_first_byte_ms"].is_u64(), "{ok}");
    assert!(ok["compression"].is_null() && ok["cache"].is_null(), "{ok}");
    let dead = parsed
        .iter()
        .find(|l| l["path"] == "/dead/x")
        .expect("the /dead line");
    assert_eq!(dead["route"], "/dead");
    assert_eq!(dead["status"], 502);
    assert!(
        dead["upstream_connect_ms"].is_null(),
        "no connection: {dead}"
    );
    let unknown = parsed
        .iter()
        .find(|l| l["host"] == "nope.example")
        .expect("no-site line");
    assert!(
        unknown["site"].is_null() && unknown["route"].is_null(),
        "{unknown}"
    );

    let stderr = std::fs::read(proxy.env.path("stderr")).expect("stderr file");
    let text = String::from_utf8_lossy(&stderr);
    assert!(
        text.contains("ready"),
        "the process log is on stderr:\n{text}"
    );
    assert!(
        !stderr.contains(&0x1b),
        "no ANSI escape in a log file:\n{text}"
    );
}
