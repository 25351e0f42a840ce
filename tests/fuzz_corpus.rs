//! The fuzz targets' seeds and every input a fuzz run found (`fuzz/regressions/TARGET/`) run
//! through the same entry points on every `make test`: what once crashed stays fixed.

use std::path::Path;

fn inputs(target: &str) -> Vec<(String, Vec<u8>)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut found = Vec::new();
    for dir in [
        root.join("corpus").join(target),
        root.join("regressions").join(target),
    ] {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let is_seed =
                dir.ends_with(target) && dir.parent().is_some_and(|p| p.ends_with("corpus"));
            if is_seed && !name.starts_with("seed-") {
                continue;
            }
            let data = std::fs::read(entry.path()).expect("read input");
            found.push((format!("{}/{name}", dir.display()), data));
        }
    }
    found
}

fn run(target: &str, entry: fn(&[u8]), extra: &[&[u8]]) {
    let inputs = inputs(target);
    assert!(
        !inputs.is_empty(),
        "{target} has no seeds in fuzz/corpus/{target}/"
    );
    for (name, data) in &inputs {
        eprintln!("{name}");
        entry(data);
    }
    for data in extra {
        entry(data);
    }
}

#[test]
fn request_heads() {
    run(
        "request_head",
        menshen::fuzz::request_head,
        &[
            b"GET /%2e%2e/x HTTP/1.1\r\nHost: a\r\n\r\n",
            b"GET /a/%2E/b HTTP/1.1\r\nHost: a\r\n\r\n",
            b"GET /%25252e HTTP/1.1\r\nHost: a\r\n\r\n",
            b"GET //%2F HTTP/1.1\r\nHost: a\r\n\r\n",
        ],
    );
}

#[test]
fn targets() {
    run(
        "target",
        menshen::fuzz::target,
        &[
            b"/%2e%2E/",
            b"/.%2e/x",
            b"/a/.%2E",
            b"/%7E%7e?%41",
            b"/x\n[::1]:80",
            b"/\nA.B..",
            b"/\n.",
        ],
    );
}

#[test]
fn chunked_bodies() {
    run(
        "chunked",
        menshen::fuzz::chunked,
        &[
            b"\x010\r\n\r\n",
            b"\x00",
            b"\x05ffffffffffffff\r\n",
            b"\x020\r\nx:\r\n\r\n",
        ],
    );
}

#[test]
fn h2_requests() {
    run(
        "h2_request",
        menshen::fuzz::h2_request,
        &[
            b"GET / a.cn\ntransfer-encoding: chunked",
            b"POST / a.cn\ncontent-length: 3\ncontent-length: 3",
            b"GET / a.cn\nexpect: 100-continue\nupgrade: websocket\nconnection: upgrade",
            b"GET /%2e%2e a.cn",
        ],
    );
}

#[test]
fn configs() {
    run(
        "config",
        menshen::fuzz::config,
        &[
            b"",
            b"[[sites]]\nname = 1",
            b"\xff\xfe",
            b"[server]\nthreads = -1",
        ],
    );
}
