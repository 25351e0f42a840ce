//! The one way a duration is written in the config: a number and a unit in a string, `"250ms"`,
//! `"30s"`, `"5m"`, `"1h"`, `"21d"`. Used by the file schema through `deserialize_with`, so the
//! compiled config only ever sees [`Duration`].

use std::fmt;
use std::time::Duration;

use serde::de::{self, Deserializer, Visitor};

/// What a duration looks like, for error messages.
pub const EXPECTED: &str =
    "a duration as a string: a whole number and a unit, ms, s, m, h or d (e.g. \"250ms\", \"30s\", \"5m\")";

/// Parses `"250ms"`, `"30s"`, `"5m"`, `"1h"` or `"21d"`.
pub fn parse(text: &str) -> Result<Duration, String> {
    let digits = text.bytes().take_while(u8::is_ascii_digit).count();
    let (number, unit) = text.split_at(digits);
    let unit_secs: Option<u64> = match unit {
        "ms" => None,
        "s" => Some(1),
        "m" => Some(60),
        "h" => Some(3600),
        "d" => Some(86_400),
        _ => return Err(format!("{text:?} is not {EXPECTED}")),
    };
    let Ok(n) = number.parse::<u64>() else {
        return Err(format!("{text:?} is not {EXPECTED}"));
    };
    match unit_secs {
        None => Ok(Duration::from_millis(n)),
        Some(unit) => n
            .checked_mul(unit)
            .map(Duration::from_secs)
            .ok_or_else(|| format!("{text:?} is too long")),
    }
}

/// Writes `d` the way the config does: the largest unit that divides it.
pub fn format(d: Duration) -> String {
    let ms = d.as_millis();
    for (unit, size) in [
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1000),
    ] {
        if ms >= size && ms.is_multiple_of(size) {
            return format!("{}{unit}", ms / size);
        }
    }
    format!("{ms}ms")
}

/// Whole days in `d`, for settings counted in days (certificate lifetimes, log retention).
pub fn whole_days(d: Duration) -> u32 {
    u32::try_from(d.as_secs() / 86_400).unwrap_or(u32::MAX)
}

struct DurationVisitor;

impl Visitor<'_> for DurationVisitor {
    type Value = Duration;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(EXPECTED)
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Duration, E> {
        parse(v).map_err(E::custom)
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Duration, E> {
        Err(E::custom(format!(
            "{v} has no unit: write it as a string with one, e.g. \"{v}s\" or \"{v}ms\""
        )))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Duration, E> {
        Err(E::custom(format!(
            "{v} has no unit: write it as a string with one, e.g. \"{v}s\" or \"{v}ms\""
        )))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Duration, E> {
        Err(E::custom(format!("{v} is not {EXPECTED}")))
    }
}

/// `#[serde(deserialize_with = "duration::required")]`
pub fn required<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    d.deserialize_any(DurationVisitor)
}

/// `#[serde(default, deserialize_with = "duration::optional")]`
pub fn optional<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    required(d).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_unit_parses() {
        assert_eq!(parse("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse("21d"), Ok(Duration::from_secs(21 * 86_400)));
        assert_eq!(parse("0s"), Ok(Duration::ZERO));
    }

    #[test]
    fn bad_values_say_what_a_duration_looks_like() {
        for bad in [
            "1 minute", "-5s", "10", "", "s", "1.5s", "5 s", "5S", "1h30m",
        ] {
            let err = parse(bad).expect_err(bad);
            assert_eq!(
                err,
                format!("{bad:?} is not a duration as a string: a whole number and a unit, ms, s, m, h or d (e.g. \"250ms\", \"30s\", \"5m\")")
            );
        }
        assert_eq!(
            parse("99999999999999999999d").expect_err("overflow"),
            "\"99999999999999999999d\" is not a duration as a string: a whole number and a unit, ms, s, m, h or d (e.g. \"250ms\", \"30s\", \"5m\")"
        );
        assert_eq!(
            parse("999999999999999d").expect_err("overflow"),
            "\"999999999999999d\" is too long"
        );
    }

    #[derive(Debug, serde::Deserialize)]
    struct T {
        #[serde(deserialize_with = "required")]
        timeout: Duration,
    }

    #[test]
    fn a_bare_number_is_refused_with_the_fix() {
        let err = toml::from_str::<T>("timeout = 10").expect_err("no unit");
        assert!(
            err.to_string().contains(
                "10 has no unit: write it as a string with one, e.g. \"10s\" or \"10ms\""
            ),
            "{err}"
        );
        let err = toml::from_str::<T>("timeout = \"1 minute\"").expect_err("words");
        assert!(
            err.to_string().contains("\"1 minute\" is not a duration"),
            "{err}"
        );
        let ok: T = toml::from_str("timeout = \"250ms\"").expect("parses");
        assert_eq!(ok.timeout, Duration::from_millis(250));
    }

    #[test]
    fn format_uses_the_largest_exact_unit() {
        assert_eq!(format(Duration::from_millis(1500)), "1500ms");
        assert_eq!(format(Duration::from_secs(90)), "90s");
        assert_eq!(format(Duration::from_secs(300)), "5m");
        assert_eq!(format(Duration::from_secs(86_400 * 180)), "180d");
        assert_eq!(format(Duration::ZERO), "0ms");
    }
}
