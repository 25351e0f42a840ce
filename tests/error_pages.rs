//! Error pages as clients see them over HTTP/1.1 and HTTP/2 (curl): a site's bilingual 451 for a
//! takedown chosen by Accept-Language q-values, the process-wide page for a 403 deny and a 429
//! (its Retry-After kept), the site's 502 page with the backend down, JSON for a client that
//! asks for it (with a page and without), HEAD without a body, the request id in the page the
//! same as X-Request-Id and the access log's; `menshen check` and `/status` list them; a page
//! file edited is served after the reload, and a reload to a missing file is refused with the
//! last good page serving on.

mod support;

use serde_json::Value;
use support::backend::Backend;
use support::config::Config;
use support::curl::{curl_to, Got};
use support::{admin, eventually, free_port, Env};

const ZH: &str = "<h1>{{status}} 因法律原因无法访问</h1><p>编号 {{request_id}}</p>\n";
const EN: &str = "<style>p { color: red }</style><h1>{{ status }} {{reason}}</h1>\
                  <p>{{host}} id {{request_id}}</p>\n";

/// The takedown of `example.cn/banned/`, answered with 451 and the site's page.
const TAKEDOWN: &str = "[[policy.takedowns]]\nid = \"case-7\"\nhost = \"example.cn\"\n\
                        prefix = \"/banned/\"\nbody = \"gone\\n\"";

/// A page written in the config.
fn inline(template: &str) -> String {
    format!("template = {template:?}")
}

/// The site `shop` with a page per language for its takedown (English from `en_file`) and one
/// for a backend in trouble, a route to a backend, one to a backend that is down, one rate
/// limited; the site `blocked`, which denies every client; a page for the process's 403 and 429.
fn config(env: &Env, backend: u16, admin: u16, en_file: &str) -> Config {
    let status = "<p>{{status}} from menshen for {{site}}, id {{request_id}}</p>";
    Config::new()
        .admin(env, admin)
        .access_log("logs/access.log")
        .raw(TAKEDOWN)
        .error_page(&[403, 429], &inline(status))
        .upstream("b", &[backend])
        .upstream("down", &[free_port()])
        .site("shop", &["example.cn"])
        .site_error_page(&[451], "language = \"zh-CN\"\nfile = \"pages/451.zh.html\"")
        .site_error_page(&[451], &format!("language = \"en\"\nfile = {en_file:?}"))
        .site_error_page(
            &[502, 504],
            &inline("<p>backend trouble on {{site}}: {{request_id}}</p>"),
        )
        .proxy("/app/", "b")
        .proxy("/down/", "down")
        .proxy("/limited/", "b")
        .keys("rate_limit = { requests_per_second = 0.01, burst = 1 }")
        .site("blocked", &["blocked.example.cn"])
        .keys("deny = [\"127.0.0.0/8\"]")
        .respond("/", "never")
}

struct Proxy {
    env: Env,
    root: String,
    admin: u16,
    backend: Backend,
    _running: support::Running,
}

async fn start() -> Proxy {
    let backend = Backend::start().await;
    let (env, _) = Env::with_site(&["example.cn", "blocked.example.cn"]);
    std::fs::create_dir_all(env.path("pages")).expect("mkdir pages");
    env.write("pages/451.zh.html", ZH);
    env.write("pages/451.en.html", EN);
    let admin = free_port();
    env.write_config("", config(&env, backend.port, admin, "pages/451.en.html"));
    let running = env.start();
    Proxy {
        root: env.path("root.pem").display().to_string(),
        env,
        admin,
        backend,
        _running: running,
    }
}

impl Proxy {
    async fn get(&self, http: &str, host: &str, path: &str, fields: &[&str]) -> Got {
        let mut extra = Vec::new();
        for f in fields {
            extra.extend(["-H", f]);
        }
        curl_to(&self.env, &self.root, (http, host), path, None, &extra).await
    }

    /// The access log line of the request with this id, once written.
    async fn log_line(&self, id: &str) -> Value {
        let path = self.env.path("logs/access.log");
        let found = eventually(std::time::Duration::from_secs(5), || {
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            let line = text
                .lines()
                .filter_map(|l| serde_json::from_str::<Value>(l).ok())
                .find(|v| v["request_id"] == id);
            async move { line }
        })
        .await;
        found.unwrap_or_else(|| panic!("no access log line for {id}"))
    }
}

fn status(got: &Got) -> u16 {
    let line = got.head.lines().rev().find(|l| l.starts_with("HTTP/"));
    let code = line.and_then(|l| l.split(' ').nth(1));
    code.and_then(|c| c.parse().ok()).expect("a status line")
}

fn body(got: &Got) -> String {
    String::from_utf8(got.body.clone()).expect("UTF-8 body")
}

/// The response's request id, checked to be the access log line's too.
async fn id_logged(p: &Proxy, got: &Got) -> String {
    let id = got.field("x-request-id").expect("x-request-id");
    let line = p.log_line(&id).await;
    assert_eq!(line["status"], u64::from(status(got)), "{line}");
    id
}

