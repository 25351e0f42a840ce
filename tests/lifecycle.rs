//! Start and stop as an operator sees them: a listen address another process holds stops the
//! start with its name, and a SIGTERM with nothing in flight exits without waiting the whole
//! grace period.

mod support;

use std::time::Duration;

use support::config::Config;
use support::http::get_plain;
use support::Env;

fn env_with_site(server: &str) -> Env {
    let (env, _) = Env::with_site(&["example.cn"]);
    let config = Config::new()
        .raw(server)
        .site("site", &["example.cn"])
        .respond("/", "ok\n");
    env.write_config("", config);
    env
}

#[test]
fn a_taken_listen_address_stops_the_start_naming_it_and_its_holder() {
    let env = env_with_site("");
    let taken = std::net::TcpListener::bind(("127.0.0.1", env.https)).expect("hold the port");
    let mut running = env.spawn();
    let code = running.wait_exit(Duration::from_secs(20));
    let log = running.log();
    assert_eq!(code, Some(1), "exits at once instead of retrying:\n{log}");
    assert!(
        log.contains(&format!("cannot listen on 127.0.0.1:{}", env.https)),
        "{log}"
    );
    assert!(log.contains("listener \"https\""), "{log}");
    assert!(
        log.contains(&format!("pid {}", std::process::id())),
        "names the process holding the port:\n{log}"
    );
    drop(taken);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_with_nothing_in_flight_exits_before_the_grace_period() {
    let env = env_with_site("[server]\ngrace_period = \"1m\"\n");
    let mut running = env.start();
    let resp = get_plain(env.http, "example.cn", "/").await.expect("GET");
    assert_eq!(resp.status, 200, "{}", running.log());
    let pid = running.child.id().to_string();
    std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill");
    let code = running.wait_exit(Duration::from_secs(20));
    assert_eq!(
        code,
        Some(0),
        "drained and exited well inside the 60 s grace period:\n{}",
        running.log()
    );
    assert!(running.log().contains("drained"), "{}", running.log());
}
