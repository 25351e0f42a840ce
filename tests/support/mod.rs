//! Test harness: a temp directory with approved roots, certificates and a config; the real
//! `menshen` binary started on loopback; real TLS clients and origins.
#![allow(dead_code)]

pub mod admin;
pub mod backend;
pub mod cache_origin;
pub mod config;
pub mod curl;
pub mod demo_pki;
pub mod failing;
pub mod failing_h2;
pub mod grpc;
pub mod h1;
pub mod h2_pages;
pub mod http;
pub mod intake;
pub mod ocsp;
pub mod origins;
pub mod pki;
pub mod policy;
pub mod python;
pub mod retrying;
pub mod schema;
pub mod shipped;
pub mod traffic;

use std::io::Read;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use pki::{Ca, Leaf};

/// One site, shop.example.cn, answering every path with 200 "ok".
pub const SHOP_SITE: &str = r#"
[[sites]]
name = "shop"
icp = "京ICP备16063439号-1"
hosts = ["shop.example.cn"]
[[sites.routes]]
prefix = "/"
respond = { body = "ok" }
"#;

/// The `[reload]` keys of a test's config: changes to the files are applied at once.
const RELOAD_WATCHED: &str = "poll_interval = \"200ms\"\ndebounce = \"50ms\"";
/// The `[reload]` keys of a config reloaded only when the test asks.
pub const RELOAD_BY_HAND: &str = "watch = false\npoll_interval = \"10m\"";

