//! How long rotated log files are kept, and their removal once older than that.
//!
//! The Cybersecurity Law (Art. 21) asks for network logs to be kept for no less than six months;
//! six calendar months can be 184 days, so retention is counted in calendar months (or in days,
//! at least 184). The access log writer calls [`remove_expired`] after each rotation; a file
//! (plain or compressed) is removed together with its manifest, never before the retention has
//! passed.

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::text::{civil_from_days, days_from_civil};

/// The least `access_log.retention` in months (`"6mo"`): six calendar months.
pub const MIN_RETENTION_MONTHS: u32 = 6;
/// The least `access_log.retention_days`: the longest six calendar months (e.g. July-December).
pub const MIN_RETENTION_DAYS: u32 = 184;

/// How long rotated files are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retention {
    /// Calendar months: a file last written on 31 August is kept until 28 (or 29) February.
    Months(u32),
    /// Days of 86,400 seconds.
    Days(u32),
}

impl Default for Retention {
    fn default() -> Self {
        Retention::Months(MIN_RETENTION_MONTHS)
    }
}

impl Retention {
    /// Files last written before this moment are past retention.
    pub fn cutoff(self, now: SystemTime) -> SystemTime {
        match self {
            Retention::Days(days) => now
                .checked_sub(Duration::from_secs(u64::from(days) * 86_400))
                .unwrap_or(UNIX_EPOCH),
            Retention::Months(months) => {
                let secs = now.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
                let (y, m, d) = civil_from_days((secs / 86_400) as i64);
                let total = y * 12 + i64::from(m) - 1 - i64::from(months);
                let (y, m) = (total.div_euclid(12), total.rem_euclid(12) as u32 + 1);
                let day = d.min(days_in_month(y, m));
                let at = days_from_civil(y, m, day) * 86_400 + (secs % 86_400) as i64;
                UNIX_EPOCH + Duration::from_secs(at.max(0) as u64)
            }
        }
    }
}

fn days_in_month(y: i64, m: u32) -> u32 {
    let (ny, nm) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
    (days_from_civil(ny, nm, 1) - days_from_civil(y, m, 1)) as u32
}

/// Removes rotated files of the log at `path` (`NAME.YYYY-MM-DD[.N]` beside it) last written
/// before the retention's cutoff, each with its manifest and shipping marker. With `shipped_only`
/// (shipping is on) a file is kept until it is shipped, however old. Other `NAME.*` files past the
/// cutoff (a manifest or marker whose file is gone) are removed too.
pub fn remove_expired(path: &Path, retention: Retention, shipped_only: bool) {
    let (dir, name) = super::seal::dir_and_name(path);
    let prefix = format!("{name}.");
    let cutoff = retention.cutoff(SystemTime::now());
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return;
    };
    let old = |p: &Path| {
        std::fs::metadata(p)
            .and_then(|m| m.modified())
            .is_ok_and(|t| t < cutoff)
    };
    let mut waiting = 0;
    for entry in entries.flatten() {
        let file_name = entry.file_name();
        let Some(fname) = file_name.to_str() else {
            continue;
        };
        let file = entry.path();
        if !fname.starts_with(&prefix) || !old(&file) {
            continue;
        }
        let rotated = super::seal::rotated_order(fname, &name).is_some();
        if rotated && shipped_only && !super::ship::shipped_path(&file).exists() {
            waiting += 1;
            continue;
        }
        let mut doomed = vec![file.clone()];
        if rotated {
            // Its twin too: the sealer may be compressing it right now.
            doomed.push(super::compress::plain(&file));
            doomed.push(super::compress::compressed(&file));
            doomed.push(super::seal::manifest_path(&file));
            doomed.push(super::ship::shipped_path(&file));
        } else if super::seal::rotated_order(base_of(fname), &name)
            .is_some_and(|_| super::compress::exists(&dir.join(base_of(fname))))
        {
            // A manifest or marker goes with its file, not before it.
            continue;
        }
        for f in doomed.iter().filter(|f| f.exists()) {
            match std::fs::remove_file(f) {
                Ok(()) => tracing::info!(file = %f.display(), "removed log file past retention"),
                Err(e) => tracing::warn!(file = %f.display(), "cannot remove old log file: {e}"),
            }
        }
    }
    if waiting > 0 {
        tracing::warn!(
            files = waiting,
            "log files past retention are kept until they are shipped (menshen_log_ship_backlog)"
        );
    }
}

