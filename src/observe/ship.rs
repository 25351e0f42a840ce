//! Shipping sealed log files to S3-compatible object storage (Alibaba Cloud OSS, Tencent COS, AWS
//! S3, MinIO...), so that six months of evidence survive the machine.
//!
//! The log directory is the spool: a sealed and compressed file (`FILE.zst` with its
//! `FILE.manifest`) is pending until `FILE.shipped` stands beside it, so what waits survives
//! outages and restarts. One thread uploads pending files oldest first (the file, then its
//! manifest), each with its `Content-MD5`, which the store checks against what it received
//! (refusing the upload otherwise), then asks the store for the object's size before writing the
//! marker; it backs off from 1 s to 5 min while the store fails. Nothing is read back: the
//! border link carries each file once. Retention removes a file only once it is shipped
//! (`retention`). Requests are signed by `rusty-s3` (presigned URLs) and sent by `ureq`.

use std::io::Read;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use md5::Digest as _;
use std::time::{Duration, SystemTime};

use rusty_s3::{Bucket, Credentials, S3Action, UrlStyle};

use super::chain::{hex, ChainKey};
use super::seal::{manifest_path, Manifest};

/// First wait after a failure; it doubles up to `MAX_BACKOFF`.
const MIN_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(300);
/// How often the spool is looked at when nothing fails.
const SCAN_EVERY: Duration = Duration::from_secs(2);
/// How long a presigned request stays valid.
const SIGNED_FOR: Duration = Duration::from_secs(3600);

/// Where sealed files go.
#[derive(Clone, PartialEq, Eq)]
pub struct ShipConfig {
    /// The endpoint, e.g. `https://oss-cn-hangzhou.aliyuncs.com`.
    pub endpoint: String,
    /// Bucket name.
    pub bucket: String,
    /// Signing region, e.g. `cn-hangzhou`.
    pub region: String,
    /// Prepended to each object key (e.g. `edge-bj-1/`).
    pub prefix: String,
    /// `https://endpoint/bucket/key` rather than `https://bucket.endpoint/key`.
    pub path_style: bool,
    /// Access key id and secret.
    pub access_key: String,
    /// See `access_key`.
    pub secret_key: String,
}

impl std::fmt::Debug for ShipConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "ShipConfig({}/{}/{})",
            self.endpoint, self.bucket, self.prefix
        )
    }
}

/// The marker of a shipped file, plain or compressed.
pub fn shipped_path(file: &Path) -> PathBuf {
    let mut name = super::compress::plain(file).into_os_string();
    name.push(".shipped");
    PathBuf::from(name)
}

/// Sealed and compressed files of the log at `log` not shipped yet, oldest first.
pub fn pending(log: &Path) -> Vec<PathBuf> {
    let mut files = super::seal::rotated_files(log);
    files.retain(|f| {
        super::compress::is_compressed(f) && manifest_path(f).exists() && !shipped_path(f).exists()
    });
    files
}

struct Store {
    bucket: Bucket,
    credentials: Credentials,
    prefix: String,
    agent: ureq::Agent,
}

impl Store {
    fn new(config: &ShipConfig) -> Result<Store, String> {
        let endpoint = config
            .endpoint
            .parse()
            .map_err(|e| format!("endpoint {:?}: {e}", config.endpoint))?;
        let style = if config.path_style {
            UrlStyle::Path
        } else {
            UrlStyle::VirtualHost
        };
        let bucket = Bucket::new(
            endpoint,
            style,
            config.bucket.clone(),
            config.region.clone(),
        )
        .map_err(|e| format!("bucket {:?}: {e}", config.bucket))?;
        let agent = ureq::Agent::config_builder()
            .timeout_connect(Some(Duration::from_secs(10)))
            .timeout_global(Some(Duration::from_secs(1800)))
            .build()
            .into();
        Ok(Store {
            bucket,
            credentials: Credentials::new(&config.access_key, &config.secret_key),
            prefix: config.prefix.clone(),
            agent,
        })
    }

    /// Uploads `file` as `prefix + name` with its `Content-MD5` (the store refuses a body that
    /// does not match it) and checks the size the store then reports. Returns the object key
    /// and the file's SHA-256.
    fn put_checked(&self, file: &Path) -> Result<(String, String), String> {
        let name = file
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let key = format!("{}{name}", self.prefix);
        let (md5, sha256, bytes) = digests(file).map_err(|e| format!("{}: {e}", file.display()))?;
        let body = std::fs::File::open(file).map_err(|e| format!("{}: {e}", file.display()))?;
        let put = self
            .bucket
            .put_object(Some(&self.credentials), &key)
            .sign(SIGNED_FOR);
        self.agent
            .put(put.as_str())
            .header(
                "Content-MD5",
                base64::engine::general_purpose::STANDARD.encode(md5),
            )
            .send(body)
            .map_err(|e| format!("PUT {key}: {e}"))?;
        let head = self
            .bucket
            .head_object(Some(&self.credentials), &key)
            .sign(SIGNED_FOR);
        let response = self
            .agent
            .head(head.as_str())
            .call()
            .map_err(|e| format!("HEAD {key}: {e}"))?;
        let stored = response
            .headers()
            .get("content-length")
            .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
        if stored != Some(bytes) {
            return Err(format!(
                "{key}: the store holds {stored:?} bytes where {bytes} were sent"
            ));
        }
        Ok((key, sha256))
    }

