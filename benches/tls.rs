//! SNI certificate selection as the number of certificates grows (10 to 10,000), and the
//! server's CPU time for one full TLS 1.3 handshake by key exchange group.
//!
//! Selection is a hash lookup (exact name, then the wildcard of the parent), so the figures should
//! stay flat. Certificates are made with rcgen at bench time under a throwaway approved root.
//! The handshakes run in memory with menshen's own rustls configuration (`TlsProtocol`, ECDSA
//! P-256 certificate) against a rustls client offering one group; only the server's calls are
//! timed.

#[path = "../tests/support/pki.rs"]
mod pki;
#[path = "support/handshake.rs"]
mod support;

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use rustls::crypto::SupportedKxGroup;

const SIZES: [usize; 3] = [10, 1_000, 10_000];

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("sni_selection");
    group.sample_size(50);
    for n in SIZES {
        let (_dir, _root, store) = support::store(n);
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

fn handshakes(c: &mut Criterion) {
    let site = support::Site::new();
    let groups: [(&str, &'static dyn SupportedKxGroup); 3] = [
        ("X25519", rustls::crypto::ring::kx_group::X25519),
        ("secp256r1", rustls::crypto::ring::kx_group::SECP256R1),
        (
            "X25519MLKEM768",
            rustls::crypto::aws_lc_rs::kx_group::X25519MLKEM768,
        ),
    ];
    let mut group = c.benchmark_group("full_handshake_server");
    for (name, kx) in groups {
        let client = site.client(vec![kx]);
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                (0..iters)
                    .map(|_| support::handshake(&site.server, &client).server)
                    .sum()
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench, handshakes);
criterion_main!(benches);
