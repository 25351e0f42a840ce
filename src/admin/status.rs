//! The status page: what an operator reads at a glance. Plain server-rendered HTML, no assets.

use std::fmt::Write as _;

use crate::reload::{Outcome, ReloadReport, Reloader};
use crate::route::Action;
use crate::semantics::error_pages::ErrorPages;
use crate::snapshot::Snapshot;
use crate::tls::cert::{format_time, unix_now};

fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    crate::semantics::error_pages::push_html_escaped(&mut out, s);
    out
}

const STYLE: &str = "body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222}\
h1{font-size:1.4em}h2{font-size:1.1em;margin-top:1.6em}\
table{border-collapse:collapse;width:100%}th,td{border:1px solid #ccc;padding:4px 8px;text-align:left;vertical-align:top}\
th{background:#f3f3f3}.ok{background:#e6f4ea}.warn{background:#fff4d6}.crit{background:#fde2e1}\
.muted{color:#777}code{font-size:12px}";

/// The last load or reload: when, what asked, the outcome in words, and every message.
fn last_reload(h: &mut String, report: &ReloadReport) {
    let class = match report.result {
        Outcome::Ok => "ok",
        Outcome::Partial => "warn",
        Outcome::Rejected => "crit",
    };
    let _ = write!(
        h,
        "<h2>Last reload</h2><table id=\"reload\" data-result=\"{}\">\
         <tr><th>when</th><th>trigger</th><th>result</th><th>summary</th></tr>\
         <tr class=\"{class}\"><td>{}</td><td>{}</td><td class=\"result\">{}</td><td>{}</td></tr>",
        report.result.label(),
        format_time(report.at),
        esc(&report.trigger),
        esc(report.result.describe()),
        esc(&report.summary)
    );
    for e in &report.errors {
        let _ = write!(
            h,
            "<tr class=\"{class} message\"><td colspan=\"4\">{}</td></tr>",
            esc(e)
        );
    }
    for c in &report.diff.lines() {
        let _ = write!(
            h,
            "<tr class=\"change\"><td colspan=\"4\">{}</td></tr>",
            esc(c)
        );
    }
    h.push_str("</table>");
}

/// The machine-readable status: the last reload's report, served and rejected certificates,
/// the process-wide error pages and each site's own.
pub fn json(snapshot: &Snapshot, reloader: &Reloader) -> String {
    use crate::observe::access_log::push_json_str;
    let now = unix_now();
    let mut out = String::from("{\"config\":");
    push_json_str(&mut out, &snapshot.config_path.display().to_string());
    let _ = write!(
        out,
        ",\"loaded_at\":{},\"last_reload\":",
        snapshot.loaded_at
    );
    out.push_str(&reloader.last().to_json());
    out.push_str(",\"certificates\":[");
    for (i, cert) in snapshot.certs.certs().iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str("{\"name\":");
        push_json_str(&mut out, &cert.info.name);
        out.push_str(",\"file\":");
        push_json_str(&mut out, &cert.info.file.display().to_string());
        out.push_str(",\"serial\":");
        push_json_str(&mut out, &cert.info.serial);
        let ocsp = cert.ocsp.load();
        let _ = write!(out, ",\"not_after\":{},\"ocsp\":", cert.info.not_after);
        match ocsp.as_deref() {
            Some(o) => {
                let _ = write!(out, "{{\"status\":\"{}\",", o.status_label(now));
                let until = o.verified.as_ref().map(|v| v.next_update);
                let _ = write!(out, "\"next_update\":{},", until.unwrap_or(0));
                out.push_str("\"summary\":");
                push_json_str(&mut out, &o.summary(now));
                out.push('}');
            }
            None => out.push_str("null"),
        }
        out.push_str(",\"corrections\":[");
        for (j, c) in cert.info.corrections.iter().enumerate() {
            if j > 0 {
                out.push(',');
            }
            push_json_str(&mut out, c);
        }
        out.push_str("]}");
    }
    out.push_str("],\"rejected_certificates\":[");
    for (i, e) in snapshot.cert_errors.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        push_json_str(&mut out, &e.to_string());
    }
    out.push_str("],\"error_pages\":");
    error_pages_json(&mut out, &snapshot.error_pages);
    let stats = cache_stats(snapshot);
    let _ = write!(
        out,
        ",\"cache\":{{\"memory_bytes\":{},\"entries\":{},\"bytes\":{},\"lock_timeout_ms\":{},\"disk_bytes\":{}}}",
        stats.limit,
        stats.entries,
        stats.bytes,
        snapshot.cache.lock_timeout.as_millis(),
        stats.disk_bytes
    );
    out.push_str(",\"sites\":[");
    for (i, site) in snapshot.router.sites().iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str("{\"name\":");
        push_json_str(&mut out, &site.name);
        out.push_str(",\"error_pages\":");
        error_pages_json(&mut out, &site.policy.error_pages);
        out.push('}');
    }
    out.push_str("]}\n");
    out
}

