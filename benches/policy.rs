//! Per-request cost of routing and the whole policy chain as sites and CIDR rules grow.
//!
//! Every figure should stay flat from 10 to 10,000 sites and rules: the data path only does
//! lookups into state compiled at load. Compare the ratios within one run, not absolute times.

use std::fmt::Write as _;
use std::hint::black_box;
use std::time::Instant;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use http::Method;
use menshen::config::compile::compile;
use menshen::config::file::FileConfig;
use menshen::policy::Request;
use menshen::snapshot::Snapshot;

const SIZES: [usize; 3] = [10, 1_000, 10_000];

/// A config with `n` sites (3 routes each) and `n` deny rules that do not match the client.
fn snapshot(n: usize) -> Snapshot {
    let mut toml = String::from(
        "[[listeners]]\nname = \"http\"\naddr = \"127.0.0.1:1\"\n\n[policy]\nrate_limit = { requests_per_second = 1e9, burst = 1000000 }\ndeny = [",
    );
    for i in 0..n {
        // Mixed /24 and /32 entries in 100.64.0.0/10 and 198.18.0.0/15, never the client.
        let (a, b) = ((i >> 8) & 0x3f, i & 0xff);
        let _ = write!(toml, "\"100.{}.{b}.0/24\", \"198.18.{}.{b}\",", 64 + a, a);
    }
    toml.push_str("]\n[[upstreams]]\nname = \"u\"\nbackends = [\"127.0.0.1:2\"]\n");
    for i in 0..n {
        let _ = write!(
            toml,
            "[[sites]]\nname = \"s{i}\"\nicp = \"京ICP备16063439号-1\"\nhosts = [\"site{i}.example.cn\", \"*.w{i}.example.cn\"]\n\
             [[sites.routes]]\nprefix = \"/\"\nupstream = \"u\"\n\
             [[sites.routes]]\nprefix = \"/api/\"\nupstream = \"u\"\n\
             [[sites.routes]]\nprefix = \"/api/v2/\"\nupstream = \"u\"\nrate_limit = {{ requests_per_second = 1e9, burst = 1000000 }}\n"
        );
    }
    let file: FileConfig = toml::from_str(&toml).expect("bench config parses");
    let path = std::path::Path::new("bench.toml");
    match compile(path, file, None) {
        Ok(load) => load.snapshot,
        Err(errors) => panic!("bench config: {errors:?}"),
    }
}

fn bench(c: &mut Criterion) {
    let client: std::net::IpAddr = "203.0.113.77".parse().expect("ip");
    let mut group = c.benchmark_group("per_request");
    for n in SIZES {
        let snap = snapshot(n);
        let host = format!("site{}.example.cn", n / 2);
        let wild = format!("a.w{}.example.cn", n / 3);
        group.bench_with_input(BenchmarkId::new("host_lookup_exact", n), &n, |b, _| {
            b.iter(|| black_box(snap.router.find(black_box(&host))))
        });
        group.bench_with_input(BenchmarkId::new("host_lookup_wildcard", n), &n, |b, _| {
            b.iter(|| black_box(snap.router.find(black_box(&wild))))
        });
        let site_idx = snap.router.find(&host).expect("site");
        let site = snap.router.site_at(site_idx).expect("site");
        group.bench_with_input(BenchmarkId::new("route_match", n), &n, |b, _| {
            b.iter(|| black_box(site.find_route(black_box("/api/v2/users/7"), &Method::GET)))
        });
        group.bench_with_input(BenchmarkId::new("policy_chain", n), &n, |b, _| {
            b.iter(|| {
                let site_idx = snap.router.find(black_box(&host));
                let site = site_idx.and_then(|i| snap.router.site_at(i));
                let route = site.and_then(|s| s.route("/api/v2/users/7", &Method::GET));
                let facts = Request {
                    client,
                    tls: false,
                    sni: None,
                    host: &host,
                    method: &Method::GET,
                    path_and_query: "/api/v2/users/7?x=1",
                    path: "/api/v2/users/7",
                    header_bytes: 400,
                    content_length: None,
                    site: site.map(|s| &s.policy),
                    route: route.map(|r| &r.policy),
                    certs: &snap.certs,
                    client_cert: None,
                    now: Instant::now(),
                };
                let denial = snap.policy.chain.check(&facts);
                assert!(denial.is_none());
                black_box(denial)
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
