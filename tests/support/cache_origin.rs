//! The edge cache's tests (`tests/cache*.rs`): an origin that answers by path and counts its
//! requests per path (and the conditional ones), which can be told to fail (503, or close
//! connections unanswered); menshen in front of it with a caching site.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};

use super::config::Config;
use super::h1::{field_value, next_head};
use super::http::{get_with, h2_connect, raw_plain, Response};
use super::{admin, free_port, Env, Running};

pub const HOST: &str = "cache.test";

/// How the origin answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Mode {
    Serve = 0,
    /// `503` to everything.
    Unavailable = 1,
    /// Connections closed as soon as a request head arrives.
    Down = 2,
}

/// An origin that answers by path and counts the requests for each.
#[derive(Clone, Default)]
pub struct Origin {
    counts: Arc<Mutex<HashMap<String, usize>>>,
    mode: Arc<AtomicU8>,
}

impl Origin {
    pub async fn start() -> (Origin, u16) {
        let origin = Origin::default();
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let o = origin.clone();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                tokio::spawn(o.clone().serve(tcp));
            }
        });
        (origin, port)
    }

    /// Requests for `path` so far (`"304 PATH"`: those answered `304 Not Modified`).
    pub fn count(&self, path: &str) -> usize {
        let counts = self.counts.lock().expect("counts");
        counts.get(path).copied().unwrap_or(0)
    }

    pub fn set_mode(&self, mode: Mode) {
        self.mode.store(mode as u8, Ordering::SeqCst);
    }

    fn counted(&self, key: &str) -> usize {
        let mut counts = self.counts.lock().expect("counts");
        let n = counts.entry(key.to_owned()).or_default();
        *n += 1;
        *n
    }

    async fn serve(self, mut tcp: TcpStream) {
        let mut buf = Vec::new();
        loop {
            let Some(head) = next_head(&mut tcp, &mut buf).await else {
                return;
            };
            let head = head.to_ascii_lowercase();
            let path = head.split(' ').nth(1).unwrap_or("/").to_owned();
            let n = self.counted(&path);
            let out = match self.mode.load(Ordering::SeqCst) {
                1 => {
                    b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 5\r\n\r\ndown\n".to_vec()
                }
                2 => return,
                _ if field_value(&head, "if-none-match").as_deref() == Some("\"v1\"") => {
                    self.counted(&format!("304 {path}"));
                    let fields = fields_of(&path).await;
                    format!("HTTP/1.1 304 Not Modified\r\n{fields}x-revalidated: yes\r\n\r\n")
                        .into_bytes()
                }
                _ => {
                    let language = field_value(&head, "accept-language").unwrap_or("none".into());
                    let body = format!("{path} #{n} for {language}\n");
                    response(
                        &path,
                        &fields_of(&path).await,
                        &body,
                        head.starts_with("head "),
                    )
                }
            };
            if tcp.write_all(&out).await.is_err() {
                return;
            }
        }
    }
}

/// A `200` with `fields` and `body`: chunked for paths under `/chunked`.
fn response(path: &str, fields: &str, body: &str, head: bool) -> Vec<u8> {
    let mut out = format!("HTTP/1.1 200 OK\r\n{fields}").into_bytes();
    if path.starts_with("/chunked") {
        out.extend(b"transfer-encoding: chunked\r\n\r\n");
        for part in body.as_bytes().chunks(7) {
            out.extend(format!("{:x}\r\n", part.len()).bytes());
            out.extend_from_slice(part);
            out.extend(b"\r\n");
        }
        out.extend(b"0\r\n\r\n");
    } else {
        out.extend(format!("content-length: {}\r\n\r\n", body.len()).bytes());
        if !head {
            out.extend(body.as_bytes());
        }
    }
    out
}

