//! The admin listener: liveness, readiness, metrics, reload, and the status page.
//!
//! It runs on the control runtime, apart from pingora's services, so that it keeps answering
//! (`/readyz` 503) while the proxy drains on SIGTERM. Requests are tiny and rare: one request per
//! connection, parsed with httparse.

mod purge;
mod status;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::observe::access_log::AccessLog;
use crate::observe::audit::Audit;
use crate::observe::metrics::{catch_up, metrics};
use crate::reload::{self, Reloader};
use crate::snapshot::SharedSnapshot;

/// Longest admin request head.
const MAX_HEAD: usize = 16 * 1024;

/// Shared state of the admin endpoints.
pub struct Admin {
    state: SharedSnapshot,
    reloader: Arc<Reloader>,
    access_log: Option<Arc<AccessLog>>,
    audit: Option<Audit>,
    ready: AtomicBool,
    draining: AtomicBool,
}

/// One admin response.
struct Reply {
    status: u16,
    content_type: &'static str,
    body: String,
    /// What a reload this request asked for came to (the audit log's outcome).
    reload: Option<reload::Outcome>,
}

impl Reply {
    fn ok(content_type: &'static str, body: String) -> Self {
        Self {
            status: 200,
            content_type,
            body,
            reload: None,
        }
    }

    fn text(status: u16, body: impl Into<String>) -> Self {
        Self {
            status,
            content_type: "text/plain; charset=utf-8",
            body: body.into(),
            reload: None,
        }
    }
}

impl Admin {
    /// Admin state over the serving snapshot.
    pub fn new(
        state: SharedSnapshot,
        reloader: Arc<Reloader>,
        access_log: Option<Arc<AccessLog>>,
        audit: Option<Audit>,
    ) -> Arc<Self> {
        Arc::new(Self {
            state,
            reloader,
            access_log,
            audit,
            ready: AtomicBool::new(false),
            draining: AtomicBool::new(false),
        })
    }

    /// Marks the proxy ready once every listener accepts connections.
    pub async fn wait_until_listening(&self) {
        let addrs: Vec<std::net::SocketAddr> = self
            .state
            .load()
            .listeners()
            .iter()
            .map(|l| l.addr)
            .collect();
        for addr in addrs {
            while TcpStream::connect(addr).await.is_err() {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        self.ready.store(true, Ordering::SeqCst);
        tracing::info!("ready: every listener accepts connections");
    }

    /// Turns `/readyz` to 503 (called on SIGTERM).
    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::SeqCst);
    }

    /// Serves admin requests on `listener` until the process exits.
    pub async fn serve(self: Arc<Self>, listener: TcpListener) {
        loop {
            let Ok((stream, peer)) = listener.accept().await else {
                continue;
            };
            let this = self.clone();
            tokio::spawn(async move {
                let _ =
                    tokio::time::timeout(Duration::from_secs(30), this.handle(stream, peer)).await;
            });
        }
    }

    async fn handle(&self, mut stream: TcpStream, peer: SocketAddr) {
        let mut buf = Vec::with_capacity(1024);
        let mut asked = None;
        let mut chunk = [0u8; 2048];
        let reply = loop {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
            let mut headers = [httparse::EMPTY_HEADER; 32];
            let mut req = httparse::Request::new(&mut headers);
            match req.parse(&buf) {
                Ok(httparse::Status::Complete(_)) => {
                    let method = req.method.unwrap_or("GET").to_owned();
                    let path = req.path.unwrap_or("/").to_owned();
                    let auth = req
                        .headers
                        .iter()
                        .find(|h| h.name.eq_ignore_ascii_case("authorization"))
                        .map(|h| String::from_utf8_lossy(h.value).into_owned());
                    let reply = self.route(&method, &path, auth.as_deref()).await;
                    asked = Some((method, path));
                    break reply;
                }
                Ok(httparse::Status::Partial) if buf.len() < MAX_HEAD => continue,
                _ => break Reply::text(400, "bad request\n"),
            }
        };
        let head = format!(
            "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n",
            reply.status,
            http::StatusCode::from_u16(reply.status)
                .ok()
                .and_then(|s| s.canonical_reason())
                .unwrap_or(""),
            reply.content_type,
            reply.body.len()
        );
        if let (Some(audit), Some((method, path))) = (&self.audit, &asked) {
            audit_action(audit, peer, method, path, &reply);
        }
        let _ = stream.write_all(head.as_bytes()).await;
        let _ = stream.write_all(reply.body.as_bytes()).await;
        let _ = stream.shutdown().await;
    }

    async fn route(&self, method: &str, path: &str, auth: Option<&str>) -> Reply {
        let (path, query) = path.split_once('?').unwrap_or((path, ""));
        match (method, path) {
            ("GET" | "HEAD", "/healthz") => Reply::text(200, "ok\n"),
            ("GET" | "HEAD", "/readyz") => self.readyz(),
            ("GET", "/metrics") => self.metrics(),
            ("GET", "/status") => Reply::ok(
                "text/html; charset=utf-8",
                status::render(&self.state.load(), &self.reloader),
            ),
            ("GET", "/status.json") => Reply::ok(
                "application/json",
                status::json(&self.state.load(), &self.reloader),
            ),
            ("POST", "/reload") => self.reload(auth).await,
            ("POST", "/cache/purge") => match self.authorized(auth, "POST /cache/purge") {
                Ok(()) => purge::purge(&self.state.load(), query),
                Err(refused) => refused,
            },
            (
                _,
                "/healthz" | "/readyz" | "/metrics" | "/status" | "/status.json" | "/reload"
                | "/cache/purge",
            ) => Reply::text(405, "method not allowed\n"),
            _ => Reply::text(
                404,
                "not found; try /healthz /readyz /metrics /status /status.json, POST /reload, \
                 POST /cache/purge\n",
            ),
        }
    }