/// Error pages as `/status.json` lists them (a site's own, or the process-wide ones): each
/// status with its variants in order, their language (`null`: none given) and where the text
/// came from (a file, or `"inline"` for a template in the config).
fn error_pages_json(out: &mut String, pages: &ErrorPages) {
    use crate::observe::access_log::push_json_str;
    out.push('[');
    for (i, (status, page)) in pages.pages().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let _ = write!(out, "{{\"status\":{status},\"variants\":[");
        for (j, variant) in page.variants().iter().enumerate() {
            if j > 0 {
                out.push(',');
            }
            out.push_str("{\"language\":");
            match variant.language.as_ref().and_then(|l| l.to_str().ok()) {
                Some(language) => push_json_str(out, language),
                None => out.push_str("null"),
            }
            out.push_str(",\"source\":");
            match &variant.file {
                Some(file) => push_json_str(out, &file.display().to_string()),
                None => push_json_str(out, "inline"),
            }
            out.push('}');
        }
        out.push_str("]}");
    }
    out.push(']');
}

/// Renders the page for `snapshot`.
pub fn render(snapshot: &Snapshot, reloader: &Reloader) -> String {
    let mut h = String::with_capacity(8192);
    let _ = write!(
        h,
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>menshen status</title>\
         <style>{STYLE}</style></head><body><h1>menshen (门神) status</h1>\
         <p class=\"muted\">config <code>{}</code>, loaded {}</p>",
        esc(&snapshot.config_path.display().to_string()),
        format_time(snapshot.loaded_at)
    );
    last_reload(&mut h, &reloader.last());
    certificates(&mut h, snapshot);
    tls(&mut h, snapshot);
    sites(&mut h, snapshot);
    cache(&mut h, snapshot);
    upstreams(&mut h, snapshot);
    h.push_str("</body></html>\n");
    h
}

/// A certificate's OCSP state in a line.
fn ocsp_summary(cert: &crate::tls::ServedCert, now: i64) -> String {
    cert.ocsp
        .load()
        .as_deref()
        .map_or_else(|| "not checked yet".to_owned(), |o| o.summary(now))
}

/// Served certificates, coloured by days left, then the rejected files.
fn certificates(h: &mut String, snapshot: &Snapshot) {
    let now = unix_now();
    let warn_days = i64::from(snapshot.cert_policy.expiry_warning_days);
    h.push_str(
        "<h2>Certificates</h2><table id=\"certificates\"><tr><th>name</th><th>hosts</th><th>issuer</th>\
         <th>approved root</th><th>not after</th><th>days left</th><th>OCSP</th><th>file</th></tr>",
    );
    for cert in snapshot.certs.certs() {
        let i = &cert.info;
        let days = i.days_left(now);
        let class = if days < 7 {
            "crit"
        } else if days < warn_days {
            "warn"
        } else {
            "ok"
        };
        let corrections: String = i
            .corrections
            .iter()
            .map(|c| {
                format!(
                    "<br><span class=\"correction\">corrected: {}</span>",
                    esc(c)
                )
            })
            .collect();
        let _ = write!(
            h,
            "<tr class=\"{class}\"><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>\
             <td class=\"days-left\">{days}</td><td class=\"ocsp\">{}</td>\
             <td><code>{}</code>{corrections}</td></tr>",
            esc(&i.name),
            esc(&i.hosts.join(", ")),
            esc(&i.issuer),
            esc(&i.root),
            format_time(i.not_after),
            esc(&ocsp_summary(cert, now)),
            esc(&i.file.display().to_string()),
        );
    }
    h.push_str("</table>");
    if !snapshot.cert_errors.is_empty() {
        h.push_str("<h2>Rejected certificate files</h2><table id=\"rejected\">");
        for e in &snapshot.cert_errors {
            let _ = write!(
                h,
                "<tr class=\"crit\"><td>{}</td></tr>",
                esc(&e.to_string())
            );
        }
        h.push_str("</table>");
    }
}

/// The TLS protocol policy clients get.
fn tls(h: &mut String, snapshot: &Snapshot) {
    let tls = &snapshot.policy.tls;
    let _ = write!(
        h,
        "<h2>TLS for clients</h2><table id=\"tls\">\
         <tr><th>lowest version</th><td>{}</td></tr>\
         <tr><th>suites, in preference order</th><td>{}</td></tr>\
         <tr><th>suite picked by</th><td>{}</td></tr>\
         <tr><th>session resumption</th><td>{}</td></tr>\
         <tr><th>key exchange, in preference order</th><td>{}</td></tr></table>",
        esc(&tls.source.min_version),
        esc(&tls.suite_names().join(", ")),
        if tls.source.prefer_server_order {
            "menshen's order"
        } else {
            "the client's order"
        },
        if tls.source.session_resumption {
            "on"
        } else {
            "off"
        },
        esc(&tls.group_names().join(", "))
    );
}

