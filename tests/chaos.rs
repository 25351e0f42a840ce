//! Fifty reloads under traffic, as a careless operator and a late certificate renewal would
//! make them: good renewals, certificates from an unapproved CA, broken TOML, a mistyped
//! certificate directory, a backend host that does not resolve, SIGHUP storms, and two binary
//! upgrades among them. Steady keep-alive clients (HTTP/1.1 GETs and POSTs, HTTP/2 streams) lose
//! no request; every reload is counted under its result; the certificate served is always the
//! last good one.

mod support;

use std::path::PathBuf;
use std::process::Child;
use std::time::Duration;

use support::h1::Backend;
use support::http::{handshake_serial, tls_client};
use support::origins::DnsResponder;
use support::pki::{Ca, LeafSpec};
use support::traffic::{clients, progress, stop, Tally};
use support::{admin, eventually, free_port, Env, Running};

/// The serving process: the first one, or one a binary upgrade started.
enum Proc {
    First(Running),
    Upgraded(Child, PathBuf),
}

impl Proc {
    fn pid(&self) -> String {
        match self {
            Proc::First(r) => r.child.id().to_string(),
            Proc::Upgraded(c, _) => c.id().to_string(),
        }
    }

    fn log(&self) -> String {
        match self {
            Proc::First(r) => r.log(),
            Proc::Upgraded(_, log) => std::fs::read_to_string(log).unwrap_or_default(),
        }
    }

