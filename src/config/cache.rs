//! `[cache]`, `[sites.cache]` and routes' `cache = { ... }` into `cache::Settings` and the
//! `cache::Rules` a proxying route carries.

use std::sync::Arc;

use super::file::DEFAULT_MAX_OBJECT_BYTES;
use super::file::{CacheProcessSection, CacheSection, DEFAULT_CACHE_KEY, DEFAULT_CACHE_TTL};
use super::Errors;
use crate::cache::rules::MAX_OBJECT_BYTES;
use crate::cache::{DiskSettings, KeyParts, Rules, Settings};

/// The process's cache settings.
pub(super) fn settings(
    path: &std::path::Path,
    c: &CacheProcessSection,
    errors: &mut Errors<'_>,
) -> Settings {
    if c.memory_bytes < 1024 * 1024 {
        errors.invalid(
            "cache.memory_bytes",
            format!("{} is under 1 MiB; use at least 1048576", c.memory_bytes),
        );
    }
    if c.disk_dir.is_some() && c.disk_bytes < 1024 * 1024 {
        errors.invalid(
            "cache.disk_bytes",
            format!("{} is under 1 MiB; use at least 1048576", c.disk_bytes),
        );
    }
    Settings {
        memory_bytes: c.memory_bytes,
        lock_timeout: c.lock_timeout,
        disk: c.disk_dir.as_ref().map(|dir| DiskSettings {
            dir: super::relative_to(path, dir),
            bytes: c.disk_bytes,
        }),
    }
}

/// A route's rules: its own section over its site's; `None` when neither caches.
pub(super) fn rules(
    site: Option<&CacheSection>,
    route: Option<&CacheSection>,
    key: &str,
    errors: &mut Errors<'_>,
) -> Option<Arc<Rules>> {
    let (site, route) = (site.cloned().unwrap_or_default(), route.cloned());
    let present = route.is_some() || site != CacheSection::default();
    let route = route.unwrap_or_default();
    let enabled = route.enabled.or(site.enabled).unwrap_or(present);
    let key_key = match route.key {
        Some(_) => format!("{key}.cache.key"),
        None => format!("{key}: cache.key (of the site)"),
    };
    let parts = route.key.as_ref().or(site.key.as_ref());
    let parts = key_parts(parts, &key_key, errors)?;
    let max_object_bytes = route
        .max_object_bytes
        .or(site.max_object_bytes)
        .unwrap_or(DEFAULT_MAX_OBJECT_BYTES);
    if max_object_bytes > MAX_OBJECT_BYTES {
        errors.invalid(
            format!("{key}: cache.max_object_bytes"),
            format!("{max_object_bytes} is over the store's largest object; use at most {MAX_OBJECT_BYTES}"),
        );
        return None;
    }
    enabled.then(|| {
        Arc::new(Rules {
            key: parts,
            default_ttl: route
                .default_ttl
                .or(site.default_ttl)
                .unwrap_or(DEFAULT_CACHE_TTL),
            force_ttl: route.force_ttl.or(site.force_ttl),
            max_object_bytes,
            store_set_cookie: route
                .store_set_cookie
                .or(site.store_set_cookie)
                .unwrap_or(false),
        })
    })
}

fn key_parts(parts: Option<&Vec<String>>, key: &str, errors: &mut Errors<'_>) -> Option<KeyParts> {
    let default: Vec<String> = DEFAULT_CACHE_KEY.map(String::from).to_vec();
    let parts = parts.unwrap_or(&default);
    let mut k = KeyParts {
        host: false,
        path: false,
        query: false,
    };
    for p in parts {
        match p.as_str() {
            "host" => k.host = true,
            "path" => k.path = true,
            "query" => k.query = true,
            other => {
                errors.invalid(
                    key,
                    format!("{other:?} is not a key part; use \"host\", \"path\" or \"query\""),
                );
                return None;
            }
        }
    }
    if !k.path {
        errors.invalid(
            key,
            "leaves out \"path\": every URL of the route would share one entry; add \"path\"",
        );
        return None;
    }
    Some(k)
}
