//! Client certificates (mutual TLS) per site, seen by real clients: a site that requires them
//! serves a client with a certificate from its CA and refuses one from another CA or none; an
//! optional site serves both; the backend learns the verified certificate from
//! X-Forwarded-Client-Cert (HTTP/1 and HTTP/2), which a client can never set; a connection made for another name
//! is sent away with 421; a reload changes the mode for the next handshake.

mod support;

use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::CertificateDer;
use support::admin;
use support::config::Config;
use support::h1::Backend;
use support::http::{get_plain, get_with, raw_tls, root_store, Response};
use support::pki::{Ca, Leaf, LeafSpec};
use support::{eventually, free_port, Env};
use tokio_rustls::TlsConnector;

const HOSTS: [&str; 3] = ["api.example.cn", "www.example.cn", "opt.example.cn"];

/// api requires client certificates from clients/ca.pem (`api_mode`), opt asks for them, www
/// does not; all three proxy to `backend`.
fn config(env: &Env, backend: &Backend, admin: u16, api_mode: &str) {
    let checked = |mode: &str| {
        format!("client_certificates = {{ mode = \"{mode}\", cas = [\"clients/ca.pem\"] }}")
    };
    let body = Config::new()
        .admin(env, admin)
        .upstream("b", &[backend.port])
        .site("api", &["api.example.cn"])
        .keys(&checked(api_mode))
        .proxy("/", "b")
        .site("www", &["www.example.cn"])
        .proxy("/", "b")
        .site("opt", &["opt.example.cn"])
        .keys(&checked("optional"))
        .proxy("/", "b");
    env.write_config("", body);
}

/// A client trusting `root`, presenting `cert` when given.
fn client(root: &Ca, cert: Option<&Leaf>) -> TlsConnector {
    TlsConnector::from(Arc::new(client_config(root, cert)))
}

fn client_config(root: &Ca, cert: Option<&Leaf>) -> rustls::ClientConfig {
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_root_certificates(root_store(&[&root.pem]));
    match cert {
        None => builder.with_no_client_auth(),
        Some(leaf) => {
            let chain = rustls_pemfile::certs(&mut leaf.pem.as_bytes())
                .collect::<Result<Vec<_>, _>>()
                .expect("client chain");
            let key = rustls_pemfile::private_key(&mut leaf.key_pem.as_bytes())
                .expect("client key PEM")
                .expect("a key");
            builder
                .with_client_auth_cert(chain, key)
                .expect("client certificate")
        }
    }
}

/// GET / over HTTP/2 with SNI and Host `host`, presenting `cert`, sending a forged
/// X-Forwarded-Client-Cert: the status.
async fn visit_h2(root: &Ca, cert: &Leaf, port: u16, host: &str) -> u16 {
    let mut config = client_config(root, Some(cert));
    config.alpn_protocols = vec![b"h2".to_vec()];
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    let name = rustls::pki_types::ServerName::try_from(host.to_owned()).expect("name");
    let tls = TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .expect("TLS");
    let (send, conn) = h2::client::handshake(tls).await.expect("h2");
    tokio::spawn(conn);
    let request = http::Request::get(format!("https://{host}/"))
        .header("x-forwarded-client-cert", "Hash=00;Subject=\"CN=admin\"")
        .body(())
        .expect("request");
    let mut send = send.ready().await.expect("ready");
    let (response, _) = send.send_request(request, true).expect("send");
    response.await.expect("response").status().as_u16()
}

/// GET / with SNI `sni` and Host `host`, sending a forged X-Forwarded-Client-Cert.
async fn visit(
    client: &TlsConnector,
    env: &Env,
    sni: &str,
    host: &str,
) -> std::io::Result<Response> {
    let forged = "X-Forwarded-Client-Cert: Hash=00;Subject=\"CN=admin\"\r\n";
    raw_tls(client, env.https, sni, b"", &get_with(host, "/", forged)).await
}

/// The X-Forwarded-Client-Cert lines of the backend's last request.
fn forwarded_certs(backend: &Backend) -> Vec<String> {
    let request = backend.last_request();
    let lines = request.lines().filter(|l| {
        l.split_once(':')
            .is_some_and(|(n, _)| n.eq_ignore_ascii_case("x-forwarded-client-cert"))
    });
    lines
        .map(|l| l.split_once(':').map_or("", |(_, v)| v).trim().to_owned())
        .collect()
}

/// What menshen should send for `leaf`: its DER's SHA-256 and its subject.
fn expected(leaf: &Leaf, cn: &str) -> String {
    let der: CertificateDer<'_> = rustls_pemfile::certs(&mut leaf.pem.as_bytes())
        .next()
        .expect("a certificate")
        .expect("PEM");
    let hash = ring::digest::digest(&ring::digest::SHA256, der.as_ref());
    let hex: String = hash.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    format!("Hash={hex};Subject=\"CN={cn}, O=menshen tests\"")
}

struct Setup {
    env: Env,
    root: Ca,
    alice: Leaf,
    backend: Backend,
    admin: u16,
    /// Clients presenting alice's certificate (from the site's CA), mallory's (another CA's),
    /// and none.
    alice_c: TlsConnector,
    mallory_c: TlsConnector,
    anon: TlsConnector,
}