    /// Waits for the process to exit: its code.
    fn wait_exit(&mut self, within: Duration) -> Option<i32> {
        let end = std::time::Instant::now() + within;
        while std::time::Instant::now() < end {
            let done = match self {
                Proc::First(r) => r.child.try_wait(),
                Proc::Upgraded(c, _) => c.try_wait(),
            };
            if let Ok(Some(status)) = done {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Proc::Upgraded(c, _) = self {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn signal(pid: &str, name: &str) {
    let status = std::process::Command::new("kill")
        .args([&format!("-{name}"), pid])
        .status()
        .expect("kill");
    assert!(status.success());
}

/// What the config may be made to say.
#[derive(Clone, Copy)]
enum Config {
    Good,
    BrokenToml,
    MissingDirectory,
    UnresolvableBackend,
}

struct Setup {
    env: Env,
    admin: u16,
    dns: std::net::SocketAddr,
    backend: u16,
}

impl Setup {
    fn write(&self, config: Config) {
        let (dir, host) = match config {
            Config::MissingDirectory => ("live-typo", "backend.gcp.internal"),
            Config::UnresolvableBackend => ("live", "bakend.gcp.internal"),
            Config::Good | Config::BrokenToml => ("live", "backend.gcp.internal"),
        };
        let body = support::config::Config::new()
            .raw(&admin::section(&self.env, self.admin))
            .raw("[server]\nupgrade_sock = \"upgrade.sock\"\ngrace_period = \"1m\"")
            .raw(&format!(
                "[dns]\nresolvers = [\"{}\"]\ntimeout = \"300ms\"",
                self.dns
            ))
            .upstream_at("backend", &[format!("{host}:{}", self.backend)])
            .site("site", &["example.cn"])
            .proxy("/", "backend");
        let mut text = self.env.config_text_reloaded_by_hand("", &body).replace(
            "certificates = [\"live\"]",
            &format!("certificates = [\"{dir}\"]"),
        );
        if let Config::BrokenToml = config {
            text.push_str("\n[[sites]\nname = \"half a table\n");
        }
        self.env.write("menshen.toml", &text);
    }
}

/// The reload counters of the serving process: ok, partial, rejected.
async fn counters(admin: u16) -> [f64; 3] {
    let mut out = [0.0; 3];
    for (i, result) in ["ok", "partial", "rejected"].into_iter().enumerate() {
        out[i] = admin::reloads(admin, result).await.unwrap_or(-1.0);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_reloads_of_every_kind_and_two_upgrades_under_traffic() {
    let (env, root) = Env::with_approved_root("Approved Root");
    let unapproved = Ca::root("Unapproved Root");
    let backend = Backend::start().await;
    let dns = DnsResponder::start("backend.gcp.internal", [127, 0, 0, 1].into()).await;
    let setup = Setup {
        admin: free_port(),
        dns: dns.addr,
        backend: backend.port,
        env,
    };
    let env = &setup.env;
    let mut serial = 0x10u64;
    env.put_cert(
        "site",
        &root.issue(&LeafSpec::new(&["example.cn"], serial)),
        &[],
    );
    setup.write(Config::Good);
    let mut proc = Proc::First(env.start());
    assert!(support::wait_port(setup.admin, Duration::from_secs(10)));
    let tally = Tally::new();
    let tasks = clients(env.http, env.https, &root.pem, &tally);
    progress(&tally, 100, || proc.log()).await;

    let tls = tls_client(&[&root.pem]);
    // Results this process answered, and its counters when it started counting them.
    let mut answered = [0.0f64; 3];
    let mut base = counters(setup.admin).await;
    let mut upgrades = 0;
    for step in 0..50 {
        if step == 17 || step == 34 {
            // The counters of the process that goes: every reload it answered, as it answered.
            let now = counters(setup.admin).await;
            let counted: Vec<f64> = (0..3).map(|i| now[i] - base[i]).collect();
            assert_eq!(
                counted,
                answered.to_vec(),
                "step {step}: ok, partial, rejected"
            );
            upgrades += 1;
            let log = env.path(&format!("upgrade-{upgrades}.log"));
            let new = support::upgrade(env, &proc.pid(), &log).await;
            let mut old = std::mem::replace(&mut proc, Proc::Upgraded(new, log));
            let exited = tokio::task::spawn_blocking(move || {
                let code = old.wait_exit(Duration::from_secs(30));
                (code, old.log())
            })
            .await
            .expect("join");
            assert_eq!(exited.0, Some(0), "the old process drains:\n{}", exited.1);
            // The new process takes the admin port once the old one let it go.
            let admin_up = eventually(Duration::from_secs(10), || async {
                let raw = b"GET /status.json HTTP/1.1\r\nHost: admin\r\n\r\n";
                let got = support::http::raw_plain(setup.admin, raw, None)
                    .await
                    .ok()?;
                let status: serde_json::Value = serde_json::from_str(&got.text()).ok()?;
                (status["last_reload"]["trigger"] == "start").then_some(())
            })
            .await;
            assert!(admin_up.is_some(), "{}", proc.log());
            answered = [0.0; 3];
            base = counters(setup.admin).await;
        } else {
            match step % 6 {
                0 => {
                    serial += 1;
                    env.put_cert(
                        "site",
                        &root.issue(&LeafSpec::new(&["example.cn"], serial)),
                        &[],
                    );
                    let (_, json) = admin::reload(setup.admin).await;
                    assert_eq!(json["result"], "ok", "step {step}: renewal: {json}");
                    answered[0] += 1.0;
                }
                1 => {
                    env.put_cert(
                        "bad",
                        &unapproved.issue(&LeafSpec::new(&["bad.example.cn"], 9)),
                        &[],
                    );
                    let (_, json) = admin::reload(setup.admin).await;
                    assert_eq!(json["result"], "partial", "step {step}: unapproved: {json}");
                    answered[1] += 1.0;
                    std::fs::remove_file(env.path("live/bad.crt")).expect("rm");
                    std::fs::remove_file(env.path("live/bad.key")).expect("rm");
                    let (_, json) = admin::reload(setup.admin).await;
                    assert_eq!(json["result"], "ok", "step {step}: cleaned up: {json}");
                    answered[0] += 1.0;
                }
                kind @ (2..=4) => {
                    let config = match kind {
                        2 => Config::BrokenToml,
                        3 => Config::MissingDirectory,
                        _ => Config::UnresolvableBackend,
                    };
                    setup.write(config);
                    let (status, json) = admin::reload(setup.admin).await;
                    assert_eq!(status, 422, "step {step}: {json}");
                    assert_eq!(json["result"], "rejected", "step {step}: {json}");
                    answered[2] += 1.0;
                    setup.write(Config::Good);
                }
                _ => {
                    let before = counters(setup.admin).await;
                    for _ in 0..5 {
                        signal(&proc.pid(), "HUP");
                    }
                    let settled = eventually(Duration::from_secs(5), || async {
                        let status = admin::status(setup.admin).await;
                        (status["last_reload"]["trigger"] == "SIGHUP").then_some(())
                    })
                    .await;
                    assert!(settled.is_some(), "step {step}: {}", proc.log());
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    let after = counters(setup.admin).await;
                    let oks = after[0] - before[0];
                    assert!(
                        (1.0..=5.0).contains(&oks),
                        "step {step}: {oks} SIGHUP reloads"
                    );
                    assert_eq!(after[1..], before[1..], "step {step}: SIGHUPs are ok");
                    answered[0] += oks;
                }
            }
        }
        let served = handshake_serial(&tls, env.https, "example.cn")
            .await
            .expect("TLS handshake");
        assert_eq!(
            served,
            format!("{serial:02X}"),
            "step {step}: the last good certificate serves"
        );
        progress(&tally, 20, || proc.log()).await;
    }
    let now = counters(setup.admin).await;
    let counted: Vec<f64> = (0..3).map(|i| now[i] - base[i]).collect();
    assert_eq!(
        counted,
        answered.to_vec(),
        "the last process: ok, partial, rejected"
    );
    stop(&tally, tasks).await;
    let lost = tally.lost();
    assert!(
        lost.is_empty(),
        "{} of {} requests lost: {lost:?}\n{}",
        lost.len(),
        tally.ok(),
        proc.log()
    );
    assert_eq!(upgrades, 2);
}
