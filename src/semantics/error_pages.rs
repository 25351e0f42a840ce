//! Error pages that replace the plain text of menshen's own error answers (a denial, a backend
//! that failed), per status, each in one or more languages: compiled at load by
//! `config/error_pages.rs` into templates, chosen by `Accept-Language` (`negotiate`) and
//! rendered, values HTML-escaped, by `proxy::own` for both engines.

use std::path::{Path, PathBuf};

use http::HeaderValue;

use super::negotiate::language;

/// The pages of a site, or the process-wide ones, by status.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ErrorPages {
    /// Sorted by status.
    pages: Vec<(u16, Page)>,
}

/// One status's page: its languages in config order; the first is sent when the client
/// accepts none of them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    variants: Vec<Variant>,
}

/// A page in one language.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Variant {
    /// Its language tag (`zh-CN`, `en`), sent as `Content-Language`.
    pub language: Option<HeaderValue>,
    /// Its text.
    pub template: Template,
    /// Where the text came from: a file (read at load, and watched) or the config itself.
    pub file: Option<PathBuf>,
}

impl ErrorPages {
    /// Adds `variant` to the page of `status` (after the languages it has already).
    pub fn add(&mut self, status: u16, variant: Variant) {
        match self.pages.binary_search_by_key(&status, |(s, _)| *s) {
            Ok(i) => self.pages[i].1.variants.push(variant),
            Err(i) => self.pages.insert(
                i,
                (
                    status,
                    Page {
                        variants: vec![variant],
                    },
                ),
            ),
        }
    }

    /// The page of `status`, if there is one.
    pub fn get(&self, status: u16) -> Option<&Page> {
        let i = self.pages.binary_search_by_key(&status, |(s, _)| *s).ok()?;
        Some(&self.pages[i].1)
    }

    /// The statuses with their pages, by status.
    pub fn pages(&self) -> impl Iterator<Item = (u16, &Page)> {
        self.pages.iter().map(|(status, page)| (*status, page))
    }

    /// The files the pages were read from (a change to one is a reason to reload).
    pub fn files(&self) -> impl Iterator<Item = &Path> {
        let variants = self.pages.iter().flat_map(|(_, p)| &p.variants);
        variants.filter_map(|v| v.file.as_deref())
    }

    /// One line for `/status` and `menshen check`: the statuses with their languages, e.g.
    /// `451 (zh-CN, en), 502, 504`; empty when there are none.
    pub fn describe(&self) -> String {
        let one = |(status, page): &(u16, Page)| {
            let languages: Vec<&str> = page
                .variants
                .iter()
                .filter_map(|v| v.language.as_ref()?.to_str().ok())
                .collect();
            match languages.is_empty() {
                true => status.to_string(),
                false => format!("{status} ({})", languages.join(", ")),
            }
        };
        self.pages.iter().map(one).collect::<Vec<_>>().join(", ")
    }
}

impl Page {
    /// The variant for a client's `Accept-Language` (the first when it accepts none), and
    /// whether the choice depended on that field (`Vary: Accept-Language`).
    pub fn choose(&self, accept_language: Option<&[u8]>) -> (&Variant, bool) {
        let first = &self.variants[0];
        if self.variants.len() == 1 {
            return (first, false);
        }
        let offered = self.variants.iter().map(|v| {
            v.language
                .as_ref()
                .and_then(|l| l.to_str().ok())
                .unwrap_or("")
        });
        let chosen = accept_language.and_then(|a| language(a, offered));
        (chosen.map_or(first, |i| &self.variants[i]), true)
    }

    /// Its languages, in order.
    pub fn variants(&self) -> &[Variant] {
        &self.variants
    }
}

/// A page's text with `{{request_id}}`, `{{status}}`, `{{reason}}`, `{{site}}`, `{{host}}` or
/// `{{client_ip}}` in it (double braces, so CSS and scripts keep their single ones).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    parts: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    RequestId,
    Status,
    Reason,
    Site,
    Host,
    ClientIp,
}

/// What a template's names stand for in one answer.
pub struct Values<'a> {
    /// The request id (as in `X-Request-Id` and the access log).
    pub request_id: &'a str,
    /// The status.
    pub status: u16,
    /// Its reason phrase, e.g. `Unavailable For Legal Reasons`.
    pub reason: &'a str,
    /// The site's name (empty when the Host is no site's).
    pub site: &'a str,
    /// The canonical Host.
    pub host: &'a str,
    /// The client's address (after PROXY protocol and trusted proxies).
    pub client_ip: &'a str,
}

/// The names a template may use, for error messages.
const NAMES: &str = "{{request_id}}, {{status}}, {{reason}}, {{site}}, {{host}} or {{client_ip}}";

