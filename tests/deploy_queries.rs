//! The ready-made operations in `deploy/` query what menshen exports: every metric name the
//! Grafana dashboard and the Prometheus alert rules use is on the `/metrics` of the demo
//! config (`conf/menshen.toml`) once it served a little traffic. (The rules' behaviour is
//! `make promtool-rules`'s test.) The demo's chained access log file matches the line's JSON
//! Schema and `menshen logs verify` passes it. The demo staples its OCSP response and takes
//! the demo client certificate.

mod support;

use std::collections::BTreeSet;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use support::http::{get_plain, get_tls, tls_client, tls_client_with_cert};
use support::{eventually, free_port, wait_port};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// Every `menshen_*` name in `text`, with a histogram's `_bucket`/`_sum`/`_count` kept (they
/// are the names exposed).
fn names_in(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find("menshen_") {
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        names.insert(tail[..end].to_owned());
        rest = &tail[end..];
    }
    names
}

/// The sample names of a `/metrics` text.
fn exposed(metrics: &str) -> BTreeSet<String> {
    metrics
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| l.split(['{', ' ']).next())
        .map(str::to_owned)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_metric_the_dashboard_and_the_alerts_query_is_exported_by_the_demo() {
    let dashboard =
        std::fs::read_to_string(format!("{ROOT}/deploy/grafana/menshen-dashboard.json"))
            .expect("dashboard");
    serde_json::from_str::<serde_json::Value>(&dashboard).expect("the dashboard is JSON");
    let rules = std::fs::read_to_string(format!("{ROOT}/deploy/prometheus/menshen-alerts.yaml"))
        .expect("alert rules");
    let queried: BTreeSet<String> = names_in(&dashboard)
        .into_iter()
        .chain(names_in(&rules))
        .collect();
    assert!(
        queried.len() >= 15,
        "the dashboard and rules query menshen's metrics: {queried:?}"
    );

    // The demo config on free ports; its origin (8081) is left without a listener, so that a
    // request to it fails to connect and ejects the backend.
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = support::shipped::lay_out(dir.path());
    let (https, http, admin, origin) = (free_port(), free_port(), free_port(), free_port());
    let config_path = dir.path().join("conf/menshen.toml");
    let config = std::fs::read_to_string(&config_path)
        .expect("demo config")
        .replace("127.0.0.1:8443", &format!("127.0.0.1:{https}"))
        .replace("127.0.0.1:8080", &format!("127.0.0.1:{http}"))
        .replace("127.0.0.1:9901", &format!("127.0.0.1:{admin}"))
        .replace("127.0.0.1:8081", &format!("127.0.0.1:{origin}"));
    std::fs::write(&config_path, config).expect("write config");
    let log = std::fs::File::create(dir.path().join("menshen.log")).expect("log");
    let _menshen = Killed(
        Command::new(env!("CARGO_BIN_EXE_menshen"))
            .arg("--config")
            .arg(&config_path)
            .stdout(log.try_clone().expect("dup"))
            .stderr(log)
            .stdin(Stdio::null())
            .spawn()
            .expect("spawn menshen"),
    );
    let log = || std::fs::read_to_string(dir.path().join("menshen.log")).unwrap_or_default();
    for port in [https, http, admin] {
        assert!(
            wait_port(port, Duration::from_secs(20)),
            "listening on {port}:\n{}",
            log()
        );
    }
    let client = tls_client(&[&ca]);
    let ok = get_tls(&client, https, "localhost", "localhost", "/").await;
    assert_eq!(ok.expect("GET / over TLS").status, 200);
    let dead = get_plain(http, "localhost", "/origin/").await;
    assert_eq!(dead.expect("GET /origin/").status, 502);

    // The demo staples the OCSP response `make run` made for its leaf, and takes a client
    // certificate from the demo client CA (optional mutual TLS); one from another CA is refused.
    let demo = dir.path().join("certs/demo");
    let file = std::fs::read(demo.join("live/localhost.ocsp")).expect("the demo's OCSP file");
    assert_eq!(support::ocsp::staple(&ca, https, "localhost").await, file);
    let read = |name: &str| std::fs::read_to_string(demo.join(name)).expect("demo client file");
    let with_cert = tls_client_with_cert(&[&ca], &read("client.crt"), &read("client.key"));
    let mtls = get_tls(&with_cert, https, "localhost", "localhost", "/").await;
    assert_eq!(
        mtls.expect("GET / with the demo client certificate").status,
        200
    );
    let other = support::pki::Ca::root("Not the demo client CA").issue_client("stranger");
    let stranger = tls_client_with_cert(&[&ca], &other.pem, &other.key_pem);
    let refused = get_tls(&stranger, https, "localhost", "localhost", "/").await;
    assert!(
        refused.is_err(),
        "a client certificate from another CA is refused"
    );
    let unknown = get_plain(http, "nope.example", "/").await;
    assert_eq!(unknown.expect("GET unknown host").status, 403);

    let all_there = eventually(Duration::from_secs(10), || async {
        let have = exposed(&support::admin::get(admin, "/metrics").await.text());
        queried.iter().all(|n| have.contains(n)).then_some(())
    })
    .await;
    let metrics = support::admin::get(admin, "/metrics").await.text();
    let have = exposed(&metrics);
    let missing: Vec<_> = queried.iter().filter(|n| !have.contains(*n)).collect();
    assert!(
        all_there.is_some() && missing.is_empty(),
        "queried, not exported: {missing:?}\n{metrics}"
    );

    // The writer's "opened" line and the three requests', chained.
    let logs = dir.path().join("logs");
    let lines = eventually(Duration::from_secs(10), || async {
        let text = std::fs::read_to_string(logs.join("access.log")).unwrap_or_default();
        let lines: Vec<String> = text.lines().map(str::to_owned).collect();
        (lines.len() >= 4).then_some(lines)
    })
    .await
    .unwrap_or_else(|| panic!("4 lines in the demo's access log:\n{}", log()));
    assert!(
        lines.iter().all(|l| l.contains("\"chain\":\"")),
        "chained: {lines:?}"
    );
    support::python::validate_access_log(&lines);
    let verify = Command::new(env!("CARGO_BIN_EXE_menshen"))
        .args(["logs", "verify"])
        .arg(&logs)
        .arg("--key")
        .arg(dir.path().join("certs/demo/access-log.key"))
        .output()
        .expect("run menshen logs verify");
    let said = String::from_utf8_lossy(&verify.stdout);
    assert!(verify.status.success(), "logs verify: {said}");
}

/// Ends the process when the test does, passed or not.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
