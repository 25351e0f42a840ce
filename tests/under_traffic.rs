//! The lifecycle promises under traffic, with clients that keep their connections (HTTP/1.1
//! keep-alive GETs and POSTs, HTTP/2 with concurrent streams, a WebSocket): a binary upgrade,
//! config reloads and certificate swaps lose no request, and a SIGTERM drains what is open and
//! exits without waiting out the grace period.

mod support;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use support::config::Config;
use support::grpc::GrpcBackend;
use support::h1::{echoes, launch, upgrade, Backend};
use support::http::h2_connect;
use support::pki::{Ca, LeafSpec};
use support::traffic::{clients, progress, stop, Tally};
use support::{eventually, Env, Running};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

fn signal(running: &Running, name: &str) {
    let pid = running.child.id().to_string();
    let status = std::process::Command::new("kill")
        .args([&format!("-{name}"), &pid])
        .status()
        .expect("kill");
    assert!(status.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_binary_upgrade_loses_no_request_of_clients_that_keep_their_connections() {
    let backend = Backend::start().await;
    let server = "[server]\nupgrade_sock = \"upgrade.sock\"\ngrace_period = \"1m\"\n";
    let (env, old, root) = launch(&backend, server).await;
    let tally = Tally::new();
    let tasks = clients(env.http, env.https, &root.pem, &tally);
    // A WebSocket opened before the upgrade stays with the old process until it is closed.
    let mut ws = TcpStream::connect(("127.0.0.1", env.http))
        .await
        .expect("connect");
    let handshake = upgrade(&mut ws).await;
    assert!(handshake.starts_with("HTTP/1.1 101"), "{handshake}");
    progress(&tally, 200, || old.log()).await;

    let new = upgrade_binary(&env, &old).await;
    // pingora stops the old process's listeners 5 s after the hand-over; traffic goes on.
    listeners_closed(&old).await;
    progress(&tally, 200, || old.log()).await;
    echoes(&mut ws, b"still through the old process").await;
    drop(ws);
    finish_upgrade(&env, old, new, &tally, tasks).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reloads_and_certificate_swaps_lose_no_request_and_sigterm_drains_what_is_open() {
    let backend = Backend::start().await;
    let (env, running, root) = launch(&backend, "[server]\ngrace_period = \"1m\"\n").await;
    let tally = Tally::new();
    let tasks = clients(env.http, env.https, &root.pem, &tally);
    progress(&tally, 200, || running.log()).await;
    let config = std::fs::read_to_string(env.path("menshen.toml")).expect("config");
    for round in 0..4u64 {
        // A renewed certificate, then a config change (a response header), each a reload.
        env.put_cert(
            "site",
            &root.issue(&LeafSpec::new(&["example.cn"], 100 + round)),
            &[],
        );
        progress(&tally, 50, || running.log()).await;
        let edited = config.replace(
            "hosts = [\"example.cn\"]",
            &format!(
                "hosts = [\"example.cn\"]\nadd_response_headers = {{ \"x-round\" = \"{round}\" }}"
            ),
        );
        env.write("menshen.toml", &edited);
        progress(&tally, 50, || running.log()).await;
    }
    let reloaded = eventually(Duration::from_secs(10), || async {
        let got = support::http::get_plain(env.http, "example.cn", "/probe")
            .await
            .ok()?;
        (got.header("x-round") == Some("3")).then_some(())
    })
    .await;
    assert!(
        reloaded.is_some(),
        "the last config serves:\n{}",
        running.log()
    );

    // SIGTERM with steady keep-alive clients and an idle keep-alive connection: the clients
    // are told `Connection: close` or GOAWAY, the idle connection is closed after the quiet
    // interval, and the process exits long before its 60 s grace period.
    let mut idle = support::h1::Client::connect(env.http).await;
    idle.send(&support::h1::get("/idle", "")).await;
    assert_eq!(idle.response(false).await.status, 200);
    signal(&running, "TERM");
    let mut running = running;
    let exited = tokio::task::spawn_blocking(move || {
        let code = running.wait_exit(Duration::from_secs(20));
        (code, running.log())
    })
    .await
    .expect("join");
    assert_eq!(exited.0, Some(0), "drained and exited:\n{}", exited.1);
    assert!(
        idle.closed_within(Duration::from_secs(1)).await,
        "the idle connection was closed, not reset mid-request"
    );
    stop(&tally, tasks).await;
    // After the exit the clients' reconnects are refused: only what happened before counts.
    let lost: Vec<String> = tally
        .lost()
        .into_iter()
        .filter(|l| !l.contains("connect:"))
        .collect();
    assert!(
        lost.is_empty(),
        "{} requests lost of {}: {lost:?}\n{}",
        lost.len(),
        tally.ok(),
        exited.1
    );
}

/// Starts a binary upgrade of `old` (its config has `upgrade_sock = "upgrade.sock"`).
/// Waits until the old process of an upgrade stops its listeners (pingora does 5 s after the
/// hand-over, and logs it).
async fn listeners_closed(old: &Running) {
    let closed = eventually(Duration::from_secs(20), || async {
        old.log()
            .contains("Broadcasting graceful shutdown")
            .then_some(())
    })
    .await;
    assert!(closed.is_some(), "the old listeners close:\n{}", old.log());
}

async fn upgrade_binary(env: &Env, old: &Running) -> std::process::Child {
    let pid = old.child.id().to_string();
    support::upgrade(env, &pid, &env.path("new.log")).await
}

/// The end of an upgrade under traffic: the old process drains and exits well inside its 60 s
/// grace period, the clients go on with the new one, and no request was lost.
async fn finish_upgrade(
    env: &Env,
    mut old: Running,
    mut new: std::process::Child,
    tally: &Arc<Tally>,
    tasks: Vec<JoinHandle<()>>,
) {
    let (code, log) = tokio::task::spawn_blocking(move || {
        let code = old.wait_exit(Duration::from_secs(20));
        (code, old.log())
    })
    .await
    .expect("join");
    assert_eq!(code, Some(0), "the old process drains and exits:\n{log}");
    assert!(log.contains("drained"), "{log}");
    let new_log = env.path("new.log");
    progress(tally, 200, || {
        std::fs::read_to_string(&new_log).unwrap_or_default()
    })
    .await;
    stop(tally, tasks).await;
    let _ = new.kill();
    let _ = new.wait();
    let lost = tally.lost();
    assert!(
        lost.is_empty(),
        "{} requests lost of {} ({} reconnects): {lost:?}\nold:\n{log}",
        lost.len(),
        tally.ok(),
        tally.reconnects.load(Ordering::SeqCst),
    );
}

/// Sends `message` on an open gRPC stream and reads its echo.
async fn echo_on(
    send: &mut h2::SendStream<Bytes>,
    recv: &mut h2::RecvStream,
    message: &'static [u8],
) {
    send.reserve_capacity(message.len());
    send.send_data(Bytes::from_static(message), false)
        .expect("data");
    let echoed = tokio::time::timeout(Duration::from_secs(5), recv.data())
        .await
        .expect("echo in time")
        .expect("echo")
        .expect("echo data");
    let _ = recv.flow_control().release_capacity(echoed.len());
    assert!(!echoed.is_empty());
}

/// A gRPC bidirectional stream to an h2c backend stays open across a config reload and a
/// binary upgrade (the old process keeps it to its end), while keep-alive clients POST and GET
/// through a TLS upstream without losing a request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grpc_stream_and_tls_upstream_traffic_cross_a_reload_and_an_upgrade() {
    let ca = Ca::root("Backend CA");
    let leaf = ca.issue(&LeafSpec::new(&["example.cn"], 7));
    let grpc = GrpcBackend::start(None).await;
    let tls = Backend::start_tls(&leaf).await;
    let (env, root) = Env::with_site(&["example.cn"]);
    env.write("backend-ca.pem", &ca.pem);
    // `site_keys`: more keys for the site.
    let config = |site_keys: &str| {
        Config::new()
            .raw("[server]\nupgrade_sock = \"upgrade.sock\"\ngrace_period = \"1m\"")
            .upstream("grpc", &[grpc.port])
            .keys("http2 = true")
            .upstream("tls", &[tls.port])
            .keys("tls = true\nca_file = \"backend-ca.pem\"")
            .site("site", &["example.cn"])
            .keys(site_keys)
            .proxy("/grpc/", "grpc")
            .keys("strip_prefix = true")
            .proxy("/", "tls")
    };
    env.write_config("", config(""));
    let old = env.start();
    let tally = Tally::new();
    let tasks = clients(env.http, env.https, &root.pem, &tally);

    let client = h2_connect(&[&root.pem], env.https, "example.cn")
        .await
        .expect("h2 connection");
    let mut ready = client.clone().ready().await.expect("ready");
    let request = http::Request::post("https://example.cn/grpc/echo.Echo/Stream")
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(())
        .expect("request");
    let (response, mut send) = ready.send_request(request, false).expect("send");
    send.reserve_capacity(8);
    send.send_data(Bytes::from_static(b"one"), false)
        .expect("data");
    let response = tokio::time::timeout(Duration::from_secs(5), response)
        .await
        .expect("the response starts")
        .expect("response");
    assert_eq!(response.status(), 200, "{}", old.log());
    let mut recv = response.into_body();
    let first = recv.data().await.expect("echo").expect("echo data");
    let _ = recv.flow_control().release_capacity(first.len());
    progress(&tally, 200, || old.log()).await;

    env.write_config(
        "",
        config("add_response_headers = { \"x-reloaded\" = \"1\" }"),
    );
    let reloaded = eventually(Duration::from_secs(10), || async {
        let got = support::http::get_plain(env.http, "example.cn", "/probe")
            .await
            .ok()?;
        (got.header("x-reloaded") == Some("1")).then_some(())
    })
    .await;
    assert!(reloaded.is_some(), "the reload applied:\n{}", old.log());
    echo_on(&mut send, &mut recv, b"after the reload").await;
    progress(&tally, 100, || old.log()).await;

    let new = upgrade_binary(&env, &old).await;
    listeners_closed(&old).await;
    progress(&tally, 200, || old.log()).await;
    echo_on(&mut send, &mut recv, b"after the upgrade").await;
    send.send_data(Bytes::new(), true).expect("end");
    let mut rest = Vec::new();
    while let Some(chunk) = recv.data().await {
        let chunk = chunk.expect("data");
        let _ = recv.flow_control().release_capacity(chunk.len());
        rest.extend_from_slice(&chunk);
    }
    let trailers = recv.trailers().await.expect("trailers").expect("some");
    assert_eq!(
        trailers.get("grpc-status").map(|v| v.as_bytes()),
        Some(&b"0"[..])
    );
    drop(client);

    finish_upgrade(&env, old, new, &tally, tasks).await;
    assert!(
        tls.names
            .lock()
            .expect("lock")
            .iter()
            .all(|n| n == "example.cn"),
        "TLS upstream connections verified for the Host"
    );
}
