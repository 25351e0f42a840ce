//! Writes a fleet for the scale bench (`benches/scale_bench.py`): N sites, each with its own
//! certificate, as an operator with many filed hosts has them.
//!
//! `cargo run --release --example fleet -- DIR N SWAPS HTTPS_PORT HTTP_PORT` writes
//! `DIR/approved/ca.pem`, `DIR/live/site-I.crt` + `.key` for I < N (host `site-I.example.cn`),
//! `DIR/spare/site-0-K.crt` + `.key` for K < SWAPS (renewals of site 0, serial 1000 + K) and
//! `DIR/menshen.toml` (one site per certificate, each answering 200 itself).

#[path = "../tests/support/pki.rs"]
mod pki;

use std::fmt::Write as _;
use std::path::PathBuf;

fn arg(n: usize) -> String {
    std::env::args().nth(n).unwrap_or_else(|| {
        eprintln!("usage: fleet DIR N SWAPS HTTPS_PORT HTTP_PORT");
        std::process::exit(2)
    })
}

fn number(n: usize) -> u64 {
    arg(n).parse().unwrap_or_else(|_| {
        eprintln!("fleet: argument {n} is not a number");
        std::process::exit(2)
    })
}

fn main() -> std::io::Result<()> {
    let dir = PathBuf::from(arg(1));
    let (sites, swaps, https, http) = (number(2), number(3), number(4), number(5));
    for sub in ["approved", "live", "spare"] {
        std::fs::create_dir_all(dir.join(sub))?;
    }
    let ca = pki::Ca::root("menshen fleet bench root");
    std::fs::write(dir.join("approved/ca.pem"), &ca.pem)?;
    let mut config = format!(
        "[[listeners]]\nname = \"https\"\naddr = \"127.0.0.1:{https}\"\ntls = true\n\n\
         [[listeners]]\nname = \"http\"\naddr = \"127.0.0.1:{http}\"\n\n\
         [tls]\napproved_cas = [\"approved\"]\ncertificates = [\"live\"]\n\n\
         [reload]\npoll_interval = \"200ms\"\ndebounce = \"50ms\"\n\n[log]\nlevel = \"warn\"\n"
    );
    for i in 0..sites {
        let host = format!("site-{i}.example.cn");
        let leaf = ca.issue(&pki::LeafSpec::new(&[&host], i + 1));
        std::fs::write(dir.join(format!("live/site-{i}.crt")), &leaf.pem)?;
        std::fs::write(dir.join(format!("live/site-{i}.key")), &leaf.key_pem)?;
        let _ = write!(
            config,
            "\n[[sites]]\nname = \"site-{i}\"\nicp = \"京ICP备16063439号-1\"\nhosts = [\"{host}\"]\n\
             [[sites.routes]]\nprefix = \"/\"\nrespond = {{ body = \"ok\" }}\n"
        );
    }
    for k in 0..swaps {
        let leaf = ca.issue(&pki::LeafSpec::new(&["site-0.example.cn"], 1000 + k));
        std::fs::write(dir.join(format!("spare/site-0-{k}.crt")), &leaf.pem)?;
        std::fs::write(dir.join(format!("spare/site-0-{k}.key")), &leaf.key_pem)?;
    }
    std::fs::write(dir.join("menshen.toml"), config)?;
    println!(
        "{sites} sites and {swaps} spare renewals in {}",
        dir.display()
    );
    Ok(())
}
