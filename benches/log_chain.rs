//! What tamper evidence costs the access log writer per line: a typical line written plain
//! (what `tamper_evident = false` does) beside the same line with its chain fields (one
//! HMAC-SHA256 over the previous chain value and the line). The writer is a thread of its own,
//! so this is CPU the request path never waits on; `make bench`'s peers run shows it in the
//! proxy's total.

use std::hint::black_box;
use std::io::Write as _;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use menshen::observe::chain::{ChainKey, Chainer};

/// A line as the access log writes it for a proxied GET over TLS (about 480 bytes).
const LINE: &str = r#"{"ts":"2026-12-07T13:57:11.059+00:00","client_ip":"203.0.113.7","client_port":49696,"listener":"https","tls_version":"TLSv1.3","tls_cipher":"TLS13_AES_128_GCM_SHA256","sni":"shop.example.cn","host":"shop.example.cn","method":"GET","path":"/static/app.4f2a9c.js","query":null,"status":200,"bytes_in":0,"bytes_out":48213,"duration_ms":31,"upstream":"10.128.0.12:8080","upstream_status":200,"request_id":"98eafcb06a231bd700000000000380db","user_agent":"Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X)","decision":"allow"}"#;

fn per_line(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let key_file = dir.path().join("access-log.key");
    std::fs::write(&key_file, ChainKey::generate().expect("key")).expect("write key");
    let key = ChainKey::load(&key_file).expect("load key");
    let mut out = Vec::with_capacity(64 * 1024);

    let mut group = c.benchmark_group("access_log_line");
    group.throughput(Throughput::Elements(1));
    group.bench_function("plain", |b| {
        b.iter(|| {
            out.clear();
            out.write_all(black_box(LINE).as_bytes()).expect("write");
            out.write_all(b"\n").expect("write");
            black_box(&out);
        })
    });
    let mut chain = Chainer::new(&key);
    group.bench_function("chained", |b| {
        b.iter(|| {
            out.clear();
            chain.write(&mut out, black_box(LINE)).expect("write");
            black_box(&out);
        })
    });
    group.finish();
}

criterion_group!(benches, per_line);
criterion_main!(benches);
