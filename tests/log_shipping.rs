//! Shipping sealed log files to S3-compatible storage, against a real S3-compatible server
//! (moto, installed by `make test` under target/moto): files wait in the spool while the store is
//! down, are uploaded compressed once it is up (and what the store holds verifies with `menshen
//! logs verify`), are shipped again after a restart if their marker is gone, and retention
//! removes an old file only once it is shipped.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, SystemTime};

use support::admin::metric;
use support::config::Config;
use support::http::{get_plain, raw_plain};
use support::{free_port, Env, SHOP_SITE};

const MOTO: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/target/moto/bin/moto_server");
const BUCKET: &str = "menshen-logs";

/// A moto S3 server on `port`, killed on drop.
struct Moto(Child);

impl Moto {
    fn start(port: u16) -> Moto {
        assert!(
            Path::new(MOTO).exists(),
            "{MOTO} is missing: `make test` installs moto[server] from PyPI (make moto)"
        );
        let child = Command::new(MOTO)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start moto_server");
        assert!(
            support::wait_port(port, Duration::from_secs(30)),
            "moto listens"
        );
        Moto(child)
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn s3(port: u16, method: &str, path: &str) -> support::http::Response {
    let raw = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 0\r\n\
         Connection: close\r\n\r\n"
    );
    raw_plain(port, raw.as_bytes(), None)
        .await
        .expect("S3 request")
}

/// A GET of `key`, signed as menshen signs (objects are private).
async fn s3_get(port: u16, key: &str) -> support::http::Response {
    use rusty_s3::{Bucket, Credentials, S3Action, UrlStyle};
    let endpoint = format!("http://127.0.0.1:{port}").parse().expect("url");
    let bucket = Bucket::new(endpoint, UrlStyle::Path, BUCKET, "us-east-1").expect("bucket");
    let credentials = Credentials::new("AKIDEXAMPLE", "secret-example");
    let url = bucket
        .get_object(Some(&credentials), key)
        .sign(Duration::from_secs(600));
    let path = &url.as_str()[url.as_str().find(&format!("/{BUCKET}/")).expect("path")..];
    s3(port, "GET", path).await
}

fn sealed(logs: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(logs)
        .expect("logs")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "manifest"))
        .map(|p| p.with_extension(""))
        .collect();
    files.sort();
    files
}

fn gz(file: &Path) -> PathBuf {
    PathBuf::from(format!("{}.zst", file.display()))
}

