//! Proactive negotiation by q-values (RFC 9110 12.4.2), once for every engine: the weighted
//! items of an `Accept`-style field, whether a client prefers JSON to HTML (`Accept`, 12.5.1)
//! and which of a page's languages it prefers (`Accept-Language`, 12.5.4; ranges matched as
//! RFC 4647 basic filtering, and a range more specific than a page's tag still matches it).
//!
//! Written here rather than taken from a crate: `accept-language` matches whole tags only (a
//! `zh-CN` client gets nothing from a `zh` page) and allocates per call; `fluent-langneg`
//! ignores q-values. This is a few lookups over the field's bytes, nothing allocated.

use super::fields::list_items;

/// The items of a comma-separated field with their q-values in thousandths (1000 when absent),
/// each item's value without its parameters; an item with a malformed q-value is left out.
pub fn weighted(value: &[u8]) -> impl Iterator<Item = (&[u8], u16)> {
    list_items(value).filter_map(|item| {
        let mut parts = item.split(|&b| b == b';');
        let token = parts.next().unwrap_or_default().trim_ascii();
        let q = parts
            .find_map(|p| {
                let p = p.trim_ascii();
                let v = p.strip_prefix(b"q=").or_else(|| p.strip_prefix(b"Q="))?;
                Some(qvalue(v))
            })
            .unwrap_or(Some(1000))?;
        (!token.is_empty()).then_some((token, q))
    })
}

/// A q-value in thousandths (`0`, `0.5`, `1.000`); `None` when malformed.
fn qvalue(v: &[u8]) -> Option<u16> {
    let text = std::str::from_utf8(v).ok()?;
    let q: f32 = text.parse().ok()?;
    (0.0..=1.0)
        .contains(&q)
        .then(|| (q * 1000.0).round() as u16)
}

/// Whether `Accept` ranks `application/json` above `text/html` (`Accept: application/json`
/// does; a browser's `text/html,...,*/*;q=0.8` and curl's `*/*` do not).
pub fn prefers_json(accept: &[u8]) -> bool {
    media_q(accept, b"application", b"json") > media_q(accept, b"text", b"html")
}

/// The q-value `accept` gives the media type `main/sub`: that of its most specific matching
/// range (`main/sub`, then `main/*`, then `*/*`); 0 when none matches.
fn media_q(accept: &[u8], main: &[u8], sub: &[u8]) -> u16 {
    let mut best: Option<(u8, u16)> = None;
    for (range, q) in weighted(accept) {
        let Some(slash) = range.iter().position(|&b| b == b'/') else {
            continue;
        };
        let (m, s) = (&range[..slash], &range[slash + 1..]);
        let specificity = match (m, s) {
            (b"*", b"*") => 0,
            (m, b"*") if m.eq_ignore_ascii_case(main) => 1,
            (m, s) if m.eq_ignore_ascii_case(main) && s.eq_ignore_ascii_case(sub) => 2,
            _ => continue,
        };
        if best.is_none_or(|(b, _)| specificity > b) {
            best = Some((specificity, q));
        }
    }
    best.map_or(0, |(_, q)| q)
}

/// The index of the language in `offered` that `accept_language` prefers: the highest q-value
/// above 0, ties to the earlier offered; `None` when it accepts none of them. An offered tag's
/// q-value is that of the most specific range that is the tag or a prefix of it (`zh` for
/// `zh-CN`; 0 there refuses the tag), or of a longer range it is a prefix of (`en-US` for
/// `en`, as RFC 4647 lookup truncates), whichever is higher; else that of `*`.
pub fn language<'o>(
    accept_language: &[u8],
    offered: impl Iterator<Item = &'o str>,
) -> Option<usize> {
    let mut best: Option<(usize, u16)> = None;
    for (i, tag) in offered.enumerate() {
        let q = language_q(accept_language, tag.as_bytes());
        if q > 0 && best.is_none_or(|(_, b)| q > b) {
            best = Some((i, q));
        }
    }
    best.map(|(i, _)| i)
}

