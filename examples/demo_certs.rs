//! Generates the demo PKI for `make run` (`tests/support/demo_pki.rs` says what it is).
//!
//! `cargo run --example demo_certs -- certs/demo` writes what is missing of it, and a new OCSP
//! response for the leaf when the last is a day old. Never commit them.

#[path = "../tests/support/ocsp.rs"]
mod ocsp;
#[path = "../tests/support/pki.rs"]
mod pki;
#[path = "../tests/support/demo_pki.rs"]
mod support_demo_pki;

use std::path::PathBuf;

fn main() -> std::io::Result<()> {
    let dir = PathBuf::from(
        std::env::args()
            .nth(1)
            .unwrap_or_else(|| "certs/demo".into()),
    );
    for wrote in support_demo_pki::write(&dir)? {
        println!("demo PKI: wrote {}", dir.join(wrote).display());
    }
    Ok(())
}
