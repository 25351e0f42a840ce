//! The access log as evidence: the running proxy chains every line and seals every rotated
//! file, `menshen logs verify` passes the untouched logs and names each kind of tampering (a
//! line altered, removed, swapped; a file deleted or truncated), and retention keeps six calendar
//! months.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime};

use support::config::Config;
use support::http::get_plain;
use support::{Env, SHOP_SITE};

/// A proxy whose access log rotates every few lines, after `requests` requests, stopped once
/// every rotated file is sealed. Returns the env (the logs are in `logs/`).
async fn logged(requests: usize) -> Env {
    let (env, _) = Env::with_shop();
    let config = Config::new()
        .access_log("logs/access.log")
        .keys("max_file_bytes = 3000")
        .raw(SHOP_SITE);
    env.write_config("", config);
    let proxy = env.start();
    for i in 0..requests {
        let r = get_plain(env.http, "shop.example.cn", &format!("/item/{i}"))
            .await
            .expect("request");
        assert_eq!(r.status, 200);
    }
    let logs = env.path("logs");
    let sealed = support::eventually(Duration::from_secs(30), || async {
        let rotated = rotated(&logs);
        // Sealed, then compressed.
        let done = rotated.len() >= 3
            && rotated
                .iter()
                .all(|f| manifest_of(f).exists() && f.to_string_lossy().ends_with(".zst"))
            && std::fs::read_to_string(logs.join("access.log"))
                .is_ok_and(|t| t.contains(&format!("/item/{}", requests - 1)));
        done.then_some(())
    })
    .await;
    assert!(sealed.is_some(), "rotated and sealed:\n{}", proxy.log());
    drop(proxy);
    env
}

/// Rotated files of logs/access.log, in their order.
fn rotated(logs: &Path) -> Vec<PathBuf> {
    let mut files: Vec<(u32, PathBuf)> = std::fs::read_dir(logs)
        .expect("logs dir")
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let rest = name.strip_prefix("access.log.")?;
            if rest.ends_with(".manifest") || rest.ends_with(".tmp") {
                return None;
            }
            let rest = rest.strip_suffix(".zst").unwrap_or(rest);
            let n = rest
                .split_once('.')
                .map_or(Some(0), |(_, n)| n.parse().ok())?;
            Some((n, e.path()))
        })
        .collect();
    files.sort();
    files.into_iter().map(|(_, p)| p).collect()
}

fn manifest_of(file: &Path) -> PathBuf {
    let name = file.display().to_string();
    PathBuf::from(format!(
        "{}.manifest",
        name.strip_suffix(".zst").unwrap_or(&name)
    ))
}

/// `menshen logs verify DIR --key K`: (exit code, stdout).
fn verify(env: &Env, dir: &Path) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_menshen"))
        .args(["logs", "verify"])
        .arg(dir)
        .arg("--key")
        .arg(env.path("access-log.key"))
        .output()
        .expect("run menshen logs verify");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

/// A copy of the logs to tamper with.
fn copy(env: &Env, name: &str) -> PathBuf {
    let to = env.path(name);
    std::fs::create_dir_all(&to).expect("mkdir");
    for e in std::fs::read_dir(env.path("logs")).expect("logs").flatten() {
        std::fs::copy(e.path(), to.join(e.file_name())).expect("copy");
    }
    to
}

/// `verify` on `dir` fails and says `finding`.
fn finds(env: &Env, dir: &Path, finding: &str) {
    let (code, out) = verify(env, dir);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains(finding), "expected {finding:?} in:\n{out}");
}

/// Edits the lines of a sealed (so compressed) rotated file, compressing it again.
fn edit_lines(file: &Path, edit: impl FnOnce(&mut Vec<String>)) {
    let bytes = zstd::decode_all(std::fs::File::open(file).expect("open")).expect("unzstd");
    let text = String::from_utf8(bytes).expect("utf-8");
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    edit(&mut lines);
    let packed = zstd::encode_all((lines.join("\n") + "\n").as_bytes(), 1).expect("zstd");
    std::fs::write(file, packed).expect("write");
}

