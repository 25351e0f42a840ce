//! The proxy as the retry tests (`tests/retries*.rs`) run it: in front of test backends
//! (`failing`, `failing_h2`) as one upstream with one route, an admin listener and an access
//! log; requests over HTTP/1.1 and HTTP/2, the access log's line of a request, a metric.

use std::time::Duration;

use serde_json::Value;

use super::config::Config;
use super::failing::{Events, Failing, Mode};
use super::failing_h2::{FailingH2, H2Mode};
use super::http::{h2_connect, raw_plain, Response};
use super::pki::Ca;
use super::{eventually, free_port, Env, Running};

/// The proxy in front of `backends` (one upstream, round robin) with `route` and `upstream`
/// (TOML lines) added to the route and the upstream; an admin listener and an access log.
pub struct Proxy {
    pub env: Env,
    pub root: Ca,
    pub admin: u16,
    pub running: Running,
}

impl Proxy {
    pub fn start(backends: &[u16], upstream: &str, route: &str) -> Proxy {
        let (env, root) = Env::with_site(&["example.cn"]);
        let admin = free_port();
        configure(&env, admin, backends, upstream, route);
        let running = env.start();
        Proxy {
            env,
            root,
            admin,
            running,
        }
    }

    /// One HTTP/1.1 request (the connection closed after it), with an id to find its log line.
    pub async fn send(&self, method: &str, path: &str, body: &str) -> Response {
        let raw = format!(
            "{method} {path} HTTP/1.1\r\nHost: example.cn\r\nConnection: close\r\n\
             Content-Length: {}\r\n\r\n{body}",
            body.len()
        );
        raw_plain(self.env.http, raw.as_bytes(), None)
            .await
            .expect("a response")
    }

    /// A new HTTP/2 connection to the site.
    pub async fn h2(&self) -> h2::client::SendRequest<bytes::Bytes> {
        h2_connect(&[&self.root.pem], self.env.https, "example.cn")
            .await
            .expect("HTTP/2")
    }

    /// One HTTP/2 request on a connection of its own: the status and the body (an error when
    /// the stream was reset).
    pub async fn send_h2(&self, method: &str, path: &str, body: &str) -> (u16, String) {
        let mut h2 = self.h2().await.ready().await.expect("ready");
        let request = http::Request::builder()
            .method(method)
            .uri(format!("https://example.cn{path}"))
            .body(())
            .expect("request");
        let (response, mut upload) = h2.send_request(request, body.is_empty()).expect("send");
        if !body.is_empty() {
            let data = bytes::Bytes::from(body.to_owned());
            upload.send_data(data, true).expect("body");
        }
        let response = response.await.expect("a response head");
        let status = response.status().as_u16();
        let mut down = response.into_body();
        let mut text = Vec::new();
        while let Some(chunk) = down.data().await {
            text.extend_from_slice(&chunk.expect("the body"));
        }
        (status, String::from_utf8_lossy(&text).into_owned())
    }

    /// The access log line of the request to `path`, once written.
    pub async fn logged(&self, path: &str) -> Value {
        let file = self.env.path("access.log");
        let found = eventually(Duration::from_secs(5), || {
            let file = file.clone();
            async move {
                let text = std::fs::read_to_string(&file).ok()?;
                text.lines()
                    .filter_map(|l| serde_json::from_str::<Value>(l).ok())
                    .find(|v| v["path"] == path)
            }
        })
        .await;
        found.unwrap_or_else(|| panic!("no access log line for {path}: {}", self.running.log()))
    }

    pub async fn metric(&self, series: &str) -> f64 {
        super::admin::metric(self.admin, series)
            .await
            .unwrap_or_else(|| panic!("no series {series}"))
    }
}

/// Writes the config: `backends` as one upstream (round robin) with `upstream` added, one route
/// to it with `route` added, an admin listener and an access log.
pub fn configure(env: &Env, admin: u16, backends: &[u16], upstream: &str, route: &str) {
    let config = Config::new()
        .admin(env, admin)
        .access_log("access.log")
        .keys("tamper_evident = false")
        .upstream("backend", backends)
        .keys("passive_ejection = \"0s\"")
        .keys(upstream)
        .site("site", &["example.cn"])
        .proxy("/", "backend")
        .keys(route);
    env.write_config("", config);
}

/// A backend that fails as `mode` ("broken") and one that answers ("good"), both noting their
/// requests in the events returned.
pub async fn broken_and_good(mode: Mode) -> (Events, Failing, Failing) {
    let log = events();
    let broken = Failing::start("broken", mode, &log).await;
    let good = Failing::start("good", Mode::Answer, &log).await;
    (log, broken, good)
}

/// The same with HTTP/2 (h2c) backends.
pub async fn broken_and_good_h2(mode: H2Mode) -> (Events, FailingH2, FailingH2) {
    let log = events();
    let broken = FailingH2::start("broken", mode, &log).await;
    let good = FailingH2::start("good", H2Mode::Answer, &log).await;
    (log, broken, good)
}

/// How many backends the request to `path` went to, checked to be the good one alone, or the
/// broken one and then the good one.
pub fn tries_until_good(events: &Events, path: &str) -> usize {
    let tried = order(events, path);
    assert!(
        tried == ["good"] || tried == ["broken", "good"],
        "{path}: {tried:?}"
    );
    tried.len()
}

pub fn events() -> Events {
    Events::default()
}

/// Backends, in the order of the events of `path`.
pub fn order(events: &Events, path: &str) -> Vec<String> {
    let events = events.lock().expect("lock");
    let of_path = events.iter().filter(|(_, what, _)| what.ends_with(path));
    of_path.map(|(name, _, _)| name.clone()).collect()
}
