//! `menshen certs request` / `certs install` from a test: a CA signs the CSR, the delivery is
//! made in the form under test, the install runs against a running proxy.

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use super::http::{handshake_serial, tls_client};
use super::pki::Ca;
use super::{eventually, Env};

/// What a `menshen certs …` run printed.
pub struct Ran {
    pub ok: bool,
    pub stdout: String,
    pub stderr: String,
}

/// `menshen certs ARGS --config env/menshen.toml`, with `envs` set.
pub fn certs(env: &Env, args: &[&str], envs: &[(&str, &str)]) -> Ran {
    let out: Output = Command::new(env!("CARGO_BIN_EXE_menshen"))
        .arg("certs")
        .args(args)
        .arg("--config")
        .arg(env.path("menshen.toml"))
        .env_remove("MENSHEN_PFX_PASSWORD")
        .envs(envs.iter().copied())
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run menshen certs");
    Ran {
        ok: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Requests a certificate for `hosts` (comma-separated); the CSR.
pub fn request(env: &Env, hosts: &str) -> String {
    let ran = certs(env, &["request", "--hosts", hosts], &[]);
    assert!(ran.ok, "certs request: {}", ran.stderr);
    ran.stdout
}

/// `certs install ARGS`: the files are relative to the test directory.
pub fn install(env: &Env, args: &[&str], envs: &[(&str, &str)]) -> Ran {
    let mut full = vec!["install".to_owned()];
    for a in args {
        if a.starts_with("--") {
            full.push((*a).to_owned());
        } else {
            full.push(env.path(a).display().to_string());
        }
    }
    let refs: Vec<&str> = full.iter().map(String::as_str).collect();
    certs(env, &refs, envs)
}

/// Runs `openssl ARGS` in `dir`; fails the test (never skips) when openssl is missing.
pub fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl is installed (.ci/run installs it)");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Waits until a handshake for `sni` is served the certificate with `serial`.
pub async fn served_serial(env: &Env, root: &Ca, sni: &str, serial: &str) -> bool {
    let client = tls_client(&[&root.pem]);
    eventually(Duration::from_secs(5), || {
        let client = client.clone();
        async move {
            let got = handshake_serial(&client, env.https, sni).await.ok();
            (got.as_deref() == Some(serial)).then_some(())
        }
    })
    .await
    .is_some()
}

/// Every path under `live/` with its content, to show nothing changed.
pub fn listing(env: &Env) -> Vec<(String, Vec<u8>)> {
    fn walk(dir: &Path, base: &Path, out: &mut Vec<(String, Vec<u8>)>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            let p = e.path();
            let rel = p.strip_prefix(base).unwrap_or(&p).display().to_string();
            if p.is_dir() {
                walk(&p, base, out);
            } else {
                out.push((rel, std::fs::read(&p).unwrap_or_default()));
            }
        }
    }
    let mut out = Vec::new();
    walk(&env.path("live"), &env.path("live"), &mut out);
    out.sort();
    out
}
