//! The `check` and `certs` subcommands: what an operator runs before a rollout.

use std::path::Path;

use crate::config::compile::load_certs;
use crate::config::ConfigError;
use crate::reload::{first_load, judge, problems, summary};
use crate::tls::cert::{format_time, unix_now};

/// Validates everything the proxy would load, as a reload would judge it: the config, every
/// certificate against the approved roots, and every backend hostname through the configured
/// resolvers. Prints every problem. Returns the exit code: 0 only if nothing was left out.
pub fn check(config: &Path) -> i32 {
    let snapshot = match first_load(config) {
        Ok(snapshot) => snapshot,
        Err(errors) => {
            for e in &errors {
                eprintln!("error: {e}");
            }
            eprintln!(
                "{}: {} problem(s); menshen would not start, and a reload to it would be refused",
                config.display(),
                errors.len()
            );
            return 1;
        }
    };
    let resolved = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map(|rt| rt.block_on(snapshot.discover_upstreams()));
    if let Err(e) = resolved {
        eprintln!("error: cannot start a runtime to resolve backends: {e}");
        return 1;
    }
    if !passes(config, &snapshot) {
        return 1;
    }
    for line in corrections(snapshot.certs.certs()) {
        eprintln!("{line}");
    }
    for line in tls_settings(&snapshot) {
        println!("{line}");
    }
    println!("{}: ok: {}", config.display(), summary(&snapshot));
    print_sites(&snapshot);
    0
}

/// Whether the loaded `snapshot` passes: prints what a reload would refuse or leave out of it.
fn passes(config: &Path, snapshot: &crate::snapshot::Snapshot) -> bool {
    let refusals = judge::routes(None, snapshot);
    let left_out = problems(snapshot);
    for e in &refusals {
        eprintln!("error: {e}");
    }
    for e in &left_out {
        eprintln!("error: {e}");
    }
    if !refusals.is_empty() {
        eprintln!(
            "{}: {} problem(s); a reload to it would be refused",
            config.display(),
            refusals.len() + left_out.len()
        );
        return false;
    }
    if !left_out.is_empty() {
        eprintln!(
            "{}: {} problem(s); menshen would start without what they name ({})",
            config.display(),
            left_out.len(),
            summary(snapshot)
        );
        return false;
    }
    true
}

/// Prints the settings each site and route serves with: error pages, compression, timeouts,
/// retries and header edits.
fn print_sites(snapshot: &crate::snapshot::Snapshot) {
    let pages = snapshot.error_pages.describe();
    if !pages.is_empty() {
        println!("error pages (process-wide): {pages}");
    }
    for site in snapshot.router.sites() {
        if let Some(c) = &site.policy.compression {
            println!("site {:?}: compression {}", site.name, c.describe());
        }
        let pages = site.policy.error_pages.describe();
        if !pages.is_empty() {
            println!("site {:?}: error pages {pages}", site.name);
        }
        for route in &site.routes {
            describe_route(&site.name, route);
        }
    }
}

/// What `check` says of a route: its exchange's limits and retries, its cache, its header
/// edits.
fn describe_route(site: &str, route: &crate::route::router::Route) {
    let prefix = &route.prefix;
    if let crate::route::Action::Proxy(p) = &route.action {
        let (timeouts, retries) = (p.timeouts.describe(), p.retries.describe());
        println!("site {site:?} route {prefix}: timeouts {timeouts}; retries {retries}");
        if let Some(cache) = &p.cache {
            println!("site {site:?} route {prefix}: cache {}", cache.describe());
        }
    }
    let edits = route.headers.describe();
    if !edits.is_empty() {
        println!("site {site:?} route {prefix}: headers {edits}");
    }
}

/// Where a certificate's OCSP responses will come from.
fn ocsp_source(cert: &crate::tls::ServedCert, s: &crate::tls::ocsp::OcspSettings) -> String {
    use der::Decode;
    let file = cert.info.file.with_extension("ocsp");
    let from = if file.is_file() {
        format!("from {}", file.display())
    } else {
        let leaf = cert
            .key
            .cert
            .first()
            .map(|d| x509_cert::Certificate::from_der(d));
        let url = leaf
            .and_then(Result::ok)
            .and_then(|l| crate::tls::ocsp::fetch::responder_url(&l));
        match (url, s.fetch, &s.proxy) {
            (Some(url), true, Some(proxy)) => format!("from {url} through {proxy}"),
            (Some(url), true, None) => format!("from {url}"),
            (Some(_), false, _) => "none (tls.ocsp.fetch = false and no NAME.ocsp)".into(),
            (None, ..) => "none (no responder in the certificate, no NAME.ocsp)".into(),
        }
    };
    format!("certificate {:?}: OCSP responses {from}", cert.info.name)
}