/// The origin's fields for `path`.
async fn fields_of(path: &str) -> String {
    let fields = match path.split('?').next().unwrap_or("") {
        "/nostore" => "cache-control: no-store\r\n",
        "/private" => "cache-control: private, max-age=60\r\n",
        "/public" => "cache-control: public, max-age=60\r\n",
        "/cookie" => "cache-control: max-age=60\r\nset-cookie: session=1\r\n",
        "/vary" => "cache-control: max-age=60\r\nvary: Accept-Language\r\n",
        "/short" => "cache-control: max-age=1\r\n",
        "/etag" => "cache-control: max-age=1\r\netag: \"v1\"\r\n",
        "/swr" => {
            // A revalidation slow enough for a second request to come while it runs.
            tokio::time::sleep(Duration::from_millis(1000)).await;
            "cache-control: max-age=1, stale-while-revalidate=60\r\netag: \"v1\"\r\n"
        }
        "/sie" => "cache-control: max-age=1, stale-if-error=60\r\n",
        "/text" => "cache-control: max-age=60\r\ncontent-type: text/plain\r\n",
        "/slow" => {
            // Slow, so that 100 concurrent misses arrive while its one fetch is under way.
            tokio::time::sleep(Duration::from_millis(500)).await;
            "cache-control: max-age=60\r\n"
        }
        _ => "cache-control: max-age=60\r\n",
    };
    fields.to_owned()
}

/// menshen in front of the origin, with an admin listener.
pub struct Setup {
    pub env: Env,
    pub origin: Origin,
    pub admin: u16,
    /// The origin's port.
    pub port: u16,
    pub running: Running,
    pub root_pem: String,
}

/// The config: site `cache` for [`HOST`] caching every route to the origin but `/uncached/`;
/// a takedown of `/taken/` when `takedown`.
pub fn config(env: &Env, port: u16, admin_port: u16, takedown: bool) -> Config {
    let mut c = Config::new()
        .raw(&admin::section(env, admin_port))
        .upstream("origin", &[port]);
    if takedown {
        c = c.raw(
            "[[policy.takedowns]]\nid = \"case-7\"\nhost = \"cache.test\"\nprefix = \"/taken/\"",
        );
    }
    c.site("cache", &[HOST])
        .keys("add_response_headers = { \"x-site\" = \"edited\" }")
        .raw("[sites.cache]\nmax_object_bytes = 1048576")
        .raw("[sites.compression]\nencodings = [\"gzip\"]\nmin_bytes = 1")
        .proxy("/", "origin")
        .proxy("/uncached/", "origin")
        .keys("cache = { enabled = false }")
}

pub async fn setup() -> Setup {
    let (env, root) = Env::with_approved_root("cache root");
    env.put_leaf("cache", &root, HOST, 1);
    let (origin, port) = Origin::start().await;
    let admin_port = free_port();
    env.write_config("", config(&env, port, admin_port, false));
    let running = env.start();
    Setup {
        env,
        origin,
        admin: admin_port,
        port,
        running,
        root_pem: root.pem.clone(),
    }
}

/// GET `path` from [`HOST`] over plain HTTP/1.1, `extra` header lines added.
pub async fn get(s: &Setup, path: &str, extra: &str) -> Response {
    raw_plain(s.env.http, &get_with(HOST, path, extra), None)
        .await
        .expect("GET through menshen")
}

pub fn x_cache(r: &Response) -> &str {
    r.header("x-cache").unwrap_or("none")
}

/// GET on an HTTP/2 connection: status, X-Cache and body.
pub async fn h2_get(s: &Setup, path: &str) -> (u16, String, String) {
    let mut send = h2_connect(&[&s.root_pem], s.env.https, HOST)
        .await
        .expect("h2");
    let request = http::Request::get(format!("https://{HOST}{path}"))
        .body(())
        .expect("request");
    send = send.ready().await.expect("ready");
    let (response, _) = send.send_request(request, true).expect("send");
    let response = response.await.expect("response");
    let status = response.status().as_u16();
    let x = response
        .headers()
        .get("x-cache")
        .map(|v| v.to_str().unwrap_or("").to_owned());
    let mut body = response.into_body();
    let mut text = Vec::new();
    while let Some(data) = body.data().await {
        let data = data.expect("data");
        let _ = body.flow_control().release_capacity(data.len());
        text.extend_from_slice(&data);
    }
    (
        status,
        x.unwrap_or_default(),
        String::from_utf8_lossy(&text).into_owned(),
    )
}

/// `POST /cache/purge?QUERY` on the admin listener with `token`: the status and the body.
pub async fn purge(s: &Setup, query: &str, token: Option<&str>) -> (u16, String) {
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    let raw = format!(
        "POST /cache/purge?{query} HTTP/1.1\r\nHost: admin\r\n{auth}Content-Length: 0\r\n\r\n"
    );
    let resp = super::http::raw_plain(s.admin, raw.as_bytes(), None)
        .await
        .expect("purge");
    (resp.status, resp.text())
}
