//! The admin audit log: one line per admin action (a reload by `POST /reload`, SIGHUP or a file
//! change, a binary upgrade taking over or handing over the listeners) with its time, source and
//! outcome. It is an [`AccessLog`] of its own beside the access log (`admin-audit.log` by
//! default): same writer thread, rotation, retention, chain and seals, so `menshen logs verify`
//! checks it with the access log.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::SystemTime;

use super::access_log::{AccessLog, AccessLogConfig};
use super::text::{push_json_str, push_rfc3339_millis};

/// Default of `access_log.audit_file`, beside the access log.
pub const DEFAULT_AUDIT_FILE: &str = "admin-audit.log";
/// Rotated well before the access log: an audit log is small.
const AUDIT_MAX_FILE_BYTES: u64 = 64 * 1024 * 1024;

/// The audit log's settings: the access log's, at its `audit_path`.
pub fn audit_config(access: &AccessLogConfig) -> Option<AccessLogConfig> {
    Some(AccessLogConfig {
        path: access.audit_path.clone()?,
        destination: super::access_log::Destination::File,
        audit_path: None,
        max_file_bytes: access.max_file_bytes.min(AUDIT_MAX_FILE_BYTES),
        buffer_lines: 1024,
        ..access.clone()
    })
}

/// The default audit file of an access log at `access`: beside it.
pub fn default_audit_path(access: &std::path::Path) -> PathBuf {
    access.with_file_name(DEFAULT_AUDIT_FILE)
}

/// Where admin actions are recorded.
#[derive(Debug, Clone)]
pub struct Audit(pub Arc<AccessLog>);

impl Audit {
    /// Records `action` from `source` (an address, a signal, `local`) and its `outcome`
    /// (`ok`, `partial`, `rejected`, `refused`, ...), with a detail sentence.
    pub fn record(&self, action: &str, source: &str, outcome: &str, detail: &str) {
        self.0
            .log(line(SystemTime::now(), action, source, outcome, detail));
    }
}

fn line(at: SystemTime, action: &str, source: &str, outcome: &str, detail: &str) -> String {
    let mut out = String::with_capacity(128 + detail.len());
    out.push_str("{\"ts\":\"");
    push_rfc3339_millis(&mut out, at);
    out.push_str("\",\"action\":");
    push_json_str(&mut out, action);
    out.push_str(",\"source\":");
    push_json_str(&mut out, source);
    out.push_str(",\"outcome\":");
    push_json_str(&mut out, outcome);
    out.push_str(",\"detail\":");
    push_json_str(&mut out, detail);
    out.push_str(",\"pid\":");
    out.push_str(itoa::Buffer::new().format(std::process::id()));
    out.push('}');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn a_line_is_one_json_object() {
        let at = UNIX_EPOCH + Duration::from_millis(1_795_742_651_133);
        let text = line(at, "reload", "10.0.0.9:5123", "refused", "wrong \"token\"");
        let v: serde_json::Value = serde_json::from_str(&text).expect("json");
        assert_eq!(v["ts"], "2026-11-27T01:24:11.133+00:00");
        assert_eq!(v["action"], "reload");
        assert_eq!(v["source"], "10.0.0.9:5123");
        assert_eq!(v["outcome"], "refused");
        assert_eq!(v["detail"], "wrong \"token\"");
    }

    #[test]
    fn the_audit_file_sits_beside_the_access_log() {
        let access = AccessLogConfig {
            path: "/var/log/menshen/access.log".into(),
            destination: super::super::access_log::Destination::File,
            retention: Default::default(),
            chain_key: None,
            audit_path: Some(default_audit_path("/var/log/menshen/access.log".as_ref())),
            shipping: None,
            max_file_bytes: 1 << 30,
            buffer_lines: 32_768,
        };
        let audit = audit_config(&access).expect("an audit log");
        assert_eq!(audit.audit_path, None);
        assert_eq!(
            audit.path,
            PathBuf::from("/var/log/menshen/admin-audit.log")
        );
        assert_eq!(audit.max_file_bytes, AUDIT_MAX_FILE_BYTES);
        assert_eq!(audit.retention, access.retention);
    }
}