/// What clients get beyond the certificates: the key exchange groups, each site's client
/// certificate check.
fn tls_settings(snapshot: &crate::snapshot::Snapshot) -> Vec<String> {
    let groups = snapshot.policy.tls.group_names().join(", ");
    let mut out = vec![format!("tls: key exchange, in preference order: {groups}")];
    out.extend(
        snapshot
            .certs
            .certs()
            .iter()
            .map(|c| ocsp_source(c, &snapshot.ocsp)),
    );
    for site in snapshot.router.sites() {
        if let Some(auth) = &site.policy.client_auth {
            out.push(format!(
                "site {:?}: client certificates {}, issued by: {}",
                site.name,
                auth.mode.as_str(),
                auth.ca_subjects.join("; ")
            ));
        }
    }
    out
}

/// One warning line per correction loading made (chain order, a root left out, a layout).
fn corrections(certs: &[std::sync::Arc<crate::tls::ServedCert>]) -> Vec<String> {
    let each = |c: &std::sync::Arc<crate::tls::ServedCert>| {
        let file = c.info.file.display().to_string();
        c.info
            .corrections
            .iter()
            .map(move |line| format!("warning: {file}: {line}"))
            .collect::<Vec<_>>()
    };
    certs.iter().flat_map(each).collect()
}

/// Prints one error per line on stderr.
pub fn print_errors(errors: &[ConfigError]) {
    for e in errors {
        eprintln!("error: {e}");
    }
}

/// Prints the certificate table. Returns the exit code (1 if any certificate is rejected).
pub fn certs(config: &Path) -> i32 {
    let (load, warn_days) = match load_certs(config) {
        Ok(l) => l,
        Err(errors) => {
            print_errors(&errors);
            return 1;
        }
    };
    let now = unix_now();
    let mut rows = vec![[
        "FILE".to_owned(),
        "HOSTS".into(),
        "ISSUER".into(),
        "APPROVED ROOT".into(),
        "NOT AFTER".into(),
        "DAYS".into(),
        "STATUS".into(),
    ]];
    for cert in load.store.certs() {
        let i = &cert.info;
        let days = i.days_left(now);
        let mut status = if days < i64::from(warn_days) {
            "expiring"
        } else {
            "ok"
        }
        .to_owned();
        if !i.corrections.is_empty() {
            status.push_str(" (corrected, see below)");
        }
        let default = load
            .store
            .default_cert()
            .is_some_and(|d| d.info.file == i.file);
        rows.push([
            i.file.display().to_string(),
            i.hosts.join(","),
            i.issuer.clone(),
            i.root.clone(),
            format_time(i.not_after),
            days.to_string(),
            if default {
                format!("{status} (default)")
            } else {
                status
            },
        ]);
    }
    for e in &load.errors {
        let file = e
            .file()
            .map(|f| f.display().to_string())
            .unwrap_or_default();
        let reason = match e {
            crate::tls::TlsError::Rejected { reason, .. } => reason.to_string(),
            other => other.to_string(),
        };
        rows.push([
            file,
            "-".into(),
            "-".into(),
            "-".into(),
            "-".into(),
            "-".into(),
            format!("rejected: {reason}"),
        ]);
    }
    print_table(&rows);
    for line in corrections(load.store.certs()) {
        println!("{line}");
    }
    i32::from(!load.errors.is_empty())
}

fn print_table(rows: &[[String; 7]]) {
    let mut widths = [0usize; 7];
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    for row in rows {
        let mut line = String::new();
        for (i, (cell, w)) in row.iter().zip(widths).enumerate() {
            if i + 1 == row.len() {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<w$}  "));
            }
        }
        println!("{}", line.trim_end());
    }
}

/// Asks the running proxy's admin listener for `/healthz` (the container HEALTHCHECK).
/// Returns the exit code: 0 healthy, 1 not.
pub fn healthz(config: &Path) -> i32 {
    use std::io::{Read, Write};
    let addr = match crate::config::peek::admin_addr(config) {
        Ok(admin) => match admin {
            Some(addr) => addr,
            None => {
                eprintln!(
                    "{}: no [admin] section; healthz needs admin.addr",
                    config.display()
                );
                return 1;
            }
        },
        Err(errors) => {
            print_errors(&errors);
            return 1;
        }
    };
    let timeout = std::time::Duration::from_secs(3);
    let probe = || -> std::io::Result<String> {
        let mut stream = std::net::TcpStream::connect_timeout(&addr, timeout)?;
        stream.set_read_timeout(Some(timeout))?;
        stream.write_all(b"GET /healthz HTTP/1.1\r\nHost: menshen\r\nConnection: close\r\n\r\n")?;
        let mut reply = String::new();
        stream.read_to_string(&mut reply)?;
        Ok(reply)
    };
    match probe() {
        Ok(reply) if reply.starts_with("HTTP/1.1 200") => {
            println!("healthy");
            0
        }
        Ok(reply) => {
            eprintln!("unhealthy: {}", reply.lines().next().unwrap_or(""));
            1
        }
        Err(e) => {
            eprintln!("unhealthy: admin {addr}: {e}");
            1
        }
    }
}