/// Each site with its hosts and routes.
fn sites(h: &mut String, snapshot: &Snapshot) {
    h.push_str(
        "<h2>Sites and routes</h2><table id=\"sites\"><tr><th>site</th><th>hosts</th><th>routes</th>\
         <th>compression</th><th>client certificates</th><th>error pages</th></tr>",
    );
    for site in snapshot.router.sites() {
        let routes: Vec<String> = site
            .routes
            .iter()
            .map(|r| {
                let what = match &r.action {
                    Action::Proxy(p) => format!(
                        "→ {} (timeouts: {}; retries: {}; cache: {})",
                        p.upstream.name,
                        p.timeouts.describe(),
                        p.retries.describe(),
                        p.cache.as_ref().map_or("off".into(), |c| c.describe())
                    ),
                    Action::Respond(c) => format!("respond {}", c.status.as_u16()),
                    Action::Redirect(r) => format!("redirect {} {}", r.status.as_u16(), r.to),
                };
                let edits = r.headers.describe();
                let edits = match edits.is_empty() {
                    true => String::new(),
                    false => format!(" (headers: {edits})"),
                };
                format!(
                    "<code>{}</code> {}{}",
                    esc(&r.prefix),
                    esc(&what),
                    esc(&edits)
                )
            })
            .collect();
        let compression = site.policy.compression.as_ref();
        let clients = site
            .policy
            .client_auth
            .as_ref()
            .map_or(String::from("not asked"), |a| {
                format!(
                    "{}, issued by {}",
                    a.mode.as_str(),
                    a.ca_subjects.join("; ")
                )
            });
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&site.name),
            esc(&site.hosts.join(", ")),
            routes.join("<br>"),
            esc(&compression.map_or("off".into(), |c| c.describe())),
            esc(&clients),
            esc(&error_pages(
                &site.policy.error_pages,
                &snapshot.error_pages
            ))
        );
    }
    h.push_str("</table>");
}

/// The edge cache's store: what it holds against its limit (nothing before a caching route's
/// first request).
fn cache_stats(snapshot: &Snapshot) -> crate::cache::Stats {
    let empty = crate::cache::Stats {
        entries: 0,
        bytes: 0,
        limit: snapshot.cache.memory_bytes,
        disk_bytes: 0,
    };
    crate::cache::store::current().map_or(empty, |s| s.stats())
}

fn cache(h: &mut String, snapshot: &Snapshot) {
    let stats = cache_stats(snapshot);
    let _ = write!(
        h,
        "<h2>Edge cache</h2><table id=\"cache\"><tr><th>entries</th><th>bytes</th>\
         <th>memory limit</th><th>lock timeout</th></tr><tr><td>{}</td><td>{}</td><td>{}</td>\
         <td>{} ms</td></tr></table>",
        stats.entries,
        stats.bytes,
        stats.limit,
        snapshot.cache.lock_timeout.as_millis()
    );
}

/// A site's error pages as `/status` shows them: its own statuses, then the process-wide ones it
/// does not override.
fn error_pages(own: &ErrorPages, default: &ErrorPages) -> String {
    match (own.describe(), default.describe()) {
        (own, default) if own.is_empty() && default.is_empty() => "menshen's plain text".into(),
        (own, default) if default.is_empty() => own,
        (own, default) if own.is_empty() => format!("process-wide: {default}"),
        (own, default) => format!("{own}; process-wide: {default}"),
    }
}

/// Each upstream's backends with their health and last check latency.
fn upstreams(h: &mut String, snapshot: &Snapshot) {
    h.push_str(
        "<h2>Upstreams</h2><table id=\"upstreams\"><tr><th>upstream</th><th>backend</th><th>health</th>\
         <th>last check latency</th></tr>",
    );
    let mut upstreams: Vec<_> = snapshot.upstreams.values().collect();
    upstreams.sort_by(|a, b| a.name.cmp(&b.name));
    for up in upstreams {
        for (addr, healthy) in up.backend_health() {
            let (class, word) = if healthy {
                ("ok", "healthy")
            } else {
                ("crit", "unhealthy")
            };
            let latency = up.check_latency(addr).map_or("-".to_owned(), |d| {
                format!("{:.1} ms", d.as_secs_f64() * 1000.0)
            });
            let _ = write!(
                h,
                "<tr class=\"{class}\"><td>{}</td><td>{addr}</td><td>{word}</td><td>{latency}</td></tr>",
                esc(&up.name)
            );
        }
    }
    h.push_str("</table>");
}
