//! The listeners' TLS protocol policy, seen by real clients: session resumption, whose cipher
//! order wins, the lowest version; each changed by a reload for the next handshake, and a bad
//! value refused without touching the settings in use.

mod support;

use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::ServerName;
use rustls::{CipherSuite, HandshakeKind, NamedGroup, SupportedProtocolVersion};
use support::config::Config;
use support::http::{get_plain, root_store};
use support::pki::Ca;
use support::{eventually, free_port, Env};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use support::SHOP_SITE as SITE;

/// Writes the config: the shop site, an admin listener on `admin` and `tls` added to the
/// `[tls]` section.
fn write_config(env: &Env, admin: u16, tls: &str) {
    env.write_config(tls, Config::new().admin(env, admin).raw(SITE));
}

/// A client speaking `versions` and offering `suites` in this order (it keeps its tickets).
fn client(
    root: &Ca,
    versions: &[&'static SupportedProtocolVersion],
    suites: &[CipherSuite],
) -> TlsConnector {
    let mut provider = rustls::crypto::ring::default_provider();
    provider.cipher_suites = suites
        .iter()
        .filter_map(|want| {
            let all = &provider.cipher_suites;
            all.iter().find(|s| s.suite() == *want).copied()
        })
        .collect();
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(provider))
        .with_protocol_versions(versions)
        .expect("versions")
        .with_root_certificates(root_store(&[&root.pem]))
        .with_no_client_auth();
    TlsConnector::from(Arc::new(config))
}

/// One request on a new connection: how its handshake went and the suite it settled on.
async fn visit(client: &TlsConnector, port: u16) -> std::io::Result<(HandshakeKind, CipherSuite)> {
    let tcp = TcpStream::connect(("127.0.0.1", port)).await?;
    let mut tls = client
        .connect(ServerName::try_from("shop.example.cn").expect("name"), tcp)
        .await?;
    tls.write_all(b"GET / HTTP/1.1\r\nHost: shop.example.cn\r\nConnection: close\r\n\r\n")
        .await?;
    // Reading the answer also takes in the session tickets sent after the handshake.
    let mut raw = Vec::new();
    let _ = tls.read_to_end(&mut raw).await;
    assert!(
        raw.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&raw)
    );
    let conn = tls.get_ref().1;
    let kind = conn.handshake_kind().expect("handshake done");
    let suite = conn.negotiated_cipher_suite().expect("suite").suite();
    Ok((kind, suite))
}

const AES_256: CipherSuite = CipherSuite::TLS13_AES_256_GCM_SHA384;
const AES_128: CipherSuite = CipherSuite::TLS13_AES_128_GCM_SHA256;
const TLS12_AES_128: CipherSuite = CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256;
const TLS13: &[&SupportedProtocolVersion] = &[&rustls::version::TLS13];
const TLS12: &[&SupportedProtocolVersion] = &[&rustls::version::TLS12];

