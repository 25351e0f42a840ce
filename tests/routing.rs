//! Routing to backends: hosts and prefixes, failover, health checks, upstream TLS and DNS.

mod support;

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::time::Duration;

use support::config::Config;
use support::http::{get_plain, get_tls, tls_client};
use support::origins::{DnsResponder, Origin};
use support::pki::{Ca, LeafSpec};
use support::{eventually, free_port, Env};

fn env_with_cert() -> (Env, Ca) {
    let (env, root) = Env::with_approved_root("Approved Root");
    let leaf = root.issue(&LeafSpec::new(&["*.example.cn", "example.cn"], 0x1));
    env.put_cert("wild", &leaf, &[]);
    (env, root)
}

/// A site serving `example.cn` that sends every path to `upstream`.
fn site_to(upstream: &str) -> String {
    site_routes(&[("/", upstream)])
}

/// A site serving `example.cn` with one route per (prefix, upstream).
fn site_routes(routes: &[(&str, &str)]) -> String {
    let site = Config::new().site("site", &["example.cn"]);
    let site = routes.iter().fold(site, |site, (p, u)| site.proxy(p, u));
    site.to_string()
}

/// Writes a config with one upstream `name` (`keys`: its TOML keys after the name) and a site
/// sending every path to it.
fn write_one_upstream(env: &Env, name: &str, keys: &str) {
    env.write_config(
        "",
        format!(
            "[[upstreams]]\nname = \"{name}\"\n{keys}\n\n{}",
            site_to(name)
        ),
    );
}