/// The page's `Content-Length` is its body's.
fn whole(got: &Got) {
    let length = got.field("content-length").expect("content-length");
    assert_eq!(length, got.body.len().to_string(), "{}", got.head);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_json_and_languages_on_both_engines() {
    let p = start().await;
    for http in ["1.1", "2"] {
        let zh_first = "Accept-Language: zh-CN,zh;q=0.9,en;q=0.8";
        let got = p.get(http, "example.cn", "/banned/x", &[zh_first]).await;
        let what = format!("HTTP/{http}: {}", got.head);
        assert_eq!(status(&got), 451, "{what}");
        let id = id_logged(&p, &got).await;
        assert_eq!(
            body(&got),
            format!("<h1>451 因法律原因无法访问</h1><p>编号 {id}</p>\n")
        );
        assert_eq!(
            got.field("content-language").as_deref(),
            Some("zh-CN"),
            "{what}"
        );
        let html = Some("text/html; charset=utf-8");
        assert_eq!(got.field("content-type").as_deref(), html, "{what}");
        let vary = Some("Accept, Accept-Language");
        assert_eq!(got.field("vary").as_deref(), vary, "{what}");
        whole(&got);

        let en_first = "Accept-Language: zh;q=0.5, en-GB;q=0.8, fr";
        let got = p.get(http, "example.cn", "/banned/x", &[en_first]).await;
        let id = id_logged(&p, &got).await;
        let en = format!(
            "<style>p {{ color: red }}</style><h1>451 Unavailable For Legal Reasons</h1>\
             <p>example.cn id {id}</p>\n"
        );
        assert_eq!(body(&got), en, "HTTP/{http}");
        assert_eq!(got.field("content-language").as_deref(), Some("en"));
        whole(&got);

        let got = p
            .get(http, "example.cn", "/banned/x", &["Accept-Language: de"])
            .await;
        assert_eq!(
            got.field("content-language").as_deref(),
            Some("zh-CN"),
            "the first listed"
        );

        // HEAD: the page's fields, no body.
        let head = ["-I", "-H", "Accept-Language: en"];
        let got = curl_to(
            &p.env,
            &p.root,
            (http, "example.cn"),
            "/banned/x",
            None,
            &head,
        )
        .await;
        assert_eq!(status(&got), 451, "HEAD HTTP/{http}");
        // curl -I writes the head where the body would go: nothing may follow it.
        let written = String::from_utf8_lossy(&got.body).into_owned();
        assert!(written.ends_with("\r\n\r\n"), "HEAD HTTP/{http}: {written}");
        assert_eq!(written.matches("\r\n\r\n").count(), 1, "{written}");
        let length: usize = got
            .field("content-length")
            .expect("length")
            .parse()
            .expect("n");
        assert_eq!(
            length,
            en.len(),
            "HEAD's length is the page's: {}",
            got.head
        );
        let id = got.field("x-request-id").expect("x-request-id");
        assert_eq!(p.log_line(&id).await["bytes_out"], 0, "HEAD HTTP/{http}");

        // JSON, ranked above HTML: with a page configured, and without (404 has none).
        let json = "Accept: application/json, text/html;q=0.9";
        for (path, code, error) in [
            ("/banned/x", 451, "Unavailable For Legal Reasons"),
            ("/nowhere", 404, "Not Found"),
        ] {
            let got = p.get(http, "example.cn", path, &[json, zh_first]).await;
            let id = id_logged(&p, &got).await;
            let value: Value = serde_json::from_slice(&got.body).expect("a JSON body");
            let expected = serde_json::json!({"status": code, "error": error, "request_id": id});
            assert_eq!(value, expected, "HTTP/{http} {path}");
            let json_type = Some("application/json");
            assert_eq!(got.field("content-type").as_deref(), json_type);
            assert_eq!(got.field("vary").as_deref(), Some("Accept"));
            assert_eq!(got.field("content-language"), None);
            whole(&got);
        }
        // A browser's Accept keeps the text of a status without a page.
        let browser = "Accept: text/html,application/xhtml+xml,*/*;q=0.8";
        let got = p.get(http, "example.cn", "/nowhere", &[browser]).await;
        assert_eq!(status(&got), 404);
        let text = Some("text/plain; charset=utf-8");
        assert_eq!(got.field("content-type").as_deref(), text, "HTTP/{http}");

        // A 403 deny: the process-wide page (the site has none for 403).
        let got = p.get(http, "blocked.example.cn", "/", &[]).await;
        assert_eq!(status(&got), 403, "HTTP/{http}: {}", got.head);
        let id = id_logged(&p, &got).await;
        let page = format!("<p>403 from menshen for blocked, id {id}</p>");
        assert_eq!(body(&got), page);
        assert_eq!(got.field("vary").as_deref(), Some("Accept"), "one language");

        // A 502 with the backend down: the site's page.
        let got = p.get(http, "example.cn", "/down/x", &[]).await;
        assert_eq!(status(&got), 502, "HTTP/{http}: {}", got.head);
        let id = id_logged(&p, &got).await;
        assert_eq!(body(&got), format!("<p>backend trouble on shop: {id}</p>"));
        whole(&got);

        // The backend still answers for itself.
        let got = p.get(http, "example.cn", "/app/ok", &[]).await;
        assert_eq!(status(&got), 200, "HTTP/{http}");
    }

    // A 429 keeps its Retry-After with the page.
    let mut limited = None;
    for _ in 0..5 {
        let got = p.get("2", "example.cn", "/limited/", &[]).await;
        if status(&got) == 429 {
            limited = Some(got);
            break;
        }
    }
    let got = limited.expect("a 429 past the burst");
    assert!(got.field("retry-after").is_some(), "{}", got.head);
    let id = id_logged(&p, &got).await;
    assert_eq!(
        body(&got),
        format!("<p>429 from menshen for shop, id {id}</p>")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_reload_and_a_missing_file_is_refused_keeping_the_last_good_page() {
    let p = start().await;
    let (ok, out) = p.env.check();
    assert!(ok, "{out}");
    assert!(
        out.contains("site \"shop\": error pages 451 (zh-CN, en), 502, 504"),
        "{out}"
    );
    assert!(
        out.contains("error pages (process-wide): 403, 429"),
        "{out}"
    );
    let page = admin::get(p.admin, "/status").await.text();
    assert!(
        page.contains("451 (zh-CN, en), 502, 504; process-wide: 403, 429"),
        "{page}"
    );
    // The same for machines, with where each page came from.
    let status = admin::status(p.admin).await;
    let inline = |s: u16| serde_json::json!({"status": s, "variants": [{"language": null, "source": "inline"}]});
    assert_eq!(
        status["error_pages"],
        serde_json::json!([inline(403), inline(429)])
    );
    let sites = status["sites"].as_array().expect("sites");
    let names: Vec<&str> = sites.iter().filter_map(|s| s["name"].as_str()).collect();
    assert_eq!(names, ["shop", "blocked"], "{status}");
    let shop = &sites[0]["error_pages"];
    let file = |name: &str| p.env.path(name).display().to_string();
    let variants = serde_json::json!([
        {"language": "zh-CN", "source": file("pages/451.zh.html")},
        {"language": "en", "source": file("pages/451.en.html")},
    ]);
    assert_eq!(
        shop[0],
        serde_json::json!({"status": 451, "variants": variants}),
        "{shop}"
    );
    assert_eq!(shop[1], inline(502), "{shop}");
    assert_eq!(shop[2], inline(504), "{shop}");
    assert_eq!(shop.as_array().map(Vec::len), Some(3), "{shop}");
    assert_eq!(sites[1]["error_pages"], serde_json::json!([]), "{status}");

    let en = ["Accept-Language: en"];
    p.env
        .write("pages/451.en.html", "<p>edited {{request_id}}</p>");
    let edited = eventually(std::time::Duration::from_secs(10), || async {
        let got = p.get("1.1", "example.cn", "/banned/", &en).await;
        body(&got).starts_with("<p>edited ").then_some(got)
    })
    .await
    .expect("the edited page is served after the content poll's reload");
    let id = id_logged(&p, &edited).await;
    assert_eq!(body(&edited), format!("<p>edited {id}</p>"));

    // The config now names a file that is not there: refused, the last good page serves on.
    let backend = p.backend.port;
    p.env
        .write_config("", config(&p.env, backend, p.admin, "pages/missing.html"));
    let (code, answer) = admin::reload(p.admin).await;
    assert_eq!(code, 422, "{answer}");
    assert_eq!(answer["result"], "rejected", "{answer}");
    let errors = answer["errors"].to_string();
    assert!(
        errors.contains("site \\\"shop\\\": error_pages[1].file")
            && errors.contains("pages/missing.html: cannot read it")
            && errors.contains("create it or fix the path"),
        "{answer}"
    );
    let (ok, out) = p.env.check();
    assert!(!ok, "{out}");
    assert!(out.contains("pages/missing.html: cannot read it"), "{out}");
    for http in ["1.1", "2"] {
        let got = p.get(http, "example.cn", "/banned/", &en).await;
        assert!(
            body(&got).starts_with("<p>edited "),
            "HTTP/{http}: {}",
            body(&got)
        );
    }

    // An unknown value is refused the same way, naming the file and the values there are.
    p.env.write("pages/bad.html", "<p>{{requestid}}</p>");
    p.env
        .write_config("", config(&p.env, backend, p.admin, "pages/bad.html"));
    let (code, answer) = admin::reload(p.admin).await;
    assert_eq!(code, 422, "{answer}");
    let errors = answer["errors"].to_string();
    assert!(
        errors.contains(
            "pages/bad.html: {{requestid}} is not a value menshen knows (use {{request_id}}"
        ),
        "{answer}"
    );
}
