//! Text the logs are made of, written by hand because it is written for every request: RFC 3339
//! times, JSON strings, and the calendar arithmetic behind dated file names and retention.

use std::time::{SystemTime, UNIX_EPOCH};

/// (year, month, day) of a day count since 1970-01-01 (Howard Hinnant's algorithm).
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Appends `t` as RFC 3339 UTC with milliseconds, e.g. `2026-11-27T01:24:11.133+00:00`.
pub fn push_rfc3339_millis(out: &mut String, t: SystemTime) {
    thread_local! {
        /// The last second formatted on this thread, with its text.
        static LAST: std::cell::Cell<(u64, [u8; 29])> = const {
            std::cell::Cell::new((u64::MAX, [0; 29]))
        };
    }
    let since = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let (last, mut text) = LAST.get();
    if last == secs {
        let ms = since.subsec_millis();
        text[20] = b'0' + (ms / 100) as u8;
        text[21] = b'0' + (ms / 10 % 10) as u8;
        text[22] = b'0' + (ms % 10) as u8;
        out.push_str(std::str::from_utf8(&text).unwrap_or_default());
        return;
    }
    let (y, m, d) = civil_from_days((secs / 86_400) as i64);
    let rem = secs % 86_400;
    // Digit by digit: this runs for every request.
    let mut text = *b"0000-00-00T00:00:00.000+00:00";
    let mut put = |at: usize, width: usize, mut n: u64| {
        for i in (at..at + width).rev() {
            text[i] = b'0' + (n % 10) as u8;
            n /= 10;
        }
    };
    put(0, 4, y.clamp(0, 9999) as u64);
    put(5, 2, u64::from(m));
    put(8, 2, u64::from(d));
    put(11, 2, rem / 3600);
    put(14, 2, rem / 60 % 60);
    put(17, 2, rem % 60);
    put(20, 3, u64::from(since.subsec_millis()));
    LAST.set((secs, text));
    out.push_str(std::str::from_utf8(&text).unwrap_or_default());
}

/// Appends `s` as a JSON string (quotes included).
pub fn push_json_str(out: &mut String, s: &str) {
    use std::fmt::Write as _;
    out.push('"');
    if !s.bytes().any(|b| b < 0x20 || b == b'"' || b == b'\\') {
        out.push_str(s);
        out.push('"');
        return;
    }
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Days since 1970-01-01 of a (year, month, day) (Howard Hinnant's algorithm).
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = i64::from((m + 9) % 12);
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn dates_and_json_strings() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(20_784), (2026, 11, 27));
        let mut s = String::new();
        push_rfc3339_millis(
            &mut s,
            UNIX_EPOCH + Duration::from_millis(1_795_742_651_133),
        );
        assert_eq!(s, "2026-11-27T01:24:11.133+00:00");
        // The same second again (the cached text, new milliseconds), then the next one.
        for (ms, text) in [
            (1_795_742_651_007, "2026-11-27T01:24:11.007+00:00"),
            (1_795_742_652_999, "2026-11-27T01:24:12.999+00:00"),
        ] {
            let mut s = String::new();
            push_rfc3339_millis(&mut s, UNIX_EPOCH + Duration::from_millis(ms));
            assert_eq!(s, text);
        }
        let mut j = String::new();
        push_json_str(&mut j, "a\"b\\c\n\u{1}门");
        assert_eq!(j, "\"a\\\"b\\\\c\\n\\u0001门\"");
        let mut plain = String::new();
        push_json_str(&mut plain, "/shop/门?q=1");
        assert_eq!(plain, "\"/shop/门?q=1\"");
    }

    #[test]
    fn days_and_dates_round_trip() {
        for z in [-1000, 0, 59, 60, 20_784, 20_794, 40_000] {
            let (y, m, d) = civil_from_days(z);
            assert_eq!(days_from_civil(y, m, d), z);
        }
    }
}