fn marker(file: &Path) -> PathBuf {
    PathBuf::from(format!("{}.shipped", file.display()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sealed_files_wait_for_the_store_then_ship_intact() {
    let (env, _) = Env::with_shop();
    let admin = free_port();
    let s3_port = free_port();
    env.write("s3.credentials", "AKIDEXAMPLE\nsecret-example\n");
    // Past retention but never shipped: kept until it is.
    std::fs::create_dir_all(env.path("logs")).expect("mkdir");
    let old = env.path("logs/access.log.2026-01-01");
    std::fs::write(&old, "{}\n").expect("write");
    std::fs::File::options()
        .write(true)
        .open(&old)
        .expect("open")
        .set_modified(SystemTime::now() - Duration::from_secs(200 * 86_400))
        .expect("mtime");
    let shipping = format!(
        "[access_log.shipping]\nendpoint = \"http://127.0.0.1:{s3_port}\"\nbucket = \"{BUCKET}\"\n\
         region = \"us-east-1\"\nprefix = \"edge-1/\"\npath_style = true\n\
         credentials_file = \"s3.credentials\""
    );
    let config = Config::new()
        .admin(&env, admin)
        .access_log("logs/access.log")
        .keys("max_file_bytes = 3000")
        .raw(&shipping)
        .raw(SHOP_SITE);
    env.write_config("", config);
    let proxy = env.start();
    assert!(support::wait_port(admin, Duration::from_secs(10)));
    for i in 0..30 {
        let r = get_plain(env.http, "shop.example.cn", &format!("/item/{i}")).await;
        assert_eq!(r.expect("request").status, 200);
    }
    let logs = env.path("logs");
    // The store is down: sealed files wait, failures are counted, nothing is removed.
    let waiting = support::eventually(Duration::from_secs(30), || async {
        let backlog = metric(admin, "menshen_log_ship_backlog").await?;
        let failed = metric(admin, "menshen_log_ship_failures_total").await?;
        (backlog >= 3.0 && failed >= 1.0).then_some(())
    })
    .await;
    assert!(
        waiting.is_some(),
        "backlog and failures counted\n{}",
        proxy.log()
    );
    assert!(sealed(&logs).iter().all(|f| !marker(f).exists()));
    let old_gz = gz(&old);
    assert!(
        old.exists() || old_gz.exists(),
        "past retention but not shipped: kept"
    );

    // The store comes up: everything is shipped and reads back as it is on disk.
    let _moto = Moto::start(s3_port);
    assert_eq!(s3(s3_port, "PUT", &format!("/{BUCKET}")).await.status, 200);
    let shipped = support::eventually(Duration::from_secs(60), || async {
        let files = sealed(&logs);
        (files.len() >= 4 && files.iter().all(|f| marker(f).exists())).then_some(files)
    })
    .await
    .unwrap_or_else(|| panic!("shipped:\n{}", proxy.log()));
    // What the store holds is the compressed file and its manifest, byte for byte, and it
    // verifies on its own, downloaded to another machine.
    let downloaded = env.path("downloaded");
    std::fs::create_dir_all(&downloaded).expect("mkdir");
    for file in &shipped {
        let name = file
            .file_name()
            .expect("name")
            .to_string_lossy()
            .into_owned();
        for object in [format!("{name}.zst"), format!("{name}.manifest")] {
            let got = s3_get(s3_port, &format!("edge-1/{object}")).await;
            assert_eq!(got.status, 200, "{object}");
            let local = std::fs::read(logs.join(&object)).expect("local file");
            assert_eq!(got.body, local, "{object} stored as written");
            // The old file planted above is not a chained log: it stays out of the check.
            if !object.starts_with("access.log.2026-01-01") {
                std::fs::write(downloaded.join(&object), &got.body).expect("save");
            }
        }
        assert!(
            std::fs::read(logs.join(format!("{name}.zst"))).expect("zst")[..4]
                == [0x28, 0xb5, 0x2f, 0xfd],
            "{name} shipped zstd-compressed"
        );
    }
    let verified = Command::new(env!("CARGO_BIN_EXE_menshen"))
        .args(["logs", "verify"])
        .arg(&downloaded)
        .arg("--key")
        .arg(env.path("access-log.key"))
        .output()
        .expect("logs verify");
    let said = String::from_utf8_lossy(&verified.stdout).into_owned()
        + &String::from_utf8_lossy(&verified.stderr);
    assert!(verified.status.success(), "{said}");
    assert!(said.contains(": ok: "), "{said}");
    assert_eq!(metric(admin, "menshen_log_ship_backlog").await, Some(0.0));

    // Shipped, the old file goes at the next rotation.
    for i in 0..10 {
        let r = get_plain(env.http, "shop.example.cn", &format!("/more/{i}")).await;
        assert_eq!(r.expect("request").status, 200);
    }
    let removed = support::eventually(Duration::from_secs(20), || async {
        (!old.exists() && !old_gz.exists()).then_some(())
    })
    .await;
    assert!(removed.is_some(), "shipped and past retention: removed");

    // A restart ships what is still pending (the spool is the directory).
    drop(proxy);
    let again = shipped[1].clone();
    std::fs::remove_file(marker(&again)).expect("rm marker");
    let proxy = env.start();
    let reshipped = support::eventually(Duration::from_secs(30), || async {
        marker(&again).exists().then_some(())
    })
    .await;
    assert!(
        reshipped.is_some(),
        "shipped again after a restart:\n{}",
        proxy.log()
    );
}
