//! `[[error_pages]]` and `[[sites.error_pages]]` into the typed `semantics::error_pages` a site
//! (or the snapshot, process-wide) carries: every file read and every template checked here, at
//! load and reload, so the data path never touches the disk and a bad page refuses the reload.

use std::collections::HashSet;

use http::HeaderValue;

use super::file::ErrorPageSection;
use super::{relative_to, Errors};
use crate::semantics::error_pages::{ErrorPages, Template, Variant};

/// The largest page file read (a page is sent whole with every such answer).
const MAX_PAGE_BYTES: u64 = 256 * 1024;

/// The pages of `sections`; errors name `key` (`error_pages` or `site "shop": error_pages`)
/// with the entry's index, the file and the fix.
pub(super) fn compile(
    sections: &[ErrorPageSection],
    key: &str,
    errors: &mut Errors<'_>,
) -> ErrorPages {
    let mut pages = ErrorPages::default();
    let mut seen = HashSet::new();
    for (i, section) in sections.iter().enumerate() {
        let key = format!("{key}[{i}]");
        let Some(variant) = variant(section, &key, errors) else {
            continue;
        };
        if section.status.is_empty() {
            errors.invalid(
                format!("{key}.status"),
                "is empty; list the statuses it answers, e.g. [451] or [502, 503, 504]",
            );
        }
        for &status in &section.status {
            if !(400..=599).contains(&status) {
                errors.invalid(
                    format!("{key}.status"),
                    format!("{status} is not an error status; pages are for 400-599"),
                );
            } else if !seen.insert((status, section.language.clone())) {
                errors.invalid(
                    format!("{key}.status"),
                    format!(
                        "{status} already has a page{}; list each status once per language",
                        section
                            .language
                            .as_ref()
                            .map_or(String::new(), |l| format!(" in {l:?}"))
                    ),
                );
            } else {
                pages.add(status, variant.clone());
            }
        }
    }
    untagged_among_several(&pages, key, errors);
    pages
}

/// One entry's page: its language and its template, from `file` or `template`.
fn variant(section: &ErrorPageSection, key: &str, errors: &mut Errors<'_>) -> Option<Variant> {
    let language = match &section.language {
        None => None,
        Some(tag) if language_tag(tag) => HeaderValue::from_str(tag).ok(),
        Some(tag) => {
            errors.invalid(
                format!("{key}.language"),
                format!("{tag:?} is not a language tag like \"zh-CN\" or \"en\""),
            );
            return None;
        }
    };
    let (text, file, what) = match (&section.file, &section.template) {
        (Some(name), None) => {
            let path = relative_to(errors.file(), name);
            let text = read(&path, &format!("{key}.file"), errors)?;
            (text, Some(path), format!("{key}.file"))
        }
        (None, Some(text)) => (text.clone(), None, format!("{key}.template")),
        _ => {
            errors.invalid(
                key,
                "needs exactly one of file = \"PATH\" or template = \"...\"",
            );
            return None;
        }
    };
    match Template::parse(&text) {
        Ok(template) => Some(Variant {
            language,
            template,
            file,
        }),
        Err(e) => {
            let at = file
                .as_ref()
                .map_or(String::new(), |p| format!("{}: ", p.display()));
            errors.invalid(what, format!("{at}{e}"));
            None
        }
    }
}

/// The text of a page file, or an error naming it and the fix.
fn read(path: &std::path::Path, key: &str, errors: &mut Errors<'_>) -> Option<String> {
    let fail = |errors: &mut Errors<'_>, why: String| {
        errors.invalid(key, format!("{}: {why}", path.display()));
        None
    };
    let len = match std::fs::metadata(path) {
        Ok(m) if m.is_file() => m.len(),
        Ok(_) => return fail(errors, "is not a file; name the page's file".into()),
        Err(e) => {
            let why = format!(
                "cannot read it ({e}); create it or fix the path (relative to the config file)"
            );
            return fail(errors, why);
        }
    };
    if len > MAX_PAGE_BYTES {
        let why = format!("is {len} bytes; an error page is at most {MAX_PAGE_BYTES}");
        return fail(errors, why);
    }
    match std::fs::read(path).map(String::from_utf8) {
        Ok(Ok(text)) => Some(text),
        Ok(Err(_)) => fail(errors, "is not UTF-8; save the page as UTF-8".into()),
        Err(e) => fail(errors, format!("cannot read it ({e})")),
    }
}

/// A status with pages in several languages needs each one's language to choose by.
fn untagged_among_several(pages: &ErrorPages, key: &str, errors: &mut Errors<'_>) {
    for (status, page) in pages.pages() {
        let variants = page.variants();
        if variants.len() > 1 && variants.iter().any(|v| v.language.is_none()) {
            errors.invalid(
                key,
                format!(
                    "status {status} has pages in several languages; give each a language = \"...\""
                ),
            );
        }
    }
}

/// A BCP 47 tag as far as negotiation needs: subtags of 1-8 letters or digits, the first letters.
fn language_tag(tag: &str) -> bool {
    let mut subtags = tag.split('-');
    let first = subtags.next().unwrap_or("");
    let ok = |s: &str| (1..=8).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric());
    ok(first) && first.bytes().all(|b| b.is_ascii_alphabetic()) && subtags.all(ok)
}
