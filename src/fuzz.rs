//! Entry points for `cargo fuzz` (`fuzz/`, run by `make fuzz`): each takes arbitrary bytes and
//! checks what must hold for any input. A panic, a hang or unbounded memory is a finding; each
//! finding becomes a test. Not an API.

use crate::semantics::target::{canonical, canonical_target};

/// An HTTP/1 request head as the engine reads it: parsed, classified, made canonical. The
/// canonical target is a fixed point: made canonical again, it does not change (a spelling
/// that changed twice could pass a takedown once and reach the backend as another path).
pub fn request_head(data: &[u8]) {
    if let Some(target) = crate::proxy::fuzz_request_head(data) {
        fixed_point(&target);
    }
}

/// A request target alone, as any engine makes it canonical.
pub fn target(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (target, host) = text.split_once('\n').unwrap_or((text, "example.cn"));
    if let Ok((target, host)) = canonical(target, Some(host)) {
        fixed_point(target.as_str());
        let again = crate::semantics::target::canonical_host(host.as_str());
        assert_eq!(
            again.as_ref().map(|h| h.as_str()),
            Ok(host.as_str()),
            "a canonical Host is canonical"
        );
    }
}

fn fixed_point(target: &str) {
    let again = canonical_target(target);
    assert_eq!(
        again.as_ref().map(|t| t.as_str()),
        Ok(target),
        "canonical twice: {target:?}"
    );
}

/// A chunked body from a backend, split in two reads at the first byte's position: the
/// framing ends at the same place, with the same payload, however the bytes arrive.
pub fn chunked(data: &[u8]) {
    crate::proxy::fuzz_chunked(data);
}

/// An HTTP/2 request (fields from `name: value` lines, the first line `METHOD PATH
/// AUTHORITY`) mapped to the HTTP/1 request a backend gets: the head must parse as one
/// HTTP/1 request, with nothing after it.
pub fn h2_request(data: &[u8]) {
    crate::proxy::fuzz_h2_request(data);
}

/// A configuration file: loaded as a start would, it is a config or a list of errors.
pub fn config(data: &[u8]) {
    let Ok(dir) = tempfile_dir() else {
        return;
    };
    let path = dir.join("menshen.toml");
    if std::fs::write(&path, data).is_ok() {
        let _ = crate::config::load(&path, None);
    }
}

fn tempfile_dir() -> std::io::Result<std::path::PathBuf> {
    let dir = std::env::temp_dir().join(format!("menshen-fuzz-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}
