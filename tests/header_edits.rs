//! Header edits per site and per route, as the backend and the client see them over HTTP/1.1
//! and HTTP/2 (curl): request fields set in place of the client's (with the client IP, request
//! id, site and Host in their values), added beside them and removed; a route's edits after its
//! site's; response fields set by the site and the route; a reload that changes them; a
//! template naming an unknown value refused by `menshen check`.

mod support;

use support::backend::Backend;
use support::config::Config;
use support::curl::{curl, Got};
use support::{admin, free_port, Env};

/// shop at example.cn: its request edits (`X-Edge` set to `edge`), and an `/api/` route that
/// edits more.
fn config(env: &Env, backend: u16, admin_port: u16, edge: &str) -> Config {
    Config::new()
        .raw(&admin::section(env, admin_port))
        .upstream("b", &[backend])
        .site("shop", &["example.cn"])
        .keys("add_response_headers = { \"X-Site\" = \"1\" }")
        .raw(&format!(
            "[sites.request_headers]\n\
             set = {{ \"X-Edge\" = \"{edge}\", \"X-Id\" = \"id={{request_id}}\" }}\n\
             add = {{ \"X-Added\" = \"{{host}}\" }}\n\
             remove = [\"X-Secret\", \"Via\"]"
        ))
        .proxy("/", "b")
        .proxy("/api/", "b")
        .keys(
            "request_headers = { set = { \"X-Edge\" = \"api of {site}\" } }\n\
             add_response_headers = { \"X-Route\" = \"api\" }\n\
             remove_response_headers = [\"X-Site\"]",
        )
}

/// The values of field `name` in the request the backend saw last.
fn seen(backend: &Backend, name: &str) -> Vec<String> {
    let prefix = format!("{name}:");
    backend
        .last_request()
        .lines()
        .filter(|l| l.to_ascii_lowercase().starts_with(&prefix))
        .map(|l| l[prefix.len()..].trim().to_owned())
        .collect()
}

const CLIENT: [&str; 6] = [
    "-H",
    "X-Secret: token",
    "-H",
    "X-Edge: from the client",
    "-H",
    "X-Added: from the client",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sites_and_routes_edit_request_and_response_fields_on_both_engines() {
    let backend = Backend::start().await;
    let (env, _) = Env::with_site(&["example.cn"]);
    let root = env.path("root.pem").display().to_string();
    let admin_port = free_port();
    let edge = "{site} for {client_ip}";
    env.write_config("", config(&env, backend.port, admin_port, edge));
    let (ok, out) = env.check();
    assert!(ok, "{out}");
    let api = "site \"shop\" route /api/: headers request set x-id, x-edge, add x-added, \
               remove x-secret, via; response set x-route, remove x-site";
    assert!(out.contains(api), "{out}");
    let _running = env.start();
    let status = admin::get(admin_port, "/status").await.text();
    assert!(
        status.contains("(headers: request set x-id, x-edge"),
        "{status}"
    );
    for http in ["1.1", "2"] {
        let got: Got = curl(&env, &root, http, "/page", None, &CLIENT).await;
        let what = format!("HTTP/{http}: {}", backend.last_request());
        assert_eq!(seen(&backend, "x-edge"), ["shop for 127.0.0.1"], "{what}");
        let id = got.field("x-request-id").expect("a request id");
        assert_eq!(seen(&backend, "x-id"), [format!("id={id}")], "{what}");
        let added = seen(&backend, "x-added");
        assert_eq!(added.len(), 2, "{what}");
        assert!(added.contains(&"from the client".to_owned()), "{what}");
        assert!(added.iter().any(|v| v.starts_with("example.cn")), "{what}");
        assert!(seen(&backend, "x-secret").is_empty(), "{what}");
        assert!(
            seen(&backend, "via").is_empty(),
            "menshen's own field removed: {what}"
        );
        assert_eq!(got.field("x-site").as_deref(), Some("1"), "{}", got.head);
        assert_eq!(got.field("x-route"), None, "{}", got.head);

        let got = curl(&env, &root, http, "/api/x", None, &CLIENT).await;
        let what = format!("HTTP/{http} /api/: {}", backend.last_request());
        assert_eq!(seen(&backend, "x-edge"), ["api of shop"], "{what}");
        assert_eq!(
            seen(&backend, "x-id").len(),
            1,
            "the site's other edits hold: {what}"
        );
        assert!(seen(&backend, "x-secret").is_empty(), "{what}");
        assert_eq!(got.field("x-route").as_deref(), Some("api"), "{}", got.head);
        assert_eq!(
            got.field("x-site"),
            None,
            "the route removes it: {}",
            got.head
        );
    }
    env.write_config("", config(&env, backend.port, admin_port, "v2"));
    let (code, answer) = admin::reload(admin_port).await;
    assert_eq!(code, 200, "{answer}");
    curl(&env, &root, "1.1", "/page", None, &CLIENT).await;
    assert_eq!(seen(&backend, "x-edge"), ["v2"]);

    env.write_config("", config(&env, backend.port, admin_port, "{user}"));
    let (ok, out) = env.check();
    assert!(!ok, "{out}");
    assert!(
        out.contains("site \"shop\": request_headers.set")
            && out.contains("{user} is not a value menshen knows"),
        "{out}"
    );
}
