//! The demo's PKI, as `make run` uses it (`examples/demo_certs.rs` writes it into
//! `certs/demo/`; the tests of the shipped configs lay it out the same way): a throwaway root
//! and its leaf for localhost, an OCSP response for the leaf that the demo staples, a client CA
//! and a client certificate for the demo site's optional mutual TLS, and the access log's chain
//! key.
#![allow(dead_code)]

use std::path::Path;
use std::time::{Duration, SystemTime};

use super::ocsp::{response, Answer, Issuer};
use super::pki::{Ca, LeafSpec};

/// How long the demo's OCSP response is good for; `make run` makes a new one each day.
const OCSP_VALID: Duration = Duration::from_secs(7 * 24 * 3600);
const OCSP_FRESH: Duration = Duration::from_secs(24 * 3600);

/// Writes under `dir` whatever of the demo PKI is missing (and an OCSP response older than a
/// day): the paths it wrote, relative to `dir`.
pub fn write(dir: &Path) -> std::io::Result<Vec<&'static str>> {
    let mut wrote = Vec::new();
    std::fs::create_dir_all(dir.join("live"))?;
    let mut put = |rel: &'static str, text: &[u8]| {
        wrote.push(rel);
        std::fs::write(dir.join(rel), text)
    };
    if !dir.join("access-log.key").exists() {
        put(
            "access-log.key",
            menshen::observe::chain::ChainKey::generate()?.as_bytes(),
        )?;
    }
    if !dir.join("ca.crt").exists() {
        let ca = Ca::root("menshen demo root CA (DEMO ONLY, never approve in production)");
        let spec = LeafSpec::new(&["localhost", "demo.menshen.test"], 1)
            .ip("127.0.0.1")
            .valid(-1, 397);
        let leaf = ca.issue(&spec);
        put("ca.crt", ca.pem.as_bytes())?;
        put("ca.key", ca.key_pem().as_bytes())?;
        put("live/localhost.crt", leaf.pem.as_bytes())?;
        put("live/localhost.key", leaf.key_pem.as_bytes())?;
    }
    if !dir.join("clients-ca.crt").exists() {
        let clients = Ca::root("menshen demo client CA (DEMO ONLY)");
        let client = clients.issue_client("demo client");
        put("clients-ca.crt", clients.pem.as_bytes())?;
        put("client.crt", client.pem.as_bytes())?;
        put("client.key", client.key_pem.as_bytes())?;
    }
    let ocsp = dir.join("live/localhost.ocsp");
    let age = std::fs::metadata(&ocsp)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|at| SystemTime::now().duration_since(at).ok());
    if age.is_none_or(|age| age > OCSP_FRESH) {
        let issuer = Issuer::from_files(&dir.join("ca.crt"), &dir.join("ca.key"))?;
        let leaf = std::fs::read_to_string(dir.join("live/localhost.crt"))?;
        put(
            "live/localhost.ocsp",
            &response(&issuer, &leaf, Answer::Good, OCSP_VALID),
        )?;
    }
    Ok(wrote)
}