#[tokio::test]
async fn verify_names_every_kind_of_tampering() {
    let env = logged(40).await;
    let logs = env.path("logs");
    let (code, out) = verify(&env, &logs);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains(": ok: "), "{out}");
    let live = std::fs::read_to_string(logs.join("access.log")).expect("live");
    let first = live.lines().next().expect("a line");
    assert!(
        first.contains("\"seq\":") && first.contains("\"chain\":\""),
        "{first}"
    );

    // A line altered: the status of the third line of the second rotated file.
    let dir = copy(&env, "altered");
    let second = rotated(&dir)[1].clone();
    edit_lines(&second, |l| {
        l[2] = l[2].replace("\"status\":200", "\"status\":404")
    });
    finds(&env, &dir, &format!("{}:3: line altered", second.display()));

    // A line removed.
    let dir = copy(&env, "removed");
    let third = rotated(&dir)[2].clone();
    edit_lines(&third, |l| {
        l.remove(1);
    });
    finds(
        &env,
        &dir,
        &format!("{}:2: 1 line(s) removed before this line", third.display()),
    );

    // Two lines swapped in the first rotated file.
    let dir = copy(&env, "swapped");
    let first = rotated(&dir)[0].clone();
    edit_lines(&first, |l| l.swap(2, 3));
    finds(
        &env,
        &dir,
        &format!("{}:3: line out of order", first.display()),
    );
    finds(&env, &dir, "content differs from its manifest");

    // A rotated file deleted with its manifest, from the middle of the sequence.
    let dir = copy(&env, "deleted");
    let second = rotated(&dir)[1].clone();
    std::fs::remove_file(&second).expect("rm");
    std::fs::remove_file(manifest_of(&second)).expect("rm manifest");
    finds(
        &env,
        &dir,
        "sealed file(s) #2 to #2 missing from the sequence",
    );

    // A rotated file deleted, its manifest left.
    let dir = copy(&env, "deleted-file");
    let second = rotated(&dir)[1].clone();
    std::fs::remove_file(&second).expect("rm");
    let sealed_as = manifest_of(&second).with_extension("");
    finds(
        &env,
        &dir,
        &format!("{}: missing (its manifest says", sealed_as.display()),
    );

    // A rotated file with its last lines cut off.
    let dir = copy(&env, "truncated");
    let first = rotated(&dir)[0].clone();
    edit_lines(&first, |l| l.truncate(l.len() / 2));
    finds(&env, &dir, &format!("{}: truncated: ", first.display()));

    // A compressed file cut short mid-stream.
    let dir = copy(&env, "cut");
    let first = rotated(&dir)[0].clone();
    let len = std::fs::metadata(&first).expect("meta").len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&first)
        .expect("open")
        .set_len(len / 2)
        .expect("truncate");
    finds(
        &env,
        &dir,
        &format!(
            "{}: the compressed file is cut short or damaged",
            first.display()
        ),
    );

    // A manifest edited to match an edited file is caught by its MAC.
    let dir = copy(&env, "manifest");
    let m = manifest_of(&rotated(&dir)[0]);
    let text = std::fs::read_to_string(&m).expect("manifest");
    std::fs::write(&m, text.replacen("\"lines\":", "\"lines\":1", 1)).expect("write");
    finds(&env, &dir, "its MAC does not match");

    // The wrong key verifies nothing.
    let other = env.path("other.key");
    let made = Command::new(env!("CARGO_BIN_EXE_menshen"))
        .args(["logs", "key"])
        .arg(&other)
        .output()
        .expect("logs key");
    assert!(made.status.success());
    let out = Command::new(env!("CARGO_BIN_EXE_menshen"))
        .args(["logs", "verify"])
        .arg(&logs)
        .arg("--key")
        .arg(&other)
        .output()
        .expect("verify");
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn a_missing_chain_key_refuses_the_start_with_the_fix() {
    let (env, _) = Env::with_shop();
    std::fs::remove_file(env.path("access-log.key")).expect("rm key");
    env.write_config("", logged_shop());
    let mut proxy = env.spawn();
    assert_eq!(proxy.wait_exit(Duration::from_secs(10)), Some(1));
    let key = env.path("access-log.key");
    let log = proxy.log();
    assert!(
        log.contains(&format!(
            "access_log.chain_key_file: {k} does not exist: make one with `menshen logs key {k}`",
            k = key.display()
        )),
        "{log}"
    );
}

#[tokio::test]
async fn retention_keeps_six_calendar_months_and_refuses_less() {
    let (env, _) = Env::with_shop();
    std::fs::create_dir_all(env.path("logs")).expect("mkdir");
    let old = env.path("logs/access.log.2026-01-01");
    let old_manifest = env.path("logs/access.log.2026-01-01.manifest");
    let kept = env.path("logs/access.log.2026-06-01");
    let age = |days: u64| SystemTime::now() - Duration::from_secs(days * 86_400);
    for (f, days) in [(&old, 185), (&old_manifest, 185), (&kept, 180)] {
        std::fs::write(f, "{}\n").expect("write");
        std::fs::File::options()
            .write(true)
            .open(f)
            .expect("open")
            .set_modified(age(days))
            .expect("mtime");
    }
    // 180 days is the old floor: refused with the reason, naming the key.
    let config = Config::new()
        .access_log("logs/access.log")
        .keys("retention = \"180d\"")
        .raw(SHOP_SITE);
    env.write_config("", config);
    let (ok, out) = env.check();
    assert!(!ok);
    assert!(
        out.contains(
            "access_log.retention: \"180d\" is below 184 days: the Cybersecurity Law (Art. 21)"
        ),
        "{out}"
    );
    env.write_config("", logged_shop());
    let proxy = env.start();
    let removed = support::eventually(Duration::from_secs(10), || async {
        let gone = |f: &Path| !f.exists() && !gz(f).exists();
        (gone(&old) && !old_manifest.exists()).then_some(())
    })
    .await;
    assert!(removed.is_some(), "185 days old: removed\n{}", proxy.log());
    assert!(
        kept.exists() || gz(&kept).exists(),
        "180 days old: within six months, kept (compressed once sealed)"
    );
}

/// The compressed name of a rotated file.
fn gz(file: &Path) -> PathBuf {
    PathBuf::from(format!("{}.zst", file.display()))
}

/// The shop site, its access log in `logs/`.
fn logged_shop() -> Config {
    Config::new().access_log("logs/access.log").raw(SHOP_SITE)
}