/// The value of a metric without labels, or of the one labelled as `name` says.
async fn metric(admin: u16, name: &str) -> f64 {
    let metrics = get_plain(admin, "127.0.0.1", "/metrics")
        .await
        .expect("metrics");
    let text = metrics.text();
    let value = text
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .unwrap_or("0");
    value.trim().parse().expect("a number")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resumption_cipher_order_and_tls_version_follow_the_policy_across_reloads() {
    let (env, root) = Env::with_shop();
    let admin = free_port();
    write_config(&env, admin, "");
    let _proxy = env.start();

    // Defaults: our order (AES-128 although the client asks for AES-256 first), and resumption.
    let aes256_first = client(&root, TLS13, &[AES_256, AES_128]);
    let first = visit(&aes256_first, env.https).await.expect("first");
    assert_eq!(first, (HandshakeKind::Full, AES_128));
    let again = visit(&aes256_first, env.https).await.expect("again");
    assert_eq!(again, (HandshakeKind::Resumed, AES_128), "resumed");
    let tls12_only = client(&root, TLS12, &[TLS12_AES_128]);
    assert!(
        visit(&tls12_only, env.https).await.is_ok(),
        "TLS 1.2 allowed by default"
    );

    // Reload: the client's order, no resumption. The next handshakes follow.
    write_config(
        &env,
        admin,
        "prefer_server_cipher_order = false\nsession_resumption = false",
    );
    let switched = eventually(Duration::from_secs(10), || async {
        let seen = visit(&aes256_first, env.https).await.ok()?;
        (seen.1 == AES_256).then_some(seen)
    })
    .await;
    assert!(switched.is_some(), "client order applied after the reload");
    for _ in 0..2 {
        let seen = visit(&aes256_first, env.https).await.expect("visit");
        assert_eq!(seen, (HandshakeKind::Full, AES_256), "no resumption");
    }

    // Reload: TLS 1.3 only. A TLS 1.2-only client is refused, and counted.
    write_config(
        &env,
        admin,
        "min_version = \"1.3\"\nprefer_server_cipher_order = false\nsession_resumption = false",
    );
    let refused = eventually(Duration::from_secs(10), || async {
        visit(&tls12_only, env.https).await.is_err().then_some(())
    })
    .await;
    assert!(refused.is_some(), "TLS 1.2 refused after the reload");
    assert!(
        visit(&aes256_first, env.https).await.is_ok(),
        "TLS 1.3 served"
    );
    assert!(
        metric(
            admin,
            "menshen_tls_handshakes_total{result=\"protocol\",version=\"-\"}"
        )
        .await
            >= 1.0,
        "refused versions are counted as protocol failures"
    );

    // A suite rustls does not have: the reload is refused, the settings in use stay.
    write_config(
        &env,
        admin,
        "cipher_suites = [\"TLS_RSA_WITH_RC4_128_MD5\"]",
    );
    let rejected = eventually(Duration::from_secs(10), || async {
        let n = metric(admin, "menshen_reloads_total{result=\"rejected\"}").await;
        (n == 1.0).then_some(())
    })
    .await;
    assert!(rejected.is_some(), "the bad config is rejected");
    assert!(
        visit(&tls12_only, env.https).await.is_err(),
        "still TLS 1.3 only"
    );
    assert_eq!(
        visit(&aes256_first, env.https).await.expect("served"),
        (HandshakeKind::Full, AES_256),
        "still the client's order, still no resumption"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_http_on_a_tls_listener_is_never_answered_in_plain() {
    let (env, root) = Env::with_shop();
    write_config(&env, free_port(), "");
    let _proxy = env.start();
    let mut tcp = TcpStream::connect(("127.0.0.1", env.https))
        .await
        .expect("connect");
    tcp.write_all(b"GET / HTTP/1.1\r\nHost: shop.example.cn\r\n\r\n")
        .await
        .expect("send");
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), tcp.read_to_end(&mut answer)).await;
    assert!(read.is_ok(), "the connection is closed");
    assert!(
        !answer.windows(5).any(|w| w == b"HTTP/"),
        "no plaintext HTTP on a TLS port: {:?}",
        String::from_utf8_lossy(&answer)
    );
    // The same listener serves TLS.
    let tls = client(&root, TLS13, &[AES_128]);
    assert!(visit(&tls, env.https).await.is_ok());
}

/// A TLS 1.3 client offering only these key exchange groups.
fn client_with_groups(
    root: &Ca,
    groups: &[&'static dyn rustls::crypto::SupportedKxGroup],
) -> TlsConnector {
    let mut provider = rustls::crypto::ring::default_provider();
    provider.kx_groups = groups.to_vec();
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(provider))
        .with_protocol_versions(TLS13)
        .expect("versions")
        .with_root_certificates(root_store(&[&root.pem]))
        .with_no_client_auth();
    TlsConnector::from(Arc::new(config))
}

/// The key exchange group a new connection settles on, or why it failed.
async fn group(client: &TlsConnector, port: u16) -> std::io::Result<NamedGroup> {
    let tcp = TcpStream::connect(("127.0.0.1", port)).await?;
    let tls = client
        .connect(ServerName::try_from("shop.example.cn").expect("name"), tcp)
        .await?;
    let kx = tls.get_ref().1.negotiated_key_exchange_group();
    Ok(kx.expect("a group after the handshake").name())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn post_quantum_key_exchange_is_offered_and_can_be_turned_off() {
    let (env, root) = Env::with_shop();
    let admin = free_port();
    write_config(&env, admin, "");
    let _proxy = env.start();
    let pq_only = client_with_groups(
        &root,
        &[rustls::crypto::aws_lc_rs::kx_group::X25519MLKEM768],
    );
    let x25519_only = client_with_groups(&root, &[rustls::crypto::ring::kx_group::X25519]);
    assert_eq!(
        group(&pq_only, env.https)
            .await
            .expect("a post-quantum-only client is served"),
        NamedGroup::X25519MLKEM768
    );
    assert_eq!(
        group(&x25519_only, env.https)
            .await
            .expect("a classical client is served"),
        NamedGroup::X25519
    );
    // What a browser sends: the hybrid share first, X25519 second; the hybrid one is chosen.
    let browser = client_with_groups(
        &root,
        &[
            rustls::crypto::aws_lc_rs::kx_group::X25519MLKEM768,
            rustls::crypto::ring::kx_group::X25519,
        ],
    );
    assert_eq!(
        group(&browser, env.https).await.expect("browser-like"),
        NamedGroup::X25519MLKEM768
    );

    // Reload with post_quantum = false: the next handshakes offer the classical groups only.
    write_config(&env, admin, "post_quantum = false");
    let off = eventually(Duration::from_secs(10), || async {
        group(&pq_only, env.https).await.is_err().then_some(())
    })
    .await;
    assert!(
        off.is_some(),
        "a post-quantum-only client is refused after the reload"
    );
    assert_eq!(
        group(&browser, env.https)
            .await
            .expect("browser-like, classical"),
        NamedGroup::X25519
    );
}
