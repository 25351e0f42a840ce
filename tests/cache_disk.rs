//! The edge cache's disk tier (issue 15): stored responses survive a restart of menshen (the
//! origin sees no second request), and a torn or corrupted file is dropped, never served.

mod support;

use std::time::Duration;

use support::cache_origin::{config, get, x_cache, Origin, Setup, HOST};
use support::{eventually, free_port, Env, Running};

/// menshen with a disk tier in `disk/`, in front of `port`.
fn start(env: &Env, port: u16, admin: u16) -> Running {
    let body = config(env, port, admin, false).raw("[cache]\ndisk_dir = \"disk\"");
    env.write_config("", body);
    env.start()
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
    let (env, root) = Env::with_approved_root("cache root");
    env.put_leaf("cache", &root, HOST, 1);
    let (origin, port) = Origin::start().await;
    let admin = free_port();
    let running = start(&env, port, admin);
    let mut s = Setup {
        env,
        origin,
        admin,
        port,
        running,
        root_pem: root.pem.clone(),
    };
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
    s.running = start(&s.env, port, admin);
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
