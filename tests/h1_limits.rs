//! The HTTP/1 loop's time limits and shutdown: the header clock on a request that came with the
//! previous one, the send timeout (plain and TLS, where the close must not wait for the client
//! either), keep-alive connections answered with `Connection: close` during shutdown.

mod support;

use std::time::Duration;

use support::backend::BIG;
use support::eventually;
use support::h1::{get, launch, start_with, Backend, Client};
use support::http::tls_client;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_that_arrives_with_the_previous_one_is_on_the_header_clock() {
    let backend = Backend::start().await;
    let (env, _running) = start_with(
        &backend,
        "[policy]\nheader_read_timeout = \"500ms\"\nkeepalive_timeout = \"30s\"\n",
    )
    .await;
    let mut client = Client::connect(env.http).await;
    // A whole request and the first byte of the next one, then nothing.
    client.send(&format!("{}G", get("/", ""))).await;
    assert_eq!(client.response(false).await.status, 200);
    assert!(
        client.closed_within(Duration::from_secs(3)).await,
        "closed by header_read_timeout, not left to the keep-alive timeout"
    );
}

/// The header names of a request or response head, lowercase, without those that differ by
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn during_shutdown_a_keepalive_connection_is_answered_then_closed() {
    let backend = Backend::start().await;
    let (env, mut running) = start_with(&backend, "[server]\ngrace_period = \"3s\"\n").await;
    let mut client = Client::connect(env.http).await;
    client.send(&get("/", "")).await;
    assert_eq!(client.response(false).await.status, 200);
    std::process::Command::new("kill")
        .args(["-TERM", &running.child.id().to_string()])
        .status()
        .expect("kill");
    // Shutdown has started once the listeners stop (at once); the grace period is running.
    let http = env.http;
    let stopped = eventually(Duration::from_secs(10), || async move {
        TcpStream::connect(("127.0.0.1", http))
            .await
            .is_err()
            .then_some(())
    })
    .await;
    assert!(stopped.is_some(), "the listeners stop on SIGTERM");
    client.send(&get("/during-shutdown", "")).await;
    let answer = client.response(false).await;
    assert_eq!(
        answer.status, 200,
        "the idle connection's next request is served"
    );
    assert_eq!(answer.header("connection"), Some("close"));
    assert!(client.closed_within(Duration::from_secs(2)).await);
    assert_eq!(running.wait_exit(Duration::from_secs(20)), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_is_cut_after_the_send_timeout() {
    let backend = Backend::start().await;
    let (env, _running) = start_with(&backend, "[policy]\nsend_timeout = \"300ms\"\n").await;
    let requests = [
        // Without a body.
        get("/big", ""),
        // With a body.
        "POST /big HTTP/1.1\r\nHost: example.cn\r\nContent-Length: 1\r\n\r\nx".to_owned(),
    ];
    for request in requests {
        let mut tcp = TcpStream::connect(("127.0.0.1", env.http))
            .await
            .expect("connect");
        tcp.write_all(request.as_bytes()).await.expect("write");
        // Read nothing while the send timeout runs out several times over.
        tokio::time::sleep(Duration::from_secs(2)).await;
        let mut got = 0usize;
        let mut chunk = vec![0u8; 1 << 16];
        let ended = tokio::time::timeout(Duration::from_secs(20), async {
            loop {
                match tcp.read(&mut chunk).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => got += n,
                }
            }
        })
        .await;
        assert!(
            ended.is_ok(),
            "{}: the connection ends",
            request.lines().next().unwrap_or("")
        );
        assert!(
            got < BIG,
            "{}: cut before the whole body ({got} bytes)",
            request.lines().next().unwrap_or("")
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_client_that_never_reads_gives_its_connection_back() {
    let backend = Backend::start().await;
    let (env, _running, root) = launch(
        &backend,
        "[policy]\nsend_timeout = \"300ms\"\nmax_connections_per_ip = 1\n",
    )
    .await;
    let client = tls_client(&[&root.pem]);
    let tcp = TcpStream::connect(("127.0.0.1", env.https))
        .await
        .expect("connect");
    let name = rustls::pki_types::ServerName::try_from("example.cn").expect("name");
    let mut stalled = client.connect(name, tcp).await.expect("handshake");
    stalled
        .write_all(get("/big", "").as_bytes())
        .await
        .expect("request");
    // Never read: the proxy's writes stall, the send timeout cuts them, and the close (which
    // would send rustls' pending records first) must not wait for this reader either.
    let freed = eventually(Duration::from_secs(10), || {
        let client = client.clone();
        async move {
            let resp = support::http::get_tls(&client, env.https, "example.cn", "example.cn", "/")
                .await
                .ok()?;
            (resp.status == 200).then_some(())
        }
    })
    .await;
    assert!(
        freed.is_some(),
        "the client's only connection slot came back"
    );
    drop(stalled);
}
