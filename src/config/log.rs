//! `[access_log]` retention and tamper evidence, compiled: the legal floor on retention and the
//! chain key file, each refused with the reason and the fix.

use std::path::Path;

use super::file::AccessLogSection;
use super::{relative_to, Errors};
use crate::observe::chain::ChainKey;
use crate::observe::retention::{Retention, MIN_RETENTION_DAYS, MIN_RETENTION_MONTHS};
use crate::observe::ship::ShipConfig;

/// `access_log.retention`: calendar months (`"6mo"`) or a duration in days (`"184d"`); six
/// calendar months when absent.
pub(crate) fn retention(section: &AccessLogSection, errors: &mut Errors<'_>) -> Retention {
    const KEY: &str = "access_log.retention";
    const WHY: &str = "the Cybersecurity Law (Art. 21) requires network logs to be kept for no \
                       less than six months";
    let Some(text) = section.retention.as_deref() else {
        return Retention::default();
    };
    if let Some(months) = text.strip_suffix("mo") {
        return match months.parse::<u32>() {
            Ok(m) if m >= MIN_RETENTION_MONTHS => Retention::Months(m),
            Ok(m) => {
                errors.invalid(
                    KEY,
                    format!(
                        "\"{m}mo\" is below {MIN_RETENTION_MONTHS} months: {WHY}; set \
                         \"{MIN_RETENTION_MONTHS}mo\" or more (the default)"
                    ),
                );
                Retention::default()
            }
            Err(_) => {
                errors.invalid(
                    KEY,
                    format!("{text:?} is not a number of months (e.g. \"6mo\")"),
                );
                Retention::default()
            }
        };
    }
    match super::duration::parse(text).map(super::duration::whole_days) {
        Ok(days) if days >= MIN_RETENTION_DAYS => Retention::Days(days),
        Ok(_) => {
            errors.invalid(
                KEY,
                format!(
                    "{text:?} is below {MIN_RETENTION_DAYS} days: {WHY}, and six calendar months \
                     can be {MIN_RETENTION_DAYS} days; set \"{MIN_RETENTION_MONTHS}mo\" (the \
                     default) or at least \"{MIN_RETENTION_DAYS}d\""
                ),
            );
            Retention::default()
        }
        Err(e) => {
            errors.invalid(KEY, format!("{e}; or calendar months, e.g. \"6mo\""));
            Retention::default()
        }
    }
}

/// The chain key, unless `tamper_evident = false`.
pub(crate) fn chain_key(
    config: &Path,
    section: &AccessLogSection,
    errors: &mut Errors<'_>,
) -> Option<ChainKey> {
    if !section.tamper_evident {
        return None;
    }
    let file = relative_to(config, &section.chain_key_file);
    match ChainKey::load(&file) {
        Ok(key) => Some(key),
        Err(e) => {
            errors.invalid(
                "access_log.chain_key_file",
                format!("{e}; or set access_log.tamper_evident = false to log without a chain"),
            );
            None
        }
    }
}

