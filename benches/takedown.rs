//! Per-request cost of the takedown lists (`policy.takedown_files`) at 10 and 100,000 entries:
//! the whole policy chain on a request that passes and on one an entry blocks. Both should stay
//! flat as the lists grow (a hash lookup on the host and the exact path, a trie walk along the
//! path for the longest prefix).

use std::fmt::Write as _;
use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use http::Method;
use menshen::config::compile::compile;
use menshen::config::file::FileConfig;
use menshen::policy::Request;
use menshen::snapshot::Snapshot;

const SIZES: [usize; 2] = [10, 100_000];

/// One site with a takedown list of `n` entries: a third whole hosts elsewhere, a third
/// prefixes and a third exact URLs on the site's own host.
fn snapshot(dir: &std::path::Path, n: usize) -> Snapshot {
    let mut list = String::from("# bench list\n");
    for i in 0..n {
        let _ = match i % 3 {
            0 => writeln!(list, "host{i}.example.cn case-{i}"),
            1 => writeln!(list, "shop.example.cn/removed/{i}/ case-{i}"),
            _ => writeln!(
                list,
                "https://shop.example.cn/item/{i}.html case-{}",
                i / 100
            ),
        };
    }
    std::fs::write(dir.join("takedowns.txt"), list).expect("write list");
    let toml = "[[listeners]]\nname = \"http\"\naddr = \"127.0.0.1:1\"\n\n[policy]\n\
                takedown_files = [\"takedowns.txt\"]\n\
                [[sites]]\nname = \"shop\"\nicp = \"京ICP备16063439号-1\"\nhosts = [\"shop.example.cn\"]\n\
                [[sites.routes]]\nprefix = \"/\"\nrespond = { body = \"ok\" }\n";
    let file: FileConfig = toml::from_str(toml).expect("bench config parses");
    match compile(&dir.join("bench.toml"), file, None) {
        Ok(load) => load.snapshot,
        Err(errors) => panic!("bench config: {errors:?}"),
    }
}

fn bench(c: &mut Criterion) {
    let client: std::net::IpAddr = "203.0.113.77".parse().expect("ip");
    let dir = tempfile::tempdir().expect("tempdir");
    let mut group = c.benchmark_group("takedown");
    for n in SIZES {
        let snap = snapshot(dir.path(), n);
        let host = "shop.example.cn";
        let site_idx = snap.router.find(host).expect("site");
        let site = snap.router.site_at(site_idx);
        let check = |path: &str| {
            let route = site.and_then(|s| s.route(path, &Method::GET));
            let facts = Request {
                client,
                tls: false,
                sni: None,
                host,
                method: &Method::GET,
                path_and_query: path,
                path,
                header_bytes: 400,
                content_length: None,
                site: site.map(|s| &s.policy),
                route: route.map(|r| &r.policy),
                certs: &snap.certs,
                client_cert: None,
                now: std::time::Instant::now(),
            };
            snap.policy.chain.check(&facts).map(|d| d.status)
        };
        let blocked = "/removed/4/page";
        assert_eq!(
            check(blocked),
            Some(451),
            "{n} entries: {blocked} is taken down"
        );
        assert_eq!(check("/item/7.htm"), None, "{n} entries: passes");
        group.bench_with_input(BenchmarkId::new("chain_pass", n), &n, |b, _| {
            b.iter(|| black_box(check(black_box("/item/7.htm"))))
        });
        group.bench_with_input(BenchmarkId::new("chain_blocked", n), &n, |b, _| {
            b.iter(|| black_box(check(black_box(blocked))))
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
