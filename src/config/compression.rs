//! `[sites.compression]` into the typed `semantics::coding::Compression` a site carries.

use super::file::CompressionSection;
use super::Errors;
use crate::semantics::coding::{Coding, Compression};

/// A site's compression settings, or errors naming the key and the fix.
pub(super) fn compile(
    c: &CompressionSection,
    key: &str,
    errors: &mut Errors<'_>,
) -> Option<Compression> {
    let before = errors.list.len();
    let key = format!("{key}: compression");
    let mut codings = Vec::new();
    for name in &c.encodings {
        match Coding::from_token(name) {
            Some(coding) if !codings.contains(&coding) => codings.push(coding),
            Some(_) => errors.invalid(
                format!("{key}.encodings"),
                format!("{name:?} is listed twice"),
            ),
            None => errors.invalid(
                format!("{key}.encodings"),
                format!(
                    "{name:?} is not a coding menshen applies (use \"zstd\", \"br\" or \"gzip\")"
                ),
            ),
        }
    }
    if c.encodings.is_empty() {
        errors.invalid(
            format!("{key}.encodings"),
            "is empty; list \"zstd\", \"br\" or \"gzip\", or remove [sites.compression]",
        );
    }
    for t in &c.types {
        let valid = t.split_once('/').is_some_and(|(main, sub)| {
            !main.is_empty() && !sub.is_empty() && !t.contains([';', ' '])
        });
        if !valid || t.starts_with('*') {
            errors.invalid(
                format!("{key}.types"),
                format!("{t:?} is not a media type like \"text/html\" or \"text/*\""),
            );
        }
    }
    let levels = [
        ("gzip_level", i64::from(c.gzip_level), 1, 9),
        ("brotli_level", i64::from(c.brotli_level), 0, 11),
        ("zstd_level", i64::from(c.zstd_level), 1, 19),
    ];
    for (name, level, low, high) in levels {
        if !(low..=high).contains(&level) {
            errors.invalid(
                format!("{key}.{name}"),
                format!("{level} is out of range; use {low} to {high}"),
            );
        }
    }
    (errors.list.len() == before).then(|| Compression {
        codings,
        types: c.types.iter().map(|t| t.to_ascii_lowercase()).collect(),
        min_bytes: c.min_bytes,
        gzip_level: c.gzip_level,
        brotli_level: c.brotli_level,
        zstd_level: c.zstd_level,
    })
}
