//! Keys that older configs used and what replaced them: `_ms`/`_seconds`/`_days` numbers became
//! duration strings, and the TLS settings moved from `[policy]` to `[tls]`.
//!
//! Checked on the raw TOML before the schema sees it, so an old config gets one error per old
//! key, each naming the new key with its value already converted, rather than serde's "unknown
//! field".

use std::time::Duration;

use super::Errors;

/// How an old key's value becomes the new key's.
#[derive(Clone, Copy)]
enum Change {
    /// A number of milliseconds became a duration.
    Millis,
    /// A number of seconds became a duration.
    Seconds,
    /// A number of days became a duration.
    Days,
    /// The same value, under `[tls]`.
    ToTls,
    /// Days of access log retention became `retention`, in calendar months or days.
    Retention,
}

/// `(section, old key, new key, change)`; sections are written without array indices.
#[rustfmt::skip]
const RENAMED: &[(&str, &str, &str, Change)] = &[
    ("server", "grace_period_seconds", "grace_period", Change::Seconds),
    ("dns", "min_ttl_seconds", "min_ttl", Change::Seconds),
    ("dns", "max_ttl_seconds", "max_ttl", Change::Seconds),
    ("dns", "timeout_ms", "timeout", Change::Millis),
    ("reload", "poll_interval_ms", "poll_interval", Change::Millis),
    ("reload", "debounce_ms", "debounce", Change::Millis),
    ("upstreams", "connect_timeout_ms", "connect_timeout", Change::Millis),
    ("upstreams", "read_timeout_ms", "read_timeout", Change::Millis),
    ("upstreams", "write_timeout_ms", "write_timeout", Change::Millis),
    ("upstreams", "idle_timeout_ms", "idle_timeout", Change::Millis),
    ("upstreams", "passive_ejection_ms", "passive_ejection", Change::Millis),
    ("upstreams.health_check", "interval_ms", "interval", Change::Millis),
    ("upstreams.health_check", "timeout_ms", "timeout", Change::Millis),
    ("policy", "body_read_timeout_ms", "body_read_timeout", Change::Millis),
    ("policy", "send_timeout_ms", "send_timeout", Change::Millis),
    ("policy", "header_read_timeout_ms", "header_read_timeout", Change::Millis),
    ("policy", "keepalive_timeout_seconds", "keepalive_timeout", Change::Seconds),
    ("policy", "min_tls_version", "min_version", Change::ToTls),
    ("policy", "cipher_suites", "cipher_suites", Change::ToTls),
    ("policy", "prefer_server_cipher_order", "prefer_server_cipher_order", Change::ToTls),
    ("policy", "session_resumption", "session_resumption", Change::ToTls),
    ("tls", "min_tls_version", "min_version", Change::ToTls),
    ("notify", "min_interval_seconds", "min_interval", Change::Seconds),
    ("sites", "hsts_max_age_seconds", "hsts_max_age", Change::Seconds),
    ("tls", "expiry_warning_days", "expiry_warning", Change::Days),
    ("access_log", "retention_days", "retention", Change::Retention),
];

/// Records an error for every old key in `table` (the whole file).
pub(crate) fn check(table: &toml::Table, errors: &mut Errors<'_>) {
    walk(table, "", "", errors);
}

/// `section` is the schema path (`upstreams.health_check`), `label` how errors name where the
/// table is (`upstream "api": health_check`).
fn walk(table: &toml::Table, section: &str, label: &str, errors: &mut Errors<'_>) {
    for (key, value) in table {
        let path = join(section, key);
        if let Some((_, _, new, change)) = RENAMED
            .iter()
            .find(|(s, old, _, _)| *s == section && old == key)
        {
            errors.invalid(join(label, key), fix(new, *change, value));
            continue;
        }
        match value {
            toml::Value::Table(inner) => walk(inner, &path, &join(label, key), errors),
            toml::Value::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    if let toml::Value::Table(inner) = item {
                        walk(inner, &path, &element_label(label, key, i, inner), errors);
                    }
                }
            }
            _ => {}
        }
    }
}

/// `upstream "api"` and `site "shop"` as elsewhere in errors; `key[i]` for other arrays.
fn element_label(label: &str, key: &str, i: usize, table: &toml::Table) -> String {
    let kind = match (label, key) {
        ("", "upstreams") => Some("upstream"),
        ("", "sites") => Some("site"),
        _ => None,
    };
    match (kind, table.get("name").and_then(toml::Value::as_str)) {
        (Some(kind), Some(name)) => format!("{kind} {name:?}"),
        _ => join(label, &format!("{key}[{i}]")),
    }
}