/// An environment whose upstream `named` is the hostname `backend.gcp.internal`, answered by a
/// DNS responder on loopback with 127.0.0.1.
async fn named_backend(dns_extra: &str) -> (Env, Origin, DnsResponder) {
    let (env, _root) = env_with_cert();
    let origin = Origin::start("resolved").await;
    let dns = DnsResponder::start("backend.gcp.internal", [127, 0, 0, 1].into()).await;
    let dns_section = format!(
        "[dns]\nresolvers = [\"{}\"]\nmin_ttl = \"1s\"\n{dns_extra}",
        dns.addr
    );
    let config = Config::new()
        .raw(&dns_section)
        .upstream_at("named", &[format!("backend.gcp.internal:{}", origin.port)])
        .raw(&site_to("named"));
    env.write_config("", config);
    (env, origin, dns)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hosts_wildcards_and_longest_prefix_route_requests() {
    let (env, root) = env_with_cert();
    let web = Origin::start("web").await;
    let api = Origin::start("api").await;
    let v2 = Origin::start("api-v2").await;
    let config = Config::new()
        .upstream("web", &[web.port])
        .upstream("api", &[api.port])
        .upstream("api-v2", &[v2.port])
        .site("wild", &["*.example.cn"])
        .proxy("/", "web")
        .site("api", &["api.example.cn"])
        .proxy("/", "api")
        .proxy("/v2/", "api-v2")
        .keys("replace_prefix = \"/internal/\"\nhost_header = \"api-v2.run.app\"")
        .route(
            "/v2/admin",
            "methods = [\"POST\"]\nrespond = { status = 403, body = \"no\" }",
        );
    env.write_config("", config);
    let _proxy = env.start();
    let client = tls_client(&[&root.pem]);
    let get = |host: &'static str, path: &'static str| {
        let client = client.clone();
        let port = env.https;
        async move {
            get_tls(&client, port, host, host, path)
                .await
                .expect("request")
        }
    };
    assert_eq!(
        get("www.example.cn", "/x").await.text(),
        "web /x host=www.example.cn"
    );
    assert_eq!(
        get("api.example.cn", "/v1/x").await.text(),
        "api /v1/x host=api.example.cn"
    );
    // Longest prefix wins; the GET falls through the POST-only route; prefix and Host rewritten.
    assert_eq!(
        get("api.example.cn", "/v2/admin?q=1").await.text(),
        "api-v2 /internal/admin?q=1 host=api-v2.run.app"
    );
    let unknown = get_plain(env.http, "nope.example.org", "/")
        .await
        .expect("GET");
    assert_eq!(unknown.status, 403, "a host no site serves is refused");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failover_when_one_backend_is_down() {
    let (env, _root) = env_with_cert();
    let up = Origin::start("up").await;
    let down = free_port();
    write_one_upstream(
        &env,
        "pool",
        &format!(
            r#"backends = ["127.0.0.1:{down}", "127.0.0.1:{up}"]
connect_timeout = "500ms""#,
            up = up.port
        ),
    );
    let _proxy = env.start();
    for i in 0..10 {
        let resp = get_plain(env.http, "example.cn", "/").await.expect("GET");
        assert_eq!(
            resp.status, 200,
            "request {i} failed over to the live backend"
        );
        assert!(resp.text().starts_with("up /"));
    }
    assert_eq!(up.hits(), 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_checks_eject_and_restore_backends() {
    let (env, _root) = env_with_cert();
    let a = Origin::start("a").await;
    let b = Origin::start("b").await;
    write_one_upstream(
        &env,
        "pool",
        &format!(
            r#"backends = ["127.0.0.1:{a}", "127.0.0.1:{b}"]
[upstreams.health_check]
kind = "http"
path = "/healthz"
interval = "100ms"
unhealthy_threshold = 1
healthy_threshold = 1"#,
            a = a.port,
            b = b.port
        ),
    );
    let _proxy = env.start();
    let names = |n: usize| {
        let port = env.http;
        async move {
            let mut seen = HashSet::new();
            for _ in 0..n {
                let r = get_plain(port, "example.cn", "/").await.expect("GET");
                assert_eq!(r.status, 200);
                seen.insert(r.text().split(' ').next().unwrap_or("").to_owned());
            }
            seen
        }
    };
    assert_eq!(names(6).await.len(), 2, "both backends serve while healthy");

    b.healthy.store(false, Ordering::SeqCst);
    // Wait for the checker to notice (100 ms interval), however loaded the machine is.
    let ejected = eventually(Duration::from_secs(5), || async {
        (names(2).await == HashSet::from(["a".to_owned()])).then_some(())
    })
    .await;
    assert!(ejected.is_some(), "the failing backend is taken out");
    let before = b.hits();
    assert_eq!(names(8).await, HashSet::from(["a".to_owned()]));
    assert_eq!(b.hits(), before, "the unhealthy backend gets no requests");

    b.healthy.store(true, Ordering::SeqCst);
    let back = eventually(Duration::from_secs(3), || async {
        names(4).await.contains("b").then_some(())
    })
    .await;
    assert!(back.is_some(), "the recovered backend serves again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_tls_is_verified() {
    let (env, _root) = env_with_cert();
    let backend_ca = Ca::root("Backend CA");
    let leaf = backend_ca.issue(&LeafSpec::new(&["backend.internal"], 0x9));
    let origin = Origin::start_tls("secure", &leaf.pem, &leaf.key_pem).await;
    let impostor_ca = Ca::root("Impostor CA");
    env.write("backend-ca.pem", &backend_ca.pem);
    env.write("impostor-ca.pem", &impostor_ca.pem);
    let tls = |sni: &str, ca: &str| format!("tls = true\nsni = \"{sni}\"\nca_file = \"{ca}\"");
    let config = Config::new()
        .upstream("good", &[origin.port])
        .keys(&tls("backend.internal", "backend-ca.pem"))
        .upstream("wrong-ca", &[origin.port])
        .keys(&tls("backend.internal", "impostor-ca.pem"))
        .upstream("wrong-name", &[origin.port])
        .keys(&tls("other.internal", "backend-ca.pem"))
        .raw(&site_routes(&[
            ("/good", "good"),
            ("/wrong-ca", "wrong-ca"),
            ("/wrong-name", "wrong-name"),
        ]));
    env.write_config("", config);
    let proxy = env.start();
    let good = get_plain(env.http, "example.cn", "/good")
        .await
        .expect("GET");
    assert_eq!(good.status, 200, "{}", proxy.log());
    assert!(good.text().starts_with("secure /good"));
    for path in ["/wrong-ca", "/wrong-name"] {
        let resp = get_plain(env.http, "example.cn", path).await.expect("GET");
        assert_eq!(resp.status, 502, "{path}: unverifiable backend is a 502");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_hostname_resolves_through_configured_dns() {
    let (env, _origin, dns) = named_backend("").await;
    let proxy = env.start();
    let resp = get_plain(env.http, "example.cn", "/x").await.expect("GET");
    assert_eq!(resp.status, 200, "{}", proxy.log());
    assert!(resp.text().starts_with("resolved /x"));
    assert!(dns.queries.load(Ordering::SeqCst) >= 1);
    // The answer's TTL bounds the refresh: the resolver is asked again.
    let asked_again = eventually(Duration::from_secs(10), || async {
        (dns.queries.load(Ordering::SeqCst) >= 2).then_some(())
    })
    .await;
    assert!(asked_again.is_some(), "refreshed within TTL bounds");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consistent_hashing_keeps_a_key_on_one_backend() {
    let (env, _root) = env_with_cert();
    let origins = [
        Origin::start("a").await,
        Origin::start("b").await,
        Origin::start("c").await,
    ];
    write_one_upstream(
        &env,
        "pool",
        &format!(
            r#"backends = ["127.0.0.1:{}", "127.0.0.1:{}", "127.0.0.1:{}"]
balance = "consistent"
hash_key = "header:x-user""#,
            origins[0].port, origins[1].port, origins[2].port
        ),
    );
    let _proxy = env.start();
    let mut chosen = HashSet::new();
    for user in 0..12 {
        let mut seen = HashSet::new();
        for _ in 0..4 {
            let raw = support::http::get_with("example.cn", "/", &format!("X-User: u{user}\r\n"));
            let r = support::http::raw_plain(env.http, &raw, None)
                .await
                .expect("GET");
            seen.insert(r.text().split(' ').next().unwrap_or("").to_owned());
        }
        assert_eq!(
            seen.len(),
            1,
            "user u{user} always lands on one backend: {seen:?}"
        );
        chosen.extend(seen);
    }
    assert!(chosen.len() >= 2, "keys spread over backends: {chosen:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_lookups_keep_the_last_good_addresses() {
    let (env, _origin, dns) = named_backend("timeout = \"200ms\"").await;
    let proxy = env.start();
    assert_eq!(
        get_plain(env.http, "example.cn", "/")
            .await
            .expect("GET")
            .status,
        200
    );
    // The resolver goes away; refreshes fail, the pool keeps its address.
    drop(dns);
    let failed = eventually(Duration::from_secs(10), || async {
        proxy
            .log()
            .contains("keeping last good addresses")
            .then_some(())
    })
    .await;
    assert!(failed.is_some(), "a refresh failed: {}", proxy.log());
    let resp = get_plain(env.http, "example.cn", "/again")
        .await
        .expect("GET");
    assert_eq!(resp.status, 200, "{}", proxy.log());
    assert!(
        proxy.log().contains("keeping last good addresses"),
        "{}",
        proxy.log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_timeout_is_504_and_refusal_is_502() {
    let (env, _root) = env_with_cert();
    let origin = Origin::start("slow").await;
    let closed = free_port();
    let config = Config::new()
        .upstream("slow", &[origin.port])
        .keys("read_timeout = \"300ms\"")
        .upstream("down", &[closed])
        .raw(&site_routes(&[("/", "slow"), ("/down", "down")]));
    env.write_config("", config);
    let _proxy = env.start();
    let started = std::time::Instant::now();
    let resp = get_plain(env.http, "example.cn", "/hang")
        .await
        .expect("GET");
    assert_eq!(resp.status, 504, "a backend that does not answer in time");
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(resp.header("x-request-id").is_some());
    let resp = get_plain(env.http, "example.cn", "/down")
        .await
        .expect("GET");
    assert_eq!(resp.status, 502, "a backend that refuses connections");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weighted_round_robin_follows_the_weights() {
    let (env, _root) = env_with_cert();
    let heavy = Origin::start("heavy").await;
    let light = Origin::start("light").await;
    write_one_upstream(
        &env,
        "pool",
        &format!(
            r#"backends = [{{ addr = "127.0.0.1:{heavy}", weight = 3 }}, {{ addr = "127.0.0.1:{light}", weight = 1 }}]"#,
            heavy = heavy.port,
            light = light.port
        ),
    );
    let _proxy = env.start();
    for _ in 0..40 {
        assert_eq!(
            get_plain(env.http, "example.cn", "/")
                .await
                .expect("GET")
                .status,
            200
        );
    }
    assert_eq!(heavy.hits() + light.hits(), 40);
    assert_eq!(
        heavy.hits(),
        30,
        "weight 3 of 4 (light got {})",
        light.hits()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_to_tls_backends() {
    let (env, _root) = env_with_cert();
    let backend_ca = Ca::root("Backend CA");
    let leaf = backend_ca.issue(&LeafSpec::new(&["backend.internal"], 0x9));
    let (port, _h2) = support::origins::start_h2_origin(&leaf.pem, &leaf.key_pem).await;
    env.write("backend-ca.pem", &backend_ca.pem);
    write_one_upstream(
        &env,
        "h2",
        &format!(
            r#"backends = ["127.0.0.1:{port}"]
tls = true
sni = "backend.internal"
ca_file = "backend-ca.pem"
http2 = true"#
        ),
    );
    let proxy = env.start();
    let resp = get_plain(env.http, "example.cn", "/over-h2")
        .await
        .expect("GET");
    assert_eq!(resp.status, 200, "{}", proxy.log());
    assert_eq!(
        resp.text(),
        "h2 /over-h2",
        "the HTTP/2-only origin answered"
    );
}