    fn readyz(&self) -> Reply {
        if self.draining.load(Ordering::SeqCst) {
            Reply::text(503, "draining\n")
        } else if self.ready.load(Ordering::SeqCst) {
            Reply::text(200, "ready\n")
        } else {
            Reply::text(503, "starting\n")
        }
    }

    fn metrics(&self) -> Reply {
        let m = metrics();
        // Registers the connection families, so that they show before the first connection.
        crate::observe::metrics::conn_metrics();
        let snapshot = self.state.load();
        m.upstream_healthy.reset();
        for up in snapshot.upstreams.values() {
            for (addr, healthy) in up.backend_health() {
                m.upstream_healthy
                    .with_label_values(&[up.name.as_str(), &addr.to_string()])
                    .set(f64::from(u8::from(healthy)));
            }
        }
        m.certs
            .rejected_files
            .set(snapshot.cert_errors.len() as f64);
        m.certs.expiry.reset();
        m.certs.ocsp_next_update.reset();
        m.certs.ocsp_status.reset();
        if let Some(store) = crate::cache::store::current() {
            let stats = store.stats();
            let c = crate::observe::cache_metrics::cache_metrics();
            c.entries.set(stats.entries as f64);
            c.stored_bytes.set(stats.bytes as f64);
        }
        let now = crate::tls::cert::unix_now();
        for cert in snapshot.certs.certs() {
            let name = cert.info.name.as_str();
            m.certs
                .expiry
                .with_label_values(&[name, cert.info.root.as_str()])
                .set(cert.info.not_after as f64);
            let ocsp = cert.ocsp.load();
            let Some(ocsp) = ocsp.as_deref() else {
                continue;
            };
            m.certs
                .ocsp_status
                .with_label_values(&[name, ocsp.status_label(now)])
                .set(1.0);
            if let (Some(v), Some(_)) = (&ocsp.verified, ocsp.current(now)) {
                m.certs
                    .ocsp_next_update
                    .with_label_values(&[name])
                    .set(v.next_update as f64);
            }
        }
        if let Some(log) = &self.access_log {
            m.access_log
                .backlog
                .set(log.backlog.load(Ordering::Relaxed) as f64);
            let dropped = log.dropped.load(Ordering::Relaxed);
            catch_up(&m.access_log.dropped, dropped);
            catch_up(
                &m.access_log.write_failed,
                log.failed.load(Ordering::Relaxed),
            );
        }
        let families = prometheus::gather();
        let mut body = String::new();
        if let Err(e) = prometheus::TextEncoder::new().encode_utf8(&families, &mut body) {
            return Reply::text(500, format!("cannot encode metrics: {e}\n"));
        }
        Reply::ok("text/plain; version=0.0.4; charset=utf-8", body)
    }

    async fn reload(&self, auth: Option<&str>) -> Reply {
        if let Err(refused) = self.authorized(auth, "POST /reload") {
            return refused;
        }
        let report = self.reloader.reload("API").await;
        Reply {
            status: if report.applied() { 200 } else { 422 },
            content_type: "application/json",
            body: report.to_json() + "\n",
            reload: Some(report.result),
        }
    }
}

impl Admin {
    /// Whether `auth` carries the reload token (`admin.reload_token_file`), which guards what
    /// acts (`what`); `Err` is the refusal.
    fn authorized(&self, auth: Option<&str>, what: &str) -> Result<(), Reply> {
        let Some(token_file) = self
            .state
            .load()
            .admin
            .as_ref()
            .and_then(|a| a.reload_token_file.clone())
        else {
            return Err(Reply::text(
                403,
                format!("{what} over HTTP is disabled: set admin.reload_token_file\n"),
            ));
        };
        let expected = match std::fs::read_to_string(&token_file) {
            Ok(t) if !t.trim().is_empty() => t.trim().to_owned(),
            _ => {
                tracing::error!(file = %token_file.display(), "admin reload token file unreadable or empty");
                return Err(Reply::text(
                    403,
                    "reload token file is unreadable or empty\n",
                ));
            }
        };
        let Some(given) = auth.and_then(|a| a.strip_prefix("Bearer ")) else {
            return Err(Reply::text(
                401,
                format!("{what} needs Authorization: Bearer <token>\n"),
            ));
        };
        if !constant_time_eq(given.trim().as_bytes(), expected.as_bytes()) {
            return Err(Reply::text(403, "wrong reload token\n"));
        }
        Ok(())
    }
}

/// Records an admin request that acts (anything but a GET or HEAD) in the audit log.
fn audit_action(audit: &Audit, peer: SocketAddr, method: &str, path: &str, reply: &Reply) {
    if matches!(method, "GET" | "HEAD") {
        return;
    }
    let (path, query) = path.split_once('?').unwrap_or((path, ""));
    let action = match (method, path) {
        ("POST", "/reload") => "reload".to_owned(),
        // What was purged: `url=...` or `prefix=...`.
        ("POST", "/cache/purge") => format!("cache purge {query}"),
        _ => format!("{method} {path}"),
    };
    let outcome = match (reply.reload, reply.status) {
        (Some(reload), _) => reload.label(),
        (None, 200) => "ok",
        (None, 401 | 403) => "refused",
        (None, _) => "failed",
    };
    let detail: String = reply.body.trim().chars().take(2000).collect();
    audit.record(&action, &peer.to_string(), outcome, &detail);
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