/// `prefix.key`, or `upstream "api": key` under a named element.
fn join(prefix: &str, key: &str) -> String {
    match prefix {
        "" => key.to_owned(),
        named if named.ends_with('"') => format!("{named}: {key}"),
        _ => format!("{prefix}.{key}"),
    }
}

/// The message for an old key holding `value`.
fn fix(new: &str, change: Change, value: &toml::Value) -> String {
    let unit = match change {
        Change::ToTls => {
            return format!("moved to [tls]: use {new} = {value} in the [tls] section");
        }
        Change::Retention => {
            return format!(
                "renamed: use {new} = \"6mo\" (six calendar months, the default and the least) \
                 or days, at least \"184d\""
            );
        }
        Change::Millis => Duration::from_millis(1),
        Change::Seconds => Duration::from_secs(1),
        Change::Days => Duration::from_secs(86_400),
    };
    let converted = value
        .as_integer()
        .and_then(|n| u32::try_from(n).ok())
        .map(|n| super::duration::format(unit * n));
    match converted {
        Some(d) => format!("renamed: use {new} = \"{d}\" (durations are strings with a unit)"),
        None => {
            format!("renamed: use {new} = a duration such as \"500ms\", \"30s\", \"5m\" or \"1h\"")
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn errors_for(text: &str) -> Vec<String> {
        let table: toml::Table = text.parse().expect("toml");
        let mut errors = Errors::new(Path::new("conf/old.toml"));
        check(&table, &mut errors);
        errors.list.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn every_old_key_names_its_new_key_and_value() {
        let text = r#"
            [server]
            grace_period_seconds = 30
            [dns]
            timeout_ms = 2000
            [[upstreams]]
            name = "api"
            connect_timeout_ms = 500
            [upstreams.health_check]
            interval_ms = 1500
            [[upstreams]]
            backends = []
            idle_timeout_ms = 60000
            [policy]
            min_tls_version = "1.3"
            cipher_suites = ["TLS13_AES_128_GCM_SHA256"]
            keepalive_timeout_seconds = 75
            [[sites]]
            name = "shop"
            hsts_max_age_seconds = 31536000
            [tls]
            expiry_warning_days = 21
            [access_log]
            retention_days = 180
        "#;
        assert_eq!(
            errors_for(text),
            [
                "conf/old.toml: access_log.retention_days: renamed: use retention = \"6mo\" (six calendar months, the default and the least) or days, at least \"184d\"",
                "conf/old.toml: dns.timeout_ms: renamed: use timeout = \"2s\" (durations are strings with a unit)",
                "conf/old.toml: policy.cipher_suites: moved to [tls]: use cipher_suites = [\"TLS13_AES_128_GCM_SHA256\"] in the [tls] section",
                "conf/old.toml: policy.keepalive_timeout_seconds: renamed: use keepalive_timeout = \"75s\" (durations are strings with a unit)",
                "conf/old.toml: policy.min_tls_version: moved to [tls]: use min_version = \"1.3\" in the [tls] section",
                "conf/old.toml: server.grace_period_seconds: renamed: use grace_period = \"30s\" (durations are strings with a unit)",
                "conf/old.toml: site \"shop\": hsts_max_age_seconds: renamed: use hsts_max_age = \"365d\" (durations are strings with a unit)",
                "conf/old.toml: tls.expiry_warning_days: renamed: use expiry_warning = \"21d\" (durations are strings with a unit)",
                "conf/old.toml: upstream \"api\": connect_timeout_ms: renamed: use connect_timeout = \"500ms\" (durations are strings with a unit)",
                "conf/old.toml: upstream \"api\": health_check.interval_ms: renamed: use interval = \"1500ms\" (durations are strings with a unit)",
                "conf/old.toml: upstreams[1].idle_timeout_ms: renamed: use idle_timeout = \"1m\" (durations are strings with a unit)",
            ]
        );
    }

    #[test]
    fn an_old_key_with_a_strange_value_still_names_the_new_key() {
        assert_eq!(
            errors_for("[reload]\ndebounce_ms = \"fast\"\n"),
            ["conf/old.toml: reload.debounce_ms: renamed: use debounce = a duration such as \"500ms\", \"30s\", \"5m\" or \"1h\""]
        );
    }

    #[test]
    fn the_old_version_key_moved_into_tls_is_named_too() {
        assert_eq!(
            errors_for("[tls]\nmin_tls_version = \"1.3\"\n"),
            ["conf/old.toml: tls.min_tls_version: moved to [tls]: use min_version = \"1.3\" in the [tls] section"]
        );
    }

    #[test]
    fn new_keys_and_same_names_elsewhere_pass() {
        // `timeout_ms` is only an old key in [dns] and health checks.
        assert!(errors_for("[reload]\ndebounce = \"50ms\"\n[log]\ntimeout_ms = 1\n").is_empty());
    }
}
