//! `[[error_pages]]` and `[[sites.error_pages]]` of the config file: the serde side of error
//! pages (compiled by `config/error_pages.rs`).

use serde::Deserialize;

/// `[[error_pages]]` (process-wide) or `[[sites.error_pages]]`: one page, in one language, for
/// one or more statuses. Several entries for a status give it several languages; the first
/// listed is sent when a client accepts none of them.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ErrorPageSection {
    /// The statuses it answers, e.g. `[451]` or `[502, 503, 504]` (400-599).
    pub status: Vec<u16>,
    /// Its language tag, e.g. `zh-CN` or `en` (sent as `Content-Language`, matched against
    /// `Accept-Language`); needed when a status has pages in several languages.
    pub language: Option<String>,
    /// A file holding the page, relative to the config file; read at load and at every reload.
    pub file: Option<String>,
    /// The page itself, in place of `file`.
    pub template: Option<String>,
}
