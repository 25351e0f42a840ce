//! What the post-quantum key exchange costs a full TLS 1.3 handshake with menshen.
//!
//! menshen's server configuration for a site (the default `[tls]` policy, which offers
//! X25519MLKEM768 first, and an ECDSA P-256 certificate from the store) against two rustls
//! clients, in memory:
//!
//! - `chrome`: offers X25519MLKEM768, X25519, secp256r1, secp384r1, with key shares for
//!   X25519MLKEM768 and X25519, as current Chrome does; menshen picks X25519MLKEM768.
//! - `x25519`: offers X25519 alone; menshen picks X25519.
//!
//! `server/*` times the server's reads, processing and writes; `total/*` the whole handshake,
//! from the client making its key shares to both sides being done.

#[path = "../tests/support/pki.rs"]
mod pki;
#[path = "support/handshake.rs"]
mod support;

use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use rustls::crypto::{aws_lc_rs, ring};
use rustls::NamedGroup;

/// A time a handshake reports: its name and how to take it.
type Side = (&'static str, fn(support::Timed) -> Duration);

fn bench(c: &mut Criterion) {
    let site = support::Site::new();
    let clients = [
        (
            "chrome",
            site.client(vec![
                aws_lc_rs::kx_group::X25519MLKEM768,
                ring::kx_group::X25519,
                ring::kx_group::SECP256R1,
                ring::kx_group::SECP384R1,
            ]),
            NamedGroup::X25519MLKEM768,
        ),
        (
            "x25519",
            site.client(vec![ring::kx_group::X25519]),
            NamedGroup::X25519,
        ),
    ];
    for (name, client, expected) in &clients {
        let chosen = support::handshake(&site.server, client).group;
        assert_eq!(chosen, *expected, "{name}: the group menshen chose");
    }
    let mut group = c.benchmark_group("post_quantum_handshake");
    // The two clients one after the other for each side, so the pair compared is measured
    // close together on a noisy machine.
    let sides: [Side; 2] = [("server", |t| t.server), ("total", |t| t.total)];
    for (side, pick) in sides {
        for (name, client, _) in &clients {
            group.bench_function(format!("{side}/{name}"), |b| {
                b.iter_custom(|iters| {
                    (0..iters)
                        .map(|_| pick(support::handshake(&site.server, client)))
                        .sum()
                })
            });
        }
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