/// The rotated file a manifest or marker belongs to.
fn base_of(fname: &str) -> &str {
    fname
        .strip_suffix(".manifest")
        .or_else(|| fname.strip_suffix(".shipped"))
        .unwrap_or(fname)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs::File;

    fn at(y: i64, m: u32, d: u32, secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(days_from_civil(y, m, d) as u64 * 86_400 + secs)
    }

    #[test]
    fn six_calendar_months_back() {
        let six = Retention::Months(6);
        assert_eq!(six.cutoff(at(2026, 12, 7, 3600)), at(2026, 6, 7, 3600));
        // 31 August less six months is the last day of February: 184 days in the other
        // direction (31 December less six months is 30 June).
        assert_eq!(six.cutoff(at(2027, 8, 31, 0)), at(2027, 2, 28, 0));
        assert_eq!(six.cutoff(at(2028, 8, 31, 0)), at(2028, 2, 29, 0));
        assert_eq!(six.cutoff(at(2026, 12, 31, 0)), at(2026, 6, 30, 0));
        assert_eq!(six.cutoff(at(2026, 3, 15, 0)), at(2025, 9, 15, 0));
        assert_eq!(
            Retention::Days(184).cutoff(at(2026, 12, 31, 0)),
            at(2026, 6, 30, 0)
        );
    }

    #[test]
    fn rotated_files_past_retention_are_removed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("access.log");
        let old = dir.path().join("access.log.2026-01-01");
        let old_manifest = dir.path().join("access.log.2026-01-01.manifest");
        let recent = dir.path().join("access.log.2026-11-01");
        let unrelated = dir.path().join("other.log.2020-01-01");
        for f in [&old, &old_manifest, &recent, &unrelated] {
            std::fs::write(f, "x\n").expect("write");
        }
        let age = |days: u64| SystemTime::now() - Duration::from_secs(days * 86_400);
        let set = |f: &Path, t: SystemTime| {
            File::options()
                .write(true)
                .open(f)
                .expect("open")
                .set_modified(t)
                .expect("mtime");
        };
        // Six calendar months are 181 to 184 days: 180 days is within them whatever today is,
        // 185 past them.
        set(&old, age(185));
        set(&old_manifest, age(185));
        set(&recent, age(180));
        set(&unrelated, age(400));
        remove_expired(&path, Retention::Months(6), false);
        assert!(!old.exists(), "older than six months: removed");
        assert!(!old_manifest.exists(), "its manifest goes with it");
        assert!(recent.exists(), "within retention: kept");
        assert!(unrelated.exists(), "not ours: kept");
    }

    #[test]
    fn with_shipping_a_file_waits_for_its_marker() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("access.log");
        let shipped = dir.path().join("access.log.2026-01-01");
        let unshipped = dir.path().join("access.log.2026-01-02");
        let marker = dir.path().join("access.log.2026-01-01.shipped");
        let manifest = dir.path().join("access.log.2026-01-01.manifest");
        for f in [&shipped, &unshipped, &marker, &manifest] {
            std::fs::write(f, "x\n").expect("write");
        }
        let old = SystemTime::now() - Duration::from_secs(200 * 86_400);
        for f in [&shipped, &unshipped] {
            File::options()
                .write(true)
                .open(f)
                .expect("open")
                .set_modified(old)
                .expect("mtime");
        }
        remove_expired(&path, Retention::Months(6), true);
        assert!(
            !shipped.exists() && !marker.exists() && !manifest.exists(),
            "shipped: removed with its manifest and marker"
        );
        assert!(unshipped.exists(), "not shipped: kept");
    }
}
