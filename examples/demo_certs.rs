//! Generates the demo PKI for `make run`: a throwaway root and a leaf for localhost.
//!
//! `cargo run --example demo_certs -- certs/demo` writes `ca.crt`, `ca.key` and
//! `live/localhost.crt` + `live/localhost.key`, unless `ca.crt` already exists, and the access
//! log's chain key `access-log.key` unless it exists. Never commit them.

#[path = "../tests/support/pki.rs"]
mod pki;

use std::path::PathBuf;

fn main() -> std::io::Result<()> {
    let dir = PathBuf::from(
        std::env::args()
            .nth(1)
            .unwrap_or_else(|| "certs/demo".into()),
    );
    let key = dir.join("access-log.key");
    if !key.exists() {
        std::fs::create_dir_all(&dir)?;
        std::fs::write(&key, menshen::observe::chain::ChainKey::generate()?)?;
        println!("demo access log chain key written to {}", key.display());
    }
    if dir.join("ca.crt").exists() {
        return Ok(());
    }
    std::fs::create_dir_all(dir.join("live"))?;
    let ca = pki::Ca::root("menshen demo root CA (DEMO ONLY, never approve in production)");
    let spec = pki::LeafSpec::new(&["localhost", "demo.menshen.test"], 1)
        .ip("127.0.0.1")
        .valid(-1, 397);
    let leaf = ca.issue(&spec);
    std::fs::write(dir.join("ca.crt"), &ca.pem)?;
    std::fs::write(dir.join("ca.key"), ca.key_pem())?;
    std::fs::write(dir.join("live/localhost.crt"), &leaf.pem)?;
    std::fs::write(dir.join("live/localhost.key"), &leaf.key_pem)?;
    println!("demo PKI written to {}", dir.display());
    Ok(())
}
