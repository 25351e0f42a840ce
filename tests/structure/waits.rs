//! Tests wait on conditions (`support::eventually`, a port that accepts, a process that exits),
//! never on a fixed sleep: a sleep is either too short on a loaded machine or wasted time. The
//! sleeps left are pauses that are themselves the thing tested or a polling loop's interval,
//! counted per file so that a new one has to be argued for here.

use std::path::Path;

use super::rust_files;

/// Files under `tests/` with `sleep(` calls, how many, and why they are not waits.
const SLEEPS: &[(&str, usize, &str)] = &[
    (
        "tests/h1_limits.rs",
        1,
        "a client that does not read while the send timeout runs",
    ),
    (
        "tests/support/cache_origin.rs",
        2,
        "an origin slow to answer, so that 100 concurrent misses arrive while its one fetch is \
         under way, and a revalidation while another request comes: shaping, not waiting",
    ),
    (
        "tests/h1_engine.rs",
        1,
        "a pause inside a WebSocket conversation",
    ),
    (
        "tests/retries.rs",
        2,
        "a request body sent in two parts with a pause between (HTTP/1.1 and HTTP/2), so that \
         the proxy sends the first on before the second comes: shaping, not waiting",
    ),
    (
        "tests/connections.rs",
        3,
        "a header trickled and an idle keep-alive: the header clock",
    ),
    (
        "tests/chaos.rs",
        2,
        "exit polling; a SIGHUP burst settles (no pending-reload state to wait on)",
    ),
    (
        "tests/support/mod.rs",
        3,
        "the polling loops of wait_port, wait_exit, eventually",
    ),
    (
        "tests/support/traffic.rs",
        2,
        "a client's back-off before it reconnects",
    ),
    (
        "tests/support/origins.rs",
        2,
        "a slow origin and a paced download",
    ),
    (
        "tests/support/grpc.rs",
        1,
        "a backend that resets a stream after part of its body",
    ),
    (
        "tests/support/backend.rs",
        2,
        "a backend that breaks off mid-body or closes",
    ),
];

#[test]
fn tests_wait_on_conditions_not_sleeps() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    rust_files(&root.join("tests"), &mut files);
    let mut found: Vec<(String, usize)> = files
        .iter()
        .filter(|f| !f.starts_with(root.join("tests/structure")))
        .filter_map(|f| {
            let text = std::fs::read_to_string(f).ok()?;
            let n = text.matches("sleep(").count();
            let name = f.strip_prefix(root).ok()?.display().to_string();
            (n > 0).then_some((name, n))
        })
        .collect();
    found.sort();
    let mut allowed: Vec<(String, usize)> = SLEEPS
        .iter()
        .map(|(f, n, _)| ((*f).to_owned(), *n))
        .collect();
    allowed.sort();
    assert_eq!(
        found, allowed,
        "a test waits with a fixed sleep: wait on a condition (support::eventually, \
         Backend::seen_since, wait_port) instead, or argue for the pause in SLEEPS"
    );
}
