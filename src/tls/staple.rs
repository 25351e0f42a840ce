//! A certificate's OCSP state as the handshake reads it (`cert::ServedCert::ocsp`) and the
//! stapler (`ocsp`) writes it: plain data, below both.

use std::sync::Arc;
use std::time::Duration;

use rustls::sign::CertifiedKey;

use super::format_time;

/// What a verified response says of the certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CertState {
    /// Not revoked.
    Good,
    /// Revoked at this time (seconds since the epoch).
    Revoked(i64),
    /// The responder does not know the certificate.
    Unknown,
}

/// A verified response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// Its answer.
    pub state: CertState,
    /// thisUpdate, seconds since the epoch.
    pub this_update: i64,
    /// nextUpdate (or thisUpdate + [`NO_NEXT_UPDATE_LIFETIME`]), seconds since the epoch.
    pub next_update: i64,
}

/// `[tls.ocsp]`, compiled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OcspSettings {
    /// Ask the responder named in a certificate when there is no `NAME.ocsp`.
    pub fetch: bool,
    /// `http://host:port` of an HTTP proxy for the responders.
    pub proxy: Option<String>,
    /// How long a response may take.
    pub timeout: Duration,
    /// Wait after a failed fetch before the next try.
    pub retry: Duration,
}

impl Default for OcspSettings {
    fn default() -> Self {
        Self {
            fetch: true,
            proxy: None,
            timeout: Duration::from_secs(10),
            retry: Duration::from_secs(300),
        }
    }
}

/// Where a response came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// `NAME.ocsp` beside the certificate.
    File,
    /// The responder at this URL.
    Responder(String),
}

/// A certificate's OCSP state, as the stapler last left it.
#[derive(Debug, Clone)]
pub struct Ocsp {
    /// The certificate's key with the response stapled, while it is good (until
    /// `verified.next_update`).
    pub stapled: Option<Arc<CertifiedKey>>,
    /// What the response in use (or the last one verified) says.
    pub verified: Option<Verified>,
    /// Where it came from.
    pub source: Option<Source>,
    /// Why the last attempt gave nothing new (the last good response may still be stapled).
    pub error: Option<String>,
    /// When to ask the responder next, seconds since the epoch.
    pub refresh_at: i64,
    /// SHA-256 of the `NAME.ocsp` contents in use.
    pub file_digest: Option<[u8; 32]>,
}

impl Ocsp {
    /// The stapled key, if its response is current at `now`.
    pub fn current(&self, now: i64) -> Option<&Arc<CertifiedKey>> {
        let until = self.verified.as_ref().map_or(0, |v| v.next_update);
        self.stapled.as_ref().filter(|_| now < until)
    }

    /// One line for operators: `good until ...`, `revoked at ...`, or why nothing is stapled.
    pub fn summary(&self, now: i64) -> String {
        let from = match &self.source {
            Some(Source::File) => " (from NAME.ocsp)".to_owned(),
            Some(Source::Responder(url)) => format!(" (from {url})"),
            None => String::new(),
        };
        let state = match (&self.verified, self.current(now)) {
            (Some(v), Some(_)) => format!("good until {}{from}", format_time(v.next_update)),
            (Some(v), None) => match v.state {
                CertState::Revoked(at) => format!("REVOKED at {}{from}", format_time(at)),
                CertState::Unknown => format!("unknown to the responder{from}"),
                CertState::Good => format!("expired {}{from}", format_time(v.next_update)),
            },
            (None, _) => "not stapled".to_owned(),
        };
        match &self.error {
            Some(e) => format!("{state}; last attempt: {e}"),
            None => state,
        }
    }

    /// The metric's status label.
    pub fn status_label(&self, now: i64) -> &'static str {
        match (&self.verified, self.current(now)) {
            (_, Some(_)) => "good",
            (Some(v), None) if matches!(v.state, CertState::Revoked(_)) => "revoked",
            (Some(v), None) if v.state == CertState::Unknown => "unknown",
            _ => "none",
        }
    }
}
