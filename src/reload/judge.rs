//! The rules a new snapshot must pass before it serves, at start, on reload and in `menshen
//! check`: the same judge for all three, so that what `check` accepts a reload applies.
//!
//! Individually bad certificate files are not refusals: they are left out (or keep their last
//! good version) and reported. What refuses is what would break serving as a whole: a path the
//! config names that cannot be read, a host that would lose its certificate, a TLS listener
//! with nothing to serve, a route to an upstream without a single address.

use std::path::PathBuf;

use thiserror::Error;

use crate::config::ConfigError;
use crate::route::Action;
use crate::snapshot::Snapshot;
use crate::tls::cert::{recheck, unix_now};
use crate::tls::TlsError;

/// Why a snapshot may not serve (start refused, reload rejected, `check` failed).
#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum Refusal {
    /// The config itself is wrong.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A certificate file left out, reported beside the refusal it led to.
    #[error(transparent)]
    Certificate(TlsError),
    /// A certificate file was rejected and `tls.strict = true` makes that fatal at start.
    #[error("{0} (tls.strict = true refuses to start with any rejected certificate file)")]
    Strict(TlsError),
    /// A directory or file named by the config cannot be read.
    #[error(
        "{config}: {key}: {path}: cannot read ({reason}); fix the path in the config or restore \
         what it names"
    )]
    Unreadable {
        /// Config file.
        config: PathBuf,
        /// `tls.certificates` or `tls.pairs`.
        key: &'static str,
        /// The path as resolved.
        path: PathBuf,
        /// OS error.
        reason: String,
    },
    /// A host that has a certificate now would be left without one.
    #[error(
        "{config}: site {site:?}: host {host:?} would lose its certificate ({file} serves it \
         now, and no certificate in the new tls.certificates covers it); restore the file or \
         the directory, or remove the host from the site first"
    )]
    HostLosesCertificate {
        /// Config file.
        config: PathBuf,
        /// Site serving the host.
        site: String,
        /// The host.
        host: String,
        /// The certificate file serving it now.
        file: PathBuf,
    },
    /// A TLS listener would have no certificate at all.
    #[error(
        "{config}: listener {listener:?} has tls = true but no certificate could be served \
         (every file in tls.certificates was left out, see the errors above); add a valid \
         NAME.crt + NAME.key pair"
    )]
    NothingToServe {
        /// Config file.
        config: PathBuf,
        /// Listener name.
        listener: String,
    },
    /// A route whose upstream has no backend address.
    #[error(
        "{config}: site {site:?}: route {prefix:?} goes to upstream {upstream:?}, which has no \
         address: {hosts} resolved to nothing through {resolvers}; fix the hostname or \
         dns.resolvers"
    )]
    RouteToNothing {
        /// Config file.
        config: PathBuf,
        /// Site.
        site: String,
        /// Route prefix.
        prefix: String,
        /// Upstream name.
        upstream: String,
        /// Its hostnames, comma-separated.
        hosts: String,
        /// The resolvers asked.
        resolvers: String,
    },
}

/// Refusals that need no DNS: unreadable configured paths, hosts losing their certificate
/// (against `serving`, on a reload), TLS listeners with nothing to serve.
pub fn certificates(serving: Option<&Snapshot>, next: &Snapshot) -> Vec<Refusal> {
    let config = &next.config_path;
    let mut out = Vec::new();
    let configured = next.cert_sources.configured();
    for e in &next.cert_errors {
        if let TlsError::Io { file, reason } = e {
            if configured.contains(&file.as_path()) {
                let key = if next.cert_sources.dirs.contains(file) {
                    "tls.certificates"
                } else {
                    "tls.pairs"
                };
                out.push(Refusal::Unreadable {
                    config: config.clone(),
                    key,
                    path: file.clone(),
                    reason: reason.clone(),
                });
            }
        }
    }
    if let Some(serving) = serving {
        out.extend(lost_hosts(serving, next));
    }
    let nothing = next.certs.certs().is_empty();
    for l in next.listeners().iter().filter(|l| l.tls && nothing) {
        out.push(Refusal::NothingToServe {
            config: config.clone(),
            listener: l.name.clone(),
        });
    }
    out
}

/// Site hosts covered by a certificate in `serving` and by none in `next`. A loss the approved
/// roots demand (the serving certificate no longer verifies under `next`'s roots, or expired)
/// is not a refusal: menshen never serves such a chain.
fn lost_hosts(serving: &Snapshot, next: &Snapshot) -> Vec<Refusal> {
    let now = unix_now();
    let mut out = Vec::new();
    for site in next.router.sites() {
        for host in &site.hosts {
            let host = host.to_ascii_lowercase();
            let Some(cert) = serving.certs.covering(&host) else {
                continue;
            };
            if next.certs.covering(&host).is_some() || recheck(cert, &next.roots, now).is_err() {
                continue;
            }
            out.push(Refusal::HostLosesCertificate {
                config: next.config_path.clone(),
                site: site.name.clone(),
                host,
                file: cert.info.file.clone(),
            });
        }
    }
    out
}

