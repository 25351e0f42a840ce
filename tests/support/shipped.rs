//! The repository's shipped configs (`conf/`) in a directory laid out as the repository is,
//! with the approved roots and the demo PKI that `make demo-certs` writes.
#![allow(dead_code)]

use std::path::Path;

use super::pki::{Ca, LeafSpec};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// Copies `conf/` and `certs/approved/` into `d` and writes a demo CA, its leaf for
/// `localhost` and the access log's chain key under `certs/demo/`: the demo CA's PEM.
pub fn lay_out(d: &Path) -> String {
    for sub in ["conf/errors", "certs/approved", "certs/demo/live"] {
        std::fs::create_dir_all(d.join(sub)).expect("mkdir");
    }
    // The config and the example files the reference names beside it (a takedown list, shipping
    // credentials, error pages).
    for dir in ["conf", "conf/errors"] {
        for file in std::fs::read_dir(format!("{ROOT}/{dir}")).expect("conf") {
            let file = file.expect("entry");
            if file.file_type().expect("type").is_file() {
                std::fs::copy(file.path(), d.join(dir).join(file.file_name())).expect("copy");
            }
        }
    }
    for entry in std::fs::read_dir(format!("{ROOT}/certs/approved")).expect("approved") {
        let entry = entry.expect("entry");
        std::fs::copy(
            entry.path(),
            d.join("certs/approved").join(entry.file_name()),
        )
        .expect("copy root");
    }
    let ca = Ca::root("menshen demo root CA (DEMO ONLY, never approve in production)");
    let leaf = ca.issue(
        &LeafSpec::new(&["localhost", "demo.menshen.test"], 1)
            .ip("127.0.0.1")
            .valid(-1, 397),
    );
    let write = |rel: &str, text: &str| std::fs::write(d.join(rel), text).expect("write");
    write("certs/demo/ca.crt", &ca.pem);
    write("certs/demo/live/localhost.crt", &leaf.pem);
    write("certs/demo/live/localhost.key", &leaf.key_pem);
    let chain_key = menshen::observe::chain::ChainKey::generate().expect("chain key");
    write("certs/demo/access-log.key", &chain_key);
    ca.pem
}
