//! The process-level parts of the runtime model: listeners, the server's threads and upgrade
//! files, how reloads are noticed, the admin listener, DNS. `config::compile`
//! builds them from the file; nothing here knows the file's shape.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// A listener the proxy serves on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listener {
    /// Name used in logs and the access log.
    pub name: String,
    /// Where it listens.
    pub addr: SocketAddr,
    /// Terminates TLS.
    pub tls: bool,
    /// Expects a PROXY protocol header first.
    pub proxy_protocol: bool,
}

/// Process-wide settings, applied at start (a reload leaves them to the next start).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerSettings {
    /// Worker threads of each proxy service (at least 1).
    pub threads: usize,
    /// Idle worker threads steal tasks from busy ones.
    pub work_stealing: bool,
    /// Time in-flight requests get to finish on shutdown.
    pub grace_period: Duration,
    /// pingora's upgrade socket, resolved beside the config file.
    pub upgrade_sock: Option<PathBuf>,
    /// Pid file, resolved beside the config file.
    pub pid_file: Option<PathBuf>,
}

/// How changes on disk are noticed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReloadSettings {
    /// Watch the config file's and the certificates' directories.
    pub watch: bool,
    /// How often content hashes are compared.
    pub poll_interval: Duration,
    /// How long file events are collected before one reload runs.
    pub debounce: Duration,
}

/// Certificate settings that outlive the load (the store itself is `Snapshot::certs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CertPolicy {
    /// Certificates expiring within this many days are warned about.
    pub expiry_warning_days: u32,
    /// Any rejected certificate file stops the start.
    pub strict: bool,
}

/// The admin listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminConfig {
    /// Where it listens.
    pub addr: SocketAddr,
    /// File holding the bearer token `POST /reload` needs; reload is refused without one.
    pub reload_token_file: Option<PathBuf>,
}

/// How backend hostnames are resolved.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DnsSettings {
    /// DNS servers; empty means the system's (`/etc/resolv.conf`).
    pub resolvers: Vec<SocketAddr>,
    /// Shortest time an answer is used.
    pub min_ttl: Duration,
    /// Longest time an answer is used.
    pub max_ttl: Duration,
    /// Timeout of one query.
    pub timeout: Duration,
}