/// Routes to upstreams without a single backend address, after discovery. On a reload
/// (`serving` given), an upstream carried over unchanged is not the reload's doing and is left
/// to the problems list.
pub fn routes(serving: Option<&Snapshot>, next: &Snapshot) -> Vec<Refusal> {
    let mut out = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for site in next.router.sites() {
        for route in &site.routes {
            let Action::Proxy(p) = &route.action else {
                continue;
            };
            let up = &p.upstream;
            let carried = serving
                .and_then(|s| s.upstreams.get(&up.name))
                .is_some_and(|old| std::sync::Arc::ptr_eq(old, up));
            if up.backend_count() > 0 || carried || !seen.insert(up.name.clone()) {
                continue;
            }
            let hosts: Vec<String> = up.unresolved().into_iter().map(|(h, _)| h).collect();
            out.push(Refusal::RouteToNothing {
                config: next.config_path.clone(),
                site: site.name.clone(),
                prefix: route.prefix.clone(),
                upstream: up.name.clone(),
                hosts: if hosts.is_empty() {
                    "its backends".to_owned()
                } else {
                    hosts.join(", ")
                },
                resolvers: resolvers(next),
            });
        }
    }
    out
}

/// The resolvers backends are looked up through, for messages.
pub fn resolvers(s: &Snapshot) -> String {
    if s.dns.resolvers.is_empty() {
        "the system resolver (/etc/resolv.conf; set dns.resolvers to choose)".to_owned()
    } else {
        let list: Vec<String> = s.dns.resolvers.iter().map(ToString::to_string).collect();
        format!("dns.resolvers ({})", list.join(", "))
    }
}

/// Backend hostnames that resolved to nothing, one message each: the last good addresses
/// they keep, or that they have none.
pub fn unresolved(s: &Snapshot) -> Vec<String> {
    let mut names: Vec<&String> = s.upstreams.keys().collect();
    names.sort();
    let mut out = Vec::new();
    for name in names {
        for (host, kept) in s.upstreams[name].unresolved() {
            let then = if kept.is_empty() {
                "it has no address; fix the hostname or dns.resolvers".to_owned()
            } else {
                let ips: Vec<String> = kept.iter().map(ToString::to_string).collect();
                format!("its last good addresses keep serving ({})", ips.join(", "))
            };
            out.push(format!(
                "{}: upstream {name:?}: backend {host:?} resolved to no address through {}; {then}",
                s.config_path.display(),
                resolvers(s)
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_name_the_file_the_key_and_the_fix() {
        let config = PathBuf::from("conf/menshen.toml");
        let unreadable = Refusal::Unreadable {
            config: config.clone(),
            key: "tls.certificates",
            path: PathBuf::from("conf/lvie"),
            reason: "No such file or directory (os error 2)".into(),
        };
        assert_eq!(
            unreadable.to_string(),
            "conf/menshen.toml: tls.certificates: conf/lvie: cannot read (No such file or \
             directory (os error 2)); fix the path in the config or restore what it names"
        );
        let lost = Refusal::HostLosesCertificate {
            config: config.clone(),
            site: "shop".into(),
            host: "shop.example.cn".into(),
            file: PathBuf::from("conf/live/shop.crt"),
        };
        assert!(lost.to_string().starts_with(
            "conf/menshen.toml: site \"shop\": host \"shop.example.cn\" would lose its \
             certificate (conf/live/shop.crt serves it now"
        ));
        assert!(lost
            .to_string()
            .contains("remove the host from the site first"));
        let nothing = Refusal::NothingToServe {
            config: config.clone(),
            listener: "https".into(),
        };
        assert!(nothing
            .to_string()
            .contains("listener \"https\" has tls = true"));
        let route = Refusal::RouteToNothing {
            config,
            site: "shop".into(),
            prefix: "/api/".into(),
            upstream: "api".into(),
            hosts: "api.internl".into(),
            resolvers: "dns.resolvers (223.5.5.5:53)".into(),
        };
        assert_eq!(
            route.to_string(),
            "conf/menshen.toml: site \"shop\": route \"/api/\" goes to upstream \"api\", which \
             has no address: api.internl resolved to nothing through dns.resolvers \
             (223.5.5.5:53); fix the hostname or dns.resolvers"
        );
    }
}
