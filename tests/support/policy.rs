//! One proxy with every policy switched on, shared by the policy and connection tests: a site
//! proxied to an origin, a second site, and TLS and plain listeners behind a PROXY-protocol
//! balancer.

use std::time::Duration;

use serde_json::Value;

use super::config::Config;
use super::http::{raw_plain, raw_tls, tls_client, Response};
use super::origins::Origin;
use super::pki::{Ca, LeafSpec};
use super::{eventually, free_port, Env};

/// The takedown of `shop.example.cn/banned/`.
const TAKEDOWN: &str = "[[policy.takedowns]]\nid = \"case-42\"\nhost = \"shop.example.cn\"\n\
                        prefix = \"/banned/\"\nbody = \"gone for legal reasons\"";

/// The rules of the site `shop`: response headers removed and added, HSTS, a body limit.
const SHOP_RULES: &str = "remove_response_headers = [\"Server\", \"X-Powered-By\"]\n\
                          add_response_headers = { \"X-Frame-Options\" = \"DENY\" }\n\
                          hsts_max_age = \"10m\"\nmax_body_bytes = 100";

pub struct Setup {
    pub env: Env,
    pub root: Ca,
    pub pp_port: u16,
    pub pp_plain_port: u16,
    pub admin_port: u16,
    _origin: Origin,
    _proxy: super::Running,
}

/// A proxy with every policy switched on plus `policy` (lines of the `[policy]` table): one site
/// (with `site_extra`) proxied to an origin, a second site, and a TLS and a plain listener behind
/// a PROXY-protocol balancer.
pub async fn setup(policy: &str, site_extra: &str) -> Setup {
    let (env, root) = Env::with_approved_root("Approved Root");
    let leaf = root.issue(&LeafSpec::new(&["shop.example.cn"], 0x1));
    env.put_cert("shop", &leaf, &[]);
    let other = root.issue(&LeafSpec::new(&["news.example.cn"], 0x2));
    env.put_cert("news", &other, &[]);
    let origin = Origin::start("origin").await;
    let pp_port = free_port();
    let pp_plain_port = free_port();
    let admin_port = free_port();
    let config = Config::new()
        .listener("https-lb", pp_port, "tls = true\nproxy_protocol = true")
        .listener("http-lb", pp_plain_port, "proxy_protocol = true")
        .admin(&env, admin_port)
        .access_log("logs/access.log")
        .raw(&format!("[policy]\n{policy}"))
        .raw(TAKEDOWN)
        .upstream("origin", &[origin.port])
        .site("shop", &["shop.example.cn"])
        .keys(SHOP_RULES)
        .keys(site_extra)
        .proxy("/", "origin")
        .proxy("/limited/", "origin")
        .keys("rate_limit = { requests_per_second = 0.5, burst = 1 }")
        .site_filed("news", "京ICP证110507号", &["news.example.cn"])
        .keys("https_only = true\nlog_query = false")
        .respond("/", "news");
    env.write_config("", config);
    let proxy = env.start();
    assert!(super::wait_port(pp_port, Duration::from_secs(10)));
    assert!(super::wait_port(pp_plain_port, Duration::from_secs(10)));
    Setup {
        env,
        root,
        pp_port,
        pp_plain_port,
        admin_port,
        _origin: origin,
        _proxy: proxy,
    }
}

impl Setup {
    /// What the proxy process has logged so far.
    pub fn proxy_log(&self) -> String {
        self._proxy.log()
    }

    /// The access log line of the request with this id, once written.
    pub async fn log_line(&self, request_id: &str) -> Value {
        let path = self.env.path("logs/access.log");
        let found = eventually(Duration::from_secs(5), || {
            let path = path.clone();
            async move {
                let text = std::fs::read_to_string(&path).ok()?;
                text.lines()
                    .filter_map(|l| serde_json::from_str::<Value>(l).ok())
                    .find(|v| v["request_id"] == request_id)
            }
        })
        .await;
        found.unwrap_or_else(|| panic!("no access log line for {request_id}"))
    }

    pub async fn plain(&self, raw: &[u8]) -> Response {
        raw_plain(self.env.http, raw, None)
            .await
            .expect("plain request")
    }

    pub async fn tls(&self, sni: &str, raw: &[u8]) -> Response {
        let client = tls_client(&[&self.root.pem]);
        raw_tls(&client, self.env.https, sni, b"", raw)
            .await
            .expect("TLS request")
    }
}

pub fn id_of(resp: &Response) -> String {
    resp.header("x-request-id")
        .expect("x-request-id")
        .to_owned()
}
