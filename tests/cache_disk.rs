//! The edge cache's disk tier (issue 15): stored responses survive a restart of menshen (the
//! origin sees no second request), a torn or corrupted file is dropped, never served, and
//! purges (by prefix, by a takedown, one added while menshen was down) reach responses that
//! are only on disk.

mod support;

use std::time::Duration;

use support::admin::TOKEN;
use support::cache_origin::{config, get, purge, x_cache, Origin, Setup, HOST};
use support::{eventually, free_port, Env, Running};

/// menshen with a disk tier in `disk/`, in front of `port`.
fn start(env: &Env, port: u16, admin: u16) -> Running {
    write_config(env, port, admin, false);
    env.start()
}

/// The config of [`start`], with the takedown of `/taken/` when `takedown`.
fn write_config(env: &Env, port: u16, admin: u16, takedown: bool) {
    let body = config(env, port, admin, takedown).raw("[cache]\ndisk_dir = \"disk\"");
    env.write_config("", body);
}

/// The disk tier's files.
fn files(env: &Env) -> Vec<std::path::PathBuf> {
    let Ok(dir) = std::fs::read_dir(env.path("disk")) else {
        return Vec::new();
    };
    let files = dir.flatten().map(|e| e.path());
    files
        .filter(|p| p.extension().is_some_and(|x| x == "obj"))
        .collect()
}

/// menshen with a disk tier in front of a counting origin.
async fn with_disk() -> Setup {
    let (env, root) = Env::with_approved_root("cache root");
    env.put_leaf("cache", &root, HOST, 1);
    let (origin, port) = Origin::start().await;
    let admin = free_port();
    let running = start(&env, port, admin);
    Setup {
        env,
        origin,
        admin,
        port,
        running,
        root_pem: root.pem.clone(),
    }
}

/// Stops menshen (as a crash would: no drain).
fn stop(s: &mut Setup) {
    let _ = s.running.child.kill();
    let _ = s.running.child.wait();
}

/// Stops menshen and starts it again on the same config.
fn restart(s: &mut Setup) {
    stop(s);
    s.running = start(&s.env, s.port, s.admin);
}

#[tokio::test(flavor = "multi_thread")]
async fn entries_survive_a_restart_and_a_damaged_file_is_dropped() {
    let mut s = with_disk().await;
    assert_eq!(x_cache(&get(&s, "/static/d1", "").await), "MISS");
    let written = eventually(Duration::from_secs(20), || async {
        (files(&s.env).len() == 1).then_some(())
    })
    .await;
    assert!(written.is_some(), "the response is written to disk");

    // A new process reads it back.
    restart(&mut s);
    let back = get(&s, "/static/d1", "").await;
    assert_eq!(
        (x_cache(&back), back.text().as_str()),
        ("HIT", "/static/d1 #1 for none\n")
    );
    assert_eq!(s.origin.count("/static/d1"), 1);

    // A file damaged while menshen was down is dropped: the origin is asked again.
    stop(&mut s);
    for file in files(&s.env) {
        let mut data = std::fs::read(&file).expect("read");
        let last = data.len() - 40;
        data[last] ^= 0x20;
        std::fs::write(&file, data).expect("damage");
    }
    s.running = start(&s.env, s.port, s.admin);
    let again = get(&s, "/static/d1", "").await;
    assert_eq!(
        (x_cache(&again), again.text().as_str()),
        ("MISS", "/static/d1 #2 for none\n")
    );
    assert!(
        s.running.log().contains("torn or corrupt"),
        "{}",
        s.running.log()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn purges_reach_responses_that_are_only_on_disk() {
    let mut s = with_disk().await;
    for path in ["/static/p1", "/taken/t1", "/kept"] {
        assert_eq!(x_cache(&get(&s, path, "").await), "MISS", "{path}");
    }
    let written = eventually(Duration::from_secs(20), || async {
        (files(&s.env).len() == 3).then_some(())
    })
    .await;
    assert!(written.is_some(), "three responses on disk");

    // After a restart, memory is empty: the purge by prefix finds the file.
    restart(&mut s);
    let prefix = "prefix=https://cache.test/static/";
    assert_eq!(
        purge(&s, prefix, Some(TOKEN)).await,
        (200, "{\"purged\":1}\n".into())
    );
    assert_eq!(files(&s.env).len(), 2);
    let again = get(&s, "/static/p1", "").await;
    assert_eq!(
        x_cache(&again),
        "MISS",
        "a purged response is not read back from disk"
    );

    // A takedown added while menshen was down purges the disk at start; lifted again, the
    // origin answers, not the stored copy.
    stop(&mut s);
    write_config(&s.env, s.port, s.admin, true);
    s.running = s.env.start();
    assert_eq!(get(&s, "/taken/t1", "").await.status, 451);
    write_config(&s.env, s.port, s.admin, false);
    assert_eq!(support::admin::reload(s.admin).await.0, 200);
    let back = get(&s, "/taken/t1", "").await;
    assert_eq!(
        (back.status, x_cache(&back), back.text().as_str()),
        (200, "MISS", "/taken/t1 #2 for none\n")
    );
    assert_eq!(x_cache(&get(&s, "/kept", "").await), "HIT");
}