    /// Ships one sealed file and its manifest; writes the marker.
    fn ship(&self, file: &Path, key: &ChainKey) -> Result<(), String> {
        let manifest_file = manifest_path(file);
        let manifest = Manifest::load(&manifest_file, key)
            .map_err(|e| format!("{}: {e}", manifest_file.display()))?;
        // What goes is what was sealed: the compressed file reads back as the manifest says
        // (a damaged disk or an interrupted compression is caught here, not after retention).
        let content = super::seal::summarize(file, |_| {})
            .map_err(|e| format!("{}: cannot read it back: {e}", file.display()))?;
        if content.sha256 != manifest.content.sha256 || content.lines != manifest.content.lines {
            return Err(format!(
                "{}: holds {} lines with SHA-256 {} where its manifest says {} with {}; not \
                 shipped (`menshen logs verify` names what changed)",
                file.display(),
                content.lines,
                content.sha256,
                manifest.content.lines,
                manifest.content.sha256
            ));
        }
        let (object, sha256) = self.put_checked(file)?;
        self.put_checked(&manifest_file)?;
        let mut at = String::new();
        super::text::push_rfc3339_millis(&mut at, SystemTime::now());
        let marker = serde_json::json!({
            "object": object,
            "bucket": self.bucket.name(),
            "sha256": sha256,
            "content_sha256": manifest.content.sha256,
            "shipped_at": at,
        });
        std::fs::write(shipped_path(file), format!("{marker}\n")).map_err(|e| e.to_string())
    }
}

/// Sealed files the sealer could not compress (it logged why) are tried again, so that one
/// failure does not keep a file from the store until the next start. A file sealed in the last
/// minute is left to the sealer, which compresses it right after sealing.
fn compress_left_plain(log: &Path, key: &ChainKey) {
    let settled = |f: &Path| {
        std::fs::metadata(manifest_path(f))
            .and_then(|m| m.modified())
            .is_ok_and(|t| t.elapsed().is_ok_and(|age| age > Duration::from_secs(60)))
    };
    for file in super::seal::rotated_files(log) {
        if super::compress::is_compressed(&file) || !settled(&file) {
            continue;
        }
        if Manifest::load(&manifest_path(&file), key).is_ok() {
            if let Err(e) = super::compress::compress(&file) {
                tracing::warn!(file = %file.display(), "cannot compress sealed log file: {e}; tried again at the next pass");
            }
        }
    }
}

/// MD5 (for `Content-MD5`), SHA-256 (hex, for the marker) and size of a file.
fn digests(file: &Path) -> std::io::Result<([u8; 16], String, u64)> {
    let mut f = std::fs::File::open(file)?;
    let mut md5 = md5::Md5::new();
    let mut sha = ring::digest::Context::new(&ring::digest::SHA256);
    let mut buf = vec![0u8; 256 * 1024];
    let mut bytes = 0u64;
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        md5.update(&buf[..n]);
        sha.update(&buf[..n]);
        bytes += n as u64;
    }
    Ok((md5.finalize().into(), hex(sha.finish().as_ref()), bytes))
}

/// Starts the shipping thread of the log at `log`: it ships what is pending now and every
/// sealed file after it.
pub fn start_shipper(log: PathBuf, key: ChainKey, config: ShipConfig) -> std::io::Result<()> {
    let store = Store::new(&config).map_err(std::io::Error::other)?;
    std::thread::Builder::new()
        .name("menshen-log-ship".into())
        .spawn(move || run(&log, &key, &store))?;
    Ok(())
}

fn run(log: &Path, key: &ChainKey, store: &Store) {
    let m = super::metrics::metrics();
    let mut backoff = MIN_BACKOFF;
    let mut failing = false;
    loop {
        compress_left_plain(log, key);
        let files = pending(log);
        m.shipping.backlog.set(files.len() as f64);
        let mut failed = false;
        for file in &files {
            match store.ship(file, key) {
                Ok(()) => {
                    m.shipping.shipped.inc();
                    m.shipping.backlog.dec();
                    tracing::info!(file = %file.display(), "log file shipped; the store took it with a matching Content-MD5");
                }
                Err(e) => {
                    m.shipping.failures.inc();
                    if !failing {
                        tracing::error!(
                            file = %file.display(),
                            "log shipping failed: {e}; the file waits in the spool and is retried \
                             (menshen_log_ship_backlog counts what waits)"
                        );
                    }
                    failed = true;
                    break;
                }
            }
        }
        if failed {
            failing = true;
            std::thread::sleep(backoff);
            backoff = (backoff * 2).min(MAX_BACKOFF);
        } else {
            if failing {
                tracing::warn!("log shipping succeeds again");
            }
            failing = false;
            backoff = MIN_BACKOFF;
            std::thread::sleep(SCAN_EVERY);
        }
    }
}
