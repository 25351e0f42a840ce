//! Header edits of `[[sites]]` and `[[sites.routes]]` into the typed `policy::headers`
//! a route carries (its site's, then its own).

use std::collections::BTreeMap;

use http::HeaderName;

use super::file::RequestHeadersSection;
use super::Errors;
use crate::policy::headers::{HeaderEdits, Template};
use crate::semantics::fields::{field, Field};

/// The keys a site or a route writes its header edits with.
pub(super) struct EditKeys<'a> {
    pub(super) request: &'a RequestHeadersSection,
    pub(super) remove_response: &'a [String],
    pub(super) add_response: &'a BTreeMap<String, String>,
}

/// The edits those keys say; errors name `key` and the field.
pub(super) fn compile(keys: &EditKeys<'_>, key: &str, errors: &mut Errors<'_>) -> HeaderEdits {
    HeaderEdits {
        request_remove: names(
            &keys.request.remove,
            &format!("{key}: request_headers.remove"),
            errors,
        ),
        request_set: templates(
            &keys.request.set,
            &format!("{key}: request_headers.set"),
            errors,
        ),
        request_add: templates(
            &keys.request.add,
            &format!("{key}: request_headers.add"),
            errors,
        ),
        response_remove: names(
            keys.remove_response,
            &format!("{key}: remove_response_headers"),
            errors,
        ),
        response_set: super::header_list(
            keys.add_response,
            &format!("{key}: add_response_headers"),
            errors,
        ),
    }
}

/// Header names, each checked.
pub(super) fn names(list: &[String], key: &str, errors: &mut Errors<'_>) -> Vec<HeaderName> {
    let mut out = Vec::with_capacity(list.len());
    for name in list {
        match HeaderName::from_bytes(name.as_bytes()) {
            Ok(n) => out.push(n),
            Err(_) => errors.invalid(key, format!("{name:?} is not a header name")),
        }
    }
    out
}

fn templates(
    table: &BTreeMap<String, String>,
    key: &str,
    errors: &mut Errors<'_>,
) -> Vec<(HeaderName, Template)> {
    let mut out = Vec::with_capacity(table.len());
    for (name, value) in table {
        let Ok(n) = HeaderName::from_bytes(name.as_bytes()) else {
            errors.invalid(key, format!("{name:?} is not a header name"));
            continue;
        };
        if !matches!(field(n.as_str()), Field::Other | Field::UserAgent) {
            errors.invalid(
                key,
                format!("{name:?} is menshen's to send (framing, Host or a forwarding field)"),
            );
            continue;
        }
        match Template::parse(value) {
            Ok(t) if t.fits() => out.push((n, t)),
            Ok(_) => errors.invalid(
                key,
                format!(
                    "{name:?}: {value:?} has too many parts (at most 8 runs of text and values)"
                ),
            ),
            Err(e) => errors.invalid(key, format!("{name:?}: {e}")),
        }
    }
    out
}
