//! The process-level sections into the runtime model's settings: `[[listeners]]`, `[server]`,
//! `[reload]`, `[dns]`, `[admin]`, `[access_log]`, `[log]`, `[otel]`.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use super::file::{FileConfig, LogSection, OtelSection};
use super::{relative_to, Errors};
use crate::observe::access_log::{AccessLogConfig, Destination};
use crate::observe::logging::{LogFormat, LogSettings};
use crate::observe::trace::TraceConfig;
use crate::route::dns::Dns;
use crate::snapshot::{AdminConfig, DnsSettings, Listener, ReloadSettings, ServerSettings};

/// The listeners, each name and address used once.
pub(super) fn listeners(file: &FileConfig, errors: &mut Errors<'_>) -> Vec<Listener> {
    if file.listeners.is_empty() {
        errors.invalid(
            "listeners",
            "no [[listeners]]; add one, e.g. { name = \"https\", addr = \"0.0.0.0:443\", tls = true }",
        );
    }
    let mut names = HashSet::new();
    let mut out: Vec<Listener> = Vec::new();
    for (i, l) in file.listeners.iter().enumerate() {
        let key = format!("listeners[{i}]");
        if !names.insert(l.name.as_str()) {
            errors.invalid(&key, format!("listener name {:?} is used twice", l.name));
        }
        if l.tls && file.tls.is_none() {
            errors.invalid(
                &key,
                format!(
                    "listener {:?} has tls = true but there is no [tls] section",
                    l.name
                ),
            );
        }
        let Ok(addr) = l.addr.parse::<SocketAddr>() else {
            errors.invalid(
                format!("{key}.addr"),
                format!("{:?} is not ip:port (e.g. \"0.0.0.0:443\")", l.addr),
            );
            continue;
        };
        if out.iter().any(|o| o.addr == addr) {
            errors.invalid(&key, format!("addr {:?} is used twice", l.addr));
            continue;
        }
        out.push(Listener {
            name: l.name.clone(),
            addr,
            tls: l.tls,
            proxy_protocol: l.proxy_protocol,
        });
    }
    out
}

/// `[server]`, its files resolved beside the config.
pub(super) fn server(path: &Path, file: &FileConfig) -> ServerSettings {
    let s = &file.server;
    ServerSettings {
        threads: s.threads.max(1),
        work_stealing: s.work_stealing,
        grace_period: s.grace_period,
        upgrade_sock: s.upgrade_sock.as_deref().map(|p| relative_to(path, p)),
        pid_file: s.pid_file.as_deref().map(|p| relative_to(path, p)),
    }
}

/// `[reload]`; the poll runs at most every 100 ms.
pub(super) fn reload(file: &FileConfig) -> ReloadSettings {
    let r = &file.reload;
    ReloadSettings {
        watch: r.watch,
        poll_interval: r.poll_interval.max(Duration::from_millis(100)),
        debounce: r.debounce,
    }
}

/// `[log]`: its format and level.
pub(super) fn log(section: &LogSection, errors: &mut Errors<'_>) -> LogSettings {
    let format = match section.format.as_str() {
        "text" => LogFormat::Text,
        "json" => LogFormat::Json,
        other => {
            errors.invalid(
                "log.format",
                format!("{other:?} is not \"text\" or \"json\""),
            );
            LogFormat::Text
        }
    };
    if tracing_subscriber::EnvFilter::try_new(&section.level).is_err() {
        errors.invalid(
            "log.level",
            format!("{:?} is not a log level (e.g. \"info\")", section.level),
        );
    }
    LogSettings {
        format,
        level: section.level.clone(),
    }
}

pub(super) fn admin(
    path: &Path,
    file: &FileConfig,
    errors: &mut Errors<'_>,
) -> Option<AdminConfig> {
    let section = file.admin.as_ref()?;
    let Ok(addr) = section.addr.parse::<SocketAddr>() else {
        errors.invalid(
            "admin.addr",
            format!(
                "{:?} is not ip:port (e.g. \"127.0.0.1:9901\")",
                section.addr
            ),
        );
        return None;
    };
    if file
        .listeners
        .iter()
        .any(|l| l.addr.parse::<SocketAddr>().ok() == Some(addr))
    {
        errors.invalid("admin.addr", format!("{addr} is also a proxy listener"));
    }
    Some(AdminConfig {
        addr,
        reload_token_file: section
            .reload_token_file
            .as_deref()
            .map(|f| relative_to(path, f)),
    })
}

/// `access_log.path` that means standard output.
const STDOUT: &str = "-";