impl Template {
    /// Reads `text`; `Err` names what is wrong (an unknown `{{name}}`, a `{{` never closed).
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut parts = Vec::new();
        let mut rest = text;
        while let Some(open) = rest.find("{{") {
            let Some(close) = rest[open + 2..].find("}}") else {
                return Err(format!(
                    "a {{{{ is never closed by }}}} (values are written {NAMES})"
                ));
            };
            if open > 0 {
                parts.push(Part::Text(rest[..open].to_owned()));
            }
            parts.push(match rest[open + 2..open + 2 + close].trim() {
                "request_id" => Part::RequestId,
                "status" => Part::Status,
                "reason" => Part::Reason,
                "site" => Part::Site,
                "host" => Part::Host,
                "client_ip" => Part::ClientIp,
                other => {
                    return Err(format!(
                        "{{{{{other}}}}} is not a value menshen knows (use {NAMES})"
                    ))
                }
            });
            rest = &rest[open + 2 + close + 2..];
        }
        if !rest.is_empty() {
            parts.push(Part::Text(rest.to_owned()));
        }
        Ok(Self { parts })
    }

    /// The page for one answer, its values HTML-escaped.
    pub fn render(&self, v: &Values<'_>) -> String {
        let text_len: usize = self.parts.iter().map(Part::len).sum();
        let mut out = String::with_capacity(text_len + 64);
        for part in &self.parts {
            match part {
                Part::Text(t) => out.push_str(t),
                Part::RequestId => push_html_escaped(&mut out, v.request_id),
                Part::Status => out.push_str(itoa::Buffer::new().format(v.status)),
                Part::Reason => push_html_escaped(&mut out, v.reason),
                Part::Site => push_html_escaped(&mut out, v.site),
                Part::Host => push_html_escaped(&mut out, v.host),
                Part::ClientIp => push_html_escaped(&mut out, v.client_ip),
            }
        }
        out
    }
}

impl Part {
    fn len(&self) -> usize {
        match self {
            Part::Text(t) => t.len(),
            _ => 0,
        }
    }
}

/// Appends `s` with the characters HTML gives a meaning (`<`, `>`, `&`, `"`, `'`) escaped.
pub fn push_html_escaped(out: &mut String, s: &str) {
    for c in s.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
}

/// The reason phrase of `status` (`Bad Gateway`), `Error` for one without.
pub fn reason(status: u16) -> &'static str {
    http::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("Error")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values<'a>(host: &'a str, id: &'a str) -> Values<'a> {
        Values {
            request_id: id,
            status: 451,
            reason: reason(451),
            site: "shop",
            host,
            client_ip: "2001:db8::1",
        }
    }

    #[test]
    fn values_are_html_escaped_and_css_braces_are_text() {
        let t = Template::parse(
            "<style>p { color: red }</style><p>{{status}} {{ reason }} on {{host}} for \
             {{client_ip}} at {{site}}: {{request_id}}</p>",
        )
        .expect("parses");
        let page = t.render(&values("a<b>&\"c'", "id\"<script>"));
        assert_eq!(
            page,
            "<style>p { color: red }</style><p>451 Unavailable For Legal Reasons on \
             a&lt;b&gt;&amp;&quot;c&#39; for 2001:db8::1 at shop: id&quot;&lt;script&gt;</p>"
        );
    }

    #[test]
    fn unknown_values_and_unclosed_braces_are_refused_naming_the_fix() {
        let e = Template::parse("id {{requestid}}").expect_err("unknown");
        assert_eq!(
            e,
            "{{requestid}} is not a value menshen knows (use {{request_id}}, {{status}}, \
             {{reason}}, {{site}}, {{host}} or {{client_ip}})"
        );
        let e = Template::parse("id {{request_id").expect_err("unclosed");
        assert!(e.starts_with("a {{ is never closed by }}"), "{e}");
        assert!(Template::parse("{ } {}").is_ok());
    }

    #[test]
    fn a_page_picks_its_language_and_says_when_the_choice_varied() {
        let variant = |lang: &str, text: &str| Variant {
            language: Some(HeaderValue::from_str(lang).expect("tag")),
            template: Template::parse(text).expect("parses"),
            file: None,
        };
        let mut pages = ErrorPages::default();
        pages.add(451, variant("zh-CN", "不可用"));
        pages.add(451, variant("en", "unavailable"));
        pages.add(403, variant("en", "forbidden"));
        assert_eq!(pages.describe(), "403 (en), 451 (zh-CN, en)");
        let page = pages.get(451).expect("451");
        let lang = |a: Option<&str>| {
            let (v, vary) = page.choose(a.map(str::as_bytes));
            let tag = v.language.as_ref().expect("tagged").to_str().expect("text");
            (tag.to_owned(), vary)
        };
        let zh = ("zh-CN".to_owned(), true);
        assert_eq!(lang(Some("en;q=0.4, zh;q=0.9")), zh);
        assert_eq!(
            lang(Some("en-US,en;q=0.9,zh-CN;q=0.8")),
            ("en".into(), true)
        );
        assert_eq!(lang(Some("fr")), zh, "the default");
        assert_eq!(lang(None), zh);
        let (_, vary) = pages.get(403).expect("403").choose(Some(b"zh"));
        assert!(!vary, "one language: nothing was chosen");
        assert!(pages.get(502).is_none());
    }
}