/// A free loopback port, never the same twice in one test process.
///
/// Ports come from 10000-29999, below the kernel's ephemeral range (32768+), so an outgoing
/// connection cannot take one between this check and the proxy's bind; a process-wide counter
/// keeps parallel tests from being handed the same port (asking the OS for port 0 twice can).
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let base = (std::process::id() % 400) * 50;
    loop {
        let n = NEXT.fetch_add(1, Ordering::SeqCst);
        let port = 10_000 + ((base + n) % 20_000) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// A directory laid out as menshen expects, with ports chosen for its listeners.
pub struct Env {
    pub dir: tempfile::TempDir,
    pub https: u16,
    pub http: u16,
}

impl Default for Env {
    fn default() -> Self {
        Self::new()
    }
}

impl Env {
    pub fn new() -> Env {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(dir.path().join("approved")).expect("mkdir approved");
        std::fs::create_dir_all(dir.path().join("live")).expect("mkdir live");
        // access_log.chain_key_file's default, so that every [access_log] is chained.
        let key = menshen::observe::chain::ChainKey::generate().expect("a chain key");
        std::fs::write(dir.path().join("access-log.key"), key).expect("write the chain key");
        Env {
            dir,
            https: free_port(),
            http: free_port(),
        }
    }

    /// A new directory whose approved roots hold one fresh root CA named `cn`.
    pub fn with_approved_root(cn: &str) -> (Env, Ca) {
        let env = Env::new();
        let root = Ca::root(cn);
        env.approve("root", &root);
        (env, root)
    }

    /// A new directory whose approved root issued pair `shop` for shop.example.cn, the host of
    /// [`SHOP_SITE`].
    pub fn with_shop() -> (Env, Ca) {
        let (env, root) = Env::with_approved_root("Approved Root");
        env.put_leaf("shop", &root, "shop.example.cn", 0x1);
        (env, root)
    }

    /// A new directory whose approved root issued pair `site` for `hosts`, that root's PEM
    /// also in `root.pem` (for clients that read it from a file, as curl does).
    pub fn with_site(hosts: &[&str]) -> (Env, Ca) {
        let (env, root) = Env::with_approved_root("Approved Root");
        env.put_cert("site", &root.issue(&pki::LeafSpec::new(hosts, 1)), &[]);
        env.write("root.pem", &root.pem);
        (env, root)
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// Writes a file atomically (write + rename), as an operator's `mv` would.
    pub fn write(&self, rel: &str, contents: &str) {
        let path = self.path(rel);
        let tmp = path.with_extension("tmp~");
        std::fs::write(&tmp, contents).expect("write tmp");
        std::fs::rename(&tmp, &path).expect("rename into place");
    }

    /// Adds `ca` to the approved roots.
    pub fn approve(&self, name: &str, ca: &Ca) {
        self.write(&format!("approved/{name}.pem"), &ca.pem);
    }

    /// Installs a pair `live/NAME.crt` (leaf then `chain`) + `live/NAME.key`: key first, so
    /// a watcher never sees the new certificate with the old key.
    pub fn put_cert(&self, name: &str, leaf: &Leaf, chain: &[&Ca]) {
        self.put_pair(name, leaf, chain, &leaf.key_pem);
    }

    /// Issues a leaf for `host` with `serial` from `ca` and writes it as pair `name`, no chain.
    pub fn put_leaf(&self, name: &str, ca: &Ca, host: &str, serial: u64) {
        self.put_cert(name, &ca.issue(&pki::LeafSpec::new(&[host], serial)), &[]);
    }

    pub fn put_pair(&self, name: &str, leaf: &Leaf, chain: &[&Ca], key_pem: &str) {
        let mut pem = leaf.pem.clone();
        for ca in chain {
            pem.push_str(&ca.pem);
        }
        self.write(&format!("live/{name}.key"), key_pem);
        self.write(&format!("live/{name}.crt"), &pem);
    }

    /// The config: listeners and TLS wired to this directory, then `body` (upstreams, sites).
    /// Reloads follow the files (a watcher and a quick poll).
    pub fn config_text(&self, tls_extra: &str, body: impl AsRef<str>) -> String {
        self.config_with(tls_extra, RELOAD_WATCHED, body.as_ref())
    }

    /// The config as `config_text` writes it, but reloaded only when the test asks (SIGHUP, `POST
    /// /reload`): no watcher, a poll every ten minutes.
    pub fn config_text_reloaded_by_hand(&self, tls_extra: &str, body: impl AsRef<str>) -> String {
        self.config_with(tls_extra, RELOAD_BY_HAND, body.as_ref())
    }

    fn config_with(&self, tls_extra: &str, reload: &str, body: &str) -> String {
        format!(
            r#"
[[listeners]]
name = "https"
addr = "127.0.0.1:{https}"
tls = true

[[listeners]]
name = "http"
addr = "127.0.0.1:{http}"

[tls]
approved_cas = ["approved"]
certificates = ["live"]
{tls_extra}

[reload]
{reload}

{body}
"#,
            https = self.https,
            http = self.http
        )
    }

    pub fn write_config(&self, tls_extra: &str, body: impl AsRef<str>) {
        self.write("menshen.toml", &self.config_text(tls_extra, body));
    }

    /// `menshen check`: (success, combined output).
    pub fn check(&self) -> (bool, String) {
        check(&self.path("menshen.toml"))
    }

    /// `menshen certs` output.
    pub fn certs(&self) -> String {
        let out = Command::new(env!("CARGO_BIN_EXE_menshen"))
            .args(["certs", "--config"])
            .arg(self.path("menshen.toml"))
            .output()
            .expect("run menshen certs");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Starts the proxy and waits until both listeners accept.
    pub fn start(&self) -> Running {
        let running = self.spawn();
        for port in [self.https, self.http] {
            if !wait_port(port, Duration::from_secs(20)) {
                panic!("menshen did not listen on {port}:\n{}", running.log());
            }
        }
        running
    }

    /// Starts the proxy without waiting (for start-up failures).
    pub fn spawn(&self) -> Running {
        let log = self.path("menshen.log");
        let file = std::fs::File::create(&log).expect("log file");
        let child = Command::new(env!("CARGO_BIN_EXE_menshen"))
            .arg("--config")
            .arg(self.path("menshen.toml"))
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdout(file.try_clone().expect("dup log"))
            .stderr(file)
            .stdin(Stdio::null())
            .spawn()
            .expect("spawn menshen");
        Running { child, log }
    }
}

/// `menshen check --config CONFIG`: (success, combined output).
pub fn check(config: &Path) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_menshen"))
        .args(["check", "--config"])
        .arg(config)
        .output()
        .expect("run menshen check");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// Waits until something accepts on `port`.
pub fn wait_port(port: u16, timeout: Duration) -> bool {
    let end = Instant::now() + timeout;
    while Instant::now() < end {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

/// A running proxy; killed on drop.
pub struct Running {
    pub child: Child,
    log: PathBuf,
}

impl Running {
    pub fn log(&self) -> String {
        let mut s = String::new();
        if let Ok(mut f) = std::fs::File::open(&self.log) {
            let _ = f.read_to_string(&mut s);
        }
        s
    }

    /// Waits for the process to exit; its exit code.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<i32> {
        let end = Instant::now() + timeout;
        while Instant::now() < end {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }

    pub fn log_path(&self) -> &Path {
        &self.log
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls `f` until it returns `Some`, for at most `timeout`.
pub async fn eventually<T, F, Fut>(timeout: Duration, mut f: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let end = Instant::now() + timeout;
    loop {
        if let Some(v) = f().await {
            return Some(v);
        }
        if Instant::now() > end {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Starts a binary upgrade of the process `old_pid` running `env`'s config (which has
/// `upgrade_sock = "upgrade.sock"`): the new process, logging to `log`, once it waits for the
/// listening sockets and the old one has been told to hand them over (SIGQUIT).
pub async fn upgrade(env: &Env, old_pid: &str, log: &Path) -> Child {
    let _ = std::fs::remove_file(env.path("upgrade.sock"));
    let file = std::fs::File::create(log).expect("log");
    let new = Command::new(env!("CARGO_BIN_EXE_menshen"))
        .args(["--upgrade", "--config"])
        .arg(env.path("menshen.toml"))
        .env("RUST_LOG", "info")
        .stdout(file.try_clone().expect("dup"))
        .stderr(file)
        .spawn()
        .expect("start the new menshen");
    let sock = env.path("upgrade.sock");
    let waiting = eventually(Duration::from_secs(20), || {
        let sock = sock.clone();
        async move { sock.exists().then_some(()) }
    })
    .await;
    assert!(waiting.is_some(), "the new process waits for the sockets");
    let quit = Command::new("kill").args(["-QUIT", old_pid]).status();
    assert!(quit.is_ok_and(|s| s.success()), "kill -QUIT {old_pid}");
    new
}
