//! The repository's shipped configs (`conf/`) in a directory laid out as the repository is,
//! with the approved roots and the demo PKI that `make demo-certs` writes.
#![allow(dead_code)]

use std::path::Path;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// Copies `conf/` and `certs/approved/` into `d` and writes the demo PKI under `certs/demo/`
/// (`demo_pki`): the demo CA's PEM.
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
    super::demo_pki::write(&d.join("certs/demo")).expect("demo PKI");
    std::fs::read_to_string(d.join("certs/demo/ca.crt")).expect("demo CA")
}
