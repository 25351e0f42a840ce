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

use std::hint::black_box;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use menshen::tls::provider::TlsProtocol;
use menshen::tls::store::{CertSources, CertStore};
use menshen::tls::ApprovedRoots;
use rustls::crypto::SupportedKxGroup;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

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

/// One certificate for every ClientHello.
#[derive(Debug)]
struct One(Arc<CertifiedKey>);

impl ResolvesServerCert for One {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.clone())
    }
}

/// The server's time (its reads, handshake processing and writes) for one full handshake.
fn server_handshake(
    server: &Arc<rustls::ServerConfig>,
    client: &Arc<rustls::ClientConfig>,
) -> Duration {
    let name = rustls::pki_types::ServerName::try_from("bench.example.cn").expect("name");
    let mut c = rustls::ClientConnection::new(client.clone(), name).expect("client");
    let mut s = rustls::ServerConnection::new(server.clone()).expect("server");
    let mut timed = Duration::ZERO;
    let mut buf = Vec::with_capacity(8192);
    while c.is_handshaking() || s.is_handshaking() {
        buf.clear();
        while c.wants_write() {
            c.write_tls(&mut buf).expect("client write");
        }
        let start = Instant::now();
        let mut rd = &buf[..];
        while !rd.is_empty() {
            s.read_tls(&mut rd).expect("server read");
        }
        s.process_new_packets().expect("server handshake");
        let mut out = Vec::with_capacity(8192);
        while s.wants_write() {
            s.write_tls(&mut out).expect("server write");
        }
        timed += start.elapsed();
        let mut rd = &out[..];
        while !rd.is_empty() {
            c.read_tls(&mut rd).expect("client read");
        }
        c.process_new_packets().expect("client handshake");
    }
    timed
}

fn handshakes(c: &mut Criterion) {
    let root = pki::Ca::root("Bench Approved Root");
    let leaf = root.issue(&pki::LeafSpec::new(&["bench.example.cn"], 1));
    let chain = rustls_pemfile::certs(&mut leaf.pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .expect("chain");
    let key = rustls_pemfile::private_key(&mut leaf.key_pem.as_bytes())
        .expect("key PEM")
        .expect("key");
    let key = rustls::crypto::ring::sign::any_supported_type(&key).expect("signing key");
    let resolver = Arc::new(One(Arc::new(CertifiedKey::new(chain, key))));
    let sessions = TlsProtocol::session_cache();
    let server = TlsProtocol::default()
        .server_config(resolver, None, &sessions)
        .expect("server config");
    let server = Arc::new(server);
    let mut roots = rustls::RootCertStore::empty();
    for der in rustls_pemfile::certs(&mut root.pem.as_bytes()) {
        roots.add(der.expect("root")).expect("add root");
    }
    let roots = Arc::new(roots);
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
        let mut provider = rustls::crypto::ring::default_provider();
        provider.kx_groups = vec![kx];
        let mut client = rustls::ClientConfig::builder_with_provider(Arc::new(provider))
            .with_protocol_versions(&[&rustls::version::TLS13])
            .expect("TLS 1.3")
            .with_root_certificates(roots.clone())
            .with_no_client_auth();
        // Every handshake full: never offer a session.
        client.resumption = rustls::client::Resumption::disabled();
        let client = Arc::new(client);
        group.bench_function(name, |b| {
            b.iter_custom(|iters| (0..iters).map(|_| server_handshake(&server, &client)).sum())
        });
    }
    group.finish();
}

criterion_group!(benches, bench, handshakes);
criterion_main!(benches);