fn language_q(accept_language: &[u8], tag: &[u8]) -> u16 {
    let (mut direct, mut longer, mut star): (Option<(usize, u16)>, Option<u16>, Option<u16>) =
        (None, None, None);
    for (range, q) in weighted(accept_language) {
        if range == b"*" {
            star = Some(q);
        } else if prefix_tag(range, tag) {
            if direct.is_none_or(|(len, _)| range.len() > len) {
                direct = Some((range.len(), q));
            }
        } else if prefix_tag(tag, range) {
            longer = longer.max(Some(q));
        }
    }
    match (direct, longer) {
        (Some((_, 0)), _) => 0,
        (None, None) => star.unwrap_or(0),
        (direct, longer) => direct.map_or(0, |(_, q)| q).max(longer.unwrap_or(0)),
    }
}

/// Whether `short` is `long` or a prefix of it ending at a subtag boundary (any case).
fn prefix_tag(short: &[u8], long: &[u8]) -> bool {
    long.len() >= short.len()
        && long[..short.len()].eq_ignore_ascii_case(short)
        && (long.len() == short.len() || long[short.len()] == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_is_chosen_only_when_the_client_ranks_it_above_html() {
        assert!(prefers_json(b"application/json"));
        assert!(prefers_json(b"application/json, text/html;q=0.9"));
        assert!(prefers_json(b"text/html;q=0.1, application/*"));
        assert!(!prefers_json(b"*/*"), "curl's default");
        assert!(!prefers_json(
            b"text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
        ));
        assert!(!prefers_json(b"application/json;q=0.5, text/html"));
        assert!(!prefers_json(b"application/json;q=0, */*"));
        assert!(!prefers_json(b"text/plain"));
        assert!(prefers_json(b"APPLICATION/JSON;Q=1"));
        assert!(
            !prefers_json(b"application/json;q=2"),
            "malformed: left out"
        );
    }

    #[test]
    fn languages_are_chosen_by_q_value_and_subtag_prefix() {
        let pick = |a: &str, offered: &[&str]| language(a.as_bytes(), offered.iter().copied());
        let zh_en = ["zh-CN", "en"];
        assert_eq!(pick("zh-CN,zh;q=0.9,en;q=0.8", &zh_en), Some(0));
        assert_eq!(pick("en-US,en;q=0.9,zh-CN;q=0.8", &zh_en), Some(1));
        assert_eq!(pick("zh;q=0.5, en;q=0.6", &zh_en), Some(1));
        assert_eq!(pick("zh", &zh_en), Some(0), "a prefix range matches");
        assert_eq!(pick("en-GB", &zh_en), Some(1), "a longer range matches");
        assert_eq!(pick("zh-TW", &zh_en), None, "a sibling region does not");
        assert_eq!(pick("fr, de;q=0.5", &zh_en), None);
        assert_eq!(pick("*", &zh_en), Some(0), "any: the first offered");
        assert_eq!(pick("*;q=0.5, zh;q=0", &zh_en), Some(1), "q=0 refuses");
        assert_eq!(pick("en;q=0.8, en-US;q=0.1", &zh_en), Some(1));
        assert_eq!(
            pick("zh-hk;q=0.9, zh;q=0.1, en;q=0.5", &["zh-HK", "zh-CN", "en"]),
            Some(0)
        );
        assert_eq!(pick("EN", &zh_en), Some(1), "any case");
        assert_eq!(pick("", &zh_en), None);
    }

    #[test]
    fn weighted_items_carry_their_q_values() {
        let items: Vec<(&[u8], u16)> = weighted(b"a;q=0.5, b ; level=1, c;q=x, d;Q=0").collect();
        assert_eq!(
            items,
            vec![(&b"a"[..], 500), (&b"b"[..], 1000), (&b"d"[..], 0)]
        );
    }
}