async fn setup() -> Setup {
    let (env, root) = Env::with_approved_root("Approved Root");
    // One certificate covers all three names, so a connection for one can carry a request
    // for another (what the client_cert rule stops).
    env.put_cert("sites", &root.issue(&LeafSpec::new(&HOSTS, 1)), &[]);
    let clients = Ca::root("Client CA");
    // In a folder of its own, as an operator would keep it: watched like the config's.
    std::fs::create_dir_all(env.path("clients")).expect("mkdir");
    env.write("clients/ca.pem", &clients.pem);
    let alice = clients.issue_client("alice");
    let mallory = Ca::root("Other CA").issue_client("mallory");
    let backend = Backend::start().await;
    let admin = free_port();
    config(&env, &backend, admin, "required");
    Setup {
        alice_c: client(&root, Some(&alice)),
        mallory_c: client(&root, Some(&mallory)),
        anon: client(&root, None),
        root,
        env,
        alice,
        backend,
        admin,
    }
}

/// A 200 whose request reached the backend without X-Forwarded-Client-Cert.
fn served_without_cert(answer: std::io::Result<Response>, backend: &Backend) {
    let answer = answer.expect("served");
    assert_eq!(answer.status, 200, "{}", answer.text());
    let request = backend.last_request();
    assert!(forwarded_certs(backend).is_empty(), "{request}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_required_site_serves_its_clients_only_and_tells_the_backend_who() {
    let Setup {
        env,
        root,
        alice,
        backend,
        admin,
        alice_c,
        mallory_c,
        anon,
    } = setup().await;
    let (ok, out) = env.check();
    assert!(ok, "{out}");
    assert!(
        out.contains("site \"api\": client certificates required, issued by: CN=Client CA"),
        "{out}"
    );
    let _proxy = env.start();

    assert_eq!(visit_h2(&root, &alice, env.https, HOSTS[0]).await, 200);
    let over_h2 = forwarded_certs(&backend);
    assert_eq!(
        over_h2,
        [expected(&alice, "alice")],
        "HTTP/2: the verified one only"
    );
    let ok = visit(&alice_c, &env, HOSTS[0], HOSTS[0])
        .await
        .expect("alice");
    assert_eq!(ok.status, 200, "{}", ok.text());
    assert_eq!(
        forwarded_certs(&backend),
        [expected(&alice, "alice")],
        "the verified one only"
    );

    let served = backend.seen.lock().expect("lock").len();
    for (who, c) in [
        ("another CA's certificate", &mallory_c),
        ("no certificate", &anon),
    ] {
        let refused = visit(c, &env, HOSTS[0], HOSTS[0]).await;
        assert!(refused.is_err(), "{who}: {:?}", refused.map(|r| r.status));
    }
    assert_eq!(
        backend.seen.lock().expect("lock").len(),
        served,
        "nothing reached the backend"
    );

    // A site without the check: the client's own header never reaches the backend.
    served_without_cert(visit(&anon, &env, HOSTS[1], HOSTS[1]).await, &backend);
    // Alice's certificate, verified on a connection for opt, is not passed on to www's backend.
    served_without_cert(visit(&alice_c, &env, HOSTS[2], HOSTS[1]).await, &backend);

    // A connection made for www (no certificate asked) cannot reach api; nor can plain HTTP.
    let misdirected = visit(&anon, &env, HOSTS[1], HOSTS[0]).await.expect("421");
    assert_eq!(misdirected.status, 421, "{}", misdirected.text());
    let plain = get_plain(env.http, HOSTS[0], "/").await.expect("plain");
    assert_eq!(plain.status, 403, "{}", plain.text());

    let status = admin::get(admin, "/status").await.text();
    assert!(
        status.contains("required, issued by CN=Client CA"),
        "{status}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_optional_site_serves_clients_without_and_a_reload_changes_the_mode() {
    let Setup {
        env,
        alice,
        backend,
        admin,
        alice_c,
        mallory_c,
        anon,
        ..
    } = setup().await;
    let _proxy = env.start();

    served_without_cert(visit(&anon, &env, HOSTS[2], HOSTS[2]).await, &backend);
    let with = visit(&alice_c, &env, HOSTS[2], HOSTS[2])
        .await
        .expect("alice");
    assert_eq!(with.status, 200);
    assert_eq!(forwarded_certs(&backend), [expected(&alice, "alice")]);
    let bad = visit(&mallory_c, &env, HOSTS[2], HOSTS[2]).await;
    assert!(
        bad.is_err(),
        "a certificate that does not verify is refused"
    );

    // api becomes optional: the next handshake of a client without a certificate is served.
    assert!(visit(&anon, &env, HOSTS[0], HOSTS[0]).await.is_err());
    config(&env, &backend, admin, "optional");
    let served = eventually(Duration::from_secs(10), || async {
        let r = visit(&anon, &env, HOSTS[0], HOSTS[0]).await.ok()?;
        (r.status == 200).then_some(())
    })
    .await;
    assert!(served.is_some(), "optional after the reload");
    assert!(forwarded_certs(&backend).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_client_ca_file_applies_to_the_next_handshake() {
    let Setup {
        env,
        root,
        alice_c,
        backend: _backend,
        ..
    } = setup().await;
    let _proxy = env.start();
    let ok = visit(&alice_c, &env, HOSTS[0], HOSTS[0])
        .await
        .expect("alice");
    assert_eq!(ok.status, 200);

    // The CA file is replaced (a new client CA): alice's certificate no longer verifies, and
    // a certificate from the new CA does.
    let new_ca = Ca::root("New Client CA");
    env.write("clients/ca.pem", &new_ca.pem);
    let bob_c = client(&root, Some(&new_ca.issue_client("bob")));
    let switched = eventually(Duration::from_secs(10), || async {
        let bob = visit(&bob_c, &env, HOSTS[0], HOSTS[0]).await.ok()?;
        (bob.status == 200).then_some(())
    })
    .await;
    assert!(
        switched.is_some(),
        "the new CA applies without a config change"
    );
    assert!(visit(&alice_c, &env, HOSTS[0], HOSTS[0]).await.is_err());
}