pub(super) fn access_log(
    path: &Path,
    file: &FileConfig,
    errors: &mut Errors<'_>,
) -> Option<AccessLogConfig> {
    let section = file.access_log.as_ref()?;
    let retention = super::log::retention(section, errors);
    if section.max_file_bytes == 0 || section.buffer_lines == 0 {
        errors.invalid(
            "access_log",
            "max_file_bytes and buffer_lines must be above 0",
        );
    }
    let (log_path, destination) = match section.path.as_str() {
        STDOUT => (PathBuf::from(STDOUT), Destination::Stdout),
        file => (relative_to(path, file), Destination::File),
    };
    if destination == Destination::Stdout && section.tamper_evident {
        errors.invalid(
            "access_log.path",
            "\"-\" writes to standard output, which cannot be chained and sealed: set \
             access_log.tamper_evident = false (keeping the lines is then the log collector's \
             business), or name a file",
        );
    }
    let beside = match destination {
        Destination::File => log_path.clone(),
        Destination::Stdout => relative_to(path, crate::observe::audit::DEFAULT_AUDIT_FILE),
    };
    Some(AccessLogConfig {
        audit_path: Some(match &section.audit_file {
            Some(f) => relative_to(path, f),
            None => crate::observe::audit::default_audit_path(&beside),
        }),
        path: log_path,
        destination,
        retention,
        chain_key: super::log::chain_key(path, section, errors),
        shipping: super::log::shipping(path, section, errors),
        max_file_bytes: section.max_file_bytes,
        buffer_lines: section.buffer_lines,
    })
}

/// `[dns]`, and the resolver when a backend is named by hostname.
pub(super) fn dns(file: &FileConfig, errors: &mut Errors<'_>) -> (DnsSettings, Option<Arc<Dns>>) {
    let d = &file.dns;
    let mut resolvers = Vec::new();
    for (i, r) in d.resolvers.iter().enumerate() {
        match r.parse::<SocketAddr>() {
            Ok(addr) => resolvers.push(addr),
            Err(_) => errors.invalid(
                format!("dns.resolvers[{i}]"),
                format!("{r:?} is not ip:port (e.g. \"223.5.5.5:53\")"),
            ),
        }
    }
    if d.min_ttl > d.max_ttl {
        errors.invalid(
            "dns.min_ttl",
            format!(
                "{} is above dns.max_ttl ({})",
                super::duration::format(d.min_ttl),
                super::duration::format(d.max_ttl)
            ),
        );
    }
    let settings = DnsSettings {
        resolvers,
        min_ttl: d.min_ttl,
        max_ttl: d.max_ttl,
        timeout: d.timeout,
    };
    let needs_dns = file.upstreams.iter().any(|u| {
        u.backends.iter().any(|b| {
            super::upstreams::backend_addr(b)
                .parse::<SocketAddr>()
                .is_err()
        })
    });
    if !needs_dns {
        return (settings, None);
    }
    let s = &settings;
    match Dns::new(&s.resolvers, s.timeout, s.min_ttl, s.max_ttl) {
        Ok(dns) => (settings, Some(Arc::new(dns))),
        Err(e) => {
            errors.invalid("dns.resolvers", e);
            (settings, None)
        }
    }
}

/// `[otel]`: an `http://` or `https://` collector URL, a service name, a ratio from 0 to 1.
pub(super) fn otel(section: &OtelSection, errors: &mut Errors<'_>) -> Option<TraceConfig> {
    let before = errors.list.len();
    let url = section.endpoint.parse::<http::Uri>().ok();
    let scheme = url.as_ref().and_then(|u| u.scheme_str());
    let host = url
        .as_ref()
        .and_then(|u| u.host())
        .filter(|h| !h.is_empty());
    if !matches!(scheme, Some("http" | "https")) || host.is_none() {
        errors.invalid(
            "otel.endpoint",
            format!(
                "{:?} is not an http:// or https:// URL (e.g. \"http://otel-collector:4318/v1/traces\")",
                section.endpoint
            ),
        );
    }
    if section.service_name.trim().is_empty() {
        errors.invalid("otel.service_name", "is empty (e.g. \"menshen-edge-bj\")");
    }
    if !(0.0..=1.0).contains(&section.sampling_ratio) {
        errors.invalid(
            "otel.sampling_ratio",
            format!(
                "{} is not a share from 0 to 1 (1: every trace, 0.1: one in ten)",
                section.sampling_ratio
            ),
        );
    }
    (errors.list.len() == before).then(|| TraceConfig {
        endpoint: section.endpoint.clone(),
        service_name: section.service_name.clone(),
        sampling_ratio: section.sampling_ratio,
    })
}