/// `[access_log.shipping]`, with its credentials read.
pub(crate) fn shipping(
    config: &Path,
    section: &AccessLogSection,
    errors: &mut Errors<'_>,
) -> Option<ShipConfig> {
    let s = section.shipping.as_ref()?;
    if !section.tamper_evident {
        errors.invalid(
            "access_log.shipping",
            "ships sealed files: needs access_log.tamper_evident = true",
        );
        return None;
    }
    let scheme_ok = s.endpoint.starts_with("https://") || s.endpoint.starts_with("http://");
    if !scheme_ok || s.bucket.is_empty() || s.region.is_empty() {
        errors.invalid(
            "access_log.shipping",
            format!(
                "endpoint {:?}, bucket {:?}, region {:?}: expected an http(s):// endpoint \
                 (e.g. \"https://oss-cn-hangzhou.aliyuncs.com\"), a bucket and a region",
                s.endpoint, s.bucket, s.region
            ),
        );
        return None;
    }
    let file = relative_to(config, &s.credentials_file);
    let text = match std::fs::read_to_string(&file) {
        Ok(t) => t,
        Err(e) => {
            errors.invalid(
                "access_log.shipping.credentials_file",
                format!("{}: cannot read: {e}", file.display()),
            );
            return None;
        }
    };
    let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty());
    let (Some(access_key), Some(secret_key), None) = (lines.next(), lines.next(), lines.next())
    else {
        errors.invalid(
            "access_log.shipping.credentials_file",
            format!(
                "{}: expected two lines: the access key id, then the secret",
                file.display()
            ),
        );
        return None;
    };
    Some(ShipConfig {
        endpoint: s.endpoint.clone(),
        bucket: s.bucket.clone(),
        region: s.region.clone(),
        prefix: s.prefix.clone(),
        path_style: s.path_style,
        access_key: access_key.to_owned(),
        secret_key: secret_key.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn section(extra: &str) -> AccessLogSection {
        toml::from_str(&format!("path = \"a.log\"\n{extra}")).expect("section")
    }

    fn messages(extra: &str) -> (Retention, Vec<String>) {
        let mut errors = Errors::new(Path::new("conf/menshen.toml"));
        let r = retention(&section(extra), &mut errors);
        (r, errors.list.iter().map(|e| e.to_string()).collect())
    }

    #[test]
    fn retention_is_six_calendar_months_at_least() {
        assert_eq!(messages(""), (Retention::Months(6), vec![]));
        assert_eq!(
            messages("retention = \"12mo\""),
            (Retention::Months(12), vec![])
        );
        assert_eq!(
            messages("retention = \"184d\""),
            (Retention::Days(184), vec![])
        );
        let (_, e) = messages("retention = \"180d\"");
        assert_eq!(
            e,
            [
                "conf/menshen.toml: access_log.retention: \"180d\" is below 184 days: the \
              Cybersecurity Law (Art. 21) requires network logs to be kept for no less than six \
              months, and six calendar months can be 184 days; set \"6mo\" (the default) or at \
              least \"184d\""
            ]
        );
        let (_, e) = messages("retention = \"3mo\"");
        assert_eq!(
            e,
            [
                "conf/menshen.toml: access_log.retention: \"3mo\" is below 6 months: the \
              Cybersecurity Law (Art. 21) requires network logs to be kept for no less than six \
              months; set \"6mo\" or more (the default)"
            ]
        );
        let (_, e) = messages("retention = \"half a year\"");
        assert!(e[0].contains("e.g. \"6mo\""), "{e:?}");
    }

    #[test]
    fn a_missing_key_file_says_how_to_make_one() {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = dir.path().join("menshen.toml");
        let mut errors = Errors::new(&config);
        assert!(chain_key(&config, &section(""), &mut errors).is_none());
        let key = dir.path().join("access-log.key");
        assert_eq!(
            errors.list[0].to_string(),
            format!(
                "{}: access_log.chain_key_file: {k} does not exist: make one with `menshen logs \
                 key {k}` (and keep a copy where the logs will be verified); or set \
                 access_log.tamper_evident = false to log without a chain",
                config.display(),
                k = key.display()
            )
        );
        let mut errors = Errors::new(&config);
        let off = section("tamper_evident = false");
        assert!(chain_key(&config, &off, &mut errors).is_none());
        assert!(errors.list.is_empty());
    }

    #[test]
    fn shipping_settings_are_refused_with_the_fix() {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = dir.path().join("menshen.toml");
        let ship = |extra: &str| {
            section(&format!(
                "{extra}\n[shipping]\nendpoint = \"https://oss-cn-hangzhou.aliyuncs.com\"\n\
                 bucket = \"logs\"\nregion = \"cn-hangzhou\"\ncredentials_file = \"s3.cred\"\n"
            ))
        };
        let messages = |s: &AccessLogSection| {
            let mut errors = Errors::new(&config);
            let got = shipping(&config, s, &mut errors);
            (
                got,
                errors
                    .list
                    .iter()
                    .map(|e| e.to_string())
                    .collect::<Vec<_>>(),
            )
        };
        let cred = dir.path().join("s3.cred");
        let (got, e) = messages(&ship(""));
        assert!(got.is_none());
        assert!(
            e[0].contains(&format!(
                "access_log.shipping.credentials_file: {}: cannot read",
                cred.display()
            )),
            "{e:?}"
        );
        std::fs::write(&cred, "only-one-line\n").expect("write");
        let (_, e) = messages(&ship(""));
        assert!(
            e[0].ends_with("expected two lines: the access key id, then the secret"),
            "{e:?}"
        );
        std::fs::write(&cred, "AKID\nsecret\n").expect("write");
        let (got, e) = messages(&ship(""));
        assert!(e.is_empty(), "{e:?}");
        let got = got.expect("shipping");
        assert_eq!(
            (got.access_key.as_str(), got.secret_key.as_str()),
            ("AKID", "secret")
        );
        assert!(
            !format!("{got:?}").contains("secret"),
            "credentials stay out of Debug"
        );
        let (_, e) = messages(&ship("tamper_evident = false"));
        assert!(
            e[0].contains("needs access_log.tamper_evident = true"),
            "{e:?}"
        );
    }
}
