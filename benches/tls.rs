//! SNI certificate selection as the number of certificates grows (10 to 10,000).
//!
//! Selection is a hash lookup (exact name, then the wildcard of the parent), so the figures should
//! stay flat. Certificates are made with rcgen at bench time under a throwaway approved root.

#[path = "../tests/support/pki.rs"]
mod pki;

use std::hint::black_box;
use std::path::PathBuf;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use menshen::tls::store::{CertSources, CertStore};
use menshen::tls::ApprovedRoots;

const SIZES: [usize; 3] = [10, 1_000, 10_000];

fn store(n: usize) -> (tempfile::TempDir, CertStore) {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = pki::Ca::root("Bench Approved Root");
    std::fs::write(dir.path().join("root.pem"), &root.pem).expect("root");
    let live = dir.path().join("live");
    std::fs::create_dir_all(&live).expect("live");
    for i in 0..n {
        // Half exact names, half wildcards.
        let name = if i % 2 == 0 {
            format!("host{i}.example.cn")
        } else {
            format!("*.w{i}.example.cn")
        };
        let leaf = root.issue(&pki::LeafSpec::new(&[name.as_str()], i as u64 + 1));
        std::fs::write(live.join(format!("c{i}.crt")), &leaf.pem).expect("crt");
        std::fs::write(live.join(format!("c{i}.key")), &leaf.key_pem).expect("key");
    }
    let roots = ApprovedRoots::load(&[dir.path().join("root.pem")]).expect("roots");
    let sources = CertSources {
        dirs: vec![live],
        pairs: Vec::<(String, PathBuf, PathBuf)>::new(),
    };
    let load = CertStore::load(&sources, None, &roots, None, menshen::tls::cert::unix_now());
    assert!(load.errors.is_empty(), "{:?}", load.errors.first());
    assert_eq!(load.store.certs().len(), n);
    (dir, load.store)
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("sni_selection");
    group.sample_size(50);
    for n in SIZES {
        let (_dir, store) = store(n);
        let exact = format!("host{}.example.cn", (n / 2) & !1);
        let wild = format!("api.w{}.example.cn", (n / 2) | 1);
        assert!(store.resolve(Some(&exact)).is_some() && store.resolve(Some(&wild)).is_some());
        group.bench_with_input(BenchmarkId::new("exact", n), &n, |b, _| {
            b.iter(|| black_box(store.resolve(Some(black_box(&exact)))))
        });
        group.bench_with_input(BenchmarkId::new("wildcard", n), &n, |b, _| {
            b.iter(|| black_box(store.resolve(Some(black_box(&wild)))))
        });
        group.bench_with_input(BenchmarkId::new("unknown", n), &n, |b, _| {
            b.iter(|| black_box(store.resolve(Some(black_box("nobody.example.org")))))
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
